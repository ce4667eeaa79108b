//! The two schedulers of a batch system, sharing one channel to the pollers.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::fsm::{Fsm, FsmScheduler};
use crate::health::Lifecycle;
use crate::mailbox::BasicMailbox;

/// What travels on the scheduler channel to the pollers.
pub(crate) enum FsmTypes<N: Fsm, C: Fsm> {
    /// A notified normal FSM's mailbox.
    Normal(BasicMailbox<N>),
    /// The notified control FSM's mailbox.
    Control(BasicMailbox<C>),
    /// Wakes a blocked poller during shutdown.
    Empty,
}

/// Schedules normal FSMs onto the pollers of a [`BatchSystem`](crate::BatchSystem).
pub struct NormalScheduler<N: Fsm, C: Fsm> {
    pub(crate) sender: Sender<FsmTypes<N, C>>,
    pub(crate) lifecycle: Arc<Lifecycle>,
}

impl<N: Fsm, C: Fsm> Clone for NormalScheduler<N, C> {
    fn clone(&self) -> Self {
        NormalScheduler {
            sender: self.sender.clone(),
            lifecycle: Arc::clone(&self.lifecycle),
        }
    }
}

impl<N: Fsm, C: Fsm> FsmScheduler for NormalScheduler<N, C> {
    type Fsm = N;

    #[inline]
    fn schedule(&self, mailbox: BasicMailbox<N>) {
        // The receiver lives in the BatchSystem; if it is gone the system is
        // gone too, and the mailbox (with its parked FSM) is dropped here.
        let _ = self.sender.send(FsmTypes::Normal(mailbox));
    }

    #[inline]
    fn is_stopped(&self) -> bool {
        self.lifecycle.is_stopped()
    }

    fn stop(&self) {
        self.lifecycle.stop();
    }
}

/// Schedules the control FSM onto the pollers of a [`BatchSystem`](crate::BatchSystem).
pub struct ControlScheduler<N: Fsm, C: Fsm> {
    pub(crate) sender: Sender<FsmTypes<N, C>>,
    pub(crate) lifecycle: Arc<Lifecycle>,
}

impl<N: Fsm, C: Fsm> Clone for ControlScheduler<N, C> {
    fn clone(&self) -> Self {
        ControlScheduler {
            sender: self.sender.clone(),
            lifecycle: Arc::clone(&self.lifecycle),
        }
    }
}

impl<N: Fsm, C: Fsm> FsmScheduler for ControlScheduler<N, C> {
    type Fsm = C;

    #[inline]
    fn schedule(&self, mailbox: BasicMailbox<C>) {
        let _ = self.sender.send(FsmTypes::Control(mailbox));
    }

    #[inline]
    fn is_stopped(&self) -> bool {
        self.lifecycle.is_stopped()
    }

    fn stop(&self) {
        self.lifecycle.stop();
    }
}
