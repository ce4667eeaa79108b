//! Lease reads served on the caller's thread, without entering the raft
//! poll loop: the idea of TiKV's `LocalReader` and `ReadDelegate`.
//!
//! Each leader peer shares a [`LeaseCell`] with the store's
//! [`LocalReader`] and publishes a read delegate (its region, term and that
//! cell) while it is a leader that applied an entry of its own term. A
//! command with `ReadMode::Lease` sent through the router is first offered
//! to the local reader:
//!
//! 1. find the region's delegate; the command's epoch, store and keys must
//!    match it;
//! 2. the lease must be valid *now* (the injectable [`Clock`]);
//! 3. read the keys from the KV engine;
//! 4. check the lease (and that the delegate was not replaced) **again**:
//!    a lease that ran out during the read proves nothing about the read.
//!
//! Any failed check hands the command to the peer's mailbox as usual (where
//! it becomes a ReadIndex read that renews the lease).
//!
//! The fast path touches no cache line that another reading thread
//! writes: each caller thread keeps its own copy of the delegates it used
//! (and of the clock), valid while the reader's *generation* is unchanged;
//! every publish bumps the generation after changing the map, so a copy
//! is at most as old as the last publish the caller saw complete. Step 4's
//! "delegate not replaced" is then one load of the generation (the slow
//! comparison with the map only after a publish). The counters of served
//! reads are striped per thread. TiKV's `LocalReader` caches delegates per
//! thread the same way, validated by a version counter. The lease is renewed
//! only by the peer, from the send time of a read index that a quorum
//! confirmed, and lasts the election timeout minus one tick minus the
//! configured clock drift. A peer expires it when it stops leading, starts
//! a leadership transfer or hibernates, before anything else can happen.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use engine::KvEngine;
use kvproto_lite::metapb::{Region, RegionEpoch};
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, ReadMode, Response};
use kvproto_lite::util;

