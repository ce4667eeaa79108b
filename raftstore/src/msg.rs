//! Messages of the raft batch system: what peers and the store receive.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use kvproto_lite::errorpb;
use kvproto_lite::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use kvproto_lite::raft_serverpb::RaftMessage;

/// The function a command's issuer gets its response through.
type CallbackFn = Box<dyn FnOnce(RaftCmdResponse) + Send>;

/// A command's completion callback, called **exactly once**.
///
/// If a `Callback` is dropped without being invoked (its command was lost in
/// a mailbox at shutdown, its peer was destroyed, ...), it calls the
/// function with an error response saying so. A caller therefore always
/// hears back, and an error other than the typed ones in `errorpb::Error`
/// means the outcome is unknown.
///
/// # Examples
///
/// ```
/// use raftstore::Callback;
/// let (tx, rx) = std::sync::mpsc::channel();
/// let cb = Callback::new(move |resp| tx.send(resp).unwrap());
/// drop(cb); // never invoked: the function still runs, with an error
/// assert!(rx.recv().unwrap().get_header().has_error());
/// ```
pub struct Callback {
    f: Option<CallbackFn>,
    /// When the command was handed over (for the propose-wait stage).
    created_at: Instant,
    /// The store memory the command holds until it is answered (dropped
    /// after the function ran).
    memory: Option<crate::memory::MemoryGuard>,
}

impl Callback {
    /// Wraps a function.
    pub fn new(f: impl FnOnce(RaftCmdResponse) + Send + 'static) -> Callback {
        Callback {
            f: Some(Box::new(f)),
            created_at: Instant::now(),
            memory: None,
        }
    }

    /// A callback that ignores the response.
    pub fn none() -> Callback {
        Callback {
            f: None,
            created_at: Instant::now(),
            memory: None,
        }
    }

    /// Charges the command's bytes to the store's memory quota until the
    /// callback is answered (or dropped).
    pub(crate) fn hold_memory(&mut self, guard: crate::memory::MemoryGuard) {
        self.memory = Some(guard);
    }

    /// Whether the command's bytes are charged to a memory quota already.
    pub(crate) fn holds_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Calls the function with `resp`.
    pub fn invoke(mut self, resp: RaftCmdResponse) {
        if let Some(f) = self.f.take() {
            f(resp);
        }
    }

    /// Calls the function with an error response carrying `err`.
    pub fn invoke_with_error(self, err: errorpb::Error, current_term: u64) {
        self.invoke(error_response(err, current_term));
    }

    /// When the callback was made: the moment the command was handed over.
    pub(crate) fn created_at(&self) -> Instant {
        self.created_at
    }

    /// Converts into the boxed closure the apply system takes; dropping that
    /// closure uncalled still answers the command. The time from now to
    /// the answer is recorded in `stages.apply`.
    pub(crate) fn into_apply_callback(
        self,
        stats: &Arc<crate::StoreStats>,
        handed_at: Instant,
    ) -> apply::Callback {
        let stats = Arc::clone(stats);
        Box::new(move |resp| {
            stats.stages.apply.record(handed_at.elapsed());
            self.invoke(resp)
        })
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            let mut err = errorpb::Error::default();
            err.set_message("command dropped before completion (store shutting down or peer destroyed): outcome unknown".to_owned());
            f(error_response(err, 0));
        }
    }
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback")
            .field("pending", &self.f.is_some())
            .finish()
    }
}

pub use kvproto_lite::util::error_response;

/// A client command for one region with its callback.
#[derive(Debug)]
pub struct RaftCommand {
    /// The request; its header names the region, the peer and the epoch.
    pub request: RaftCmdRequest,
    /// Receives the response exactly once.
    pub callback: Callback,
}

impl RaftCommand {
    /// Pairs a request with its callback.
    pub fn new(request: RaftCmdRequest, callback: Callback) -> RaftCommand {
        RaftCommand { request, callback }
    }
}

