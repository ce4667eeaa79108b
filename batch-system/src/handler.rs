//! The poll-handler traits: what a batch system calls on each poller thread.

use std::ops::DerefMut;

use crate::fsm::Fsm;

/// What [`PollHandler::handle_normal`] tells the poller to do with an FSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleResult {
    /// The FSM has more work: keep it in the batch for the next round
    /// (subject to the poller's fairness limit).
    KeepProcessing,
    /// The FSM is done for now. `progress` is the number of messages the
    /// handler deliberately left in the mailbox (usually 0, or the queue
    /// length it observed when it stopped): after the round the poller
    /// releases the FSM, and takes it straight back if more than `progress`
    /// messages are queued. With `skip_end` the FSM is released before
    /// [`PollHandler::end`], where its slot shows `None`.
    StopAt {
        /// Messages deliberately left in the mailbox.
        progress: usize,
        /// Release before `end` instead of after it.
        skip_end: bool,
    },
}

impl HandleResult {
    /// Shorthand for [`HandleResult::StopAt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use batch_system::HandleResult;
    /// assert_eq!(
    ///     HandleResult::stop_at(0, false),
    ///     HandleResult::StopAt { progress: 0, skip_end: false }
    /// );
    /// ```
    pub fn stop_at(progress: usize, skip_end: bool) -> HandleResult {
        HandleResult::StopAt { progress, skip_end }
    }
}

/// The work a poller thread does on its batch of FSMs.
///
/// One handler lives on each poller thread (built by a [`HandlerBuilder`]).
/// Each round the poller calls, in order:
///
/// ```text
/// begin(batch_size)
/// handle_control(control)        if the control FSM is in this batch
/// handle_normal(fsm)             for every normal FSM in the batch
/// light_end(batch)
/// end(batch)                     once per round: the place for group commit
/// ... release idle FSMs, top the batch up, repeat ...
/// pause()                        before the poller blocks waiting for work
/// ```
///
/// The FSM arguments are `impl DerefMut<Target = N>` so a simulation can
/// drive a handler directly with plain `Box<N>`s, without threads.
pub trait PollHandler<N: Fsm, C: Fsm>: Send + 'static {
    /// Starts a round over `batch_size` normal FSMs.
    fn begin(&mut self, batch_size: usize);

    /// Handles the control FSM. `Some(progress)` releases it (see
    /// [`HandleResult::StopAt`]); `None` keeps it for the next round.
    fn handle_control(&mut self, control: &mut C) -> Option<usize>;

    /// Handles one normal FSM, usually by draining its receiver.
    fn handle_normal(&mut self, normal: &mut impl DerefMut<Target = N>) -> HandleResult;

    /// Called after all FSMs of the round are handled, before [`end`](Self::end).
    fn light_end(&mut self, _batch: &mut [Option<impl DerefMut<Target = N>>]) {}

    /// Ends the round. Slots of FSMs released with `skip_end` are `None`.
    fn end(&mut self, batch: &mut [Option<impl DerefMut<Target = N>>]);

    /// Called when the poller has no work and is about to block.
    fn pause(&mut self) {}
}

/// Builds one [`PollHandler`] per poller thread.
///
/// # Examples
///
/// ```
/// use batch_system::test_runner::{Builder, Runner};
/// use batch_system::HandlerBuilder;
///
/// let mut builder = Builder::new();
/// let _handler = HandlerBuilder::<Runner, Runner>::build(&mut builder);
/// ```
pub trait HandlerBuilder<N: Fsm, C: Fsm> {
    /// The handler type.
    type Handler: PollHandler<N, C>;

    /// Builds a handler for one poller thread.
    fn build(&mut self) -> Self::Handler;
}