/// Where time comes from for leases: monotonic, as a duration since some
/// fixed start. Injectable so a simulation can skew each store's clock.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock ([`Instant`]).
#[derive(Debug)]
pub struct MonotonicClock {
    start: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock {
            start: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A leader's lease: valid until `expiry` (clock nanoseconds) in `term`.
/// Written by the peer, read by the local reader; all atomics.
#[derive(Debug, Default)]
pub struct LeaseCell {
    expiry_nanos: AtomicU64,
    term: AtomicU64,
    /// Whether the leader has applied everything it knows committed. A
    /// follower can apply (and a follower read observe) a committed entry
    /// before the leader applies it; a lease read served from a leader that
    /// lags its commit index could then go back in time.
    caught_up: std::sync::atomic::AtomicBool,
    /// A read was served under the lease since the leader's last tick.
    read_since_tick: std::sync::atomic::AtomicBool,
}

impl LeaseCell {
    /// Extends the lease to `until` in `term` (never shortens it within a
    /// term).
    pub(crate) fn renew(&self, until: Duration, term: u64) {
        let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        if self.term.load(Ordering::SeqCst) != term {
            // Expire first so no reader pairs the new term with an old expiry.
            self.expiry_nanos.store(0, Ordering::SeqCst);
            self.term.store(term, Ordering::SeqCst);
            self.expiry_nanos.store(nanos, Ordering::SeqCst);
        } else {
            self.expiry_nanos.fetch_max(nanos, Ordering::SeqCst);
        }
    }

    /// Records whether the leader has applied all it knows committed;
    /// updated before the commit index can reach the followers.
    pub(crate) fn set_caught_up(&self, caught_up: bool) {
        self.caught_up.store(caught_up, Ordering::SeqCst);
    }

    /// Whether the leader had applied all it knew committed when it last
    /// said so (the peer updates it before a new commit index can reach
    /// the followers).
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }

    /// Notes that a read was served under the lease. Written only when not
    /// set yet, so readers do not keep taking the cache line from each
    /// other.
    pub(crate) fn mark_read(&self) {
        if !self.read_since_tick.load(Ordering::Relaxed) {
            self.read_since_tick.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a read was served under the lease since the last
    /// [`LeaseCell::take_read`].
    pub(crate) fn read_recently(&self) -> bool {
        self.read_since_tick.load(Ordering::Relaxed)
    }

    /// Whether a read was served under the lease since the last call
    /// (called on the leader's ticks).
    pub(crate) fn take_read(&self) -> bool {
        self.read_since_tick.swap(false, Ordering::Relaxed)
    }

    /// How long the lease of `term` still covers after `now` (zero if it
    /// does not cover `now`).
    pub(crate) fn remaining_at(&self, now: Duration, term: u64) -> Duration {
        if self.term.load(Ordering::SeqCst) != term {
            return Duration::ZERO;
        }
        let expiry = Duration::from_nanos(self.expiry_nanos.load(Ordering::SeqCst));
        expiry.saturating_sub(now)
    }

    /// Ends the lease at once.
    pub(crate) fn expire(&self) {
        self.expiry_nanos.store(0, Ordering::SeqCst);
    }

    /// Whether the lease of `term` covers `now`.
    pub fn valid_at(&self, now: Duration, term: u64) -> bool {
        let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        self.term.load(Ordering::SeqCst) == term && now < self.expiry_nanos.load(Ordering::SeqCst)
    }
}

/// What the local reader needs of a leader peer.
#[derive(Debug)]
pub(crate) struct ReadDelegate {
    pub region: Region,
    pub store_id: u64,
    pub term: u64,
    pub lease: Arc<LeaseCell>,
}

/// A read of one key: its value, `None` if absent.
type GetResult = engine::Result<Option<Vec<u8>>>;

/// Reads of a store's KV engine, whatever its type. (A batch reads key by
/// key, not through one engine snapshot: the memory engine copies its whole
/// map when a write meets a snapshot still held.)
pub(crate) trait KvRead: Send + Sync {
    /// One key's value.
    fn get(&self, key: &[u8]) -> GetResult;
}

impl<K: KvEngine> KvRead for K {
    fn get(&self, key: &[u8]) -> GetResult {
        KvEngine::get(self, key)
    }
}

/// One Get offered to [`LocalReader::read_batch`]: what a command's header
/// and request would say, borrowed instead of built.
#[derive(Debug, Clone, Copy)]
pub struct LocalGet<'a> {
    /// The region the caller believes holds `key`.
    pub region_id: u64,
    /// The region epoch the caller believes in (compared with the leader's
    /// as a command's header epoch is).
    pub epoch: &'a RegionEpoch,
    /// The user key.
    pub key: &'a [u8],
}

/// What [`LocalReader::read_batch`] did with one [`LocalGet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalRead {
    /// Served under the lease: the key's value (`None`: the key has none).
    Served(Option<Vec<u8>>),
    /// Not served here (no read delegate for the region on this store, an
    /// epoch or key outside the region, no valid lease, an engine error):
    /// send it as a `Lease` command, which the peer serves or turns into a
    /// ReadIndex read.
    Refused,
    /// Not served now: the lease holds, but the leader has not applied
    /// every entry it knows committed (a follower may show them already).
    /// Usually over within an apply round: the caller may offer the get
    /// again shortly, or send it as a `Lease` command, which waits on the
    /// raft thread for those entries to be applied.
    Behind,
}

/// Ids of [`LocalReader`]s in this process (their caller-thread caches are
/// keyed by it).
static NEXT_READER_ID: AtomicU64 = AtomicU64::new(1);

/// How many readers' copies one thread keeps (the oldest goes first).
const CACHED_READERS: usize = 8;

/// A caller thread's copy of what one reader published.
struct ThreadCopy {
    reader: u64,
    /// The reader's generation when the copy was (re)started: every
    /// delegate in it was read from the map after that.
    generation: u64,
    clock: Arc<dyn Clock>,
    delegates: HashMap<u64, Arc<ReadDelegate>>,
}

thread_local! {
    static COPIES: RefCell<Vec<ThreadCopy>> = const { RefCell::new(Vec::new()) };
    static STRIPE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Stripes of a [`StripedCounter`].
const STRIPES: usize = 8;

/// One counter cell on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PaddedCounter(AtomicU64);

/// A counter that threads add to without sharing a cache line: a thread
/// adds to its own stripe (fixed at its first use), a read sums them.
#[derive(Debug, Default)]
struct StripedCounter {
    cells: [PaddedCounter; STRIPES],
}

impl StripedCounter {
    fn add(&self, n: u64) {
        static NEXT_STRIPE: AtomicU64 = AtomicU64::new(0);
        let stripe = STRIPE
            .try_with(|s| match s.get() {
                Some(i) => i,
                None => {
                    let i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) as usize % STRIPES;
                    s.set(Some(i));
                    i
                }
            })
            .unwrap_or(0);
        self.cells[stripe].0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.cells
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// The store's lease-read fast path (see the module docs).
pub struct LocalReader {
    /// This reader's key in the caller threads' copies.
    id: u64,
    delegates: RwLock<HashMap<u64, Arc<ReadDelegate>>>,
    /// Bumped (under the `delegates` write lock, after the change) by
    /// every publish and every clock change.
    generation: PaddedCounter,
    kv: OnceLock<Arc<dyn KvRead>>,
    clock: RwLock<Arc<dyn Clock>>,
    served: StripedCounter,
    fallbacks: StripedCounter,
    raft_thread_lease_reads: AtomicU64,
    /// Ids of read index batches, unique on the store across restarts (see
    /// [`LocalReader::start_read_ids`]).
    next_read_id: AtomicU64,
}

impl std::fmt::Debug for LocalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalReader")
            .field("served", &self.served())
            .field("fallbacks", &self.fallbacks())
            .finish()
    }
}

impl Default for LocalReader {
    fn default() -> Self {
        LocalReader {
            id: NEXT_READER_ID.fetch_add(1, Ordering::Relaxed),
            delegates: RwLock::new(HashMap::new()),
            generation: PaddedCounter::default(),
            kv: OnceLock::new(),
            clock: RwLock::new(Arc::new(MonotonicClock::default())),
            served: StripedCounter::default(),
            fallbacks: StripedCounter::default(),
            raft_thread_lease_reads: AtomicU64::new(0),
            next_read_id: AtomicU64::new(1),
        }
    }
}

impl LocalReader {
    /// The clock leases are measured with.
    pub fn now(&self) -> Duration {
        self.with_copy(|copy| copy.clock.now())
    }

