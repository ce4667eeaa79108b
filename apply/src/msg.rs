//! Messages of the apply batch system and the results it reports.

use std::fmt;

use kvproto_lite::eraftpb::{ConfChangeV2, Entry};
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use kvproto_lite::raft_serverpb::{RaftApplyState, RaftTruncatedState};

/// The function a proposed command's response is delivered through, called
/// at most once, after the round that applied the command is written.
pub type Callback = Box<dyn FnOnce(RaftCmdResponse) + Send>;

/// A command proposed by this peer, waiting for its entry to be applied.
pub struct Proposal {
    /// Log index the command was appended at.
    pub index: u64,
    /// Term the command was appended at. If the entry applied at `index`
    /// has another term, the proposal was superseded and gets `StaleCommand`.
    pub term: u64,
    /// Receives the response.
    pub cb: Callback,
    /// The command the entry holds, as the proposer still has it: applied
    /// in place of decoding the entry's data (a normal entry's data is this
    /// request, encoded). `None`: the entry is decoded, as on a follower.
    pub request: Option<Box<RaftCmdRequest>>,
}

impl Proposal {
    /// Pairs a log position with a callback.
    pub fn new(index: u64, term: u64, cb: Callback) -> Proposal {
        Proposal {
            index,
            term,
            cb,
            request: None,
        }
    }

    /// The same proposal carrying the command its entry encodes, which
    /// apply then uses instead of decoding the entry: the proposer saves a
    /// decode of every command it proposed. The caller guarantees that the
    /// entry's data is exactly `request` encoded; if the entry at `index`
    /// turns out to be another one (another term), the request is dropped
    /// with the superseded proposal and never applied.
    pub fn with_request(mut self, request: Box<RaftCmdRequest>) -> Proposal {
        self.request = Some(request);
        self
    }
}

impl fmt::Debug for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proposal")
            .field("index", &self.index)
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}

/// Committed entries of one region, to be applied in order.
#[derive(Debug)]
pub struct Apply {
    /// The region the entries belong to.
    pub region_id: u64,
    /// The peer's current raft term (reported as `current_term` in responses).
    pub term: u64,
    /// Committed entries, ascending and contiguous. Entries at or below the
    /// region's applied index are skipped, so redelivery is harmless.
    pub entries: Vec<Entry>,
    /// Callbacks of commands this peer proposed, ascending by index. They
    /// may refer to entries of this message or of a later one.
    pub proposals: Vec<Proposal>,
}

impl Apply {
    /// Entries without proposals.
    pub fn new(region_id: u64, term: u64, entries: Vec<Entry>) -> Apply {
        Apply {
            region_id,
            term,
            entries,
            proposals: Vec::new(),
        }
    }
}

/// Creates (or resets) a region's apply FSM.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// This store's peer of the region.
    pub peer_id: u64,
    /// The region's metadata.
    pub region: Region,
    /// The region's persisted apply state (applied index, truncated state).
    pub apply_state: RaftApplyState,
    /// Term of the entry at `apply_state.applied_index`.
    pub applied_term: u64,
}

/// A message to a region's apply FSM. Large variants are boxed so mailbox
/// queues stay small.
#[derive(Debug)]
pub enum ApplyMsg {
    /// Committed entries to apply. Consecutive `Apply` messages of a region
    /// are merged and applied in one round (within the round's budget).
    Apply(Box<Apply>),
    /// Create the region's FSM, or reset an existing one (for example after a
    /// snapshot): pending proposals get `StaleCommand`, queued entries are
    /// dropped and the state is replaced.
    Registration(Box<Registration>),
    /// Stop applying: queued entries are applied first, then pending
    /// proposals get an untyped "outcome unknown" error, the FSM stops and the notifier gets an
    /// [`ApplyRes`] with `destroyed == true`.
    Destroy {
        /// The region to destroy.
        region_id: u64,
    },
}

impl ApplyMsg {
    /// Shorthand for [`ApplyMsg::Apply`].
    pub fn apply(apply: Apply) -> ApplyMsg {
        ApplyMsg::Apply(Box::new(apply))
    }

    /// Shorthand for [`ApplyMsg::Registration`].
    pub fn registration(reg: Registration) -> ApplyMsg {
        ApplyMsg::Registration(Box::new(reg))
    }
}

/// A message to the apply system's control FSM.
#[derive(Debug)]
pub enum ControlMsg {
    /// A message for a region that had no mailbox when it was sent: the
    /// control FSM creates the FSM for a registration (one that was queued
    /// behind a `Destroy`), delivers anything else if the region exists by
    /// then, and otherwise answers the message's callbacks with
    /// an untyped "outcome unknown" error.
    Route {
        /// Destination region.
        region_id: u64,
        /// The message.
        msg: ApplyMsg,
    },
}

/// What an applied admin command changed; raftstore acts on these.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecResult {
    /// The configuration changed. Raftstore calls
    /// `RawNode::apply_conf_change(&cc)` and adopts `region`. A rejected
    /// conf change produces no result and leaves raft's configuration alone;
    /// an accepted one was checked against raft's own rules (see
    /// [`membership`](crate::membership)), so raft accepts it too.
    ChangePeer {
        /// The applied conf change (a `ConfChange` converted to its V2 form;
        /// empty when leaving a joint configuration).
        cc: ConfChangeV2,
        /// The region after the change (peers and `conf_ver` updated).
        region: Region,
    },
    /// The log may be compacted up to `state.index` (inclusive).
    CompactLog {
        /// The new truncated state.
        state: RaftTruncatedState,
        /// The region's first log index before this compaction.
        first_index: u64,
    },
    /// The region split. `left` keeps the old region id; `right` is new and
    /// its `RegionLocalState` and initial `RaftApplyState` (see
    /// [`RAFT_INIT_LOG_INDEX`](crate::RAFT_INIT_LOG_INDEX)) were written in
    /// the same batch, unless the new region already existed on this store.
    Split {
        /// The old region, now ending at the split key.
        left: Region,
        /// The new region, starting at the split key.
        right: Region,
    },
}

/// A region's progress in one round, reported through
/// [`ApplyNotifier::notify`](crate::ApplyNotifier::notify) after the round's
/// KV write succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyRes {
    /// The region.
    pub region_id: u64,
    /// The apply state now durable (or written, see
    /// [`Config::sync_write`](crate::Config::sync_write)) in the KV engine.
    pub apply_state: RaftApplyState,
    /// Term of the entry at `apply_state.applied_index`.
    pub applied_term: u64,
    /// Admin results of this round, in log order.
    pub exec_results: Vec<ExecResult>,
    /// The FSM handled [`ApplyMsg::Destroy`] and stopped.
    pub destroyed: bool,
}
