//! Keeps raft-engine's per-thread block cache from mixing up engines.
//!
//! raft-engine 0.4.2 caches the last decoded entry block in a
//! `thread_local!`, keyed only by (queue, file seq, offset, length). File
//! seqs start at 1 in every directory, so two engine instances read on the
//! same thread can hit each other's cached block and return the *other*
//! engine's entries (or panic on an index assertion). This bites in-process
//! clusters and simulations that drive several stores from one thread, and
//! tests that open engine after engine.
//!
//! The guard remembers, per thread, which engine instance last used that
//! cache. A thread that has never read through raft-engine, or last read
//! through this same instance, reads directly (the fast path: a store's own
//! poller threads). Any other thread hands the read to this instance's
//! reader thread, spawned on first need, whose cache only ever holds this
//! instance's blocks.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Sender};
use std::sync::{Mutex, OnceLock};

use crate::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Instance whose blocks this thread's raft-engine cache may hold
    /// (0: none yet, the cache holds raft-engine's never-matching dummy key).
    static CACHE_OWNER: Cell<u64> = const { Cell::new(0) };
}

/// One per engine instance (shared by its clones).
pub(crate) struct BlockCacheGuard {
    id: u64,
    reader: OnceLock<Mutex<Sender<Job>>>,
}

impl BlockCacheGuard {
    pub(crate) fn new() -> Self {
        BlockCacheGuard {
            id: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            reader: OnceLock::new(),
        }
    }

    /// `true` if this thread may read through this instance directly; claims
    /// the thread's cache if it was unused.
    fn claim_current_thread(&self) -> bool {
        CACHE_OWNER.with(|owner| match owner.get() {
            0 => {
                owner.set(self.id);
                true
            }
            id => id == self.id,
        })
    }

    /// Runs `read` (which reads entries through raft-engine's block cache)
    /// on a thread whose cache belongs to this instance.
    ///
    /// `target` is what `read` works on; on the slow path it is moved to the
    /// reader thread and dropped there *before* the result is sent back, so
    /// the caller holds the last reference again when this returns.
    pub(crate) fn run<S, T>(
        &self,
        target: S,
        read: impl FnOnce(&S) -> T + Send + 'static,
    ) -> Result<T>
    where
        S: Send + 'static,
        T: Send + 'static,
    {
        if self.claim_current_thread() {
            return Ok(read(&target));
        }
        let (reply_tx, reply_rx) = sync_channel(1);
        let job: Job = Box::new(move || {
            let out = read(&target);
            drop(target);
            // The caller may have given up (it cannot: it waits below).
            let _ = reply_tx.send(out);
        });
        self.reader_sender()?.send(job).map_err(|_| reader_gone())?;
        reply_rx.recv().map_err(|_| reader_gone())
    }

    fn reader_sender(&self) -> Result<Sender<Job>> {
        let id = self.id;
        let cell = match self.reader.get() {
            Some(cell) => cell,
            None => {
                let (tx, rx) = channel::<Job>();
                std::thread::Builder::new()
                    .name(format!("raft-engine-reader-{id}"))
                    .spawn(move || {
                        CACHE_OWNER.with(|owner| owner.set(id));
                        // Ends when the engine (and with it the sender) is
                        // dropped. A panicking read drops its reply sender,
                        // so its caller gets an error; the thread goes on.
                        for job in rx {
                            let _ = catch_unwind(AssertUnwindSafe(job));
                        }
                    })?;
                // If another thread won the race, our thread ends at once
                // because its sender is dropped here.
                let _ = self.reader.set(Mutex::new(tx));
                self.reader.get().ok_or_else(reader_gone)?
            }
        };
        let sender = cell.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(sender)
    }
}

fn reader_gone() -> Error {
    Error::Corruption("the raft-engine reader thread stopped (a read panicked)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_instance_on_a_thread_reads_inline_others_on_their_reader() {
        std::thread::spawn(|| {
            let a = BlockCacheGuard::new();
            let b = BlockCacheGuard::new();
            let here = std::thread::current().id();
            let on_a = a.run((), |_| std::thread::current().id()).unwrap();
            assert_eq!(on_a, here, "an unused thread reads inline");
            let on_b = b.run((), |_| std::thread::current().id()).unwrap();
            assert_ne!(on_b, here, "another instance's reads move off this thread");
            assert_eq!(a.run((), |_| std::thread::current().id()).unwrap(), here);
            let again = b.run((), |_| std::thread::current().id()).unwrap();
            assert_eq!(again, on_b, "one reader thread per instance");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_target_is_dropped_before_the_result_returns() {
        std::thread::spawn(|| {
            let a = BlockCacheGuard::new();
            a.run((), |_| ()).unwrap();
            let b = BlockCacheGuard::new();
            let shared = Arc::new(());
            let n = b.run(Arc::clone(&shared), |_| 7).unwrap();
            assert_eq!(n, 7);
            assert_eq!(Arc::strong_count(&shared), 1);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_panicking_read_is_an_error_and_the_reader_goes_on() {
        std::thread::spawn(|| {
            let a = BlockCacheGuard::new();
            a.run((), |_| ()).unwrap();
            let b = BlockCacheGuard::new();
            let res: Result<()> = b.run((), |_| panic!("read failed"));
            assert!(res.is_err());
            assert_eq!(b.run((), |_| 1).unwrap(), 1);
        })
        .join()
        .unwrap();
    }
}
