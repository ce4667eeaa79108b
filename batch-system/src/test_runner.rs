//! A sample FSM and poll handler for tests and benchmarks (feature `test-runner`).
//!
//! [`Runner`] is an FSM whose [`Message`]s count, carry closures run on the
//! FSM, or stop it. [`Handler`] drains at most a budget of messages per FSM
//! per round (so a hot FSM shares its poller), and adds its counts to the
//! shared [`Metrics`] once per round in [`PollHandler::end`], the way a real
//! handler would group-commit.
//!
//! # Examples
//!
//! ```
//! use batch_system::test_runner::{Builder, Message, Runner};
//! use batch_system::{create_system, BasicMailbox};
//! use std::time::Duration;
//!
//! let (control_tx, control) = Runner::new(16);
//! let (router, mut system) = create_system::<Runner, Runner>(1, 8, control_tx, control);
//! let builder = Builder::new();
//! let metrics = builder.metrics();
//! system.spawn("runner".to_owned(), builder).unwrap();
//!
//! let (tx, runner) = Runner::new(16);
//! router.register(1, BasicMailbox::new(tx, runner));
//! let (done_tx, done_rx) = std::sync::mpsc::channel();
//! router.send(1, Message::Count(5)).unwrap();
//! router
//!     .send(1, Message::callback(move |r: &mut Runner| done_tx.send(r.sum()).unwrap()))
//!     .unwrap();
//! assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 5);
//! system.shutdown();
//! assert_eq!(metrics.handled(), 2);
//! ```

use std::ops::DerefMut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::fsm::Fsm;
use crate::handler::{HandleResult, HandlerBuilder, PollHandler};
use crate::mpsc::{self, LooseBoundedSender, Receiver};

/// A closure run on the [`Runner`] that receives it.
pub type Callback = Box<dyn FnOnce(&mut Runner) + Send>;

type DropHook = Box<dyn FnOnce(&Runner) + Send>;

/// Messages understood by [`Runner`].
pub enum Message {
    /// Adds the value to [`Runner::sum`].
    Count(u64),
    /// Runs the closure on the runner.
    Callback(Callback),
    /// Stops the runner: its mailbox is closed and it is dropped after the round.
    Stop,
}

impl Message {
    /// Wraps a closure as a [`Message::Callback`].
    pub fn callback(f: impl FnOnce(&mut Runner) + Send + 'static) -> Message {
        Message::Callback(Box::new(f))
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Count(n) => write!(f, "Count({n})"),
            Message::Callback(_) => f.write_str("Callback(..)"),
            Message::Stop => f.write_str("Stop"),
        }
    }
}

/// A sample FSM: counts messages, runs closures, and checks that it is
/// never handled by two threads at once.
pub struct Runner {
    receiver: Receiver<Message>,
    handled: u64,
    sum: u64,
    stopped: bool,
    busy: AtomicBool,
    on_drop: Option<DropHook>,
}

impl Runner {
    /// Creates a runner with a mailbox channel of `capacity` and returns the
    /// sender to build its [`BasicMailbox`](crate::BasicMailbox) with.
    pub fn new(capacity: usize) -> (LooseBoundedSender<Message>, Box<Runner>) {
        let (tx, rx) = mpsc::loose_bounded(capacity);
        let runner = Runner {
            receiver: rx,
            handled: 0,
            sum: 0,
            stopped: false,
            busy: AtomicBool::new(false),
            on_drop: None,
        };
        (tx, Box::new(runner))
    }

    /// Runs `f` on the runner when it is dropped (e.g. to report its counts).
    pub fn set_on_drop(&mut self, f: impl FnOnce(&Runner) + Send + 'static) {
        self.on_drop = Some(Box::new(f));
    }

    /// Messages this runner has handled.
    pub fn handled(&self) -> u64 {
        self.handled
    }

