//! The two schedulers of a batch system and the queue they share with the
//! pollers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::fsm::{Fsm, FsmScheduler};
use crate::health::Lifecycle;
use crate::idle::Idle;
use crate::mailbox::BasicMailbox;

/// What travels on the scheduler queue to the pollers.
pub(crate) enum FsmTypes<N: Fsm, C: Fsm> {
    /// A notified normal FSM's mailbox.
    Normal(BasicMailbox<N>),
    /// The notified control FSM's mailbox.
    Control(BasicMailbox<C>),
}

/// The queue of notified FSMs, the idle-poller coordination and the life
/// cycle of one system, shared by its schedulers and pollers.
pub(crate) struct Injector<N: Fsm, C: Fsm> {
    sender: Sender<FsmTypes<N, C>>,
    receiver: Receiver<FsmTypes<N, C>>,
    pub(crate) idle: Idle,
    pub(crate) lifecycle: Lifecycle,
    /// Pollers drain and exit: set by `BatchSystem::shutdown`.
    stopping: AtomicBool,
}

impl<N: Fsm, C: Fsm> Injector<N, C> {
    /// An injector for `pollers` poller threads.
    pub(crate) fn new(pollers: usize) -> Self {
        // An unbounded list channel used as a FIFO queue: pollers only ever
        // `try_recv`, so crossbeam's own blocking and waking is never used.
        let (sender, receiver) = crossbeam_channel::unbounded();
        Injector {
            sender,
            receiver,
            idle: Idle::new(pollers),
            lifecycle: Lifecycle::default(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Queues `item` and wakes a parked poller if no poller is searching.
    #[inline]
    pub(crate) fn push(&self, item: FsmTypes<N, C>) {
        // Both halves live in `self`: the channel cannot be disconnected.
        let _ = self.sender.send(item);
        self.idle.notify_one();
    }

    #[inline]
    pub(crate) fn pop(&self) -> Option<FsmTypes<N, C>> {
        self.receiver.try_recv().ok()
    }

    /// FSMs waiting for a poller.
    pub(crate) fn queued(&self) -> usize {
        self.receiver.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Makes pollers drain and exit, and wakes the parked ones.
    pub(crate) fn stop_pollers(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.idle.notify_all();
    }
}

/// Schedules normal FSMs onto the pollers of a [`BatchSystem`](crate::BatchSystem).
pub struct NormalScheduler<N: Fsm, C: Fsm> {
    pub(crate) injector: Arc<Injector<N, C>>,
}

impl<N: Fsm, C: Fsm> Clone for NormalScheduler<N, C> {
    fn clone(&self) -> Self {
        NormalScheduler {
            injector: Arc::clone(&self.injector),
        }
    }
}

impl<N: Fsm, C: Fsm> FsmScheduler for NormalScheduler<N, C> {
    type Fsm = N;

    #[inline]
    fn schedule(&self, mailbox: BasicMailbox<N>) {
        self.injector.push(FsmTypes::Normal(mailbox));
    }

    #[inline]
    fn is_stopped(&self) -> bool {
        self.injector.lifecycle.is_stopped()
    }

    fn stop(&self) {
        self.injector.lifecycle.stop();
    }
}

/// Schedules the control FSM onto the pollers of a [`BatchSystem`](crate::BatchSystem).
pub struct ControlScheduler<N: Fsm, C: Fsm> {
    pub(crate) injector: Arc<Injector<N, C>>,
}

impl<N: Fsm, C: Fsm> Clone for ControlScheduler<N, C> {
    fn clone(&self) -> Self {
        ControlScheduler {
            injector: Arc::clone(&self.injector),
        }
    }
}

impl<N: Fsm, C: Fsm> FsmScheduler for ControlScheduler<N, C> {
    type Fsm = C;

    #[inline]
    fn schedule(&self, mailbox: BasicMailbox<C>) {
        self.injector.push(FsmTypes::Control(mailbox));
    }

    #[inline]
    fn is_stopped(&self) -> bool {
        self.injector.lifecycle.is_stopped()
    }

    fn stop(&self) {
        self.injector.lifecycle.stop();
    }
}
