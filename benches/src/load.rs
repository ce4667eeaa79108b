//! Load generation: client threads, each keeping a window of asynchronous
//! commands in flight, routed to each region's leader.
//!
//! Every client thread owns `window` slots; a slot has at most one command
//! outstanding and owns a disjoint set of keys, so writes to one key are
//! strictly sequential and the last acknowledged value of every key is
//! known exactly (what the read-back check needs). A command goes through
//! [`CommandSink::send_command`] with a [`Callback`] that posts the answer
//! to the client's completion channel, so one thread keeps hundreds of
//! commands in flight instead of blocking on each.
//!
//! Routing and retries are the client crate's core ([`client::Routing`]):
//! each attempt goes to the store believed to lead the key's region (or,
//! with no leader known, to the next peer in turn), and the answer updates
//! the caches and is classified ([`client::ErrorClass`]). `RetryNow`
//! (`NotLeader` with a hint, `EpochNotMatch`) goes out again at once,
//! `RetryLater` (busy, stale, no leader, region not found) after a short
//! pause; both were not applied. `Fail` gives the operation up. An unknown
//! outcome (untyped error), or a command still unanswered when the run
//! drains, "poisons" its key: the key is neither written again nor
//! checked.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_system::mpsc::TrySendError;
use client::{ErrorClass, LeaderCache, RegionCache, Route, RouteError, Routing, Verdict};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use hdrhistogram::Histogram;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::RaftCmdResponse;
use raftstore::{Callback, CommandSink, RaftCommand};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::sys;

/// What load to generate.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Client threads.
    pub clients: usize,
    /// Commands each client keeps in flight.
    pub window: usize,
    /// Bytes per written value (at least 12).
    pub value_size: usize,
    /// Fraction of operations that are reads (0.0 ..= 1.0).
    pub read_ratio: f64,
    /// How reads are served (through the log, ReadIndex, lease, or a
    /// follower's ReadIndex: those go to any peer of the region).
    pub read_mode: kvproto_lite::raft_cmdpb::ReadMode,
    /// Total number of keys (rounded up to one per slot).
    pub keys: usize,
    /// Target operations per second over all clients; `None` = as fast as
    /// the window allows (closed loop).
    pub rate: Option<f64>,
    /// Seed of the clients' random choices.
    pub seed: u64,
    /// How long to wait for outstanding commands after the load stops.
    pub drain_timeout: Duration,
    /// Most attempts of one command before giving it up.
    pub max_attempts: u32,
}

/// Where the load goes: one command sink per store and the regions.
pub struct Target {
    /// Command entry point of every running store.
    pub sinks: HashMap<u64, Arc<dyn CommandSink>>,
    /// Regions, in key order.
    pub regions: Vec<Region>,
    /// The store believed to lead each region (same order as `regions`).
    pub leaders: Vec<u64>,
    /// Indexes into `regions` of the regions that get load (see
    /// [`active_regions`]); the others stay idle.
    pub active: Vec<usize>,
}

/// The indexes of `active` regions out of `total`, spread evenly over the
/// key space (so over the leaders too); all of them when `active >= total`.
///
/// ```
/// assert_eq!(benches::load::active_regions(10, 3), vec![0, 3, 6]);
/// assert_eq!(benches::load::active_regions(3, 5), vec![0, 1, 2]);
/// ```
pub fn active_regions(total: usize, active: usize) -> Vec<usize> {
    if active >= total {
        return (0..total).collect();
    }
    (0..active).map(|i| i * total / active.max(1)).collect()
}

/// Counters shared with the progress display and the phase controller.
#[derive(Default)]
pub struct Live {
    /// Acknowledged writes so far (whole run).
    pub writes: AtomicU64,
    /// Successful reads so far (whole run).
    pub reads: AtomicU64,
    /// Refusals and failures seen (retried or not).
    pub errors: AtomicU64,
    /// Whether completions count towards the measurement.
    pub measuring: AtomicBool,
    /// Stop issuing new operations and drain.
    pub stop: AtomicBool,
}

