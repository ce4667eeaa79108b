//! [`BasicMailbox`]: an FSM's channel sender plus its [`FsmState`], and
//! [`Mailbox`], a mailbox bundled with the scheduler that wakes its FSM.

use std::sync::Arc;

use crate::fsm::{Fsm, FsmScheduler, FsmState};
use crate::mpsc::{LooseBoundedSender, SendError, TrySendError};

struct Inner<F: Fsm> {
    state: FsmState<F>,
    sender: LooseBoundedSender<F::Message>,
}

/// The mailbox of one FSM: the sending half of its channel and the
/// [`FsmState`] that parks the FSM while it is idle.
///
/// Cloning is cheap (one reference count); every clone is the same mailbox.
/// Sending to an idle FSM wakes it: the sender wins the `IDLE -> NOTIFIED`
/// compare-and-swap and hands the mailbox to the scheduler exactly once.
///
/// # Examples
///
/// ```
/// use batch_system::test_runner::{Message, Runner};
/// use batch_system::{BasicMailbox, FsmScheduler, mpsc::TrySendError};
/// use std::cell::RefCell;
///
/// // A scheduler that just records what it was asked to schedule.
/// #[derive(Default)]
/// struct Recorder(RefCell<Vec<BasicMailbox<Runner>>>);
/// impl FsmScheduler for Recorder {
///     type Fsm = Runner;
///     fn schedule(&self, mailbox: BasicMailbox<Runner>) {
///         self.0.borrow_mut().push(mailbox);
///     }
/// }
///
/// let (tx, runner) = Runner::new(1);
/// let mailbox = BasicMailbox::new(tx, runner);
/// let scheduler = Recorder::default();
/// mailbox.try_send(Message::Count(1), &scheduler).unwrap();
/// assert_eq!(scheduler.0.borrow().len(), 1); // woken once
/// // Capacity 1 is used up: the message comes back.
/// assert!(matches!(
///     mailbox.try_send(Message::Count(2), &scheduler),
///     Err(TrySendError::Full(Message::Count(2)))
/// ));
/// mailbox.force_send(Message::Count(3), &scheduler).unwrap();
/// assert_eq!(mailbox.len(), 2);
/// assert_eq!(scheduler.0.borrow().len(), 1); // already notified: not again
/// ```
pub struct BasicMailbox<F: Fsm> {
    inner: Arc<Inner<F>>,
}

impl<F: Fsm> Clone for BasicMailbox<F> {
    fn clone(&self) -> Self {
        BasicMailbox {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<F: Fsm> std::fmt::Debug for BasicMailbox<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicMailbox")
            .field("state", &self.inner.state)
            .field("len", &self.len())
            .finish()
    }
}

impl<F: Fsm> BasicMailbox<F> {
    /// Creates a mailbox for `fsm`, which must own the receiver paired with
    /// `sender`. The FSM starts idle, parked in the mailbox.
    pub fn new(sender: LooseBoundedSender<F::Message>, fsm: Box<F>) -> BasicMailbox<F> {
        BasicMailbox {
            inner: Arc::new(Inner {
                state: FsmState::new(fsm),
                sender,
            }),
        }
    }

    /// Number of queued messages.
    #[inline]
    pub fn len(&self) -> usize {
        self.inner.sender.len()
    }

    /// Whether no message is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.inner.sender.is_empty()
    }

