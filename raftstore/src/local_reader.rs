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
//! it becomes a ReadIndex read that renews the lease). The lease is renewed
//! only by the peer, from the send time of a read index that a quorum
//! confirmed, and lasts the election timeout minus one tick minus the
//! configured clock drift. A peer expires it when it stops leading, starts
//! a leadership transfer or hibernates, before anything else can happen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use engine::KvEngine;
use kvproto_lite::metapb::Region;
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

/// Reads of a store's KV engine, whatever its type.
pub(crate) type KvGet = dyn Fn(&[u8]) -> engine::Result<Option<Vec<u8>>> + Send + Sync;

/// The store's lease-read fast path (see the module docs).
pub struct LocalReader {
    delegates: RwLock<HashMap<u64, Arc<ReadDelegate>>>,
    kv: OnceLock<Arc<KvGet>>,
    clock: RwLock<Arc<dyn Clock>>,
    served: AtomicU64,
    fallbacks: AtomicU64,
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
            delegates: RwLock::new(HashMap::new()),
            kv: OnceLock::new(),
            clock: RwLock::new(Arc::new(MonotonicClock::default())),
            served: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            raft_thread_lease_reads: AtomicU64::new(0),
            next_read_id: AtomicU64::new(1),
        }
    }
}

impl LocalReader {
    /// The clock leases are measured with.
    pub fn now(&self) -> Duration {
        self.clock.read().unwrap_or_else(|e| e.into_inner()).now()
    }

    /// Replaces the clock (before the store starts).
    pub(crate) fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.clock.write().unwrap_or_else(|e| e.into_inner()) = clock;
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
    pub(crate) fn set_kv(&self, kv: Arc<KvGet>) {
        let _ = self.kv.set(kv);
    }

    /// Lease reads answered on the caller's thread.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Lease-mode commands handed on to the raft thread.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Lease reads answered by a peer on the raft thread (its lease valid
    /// when the command reached it).
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
        let out = self.read(req);
        if out.is_some() {
            self.served.fetch_add(1, Ordering::Relaxed);
        } else {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    fn read(&self, req: &RaftCmdRequest) -> Option<RaftCmdResponse> {
        let header = req.get_header();
        let d = self.delegate(header.get_region_id())?;
        let kv = self.kv.get()?;
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
        if !d.lease.valid_at(self.now(), d.term) || !d.lease.caught_up() {
            return None;
        }
        let resp = read_with(|k| kv(k), req, d.term);
        // The lease must still hold after the read, and the delegate must
        // not have been replaced (a split, a new term) meanwhile.
        let still = self
            .delegate(header.get_region_id())
            .is_some_and(|cur| Arc::ptr_eq(&cur, &d));
        if !still || !d.lease.valid_at(self.now(), d.term) {
            return None;
        }
        Some(resp)
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
