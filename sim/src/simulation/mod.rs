//! The simulation loop: stores driven by hand, a seeded event queue,
//! clients, the nemesis, and the checks at the end.
//!
//! ```text
//! loop over events in (time, sequence) order:
//!   Tick(store)        PeerMsg::Tick to each awake region (sorted ids; hibernated
//!                      regions are not ticked), StoreMsg::Tick
//!   Deliver(msg)       RaftRouter::send_raft_message on the destination
//!   Poll(store)        one ManualPoller::poll_once of the store's raft poller
//!                      and one of its apply poller (random order, unless
//!                      paused); messages sent go through the fault model
//!                      into the queue as future Delivers; a store that did
//!                      work is polled again 1 time unit later; with
//!                      `two_pollers`, 1..=48 steps (begin a round, handle
//!                      one FSM, finish a round) of pollers the RNG picks
//!                      among the store's two raft and two apply pollers,
//!                      so rounds overlap and span other events
//!   IoWrite(store)     (store I/O writer seeds) each writer of the store
//!                      writes every task its raft pollers handed it as one
//!                      batch and notifies the peers; scheduled 1..=3 units
//!                      after a poll slice left tasks, so writes land
//!                      between other events and a crash drops those not
//!                      written
//!   ClientWake         a client invokes an operation (a client::Call)
//!   CallWake           a call's backoff ended: its next attempt
//!   AttemptTimeout     the attempt's outcome becomes unknown; the call retries
//!   Nemesis / Heal*    partitions, one-way cuts, leader isolation, crashes,
//!                      pauses
//!   then               client callbacks are handled in (client, op) order
//! ```
//!
//! Every poll round is a separate event, so deliveries, crashes, timeouts
//! and other stores' rounds interleave with a store's work at any point
//! between two rounds.
//!
//! One concept per file: the queue's [`event`]s, the simulated [`stores`]
//! (polling, ticks, delivery), the [`nemesis`], the region [`layout`] the
//! clients believe in, the client [`workload`], and the final [`checks`].

mod checks;
mod event;
mod layout;
mod nemesis;
mod stores;
mod workload;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use client::RegionCache;
use engine::{Engines, MemKvEngine, MemRaftLogEngine};
use kvproto_lite::raft_cmdpb::RaftCmdResponse;
use raftstore::{bootstrap_store, even_split_keys, initial_regions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use slog::{o, Logger};

use self::event::{Event, Phase};
use self::stores::StoreSlot;
use self::workload::{ClientState, Completions};
use crate::config::SimConfig;
use crate::digest::Digest;
use crate::history::{Operation, Stamp};
use crate::network::{NetState, Outbox};
use crate::report::{Failure, RunReport, SimStats};
use crate::Result;

/// A pause of a store's pollers (a stalled thread or a slow disk).
#[derive(Debug, Clone, Copy)]
struct Pause {
    /// The raft pollers are not polled before this time.
    raft_until: u64,
    /// The apply pollers are not polled before this time.
    apply_until: u64,
    /// With two pollers of each kind: only poller number `only` of each
    /// paused kind stalls (maybe holding the FSMs of a round it began),
    /// the other keeps polling. `None`: every poller of the kind.
    only: Option<usize>,
}

impl Pause {
    /// Whether poller `index` (raft or apply) may be polled at `now`.
    fn runs(&self, raft: bool, index: usize, now: u64) -> bool {
        let until = if raft {
            self.raft_until
        } else {
            self.apply_until
        };
        now >= until || self.only.is_some_and(|only| only != index)
    }
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
    /// Per store: which pollers are paused until when.
    paused: BTreeMap<u64, Pause>,
    /// Stores with a poll scheduled.
    poll_pending: BTreeSet<u64>,
    /// Stores with an I/O write scheduled (async I/O seeds).
    write_pending: BTreeSet<u64>,
    /// Consecutive busy poll rounds per store.
    busy_streak: BTreeMap<u64, u64>,
    calm: bool,
    next_fault: u64,
    clients: Vec<ClientState>,
    history: Vec<Operation>,
    /// The region layout the simulation believes in (learned from split
    /// responses and `EpochNotMatch`), sorted by start key.
    regions: RegionCache,
    /// Every region id that may exist on a store.
    tick_ids: BTreeSet<u64>,
    /// Next region id and peer id a split may use.
    next_region_id: u64,
    next_peer_id: u64,
    /// Split responses waiting to be learned from.
    split_results: Arc<Mutex<Vec<RaftCmdResponse>>>,
    /// Membership change responses waiting to be learned from.
    membership_results: Arc<Mutex<Vec<RaftCmdResponse>>>,
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
    /// Snapshot transfers under way, by id.
    transfers: BTreeMap<u64, stores::Transfer>,
    next_transfer: u64,
    /// Simulated time, read by the stores' lease clocks.
    clock_now: Arc<std::sync::atomic::AtomicU64>,
}

impl Simulation {
    /// Sets up the cluster for `cfg`: bootstraps every store's in-memory
    /// engines with the initial regions and starts each store through
    /// [`raftstore::RaftBatchSystem::spawn_manual`]. With `verbose`, the simulation
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
            write_pending: BTreeSet::new(),
            busy_streak: BTreeMap::new(),
            calm: false,
            next_fault: 1,
            clients: (0..cfg.clients).map(|_| ClientState::default()).collect(),
            history: Vec::new(),
            tick_ids: regions.iter().map(|r| r.get_id()).collect(),
            next_region_id: 1_000,
            next_peer_id: 100_000,
            split_results: Arc::new(Mutex::new(Vec::new())),
            membership_results: Arc::new(Mutex::new(Vec::new())),
            regions: RegionCache::new(regions.clone()),
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
            transfers: BTreeMap::new(),
            next_transfer: 1,
            clock_now: Arc::default(),
            cfg,
        };
        for &id in &store_ids {
            let engines = Engines {
                kv: MemKvEngine::new(),
                raft: MemRaftLogEngine::new(),
            };
            bootstrap_store(&engines, id, &regions)?;
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
            || n.sleeping_leaders
            || n.membership
            || n.leader_check_isolation
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
            self.clock_now
                .store(at, std::sync::atomic::Ordering::SeqCst);
            self.stats.events += 1;
            self.digest.write_u64(at);
            self.digest.write_u64(seq);
            self.digest.write_u64(ev.code());
            self.handle(ev);
            self.process_completions();
        }
        for slot in self.stores.values() {
            if let Some(r) = &slot.running {
                stores::add_store_counts(&mut self.stats, &r.system);
                self.stats.async_writes +=
                    r.pollers.writers.iter().map(|w| w.written()).sum::<u64>();
            }
        }
        self.check_final_reads_done();
        self.check_no_invalid_messages();
        self.check_linearizable();
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
            Event::Tick { store } => self.tick(store),
            Event::ClientWake { client } => self.client_wake(client),
            Event::AttemptTimeout {
                client,
                op,
                attempt,
            } => self.attempt_timeout(client, op, attempt),
            Event::CallWake { client, op } => self.call_wake(client, op),
            Event::Poll { store } => self.poll_store(store),
            Event::Nemesis => self.nemesis(),
            Event::HealNet { fault } => {
                self.trace(&format!("heal network fault {fault}"));
                self.net.heal(fault);
            }
            Event::Restart { store } => self.restart(store),
            Event::SnapshotStep { id } => self.snapshot_step(id),
            Event::IoWrite { store } => self.io_write(store),
            Event::PlannedStop {
                store,
                led,
                restart_at,
            } => self.planned_stop(store, &led, restart_at),
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
