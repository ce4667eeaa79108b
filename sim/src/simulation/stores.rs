//! The simulated stores: starting, crashing and restarting them, polling
//! their handlers one round at a time, ticking them, and carrying their
//! messages through the fault model.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use batch_system::mpsc::TrySendError;
use batch_system::{Fsm, ManualPoller, PollHandler};
use engine::{Engines, MemKvEngine, MemRaftLogEngine};
use kvproto_lite::eraftpb::MessageType;
use kvproto_lite::metapb;
use kvproto_lite::raft_serverpb::{ExtraMessageType, RaftMessage};
use protobuf::Message as _;
use raftstore::snapshot::{IncomingSnapshot, OutgoingSnapshot};
use raftstore::{
    create_raft_batch_system, ManualPool, PeerMsg, RaftBatchSystem, RaftMessageSink, RaftRouter,
    StoreMsg,
};
use rand::Rng;

use super::event::Event;
use super::Simulation;
use crate::network::SimTransport;
use crate::report::{Failure, SimStats};
use crate::{Error, Result};

/// stuck (some FSM keeps itself busy forever).
const MAX_BUSY_POLLS: u64 = 100_000;

/// Most poll rounds (of each poller) a store runs in one time unit.
const MAX_ROUNDS_PER_POLL: u32 = 16;

/// Most poller steps (a round's begin, one FSM handled, or a round's
/// finish) a store with two pollers of each kind runs in one time unit.
const MAX_STEPS_PER_POLL: u32 = 48;

/// A running store. Field order is drop order: pollers (with their
/// handlers) first, then the systems.
pub(super) struct Running {
    /// One raft and one apply poller, or two of each
    /// ([`SimConfig::two_pollers`](crate::SimConfig::two_pollers)).
    pub(super) pollers: ManualPool<MemKvEngine, MemRaftLogEngine, SimTransport>,
    pub(super) system: RaftBatchSystem<MemKvEngine, MemRaftLogEngine>,
    pub(super) router: RaftRouter<MemRaftLogEngine>,
}

/// A snapshot on its way from one store to another, one chunk per step.
pub(super) struct Transfer {
    pub(super) from: u64,
    pub(super) to: u64,
    /// The snapshot's message, until the receiver starts taking it.
    msg: Option<RaftMessage>,
    out: OutgoingSnapshot,
    incoming: Option<IncomingSnapshot>,
    next_chunk: usize,
}

/// A store's lease clock: simulated time at the store's own tick rate
/// (one of its ticks is `raft_base_tick_interval_ms`), so a store whose
/// ticks are skewed has a clock skewed alike.
pub(super) struct SimClock {
    pub(super) now: Arc<AtomicU64>,
    pub(super) period: u64,
    pub(super) tick_ms: u64,
}

impl raftstore::Clock for SimClock {
    fn now(&self) -> Duration {
        let units = self.now.load(Ordering::SeqCst);
        Duration::from_micros(units.saturating_mul(self.tick_ms * 1000) / self.period.max(1))
    }
}

pub(super) struct StoreSlot {
    pub(super) engines: Engines<MemKvEngine, MemRaftLogEngine>,
    pub(super) running: Option<Running>,
}

impl Simulation {
    pub(super) fn start_store(&mut self, id: u64) -> Result<()> {
        let outbox = self.outbox.clone();
        let cfg = self.cfg.store.clone();
        let clock = Arc::new(SimClock {
            now: self.clock_now.clone(),
            period: self.tick_period(id),
            tick_ms: cfg.raft_base_tick_interval_ms,
        });
        let logger = self.logger.clone();
        let Some(slot) = self.stores.get_mut(&id) else {
            return Err(Error::Config(format!("no store {id}")));
        };
        if slot.running.is_some() {
            return Ok(());
        }
        let (router, mut system) = create_raft_batch_system(&cfg);
        system.set_clock(clock);
        let mut meta = metapb::Store::default();
        meta.set_id(id);
        let n = if self.cfg.two_pollers { 2 } else { 1 };
        let pollers = system.spawn_manual_pool(
            meta,
            slot.engines.clone(),
            SimTransport::new(id, outbox),
            &logger,
            n,
            n,
        )?;
        slot.running = Some(Running {
            pollers,
            system,
            router,
        });
        Ok(())
    }

