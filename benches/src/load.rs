//! Load generation: client threads, each keeping a window of asynchronous
//! commands in flight, routed to each region's leader.
//!
//! Every client thread owns `window` slots; a slot has at most one command
//! outstanding and issues its next one as soon as the last is answered
//! (closed loop; `rate` paces the issuing instead). A slot is either a
//! **write slot** or a **read slot**, fixed for the run: with read ratio
//! `r`, `round(r x window)` of each client's slots read (spread evenly over
//! the window; at least one slot of each kind when `0 < r` and the window
//! has two slots or more, so `r = 1` still has one writer per client) and
//! the others write. So `r` is the share of the *concurrency* given to
//! reads, not a per-operation coin toss: a read slot never waits behind a
//! write, and reads/s measures what the read path serves, however slow or
//! fast the write path is.
//!
//! Keys belong to the write slots (a disjoint set each), so writes to one
//! key are strictly sequential and the last acknowledged value of every key
//! is known exactly (what the read-back check needs). A read slot reads a
//! key chosen at random among the keys of its own client that have an
//! acknowledged write, so every read looks for data that is there; a read
//! slot with nothing written yet waits for its client's first
//! acknowledged write. A read is checked as a read of a register with one
//! sequential writer: it must return the value of a write of that key
//! numbered at least the last one acknowledged when the read was sent, and
//! at most the last one sent when its answer is handled.
//!
//! With `ReadMode::Lease` (and [`LoadSpec::batch_lease_reads`]) the read
//! slots ready in one turn of a client's loop are served together: one
//! [`LocalReader::read_batch`] per store, each read routed by the client's
//! caches to the store believed to lead its region and checked as above.
//! A read the reader refuses goes out as a command; one whose leader is
//! still applying (`Behind`) is offered again on the next turns (at most
//! 8 times) before it does.
//!
//! A command goes through [`CommandSink::send_command`] with a [`Callback`]
//! that posts the answer to the client's completion channel, so one thread
//! keeps hundreds of commands in flight instead of blocking on each.
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
use raftstore::{Callback, CommandSink, LocalGet, LocalRead, LocalReader, RaftCommand};
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
    /// Share of each client's slots that are read slots (0.0 ..= 1.0; see
    /// the module docs and [`read_slots`]).
    pub read_ratio: f64,
    /// How reads are served (through the log, ReadIndex, lease, or a
    /// follower's ReadIndex: those go to any peer of the region).
    pub read_mode: kvproto_lite::raft_cmdpb::ReadMode,
    /// Total number of keys (rounded up to one per write slot).
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
    /// With `ReadMode::Lease`, serve the read slots that are ready in one
    /// turn of the client loop with one [`LocalReader::read_batch`] call
    /// per store (the reads it refuses go out as commands); otherwise each
    /// read is a command of its own (the router still serves it on the
    /// caller's thread when the lease holds).
    pub batch_lease_reads: bool,
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
    /// The local reader of every running store (for batched lease reads;
    /// may be empty).
    pub readers: HashMap<u64, Arc<LocalReader>>,
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
/// number and key index followed by filler, `size` bytes in all (at least
/// 12).
pub fn value_of(k: u64, seq: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.max(12));
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&(k as u32).to_le_bytes());
    v.extend(filler(k, seq).take(size.saturating_sub(12)));
    v
}

/// Whether `v` is [`value_of`]`(k, seq, size)`, without building it.
///
/// ```
/// use benches::load::{value_is, value_of};
/// assert!(value_is(&value_of(7, 3, 40), 7, 3, 40));
/// assert!(!value_is(&value_of(7, 3, 40), 7, 4, 40));
/// assert!(!value_is(&value_of(7, 3, 40), 8, 3, 40));
/// assert!(!value_is(&value_of(7, 3, 40)[..39], 7, 3, 40));
/// ```
pub fn value_is(v: &[u8], k: u64, seq: u64, size: usize) -> bool {
    v.len() == size.max(12)
        && v[..8] == seq.to_le_bytes()
        && v[8..12] == (k as u32).to_le_bytes()
        && v[12..]
            .iter()
            .copied()
            .eq(filler(k, seq).take(v.len() - 12))
}

