//! The [`Fsm`] trait, the [`FsmState`] ownership word, and the [`FsmScheduler`] trait.
//!
//! See [`FsmState`] for who owns an FSM at any moment.

#[cfg(loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(not(loom))]
use crossbeam_utils::atomic::AtomicCell;

use crate::mailbox::BasicMailbox;

/// A finite state machine driven by a [`BatchSystem`](crate::BatchSystem).
///
/// The FSM owns the receiving half of its mailbox channel and drains it in
/// [`PollHandler::handle_normal`](crate::PollHandler::handle_normal) (or
/// `handle_control` for the control FSM).
///
/// # Examples
///
/// ```
/// use batch_system::{mpsc, Fsm};
///
/// struct Counter {
///     rx: mpsc::Receiver<u64>,
///     total: u64,
///     stopped: bool,
/// }
///
/// impl Fsm for Counter {
///     type Message = u64;
///     fn is_stopped(&self) -> bool {
///         self.stopped
///     }
/// }
/// # let (_tx, rx) = mpsc::loose_bounded::<u64>(8);
/// # let c = Counter { rx, total: 0, stopped: false };
/// # assert!(!c.is_stopped());
/// ```
pub trait Fsm: Send + 'static {
    /// The message type the FSM's mailbox carries.
    type Message: Send;

    /// Whether the FSM has finished. The poller checks this after every
    /// handling round; a stopped FSM has its mailbox closed (later sends get
    /// `Disconnected`) and is dropped after the round's
    /// [`end`](crate::PollHandler::end). Remove its address with
    /// [`Router::close`](crate::Router::close).
    fn is_stopped(&self) -> bool;
}

/// Schedules notified FSMs onto pollers.
///
/// A scheduler receives the mailbox whose status its caller has just moved
/// to `NOTIFIED`; the poller that gets it takes the FSM out of the mailbox.
/// [`NormalScheduler`](crate::NormalScheduler) and
/// [`ControlScheduler`](crate::ControlScheduler) share one channel.
pub trait FsmScheduler {
    /// The kind of FSM this scheduler moves.
    type Fsm: Fsm;

    /// Hands a notified mailbox (and with it the right to take its FSM) to a
    /// poller.
    fn schedule(&self, mailbox: BasicMailbox<Self::Fsm>);

    /// Whether the FSMs this scheduler wakes can no longer be polled: the
    /// system is shutting down, or every poller thread has died. Sends
    /// through a [`BasicMailbox`] or [`Mailbox`](crate::Mailbox) with such
    /// a scheduler are refused with `Disconnected` (the message comes back),
    /// and [`notify`](BasicMailbox::notify) does nothing.
    ///
    /// The default is `false`: a scheduler that never stops.
    #[inline]
    fn is_stopped(&self) -> bool {
        false
    }

    /// Makes [`is_stopped`](Self::is_stopped) return `true` from now on;
    /// called by [`Router::broadcast_shutdown`](crate::Router::broadcast_shutdown).
    /// The default does nothing.
    fn stop(&self) {}
}

const NOTIFIED: usize = 0;
const IDLE: usize = 1;
const DROP: usize = 2;

/// The state of one FSM as seen by its mailbox: `NOTIFIED`, `IDLE` or `DROP`,
/// plus the parking slot for the FSM while it is idle.
///
/// # Who owns an FSM
///
/// An FSM is always in exactly one place: parked inside its mailbox's
/// [`FsmState`] (status `IDLE`), or *notified* (status `NOTIFIED`): owned by
/// whoever won the `IDLE -> NOTIFIED` compare-and-swap, which is a scheduling
/// token on its way to a poller or a poller holding the FSM in its batch.
///
/// ```text
///            sender: push msg, CAS IDLE->NOTIFIED, schedule token
///   +------+ ------------------------------------------------> +----------+
///   | IDLE |                                                   | NOTIFIED |
///   +------+ <------------------------------------------------ +----------+
///      |      poller: park FSM, CAS NOTIFIED->IDLE, re-check len     |
///      |                                                             |
///      +------------------ close(): swap to DROP --------------------+
///                                  |
///                              +------+   IDLE  -> closer drops the FSM
///                              | DROP |   NOTIFIED -> owner drops it on release
///                              +------+
/// ```
///
/// Only the compare-and-swap winner moves the FSM, so it is never handed to
/// two pollers. A message pushed while the FSM is being released is never
/// stranded: the poller parks the FSM, flips the status to `IDLE`, then reads
/// the queue length again and takes the FSM back if messages arrived (all
/// with sequentially consistent ordering, so either the sender sees `IDLE`
/// and schedules, or the poller sees the message).
///
/// All transitions are
/// compare-and-swaps or swaps on one word; the parking slot is a lock-free
/// [`AtomicCell`], so there is no lock and no `unsafe`.
///
/// The transitions themselves are private to this crate: only the
/// mailbox, the router and the pollers move an FSM, so no caller can take
/// an FSM it does not own. Outside code sees an `FsmState` only through
/// [`BasicMailbox`] (`notify`, `close`, `is_closed`).
pub struct FsmState<F> {
    status: AtomicUsize,
    data: Slot<F>,
}

