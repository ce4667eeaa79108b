//! The simulation loop: stores driven by hand, a seeded event queue,
//! clients, the nemesis, and the checks at the end.
//!
//! ```text
//! loop over events in (time, sequence) order:
//!   Tick(store)        PeerMsg::Tick to each region (sorted ids), StoreMsg::Tick
//!   Deliver(msg)       RaftRouter::send_raft_message on the destination
//!   Poll(store)        one ManualPoller::poll_once of the store's raft poller
//!                      and one of its apply poller (random order, unless
//!                      paused); messages sent go through the fault model
//!                      into the queue as future Delivers; a store that did
//!                      work is polled again 1 time unit later
//!   ClientWake         a client invokes an operation (or retries a refused one)
//!   AttemptTimeout     the operation's outcome becomes unknown
//!   Nemesis / Heal*    partitions, one-way cuts, leader isolation, crashes,
//!                      pauses
//!   then               client callbacks are handled in (client, op) order
//! ```
//!
//! Every poll round is a separate event, so deliveries, crashes, timeouts
//! and other stores' rounds interleave with a store's work at any point
//! between two rounds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use batch_system::mpsc::TrySendError;
use engine::{Engines, KvEngine, MemKvEngine, MemRaftLogEngine, RaftLogEngine};
use kvproto_lite::metapb::{self, Region};
use kvproto_lite::raft_cmdpb::{AdminCmdType, CmdType, RaftCmdResponse, Request};
use kvproto_lite::raft_serverpb::RaftMessage;
use kvproto_lite::util;
use protobuf::Message as _;
use raftstore::{
    bootstrap_store, create_raft_batch_system, even_split_keys, initial_regions, Callback,
    ManualPollers, PeerMsg, RaftBatchSystem, RaftCommand, RaftRouter, StoreMsg,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use slog::{o, Logger};

use crate::checker::{check_history, CheckResult, Violation};
use crate::config::SimConfig;
use crate::digest::Digest;
use crate::history::{decode_value, encode_value, Command, Operation, Outcome, Stamp};
use crate::network::{NetFault, NetState, Outbox, SimTransport};
use crate::{Error, Result};

/// Consecutive busy poll rounds of one store before the run is declared
/// stuck (some FSM keeps itself busy forever).
const MAX_BUSY_POLLS: u64 = 100_000;

/// Most poll rounds (of each poller) a store runs in one time unit.
const MAX_ROUNDS_PER_POLL: u32 = 16;

/// A correctness (or liveness) problem found by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The client history is not linearizable.
    NotLinearizable(Box<Violation>),
    /// The checker ran out of steps on a key.
    CheckerGaveUp {
        /// The key.
        key: usize,
        /// Steps taken.
        steps: u64,
    },
    /// After the workload, with the network healed and every store up, not
    /// every key could be read.
    FinalReadsIncomplete {
        /// Keys without a successful final read.
        missing: Vec<usize>,
    },
    /// After the final reads, the stores' KV contents differ from each
    /// other or from what the final reads returned.
    ReplicasDiverge {
        /// What differs.
        detail: String,
    },
    /// The stores never went idle: some FSM kept itself busy forever.
    NoQuiescence {
        /// Simulated time it happened at.
        time: u64,
    },
    /// A successful response without the expected content.
    MalformedResponse {
        /// What was wrong.
        detail: String,
    },
    /// A store could not be restarted from its engines.
    RestartFailed {
        /// The store.
        store: u64,
        /// The error.
        error: String,
    },
    /// The cluster could not be set up (bootstrap or first start).
    Setup(String),
    /// The production code panicked (caught by [`run_seed`]).
    Panic(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotLinearizable(v) => write!(f, "{v}"),
            Failure::CheckerGaveUp { key, steps } => {
                write!(f, "checker gave up on key k{key} after {steps} steps")
            }
            Failure::FinalReadsIncomplete { missing } => {
                write!(f, "final reads did not complete for keys {missing:?}")
            }
            Failure::ReplicasDiverge { detail } => write!(f, "replicas diverge: {detail}"),
            Failure::NoQuiescence { time } => write!(f, "stores never went idle at time {time}"),
            Failure::MalformedResponse { detail } => write!(f, "malformed response: {detail}"),
            Failure::RestartFailed { store, error } => {
                write!(f, "store {store} failed to restart: {error}")
            }
            Failure::Setup(e) => write!(f, "set-up failed: {e}"),
            Failure::Panic(msg) => write!(f, "panic: {msg}"),
        }
    }
}

/// Counters of what a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Raft messages sent by stores.
    pub messages_sent: u64,
    /// Messages lost (random loss, partitions, down or refusing stores).
    pub messages_lost: u64,
    /// Messages delivered twice.
    pub messages_duplicated: u64,
    /// Poll rounds that handled at least one FSM.
    pub poll_rounds: u64,
    /// Store crashes.
    pub crashes: u64,
    /// Network faults injected (partitions, one-way cuts, isolations).
    pub net_faults: u64,
    /// Split commands sent to a leader.
    pub splits: u64,
    /// Operations acknowledged (written or read).
    pub ops_ok: u64,
    /// Operations that definitely failed.
    pub ops_failed: u64,
    /// Operations with an unknown outcome.
    pub ops_unknown: u64,
    /// Attempts sent to stores.
    pub attempts: u64,
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Digest of the whole event trace and history: equal for two runs of
    /// one seed.
    pub digest: u64,
    /// Simulated time at the end.
    pub end_time: u64,
    /// What happened.
    pub stats: SimStats,
    /// The client history.
    pub history: Vec<Operation>,
    /// The first problem found, if any.
    pub failure: Option<Failure>,
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: u64,
        to: u64,
        msg: Box<RaftMessage>,
    },
    Tick {
        store: u64,
    },
    ClientWake {
        client: usize,
    },
    AttemptTimeout {
        client: usize,
        op: usize,
        attempt: u32,
    },
    Poll {
        store: u64,
    },
    Nemesis,
    HealNet {
        fault: u64,
    },
    Restart {
        store: u64,
    },
    EndWorkload,
    StartFinalReads,
    Converge,
}

