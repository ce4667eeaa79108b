//! The store's memory quota: bytes held by work the store has accepted but
//! not finished, and the admission check that refuses new commands while
//! they exceed the quota.
//!
//! ```text
//!  command ──► RaftRouter::send_raft_command (or, for a command put in a
//!              mailbox directly, Peer::propose):
//!              in use ≥ quota? ── yes ──► ServerIsBusy("memory quota …")
//!                  │ no
//!                  ▼
//!  charge(request bytes) ─► guard rides in the command's Callback, through
//!                           the mailbox, the proposal and the apply queue
//!                           (released when the command is answered)
//!  send_to_apply(entries) ─► guard kept by the peer per apply task
//!                           (released when the apply result reports them applied)
//!  transport.send(msg)   ─► guard held by the poll round
//!                           (released after the round's transport flush)
//!  raft message in       ─► guard rides in PeerMsg::RaftMessage
//!                           (released when the peer steps it)
//! ```
//!
//! Accounting is one shared atomic counter ([`MemoryQuota`]) and RAII
//! [`MemoryGuard`]s: whatever holds bytes holds a guard for them, and
//! dropping the guard (the command answered, the entries applied, the
//! peer destroyed) gives the bytes back. Nothing is ever refused *after*
//! it was accepted: charging never fails ([`MemoryQuota::charge`]); only
//! the admission of new commands looks at the total
//! ([`MemoryQuota::check_admission`]). Raft messages from other stores
//! (charged while they wait in a mailbox), ticks and apply results are
//! never refused, so replication, elections
//! and the answers to accepted commands keep going while the store is over
//! its quota, and the total falls back as they complete.
//!
//! The same shape as TiKV's `MemoryQuota` (tikv_util): an atomic
//! in-use counter against a capacity, allocations that either fail or are
//! forced, and owned guards that free on drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kvproto_lite::errorpb;

/// Bytes charged to the memory quota for one accepted command beyond its
/// encoded size: the decoded request, its callback and channel, the
/// pending proposal and the entry's own fields.
pub(crate) const COMMAND_OVERHEAD_BYTES: u64 = 256;

/// Bytes charged per committed entry or entry in a message beyond its data
/// (its index, term, type and the task or message around it).
pub(crate) const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// Approximate bytes a raft message holds while queued: its entries' data
/// plus a fixed part for the headers.
pub(crate) fn raft_message_bytes(rm: &kvproto_lite::raft_serverpb::RaftMessage) -> u64 {
    let entries: u64 = rm
        .get_message()
        .get_entries()
        .iter()
        .map(|e| e.get_data().len() as u64 + ENTRY_OVERHEAD_BYTES)
        .sum();
    entries + 256
}

/// Bytes of accepted, unfinished work of one store, against a capacity.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use raftstore::MemoryQuota;
///
/// let quota = Arc::new(MemoryQuota::new(1000));
/// assert!(quota.check_admission().is_ok());
/// let held = quota.charge(1200); // accepted work is never refused
/// let busy = quota.check_admission().unwrap_err();
/// assert!(busy.get_server_is_busy().get_reason().contains("memory quota"));
/// drop(held); // the work finished
/// assert_eq!(quota.in_use(), 0);
/// assert!(quota.check_admission().is_ok());
/// ```
#[derive(Debug)]
pub struct MemoryQuota {
    in_use: AtomicU64,
    capacity: AtomicU64,
    peak: AtomicU64,
    refused: AtomicU64,
}

impl Default for MemoryQuota {
    /// An unlimited quota (it still counts).
    fn default() -> MemoryQuota {
        MemoryQuota::new(u64::MAX)
    }
}

