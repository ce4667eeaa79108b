//! The poll-handler traits: what a batch system calls on each poller thread.

use std::ops::DerefMut;

use crate::fsm::Fsm;

/// What [`PollHandler::handle_normal`] tells the poller to do with an FSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleResult {
    /// The FSM has more work: keep it in the batch for the next round
    /// (subject to the poller's fairness limit). Never for an FSM with an
    /// empty mailbox and nothing else to do: that makes the poller spin
    /// (see [`PollHandler`]'s contract).
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
/// pause()                        before the poller waits for work
/// ```
///
/// The FSM arguments are `impl DerefMut<Target = N>` so a simulation can
/// drive a handler directly with plain `Box<N>`s, without threads.
///
/// # The contract
///
/// - **Drain, then let go.** `handle_normal` takes messages from the FSM's
///   receiver (`try_recv`, never a blocking `recv`), at most a budget per
///   round so one busy FSM shares its poller. When the mailbox is empty,
///   return [`HandleResult::stop_at(0, false)`](HandleResult::stop_at): the
///   poller releases the FSM to its mailbox and the next send wakes it
///   again (a message that raced in meanwhile is not lost: the poller takes
///   the FSM straight back). Return [`HandleResult::KeepProcessing`] only
///   when work is left (budget used up, or work the FSM queued for itself).
///   `handle_control` is the same: `Some(0)` when drained, `None` to keep.
/// - **Never keep an FSM with nothing to do.** `KeepProcessing` for an empty
///   mailbox (or `None` from `handle_control`) keeps the FSM in the batch,
///   so the poller runs empty rounds at full CPU (millions per second)
///   instead of waiting for work. A poller logs a warning through the
///   system's logger after 100,000 such rounds in a row (see
///   [`BatchSystem::set_logger`](crate::BatchSystem::set_logger)).
/// - **`end` is for the batch.** Work that can be shared by every FSM of
///   the round goes in `end`, once: write one log batch and sync once,
///   flush the network once, publish counters once. `end` sees the
///   round's FSMs (slots of FSMs released with `skip_end` are `None`).
///   `light_end` runs just before it, for work that must precede it.
/// - **Reaching other FSMs.** The handler is not given the router: pass a
///   clone in through the [`HandlerBuilder`] (as in the example below). A
///   handler sends like any other thread, and may
///   [`register`](crate::Router::register) FSMs (the control FSM usually
///   does: it is where messages for unknown addresses go).
/// - **Stopping an FSM.** Make [`Fsm::is_stopped`] return `true`; the
///   poller closes its mailbox and drops it after `end`. The poller does not
///   know the FSM's address: call [`Router::close`](crate::Router::close)
///   with it (an FSM that needs its address keeps it as a field).
/// - **Panics** kill the poller thread and the FSMs of its batch; see
///   [`BatchSystem`](crate::BatchSystem#poller-panics).
///
/// # Examples
///
/// A counter FSM and its handler; `end` publishes the round's count once.
///
/// ```
/// use std::ops::DerefMut;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// use batch_system::mpsc::{self, Receiver};
/// use batch_system::{
///     create_system, BasicMailbox, Fsm, HandleResult, HandlerBuilder, PollHandler,
/// };
///
/// struct Counter {
///     rx: Receiver<u64>,
///     sum: u64,
/// }
///
/// impl Fsm for Counter {
///     type Message = u64;
///     fn is_stopped(&self) -> bool {
///         false
///     }
/// }
///
/// struct CountHandler {
///     total: Arc<AtomicU64>,
///     round: u64,
/// }
///
/// impl PollHandler<Counter, Counter> for CountHandler {
///     fn begin(&mut self, _batch_size: usize) {
///         self.round = 0;
///     }
///
///     fn handle_control(&mut self, control: &mut Counter) -> Option<usize> {
///         while let Ok(n) = control.rx.try_recv() {
///             control.sum += n;
///         }
///         Some(0) // drained: release it
///     }
///
///     fn handle_normal(&mut self, fsm: &mut impl DerefMut<Target = Counter>) -> HandleResult {
///         for _ in 0..64 {
///             match fsm.rx.try_recv() {
///                 Ok(n) => {
///                     fsm.sum += n;
///                     self.round += n;
///                 }
///                 Err(_) => return HandleResult::stop_at(0, false), // empty: let go
///             }
///         }
///         if fsm.rx.is_empty() {
///             HandleResult::stop_at(0, false)
///         } else {
///             HandleResult::KeepProcessing // budget used up, more queued
///         }
///     }
///
///     fn end(&mut self, _batch: &mut [Option<impl DerefMut<Target = Counter>>]) {
///         // Once per round for the whole batch.
///         self.total.fetch_add(self.round, Ordering::SeqCst);
///     }
/// }
///
/// struct CountBuilder(Arc<AtomicU64>);
///
/// impl HandlerBuilder<Counter, Counter> for CountBuilder {
///     type Handler = CountHandler;
///     fn build(&mut self) -> CountHandler {
///         CountHandler { total: Arc::clone(&self.0), round: 0 }
///     }
/// }
///
/// let new_counter = || {
///     let (tx, rx) = mpsc::loose_bounded(1024);
///     (tx, Box::new(Counter { rx, sum: 0 }))
/// };
/// let (control_tx, control) = new_counter();
/// let (router, mut system) = create_system(2, 64, control_tx, control);
/// let total = Arc::new(AtomicU64::new(0));
/// system.spawn("count".to_owned(), CountBuilder(Arc::clone(&total))).unwrap();
/// for addr in 0..10 {
///     let (tx, fsm) = new_counter();
///     router.register(addr, BasicMailbox::new(tx, fsm));
///     router.send(addr, addr).unwrap();
/// }
/// system.shutdown(); // handles everything accepted first
/// assert_eq!(total.load(Ordering::SeqCst), 45);
/// ```
pub trait PollHandler<N: Fsm, C: Fsm>: Send + 'static {
    /// Starts a round over `batch_size` normal FSMs.
    fn begin(&mut self, batch_size: usize);

    /// Handles the control FSM. `Some(progress)` releases it (see
    /// [`HandleResult::StopAt`]); `None` keeps it for the next round (only
    /// while it has work left: see the contract above).
    fn handle_control(&mut self, control: &mut C) -> Option<usize>;

    /// Handles one normal FSM, usually by draining (part of) its receiver.
    /// Return `StopAt` once the mailbox is empty; see the contract above.
    fn handle_normal(&mut self, normal: &mut impl DerefMut<Target = N>) -> HandleResult;

    /// Called after all FSMs of the round are handled, before [`end`](Self::end).
    fn light_end(&mut self, _batch: &mut [Option<impl DerefMut<Target = N>>]) {}

    /// Ends the round. Slots of FSMs released with `skip_end`, and of FSMs
    /// whose mailbox was closed before their turn (not handled, see
    /// [`BasicMailbox::close`](crate::BasicMailbox::close)), are `None`.
    fn end(&mut self, batch: &mut [Option<impl DerefMut<Target = N>>]);

    /// Called when the poller has no work and is about to wait for some:
    /// the place to flush what should not wait for the next round.
    fn pause(&mut self) {}
}

/// Builds one [`PollHandler`] per poller thread.
///
/// [`BatchSystem::spawn`](crate::BatchSystem::spawn) calls
/// [`build`](Self::build) once per poller, on the spawning thread, before
/// the threads start. Whatever every handler needs (a router clone to reach
/// other FSMs, engines, metrics) is held by the builder and cloned into each
/// handler; a handler is then owned by its thread alone, so it needs no
/// locks for its own state. See [`PollHandler`] for a complete example and
/// `examples/accounts.rs` for one whose control FSM creates FSMs on demand.
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
