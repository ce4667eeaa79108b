//! The poller loop, [`BatchSystem`] and [`create_system`].

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use slog::{warn, Logger};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsm::Fsm;
use crate::handler::{HandleResult, HandlerBuilder, PollHandler};
use crate::health::Health;
use crate::log::default_logger;
use crate::mailbox::BasicMailbox;
use crate::mpsc::LooseBoundedSender;
use crate::router::{BatchRouter, Router};
use crate::scheduler::{ControlScheduler, FsmTypes, Injector, NormalScheduler};

/// Book-keeping for one normal FSM in a poller's batch.
struct Slot<N: Fsm> {
    mailbox: BasicMailbox<N>,
    /// When this poller took the FSM from the queue.
    since: Instant,
    result: HandleResult,
    stopped: bool,
    /// Set when a `skip_end` release found new messages and took the FSM back.
    reclaimed: Option<Box<N>>,
}

struct ControlSlot<C: Fsm> {
    fsm: Box<C>,
    mailbox: BasicMailbox<C>,
    since: Instant,
}

/// The FSMs one poller is working on. `fsms[i]` belongs to `slots[i]`; the
/// FSMs are kept in their own vector so handlers get `&mut [Option<Box<N>>]`.
struct Batch<N: Fsm, C: Fsm> {
    fsms: Vec<Option<Box<N>>>,
    slots: Vec<Slot<N>>,
    control: Option<ControlSlot<C>>,
}

impl<N: Fsm, C: Fsm> Drop for Batch<N, C> {
    /// Normally the batch is empty when dropped. If a handler panicked, the
    /// FSMs still in it die with it: close their mailboxes so senders get
    /// `Disconnected` instead of queueing messages nobody will handle.
    fn drop(&mut self) {
        for slot in &self.slots {
            slot.mailbox.close();
        }
        if let Some(control) = &self.control {
            control.mailbox.close();
        }
    }
}

impl<N: Fsm, C: Fsm> Batch<N, C> {
    fn with_capacity(cap: usize) -> Self {
        Batch {
            fsms: Vec::with_capacity(cap),
            slots: Vec::with_capacity(cap),
            control: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.fsms.is_empty() && self.control.is_none()
    }

    fn remove(&mut self, i: usize) {
        self.fsms.swap_remove(i);
        self.slots.swap_remove(i);
    }
}

/// Where a poll round is: which FSMs of the batch have been handled.
struct Round {
    /// When the round's FSMs were taken (for the fairness limit).
    now: Instant,
    /// Every FSM handled so far was kept with an empty mailbox.
    spinning: bool,
    control: ControlStep,
    /// The next normal FSM to handle (an index into the batch).
    next: usize,
}

/// The control FSM's part in a round.
enum ControlStep {
    /// Not looked at yet: handled first if the batch holds it.
    Pending,
    /// Not in the batch.
    Absent,
    /// Handled; what `handle_control` returned.
    Handled(Option<usize>),
}

/// After this many poll rounds in a row in which every FSM was kept with an
/// empty mailbox, a poller logs that its handler makes it spin.
pub(crate) const SPIN_WARN_ROUNDS: u64 = 100_000;

/// A searching poller first looks at the empty queue this many times with
/// a CPU pause between looks (well under a microsecond in all) ...
const SEARCH_SPINS: u32 = 16;
/// ... then this many times with a `yield_now` between looks, which hands
/// the core to any thread that wants it (the producer, on a busy machine)
/// and, on an idle core, keeps looking for some tens of microseconds before
/// the poller parks. Measured in `docs/benchmarks.md` (batch-bench).
const SEARCH_YIELDS: u32 = 64;

/// One poller thread's state.
struct Poller<N: Fsm, C: Fsm, H> {
    injector: Arc<Injector<N, C>>,
    /// This poller's id in the idle coordination (unused by a
    /// `ManualPoller`, which never parks).
    id: usize,
    /// Whether this poller counts as searching (see `idle.rs`).
    searching: bool,
    handler: H,
    max_batch_size: usize,
    reschedule_duration: Duration,
    /// Rounds in a row in which every FSM was kept with an empty mailbox.
    empty_rounds: u64,
    logger: Logger,
}

impl<N: Fsm, C: Fsm, H> Drop for Poller<N, C, H> {
    /// Leaving (shutdown, or a handler panic unwinding the thread): a
    /// searcher hands its duty on, so no queued FSM is left unseen.
    fn drop(&mut self) {
        let injector = &*self.injector;
        injector.idle.exit(self.searching, || !injector.is_empty());
    }
}

impl<N: Fsm, C: Fsm, H: PollHandler<N, C>> Poller<N, C, H> {
    /// Puts what arrived on the scheduler channel into the batch.
    fn accept(&mut self, item: FsmTypes<N, C>, batch: &mut Batch<N, C>, now: Instant) {
        match item {
            FsmTypes::Normal(mailbox) => {
                if let Some(fsm) = mailbox.take_fsm() {
                    batch.fsms.push(Some(fsm));
                    batch.slots.push(Slot {
                        mailbox,
                        since: now,
                        result: HandleResult::KeepProcessing,
                        stopped: false,
                        reclaimed: None,
                    });
                }
            }
            FsmTypes::Control(mailbox) => {
                if let Some(fsm) = mailbox.take_fsm() {
                    batch.control = Some(ControlSlot {
                        fsm,
                        mailbox,
                        since: now,
                    });
                }
            }
        }
    }