    pub(super) fn crash_store(&mut self, id: u64) {
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
            add_store_counts(&mut self.stats, &system);
            if pollers.raft.iter().any(ManualPoller::in_round)
                || pollers.apply.iter().any(ManualPoller::in_round)
            {
                // The FSMs a poller holds are dropped with it.
                self.stats.crashes_mid_round += 1;
            }
            // Log writes handed to a writer and not written are lost with
            // it (their peers never acknowledged them).
            if pollers.writers.iter().any(|w| w.pending() > 0) {
                self.stats.crashes_with_writes_in_flight += 1;
            }
            self.stats.async_writes += pollers.writers.iter().map(|w| w.written()).sum::<u64>();
            drop(pollers);
            drop(system);
            drop(router);
            slot.engines.kv.crash();
            slot.engines.raft.crash();
            self.stats.crashes += 1;
            // Its snapshot connections break with it.
            let broken: Vec<u64> = self
                .transfers
                .iter()
                .filter(|(_, t)| t.from == id || t.to == id)
                .map(|(k, _)| *k)
                .collect();
            for k in broken {
                if let Some(t) = self.transfers.remove(&k) {
                    self.fail_transfer(t);
                }
            }
            if self.cfg.report_reachability {
                for other in self.running_stores() {
                    if let Some(router) = self.router_of(other) {
                        router.report_unreachable(id);
                        self.wake(other, 0);
                    }
                }
            }
        }
    }

    pub(super) fn running_stores(&self) -> Vec<u64> {
        self.stores
            .iter()
            .filter(|(_, s)| s.running.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Ticks every awake region on `store` (if it runs; hibernated ones
    /// are not ticked, exactly as the store's own tick timer does) and its
    /// store FSM, and schedules its next tick.
    pub(super) fn tick(&mut self, store: u64) {
        if let Some(Running { router, system, .. }) =
            self.stores.get(&store).and_then(|s| s.running.as_ref())
        {
            for region in system.awake_regions().ids() {
                let _ = router.force_send(region, PeerMsg::Tick);
            }
            let _ = router.send_control(StoreMsg::Tick);
            self.wake(store, 0);
        }
        let period = self.tick_period(store);
        self.schedule(self.now + period, Event::Tick { store });
    }

    /// The router of `store`, if it is running.
    pub(super) fn router_of(&self, store: u64) -> Option<RaftRouter<MemRaftLogEngine>> {
        self.stores
            .get(&store)
            .and_then(|s| s.running.as_ref())
            .map(|r| r.router.clone())
    }

    /// Time between two ticks of `store` (its clock may be skewed).
    pub(super) fn tick_period(&self, store: u64) -> u64 {
        let skew = usize::try_from(store.saturating_sub(1))
            .ok()
            .and_then(|i| self.cfg.tick_skew.get(i))
            .copied()
            .unwrap_or(0);
        (self.cfg.tick_interval as i64 + skew).max(1) as u64
    }

    pub(super) fn restart(&mut self, store: u64) {
        let running = self.stores.get(&store).is_some_and(|s| s.running.is_some());
        if running {
            return;
        }
        self.trace(&format!("restart store {store}"));
        match self.start_store(store) {
            Ok(()) => {
                self.wake(store, 0);
                if self.cfg.report_reachability {
                    for other in self.running_stores() {
                        if other == store {
                            continue;
                        }
                        if let Some(router) = self.router_of(other) {
                            router.report_reachable(store);
                            self.wake(other, 0);
                        }
                    }
                }
            }
            Err(e) => {
                self.failure = Some(Failure::RestartFailed {
                    store,
                    error: e.to_string(),
                })
            }
        }
    }

    pub(super) fn deliver(&mut self, from: u64, to: u64, msg: RaftMessage) {
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
        if self.net.blocks_message(from, to, &msg) {
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
    pub(super) fn wake(&mut self, store: u64, delay: u64) {
        if self.poll_pending.insert(store) {
            self.schedule(self.now + delay, Event::Poll { store });
        }
    }

    /// One poll round of a store's raft poller and one of its apply poller
    /// (in random order, each unless paused); what they send goes into the
    /// event queue. A store that did work is polled again one time unit
    /// later, so the work of several stores, deliveries, crashes and client
    /// timeouts interleave.
    pub(super) fn poll_store(&mut self, id: u64) {
        if self.cfg.two_pollers {
            self.poll_store_interleaved(id);
            return;
        }
        self.poll_pending.remove(&id);
        let (raft_until, apply_until) = self
            .paused
            .get(&id)
            .map_or((0, 0), |p| (p.raft_until, p.apply_until));
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
                    pollers.apply[0].poll_once()
                } else {
                    0
                }
            };
            let (x, y) = if apply_first {
                let x = poll_apply();
                let y = if raft_on {
                    pollers.raft[0].poll_once()
                } else {
                    0
                };
                (x, y)
            } else {
                let y = if raft_on {
                    pollers.raft[0].poll_once()
                } else {
                    0
                };
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
        self.after_slice(id, a + b > 0);
    }

    /// A CPU slice of a store with two pollers of each kind: up to
    /// [`MAX_STEPS_PER_POLL`] steps, each of a poller the RNG picks (among
    /// those not paused): a poller between rounds begins one (taking what
    /// is scheduled), a poller in a round handles its next FSM, or
    /// finishes the round once every FSM is handled. A round can thus last
    /// over many steps of the other pollers and over other events
    /// (deliveries, ticks, crashes) until its poller is picked again. The
    /// slice ends early when every poller is between rounds and none finds
    /// work; a store with a poller in a round is polled again one time
    /// unit later.
    fn poll_store_interleaved(&mut self, id: u64) {
        self.poll_pending.remove(&id);
        let pause = self.paused.get(&id).copied();
        let now = self.now;
        let steps = self.rng.gen_range(1..=MAX_STEPS_PER_POLL);
        let Some(Running { pollers, .. }) =
            self.stores.get_mut(&id).and_then(|s| s.running.as_mut())
        else {
            self.busy_streak.remove(&id);
            return;
        };
        // The pollers that may run now: (raft?, index).
        let active: Vec<(bool, usize)> = (0..pollers.raft.len())
            .map(|i| (true, i))
            .chain((0..pollers.apply.len()).map(|i| (false, i)))
            .filter(|&(raft, i)| pause.map_or(true, |p| p.runs(raft, i, now)))
            .collect();
        let in_round = |pollers: &ManualPool<_, _, _>| {
            active.iter().any(|&(raft, i)| {
                if raft {
                    pollers.raft[i].in_round()
                } else {
                    pollers.apply[i].in_round()
                }
            })
        };
        let mut work = 0u64;
        let mut tally = Tally::default();
        let mut step_of = |pollers: &mut ManualPool<_, _, _>, (raft, i): (bool, usize)| {
            if raft {
                step(&mut pollers.raft, i, &mut tally)
            } else {
                step(&mut pollers.apply, i, &mut tally)
            }
        };
        if !active.is_empty() {
            for _ in 0..steps {
                let pick = active[self.rng.gen_range(0..active.len())];
                if step_of(pollers, pick) {
                    work += 1;
                    continue;
                }
                // The picked poller found nothing to take. If no poller is
                // in a round, look for work with each in turn: none found
                // means the store is idle.
                if in_round(pollers) {
                    continue;
                }
                if !active.iter().any(|&p| step_of(pollers, p)) {
                    break;
                }
                work += 1;
            }
        }
        let holding = in_round(pollers);
        self.stats.poll_rounds += tally.rounds;
        self.stats.overlapping_rounds += tally.overlapping;
        self.route_outbox();
        self.after_slice(id, work > 0 || holding);
    }

    /// After a store's CPU slice: a store that is still busy is polled
    /// again one time unit later; one busy for too long in a row fails the
    /// run (it never quiesces).
    fn after_slice(&mut self, id: u64, busy: bool) {
        self.schedule_io_write(id);
        if !busy {
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

    /// Schedules the I/O writers of store `id` to write in 1..=3 time
    /// units if a poll left them tasks and no write is scheduled yet.
    fn schedule_io_write(&mut self, id: u64) {
        let Some(Running { pollers, .. }) = self.stores.get(&id).and_then(|s| s.running.as_ref())
        else {
            return;
        };
        if pollers.writers.iter().all(|w| w.pending() == 0) || self.write_pending.contains(&id) {
            return;
        }
        self.write_pending.insert(id);
        let delay = self.rng.gen_range(1..=3);
        self.schedule(self.now + delay, Event::IoWrite { store: id });
    }

    /// Each I/O writer of store `id` writes what it was handed (one batch)
    /// and notifies the peers written, which the next poll takes up.
    pub(super) fn io_write(&mut self, id: u64) {
        self.write_pending.remove(&id);
        let Some(Running { pollers, .. }) =
            self.stores.get_mut(&id).and_then(|s| s.running.as_mut())
        else {
            return;
        };
        let written: usize = pollers.writers.iter_mut().map(|w| w.write_once()).sum();
        if written > 0 {
            self.wake(id, 0);
        }
    }

    /// Ends a transfer that did not complete: both ends forget it, the
    /// sender's leader is told (`report_snapshot` failure).
    fn fail_transfer(&mut self, t: Transfer) {
        self.stats.snapshot_transfers_failed += 1;
        drop(t.incoming);
        t.out.finish(false);
        self.wake(t.from, 0);
    }

    /// Carries the next chunk of transfer `id` (or starts or completes it).
    pub(super) fn snapshot_step(&mut self, id: u64) {
        let Some(mut t) = self.transfers.remove(&id) else {
            return;
        };
        let lossy = !self.calm && self.cfg.messages.drop > 0.0;
        if self.net.blocked(t.from, t.to)
            || (lossy && self.rng.gen_bool(self.cfg.messages.drop))
            || t.out.is_cancelled()
        {
            self.fail_transfer(t);
            return;
        }
        let Some(router) = self.router_of(t.to) else {
            self.fail_transfer(t);
            return;
        };
        if t.incoming.is_none() {
            let Some(msg) = t.msg.take() else {
                self.fail_transfer(t);
                return;
            };
            match router.receive_snapshot(msg) {
                Ok(incoming) => t.incoming = Some(incoming),
                Err(_) => {
                    self.fail_transfer(t);
                    return;
                }
            }
        }
        let chunks = t.out.chunks().len();
        if t.next_chunk < chunks {
            let chunk = &t.out.chunks()[t.next_chunk];
            let pushed = t.incoming.as_mut().map(|i| i.push(chunk));
            if !matches!(pushed, Some(Ok(()))) {
                self.fail_transfer(t);
                return;
            }
            t.out.record_sent(chunk.len());
            t.next_chunk += 1;
        }
        if t.next_chunk < chunks {
            let f = &self.cfg.messages;
            let latency = self.rng.gen_range(f.min_latency..=f.max_latency);
            self.transfers.insert(id, t);
            self.schedule(self.now + latency, Event::SnapshotStep { id });
            return;
        }
        let delivered = match t.incoming.take().map(IncomingSnapshot::finish) {
            Some(Ok(msg)) => router.send_raft_message(msg).is_ok(),
            _ => false,
        };
        if !delivered {
            self.fail_transfer(t);
            return;
        }
        t.out.finish(true);
        self.wake(t.to, 0);
        self.wake(t.from, 0);
    }

    /// Puts every message the stores sent through the fault model into the
    /// event queue.
    pub(super) fn route_outbox(&mut self) {
        for (from, msg, out) in self.outbox.drain_snapshots() {
            let to = msg.get_to_peer().get_store_id();
            if let Ok(bytes) = msg.write_to_bytes() {
                self.digest.write(&bytes);
            }
            let id = self.next_transfer;
            self.next_transfer += 1;
            self.trace(&format!(
                "snapshot {} from store {from} to store {to} ({} chunks)",
                out.key(),
                out.chunks().len()
            ));
            self.transfers.insert(
                id,
                Transfer {
                    from,
                    to,
                    msg: Some(msg),
                    out,
                    incoming: None,
                    next_chunk: 0,
                },
            );
            let f = &self.cfg.messages;
            let latency = self.rng.gen_range(f.min_latency..=f.max_latency);
            self.schedule(self.now + latency, Event::SnapshotStep { id });
        }
        for (from, msg) in self.outbox.drain() {
            self.stats.messages_sent += 1;
            let to = msg.get_to_peer().get_store_id();
            if let Ok(bytes) = msg.write_to_bytes() {
                self.digest.write(&bytes);
            }
            let f = self.cfg.messages.clone();
            let faulty = !self.calm;
            if self.net.blocks_message(from, to, &msg)
                || (faulty && f.drop > 0.0 && self.rng.gen_bool(f.drop))
            {
                self.stats.messages_lost += 1;
                continue;
            }
            let mut msg = msg;
            if f.forge_leader_check_yes && msg.has_leader_check_response() {
                for a in msg.mut_leader_check_response().mut_answers().iter_mut() {
                    a.set_confirmed(true);
                }
            }
            if faulty && f.corrupt > 0.0 && self.rng.gen_bool(f.corrupt) {
                let how = self.rng.gen_range(0..CORRUPTIONS);
                if corrupt(&mut msg, how) {
                    self.stats.messages_corrupted += 1;
                }
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
                if faulty
                    && f.leader_check_delay > 0.0
                    && raftstore::leader_check::is_leader_check(&msg)
                    && self.rng.gen_bool(f.leader_check_delay)
                {
                    self.stats.leader_checks_delayed += 1;
                    latency += self.rng.gen_range(1..=f.long_delay_max.max(1));
                }
                let msg = Box::new(msg.clone());
                self.schedule(self.now + latency, Event::Deliver { from, to, msg });
            }
        }
    }

    /// The store whose peer of `region` leads with the highest term.
    pub(super) fn leader_store(&self, region: u64) -> Option<u64> {
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
}

/// Rounds counted by [`step`].
#[derive(Default)]
struct Tally {
    /// Rounds finished.
    rounds: u64,
    /// Rounds begun while another poller of the same kind was in a round.
    overlapping: u64,
}

/// One step of poller `i` of `pollers` (pollers of one kind of one store):
/// begin a round, handle the round's next FSM, or finish the round.
/// Returns `false` only when the poller was between rounds and found
/// nothing to take.
fn step<N: Fsm, C: Fsm, H: PollHandler<N, C>>(
    pollers: &mut [ManualPoller<N, C, H>],
    i: usize,
    tally: &mut Tally,
) -> bool {
    let others_in_round = pollers
        .iter()
        .enumerate()
        .any(|(j, p)| j != i && p.in_round());
    let Some(poller) = pollers.get_mut(i) else {
        return false;
    };
    if !poller.in_round() {
        // `begin_round` only fails for a poller in a round.
        let took = poller.begin_round().unwrap_or(0);
        if took > 0 && others_in_round {
            tally.overlapping += 1;
        }
        return took > 0;
    }
    if !poller.handle_next() && poller.finish_round().is_ok() {
        tally.rounds += 1;
    }
    true
}

/// Adds a store's hibernation and rejected-message counters to the run's (before the store is
/// dropped by a crash, and for the running stores at the end).
pub(super) fn add_store_counts(
    stats: &mut SimStats,
    system: &RaftBatchSystem<MemKvEngine, MemRaftLogEngine>,
) {
    let s = system.stats();
    stats.hibernations += s.hibernations.load(std::sync::atomic::Ordering::Relaxed);
    stats.wakes += s.wakes.load(std::sync::atomic::Ordering::Relaxed);
    stats.rejected_messages += s.rejected_messages.malformed();
    stats.snapshots_applied += s
        .snapshots
        .applied
        .load(std::sync::atomic::Ordering::Relaxed);
    let local = system.local_reader();
    stats.lease_reads_local += local.served();
    stats.lease_fallbacks += local.fallbacks();
    let checks = system.leader_checks().stats();
    stats.leader_check_batches += checks.batches_sent;
    stats.leader_check_confirmed += checks.batches_confirmed;
    stats.leader_check_refused += checks.batches_refused;
    stats.leader_check_timed_out += checks.batches_timed_out;
    stats.leader_check_answers_no += checks.answered_no;
    // No correct store sends a malformed check (the network corrupts none).
    stats.rejected_messages += checks.malformed;
}

/// How many ways [`corrupt`] knows.
const CORRUPTIONS: u32 = 5;

/// Damages a raft message in way number `how` (of [`CORRUPTIONS`]), each a
/// malformation every receiving store must detect, whatever its state, and
/// drop (`raftstore::validate::check_message`). Returns `false` (message
/// unchanged) for hibernation messages, which are never stepped into raft.
fn corrupt(msg: &mut RaftMessage, how: u32) -> bool {
    if msg.get_extra() != ExtraMessageType::NoExtra {
        return false;
    }
    let m = msg.mut_message();
    match how {
        0 => m.term = 0,
        1 => m.from = m.from.wrapping_add(1_000_000),
        2 => m.set_msg_type(MessageType::MsgPropose),
        3 => m.set_msg_type(MessageType::MsgHup),
        _ => {
            if m.get_msg_type() == MessageType::MsgAppend && !m.get_entries().is_empty() {
                let e = &mut m.mut_entries()[0];
                e.index = e.index.wrapping_add(1);
            } else {
                m.set_msg_type(MessageType::MsgAppendResponse);
                m.request_snapshot = 1;
            }
        }
    }
    true
}
