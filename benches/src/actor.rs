//! The benchmark FSM and its poll handler.

use std::ops::DerefMut;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_system::mpsc::{self, LooseBoundedSender, Receiver};
use batch_system::{Fsm, HandleResult, HandlerBuilder, PollHandler};
use crossbeam_channel::Sender;

/// An actor that sums the `u64`s it receives: the per-message work of both
/// runtimes in the comparison.
pub struct Actor {
    rx: Receiver<u64>,
    handled: u64,
    sum: u64,
}

impl Actor {
    /// A new actor with an unbounded mailbox; returns the mailbox sender.
    pub fn new() -> (LooseBoundedSender<u64>, Box<Actor>) {
        let (tx, rx) = mpsc::unbounded();
        let actor = Actor {
            rx,
            handled: 0,
            sum: 0,
        };
        (LooseBoundedSender::from(tx), Box::new(actor))
    }

    /// Messages handled so far.
    pub fn handled(&self) -> u64 {
        self.handled
    }

    /// Sum of the values handled so far.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Handles at most `budget` messages; returns (handled, more queued).
    fn drain(&mut self, budget: usize) -> (u64, bool) {
        let mut n = 0u64;
        let mut more = true;
        while n < budget as u64 {
            match self.rx.try_recv() {
                Ok(v) => {
                    self.sum = self.sum.wrapping_add(v);
                    n += 1;
                }
                Err(_) => {
                    more = false;
                    break;
                }
            }
        }
        self.handled += n;
        (n, more && !self.rx.is_empty())
    }
}

impl Fsm for Actor {
    type Message = u64;

    fn is_stopped(&self) -> bool {
        false
    }
}

/// Poll handler for [`Actor`]s. Counts handled messages locally and adds
/// them to a shared counter every 4,096 messages (in `end`) and when the
/// poller runs out of work (in `pause`); signals `done` when the counter
/// reaches the target.
pub struct ActorHandler {
    budget: usize,
    sync_cost: Duration,
    /// Messages handled by this handler so far.
    handled: u64,
    /// How many of them were added to `counter`.
    published: u64,
    /// `handled` when the current round began.
    round_start: u64,
    /// Rounds that handled messages (each paid one simulated sync).
    rounds: u64,
    /// How many of them were added to `rounds_counter`.
    rounds_published: u64,
    counter: Arc<AtomicU64>,
    rounds_counter: Arc<AtomicU64>,
    target: u64,
    done: Sender<()>,
}

impl PollHandler<Actor, Actor> for ActorHandler {
    fn begin(&mut self, _batch_size: usize) {
        self.round_start = self.handled;
    }

    fn handle_control(&mut self, control: &mut Actor) -> Option<usize> {
        let (n, more) = control.drain(self.budget);
        self.handled += n;
        if more {
            None
        } else {
            Some(0)
        }
    }

    fn handle_normal(&mut self, normal: &mut impl DerefMut<Target = Actor>) -> HandleResult {
        let (n, more) = normal.drain(self.budget);
        self.handled += n;
        if more {
            HandleResult::KeepProcessing
        } else {
            HandleResult::stop_at(0, false)
        }
    }

    fn end(&mut self, _batch: &mut [Option<impl DerefMut<Target = Actor>>]) {
        if self.handled == self.round_start {
            return;
        }
        // One simulated sync for everything handled this round.
        spin_for(self.sync_cost);
        self.rounds += 1;
        if self.handled - self.published >= PUBLISH_EVERY {
            self.publish();
        }
    }

    fn pause(&mut self) {
        self.publish();
    }
}

/// Handled counts are added to the shared counter this often (and whenever
/// the poller runs out of work), not every round: a shared counter bumped
/// by both pollers every round would cost more than the work measured.
const PUBLISH_EVERY: u64 = 4096;

impl ActorHandler {
    fn publish(&mut self) {
        let n = self.handled - self.published;
        if n == 0 {
            return;
        }
        self.published = self.handled;
        // Rounds first: whoever sees the target reached also sees them.
        self.rounds_counter
            .fetch_add(self.rounds - self.rounds_published, Ordering::AcqRel);
        self.rounds_published = self.rounds;
        let now = self.counter.fetch_add(n, Ordering::AcqRel) + n;
        if now == self.target {
            let _ = self.done.send(());
        }
    }
}

/// Builds [`ActorHandler`]s that share one counter.
pub struct ActorBuilder {
    budget: usize,
    sync_cost: Duration,
    counter: Arc<AtomicU64>,
    rounds_counter: Arc<AtomicU64>,
    target: u64,
    done: Sender<()>,
}

impl ActorBuilder {
    /// Handlers drain at most `budget` messages per actor per round and send
    /// on `done` once `target` messages were handled in total.
    pub fn new(budget: usize, target: u64, done: Sender<()>) -> ActorBuilder {
        ActorBuilder {
            budget: budget.max(1),
            sync_cost: Duration::ZERO,
            counter: Arc::new(AtomicU64::new(0)),
            rounds_counter: Arc::new(AtomicU64::new(0)),
            target,
            done,
        }
    }

    /// Makes handlers spin for `cost` once per round that handled messages,
    /// standing in for one fsync per write batch.
    pub fn sync_cost(mut self, cost: Duration) -> ActorBuilder {
        self.sync_cost = cost;
        self
    }

    /// The shared counter of handled messages.
    pub fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.counter)
    }

    /// The shared counter of poll rounds that handled messages (one
    /// simulated sync each), published together with the handled count.
    pub fn rounds(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.rounds_counter)
    }
}

impl HandlerBuilder<Actor, Actor> for ActorBuilder {
    type Handler = ActorHandler;

    fn build(&mut self) -> ActorHandler {
        ActorHandler {
            budget: self.budget,
            sync_cost: self.sync_cost,
            handled: 0,
            published: 0,
            round_start: 0,
            rounds: 0,
            rounds_published: 0,
            counter: Arc::clone(&self.counter),
            rounds_counter: Arc::clone(&self.rounds_counter),
            target: self.target,
            done: self.done.clone(),
        }
    }
}

/// Busy-waits for `d` (nothing for zero): simulated CPU-bound sync work.
pub(crate) fn spin_for(d: Duration) {
    if d.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}