    /// Sum of the values of the [`Message::Count`]s handled.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Handles at most `budget` queued messages; returns how many it handled
    /// and whether messages remain.
    ///
    /// # Panics
    ///
    /// Panics if the runner finds itself already being handled (it would be
    /// handled by two threads at once).
    pub fn drain(&mut self, budget: usize) -> (usize, bool) {
        let was_busy = self.busy.swap(true, Ordering::SeqCst);
        assert!(!was_busy, "runner handled by two threads at once");
        let mut n = 0;
        while n < budget && !self.stopped {
            let Ok(msg) = self.receiver.try_recv() else {
                break;
            };
            n += 1;
            self.handled += 1;
            match msg {
                Message::Count(v) => self.sum = self.sum.wrapping_add(v),
                Message::Callback(f) => f(self),
                Message::Stop => self.stopped = true,
            }
        }
        self.busy.store(false, Ordering::SeqCst);
        (n, !self.stopped && !self.receiver.is_empty())
    }
}

impl Fsm for Runner {
    type Message = Message;

    fn is_stopped(&self) -> bool {
        self.stopped
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f(self);
        }
    }
}

/// Counters shared by the handlers of one [`Builder`], updated once per
/// round in [`PollHandler::end`].
#[derive(Debug, Default)]
pub struct Metrics {
    handled: AtomicU64,
    rounds: AtomicU64,
    fsms: AtomicU64,
}

impl Metrics {
    /// Messages handled by all pollers (as of their last `end`).
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::SeqCst)
    }

    /// Rounds (`begin` .. `end`) run by all pollers.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::SeqCst)
    }

    /// Sum of batch sizes over all rounds (FSM handlings).
    pub fn fsm_handlings(&self) -> u64 {
        self.fsms.load(Ordering::SeqCst)
    }
}

/// A sample poll handler for [`Runner`]s (normal and control).
pub struct Handler {
    budget: usize,
    skip_end: bool,
    handled: u64,
    fsms: u64,
    metrics: Arc<Metrics>,
}

impl PollHandler<Runner, Runner> for Handler {
    fn begin(&mut self, batch_size: usize) {
        self.fsms += batch_size as u64;
    }

    fn handle_control(&mut self, control: &mut Runner) -> Option<usize> {
        let (n, more) = control.drain(self.budget);
        self.handled += n as u64;
        if more {
            None
        } else {
            Some(0)
        }
    }

    fn handle_normal(&mut self, normal: &mut impl DerefMut<Target = Runner>) -> HandleResult {
        let (n, more) = normal.drain(self.budget);
        self.handled += n as u64;
        if more {
            HandleResult::KeepProcessing
        } else {
            HandleResult::stop_at(0, self.skip_end)
        }
    }

    fn end(&mut self, _batch: &mut [Option<impl DerefMut<Target = Runner>>]) {
        self.metrics
            .handled
            .fetch_add(self.handled, Ordering::SeqCst);
        self.metrics.fsms.fetch_add(self.fsms, Ordering::SeqCst);
        self.metrics.rounds.fetch_add(1, Ordering::SeqCst);
        self.handled = 0;
        self.fsms = 0;
    }
}

/// Builds [`Handler`]s sharing one [`Metrics`].
#[derive(Debug, Clone)]
pub struct Builder {
    budget: usize,
    skip_end: bool,
    metrics: Arc<Metrics>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder with a budget of 64 messages per FSM per round.
    pub fn new() -> Builder {
        Builder {
            budget: 64,
            skip_end: false,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// Sets the most messages a handler drains from one FSM per round
    /// (at least 1).
    pub fn budget(mut self, budget: usize) -> Builder {
        self.budget = budget.max(1);
        self
    }

    /// Makes handlers release drained FSMs before `end` (`skip_end`).
    pub fn skip_end(mut self, skip_end: bool) -> Builder {
        self.skip_end = skip_end;
        self
    }

    /// The metrics the built handlers update.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }
}

impl HandlerBuilder<Runner, Runner> for Builder {
    type Handler = Handler;

    fn build(&mut self) -> Handler {
        Handler {
            budget: self.budget,
            skip_end: self.skip_end,
            handled: 0,
            fsms: 0,
            metrics: Arc::clone(&self.metrics),
        }
    }
}