impl MemoryQuota {
    /// A quota of `capacity` bytes, nothing in use.
    pub fn new(capacity: u64) -> MemoryQuota {
        MemoryQuota {
            in_use: AtomicU64::new(0),
            capacity: AtomicU64::new(capacity),
            peak: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Bytes accounted now.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// The most bytes ever accounted at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// The quota, in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Changes the quota; work already accounted stays accounted.
    pub fn set_capacity(&self, capacity: u64) {
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    /// Commands refused by [`check_admission`](Self::check_admission) so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether the bytes in use reached the quota.
    pub fn is_exceeded(&self) -> bool {
        self.in_use() >= self.capacity()
    }

    /// `Ok` when a new command may be accepted; otherwise the
    /// `ServerIsBusy` error to answer it with, whose reason names the
    /// memory quota and the bytes in use.
    ///
    /// A command is admitted while the bytes in use are below the quota,
    /// so the total can pass the quota by the commands admitted
    /// concurrently (one per thread submitting commands) plus what
    /// accepted work goes on to hold (committed entries and raft messages
    /// for this store's followers, which are never refused).
    ///
    /// # Errors
    ///
    /// `ServerIsBusy` while the quota is exceeded.
    pub fn check_admission(&self) -> Result<(), errorpb::Error> {
        let (in_use, capacity) = (self.in_use(), self.capacity());
        if in_use < capacity {
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(kvproto_lite::util::new_server_is_busy(&format!(
            "memory quota exceeded: {in_use} bytes of accepted work in use, quota {capacity} bytes"
        )))
    }

    /// Accounts `bytes` until the returned guard is dropped. Never fails:
    /// call it for work already accepted.
    pub fn charge(self: &Arc<Self>, bytes: u64) -> MemoryGuard {
        let now = self.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        MemoryGuard {
            quota: self.clone(),
            bytes,
        }
    }
}

/// Bytes accounted in a [`MemoryQuota`], released when dropped.
#[derive(Debug)]
pub struct MemoryGuard {
    quota: Arc<MemoryQuota>,
    bytes: u64,
}

impl MemoryGuard {
    /// The bytes this guard accounts.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds `bytes` to this guard's share.
    pub fn grow(&mut self, bytes: u64) {
        let now = self.quota.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.quota.peak.fetch_max(now, Ordering::Relaxed);
        self.bytes += bytes;
    }
}

impl Drop for MemoryGuard {
    fn drop(&mut self) {
        self.quota.in_use.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The default quota of one store: a quarter of the memory this process
/// may use (the smaller of the machine's total memory, from
/// `/proc/meminfo`, and a cgroup v2 `memory.max` limit), or 1 GiB where
/// neither can be read. Several stores in one process each get this
/// default, so give them explicit quotas that add up.
///
/// # Examples
///
/// ```
/// assert!(raftstore::default_memory_quota() >= 64 << 20);
/// ```
pub fn default_memory_quota() -> u64 {
    const FALLBACK: u64 = 4 << 30;
    const MIN: u64 = 256 << 20;
    let total = machine_memory().unwrap_or(FALLBACK);
    (total / 4).max(MIN / 4)
}

/// Memory this process may use, in bytes, as far as Linux reports it.
fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let total = meminfo.as_deref().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_give_their_bytes_back_when_dropped() {
        let quota = Arc::new(MemoryQuota::new(100));
        let a = quota.charge(30);
        let mut b = quota.charge(50);
        b.grow(10);
        assert_eq!(quota.in_use(), 90);
        drop(a);
        assert_eq!(quota.in_use(), 60);
        drop(b);
        assert_eq!(quota.in_use(), 0);
        assert_eq!(quota.peak(), 90);
    }

    #[test]
    fn admission_is_refused_at_the_quota_and_resumes_below_it() {
        let quota = Arc::new(MemoryQuota::new(100));
        let held = quota.charge(99);
        assert!(quota.check_admission().is_ok());
        let more = quota.charge(1);
        let err = quota.check_admission().unwrap_err();
        assert!(err.has_server_is_busy());
        assert!(err.get_message().contains("memory quota"), "{err:?}");
        assert_eq!(quota.refused(), 1);
        drop(more);
        assert!(quota.check_admission().is_ok());
        drop(held);
    }

    #[test]
    fn charging_past_the_quota_never_fails() {
        let quota = Arc::new(MemoryQuota::new(10));
        let held = quota.charge(1000);
        assert!(quota.is_exceeded());
        assert_eq!(held.bytes(), 1000);
    }

    #[test]
    fn default_quota_is_a_quarter_of_memory_at_least_64_mib() {
        let q = default_memory_quota();
        assert!(q >= 64 << 20);
        if let Some(total) = machine_memory() {
            assert!(q <= total.max(256 << 20));
        }
    }
}