    /// Replaces the clock (before the store starts).
    pub(crate) fn set_clock(&self, clock: Arc<dyn Clock>) {
        let _map = self.delegates.write().unwrap_or_else(|e| e.into_inner());
        *self.clock.write().unwrap_or_else(|e| e.into_inner()) = clock;
        self.generation.0.fetch_add(1, Ordering::SeqCst);
    }

    fn generation(&self) -> u64 {
        self.generation.0.load(Ordering::SeqCst)
    }

    fn shared_clock(&self) -> Arc<dyn Clock> {
        self.clock.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` on this thread's copy of the reader's delegates and clock,
    /// emptied first if a publish completed since it was filled. A thread
    /// whose copies are unavailable (re-entered, or being torn down) gets
    /// a fresh, empty copy.
    fn with_copy<R>(&self, f: impl FnOnce(&mut ThreadCopy) -> R) -> R {
        let generation = self.generation();
        let fresh = || ThreadCopy {
            reader: self.id,
            generation,
            clock: self.shared_clock(),
            delegates: HashMap::new(),
        };
        let mut f = Some(f);
        let cached = COPIES.try_with(|copies| {
            let Ok(mut copies) = copies.try_borrow_mut() else {
                return None;
            };
            let i = match copies.iter().position(|c| c.reader == self.id) {
                Some(i) => i,
                None => {
                    if copies.len() >= CACHED_READERS {
                        copies.remove(0);
                    }
                    copies.push(fresh());
                    copies.len() - 1
                }
            };
            let copy = &mut copies[i];
            if copy.generation != generation {
                copy.delegates.clear();
                copy.clock = self.shared_clock();
                copy.generation = generation;
            }
            f.take().map(|f| f(copy))
        });
        match (cached, f) {
            (Ok(Some(out)), _) => out,
            (_, Some(f)) => f(&mut fresh()),
            // `f` ran and returned: the first arm took its result.
            (_, None) => unreachable!("the closure ran and its result was returned"),
        }
    }

    /// Starts the read index ids above anything an earlier run of the
    /// store can have used: at the clock's time in nanoseconds (shifted to
    /// leave room for 65,536 batches per nanosecond). A late answer to a
    /// request of an earlier run then matches no batch of this run.
    pub(crate) fn start_read_ids(&self) {
        let nanos = u64::try_from(self.now().as_nanos()).unwrap_or(u64::MAX >> 16);
        self.next_read_id
            .fetch_max(nanos.saturating_mul(1 << 16).max(1), Ordering::SeqCst);
    }

    /// A new read index batch id.
    pub(crate) fn next_read_id(&self) -> u64 {
        self.next_read_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Sets the KV engine reads go to (once, when the store starts).
    pub(crate) fn set_kv(&self, kv: Arc<dyn KvRead>) {
        let _ = self.kv.set(kv);
    }

    /// Lease reads answered on the caller's thread.
    pub fn served(&self) -> u64 {
        self.served.get()
    }

    /// Lease-mode commands handed on to the raft thread.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.get()
    }

    /// Changes published so far (read delegates added, replaced or
    /// withdrawn, and clock changes): each one makes every caller thread
    /// refill its copy of this reader's delegates.
    pub fn publishes(&self) -> u64 {
        self.generation()
    }

    /// Lease reads answered by a peer on the raft thread under its lease
    /// (valid when the command reached it; answered at once, or once the
    /// entries committed by then are applied).
    pub fn raft_thread_lease_reads(&self) -> u64 {
        self.raft_thread_lease_reads.load(Ordering::Relaxed)
    }

    pub(crate) fn count_raft_thread_lease_read(&self) {
        self.raft_thread_lease_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn publish(&self, region_id: u64, delegate: Option<ReadDelegate>) {
        let mut map = self.delegates.write().unwrap_or_else(|e| e.into_inner());
        match delegate {
            Some(d) => {
                map.insert(region_id, Arc::new(d));
            }
            None => {
                map.remove(&region_id);
            }
        }
        // After the change and before the lock is released: a caller that
        // still sees the old generation may use its copy, which is what it
        // would have read from the map an instant earlier.
        self.generation.0.fetch_add(1, Ordering::SeqCst);
    }

    fn delegate(&self, region_id: u64) -> Option<Arc<ReadDelegate>> {
        self.delegates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&region_id)
            .cloned()
    }

    /// Serves a lease read here if every check passes; `None` hands it on
    /// to the peer.
    pub(crate) fn try_read(&self, req: &RaftCmdRequest) -> Option<RaftCmdResponse> {
        let out = self.with_copy(|copy| self.read(copy, req));
        if out.is_some() {
            self.served.add(1);
        } else {
            self.fallbacks.add(1);
        }
        out
    }

    fn read(&self, copy: &mut ThreadCopy, req: &RaftCmdRequest) -> Option<RaftCmdResponse> {
        let header = req.get_header();
        let region_id = header.get_region_id();
        let kv = self.kv.get()?;
        let d = match copy.delegates.entry(region_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(self.delegate(region_id)?),
        };
        let clock = &copy.clock;
        if header.has_peer() && header.get_peer().get_store_id() != d.store_id {
            return None;
        }
        if header.get_region_epoch() != d.region.get_region_epoch() {
            return None;
        }
        if req
            .get_requests()
            .iter()
            .any(|r| !util::is_key_in_region(r.get_get().get_key(), &d.region))
        {
            return None;
        }
        if !d.lease.valid_at(clock.now(), d.term) || !d.lease.caught_up() {
            return None;
        }
        let resp = read_with(|k| kv.get(k), req, d.term);
        // The lease must still hold after the read, and the delegate must
        // not have been replaced (a split, a new term) meanwhile: no
        // publish since the copy was checked, or the map still holds it.
        let still = self.generation() == copy.generation
            || self
                .delegate(region_id)
                .is_some_and(|cur| Arc::ptr_eq(&cur, d));
        if !still || !d.lease.valid_at(clock.now(), d.term) {
            return None;
        }
        d.lease.mark_read();
        Some(resp)
    }
    /// Serves many Gets under their regions' leases in one call: the
    /// batched form of the lease path, for a caller holding many reads at
    /// once (a client's read slots, a batch request). Each get passes the
    /// checks a `Lease` command passes (a read delegate of its region on
    /// this store, the same epoch, the key inside the region, a valid lease
    /// and a leader that applied all it knows committed, else
    /// [`LocalRead::Behind`]); the clock is read
    /// once before the reads and once after them, the engine is read
    /// key by key (each get sees the latest applied value of its key; a
    /// batch is not one point-in-time view), and after all reads every served get's lease
    /// (and its delegate not having been replaced) is checked again, so a
    /// value is answered only if its lease held from before the read to
    /// after it. No command, response or callback is built.
    ///
    /// `out` is cleared and receives one [`LocalRead`] per get, in order.
    /// Served gets count in [`LocalReader::served`]; refused ones (and
    /// ones behind) are not counted as fallbacks (the command the caller
    /// sends for one is, if it is refused again).
    ///
    /// A get is read on this reader's store: the caller routes it to the
    /// store it believes leads the region, as it would a command.
    pub fn read_batch(&self, gets: &[LocalGet<'_>], out: &mut Vec<LocalRead>) {
        out.clear();
        let served = match self.kv.get() {
            Some(kv) => self.with_copy(|copy| self.read_many(copy, &**kv, gets, out)),
            None => 0,
        };
        out.resize(gets.len(), LocalRead::Refused);
        if served > 0 {
            self.served.add(served);
        }
    }

    fn read_many(
        &self,
        copy: &mut ThreadCopy,
        kv: &dyn KvRead,
        gets: &[LocalGet<'_>],
        out: &mut Vec<LocalRead>,
    ) -> u64 {
        // Copy the missing delegates first, so the checks below can hold
        // references into the copy (no reference count touched per read).
        for g in gets {
            if let Entry::Vacant(e) = copy.delegates.entry(g.region_id) {
                if let Some(d) = self.delegate(g.region_id) {
                    e.insert(d);
                }
            }
        }
        let copy = &*copy;
        let now = copy.clock.now();
        let mut used: Vec<Option<&Arc<ReadDelegate>>> = gets
            .iter()
            .map(|g| {
                let d = copy.delegates.get(&g.region_id)?;
                let ok = g.epoch == d.region.get_region_epoch()
                    && util::is_key_in_region(g.key, &d.region)
                    && d.lease.valid_at(now, d.term);
                ok.then_some(d)
            })
            .collect();
        for (g, d) in gets.iter().zip(used.iter_mut()) {
            let Some(delegate) = d else {
                out.push(LocalRead::Refused);
                continue;
            };
            if !delegate.lease.caught_up() {
                *d = None;
                out.push(LocalRead::Behind);
                continue;
            }
            match kv.get(g.key) {
                Ok(v) => out.push(LocalRead::Served(v)),
                Err(_) => {
                    *d = None;
                    out.push(LocalRead::Refused);
                }
            }
        }
        // The leases must still hold after the reads, and the delegates
        // must not have been replaced meanwhile (as in `read`).
        let after = copy.clock.now();
        let unchanged = self.generation() == copy.generation;
        let mut served = 0;
        for ((g, d), o) in gets.iter().zip(&used).zip(out.iter_mut()) {
            let Some(d) = d else { continue };
            let still = unchanged
                || self
                    .delegate(g.region_id)
                    .is_some_and(|cur| Arc::ptr_eq(&cur, d));
            if still && d.lease.valid_at(after, d.term) {
                d.lease.mark_read();
                served += 1;
            } else {
                *o = LocalRead::Refused;
            }
        }
        served
    }
}

/// Whether `req` is a read-only command asking for a mode other than Log.
pub(crate) fn fast_read_mode(req: &RaftCmdRequest) -> Option<ReadMode> {
    let mode = req.get_header().get_read_mode();
    let reads_only = !req.has_admin_request()
        && !req.get_requests().is_empty()
        && req
            .get_requests()
            .iter()
            .all(|r| r.get_cmd_type() == CmdType::Get);
    (mode != ReadMode::Log && reads_only).then_some(mode)
}

/// Reads every Get of `req` from `kv`, with the header's term set.
pub(crate) fn read_from_engine<K: KvEngine>(
    kv: &K,
    req: &RaftCmdRequest,
    term: u64,
) -> RaftCmdResponse {
    read_with(|k| kv.get(k), req, term)
}

/// Reads every Get of `req` through `get`, with the header's term set.
pub(crate) fn read_with(
    get: impl Fn(&[u8]) -> engine::Result<Option<Vec<u8>>>,
    req: &RaftCmdRequest,
    term: u64,
) -> RaftCmdResponse {
    let mut resp = RaftCmdResponse::default();
    resp.mut_header().set_current_term(term);
    for r in req.get_requests() {
        let mut out = Response::default();
        out.set_cmd_type(CmdType::Get);
        match get(r.get_get().get_key()) {
            Ok(Some(v)) => out.mut_get().set_value(v),
            Ok(None) => out.mut_get().set_not_found(true),
            Err(e) => {
                return util::error_response(
                    util::new_error(format!("engine read failed: {e}")),
                    term,
                )
            }
        }
        resp.mut_responses().push(out);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvproto_lite::raft_cmdpb::Request;

    /// A store holding only `k` = `v`.
    struct OneKey;

    impl KvRead for OneKey {
        fn get(&self, key: &[u8]) -> GetResult {
            Ok((key == b"k").then(|| b"v".to_vec()))
        }
    }

    fn epoch(version: u64) -> RegionEpoch {
        let mut e = RegionEpoch::default();
        e.set_version(version);
        e
    }

    #[test]
    fn a_batch_serves_every_get_that_passes_the_lease_checks_and_refuses_the_others() {
        let (reader, _lease) = reader_with_delegate(1);
        let (current, old) = (epoch(1), epoch(0));
        let gets = [
            LocalGet {
                region_id: 1,
                epoch: &current,
                key: b"k",
            },
            LocalGet {
                region_id: 1,
                epoch: &current,
                key: b"absent",
            },
            LocalGet {
                region_id: 1,
                epoch: &old,
                key: b"k",
            },
            LocalGet {
                region_id: 2,
                epoch: &current,
                key: b"k",
            },
        ];
        let mut out = vec![LocalRead::Refused; 9];
        reader.read_batch(&gets, &mut out);
        assert_eq!(
            out,
            vec![
                LocalRead::Served(Some(b"v".to_vec())),
                LocalRead::Served(None),
                LocalRead::Refused,
                LocalRead::Refused,
            ]
        );
        assert_eq!((reader.served(), reader.fallbacks()), (2, 0));
    }

    #[test]
    fn a_batch_waits_for_a_leader_behind_and_is_refused_without_a_lease() {
        let (reader, lease) = reader_with_delegate(1);
        let current = epoch(1);
        let gets = [LocalGet {
            region_id: 1,
            epoch: &current,
            key: b"k",
        }];
        let mut out = Vec::new();
        lease.set_caught_up(false);
        reader.read_batch(&gets, &mut out);
        assert_eq!(out, vec![LocalRead::Behind]);
        lease.set_caught_up(true);
        lease.expire();
        reader.read_batch(&gets, &mut out);
        assert_eq!(out, vec![LocalRead::Refused]);
        reader.publish(1, None);
        lease.renew(reader.now() + Duration::from_secs(3600), 1);
        reader.read_batch(&gets, &mut out);
        assert_eq!(out, vec![LocalRead::Refused], "withdrawn delegate");
        assert_eq!(reader.served(), 0);
    }

    #[test]
    fn a_batch_marks_the_lease_read() {
        let (reader, lease) = reader_with_delegate(1);
        let current = epoch(1);
        let mut out = Vec::new();
        reader.read_batch(
            &[LocalGet {
                region_id: 1,
                epoch: &current,
                key: b"k",
            }],
            &mut out,
        );
        assert!(lease.take_read());
    }

    /// A reader over a one-key store, the lease of term 1 valid for an
    /// hour, and the region-1 delegate published with `version`.
    fn reader_with_delegate(version: u64) -> (LocalReader, Arc<LeaseCell>) {
        let reader = LocalReader::default();
        reader.set_kv(Arc::new(OneKey));
        let lease = Arc::new(LeaseCell::default());
        lease.renew(reader.now() + Duration::from_secs(3600), 1);
        lease.set_caught_up(true);
        publish(&reader, &lease, version);
        (reader, lease)
    }

    fn publish(reader: &LocalReader, lease: &Arc<LeaseCell>, version: u64) {
        let mut region = Region::default();
        region.set_id(1);
        region.mut_region_epoch().set_version(version);
        reader.publish(
            1,
            Some(ReadDelegate {
                region,
                store_id: 1,
                term: 1,
                lease: lease.clone(),
            }),
        );
    }

    fn lease_get(version: u64) -> RaftCmdRequest {
        let mut req = RaftCmdRequest::default();
        req.mut_header().set_region_id(1);
        req.mut_header().mut_region_epoch().set_version(version);
        req.mut_header().set_read_mode(ReadMode::Lease);
        let mut get = Request::default();
        get.set_cmd_type(CmdType::Get);
        get.mut_get().set_key(b"k".to_vec());
        req.mut_requests().push(get);
        req
    }

    #[test]
    fn a_withdrawn_delegate_stops_reads_from_a_thread_that_used_it() {
        let (reader, _lease) = reader_with_delegate(1);
        let resp = reader
            .try_read(&lease_get(1))
            .expect("served under the lease");
        assert_eq!(resp.get_responses()[0].get_get().get_value(), b"v");
        reader.publish(1, None);
        assert!(reader.try_read(&lease_get(1)).is_none());
        assert_eq!((reader.served(), reader.fallbacks()), (1, 1));
    }

    #[test]
    fn a_replaced_delegate_is_used_from_the_next_read_on() {
        let (reader, lease) = reader_with_delegate(1);
        assert!(reader.try_read(&lease_get(1)).is_some());
        let before = reader.publishes();
        publish(&reader, &lease, 2);
        assert!(reader.publishes() > before);
        assert!(
            reader.try_read(&lease_get(1)).is_none(),
            "old epoch refused"
        );
        assert!(reader.try_read(&lease_get(2)).is_some(), "new epoch served");
    }

    #[test]
    fn each_thread_sees_publishes_made_after_its_copy_was_filled() {
        let (reader, _lease) = reader_with_delegate(1);
        let reader = Arc::new(reader);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (done, finished) = std::sync::mpsc::channel();
        let r = reader.clone();
        let other = std::thread::spawn(move || {
            done.send(r.try_read(&lease_get(1)).is_some()).ok();
            wait.recv().ok();
            done.send(r.try_read(&lease_get(1)).is_some()).ok();
        });
        assert_eq!(finished.recv().ok(), Some(true));
        reader.publish(1, None);
        go.send(()).ok();
        assert_eq!(finished.recv().ok(), Some(false));
        other.join().ok();
    }

    #[test]
    fn an_expired_lease_or_a_lagging_leader_is_not_read_locally() {
        let (reader, lease) = reader_with_delegate(1);
        lease.set_caught_up(false);
        assert!(reader.try_read(&lease_get(1)).is_none());
        lease.set_caught_up(true);
        lease.expire();
        assert!(reader.try_read(&lease_get(1)).is_none());
    }

    #[test]
    fn a_local_read_marks_the_lease_read_until_the_leader_takes_the_mark() {
        let (reader, lease) = reader_with_delegate(1);
        assert!(!lease.read_recently());
        assert!(reader.try_read(&lease_get(1)).is_some());
        assert!(lease.read_recently());
        assert!(lease.take_read());
        assert!(!lease.read_recently());
        assert!(!lease.take_read());
    }

    #[test]
    fn the_remaining_lease_counts_down_to_zero_and_is_zero_in_another_term() {
        let l = LeaseCell::default();
        l.renew(Duration::from_millis(100), 3);
        assert_eq!(
            l.remaining_at(Duration::from_millis(40), 3),
            Duration::from_millis(60)
        );
        assert_eq!(
            l.remaining_at(Duration::from_millis(150), 3),
            Duration::ZERO
        );
        assert_eq!(l.remaining_at(Duration::from_millis(40), 4), Duration::ZERO);
    }

    #[test]
    fn a_lease_is_valid_only_in_its_term_and_before_its_expiry() {
        let l = LeaseCell::default();
        assert!(!l.valid_at(Duration::ZERO, 0), "no lease before a renewal");
        l.renew(Duration::from_millis(100), 3);
        assert!(l.valid_at(Duration::from_millis(99), 3));
        assert!(!l.valid_at(Duration::from_millis(100), 3));
        assert!(!l.valid_at(Duration::from_millis(50), 4));
        l.renew(Duration::from_millis(80), 3);
        assert!(l.valid_at(Duration::from_millis(90), 3), "never shortened");
        l.expire();
        assert!(!l.valid_at(Duration::from_millis(1), 3));
        l.renew(Duration::from_millis(10), 5);
        assert!(l.valid_at(Duration::from_millis(5), 5));
    }
}