/// What one client thread saw.
pub struct ClientResult {
    /// Write latency (µs) of writes acknowledged while measuring.
    pub write_hist: Histogram<u64>,
    /// Read latency (µs) of reads answered while measuring.
    pub read_hist: Histogram<u64>,
    /// Writes acknowledged while measuring.
    pub writes: u64,
    /// Reads answered while measuring.
    pub reads: u64,
    /// Every key's last acknowledged write: (key index, sequence number).
    pub acked: Vec<(u64, u64)>,
    /// Keys whose last write has an unknown outcome (not checked).
    pub poisoned: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Commands given up after a typed refusal (not applied).
    pub given_up: u64,
    /// Reads whose value was not the last acknowledged write.
    pub read_mismatches: Vec<String>,
    /// CPU time this client thread used while measuring.
    pub cpu: Duration,
}

/// The 8-byte key of key index `k`: keys are spread round-robin over the
/// active regions (`active[k % active.len()]`, indexes into `regions`) and
/// counted up from each region's start. Returns the region's index too.
pub fn key_of(regions: &[Region], active: &[usize], k: u64) -> (usize, [u8; 8]) {
    let n = active.len().max(1) as u64;
    let r = active.get((k % n) as usize).copied().unwrap_or(0);
    let start = regions
        .get(r)
        .map(|reg| {
            let s = reg.get_start_key();
            let mut b = [0u8; 8];
            let len = s.len().min(8);
            b[..len].copy_from_slice(&s[..len]);
            u64::from_be_bytes(b)
        })
        .unwrap_or(0);
    (r, (start + 1 + k / n).to_be_bytes())
}

/// The value written to key index `k` by its `seq`-th write: the sequence
/// number and key index followed by filler, `size` bytes in all.
pub fn value_of(k: u64, seq: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.max(12));
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&(k as u32).to_le_bytes());
    let mut x = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seq;
    while v.len() < size {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.push((x >> 56) as u8);
    }
    v
}

#[derive(Clone, Copy)]
enum OpKind {
    Write { pos: usize, seq: u64 },
    Read { pos: usize },
}

struct Inflight {
    kind: OpKind,
    started: Instant,
    attempts: u32,
    /// Where the attempt in flight went.
    route: Option<Route>,
}

struct Slot {
    keys: Vec<u64>,
    acked: Vec<u64>,
    poisoned: Vec<bool>,
    next: usize,
    inflight: Option<Inflight>,
}

struct Client {
    spec: LoadSpec,
    target: Arc<Target>,
    live: Arc<Live>,
    routing: Routing,
    /// Round-robin position for regions with no leader known.
    rotation: usize,
    slots: Vec<Slot>,
    tx: Sender<Answer>,
    rng: StdRng,
    deferred: VecDeque<(Instant, u32)>,
    ready: VecDeque<u32>,
    outstanding: usize,
    res: ClientResult,
}

const RETRY_PAUSE: Duration = Duration::from_millis(2);

/// A command's answer: its slot, the response, and when the callback ran
/// (latency is measured to this instant, not to when the client thread
/// gets round to reading it).
type Answer = (u32, RaftCmdResponse, Instant);

/// With a rate limit, a client thread wakes at most this often: it issues
/// every operation that fell due meanwhile, reads every answer, and sleeps
/// again. Waking for each operation (every ~70 µs at 30,000 ops/s over two
/// clients) and each answer made the clients the source of a large share
/// of the process's context switches, which on two cores are paid by the
/// stores. Answers carry their own timestamp, so latency stays exact.
const PACING_TICK: Duration = Duration::from_millis(1);

fn histogram() -> Histogram<u64> {
    // 1 µs .. 100 s with 3 significant digits; the bounds are constants.
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"))
}

