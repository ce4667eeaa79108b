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
