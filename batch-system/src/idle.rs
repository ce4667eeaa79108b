//! [`Idle`]: when to wake a parked poller, and how pollers park.
//!
//! Waking a parked thread costs a system call on the waker's side (and, on
//! a virtual machine whose other vCPU is halted, an inter-processor
//! interrupt). A sender that woke a poller for every FSM it schedules would
//! pay that per message. So, as tokio's multi-thread scheduler does, a
//! poller that has no work first becomes a *searcher*: it keeps looking at
//! the queue for a short while before it parks. While any poller is
//! searching, or none is parked, scheduling wakes nobody: the searcher will
//! find the work, and a poller that finds work while it was the last
//! searcher wakes a parked one if work is left.
//!
//! Unlike tokio, every idle poller may search (tokio allows half the
//! workers, to limit contention on stealing from each other's queues; a
//! searching poller here only reads the shared queue's ends, and gives its
//! core away with `yield_now` between looks). With one searcher in a pool of
//! two, the other idle poller parks at once; the next time the searcher
//! finds work there is no searcher left and the producer's next send pays
//! for a wake. Letting both search removes that wake from the producer's
//! path while work keeps coming.
//!
//! # The protocol
//!
//! One word holds two counters: pollers *searching* and pollers *unparked*
//! (working or searching). A parked poller's id sits in the sleeper list.
//!
//! ```text
//! scheduler:  push item; fence(SeqCst); s = state.load()    (no RMW, no lock)
//!             if s.searching == 0 && s.unparked < n:
//!                 lock sleepers; pop one; state += (1 searching, 1 unparked); unpark it
//!
//! poller, no work:
//!             become a searcher; look at the queue for a while
//!             lock sleepers; push self; state -= (searching?, 1 unparked)
//!             fence(SeqCst); re-check the queue (and shutdown):
//!                 if work, notify as a scheduler would
//!             park until unparked                 (woken: counted as searching)
//!
//! poller, found work while searching:
//!             state -= 1 searching; fence(SeqCst); if it was the last
//!             searcher and the queue is not empty: notify as a scheduler would
//! ```
//!
//! No wake-up is lost: the scheduler's fence and the poller's fence are
//! both sequentially consistent, so one of them comes first. If the
//! poller's comes first, the scheduler's read of `state` (after its fence)
//! sees the poller parked and not searching (or sees another searcher,
//! which re-checks the queue when it stops searching or parks). If the
//! scheduler's comes first, the poller's re-check of the queue (after its
//! fence) sees the pushed item. `tests/loom.rs` checks this with every
//! interleaving of a scheduler and two pollers (loom models `SeqCst`
//! fences exactly; it would not accept `SeqCst` loads alone here).
//!
//! A send pays for this a fence and a load of a word that only changes
//! when a poller starts or stops searching, parks or is woken: the word's
//! cache line stays shared between the sender and the pollers. (An earlier
//! version read it with a read-modify-write, which moved the line to the
//! sender's core on every send; `docs/benchmarks.md` has both.)

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicUsize, Ordering};
#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex, MutexGuard};

use crossbeam_utils::CachePadded;

/// Bits of the state word that count searching pollers; the rest counts
/// unparked ones.
const SEARCH_BITS: u32 = 16;
const SEARCH_MASK: usize = (1 << SEARCH_BITS) - 1;
const ONE_UNPARKED: usize = 1 << SEARCH_BITS;
const ONE_SEARCHING: usize = 1;

#[derive(Clone, Copy, Debug)]
struct State(usize);

impl State {
    fn searching(self) -> usize {
        self.0 & SEARCH_MASK
    }

    fn unparked(self) -> usize {
        self.0 >> SEARCH_BITS
    }
}