    /// Tops the batch up without blocking. Returns `false` if the queue
    /// had nothing at all.
    fn top_up(&mut self, batch: &mut Batch<N, C>, now: Instant) -> bool {
        let mut got = false;
        while batch.fsms.len() < self.max_batch_size {
            match self.injector.pop() {
                Some(item) => {
                    got = true;
                    self.accept(item, batch, now);
                }
                None => break,
            }
        }
        got
    }

    fn poll(mut self) {
        let mut batch = Batch::with_capacity(self.max_batch_size);
        loop {
            let now = Instant::now();
            let got = self.top_up(&mut batch, now);
            if got && self.searching {
                // Found work. Schedulers woke nobody while we searched: if
                // we were the last searcher and work is left, wake a poller.
                self.searching = false;
                if self.injector.idle.stop_searching() && !self.injector.is_empty() {
                    self.injector.idle.notify_one();
                }
            }
            if batch.is_empty() {
                if got {
                    // Only FSMs closed meanwhile: look again.
                    continue;
                }
                // Nothing queued. Draining for shutdown: done.
                if self.injector.is_stopping() {
                    break;
                }
                self.wait_for_work();
                continue;
            }
            self.round(&mut batch, now);
        }
    }

    /// Waits until the queue may have work: searches for a short while,
    /// then parks until woken.
    fn wait_for_work(&mut self) {
        self.handler.pause();
        let injector = Arc::clone(&self.injector);
        if !self.searching {
            injector.idle.start_searching();
            self.searching = true;
        }
        for i in 0..SEARCH_SPINS + SEARCH_YIELDS {
            if !injector.is_empty() || injector.is_stopping() {
                return;
            }
            if i < SEARCH_SPINS {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
        injector.idle.park(
            self.id,
            self.searching,
            || !injector.is_empty(),
            || injector.is_stopping(),
        );
        // Whoever woke us counted us as searching.
        self.searching = true;
    }

    fn round(&mut self, batch: &mut Batch<N, C>, now: Instant) {
        let mut round = self.begin_round(batch, now);
        while self.handle_next(batch, &mut round) {}
        self.end_round(batch, round);
    }

    /// Starts a round over the FSMs in `batch`: `begin`.
    fn begin_round(&mut self, batch: &Batch<N, C>, now: Instant) -> Round {
        self.handler.begin(batch.fsms.len());
        Round {
            now,
            // Stays true while every FSM handled so far was kept for another
            // round with nothing in its mailbox: a round that did no work.
            // (The emptiness checks only run while that still holds, so a
            // round with real work pays for one or two of them at most.)
            spinning: true,
            control: ControlStep::Pending,
            next: 0,
        }
    }

    /// Handles the next FSM of the round: the control FSM first (if the
    /// batch holds it), then the normal FSMs in batch order. Returns
    /// `false` when every FSM of the round has been handled.
    fn handle_next(&mut self, batch: &mut Batch<N, C>, round: &mut Round) -> bool {
        if let ControlStep::Pending = round.control {
            round.control = ControlStep::Absent;
            if let Some(control) = batch.control.as_mut() {
                let was_empty = control.mailbox.is_empty();
                let result = self.handler.handle_control(&mut control.fsm);
                round.spinning = was_empty && result.is_none() && control.mailbox.is_empty();
                round.control = ControlStep::Handled(result);
                return true;
            }
        }
        let i = round.next;
        let (Some(fsm_slot), Some(slot)) = (batch.fsms.get_mut(i), batch.slots.get_mut(i)) else {
            return false;
        };
        round.next += 1;
        let Some(fsm) = fsm_slot.as_mut() else {
            return true;
        };
        if slot.mailbox.is_closed() {
            // Closed by someone else (its address removed or given to a
            // new FSM) while this poller held it, before its turn: it is
            // dead, as an idle FSM is when its mailbox is closed. It is not
            // handled; it is dropped with its queued messages when the
            // round hands its FSMs back, and `end` sees `None` in its slot.
            drop(fsm_slot.take());
            return true;
        }
        let was_empty = round.spinning && slot.mailbox.is_empty();
        slot.result = self.handler.handle_normal(fsm);
        slot.stopped = fsm.is_stopped();
        round.spinning = was_empty
            && slot.result == HandleResult::KeepProcessing
            && !slot.stopped
            && slot.mailbox.is_empty();
        if let (
            false,
            HandleResult::StopAt {
                progress,
                skip_end: true,
            },
        ) = (slot.stopped, slot.result)
        {
            if let Some(fsm) = fsm_slot.take() {
                slot.reclaimed = release(&slot.mailbox, fsm, progress);
            }
        }
        true
    }

    /// Ends a round whose FSMs have all been handled: `light_end`, `end`,
    /// then each FSM is released, kept or rescheduled.
    fn end_round(&mut self, batch: &mut Batch<N, C>, round: Round) {
        self.handler.light_end(&mut batch.fsms);
        self.handler.end(&mut batch.fsms);
        self.check_spinning(round.spinning);

        if let ControlStep::Handled(result) = round.control {
            self.finish_control(batch, result, round.now);
        }
        for i in (0..batch.fsms.len()).rev() {
            self.finish_normal(batch, i, round.now);
        }
    }

    /// Counts rounds that did no work and warns once per streak of
    /// [`SPIN_WARN_ROUNDS`]: a handler that keeps FSMs with empty mailboxes
    /// (`KeepProcessing`, or `None` from `handle_control`) makes its poller
    /// run empty rounds at full speed instead of waiting for messages.
    fn check_spinning(&mut self, spinning: bool) {
        if !spinning {
            self.empty_rounds = 0;
            return;
        }
        self.empty_rounds += 1;
        if self.empty_rounds == SPIN_WARN_ROUNDS {
            warn!(
                self.logger,
                "poller is spinning: its handler kept every FSM of the batch with an empty \
                 mailbox round after round; return HandleResult::StopAt from handle_normal \
                 (Some from handle_control) once the mailbox is drained";
                "rounds" => self.empty_rounds,
                "thread" => thread::current().name().unwrap_or("?").to_owned(),
            );
        }
    }

    fn finish_control(&mut self, batch: &mut Batch<N, C>, result: Option<usize>, now: Instant) {
        let Some(control) = batch.control.take() else {
            return;
        };
        if control.fsm.is_stopped() {
            control.mailbox.close();
            return;
        }
        let result = match result {
            None if self.injector.is_stopping() => Some(0),
            r => r,
        };
        let keep = match result {
            Some(progress) => {
                release(&control.mailbox, control.fsm, progress).map(|fsm| ControlSlot {
                    fsm,
                    mailbox: control.mailbox,
                    since: control.since,
                })
            }
            None => Some(control),
        };
        if let Some(control) = keep {
            if now.saturating_duration_since(control.since) >= self.reschedule_duration {
                control.mailbox.park_notified(control.fsm);
                self.injector.push(FsmTypes::Control(control.mailbox));
            } else {
                batch.control = Some(control);
            }
        }
    }

    fn finish_normal(&mut self, batch: &mut Batch<N, C>, i: usize, now: Instant) {
        let (Some(fsm_slot), Some(slot)) = (batch.fsms.get_mut(i), batch.slots.get_mut(i)) else {
            return;
        };
        let fsm = match (fsm_slot.take(), slot.reclaimed.take()) {
            // Released before `end` and taken back: it has new messages.
            (None, Some(fsm)) => fsm,
            (None, None) => {
                batch.remove(i);
                return;
            }
            (Some(fsm), _) if slot.stopped => {
                slot.mailbox.close();
                drop(fsm);
                batch.remove(i);
                return;
            }
            (Some(fsm), _) => match slot.result {
                // Draining for shutdown: keep an FSM only while it has
                // queued messages, so a handler that always asks for more
                // cannot hold the shutdown forever.
                HandleResult::KeepProcessing if self.injector.is_stopping() => {
                    match release(&slot.mailbox, fsm, 0) {
                        Some(fsm) => fsm,
                        None => {
                            batch.remove(i);
                            return;
                        }
                    }
                }
                HandleResult::KeepProcessing => fsm,
                HandleResult::StopAt { progress, .. } => {
                    match release(&slot.mailbox, fsm, progress) {
                        Some(fsm) => fsm,
                        None => {
                            batch.remove(i);
                            return;
                        }
                    }
                }
            },
        };
        if now.saturating_duration_since(slot.since) >= self.reschedule_duration {
            // Fairness: give FSMs waiting in the queue a turn.
            slot.mailbox.park_notified(fsm);
            self.injector.push(FsmTypes::Normal(slot.mailbox.clone()));
            batch.remove(i);
        } else {
            *fsm_slot = Some(fsm);
        }
    }
}

/// Drives a [`BatchSystem`]'s FSMs by hand, on the caller's thread: for
/// deterministic simulation and step-by-step tests.
///
/// Made by [`BatchSystem::manual_poller`]. Each
/// [`poll_once`](Self::poll_once) runs exactly the round a poller thread
/// runs (`begin` → `handle_control` → `handle_normal`* → `light_end` →
/// `end`), then hands every FSM back: idle ones are released to their
/// mailboxes, and those with work left (`KeepProcessing`, or messages that
/// arrived during the round) are scheduled again, so the next call sees
/// them. No FSM stays in the poller between rounds, and no wall-clock time
/// influences what happens (the fairness limit is zero: every FSM kept
/// busy goes back to the end of the queue).
///
/// # Split rounds: several pollers of one system
///
/// A system may have several manual pollers, as it may have several poller
/// threads: each takes FSMs from the same queue, and an FSM is only ever
/// in one poller (the mailbox hands it to whoever wins its notification).
/// `poll_once` runs a whole round at once, so pollers driven only by it
/// never overlap. To interleave them the way threads do, split a round
/// into its steps:
///
/// - [`begin_round`](Self::begin_round) takes the scheduled FSMs (up to
///   `max_batch_size` normal FSMs, plus the control FSM if it is
///   scheduled) and calls `begin`. From now on the poller **holds** them:
///   another poller of the system cannot get them, and messages sent to
///   them queue in their mailboxes, exactly as while a thread works on
///   them;
/// - [`handle_next`](Self::handle_next) handles one held FSM (the control
///   FSM first, then the normal FSMs in the order they were taken);
/// - [`finish_round`](Self::finish_round) handles the FSMs not handled yet,
///   calls `light_end` and `end`, and hands every FSM back as `poll_once`
///   does (an FSM that got messages while held is scheduled again).
///
/// Between these steps the caller may run any other poller's steps, send
/// messages, or drop the system (a crash: held FSMs are dropped with their
/// poller and their mailboxes closed). `poll_once` is `begin_round`
/// followed by `finish_round`.
///
/// Do not mix with [`BatchSystem::spawn`] on the same system unless you
/// want the threads and the caller to compete for FSMs.
///
/// # Examples
///
/// ```
/// use batch_system::test_runner::{Builder, Message, Runner};
/// use batch_system::{create_system, BasicMailbox, HandlerBuilder};
///
/// let (control_tx, control) = Runner::new(16);
/// let (router, system) = create_system::<Runner, Runner>(1, 8, control_tx, control);
/// let mut builder = Builder::new();
/// let metrics = builder.metrics();
/// let mut poller = system.manual_poller(builder.build());
/// let (tx, runner) = Runner::new(16);
/// router.register(1, BasicMailbox::new(tx, runner));
/// router.send(1, Message::Count(3)).unwrap();
/// assert_eq!(poller.poll_once(), 1); // FSM 1 handled
/// assert_eq!(poller.poll_once(), 0); // nothing scheduled: idle
/// assert_eq!(metrics.handled(), 1);
/// ```
///
/// Two pollers, one holding an FSM while the other runs:
///
/// ```
/// use batch_system::test_runner::{Builder, Message, Runner};
/// use batch_system::{create_system, BasicMailbox, HandlerBuilder};
///
/// let (control_tx, control) = Runner::new(16);
/// let (router, system) = create_system::<Runner, Runner>(2, 8, control_tx, control);
/// let mut builder = Builder::new();
/// let mut first = system.manual_poller(builder.build());
/// let mut second = system.manual_poller(builder.build());
/// let (tx, runner) = Runner::new(16);
/// router.register(1, BasicMailbox::new(tx, runner));
/// router.send(1, Message::Count(1)).unwrap();
/// assert_eq!(first.begin_round().unwrap(), 1); // `first` holds FSM 1
/// assert!(first.handle_next()); // ... and has handled its message
/// router.send(1, Message::Count(2)).unwrap(); // queues in its mailbox
/// assert_eq!(second.poll_once(), 0); // FSM 1 is not scheduled for `second`
/// assert_eq!(first.finish_round().unwrap(), 1); // handed back, scheduled again
/// assert_eq!(second.poll_once(), 1); // `second` handles the new message
/// assert_eq!(router.mailbox(1).unwrap().len(), 0);
/// ```
pub struct ManualPoller<N: Fsm, C: Fsm, H> {
    poller: Poller<N, C, H>,
    batch: Batch<N, C>,
    /// The round begun by `begin_round` and not finished yet.
    round: Option<Round>,
}

impl<N: Fsm, C: Fsm, H: PollHandler<N, C>> ManualPoller<N, C, H> {
    /// Runs one poll round over every FSM scheduled so far (at most
    /// `max_batch_size` normal FSMs, plus the control FSM), without
    /// blocking. Returns how many FSMs were handled; 0 means nothing was
    /// scheduled (the system is idle, for this poller).
    ///
    /// With a round in progress (see [`begin_round`](Self::begin_round)),
    /// this finishes that round instead of starting another, and returns
    /// how many FSMs it held.
    pub fn poll_once(&mut self) -> usize {
        if self.round.is_none() && self.take_round() == 0 {
            return 0;
        }
        self.finish()
    }

    /// Starts a round: takes every FSM scheduled so far (as
    /// [`poll_once`](Self::poll_once) does) and calls the handler's
    /// `begin`. Returns how many FSMs the poller now holds; with 0 nothing
    /// was scheduled and no round was started. See
    /// [split rounds](Self#split-rounds-several-pollers-of-one-system).
    ///
    /// # Errors
    ///
    /// [`Error::RoundInProgress`] if a round begun earlier has not been
    /// finished; nothing changes.
    pub fn begin_round(&mut self) -> Result<usize> {
        if self.round.is_some() {
            return Err(Error::RoundInProgress);
        }
        Ok(self.take_round())
    }

    /// Handles the next FSM of the round in progress: the control FSM
    /// first, then the normal FSMs in the order they were taken. Returns
    /// `false`, doing nothing, when there is no round in progress or every
    /// FSM of it has been handled (then only
    /// [`finish_round`](Self::finish_round) is left).
    pub fn handle_next(&mut self) -> bool {
        match self.round.as_mut() {
            Some(round) => self.poller.handle_next(&mut self.batch, round),
            None => false,
        }
    }

    /// Finishes the round in progress: handles the FSMs not handled yet,
    /// calls `light_end` and `end`, and hands every FSM back (released to
    /// its mailbox, or scheduled again if it has work left or got messages
    /// while held). Returns how many FSMs the round held.
    ///
    /// # Errors
    ///
    /// [`Error::NoRoundInProgress`] without a round begun by
    /// [`begin_round`](Self::begin_round); nothing is called.
    pub fn finish_round(&mut self) -> Result<usize> {
        if self.round.is_none() {
            return Err(Error::NoRoundInProgress);
        }
        Ok(self.finish())
    }

    /// Whether a round begun by [`begin_round`](Self::begin_round) is in
    /// progress: the poller holds FSMs.
    pub fn in_round(&self) -> bool {
        self.round.is_some()
    }

    /// How many FSMs the poller holds (normal FSMs plus the control FSM);
    /// 0 between rounds.
    pub fn held(&self) -> usize {
        self.batch.fsms.len() + usize::from(self.batch.control.is_some())
    }

    /// Whether this poller holds the control FSM (in a round in progress).
    pub fn holds_control(&self) -> bool {
        self.batch.control.is_some()
    }

    /// Takes the scheduled FSMs and begins a round over them; 0 (and no
    /// round) when nothing was scheduled.
    fn take_round(&mut self) -> usize {
        let now = Instant::now();
        self.poller.top_up(&mut self.batch, now);
        if self.batch.is_empty() {
            return 0;
        }
        let held = self.held();
        self.round = Some(self.poller.begin_round(&self.batch, now));
        held
    }

    /// Completes the round in progress (0 without one).
    fn finish(&mut self) -> usize {
        let Some(mut round) = self.round.take() else {
            return 0;
        };
        let held = self.held();
        while self.poller.handle_next(&mut self.batch, &mut round) {}
        // With a zero fairness limit the round hands every FSM back (released
        // or scheduled again), so the batch is empty afterwards.
        self.poller.end_round(&mut self.batch, round);
        held
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.poller.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.poller.handler
    }

    /// How many rounds in a row did no work: every FSM handled was kept
    /// (`KeepProcessing` / `None`) with an empty mailbox. A warning is
    /// logged when this reaches 100,000 (see [`PollHandler`]'s contract).
    pub fn empty_rounds(&self) -> u64 {
        self.poller.empty_rounds
    }
}

/// Releases `fsm` to its mailbox; takes it straight back (and returns it)
/// if more than `progress` messages are queued after the release.
fn release<F: Fsm>(mailbox: &BasicMailbox<F>, fsm: Box<F>, progress: usize) -> Option<Box<F>> {
    mailbox.release(fsm);
    if mailbox.len() > progress {
        mailbox.try_take_idle()
    } else {
        None
    }
}

/// A pool of poller threads driving the FSMs registered with its router.
///
/// Created by [`create_system`]; started with [`spawn`](Self::spawn);
/// stopped with [`shutdown`](Self::shutdown) (also run on drop).
///
/// # Shutdown guarantees
///
/// `shutdown` first makes every send path refuse new messages
/// (`Disconnected`, message given back): the router, and every
/// [`Mailbox`](crate::Mailbox) or [`BasicMailbox`] used with this system's
/// schedulers, even one kept from long before; [`notify`](crate::Mailbox::notify)
/// does nothing any more. Then it lets the pollers drain: each poller exits
/// only when its batch is empty and nothing is queued for it. So every
/// message accepted before `shutdown` was called is handled (unless a
/// handler deliberately leaves messages, see [`HandleResult::StopAt`]).
/// While draining, an FSM is kept only while its mailbox has messages, even
/// if its handler asks to keep processing, and the control FSM is released
/// after each round. Since nothing new is accepted, the drain is bounded by
/// what was queued: neither a handler that re-arms itself nor another thread
/// that keeps sending can hold `shutdown` up. Then all threads are joined
/// and every mailbox is closed, dropping every FSM. A send racing with
/// `shutdown` is either refused or its message is dropped together with its
/// FSM (its destructor runs; it is never leaked).
///
/// # Poller panics
///
/// A handler that panics kills its poller thread and the FSMs in that
/// poller's batch (their mailboxes are closed: later sends to them get
/// `Disconnected`). The other pollers keep serving. When no poller is left,
/// every send is refused, as after shutdown. [`health`](Self::health)
/// reports it; [`shutdown`](Self::shutdown) re-raises the first panic.
pub struct BatchSystem<N: Fsm, C: Fsm> {
    router: BatchRouter<N, C>,
    injector: Arc<Injector<N, C>>,
    pool_size: usize,
    max_batch_size: usize,
    reschedule_duration: Duration,
    logger: Logger,
    workers: Vec<JoinHandle<()>>,
    shut_down: bool,
}

impl<N: Fsm, C: Fsm> BatchSystem<N, C> {
    /// The router of this system.
    pub fn router(&self) -> &BatchRouter<N, C> {
        &self.router
    }

    /// Sets the logger pollers started later (by [`spawn`](Self::spawn) or
    /// [`manual_poller`](Self::manual_poller)) report through. The default
    /// writes warnings to standard error in debug builds and discards
    /// everything in release builds.
    pub fn set_logger(&mut self, logger: Logger) {
        self.logger = logger;
    }

    /// The state of the poller threads: how many run, how many died of a
    /// handler panic, and whether sends are refused. See [`Health`].
    pub fn health(&self) -> Health {
        Health {
            parked: self.injector.idle.parked(),
            queued: self.injector.queued(),
            ..self.injector.lifecycle.health()
        }
    }

    /// Starts the poller threads, named `{name_prefix}-{i}`, each with a
    /// handler from `builder`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a pool size or batch size of 0,
    /// [`Error::AlreadySpawned`], [`Error::ShutDown`], or [`Error::Spawn`]
    /// if a thread could not be started (threads already started keep
    /// running until [`shutdown`](Self::shutdown)).
    pub fn spawn<B>(&mut self, name_prefix: String, mut builder: B) -> Result<()>
    where
        B: HandlerBuilder<N, C>,
    {
        if self.shut_down {
            return Err(Error::ShutDown);
        }
        if !self.workers.is_empty() {
            return Err(Error::AlreadySpawned);
        }
        Config {
            pool_size: self.pool_size,
            max_batch_size: self.max_batch_size,
            reschedule_duration: self.reschedule_duration,
        }
        .validate()?;
        for i in 0..self.pool_size {
            let name = format!("{name_prefix}-{i}");
            let poller = Poller {
                injector: Arc::clone(&self.injector),
                id: i,
                searching: false,
                handler: builder.build(),
                max_batch_size: self.max_batch_size,
                reschedule_duration: self.reschedule_duration,
                empty_rounds: 0,
                logger: self.logger.new(slog::o!("poller" => name.clone())),
            };
            let injector = Arc::clone(&self.injector);
            self.injector.lifecycle.poller_started();
            let spawned = thread::Builder::new().name(name.clone()).spawn(move || {
                match panic::catch_unwind(AssertUnwindSafe(|| poller.poll())) {
                    Ok(()) => injector.lifecycle.poller_exited(),
                    Err(payload) => {
                        // The batch (and its FSMs' mailboxes) is already
                        // closed: the unwind dropped it. Record the panic,
                        // then let the thread end with it for `shutdown`.
                        injector.lifecycle.poller_panicked(&*payload);
                        panic::resume_unwind(payload);
                    }
                }
            });
            match spawned {
                Ok(handle) => self.workers.push(handle),
                Err(source) => {
                    self.injector.lifecycle.poller_not_started();
                    return Err(Error::Spawn { name, source });
                }
            }
        }
        Ok(())
    }

    /// A poller driven by the caller instead of a thread: see
    /// [`ManualPoller`]. It takes FSMs from this system's queue like a
    /// spawned poller, up to this system's `max_batch_size` per round.
    /// Call it once per poller wanted: several manual pollers share the
    /// queue as poller threads do (each with its own handler).
    pub fn manual_poller<H: PollHandler<N, C>>(&self, handler: H) -> ManualPoller<N, C, H> {
        ManualPoller {
            poller: Poller {
                injector: Arc::clone(&self.injector),
                id: 0,
                searching: false,
                handler,
                max_batch_size: self.max_batch_size.max(1),
                reschedule_duration: Duration::ZERO,
                empty_rounds: 0,
                logger: self.logger.new(slog::o!("poller" => "manual")),
            },
            batch: Batch::with_capacity(self.max_batch_size.max(1)),
            round: None,
        }
    }

    /// Stops the system: refuses new sends, lets the pollers drain what was
    /// accepted, joins every thread, and drops every FSM. Idempotent.
    ///
    /// # Panics
    ///
    /// Re-raises the panic of a poller thread whose handler panicked.
    pub fn shutdown(&mut self) {
        if let Some(panic) = self.shutdown_inner() {
            std::panic::resume_unwind(panic);
        }
    }

    fn shutdown_inner(&mut self) -> Option<Box<dyn Any + Send>> {
        if self.shut_down {
            return None;
        }
        self.shut_down = true;
        self.router.broadcast_shutdown();
        self.injector.stop_pollers();
        let mut panic = None;
        for worker in self.workers.drain(..) {
            if let Err(p) = worker.join() {
                panic.get_or_insert(p);
            }
        }
        self.router.close_all();
        while let Some(item) = self.injector.pop() {
            match item {
                FsmTypes::Normal(mailbox) => drop(mailbox.take_fsm()),
                FsmTypes::Control(mailbox) => drop(mailbox.take_fsm()),
            }
        }
        panic
    }
}

impl<N: Fsm, C: Fsm> Drop for BatchSystem<N, C> {
    fn drop(&mut self) {
        // A poller panic is only re-raised by an explicit `shutdown()`.
        let _ = self.shutdown_inner();
    }
}

/// Creates a batch system and its router.
///
/// `sender` and `controller` must be paired: `controller` owns the
/// receiver of `sender`'s channel. Threads start with
/// [`BatchSystem::spawn`]. The fairness limit is
/// [`Config::default`]'s `reschedule_duration`; use
/// [`create_system_with_config`] to choose it.
///
/// # Examples
///
/// ```
/// use batch_system::test_runner::{Builder, Message, Runner};
/// use batch_system::{create_system, BasicMailbox};
///
/// let (control_tx, control) = Runner::new(16);
/// let (router, mut system) = create_system::<Runner, Runner>(2, 32, control_tx, control);
/// system.spawn("example".to_owned(), Builder::new()).unwrap();
/// let (tx, runner) = Runner::new(16);
/// router.register(7, BasicMailbox::new(tx, runner));
/// router.send(7, Message::Count(1)).unwrap();
/// system.shutdown();
/// assert!(router.send(7, Message::Count(2)).is_err());
/// ```
pub fn create_system<N: Fsm, C: Fsm>(
    pool_size: usize,
    max_batch_size: usize,
    sender: LooseBoundedSender<C::Message>,
    controller: Box<C>,
) -> (BatchRouter<N, C>, BatchSystem<N, C>) {
    let cfg = Config {
        pool_size,
        max_batch_size,
        ..Config::default()
    };
    create_system_with_config(&cfg, sender, controller)
}

/// Like [`create_system`], with every tunable taken from `cfg`. The config
/// is checked by [`BatchSystem::spawn`].
pub fn create_system_with_config<N: Fsm, C: Fsm>(
    cfg: &Config,
    sender: LooseBoundedSender<C::Message>,
    controller: Box<C>,
) -> (BatchRouter<N, C>, BatchSystem<N, C>) {
    let control_box = BasicMailbox::new(sender, controller);
    let injector = Arc::new(Injector::new(cfg.pool_size));
    let normal_scheduler = NormalScheduler {
        injector: Arc::clone(&injector),
    };
    let control_scheduler = ControlScheduler {
        injector: Arc::clone(&injector),
    };
    let router = Router::new(control_box, normal_scheduler, control_scheduler);
    let system = BatchSystem {
        router: router.clone(),
        injector,
        pool_size: cfg.pool_size,
        max_batch_size: cfg.max_batch_size,
        reschedule_duration: cfg.reschedule_duration,
        logger: default_logger(),
        workers: Vec::new(),
        shut_down: false,
    };
    (router, system)
}