/// Messages that change how a peer sees the world outside the raft protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignificantMsg {
    /// Every peer on `store_id` should be treated as unreachable: raft stops
    /// pipelining appends to it and probes instead; a hibernated follower
    /// whose leader is there wakes (to elect another).
    StoreUnreachable {
        /// The unreachable store.
        store_id: u64,
    },
    /// The store is shutting down gracefully: a leader transfers
    /// leadership to an up-to-date follower (sent again, it retries with
    /// the best follower at that moment), and the peer stops campaigning.
    /// Sent by [`RaftRouter::evict_leaders`](crate::RaftRouter::evict_leaders).
    EvictLeader,
    /// `store_id` can be reached again (it came back or the network
    /// healed): a hibernated leader with a peer there wakes, so that peer
    /// hears from it at once.
    StoreReachable {
        /// The store that came back.
        store_id: u64,
    },
    /// The outcome of sending a snapshot to `to_peer_id`, reported by the
    /// transport: raft-rs's `report_snapshot` (a failure makes it probe the
    /// follower again and, if still needed, send a new snapshot).
    SnapshotStatus {
        /// The follower the snapshot was for.
        to_peer_id: u64,
        /// Whether the follower's store took the whole snapshot.
        delivered: bool,
    },
}

/// A raft message from another store on its way to a peer, holding its
/// bytes in the store's memory quota while it waits in the mailbox.
#[derive(Debug)]
pub struct InboundMessage {
    /// The message.
    pub msg: RaftMessage,
    memory: Option<crate::memory::MemoryGuard>,
}

impl InboundMessage {
    /// A message charged to no quota.
    pub fn new(msg: RaftMessage) -> InboundMessage {
        InboundMessage { msg, memory: None }
    }

    /// A message holding `guard` until it is taken out.
    pub(crate) fn charged(msg: RaftMessage, guard: crate::memory::MemoryGuard) -> InboundMessage {
        InboundMessage {
            msg,
            memory: Some(guard),
        }
    }

    /// Bytes this message holds in the memory quota (0 if not charged).
    pub fn charged_bytes(&self) -> u64 {
        self.memory.as_ref().map_or(0, |g| g.bytes())
    }

    /// The message; its bytes leave the quota.
    pub fn into_message(self) -> RaftMessage {
        self.msg
    }
}

/// A message to a peer FSM. Large variants are boxed so that a mailbox's
/// queue blocks stay small.
#[derive(Debug)]
pub enum PeerMsg {
    /// A raft message from another peer of the region.
    RaftMessage(Box<InboundMessage>),
    /// A client command.
    RaftCommand(Box<RaftCommand>),
    /// One raft tick (time passes only through these).
    Tick,
    /// The apply system finished applying entries.
    ApplyRes(Box<apply::ApplyRes>),
    /// See [`SignificantMsg`].
    SignificantMsg(SignificantMsg),
    /// Sent once after the peer is registered; starts it.
    Start,
    /// A hibernated follower's periodic liveness check (booked when it fell
    /// asleep, delivered by the store FSM): wake and ask the leader to wake.
    CheckLeader,
    /// Destroy the peer: close its mailbox and stop.
    Destroy,
    /// Answers to the peer's leader checks arrived (in its
    /// [`LeaderCheckCell`](crate::leader_check::LeaderCheckCell)): serve
    /// the read batches a quorum confirmed.
    LeaderChecked,
    /// A store writer made the peer's Readies up to `ready_number` durable
    /// (async I/O mode, see `Config::store_io_pool_size`).
    Persisted {
        /// The peer the Readies belong to (a peer destroyed and created
        /// again for the same region has another id and ignores it).
        peer_id: u64,
        /// The number of the last durable Ready (`raft::Ready::number`).
        ready_number: u64,
    },
}

/// A message to the store (control) FSM.
#[derive(Debug)]
pub enum StoreMsg {
    /// A raft message for a region that has no peer on this store yet.
    RaftMessage(Box<RaftMessage>),
    /// A store tick (store-wide periodic work).
    Tick,
    /// Start the store FSM.
    Start,
    /// The apply system made region `region_id`'s `Tombstone` state
    /// durable: its destroyed peer's raft log can go (it is cleaned only
    /// now, so a crash in between leaves a tombstone with a stale log,
    /// which a restart cleans, and never a live region without a log).
    PeerDestroyed {
        /// The region whose peer was destroyed.
        region_id: u64,
    },
}