/// The filler bytes after a value's header: a sequence determined by the
/// key index and the write's number.
fn filler(k: u64, seq: u64) -> impl Iterator<Item = u8> {
    let mut x = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seq;
    std::iter::repeat_with(move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 56) as u8
    })
}

/// How many of a client's `window` slots are read slots at read ratio
/// `ratio`: `round(ratio x window)`, but at least one read slot and one
/// write slot when `ratio > 0` and the window has room for both (reads
/// need a writer to have written the keys they read).
///
/// ```
/// use benches::load::read_slots;
/// assert_eq!(read_slots(2048, 0.0), 0);
/// assert_eq!(read_slots(2048, 0.9), 1843);
/// assert_eq!(read_slots(10, 0.01), 1);
/// assert_eq!(read_slots(10, 1.0), 9);
/// assert_eq!(read_slots(1, 0.9), 0);
/// ```
pub fn read_slots(window: usize, ratio: f64) -> usize {
    if ratio.is_nan() || ratio <= 0.0 || window < 2 {
        return 0;
    }
    let n = (window as f64 * ratio.min(1.0)).round() as usize;
    n.clamp(1, window - 1)
}

/// Whether slot `i` of a window of `window` slots, `reads` of them read
/// slots, is a read slot: the read slots are spread evenly over the window.
fn is_read_slot(i: usize, window: usize, reads: usize) -> bool {
    let w = window.max(1);
    (i + 1) * reads / w > i * reads / w
}

#[derive(Clone, Copy)]
enum OpKind {
    /// The `seq`-th write of the key at `key` (an index into the client's
    /// key table).
    Write { key: u32, seq: u64 },
    /// A read of the key at `key`, whose write number `floor` was the last
    /// acknowledged when the read was sent.
    Read { key: u32, floor: u64 },
}

impl OpKind {
    fn key(self) -> u32 {
        match self {
            OpKind::Write { key, .. } | OpKind::Read { key, .. } => key,
        }
    }
}

struct Inflight {
    kind: OpKind,
    started: Instant,
    attempts: u32,
    /// Times a batched lease read found the leader behind its commit index.
    behind: u32,
    /// Where the attempt in flight went.
    route: Option<Route>,
}

/// One key of a client: its index and its writes.
struct KeyState {
    k: u64,
    /// The last acknowledged write's number (0: none yet).
    acked: u64,
    /// The last write's number sent (acknowledged or not).
    sent: u64,
    /// The outcome of a write is unknown: never written again nor checked.
    poisoned: bool,
}

enum Role {
    /// Writes its own keys (indexes into the client's key table) in turn.
    Write { keys: Vec<u32>, next: usize },
    /// Reads the client's written keys at random.
    Read,
}

struct Slot {
    role: Role,
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
    /// The keys of this client's write slots.
    keys: Vec<KeyState>,
    /// Indexes into `keys` of the keys with an acknowledged write: what the
    /// read slots read.
    written: Vec<u32>,
    /// Read slots waiting for a first acknowledged write.
    parked: Vec<u32>,
    tx: Sender<Answer>,
    rng: StdRng,
    deferred: VecDeque<(Instant, u32)>,
    ready: VecDeque<u32>,
    outstanding: usize,
    /// Writes and reads answered since the last [`Client::flush_live`]:
    /// the shared counters are updated once per loop turn, not per answer
    /// (both clients adding to one cache line per read showed in the
    /// profile of cheap reads).
    unflushed_writes: u64,
    unflushed_reads: u64,
    /// Read slots whose read waits for this turn's batched lease read.
    lease_batch: Vec<u32>,
    res: ClientResult,
}

const RETRY_PAUSE: Duration = Duration::from_millis(2);

