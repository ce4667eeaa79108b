//! Generating snapshots off the raft threads: [`SnapScheduler`] hands a
//! generation to the store's snapshot worker thread, or runs it at once
//! where no worker runs (a store driven by hand, as in the simulation).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use engine::KvSnapshot;
use kvproto_lite::eraftpb::Snapshot;
use slog::{debug, warn, Logger};

use super::data::generate;
use super::manager::SnapManager;
use super::meta::conf_state_from_region;
use super::meta::SnapshotMeta;

/// Where a generated snapshot (raft's metadata part) is left for the
/// peer's storage to pick up; `Err` carries why generation failed.
#[derive(Clone, Default)]
pub struct GenSlot(Arc<Mutex<Option<Result<Snapshot, String>>>>);

impl GenSlot {
    fn fill(&self, res: Result<Snapshot, String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(res);
    }

    /// Takes the result, if the generation finished.
    pub(crate) fn take(&self) -> Option<Result<Snapshot, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// raft-rs's snapshot for a meta: index, term and configuration, with the
/// encoded meta as its data.
///
/// # Errors
///
/// The meta cannot be encoded.
pub fn raft_snapshot(meta: &SnapshotMeta) -> crate::Result<Snapshot> {
    let mut snap = Snapshot::default();
    snap.set_data(meta.encode()?.into());
    let md = snap.mut_metadata();
    md.set_index(meta.key.index);
    md.set_term(meta.key.term);
    md.set_conf_state(conf_state_from_region(&meta.region));
    Ok(snap)
}

type Task = Box<dyn FnOnce() + Send>;

/// Runs snapshot generations: on the store's worker thread when one runs,
/// otherwise at once on the caller's thread.
#[derive(Clone, Default)]
pub struct SnapScheduler {
    tx: Option<Sender<Task>>,
    /// Generations handed to the worker and not finished.
    pending: Arc<AtomicUsize>,
}

impl SnapScheduler {
    /// Schedules the generation of `region_id`'s snapshot from `view` (a
    /// consistent view of the KV engine taken now); the result goes to
    /// `slot`, the data to `mgr`.
    pub(crate) fn schedule_generate<S: KvSnapshot>(
        &self,
        mgr: Arc<SnapManager>,
        view: S,
        region_id: u64,
        slot: GenSlot,
        logger: Logger,
    ) {
        let task = move || {
            let chunk_size = mgr.limits().chunk_size;
            let res = generate(&view, region_id, chunk_size).and_then(|g| {
                let snap = raft_snapshot(&g.meta)?;
                debug!(logger, "snapshot generated"; "region_id" => region_id,
                    "index" => g.meta.key.index, "term" => g.meta.key.term,
                    "bytes" => g.meta.data_size, "pairs" => g.meta.pairs);
                mgr.register_generated(g);
                Ok(snap)
            });
            drop(view);
            if let Err(e) = &res {
                mgr.stats()
                    .generate_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn!(logger, "snapshot generation failed"; "region_id" => region_id, "err" => %e);
            }
            slot.fill(res.map_err(|e| e.to_string()));
        };
        match &self.tx {
            Some(tx) => {
                self.pending.fetch_add(1, Ordering::SeqCst);
                let pending = Arc::clone(&self.pending);
                let counted = move || {
                    task();
                    pending.fetch_sub(1, Ordering::SeqCst);
                };
                if let Err(e) = tx.send(Box::new(counted)) {
                    // The worker is gone (shutting down): generate here.
                    (e.into_inner())();
                }
            }
            None => task(),
        }
    }
}

/// The store's snapshot worker thread.
pub(crate) struct SnapWorker {
    tx: Option<Sender<Task>>,
    handle: Option<JoinHandle<()>>,
    pending: Arc<AtomicUsize>,
}

impl SnapWorker {
    /// Starts the worker thread.
    pub(crate) fn start(name: String) -> crate::Result<SnapWorker> {
        let (tx, rx): (Sender<Task>, Receiver<Task>) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while let Ok(task) = rx.recv() {
                    task();
                }
            })
            .map_err(|e| crate::Error::Other(format!("spawn snapshot worker: {e}")))?;
        Ok(SnapWorker {
            tx: Some(tx),
            handle: Some(handle),
            pending: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// A scheduler handing work to this worker.
    pub(crate) fn scheduler(&self) -> SnapScheduler {
        SnapScheduler {
            tx: self.tx.clone(),
            pending: Arc::clone(&self.pending),
        }
    }

    /// Generations scheduled and not finished.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Stops the thread after the generations already queued.
    pub(crate) fn stop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SnapWorker {
    fn drop(&mut self) {
        self.stop();
    }
}