/// Where one poller sleeps: a three-state word (empty, parked, notified)
/// in front of a condvar, the generic parker std and tokio build.
///
/// A wake that reaches a poller still on its way to sleep only swaps the
/// word; only a poller really blocked in the condvar costs the waker a
/// system call (a bare condvar's `notify_one` would make one every time).
#[derive(Default)]
struct Parker {
    state: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

const EMPTY: usize = 0;
const PARKED: usize = 1;
const NOTIFIED: usize = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Parker {
    /// Blocks until [`unpark`](Self::unpark) (which may come first).
    fn park(&self) {
        // A notification that came first: consume it.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
        let mut guard = lock(&self.lock);
        if self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // Notified in between (only this poller ever sets PARKED).
            self.state.store(EMPTY, Ordering::SeqCst);
            return;
        }
        loop {
            guard = self.cond.wait(guard).unwrap_or_else(|e| e.into_inner());
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return;
            }
            // A spurious wake-up: wait again.
        }
    }

    fn unpark(&self) {
        if self.state.swap(NOTIFIED, Ordering::SeqCst) != PARKED {
            // Not blocked (yet): `park` will see the notification.
            return;
        }
        // The poller holds the lock until `wait` releases it: taking it
        // here makes sure the notification cannot fall before the wait.
        drop(lock(&self.lock));
        self.cond.notify_one();
    }
}

/// The idle-poller coordination of one batch system: see the
/// [module docs](self).
pub(crate) struct Idle {
    state: CachePadded<AtomicUsize>,
    pollers: usize,
    sleepers: Mutex<Vec<usize>>,
    parkers: Box<[Parker]>,
}

impl Idle {
    /// Coordination for `pollers` pollers with ids `0..pollers`, all
    /// counted as unparked (not searching) from the start.
    pub(crate) fn new(pollers: usize) -> Idle {
        Idle {
            state: CachePadded::new(AtomicUsize::new(pollers * ONE_UNPARKED)),
            pollers,
            sleepers: Mutex::new(Vec::with_capacity(pollers)),
            parkers: (0..pollers).map(|_| Parker::default()).collect(),
        }
    }

    fn should_wake(&self, s: State) -> bool {
        s.searching() == 0 && s.unparked() < self.pollers
    }

    /// Called after work was pushed: wakes one parked poller unless a
    /// poller is searching or none is parked. Returns whether it woke one.
    #[inline]
    pub(crate) fn notify_one(&self) -> bool {
        // The fence orders the caller's push before the read of the state,
        // against the fence a poller makes between changing the state and
        // looking at the queue (see the module docs). A load, not a
        // read-modify-write: the state's cache line stays shared between
        // the senders and the pollers instead of moving to every sender.
        fence(Ordering::SeqCst);
        let s = State(self.state.load(Ordering::SeqCst));
        if !self.should_wake(s) {
            return false;
        }
        self.wake_one()
    }

    #[cold]
    fn wake_one(&self) -> bool {
        let mut sleepers = lock(&self.sleepers);
        // Changes of the state that matter here (a poller parking) are
        // made under the same lock.
        let s = State(self.state.load(Ordering::SeqCst));
        if !self.should_wake(s) {
            return false;
        }
        let Some(id) = sleepers.pop() else {
            return false;
        };
        // The woken poller starts as a searcher.
        self.state
            .fetch_add(ONE_UNPARKED + ONE_SEARCHING, Ordering::SeqCst);
        drop(sleepers);
        self.parkers[id].unpark();
        true
    }

    /// Wakes every parked poller (at shutdown).
    pub(crate) fn notify_all(&self) {
        let mut sleepers = lock(&self.sleepers);
        for id in sleepers.drain(..) {
            self.state
                .fetch_add(ONE_UNPARKED + ONE_SEARCHING, Ordering::SeqCst);
            self.parkers[id].unpark();
        }
    }

    /// Becomes a searcher: schedulers wake nobody until it stops searching
    /// or parks.
    pub(crate) fn start_searching(&self) {
        self.state.fetch_add(ONE_SEARCHING, Ordering::SeqCst);
    }

    /// A searcher found work. Returns `true` if it was the last searcher:
    /// the caller must then [`notify_one`](Self::notify_one) if work is
    /// left, since schedulers did not wake anyone while it searched.
    pub(crate) fn stop_searching(&self) -> bool {
        let s = State(self.state.fetch_sub(ONE_SEARCHING, Ordering::SeqCst));
        // Pairs with the fence in `notify_one`: the caller's look at the
        // queue that follows sees any push whose sender saw it searching.
        fence(Ordering::SeqCst);
        s.searching() == 1
    }