/// Runs client `id` until `live.stop`, then drains its outstanding
/// commands.
pub fn run_client(id: usize, spec: LoadSpec, target: Arc<Target>, live: Arc<Live>) -> ClientResult {
    let (tx, rx) = crossbeam_channel::unbounded();
    let total_slots = (spec.clients * spec.window) as u64;
    let keys = (spec.keys as u64).max(total_slots);
    let slots = (0..spec.window)
        .map(|w| {
            let global = (id * spec.window + w) as u64;
            let keys: Vec<u64> = (global..keys).step_by(total_slots as usize).collect();
            Slot {
                acked: vec![0; keys.len()],
                poisoned: vec![false; keys.len()],
                keys,
                next: 0,
                inflight: None,
            }
        })
        .collect();
    let mut leaders = LeaderCache::new();
    for (region, &store) in target.regions.iter().zip(&target.leaders) {
        leaders.set(region.get_id(), store);
    }
    let mut client = Client {
        routing: Routing::with_leaders(RegionCache::new(target.regions.clone()), leaders),
        rotation: 0,
        rng: StdRng::seed_from_u64(spec.seed ^ (id as u64).wrapping_mul(0x9e37_79b9)),
        spec,
        target,
        live,
        slots,
        tx,
        deferred: VecDeque::new(),
        ready: VecDeque::new(),
        outstanding: 0,
        res: ClientResult {
            write_hist: histogram(),
            read_hist: histogram(),
            writes: 0,
            reads: 0,
            acked: Vec::new(),
            poisoned: 0,
            retries: 0,
            given_up: 0,
            read_mismatches: Vec::new(),
            cpu: Duration::ZERO,
        },
    };
    client.run(&rx);
    client.finish()
}