    /// Whether the mailbox has been [closed](Self::close).
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.inner.state.is_closed()
    }

    /// Whether `self` and `other` are the same mailbox.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Sends `msg` within the channel capacity and wakes the FSM if idle.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] over capacity, [`TrySendError::Disconnected`]
    /// when the mailbox is closed, the FSM is gone, or `scheduler`'s system
    /// has stopped (see [`FsmScheduler::is_stopped`]); the message comes back.
    #[inline]
    pub fn try_send<S: FsmScheduler<Fsm = F>>(
        &self,
        msg: F::Message,
        scheduler: &S,
    ) -> Result<(), TrySendError<F::Message>> {
        if self.is_closed() || scheduler.is_stopped() {
            return Err(TrySendError::Disconnected(msg));
        }
        self.inner.sender.try_send(msg)?;
        self.wake(scheduler);
        Ok(())
    }

    /// Sends `msg` ignoring the capacity and wakes the FSM if idle.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message when the mailbox is closed, the FSM
    /// is gone, or `scheduler`'s system has stopped.
    #[inline]
    pub fn force_send<S: FsmScheduler<Fsm = F>>(
        &self,
        msg: F::Message,
        scheduler: &S,
    ) -> Result<(), SendError<F::Message>> {
        if self.is_closed() || scheduler.is_stopped() {
            return Err(SendError(msg));
        }
        self.inner.sender.force_send(msg)?;
        self.wake(scheduler);
        Ok(())
    }

    /// Wakes the FSM if it is idle, whether or not messages are queued.
    /// Does nothing once `scheduler`'s system has stopped.
    #[inline]
    pub fn notify<S: FsmScheduler<Fsm = F>>(&self, scheduler: &S) {
        if !scheduler.is_stopped() {
            self.wake(scheduler);
        }
    }

    /// Schedules the FSM if it is idle (the caller checked the scheduler).
    #[inline]
    fn wake<S: FsmScheduler<Fsm = F>>(&self, scheduler: &S) {
        if self.inner.state.try_notify() {
            scheduler.schedule(self.clone());
        }
    }

    /// Closes the mailbox: later sends fail with `Disconnected`. An idle FSM
    /// is dropped now (with any queued messages); one a poller holds is
    /// dropped by that poller at the end of its round, and is not handled
    /// any more: if its turn in the round has not come yet, the poller
    /// skips it (its slot in [`PollHandler::end`](crate::PollHandler::end)
    /// is `None`), so an FSM replaced by a new one under its address never
    /// acts after the replacement.
    pub fn close(&self) {
        self.inner.state.close();
    }

    /// Takes the FSM out; for the owner of the `NOTIFIED` status only.
    pub(crate) fn take_fsm(&self) -> Option<Box<F>> {
        self.inner.state.take_notified()
    }

    /// Tries to become the owner of an idle FSM and take it out.
    pub(crate) fn try_take_idle(&self) -> Option<Box<F>> {
        if self.inner.state.try_notify() {
            self.take_fsm()
        } else {
            None
        }
    }

    /// Parks the FSM and marks it idle; see [`FsmState::release`].
    pub(crate) fn release(&self, fsm: Box<F>) {
        self.inner.state.release(fsm);
    }

    /// Parks the FSM while staying notified (for rescheduling).
    pub(crate) fn park_notified(&self, fsm: Box<F>) {
        self.inner.state.park_notified(fsm);
    }
}

/// A [`BasicMailbox`] bundled with the scheduler that wakes its FSM, as
/// returned by [`Router::mailbox`](crate::Router::mailbox).
///
/// Sending through a `Mailbox` skips the router's address lookup: callers
/// that send to one FSM often can keep one. A kept `Mailbox` obeys shutdown
/// like the router: once the system stops (shutdown began, or every poller
/// died) its sends fail with `Disconnected`, so no sender can hold
/// [`BatchSystem::shutdown`](crate::BatchSystem::shutdown) up.
pub struct Mailbox<F: Fsm, S> {
    mailbox: BasicMailbox<F>,
    scheduler: S,
}

impl<F: Fsm, S: Clone> Clone for Mailbox<F, S> {
    fn clone(&self) -> Self {
        Mailbox {
            mailbox: self.mailbox.clone(),
            scheduler: self.scheduler.clone(),
        }
    }
}

impl<F: Fsm, S: FsmScheduler<Fsm = F>> Mailbox<F, S> {
    /// Bundles `mailbox` with `scheduler`.
    pub fn new(mailbox: BasicMailbox<F>, scheduler: S) -> Mailbox<F, S> {
        Mailbox { mailbox, scheduler }
    }

    /// See [`BasicMailbox::try_send`].
    ///
    /// # Errors
    ///
    /// As [`BasicMailbox::try_send`]; the message comes back.
    #[inline]
    pub fn try_send(&self, msg: F::Message) -> Result<(), TrySendError<F::Message>> {
        self.mailbox.try_send(msg, &self.scheduler)
    }

    /// See [`BasicMailbox::force_send`].
    ///
    /// # Errors
    ///
    /// As [`BasicMailbox::force_send`]; the message comes back.
    #[inline]
    pub fn force_send(&self, msg: F::Message) -> Result<(), SendError<F::Message>> {
        self.mailbox.force_send(msg, &self.scheduler)
    }

    /// Number of queued messages.
    pub fn len(&self) -> usize {
        self.mailbox.len()
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.mailbox.is_empty()
    }

    /// Wakes the FSM if it is idle, whether or not messages are queued; see
    /// [`BasicMailbox::notify`].
    #[inline]
    pub fn notify(&self) {
        self.mailbox.notify(&self.scheduler);
    }

    /// Whether the mailbox has been closed (its FSM stopped or was removed).
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }

    /// The underlying mailbox.
    pub fn basic(&self) -> &BasicMailbox<F> {
        &self.mailbox
    }
}
