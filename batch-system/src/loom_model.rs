//! Only under `--cfg loom`: the crate-internal transitions of
//! [`FsmState`](crate::FsmState), opened up for the model checks in
//! `tests/loom.rs`. Normal builds have no such module, so code outside the
//! crate cannot drive an FSM's ownership word by hand.

use crate::fsm::FsmState;

/// An [`FsmState`] whose owner-only transitions the model checks may call.
pub struct ModelState<F>(FsmState<F>);

impl<F> ModelState<F> {
    /// An idle FSM parked in a new state.
    pub fn new(fsm: Box<F>) -> Self {
        ModelState(FsmState::new(fsm))
    }

    /// `IDLE -> NOTIFIED`; `true` for the winner.
    pub fn try_notify(&self) -> bool {
        self.0.try_notify()
    }

    /// The winner takes the FSM out (`None` if closed meanwhile).
    pub fn take_notified(&self) -> Option<Box<F>> {
        self.0.take_notified()
    }

    /// Parks the FSM and moves `NOTIFIED -> IDLE`.
    pub fn release(&self, fsm: Box<F>) {
        self.0.release(fsm)
    }

    /// Moves to `DROP`.
    pub fn close(&self) {
        self.0.close()
    }

    /// Whether closed.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// The idle-poller coordination (`idle.rs`), for the model of parking and
/// waking.
pub struct ModelIdle(crate::idle::Idle);

impl ModelIdle {
    /// Coordination for `pollers` pollers, all unparked.
    pub fn new(pollers: usize) -> Self {
        ModelIdle(crate::idle::Idle::new(pollers))
    }

    /// After pushing work: wake a parked poller unless one is searching.
    pub fn notify_one(&self) -> bool {
        self.0.notify_one()
    }

    /// Wake every parked poller.
    pub fn notify_all(&self) {
        self.0.notify_all()
    }

    /// Become a searcher.
    pub fn start_searching(&self) {
        self.0.start_searching()
    }

    /// A searcher found work; `true` if it was the last one.
    pub fn stop_searching(&self) -> bool {
        self.0.stop_searching()
    }

    /// Park poller `id` until woken.
    pub fn park(
        &self,
        id: usize,
        searching: bool,
        has_work: impl Fn() -> bool,
        stopping: impl Fn() -> bool,
    ) {
        self.0.park(id, searching, has_work, stopping)
    }

    /// A poller leaves for good.
    pub fn exit(&self, searching: bool, has_work: impl Fn() -> bool) {
        self.0.exit(searching, has_work)
    }

    /// `(searching, unparked)`.
    pub fn counts(&self) -> (usize, usize) {
        self.0.counts()
    }
}