impl Client {
    fn run(&mut self, rx: &Receiver<Answer>) {
        self.ready = (0..self.slots.len() as u32).collect();
        let per_client_rate = self
            .spec
            .rate
            .map(|r| (r / self.spec.clients as f64).max(1.0));
        let t0 = Instant::now();
        let mut issued = 0u64;
        let mut drain_deadline: Option<Instant> = None;
        let mut cpu_start: Option<Duration> = None;
        loop {
            let now = Instant::now();
            if cpu_start.is_none() && self.live.measuring.load(Ordering::Relaxed) {
                cpu_start = Some(sys::thread_cpu());
            }
            let mut next_wake = now + Duration::from_millis(50);
            if self.live.stop.load(Ordering::Relaxed) {
                let deadline = *drain_deadline.get_or_insert_with(|| {
                    if let Some(start) = cpu_start {
                        self.res.cpu = sys::thread_cpu().saturating_sub(start);
                    }
                    now + self.spec.drain_timeout
                });
                // Deferred retries were refused, so not applied: drop them.
                for (_, slot) in std::mem::take(&mut self.deferred) {
                    if let Some(s) = self.slots.get_mut(slot as usize) {
                        s.inflight = None;
                    }
                }
                if self.outstanding == 0 || now >= deadline {
                    break;
                }
                next_wake = next_wake.min(deadline);
            } else {
                while let Some(&slot) = self.ready.front() {
                    if let Some(rate) = per_client_rate {
                        let due = t0 + Duration::from_secs_f64(issued as f64 / rate);
                        if now < due {
                            next_wake = next_wake.min(due);
                            break;
                        }
                    }
                    self.ready.pop_front();
                    self.start_op(slot);
                    issued += 1;
                }
                while let Some(&(due, slot)) = self.deferred.front() {
                    if due > now {
                        next_wake = next_wake.min(due);
                        break;
                    }
                    self.deferred.pop_front();
                    self.send(slot);
                }
            }
            let wait = next_wake.saturating_duration_since(Instant::now());
            if per_client_rate.is_some() {
                // Paced: sleep a tick (or until the next due operation if
                // later), then take every answer that arrived.
                std::thread::sleep(wait.max(PACING_TICK));
                loop {
                    match rx.try_recv() {
                        Ok((slot, resp, at)) => self.on_response(slot, resp, at),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                }
                continue;
            }
            match rx.recv_timeout(wait) {
                Ok((slot, resp, at)) => {
                    self.on_response(slot, resp, at);
                    while let Ok((slot, resp, at)) = rx.try_recv() {
                        self.on_response(slot, resp, at);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn finish(mut self) -> ClientResult {
        for s in &mut self.slots {
            // Anything still unanswered may or may not be applied.
            if let Some(Inflight {
                kind: OpKind::Write { pos, .. },
                ..
            }) = s.inflight.take()
            {
                if let Some(p) = s.poisoned.get_mut(pos) {
                    *p = true;
                }
            }
            for (pos, &k) in s.keys.iter().enumerate() {
                let poisoned = s.poisoned.get(pos).copied().unwrap_or(true);
                let seq = s.acked.get(pos).copied().unwrap_or(0);
                if poisoned {
                    self.res.poisoned += 1;
                } else if seq > 0 {
                    self.res.acked.push((k, seq));
                }
            }
        }
        self.res
    }

    /// Picks the slot's next operation and sends it.
    fn start_op(&mut self, slot: u32) {
        let read_ratio = self.spec.read_ratio;
        let want_read = read_ratio > 0.0 && self.rng.gen_bool(read_ratio.min(1.0));
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let n = s.keys.len();
        if n == 0 {
            return;
        }
        let mut kind = None;
        for _ in 0..n {
            let pos = s.next % n;
            s.next = s.next.wrapping_add(1);
            if s.poisoned.get(pos).copied().unwrap_or(true) {
                continue;
            }
            let acked = s.acked.get(pos).copied().unwrap_or(0);
            kind = Some(if want_read && acked > 0 {
                OpKind::Read { pos }
            } else {
                OpKind::Write {
                    pos,
                    seq: acked + 1,
                }
            });
            break;
        }
        let Some(kind) = kind else {
            // Every key of this slot is poisoned: the slot retires.
            return;
        };
        s.inflight = Some(Inflight {
            kind,
            started: Instant::now(),
            attempts: 0,
            route: None,
        });
        self.send(slot);
    }

    /// Sends (or re-sends) the slot's in-flight operation to the store
    /// believed to lead its region.
    fn send(&mut self, slot: u32) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(op) = s.inflight.as_mut() else {
            return;
        };
        let pos = match op.kind {
            OpKind::Write { pos, .. } | OpKind::Read { pos } => pos,
        };
        let Some(&k) = s.keys.get(pos) else { return };
        let (_, key) = key_of(&self.target.regions, &self.target.active, k);
        let rotation = &mut self.rotation;
        let mut pick = |n: usize| {
            *rotation = rotation.wrapping_add(1);
            *rotation % n
        };
        let follower_read = matches!(op.kind, OpKind::Read { .. })
            && self.spec.read_mode == kvproto_lite::raft_cmdpb::ReadMode::Follower;
        let routed = if follower_read {
            self.routing.route_any_peer(&key, &mut pick)
        } else {
            self.routing.route(&key, &mut pick)
        };
        let route = match routed {
            // The stale leader entry is forgotten: the next pick serves.
            Err(RouteError::NoPeerOnStore { .. }) => self.routing.route(&key, &mut pick),
            other => other,
        };
        let Ok(route) = route else {
            // No region covers a generated key: cannot happen with the
            // cluster's own layout; drop the operation.
            s.inflight = None;
            return;
        };
        op.attempts += 1;
        let request = match op.kind {
            OpKind::Write { seq, .. } => {
                client::put_request(key.to_vec(), value_of(k, seq, self.spec.value_size))
            }
            OpKind::Read { .. } => client::get_request(key.to_vec()),
        };
        let mut cmd = route.command(request);
        if matches!(op.kind, OpKind::Read { .. }) {
            cmd.mut_header().set_read_mode(self.spec.read_mode);
        }
        let (store, region_id) = (route.store_id(), route.region_id());
        op.route = Some(route);
        let tx = self.tx.clone();
        let cb = Callback::new(move |resp| {
            let _ = tx.send((slot, resp, Instant::now()));
        });
        let command = RaftCommand::new(cmd, cb);
        self.outstanding += 1;
        match self.target.sinks.get(&store) {
            Some(sink) => {
                // A refused command comes back unanswered: answer it with
                // the typed error the store would have given, so the
                // completion path retries it.
                match sink.send_command(command) {
                    Ok(()) => {}
                    Err(TrySendError::Full(cmd)) => cmd.callback.invoke_with_error(
                        kvproto_lite::util::new_server_is_busy("mailbox full"),
                        0,
                    ),
                    Err(TrySendError::Disconnected(cmd)) => cmd
                        .callback
                        .invoke_with_error(kvproto_lite::util::new_region_not_found(region_id), 0),
                }
            }
            None => {
                command
                    .callback
                    .invoke_with_error(kvproto_lite::util::new_region_not_found(region_id), 0);
            }
        }
    }

    fn on_response(&mut self, slot: u32, resp: RaftCmdResponse, answered: Instant) {
        self.outstanding = self.outstanding.saturating_sub(1);
        let measuring = self.live.measuring.load(Ordering::Relaxed);
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(op) = s.inflight.as_mut() else {
            return;
        };
        let kind = op.kind;
        let attempts = op.attempts;
        let follower_read = matches!(kind, OpKind::Read { .. })
            && self.spec.read_mode == kvproto_lite::raft_cmdpb::ReadMode::Follower;
        let verdict = match op.route.take() {
            // Any peer answers a follower read: it says nothing of the
            // leader.
            Some(_) if follower_read && !resp.get_header().has_error() => {
                client::Verdict::Succeeded
            }
            Some(route) => self.routing.learn(&route, &resp),
            None => return,
        };
        let pos = match kind {
            OpKind::Write { pos, .. } | OpKind::Read { pos } => pos,
        };
        let k = s.keys.get(pos).copied().unwrap_or(0);
        if verdict == Verdict::Succeeded {
            let us = answered.saturating_duration_since(op.started).as_micros() as u64;
            match kind {
                OpKind::Write { seq, .. } => {
                    if let Some(a) = s.acked.get_mut(pos) {
                        *a = seq;
                    }
                    self.live.writes.fetch_add(1, Ordering::Relaxed);
                    if measuring {
                        self.res.writes += 1;
                        self.res.write_hist.saturating_record(us.max(1));
                    }
                }
                OpKind::Read { .. } => {
                    let expected = value_of(
                        k,
                        s.acked.get(pos).copied().unwrap_or(0),
                        self.spec.value_size,
                    );
                    let got = resp.get_responses().first().map(|r| r.get_get());
                    let ok = got.is_some_and(|g| {
                        !g.get_not_found() && g.get_value() == expected.as_slice()
                    });
                    if !ok && self.res.read_mismatches.len() < 16 {
                        self.res.read_mismatches.push(format!(
                            "key index {k}: read {:?}, expected the write acknowledged last",
                            got.map(|g| (g.get_not_found(), g.get_value().to_vec()))
                        ));
                    }
                    self.live.reads.fetch_add(1, Ordering::Relaxed);
                    if measuring {
                        self.res.reads += 1;
                        self.res.read_hist.saturating_record(us.max(1));
                    }
                }
            }
            s.inflight = None;
            self.ready.push_back(slot);
            return;
        }
        self.live.errors.fetch_add(1, Ordering::Relaxed);
        let Verdict::Error(class) = verdict else {
            return;
        };
        if class == ErrorClass::Unknown {
            // Outcome unknown (e.g. dropped at shutdown): never touch or
            // check this key again.
            if let OpKind::Write { .. } = kind {
                if let Some(p) = s.poisoned.get_mut(pos) {
                    *p = true;
                }
            }
            s.inflight = None;
            self.ready.push_back(slot);
            return;
        }
        if class == ErrorClass::Fail || attempts >= self.spec.max_attempts {
            // Refusals were never applied: give the operation up.
            self.res.given_up += 1;
            s.inflight = None;
            self.ready.push_back(slot);
            return;
        }
        self.res.retries += 1;
        if class == ErrorClass::RetryNow {
            self.send(slot);
            return;
        }
        self.deferred
            .push_back((Instant::now() + RETRY_PAUSE, slot));
    }
}

/// The outcome of [`verify_acked`].
#[derive(Debug, Default)]
pub struct Verified {
    /// (store, key) pairs checked.
    pub checked: u64,
    /// Pairs whose value was not the last acknowledged write at the deadline.
    pub failures: u64,
    /// Up to ten of them, described.
    pub examples: Vec<String>,
    /// How long the check took.
    pub secs: f64,
}

/// Reads every acknowledged write of `results` back from every store of
/// `cluster` (the last acknowledged value of each key), waiting up to
/// `timeout` for followers still applying their last entries.
pub fn verify_acked<EK: engine::KvEngine, ER: engine::RaftLogEngine>(
    cluster: &cluster::Cluster<EK, ER>,
    target: &Target,
    results: &[ClientResult],
    value_size: usize,
    timeout: Duration,
) -> Verified {
    let started = Instant::now();
    let store_ids = cluster.store_ids().to_vec();
    let mut pending: Vec<(u64, u64, u64)> = Vec::new(); // (store, key index, seq)
    for r in results {
        for &(k, seq) in &r.acked {
            for s in &store_ids {
                pending.push((*s, k, seq));
            }
        }
    }
    let checked = pending.len() as u64;
    let deadline = Instant::now() + timeout;
    loop {
        pending.retain(|&(store, k, seq)| {
            let (_, key) = key_of(&target.regions, &target.active, k);
            cluster.kv_get(store, &key).ok().flatten() != Some(value_of(k, seq, value_size))
        });
        // Followers may still be applying the last entries: look again.
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let examples = pending
        .iter()
        .take(10)
        .map(|&(store, k, seq)| {
            let (_, key) = key_of(&target.regions, &target.active, k);
            format!(
                "store {store}: key {:?} (index {k}) is {:?}, expected write #{seq}",
                key.as_slice(),
                cluster.kv_get(store, &key)
            )
        })
        .collect();
    Verified {
        checked,
        failures: pending.len() as u64,
        examples,
        secs: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_in_their_regions() {
        let regions =
            raftstore::initial_regions(&[1, 2, 3], &raftstore::even_split_keys(7)).unwrap();
        let all = active_regions(regions.len(), regions.len());
        for k in 0..1000u64 {
            let (r, key) = key_of(&regions, &all, k);
            assert!(kvproto_lite::util::is_key_in_region(&key, &regions[r]));
        }
    }

    #[test]
    fn keys_of_a_partial_load_land_only_in_active_regions() {
        let regions =
            raftstore::initial_regions(&[1, 2, 3], &raftstore::even_split_keys(100)).unwrap();
        let active = active_regions(regions.len(), 7);
        assert_eq!(active.len(), 7);
        let mut hit = std::collections::BTreeSet::new();
        for k in 0..1000u64 {
            let (r, key) = key_of(&regions, &active, k);
            assert!(active.contains(&r));
            assert!(kvproto_lite::util::is_key_in_region(&key, &regions[r]));
            hit.insert(r);
        }
        assert_eq!(hit.len(), 7, "every active region gets keys");
    }

    #[test]
    fn values_differ_by_sequence_and_have_the_requested_size() {
        assert_eq!(value_of(3, 1, 16).len(), 16);
        assert_eq!(value_of(3, 1, 100).len(), 100);
        assert_ne!(value_of(3, 1, 16), value_of(3, 2, 16));
        assert_ne!(value_of(3, 1, 16), value_of(4, 1, 16));
    }
}