impl Event {
    fn code(&self) -> u64 {
        match self {
            Event::Deliver { .. } => 1,
            Event::Tick { .. } => 2,
            Event::ClientWake { .. } => 3,
            Event::AttemptTimeout { .. } => 5,
            Event::Poll { .. } => 4,
            Event::Nemesis => 6,
            Event::HealNet { .. } => 7,
            Event::Restart { .. } => 8,
            Event::EndWorkload => 9,
            Event::StartFinalReads => 10,
            Event::Converge => 11,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Workload,
    Settling,
    FinalReads,
    Done,
}

/// A response delivered to a client callback.
struct Completion {
    client: usize,
    op: usize,
    attempt: u32,
    resp: RaftCmdResponse,
}

type Completions = Arc<Mutex<Vec<Completion>>>;

/// A store's user data, as `(key, value)` pairs in key order.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A running store. Field order is drop order: pollers (with their
/// handlers) first, then the systems.
struct Running {
    pollers: ManualPollers<MemKvEngine, MemRaftLogEngine, SimTransport>,
    system: RaftBatchSystem<MemKvEngine, MemRaftLogEngine>,
    router: RaftRouter<MemRaftLogEngine>,
}

struct StoreSlot {
    engines: Engines<MemKvEngine, MemRaftLogEngine>,
    running: Option<Running>,
}

#[derive(Debug)]
struct InFlight {
    op: usize,
    attempt: u32,
    /// Waiting for a response (as opposed to backing off).
    sent: bool,
    /// The store the attempt went to.
    store: u64,
    /// The region it was routed to.
    region: u64,
}

/// A logical operation whose attempt was refused: it is retried as a new
/// history operation (puts with a new value), so a refused attempt that
/// took effect after all shows up in the history.
#[derive(Debug, Clone, Copy)]
struct Retry {
    key: usize,
    command: Command,
    /// When the logical operation started (for `op_deadline`).
    first_invoke: u64,
    /// Attempts so far.
    attempts: u32,
}

#[derive(Debug, Default)]
struct ClientState {
    current: Option<InFlight>,
    retry: Option<Retry>,
    /// Believed leader store per region.
    leader_hint: BTreeMap<u64, u64>,
}

/// One simulated cluster run. Build with [`Simulation::new`], run with
/// [`Simulation::run`]; or use [`run_seed`].
pub struct Simulation {
    cfg: SimConfig,
    rng: StdRng,
    now: u64,
    event_seq: u64,
    history_seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    stores: BTreeMap<u64, StoreSlot>,
    outbox: Outbox,
    completions: Completions,
    net: NetState,
    /// Per store: (raft poller paused until, apply poller paused until).
    paused: BTreeMap<u64, (u64, u64)>,
    /// Stores with a poll scheduled.
    poll_pending: BTreeSet<u64>,
    /// Consecutive busy poll rounds per store.
    busy_streak: BTreeMap<u64, u64>,
    calm: bool,
    next_fault: u64,
    clients: Vec<ClientState>,
    history: Vec<Operation>,
    /// The region layout the simulation believes in (learned from split
    /// responses and `EpochNotMatch`), sorted by start key.
    regions: Vec<Region>,
    /// Every region id that may exist on a store (ticked on every store).
    tick_ids: BTreeSet<u64>,
    /// Next region id and peer id a split may use.
    next_region_id: u64,
    next_peer_id: u64,
    /// Split responses waiting to be learned from.
    split_results: Arc<Mutex<Vec<RaftCmdResponse>>>,
    keys: Vec<Vec<u8>>,
    next_value: u64,
    phase: Phase,
    final_queue: VecDeque<usize>,
    final_reads: BTreeMap<usize, Option<u64>>,
    digest: Digest,
    stats: SimStats,
    failure: Option<Failure>,
    logger: Logger,
    verbose: bool,
    /// `SIM_LOG=trace` with `verbose`: print every delivered message.
    trace_messages: bool,
}

impl Simulation {
    /// Sets up the cluster for `cfg`: bootstraps every store's in-memory
    /// engines with the initial regions and starts each store through
    /// [`RaftBatchSystem::spawn_manual`]. With `verbose`, the simulation
    /// prints its events to stderr and raftstore logs through `logger`.
    ///
    /// # Errors
    ///
    /// An invalid config, or a bootstrap/start error.
    pub fn new(cfg: SimConfig, logger: Logger, verbose: bool) -> Result<Simulation> {
        cfg.validate()?;
        let store_ids: Vec<u64> = (1..=cfg.stores).collect();
        let regions = initial_regions(&store_ids, &even_split_keys(cfg.regions))?;
        // Keys spread evenly over the u64 space, so every region gets some.
        let keys: Vec<Vec<u8>> = (0..cfg.keys as u64)
            .map(|i| {
                let step = u64::MAX / cfg.keys as u64;
                (i * step + step / 2).to_be_bytes().to_vec()
            })
            .collect();
        let mut sim = Simulation {
            rng: StdRng::seed_from_u64(cfg.seed),
            now: 0,
            event_seq: 0,
            history_seq: 0,
            events: BTreeMap::new(),
            stores: BTreeMap::new(),
            outbox: Outbox::new(),
            completions: Arc::new(Mutex::new(Vec::new())),
            net: NetState::default(),
            paused: BTreeMap::new(),
            poll_pending: BTreeSet::new(),
            busy_streak: BTreeMap::new(),
            calm: false,
            next_fault: 1,
            clients: (0..cfg.clients).map(|_| ClientState::default()).collect(),
            history: Vec::new(),
            tick_ids: regions.iter().map(|r| r.get_id()).collect(),
            next_region_id: 1_000,
            next_peer_id: 100_000,
            split_results: Arc::new(Mutex::new(Vec::new())),
            regions,
            keys,
            next_value: 1,
            phase: Phase::Workload,
            final_queue: VecDeque::new(),
            final_reads: BTreeMap::new(),
            digest: Digest::new(),
            stats: SimStats::default(),
            failure: None,
            logger,
            verbose,
            trace_messages: verbose && std::env::var("SIM_LOG").as_deref() == Ok("trace"),
            cfg,
        };
        for &id in &store_ids {
            let engines = Engines {
                kv: MemKvEngine::new(),
                raft: MemRaftLogEngine::new(),
            };
            bootstrap_store(&engines, id, &sim.regions)?;
            sim.stores.insert(
                id,
                StoreSlot {
                    engines,
                    running: None,
                },
            );
            sim.start_store(id)?;
        }
        Ok(sim)
    }

    fn trace(&mut self, what: &str) {
        if self.verbose {
            eprintln!("[t={:>6}] {what}", self.now);
        }
    }

    fn schedule(&mut self, at: u64, ev: Event) {
        self.event_seq += 1;
        self.events.insert((at, self.event_seq), ev);
    }

    fn stamp(&mut self) -> Stamp {
        self.history_seq += 1;
        Stamp {
            time: self.now,
            seq: self.history_seq,
        }
    }

    fn start_store(&mut self, id: u64) -> Result<()> {
        let outbox = self.outbox.clone();
        let cfg = self.cfg.store.clone();
        let logger = self.logger.clone();
        let Some(slot) = self.stores.get_mut(&id) else {
            return Err(Error::Config(format!("no store {id}")));
        };
        if slot.running.is_some() {
            return Ok(());
        }
        let (router, mut system) = create_raft_batch_system(&cfg);
        let mut meta = metapb::Store::default();
        meta.set_id(id);
        let pollers = system.spawn_manual(
            meta,
            slot.engines.clone(),
            SimTransport::new(id, outbox),
            &logger,
        )?;
        slot.running = Some(Running {
            pollers,
            system,
            router,
        });
        Ok(())
    }

    fn crash_store(&mut self, id: u64) {
        let Some(slot) = self.stores.get_mut(&id) else {
            return;
        };
        if let Some(running) = slot.running.take() {
            // No graceful work: the FSMs are dropped (their callbacks answer
            // "outcome unknown"), nothing more is written.
            let Running {
                pollers,
                system,
                router,
            } = running;
            drop(pollers);
            drop(system);
            drop(router);
            slot.engines.kv.crash();
            slot.engines.raft.crash();
            self.stats.crashes += 1;
        }
    }

    fn running_stores(&self) -> Vec<u64> {
        self.stores
            .iter()
            .filter(|(_, s)| s.running.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Runs the whole simulation and checks the history.
    pub fn run(mut self) -> RunReport {
        let store_ids: Vec<u64> = self.stores.keys().copied().collect();
        for id in store_ids {
            let phase = self.rng.gen_range(0..self.cfg.tick_interval);
            self.schedule(phase + 1, Event::Tick { store: id });
        }
        for c in 0..self.clients.len() {
            let at = self.rng.gen_range(1..=self.cfg.max_think_time.max(1)) + 50;
            self.schedule(at, Event::ClientWake { client: c });
        }
        let n = &self.cfg.nemesis;
        if n.partitions
            || n.one_way
            || n.leader_isolation
            || n.crashes
            || n.pauses
            || n.transfers
            || n.splits
        {
            let at = self.rng.gen_range(n.min_interval..=n.max_interval);
            self.schedule(at, Event::Nemesis);
        }
        self.schedule(self.cfg.workload_time, Event::EndWorkload);
        self.schedule(
            self.cfg.workload_time + self.cfg.settle_time,
            Event::StartFinalReads,
        );
        let deadline = self.cfg.workload_time + self.cfg.settle_time + 3_000;
        // Stores have work from start-up.
        for id in self.stores.keys().copied().collect::<Vec<_>>() {
            self.wake(id, 0);
        }
        while self.failure.is_none() && self.phase != Phase::Done {
            let Some(((at, seq), ev)) = self.events.pop_first() else {
                break;
            };
            if at > deadline {
                break;
            }
            self.now = at;
            self.stats.events += 1;
            self.digest.write_u64(at);
            self.digest.write_u64(seq);
            self.digest.write_u64(ev.code());
            self.handle(ev);
            self.process_completions();
        }
        if self.failure.is_none() && self.phase != Phase::Done {
            let missing: Vec<usize> = (0..self.keys.len())
                .filter(|k| !self.final_reads.contains_key(k))
                .collect();
            self.failure = Some(Failure::FinalReadsIncomplete { missing });
        }
        if self.failure.is_none() {
            match check_history(&self.history) {
                CheckResult::Linearizable => {}
                CheckResult::Violation(v) => self.failure = Some(Failure::NotLinearizable(v)),
                CheckResult::GaveUp { key, steps } => {
                    self.failure = Some(Failure::CheckerGaveUp { key, steps })
                }
            }
        }
        for op in &self.history {
            self.digest.write(op.to_string().as_bytes());
        }
        RunReport {
            seed: self.cfg.seed,
            digest: self.digest.value(),
            end_time: self.now,
            stats: self.stats.clone(),
            history: std::mem::take(&mut self.history),
            failure: self.failure.take(),
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Deliver { from, to, msg } => self.deliver(from, to, *msg),
            Event::Tick { store } => {
                if let Some(Running { router, .. }) =
                    self.stores.get(&store).and_then(|s| s.running.as_ref())
                {
                    for &region in &self.tick_ids {
                        let _ = router.force_send(region, PeerMsg::Tick);
                    }
                    let _ = router.send_control(StoreMsg::Tick);
                    self.wake(store, 0);
                }
                let period = self.tick_period(store);
                self.schedule(self.now + period, Event::Tick { store });
            }
            Event::ClientWake { client } => self.client_wake(client),
            Event::AttemptTimeout {
                client,
                op,
                attempt,
            } => {
                let current = self.clients.get(client).and_then(|c| c.current.as_ref());
                if matches!(current, Some(f) if f.op == op && f.attempt == attempt && f.sent) {
                    self.finish_op(client, Outcome::Unknown("attempt timed out".to_owned()));
                }
            }
            Event::Poll { store } => self.poll_store(store),
            Event::Nemesis => self.nemesis(),
            Event::HealNet { fault } => {
                self.trace(&format!("heal network fault {fault}"));
                self.net.heal(fault);
            }
            Event::Restart { store } => self.restart(store),
            Event::EndWorkload => {
                self.trace("workload ends: heal everything, restart stores");
                self.phase = Phase::Settling;
                self.net.heal_all();
                self.paused.clear();
                self.calm = true;
                let ids: Vec<u64> = self.stores.keys().copied().collect();
                for id in ids {
                    self.restart(id);
                }
            }
            Event::StartFinalReads => {
                self.trace("final reads");
                self.phase = Phase::FinalReads;
                self.final_queue = (0..self.keys.len()).collect();
                for c in 0..self.clients.len() {
                    if self.clients[c].current.is_none() {
                        self.schedule(self.now + 1 + c as u64, Event::ClientWake { client: c });
                    }
                }
            }
            Event::Converge => {
                self.check_replicas();
                self.phase = Phase::Done;
            }
        }
    }

    /// Time between two ticks of `store` (its clock may be skewed).
    fn tick_period(&self, store: u64) -> u64 {
        let skew = usize::try_from(store.saturating_sub(1))
            .ok()
            .and_then(|i| self.cfg.tick_skew.get(i))
            .copied()
            .unwrap_or(0);
        (self.cfg.tick_interval as i64 + skew).max(1) as u64
    }

    fn restart(&mut self, store: u64) {
        let running = self.stores.get(&store).is_some_and(|s| s.running.is_some());
        if running {
            return;
        }
        self.trace(&format!("restart store {store}"));
        match self.start_store(store) {
            Ok(()) => self.wake(store, 0),
            Err(e) => {
                self.failure = Some(Failure::RestartFailed {
                    store,
                    error: e.to_string(),
                })
            }
        }
    }

    fn deliver(&mut self, from: u64, to: u64, msg: RaftMessage) {
        if self.trace_messages {
            let m = msg.get_message();
            let line = format!(
                "deliver r{} {}->{} {:?} term {} index {} log_term {} entries {:?} commit {}",
                msg.get_region_id(),
                m.get_from(),
                m.get_to(),
                m.get_msg_type(),
                m.get_term(),
                m.get_index(),
                m.get_log_term(),
                m.get_entries()
                    .iter()
                    .map(|e| e.get_index())
                    .collect::<Vec<_>>(),
                m.get_commit()
            );
            self.trace(&line);
        }
        if self.net.blocked(from, to) {
            self.stats.messages_lost += 1;
            return;
        }
        let Some(Running { router, .. }) = self.stores.get(&to).and_then(|s| s.running.as_ref())
        else {
            self.stats.messages_lost += 1;
            return;
        };
        match router.send_raft_message(msg) {
            Ok(()) => self.wake(to, 0),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.messages_lost += 1
            }
        }
    }

    /// Schedules a poll of `store` in `delay` time units, unless one is
    /// already scheduled.
    fn wake(&mut self, store: u64, delay: u64) {
        if self.poll_pending.insert(store) {
            self.schedule(self.now + delay, Event::Poll { store });
        }
    }

    /// One poll round of a store's raft poller and one of its apply poller
    /// (in random order, each unless paused); what they send goes into the
    /// event queue. A store that did work is polled again one time unit
    /// later, so the work of several stores, deliveries, crashes and client
    /// timeouts interleave.
    fn poll_store(&mut self, id: u64) {
        self.poll_pending.remove(&id);
        let (raft_until, apply_until) = self.paused.get(&id).copied().unwrap_or((0, 0));
        let (raft_on, apply_on) = (self.now >= raft_until, self.now >= apply_until);
        // A CPU slice: up to `rounds` poll rounds of each poller, stopping
        // early when the store is idle.
        let rounds = self.rng.gen_range(1..=MAX_ROUNDS_PER_POLL);
        let Some(Running { pollers, .. }) =
            self.stores.get_mut(&id).and_then(|s| s.running.as_mut())
        else {
            self.busy_streak.remove(&id);
            return;
        };
        let (mut a, mut b) = (0, 0);
        for _ in 0..rounds {
            let apply_first = self.rng.gen_bool(0.5);
            let mut poll_apply = || {
                if apply_on {
                    pollers.apply.poll_once()
                } else {
                    0
                }
            };
            let (x, y) = if apply_first {
                let x = poll_apply();
                let y = if raft_on { pollers.raft.poll_once() } else { 0 };
                (x, y)
            } else {
                let y = if raft_on { pollers.raft.poll_once() } else { 0 };
                (poll_apply(), y)
            };
            self.stats.poll_rounds += u64::from(x > 0) + u64::from(y > 0);
            a += x;
            b += y;
            if x + y == 0 {
                break;
            }
        }
        self.route_outbox();
        if a + b == 0 {
            self.busy_streak.remove(&id);
            return;
        }
        let streak = self.busy_streak.entry(id).or_insert(0);
        *streak += 1;
        if *streak > MAX_BUSY_POLLS {
            self.failure = Some(Failure::NoQuiescence { time: self.now });
            return;
        }
        self.wake(id, 1);
    }

    /// Hands every response the stores produced to its client, in (client,
    /// operation) order; clients may send new requests.
    fn process_completions(&mut self) {
        self.learn_splits();
        loop {
            let mut done =
                std::mem::take(&mut *self.completions.lock().unwrap_or_else(|e| e.into_inner()));
            if done.is_empty() {
                return;
            }
            done.sort_by_key(|c| (c.client, c.op, c.attempt));
            for c in done {
                self.digest.write_u64(c.client as u64);
                self.digest.write_u64(c.op as u64);
                self.digest.write_u64(u64::from(c.attempt));
                if let Ok(bytes) = c.resp.write_to_bytes() {
                    self.digest.write(&bytes);
                }
                self.on_response(c);
            }
        }
    }

    /// Puts every message the stores sent through the fault model into the
    /// event queue.
    fn route_outbox(&mut self) {
        for (from, msg) in self.outbox.drain() {
            self.stats.messages_sent += 1;
            let to = msg.get_to_peer().get_store_id();
            if let Ok(bytes) = msg.write_to_bytes() {
                self.digest.write(&bytes);
            }
            let f = self.cfg.messages.clone();
            let faulty = !self.calm;
            if self.net.blocked(from, to) || (faulty && f.drop > 0.0 && self.rng.gen_bool(f.drop)) {
                self.stats.messages_lost += 1;
                continue;
            }
            let copies = if faulty && f.duplicate > 0.0 && self.rng.gen_bool(f.duplicate) {
                self.stats.messages_duplicated += 1;
                2
            } else {
                1
            };
            for _ in 0..copies {
                let mut latency = self.rng.gen_range(f.min_latency..=f.max_latency);
                if faulty && f.long_delay > 0.0 && self.rng.gen_bool(f.long_delay) {
                    latency += self.rng.gen_range(1..=f.long_delay_max.max(1));
                }
                let msg = Box::new(msg.clone());
                self.schedule(self.now + latency, Event::Deliver { from, to, msg });
            }
        }
    }

    fn nemesis(&mut self) {
        if self.phase != Phase::Workload {
            return;
        }
        let n = self.cfg.nemesis.clone();
        // Enabled fault kinds, in a fixed order (seeds depend on it).
        let kinds: Vec<u32> = [
            n.partitions,
            n.one_way,
            n.leader_isolation,
            n.crashes,
            n.pauses,
            n.transfers,
            n.splits,
        ]
        .into_iter()
        .zip(0u32..)
        .filter_map(|(on, kind)| on.then_some(kind))
        .collect();
        let duration = self.rng.gen_range(n.min_duration..=n.max_duration);
        let stores: Vec<u64> = self.stores.keys().copied().collect();
        if let Some(&kind) = kinds.choose(&mut self.rng) {
            match kind {
                0 => {
                    let k = self.rng.gen_range(1..stores.len().max(2));
                    let side: BTreeSet<u64> = stores
                        .choose_multiple(&mut self.rng, k.min(stores.len()))
                        .copied()
                        .collect();
                    self.add_net_fault(NetFault::Partition { side }, duration);
                }
                1 => {
                    let pair: Vec<u64> =
                        stores.choose_multiple(&mut self.rng, 2).copied().collect();
                    if let [from, to] = pair[..] {
                        self.add_net_fault(NetFault::OneWay { from, to }, duration);
                    }
                }
                2 => {
                    let region = self.regions[self.rng.gen_range(0..self.regions.len())].get_id();
                    if let Some(leader) = self.leader_store(region) {
                        self.trace(&format!(
                            "isolate leader of region {region} (store {leader})"
                        ));
                        self.add_net_fault(
                            NetFault::Partition {
                                side: [leader].into(),
                            },
                            duration,
                        );
                    }
                }
                3 => {
                    // Half the time prefer a store in the middle of work
                    // (polled again next time unit): a crash then finds
                    // FSMs with queued, half-applied or unpersisted state.
                    let running = self.running_stores();
                    let busy: Vec<u64> = running
                        .iter()
                        .copied()
                        .filter(|id| self.busy_streak.contains_key(id))
                        .collect();
                    let pool = if !busy.is_empty() && self.rng.gen_bool(0.5) {
                        busy
                    } else {
                        running
                    };
                    if let Some(&victim) = pool.choose(&mut self.rng) {
                        self.trace(&format!("crash store {victim} for {duration}"));
                        self.crash_store(victim);
                        self.paused.remove(&victim);
                        self.schedule(self.now + duration, Event::Restart { store: victim });
                    }
                }
                6 => self.split(),
                5 => {
                    let region = self.regions[self.rng.gen_range(0..self.regions.len())].clone();
                    if let Some(leader) = self.leader_store(region.get_id()) {
                        let others: Vec<_> = region
                            .get_peers()
                            .iter()
                            .filter(|p| p.get_store_id() != leader)
                            .cloned()
                            .collect();
                        if let Some(target) = others.choose(&mut self.rng).cloned() {
                            self.trace(&format!(
                                "transfer leader of region {} from store {leader} to store {}",
                                region.get_id(),
                                target.get_store_id()
                            ));
                            self.transfer_leader(leader, &region, target);
                        }
                    }
                }
                _ => {
                    if let Some(&store) = stores.choose(&mut self.rng) {
                        let until = self.now + duration;
                        let (raft, apply) = match self.rng.gen_range(0..3) {
                            0 => (until, 0),
                            1 => (0, until),
                            _ => (until, until),
                        };
                        self.trace(&format!(
                            "pause store {store} (raft until {raft}, apply until {apply})"
                        ));
                        self.paused.insert(store, (raft, apply));
                    }
                }
            }
        }
        let next = self.rng.gen_range(n.min_interval..=n.max_interval);
        self.schedule(self.now + next, Event::Nemesis);
    }

    /// Asks the leader of a random region to split it at one of the keys
    /// inside it (if any).
    fn split(&mut self) {
        let region = self.regions[self.rng.gen_range(0..self.regions.len())].clone();
        let inside: Vec<Vec<u8>> = self
            .keys
            .iter()
            .filter(|k| k.as_slice() > region.get_start_key() && util::is_key_in_region(k, &region))
            .cloned()
            .collect();
        let Some(split_key) = inside.choose(&mut self.rng).cloned() else {
            return;
        };
        let Some(leader) = self.leader_store(region.get_id()) else {
            return;
        };
        let Some(peer) = util::find_peer(&region, leader).cloned() else {
            return;
        };
        let new_region_id = self.next_region_id;
        self.next_region_id += 1;
        let mut new_peer_ids = Vec::with_capacity(region.get_peers().len());
        for _ in region.get_peers() {
            self.next_peer_id += 1;
            new_peer_ids.push(self.next_peer_id);
        }
        self.tick_ids.insert(new_region_id);
        self.trace(&format!(
            "split region {} at {:02x?} into {new_region_id} (leader store {leader})",
            region.get_id(),
            split_key
        ));
        let mut req = util::new_cmd_request(&region, peer);
        let admin = req.mut_admin_request();
        admin.set_cmd_type(AdminCmdType::Split);
        admin.mut_split().set_split_key(split_key);
        admin.mut_split().set_new_region_id(new_region_id);
        admin.mut_split().set_new_peer_ids(new_peer_ids);
        let sink = self.split_results.clone();
        let cb = Callback::new(move |resp| {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(resp);
        });
        let router = self
            .stores
            .get(&leader)
            .and_then(|s| s.running.as_ref())
            .map(|r| r.router.clone());
        if let Some(router) = router {
            if router.send_raft_command(RaftCommand::new(req, cb)).is_ok() {
                self.stats.splits += 1;
                self.wake(leader, 0);
            }
        }
    }

    /// Learns a region's current metadata: regions it overlaps keep only
    /// the parts of their range it does not cover.
    fn update_region(&mut self, region: Region) {
        if region.get_peers().is_empty() {
            return;
        }
        let newer_known = self.regions.iter().any(|r| {
            r.get_id() == region.get_id()
                && util::is_epoch_stale(region.get_region_epoch(), r.get_region_epoch())
        });
        if newer_known {
            return;
        }
        self.tick_ids.insert(region.get_id());
        let (start, end) = (
            region.get_start_key().to_vec(),
            region.get_end_key().to_vec(),
        );
        let mut kept = Vec::with_capacity(self.regions.len() + 2);
        // Like `raftstore::Client`: an older entry of the same or another
        // region keeps the parts of its range the new one does not cover
        // (with its old epoch, so a request there learns the rest from
        // `EpochNotMatch`).
        for r in self.regions.drain(..) {
            let overlaps = (end.is_empty() || r.get_start_key() < end.as_slice())
                && (r.get_end_key().is_empty() || start.as_slice() < r.get_end_key());
            if !overlaps {
                kept.push(r);
                continue;
            }
            if r.get_start_key() < start.as_slice() {
                let mut left = r.clone();
                left.set_end_key(start.clone());
                kept.push(left);
            }
            if !end.is_empty() && (r.get_end_key().is_empty() || end.as_slice() < r.get_end_key()) {
                let mut right = r;
                right.set_start_key(end.clone());
                kept.push(right);
            }
        }
        kept.push(region);
        kept.sort_by(|a, b| a.get_start_key().cmp(b.get_start_key()));
        self.regions = kept;
    }

    /// Learns every known region's metadata from `store`'s KV engine.
    fn refresh_regions_from(&mut self, store: u64) {
        let Some(slot) = self.stores.get(&store) else {
            return;
        };
        let states = match slot.engines.kv.region_states() {
            Ok(states) => states,
            Err(_) => return,
        };
        for state in states {
            if state.get_state() == kvproto_lite::raft_serverpb::PeerState::Normal {
                self.update_region(state.get_region().clone());
            }
        }
    }

    /// Learns the layouts from finished splits.
    fn learn_splits(&mut self) {
        let done =
            std::mem::take(&mut *self.split_results.lock().unwrap_or_else(|e| e.into_inner()));
        for resp in done {
            if resp.get_header().has_error() || !resp.has_admin_response() {
                continue;
            }
            let split = resp.get_admin_response().get_split();
            for r in [split.get_left().clone(), split.get_right().clone()] {
                self.update_region(r);
            }
        }
    }

    /// Sends a `TransferLeader` admin command to the leader on `store`.
    fn transfer_leader(&mut self, store: u64, region: &Region, target: metapb::Peer) {
        let Some(peer) = util::find_peer(region, store).cloned() else {
            return;
        };
        let mut req = util::new_cmd_request(region, peer);
        let admin = req.mut_admin_request();
        admin.set_cmd_type(AdminCmdType::TransferLeader);
        admin.mut_transfer_leader().set_peer(target);
        let router = self
            .stores
            .get(&store)
            .and_then(|s| s.running.as_ref())
            .map(|r| r.router.clone());
        if let Some(router) = router {
            // The answer only says whether the transfer started; ignore it.
            if router
                .send_raft_command(RaftCommand::new(req, Callback::none()))
                .is_ok()
            {
                self.wake(store, 0);
            }
        }
    }

    fn add_net_fault(&mut self, fault: NetFault, duration: u64) {
        let id = self.next_fault;
        self.next_fault += 1;
        self.trace(&format!("network fault {id} for {duration}: {fault:?}"));
        self.net.add(id, fault);
        self.stats.net_faults += 1;
        self.schedule(self.now + duration, Event::HealNet { fault: id });
    }

    /// The store whose peer of `region` leads with the highest term.
    fn leader_store(&self, region: u64) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for (id, slot) in &self.stores {
            if let Some(r) = &slot.running {
                if let Some(info) = r.system.store_meta().leader_info(region) {
                    if info.is_leader && best.map_or(true, |(t, _)| info.term > t) {
                        best = Some((info.term, *id));
                    }
                }
            }
        }
        best.map(|(_, id)| id)
    }

    fn region_of(&self, key: usize) -> Option<usize> {
        let k = self.keys.get(key)?;
        self.regions
            .iter()
            .position(|r| util::is_key_in_region(k, r))
    }

    fn client_wake(&mut self, client: usize) {
        if self
            .clients
            .get(client)
            .map_or(true, |c| c.current.is_some())
        {
            return;
        }
        let retry = self.clients[client].retry.take();
        let (key, command, attempts) = match (self.phase, retry) {
            (Phase::Workload | Phase::Settling, Some(r)) => {
                let command = match r.command {
                    Command::Put(_) => {
                        let v = self.next_value;
                        self.next_value += 1;
                        Command::Put(v)
                    }
                    other => other,
                };
                self.clients[client].retry = Some(r);
                (r.key, command, r.attempts + 1)
            }
            (Phase::Workload, None) => {
                let key = self.rng.gen_range(0..self.keys.len());
                let roll = self.rng.gen_range(0..100);
                let command = if roll < 45 {
                    let v = self.next_value;
                    self.next_value += 1;
                    Command::Put(v)
                } else if roll < 85 {
                    Command::Get
                } else {
                    Command::Delete
                };
                let first_invoke = self.now;
                self.clients[client].retry = Some(Retry {
                    key,
                    command,
                    first_invoke,
                    attempts: 0,
                });
                (key, command, 1)
            }
            (Phase::FinalReads, _) => match self.final_queue.pop_front() {
                Some(key) => (key, Command::Get, 1),
                None => return,
            },
            (Phase::Settling, None) | (Phase::Done, _) => return,
        };
        if let Some(r) = self.clients[client].retry.as_mut() {
            r.attempts = attempts;
        }
        let id = self.history.len();
        let invoke = self.stamp();
        self.history.push(Operation {
            id: id as u64,
            client: client as u64,
            key,
            command,
            invoke,
            complete: None,
            outcome: Outcome::Pending,
            attempts,
        });
        self.clients[client].current = Some(InFlight {
            op: id,
            attempt: 0,
            sent: false,
            store: 0,
            region: 0,
        });
        self.send_attempt(client, id);
    }

    fn send_attempt(&mut self, client: usize, op: usize) {
        let Some(c) = self.clients.get(client) else {
            return;
        };
        if !matches!(&c.current, Some(f) if f.op == op && !f.sent) {
            return;
        }
        let Some(record) = self.history.get(op) else {
            return;
        };
        let (key, command) = (record.key, record.command);
        let Some(region_idx) = self.region_of(key) else {
            self.finish_op(client, Outcome::Failed("no region for key".to_owned()));
            return;
        };
        let region = self.regions[region_idx].clone();
        let region_id = region.get_id();
        let hint = self.clients[client].leader_hint.get(&region_id).copied();
        let store = match hint {
            Some(s) => s,
            None => {
                let peers = region.get_peers();
                peers[self.rng.gen_range(0..peers.len())].get_store_id()
            }
        };
        let Some(peer) = util::find_peer(&region, store).cloned() else {
            self.clients[client].leader_hint.remove(&region_id);
            self.retry_later(client, "hinted store has no peer");
            return;
        };
        let attempt = {
            let Some(f) = self.clients[client].current.as_mut() else {
                return;
            };
            f.attempt += 1;
            f.sent = true;
            f.store = store;
            f.region = region_id;
            f.attempt
        };
        self.stats.attempts += 1;
        let mut req = util::new_cmd_request(&region, peer);
        let mut r = Request::default();
        let k = self.keys[key].clone();
        match command {
            Command::Put(v) => {
                r.set_cmd_type(CmdType::Put);
                r.mut_put().set_key(k);
                r.mut_put().set_value(encode_value(v));
            }
            Command::Delete => {
                r.set_cmd_type(CmdType::Delete);
                r.mut_delete().set_key(k);
            }
            Command::Get => {
                r.set_cmd_type(CmdType::Get);
                r.mut_get().set_key(k);
            }
        }
        req.mut_requests().push(r);
        let sink = self.completions.clone();
        let cb = Callback::new(move |resp| {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Completion {
                    client,
                    op,
                    attempt,
                    resp,
                });
        });
        let timeout = self.cfg.attempt_timeout;
        self.schedule(
            self.now + timeout,
            Event::AttemptTimeout {
                client,
                op,
                attempt,
            },
        );
        let router = self
            .stores
            .get(&store)
            .and_then(|s| s.running.as_ref())
            .map(|r| r.router.clone());
        let Some(router) = router else {
            // The store is down: the connection is refused, nothing sent.
            cb.invoke_with_error(util::new_region_not_found(region_id), 0);
            return;
        };
        match router.send_raft_command(RaftCommand::new(req, cb)) {
            Ok(()) => self.wake(store, 0),
            Err(TrySendError::Full(cmd)) => cmd
                .callback
                .invoke_with_error(util::new_server_is_busy("mailbox full"), 0),
            Err(TrySendError::Disconnected(cmd)) => cmd
                .callback
                .invoke_with_error(util::new_region_not_found(region_id), 0),
        }
    }

    /// The attempt was refused (definitely not executed): the operation
    /// fails, and the client retries the same request as a new operation
    /// after a short backoff, until `op_deadline`.
    fn retry_later(&mut self, client: usize, why: &str) {
        let expired = self.clients[client]
            .retry
            .is_some_and(|r| self.now.saturating_sub(r.first_invoke) > self.cfg.op_deadline);
        if expired || self.phase == Phase::FinalReads {
            self.clients[client].retry = None;
        }
        self.finish_op(client, Outcome::Failed(why.to_owned()));
    }

    fn on_response(&mut self, c: Completion) {
        let current = self.clients.get(c.client).and_then(|s| s.current.as_ref());
        let Some(flight) = current else {
            return;
        };
        if flight.op != c.op || flight.attempt != c.attempt || !flight.sent {
            return; // a late answer to an attempt already given up on
        }
        let store = flight.store;
        let region_id = flight.region;
        let header = c.resp.get_header();
        if !header.has_error() {
            self.clients[c.client].leader_hint.insert(region_id, store);
            let command = self.history[c.op].command;
            let outcome = match command {
                Command::Put(_) | Command::Delete => Outcome::Written,
                Command::Get => match c.resp.get_responses().first() {
                    Some(r) if r.get_cmd_type() == CmdType::Get => {
                        let g = r.get_get();
                        if g.get_not_found() {
                            Outcome::Read(None)
                        } else {
                            // A value no put wrote reads as u64::MAX, which
                            // the checker reports as never written.
                            Outcome::Read(Some(decode_value(g.get_value()).unwrap_or(u64::MAX)))
                        }
                    }
                    _ => {
                        self.failure = Some(Failure::MalformedResponse {
                            detail: format!("get op {} answered {:?}", c.op, c.resp),
                        });
                        return;
                    }
                },
            };
            self.finish_op(c.client, outcome);
            return;
        }
        let err = header.get_error();
        let definite = err.has_not_leader()
            || err.has_region_not_found()
            || err.has_server_is_busy()
            || err.has_stale_command()
            || err.has_epoch_not_match()
            || err.has_key_not_in_region()
            || err.has_store_not_match()
            || err.has_raft_entry_too_large();
        if !definite {
            self.clients[c.client].leader_hint.remove(&region_id);
            self.finish_op(
                c.client,
                Outcome::Unknown(format!("store {store}: {}", err.get_message())),
            );
            return;
        }
        if err.has_epoch_not_match() {
            let current: Vec<Region> = err.get_epoch_not_match().get_current_regions().to_vec();
            for r in current {
                self.update_region(r);
            }
            // The answer lists the split-off regions only while the peer
            // remembers them (not after a restart): like a client asking a
            // placement service, refresh the layout from that store's
            // region metadata.
            self.refresh_regions_from(store);
        }
        let hint = err.has_not_leader() && err.get_not_leader().has_leader();
        let leader_store = err.get_not_leader().get_leader().get_store_id();
        if hint && leader_store != 0 {
            self.clients[c.client]
                .leader_hint
                .insert(region_id, leader_store);
        } else {
            self.clients[c.client].leader_hint.remove(&region_id);
        }
        let why = format!("store {store}: {}", err.get_message());
        self.retry_later(c.client, &why);
    }

    fn finish_op(&mut self, client: usize, outcome: Outcome) {
        let Some(flight) = self.clients.get_mut(client).and_then(|c| c.current.take()) else {
            return;
        };
        if !matches!(outcome, Outcome::Failed(_)) {
            self.clients[client].retry = None;
        }
        let retrying = self.clients[client].retry.is_some();
        let complete = match outcome {
            Outcome::Unknown(_) => None,
            _ => Some(self.stamp()),
        };
        let now = self.now;
        let Some(op) = self.history.get_mut(flight.op) else {
            return;
        };
        op.complete = complete;
        op.outcome = outcome;
        match &op.outcome {
            Outcome::Written | Outcome::Read(_) => self.stats.ops_ok += 1,
            Outcome::Failed(_) => self.stats.ops_failed += 1,
            Outcome::Unknown(_) => self.stats.ops_unknown += 1,
            Outcome::Pending => {}
        }
        let line = op.to_string();
        let (key, read) = (op.key, op.outcome.clone());
        if self.phase == Phase::FinalReads {
            match read {
                Outcome::Read(v) => {
                    self.final_reads.insert(key, v);
                }
                _ => self.final_queue.push_back(key),
            }
            if self.final_reads.len() == self.keys.len() {
                // Let every replica catch up, then compare them.
                self.schedule(now + 300, Event::Converge);
            }
        }
        self.trace(&line);
        let pause = if retrying {
            self.rng.gen_range(1..=20)
        } else {
            self.rng.gen_range(1..=self.cfg.max_think_time.max(1))
        };
        self.schedule(now + pause, Event::ClientWake { client });
    }

    /// Compares every store's user data with each other and with the final
    /// reads.
    fn check_replicas(&mut self) {
        let mut contents: Vec<(u64, Pairs)> = Vec::new();
        for (id, slot) in &self.stores {
            match slot.engines.kv.scan(b"", b"", usize::MAX) {
                Ok(data) => contents.push((*id, data)),
                Err(e) => {
                    self.failure = Some(Failure::ReplicasDiverge {
                        detail: format!("store {id}: scan failed: {e}"),
                    });
                    return;
                }
            }
        }
        let Some((first_id, first)) = contents.first().cloned() else {
            return;
        };
        for (id, data) in &contents[1..] {
            if *data != first {
                self.failure = Some(Failure::ReplicasDiverge {
                    detail: format!(
                        "store {first_id} holds {:?} but store {id} holds {:?}; {}",
                        render(&first),
                        render(data),
                        self.progress_report()
                    ),
                });
                return;
            }
        }
        for (key, read) in &self.final_reads {
            let stored = first
                .iter()
                .find(|(k, _)| Some(k) == self.keys.get(*key))
                .map(|(_, v)| decode_value(v).unwrap_or(u64::MAX));
            if stored != *read {
                self.failure = Some(Failure::ReplicasDiverge {
                    detail: format!(
                        "key k{key}: final read returned {read:?} but the stores hold {stored:?}"
                    ),
                });
                return;
            }
        }
    }
}

impl Simulation {
    /// Each store's persisted progress per region: applied and truncated
    /// index (KV engine), first, commit and last index (raft log engine).
    fn progress_report(&self) -> String {
        let mut out = Vec::new();
        for (id, slot) in &self.stores {
            for &rid in &self.tick_ids {
                let apply_state = slot.engines.kv.get_apply_state(rid).ok().flatten();
                let applied = apply_state.as_ref().map(|s| s.get_applied_index());
                let truncated = apply_state
                    .as_ref()
                    .map(|s| s.get_truncated_state().get_index());
                let first = slot.engines.raft.first_index(rid);
                let raft = slot.engines.raft.get_raft_state(rid).ok().flatten();
                let (commit, last) = raft.map_or((None, None), |r| {
                    (
                        Some(r.get_hard_state().get_commit()),
                        Some(r.get_last_index()),
                    )
                });
                out.push(format!(
                    "store {id} region {rid}: applied {applied:?} truncated {truncated:?} \
                     first {first:?} commit {commit:?} last {last:?}"
                ));
            }
        }
        out.join("; ")
    }
}

fn render(data: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    data.iter()
        .map(|(k, v)| format!("{:02x?}={}", k, String::from_utf8_lossy(v)))
        .collect()
}

/// Runs seed `cfg.seed` to the end, turning a panic in the production code
/// into [`Failure::Panic`]. `verbose` prints the simulation's events and
/// raftstore's log to stderr.
///
/// # Examples
///
/// ```
/// use sim::{run_seed, Profile, SimConfig};
///
/// let report = run_seed(SimConfig::from_seed(7, Profile::Quick), false);
/// assert!(report.failure.is_none(), "{:?}", report.failure);
/// assert!(report.stats.ops_ok > 0);
/// ```
pub fn run_seed(cfg: SimConfig, verbose: bool) -> RunReport {
    let seed = cfg.seed;
    let logger = if verbose {
        crate::logging::terminal_logger()
    } else {
        Logger::root(slog::Discard, o!())
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Simulation::new(cfg, logger, verbose).map(Simulation::run)
    }));
    let failed = |failure: Failure| RunReport {
        seed,
        digest: 0,
        end_time: 0,
        stats: SimStats::default(),
        history: Vec::new(),
        failure: Some(failure),
    };
    match result {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => failed(Failure::Setup(e.to_string())),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "non-string panic".to_owned());
            failed(Failure::Panic(msg))
        }
    }
}