/// Turns of the client loop a batched lease read is offered again while
/// its leader is behind its commit index, before it goes out as a command.
const MAX_BEHIND: u32 = 8;

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
    let reads = read_slots(spec.window, spec.read_ratio);
    let writers = spec.window - reads;
    let total_writers = (spec.clients * writers) as u64;
    let key_count = (spec.keys as u64).max(total_writers);
    let mut keys = Vec::new();
    let mut writer = 0usize;
    let slots = (0..spec.window)
        .map(|w| {
            let role = if is_read_slot(w, spec.window, reads) {
                Role::Read
            } else {
                let global = (id * writers + writer) as u64;
                writer += 1;
                let mine: Vec<u32> = (global..key_count)
                    .step_by(total_writers.max(1) as usize)
                    .map(|k| {
                        keys.push(KeyState {
                            k,
                            acked: 0,
                            sent: 0,
                            poisoned: false,
                        });
                        (keys.len() - 1) as u32
                    })
                    .collect();
                Role::Write {
                    keys: mine,
                    next: 0,
                }
            };
            Slot {
                role,
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
        keys,
        written: Vec::new(),
        parked: Vec::new(),
        tx,
        deferred: VecDeque::new(),
        ready: VecDeque::new(),
        outstanding: 0,
        unflushed_writes: 0,
        unflushed_reads: 0,
        lease_batch: Vec::new(),
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
            self.flush_live();
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
                    if self.start_op(slot) {
                        issued += 1;
                    }
                }
                while let Some(&(due, slot)) = self.deferred.front() {
                    if due > now {
                        next_wake = next_wake.min(due);
                        break;
                    }
                    self.deferred.pop_front();
                    self.send(slot);
                }
                if !self.lease_batch.is_empty() {
                    self.serve_lease_batch();
                }
                let more = !self.ready.is_empty() || !self.lease_batch.is_empty();
                if more && per_client_rate.is_none() {
                    // Reads answered locally are ready again at once: take
                    // the answers that arrived and go round without waiting.
                    if !self.take_answers(rx) {
                        return;
                    }
                    continue;
                }
            }
            let wait = next_wake.saturating_duration_since(Instant::now());
            if per_client_rate.is_some() {
                // Paced: sleep a tick (or until the next due operation if
                // later), then take every answer that arrived.
                std::thread::sleep(wait.max(PACING_TICK));
                if !self.take_answers(rx) {
                    return;
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

    /// Adds the answers counted since the last call to the shared
    /// counters.
    fn flush_live(&mut self) {
        if self.unflushed_writes > 0 {
            let n = std::mem::take(&mut self.unflushed_writes);
            self.live.writes.fetch_add(n, Ordering::Relaxed);
        }
        if self.unflushed_reads > 0 {
            let n = std::mem::take(&mut self.unflushed_reads);
            self.live.reads.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn finish(mut self) -> ClientResult {
        self.flush_live();
        for s in &mut self.slots {
            // Anything still unanswered may or may not be applied.
            if let Some(Inflight {
                kind: OpKind::Write { key, .. },
                ..
            }) = s.inflight.take()
            {
                if let Some(ks) = self.keys.get_mut(key as usize) {
                    ks.poisoned = true;
                }
            }
        }
        for ks in &self.keys {
            if ks.poisoned {
                self.res.poisoned += 1;
            } else if ks.acked > 0 {
                self.res.acked.push((ks.k, ks.acked));
            }
        }
        self.res
    }

    /// Picks the slot's next operation and sends it; false when the slot
    /// has nothing to do (a read slot before any write was acknowledged,
    /// parked until one is; a write slot whose keys are all poisoned,
    /// retired).
    fn start_op(&mut self, slot: u32) -> bool {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return false;
        };
        let kind = match &mut s.role {
            Role::Read => {
                if self.written.is_empty() {
                    self.parked.push(slot);
                    return false;
                }
                let i = self.rng.gen_range(0..self.written.len());
                let key = self.written[i];
                let floor = self.keys.get(key as usize).map_or(0, |k| k.acked);
                OpKind::Read { key, floor }
            }
            Role::Write { keys, next } => {
                let n = keys.len();
                let mut kind = None;
                for _ in 0..n {
                    let key = keys[*next % n];
                    *next = next.wrapping_add(1);
                    let Some(ks) = self.keys.get_mut(key as usize) else {
                        continue;
                    };
                    if ks.poisoned {
                        continue;
                    }
                    ks.sent = ks.acked + 1;
                    kind = Some(OpKind::Write { key, seq: ks.sent });
                    break;
                }
                // None: every key of this slot is poisoned: it retires.
                let Some(kind) = kind else { return false };
                kind
            }
        };
        s.inflight = Some(Inflight {
            kind,
            started: Instant::now(),
            attempts: 0,
            behind: 0,
            route: None,
        });
        if matches!(kind, OpKind::Read { .. }) && self.batches_lease_reads() {
            self.lease_batch.push(slot);
        } else {
            self.send(slot);
        }
        true
    }

    fn batches_lease_reads(&self) -> bool {
        self.spec.batch_lease_reads
            && self.spec.read_mode == kvproto_lite::raft_cmdpb::ReadMode::Lease
            && !self.target.readers.is_empty()
    }

    /// Serves this turn's read slots with one [`LocalReader::read_batch`]
    /// per store: each read goes to the local reader of the store the
    /// leader cache names for its key's region; a read with no leader
    /// known, or refused by the reader, is sent as a command.
    fn serve_lease_batch(&mut self) {
        let batch = std::mem::take(&mut self.lease_batch);
        let target = self.target.clone();
        let mut unrouted = Vec::new();
        let mut answers: Vec<(u32, LocalRead)> = Vec::with_capacity(batch.len());
        {
            // Each read's key, then its region and believed leader.
            let keys: Vec<(u32, [u8; 8])> = batch
                .iter()
                .filter_map(|&slot| {
                    let op = self.slots.get(slot as usize)?.inflight.as_ref()?;
                    let k = self.keys.get(op.kind.key() as usize)?.k;
                    Some((slot, key_of(&target.regions, &target.active, k).1))
                })
                .collect();
            let mut by_store: Vec<(u64, &LocalReader, Vec<u32>, Vec<LocalGet<'_>>)> = target
                .readers
                .iter()
                .map(|(&id, r)| (id, &**r, Vec::new(), Vec::new()))
                .collect();
            for (slot, key) in &keys {
                let routed = self.routing.regions().locate(key).and_then(|region| {
                    let store = self.routing.leaders().get(region.get_id())?;
                    let group = by_store.iter_mut().find(|g| g.0 == store)?;
                    Some((region, group))
                });
                match routed {
                    Some((region, group)) => {
                        group.2.push(*slot);
                        group.3.push(LocalGet {
                            region_id: region.get_id(),
                            epoch: region.get_region_epoch(),
                            key,
                        });
                    }
                    None => unrouted.push(*slot),
                }
            }
            let mut out = Vec::new();
            for (_, reader, slots, gets) in by_store {
                if gets.is_empty() {
                    continue;
                }
                reader.read_batch(&gets, &mut out);
                answers.extend(slots.into_iter().zip(out.drain(..)));
            }
        }
        let answered = Instant::now();
        for (slot, answer) in answers {
            match answer {
                LocalRead::Served(value) => self.on_local_read(slot, value.as_deref(), answered),
                LocalRead::Refused => self.send(slot),
                LocalRead::Behind => {
                    // The leader is applying: offer it again next turn, a
                    // few times, before handing it to the raft thread.
                    let op = self
                        .slots
                        .get_mut(slot as usize)
                        .and_then(|s| s.inflight.as_mut());
                    match op {
                        Some(op) if op.behind < MAX_BEHIND => {
                            op.behind += 1;
                            self.lease_batch.push(slot);
                        }
                        _ => self.send(slot),
                    }
                }
            }
        }
        for slot in unrouted {
            self.send(slot);
        }
    }

    /// A read served by [`LocalReader::read_batch`]: checked and counted as
    /// an answered command would be.
    fn on_local_read(&mut self, slot: u32, value: Option<&[u8]>, answered: Instant) {
        let measuring = self.live.measuring.load(Ordering::Relaxed);
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(Inflight {
            kind: OpKind::Read { key, floor },
            started,
            ..
        }) = s.inflight.take()
        else {
            return;
        };
        self.check_value(key, floor, value);
        self.unflushed_reads += 1;
        if measuring {
            self.res.reads += 1;
            let us = answered.saturating_duration_since(started).as_micros() as u64;
            self.res.read_hist.saturating_record(us.max(1));
        }
        self.ready.push_back(slot);
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
        let Some(k) = self.keys.get(op.kind.key() as usize).map(|ks| ks.k) else {
            return;
        };
        let (_, key) = key_of(&self.target.regions, &self.target.active, k);
        let rotation = &mut self.rotation;
        let mut pick = |n: usize| {
            *rotation = rotation.wrapping_add(1);
            *rotation % n
        };
        let is_read = matches!(op.kind, OpKind::Read { .. });
        let follower_read =
            is_read && self.spec.read_mode == kvproto_lite::raft_cmdpb::ReadMode::Follower;
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
        if is_read {
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

    /// Checks a read's answer: the value of a write of the key numbered
    /// between `floor` and the key's last write sent (see the module docs).
    fn check_read(&mut self, key: u32, floor: u64, resp: &RaftCmdResponse) {
        let got = resp.get_responses().first().map(|r| r.get_get());
        let value = got.and_then(|g| (!g.get_not_found()).then(|| g.get_value()));
        self.check_value(key, floor, value);
    }

    /// Checks a value read (`None`: not found) as [`Client::check_read`].
    fn check_value(&mut self, key: u32, floor: u64, value: Option<&[u8]>) {
        let Some(ks) = self.keys.get(key as usize) else {
            return;
        };
        let ok = value.is_some_and(|v| {
            let seq = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            seq >= floor.max(1) && seq <= ks.sent && value_is(v, ks.k, seq, self.spec.value_size)
        });
        if !ok && self.res.read_mismatches.len() < 16 {
            self.res.read_mismatches.push(format!(
                "key index {}: read {:?}, expected a write numbered {floor}..={}",
                ks.k, value, ks.sent
            ));
        }
    }

    /// A key's write was acknowledged: the first makes it readable (and
    /// wakes the parked read slots).
    fn on_write_acked(&mut self, key: u32, seq: u64) {
        let Some(ks) = self.keys.get_mut(key as usize) else {
            return;
        };
        if ks.acked == 0 {
            self.written.push(key);
        }
        ks.acked = seq;
        if !self.parked.is_empty() {
            self.ready.extend(self.parked.drain(..));
        }
    }

    /// Handles every answer that has arrived; `false` once the stores are
    /// gone (the channel disconnected).
    fn take_answers(&mut self, rx: &Receiver<Answer>) -> bool {
        loop {
            match rx.try_recv() {
                Ok((slot, resp, at)) => self.on_response(slot, resp, at),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
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
        let started = op.started;
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
        if verdict == Verdict::Succeeded {
            s.inflight = None;
            let us = answered.saturating_duration_since(started).as_micros() as u64;
            match kind {
                OpKind::Write { key, seq } => {
                    self.on_write_acked(key, seq);
                    self.unflushed_writes += 1;
                    if measuring {
                        self.res.writes += 1;
                        self.res.write_hist.saturating_record(us.max(1));
                    }
                }
                OpKind::Read { key, floor } => {
                    self.check_read(key, floor, &resp);
                    self.unflushed_reads += 1;
                    if measuring {
                        self.res.reads += 1;
                        self.res.read_hist.saturating_record(us.max(1));
                    }
                }
            }
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
            if let OpKind::Write { key, .. } = kind {
                if let Some(ks) = self.keys.get_mut(key as usize) {
                    ks.poisoned = true;
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
    fn read_slots_are_spread_evenly_over_the_window() {
        for (window, ratio) in [(2048, 0.9), (10, 0.5), (7, 0.3), (2, 1.0), (5, 0.0)] {
            let reads = read_slots(window, ratio);
            let marked: Vec<bool> = (0..window)
                .map(|i| is_read_slot(i, window, reads))
                .collect();
            assert_eq!(marked.iter().filter(|&&r| r).count(), reads);
            // No run of write slots longer than the even spacing allows.
            let longest = marked.split(|&r| r).map(<[bool]>::len).max().unwrap_or(0);
            let spacing = if reads == 0 {
                window
            } else {
                window.div_ceil(reads)
            };
            assert!(longest <= spacing, "{window} {ratio}: {marked:?}");
        }
    }

    #[test]
    fn value_is_accepts_exactly_the_written_value() {
        for size in [12, 16, 100] {
            let v = value_of(42, 7, size);
            assert!(value_is(&v, 42, 7, size));
            let mut flipped = v.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(!value_is(&flipped, 42, 7, size));
            assert!(!value_is(&v, 42, 7, size + 1));
        }
        assert!(!value_is(b"short", 42, 7, 16));
    }

    #[test]
    fn values_differ_by_sequence_and_have_the_requested_size() {
        assert_eq!(value_of(3, 1, 16).len(), 16);
        assert_eq!(value_of(3, 1, 100).len(), 100);
        assert_ne!(value_of(3, 1, 16), value_of(3, 2, 16));
        assert_ne!(value_of(3, 1, 16), value_of(4, 1, 16));
    }
}