/// Where an idle FSM is parked: a lock-free atomic cell.
#[cfg(not(loom))]
type Slot<F> = AtomicCell<Option<Box<F>>>;

/// Under `--cfg loom` (the model checker in `tests/loom.rs`), a loom mutex
/// stands in for the atomic cell: every `take` and `store` stays one atomic
/// step, and loom can explore how they interleave with the status word.
#[cfg(loom)]
type Slot<F> = loom_slot::Slot<F>;

#[cfg(loom)]
mod loom_slot {
    /// An `Option<Box<F>>` whose `take` and `store` are single steps.
    pub(crate) struct Slot<F>(loom::sync::Mutex<Option<Box<F>>>);

    impl<F> Slot<F> {
        pub(crate) fn new(v: Option<Box<F>>) -> Self {
            Slot(loom::sync::Mutex::new(v))
        }

        pub(crate) fn take(&self) -> Option<Box<F>> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
        }

        pub(crate) fn store(&self, v: Option<Box<F>>) {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = v;
        }
    }
}

impl<F> std::fmt::Debug for FsmState<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status.load(Ordering::SeqCst) {
            NOTIFIED => "NOTIFIED",
            IDLE => "IDLE",
            _ => "DROP",
        };
        f.debug_struct("FsmState").field("status", &status).finish()
    }
}

impl<F> FsmState<F> {
    /// Creates the state of an idle FSM parked in the slot.
    pub fn new(fsm: Box<F>) -> FsmState<F> {
        FsmState {
            status: AtomicUsize::new(IDLE),
            data: Slot::new(Some(fsm)),
        }
    }

    /// Tries `IDLE -> NOTIFIED`. Returns `true` when the caller won and now
    /// owns the right to take the FSM (it must schedule it).
    #[inline]
    pub(crate) fn try_notify(&self) -> bool {
        self.status.load(Ordering::SeqCst) == IDLE
            && self
                .status
                .compare_exchange(IDLE, NOTIFIED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    /// Takes the FSM out of the slot. Only the owner of the `NOTIFIED`
    /// status may call this; returns `None` if the state was closed meanwhile
    /// (the FSM is then dropped here).
    pub(crate) fn take_notified(&self) -> Option<Box<F>> {
        let fsm = self.data.take();
        if self.status.load(Ordering::SeqCst) == DROP {
            drop(fsm);
            return None;
        }
        fsm
    }

    /// Parks `fsm` back and moves `NOTIFIED -> IDLE`. If the state was closed
    /// meanwhile, the FSM is dropped instead.
    pub(crate) fn release(&self, fsm: Box<F>) {
        self.data.store(Some(fsm));
        if self
            .status
            .compare_exchange(NOTIFIED, IDLE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // Closed while we owned it: we still own it, so drop it.
            drop(self.data.take());
        }
    }

    /// Parks `fsm` while keeping the status `NOTIFIED` (the caller passes the
    /// ownership on, e.g. by rescheduling the mailbox).
    pub(crate) fn park_notified(&self, fsm: Box<F>) {
        self.data.store(Some(fsm));
    }

    /// Moves the state to `DROP`. If the FSM was idle it is dropped now;
    /// otherwise its current owner drops it when releasing it.
    pub(crate) fn close(&self) {
        if self.status.swap(DROP, Ordering::SeqCst) == IDLE {
            drop(self.data.take());
        }
    }

    /// Whether the state has been closed (see [`BasicMailbox::close`]).
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.status.load(Ordering::SeqCst) == DROP
    }
}

impl<F> Drop for FsmState<F> {
    fn drop(&mut self) {
        // Drop a parked FSM before anything else of the mailbox goes away.
        drop(self.data.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_notifier_wins_until_release() {
        let state = FsmState::new(Box::new(5u32));
        assert!(state.try_notify());
        assert!(!state.try_notify());
        let fsm = state.take_notified().unwrap();
        assert_eq!(*fsm, 5);
        assert!(!state.try_notify());
        state.release(fsm);
        assert!(state.try_notify());
        assert_eq!(state.take_notified().map(|b| *b), Some(5));
    }

    #[test]
    fn close_drops_idle_fsm_at_once_and_notified_fsm_on_release() {
        use std::sync::Arc;
        let token = Arc::new(());
        let state = FsmState::new(Box::new(token.clone()));
        state.close();
        assert_eq!(Arc::strong_count(&token), 1);
        assert!(state.is_closed());
        assert!(!state.try_notify());

        let state = FsmState::new(Box::new(token.clone()));
        assert!(state.try_notify());
        let fsm = state.take_notified().unwrap();
        state.close();
        assert_eq!(Arc::strong_count(&token), 2);
        state.release(fsm);
        assert_eq!(Arc::strong_count(&token), 1);
    }

    #[test]
    fn take_after_close_drops_the_fsm() {
        use std::sync::Arc;
        let token = Arc::new(());
        let state = FsmState::new(Box::new(token.clone()));
        assert!(state.try_notify());
        state.close();
        assert!(state.take_notified().is_none());
        assert_eq!(Arc::strong_count(&token), 1);
    }
}