    /// Parks poller `id` (searching or not) until a scheduler, a poller or
    /// shutdown wakes it; it is then counted as unparked and searching.
    ///
    /// After registering as parked it looks once more: if `stopping()` it
    /// wakes everyone, else if `has_work()` it notifies as a scheduler would
    /// (possibly waking itself).
    pub(crate) fn park(
        &self,
        id: usize,
        searching: bool,
        has_work: impl Fn() -> bool,
        stopping: impl Fn() -> bool,
    ) {
        {
            let mut sleepers = lock(&self.sleepers);
            let dec = ONE_UNPARKED + if searching { ONE_SEARCHING } else { 0 };
            self.state.fetch_sub(dec, Ordering::SeqCst);
            sleepers.push(id);
        }
        // Pairs with the fence in `notify_one` (see `stop_searching`).
        fence(Ordering::SeqCst);
        if stopping() {
            self.notify_all();
        } else if has_work() {
            self.notify_one();
        }
        self.parkers[id].park();
    }

    /// A poller leaves for good (shutdown, or its handler panicked). It
    /// stays counted as unparked, so schedulers keep waking the others; if
    /// it was the last searcher and work is queued, another one is woken.
    pub(crate) fn exit(&self, searching: bool, has_work: impl Fn() -> bool) {
        if searching && self.stop_searching() && has_work() {
            self.notify_one();
        }
    }

    /// Pollers parked right now.
    pub(crate) fn parked(&self) -> usize {
        lock(&self.sleepers).len()
    }

    /// `(searching, unparked)` for tests.
    #[cfg(any(test, loom))]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let s = State(self.state.load(Ordering::SeqCst));
        (s.searching(), s.unparked())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::thread::JoinHandle;

    /// Parks poller 1 of `idle` on a new thread (nothing to do, no
    /// shutdown) and returns once it is in the sleeper list.
    fn park_poller_1(idle: &Arc<Idle>, woke: &Arc<AtomicBool>) -> JoinHandle<()> {
        let (idle2, woke) = (Arc::clone(idle), Arc::clone(woke));
        let handle = std::thread::spawn(move || {
            idle2.park(1, false, || false, || false);
            woke.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        while idle.parked() != 1 {
            std::thread::yield_now();
        }
        handle
    }

    #[test]
    fn nobody_is_woken_while_every_poller_is_unparked() {
        let idle = Idle::new(2);
        assert_eq!(idle.counts(), (0, 2));
        assert!(!idle.notify_one());
    }

    #[test]
    fn a_searcher_absorbs_notifications_and_the_last_one_must_pass_work_on() {
        let idle = Arc::new(Idle::new(2));
        let woke = Arc::new(AtomicBool::new(false));
        let parked = park_poller_1(&idle, &woke);
        idle.start_searching();
        idle.start_searching();
        assert_eq!(idle.counts(), (2, 1));
        // A poller is parked, but searchers will find the work.
        assert!(!idle.notify_one());
        assert!(!idle.stop_searching(), "one searcher is left");
        assert!(!idle.notify_one());
        assert!(idle.stop_searching(), "the last searcher must pass work on");
        assert!(idle.notify_one());
        parked.join().unwrap();
        assert_eq!(idle.counts(), (1, 2));
    }

    #[test]
    fn a_parked_poller_is_woken_once_and_counted_as_searching() {
        let idle = Arc::new(Idle::new(2));
        let woke = Arc::new(AtomicBool::new(false));
        let parked = park_poller_1(&idle, &woke);
        assert!(!woke.load(std::sync::atomic::Ordering::SeqCst));
        assert!(idle.notify_one());
        parked.join().unwrap();
        assert!(woke.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(idle.counts(), (1, 2));
        // A searcher exists now: the next notification wakes nobody.
        assert!(!idle.notify_one());
    }

    #[test]
    fn parking_with_work_in_sight_wakes_itself() {
        let idle = Idle::new(1);
        // Returns at once: the re-check saw work and woke this very poller.
        idle.park(0, false, || true, || false);
        assert_eq!(idle.counts(), (1, 1));
        assert!(idle.stop_searching());
    }

    #[test]
    fn exiting_searcher_passes_work_on() {
        let idle = Arc::new(Idle::new(2));
        let woke = Arc::new(AtomicBool::new(false));
        let parked = park_poller_1(&idle, &woke);
        idle.start_searching();
        idle.exit(true, || true);
        parked.join().unwrap();
        assert!(woke.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(idle.counts(), (1, 2));
    }
}
