//! Validation of every raft message that arrives from another store,
//! before raft-rs sees it.
//!
//! raft-rs 0.7 trusts its peers: several malformed messages reach a
//! `fatal!` (a panic) or an arithmetic overflow inside `RawNode::step`, and
//! a panicking poller closes the mailbox of every region it held. A store
//! talking to the network must not let one bad peer, one corrupted frame or
//! one bug elsewhere take regions down, so each message is checked here
//! first, from the message alone ([`check_message`], also used by the store
//! FSM before it creates a peer for a message) and against the receiving
//! peer's raft state ([`check_for_peer`]). A message that fails is dropped,
//! counted per [`RejectReason`] (in [`RejectedMessages`] and the
//! `raftstore_rejected_raft_messages_total` counter) and logged with the
//! sender; it never reaches raft-rs and changes no state.
//!
//! Every check is one a correct peer never trips: the messages raft-rs
//! itself sends pass unchanged (the simulation's totals over a fixed seed
//! range are identical with and without this module). The table of the
//! raft-rs panics each check prevents is in `docs/untrusted-input.md`.

use std::sync::atomic::{AtomicU64, Ordering};

use kvproto_lite::eraftpb::{Message, MessageType};
use kvproto_lite::raft_serverpb::RaftMessage;
use raft::{Raft, StateRole, Storage};

/// Why a raft message was dropped before raft-rs saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The message is addressed to another peer id than the receiving peer:
    /// stale routing (a peer removed and re-added under a new id still gets
    /// its predecessor's messages for a while) or a forged header. The only
    /// reason a correct peer can cause, so not [`malformed`](Self::is_malformed).
    ToPeerMismatch,
    /// The envelope and the raft message disagree on the sender or the
    /// receiver (`message.from != from_peer.id`, `message.to !=
    /// to_peer.id`), or one of them is 0, or a peer sends to itself.
    PeerIdsMismatch,
    /// A message type raft-rs generates only for its own node (`MsgHup`,
    /// `MsgBeat`, `MsgUnreachable`, `MsgSnapStatus`, `MsgCheckQuorum`).
    LocalMessageType,
    /// A message type no store sends to another (`MsgPropose`,
    /// `MsgReadIndex`, `MsgReadIndexResp`, `MsgTransferLeader`): commands
    /// reach a leader through its command checks, never as forwarded raft
    /// proposals.
    NotSentByStores,
    /// A term of 0, which raft-rs takes for a message of its own node and
    /// steps without any term check.
    ZeroTerm,
    /// A term of [`MAX_TERM`] or more: raft-rs adopts it, and its next
    /// election overflows `term + 1`. Terms grow by one per election, so no
    /// correct peer comes near it.
    TermTooLarge,
    /// A snapshot whose metadata contradicts itself or the message
    /// (index or term 0, a term above the message's, an empty or
    /// overlapping configuration, a configuration without the receiver).
    SnapshotMetadata,
    /// A snapshot whose data this store does not hold (it came without it,
    /// was delivered twice, or a newer snapshot of the region replaced the
    /// data): raft-rs must not restore a snapshot the store cannot apply.
    /// Data that arrived but fails its checks is refused by the transport
    /// already.
    SnapshotDataMissing,
    /// An append whose entries do not follow its `index` one by one
    /// (`entries[i].index != index + 1 + i`).
    AppendNotContiguous,
    /// An append whose entry terms go down, fall below the term at its
    /// `index` (`log_term`), or exceed the message's term.
    AppendEntryTerms,
    /// An append anchored at a non-zero index with a log term of 0: raft-rs
    /// answers term 0 for any index past the last one, so such an anchor
    /// "matches" entries this peer does not have.
    AppendZeroLogTerm,
    /// A heartbeat whose commit index is past this peer's last index.
    HeartbeatCommitPastLastIndex,
    /// An append response (to this leader, in its term) for an index past
    /// the leader's last index.
    AppendResponseIndexPastLastIndex,
    /// An append rejection whose hint is past the leader's last index.
    RejectHintPastLastIndex,
    /// An append response that requests a snapshot: this store never
    /// requests one, and raft-rs would stop replicating to the sender
    /// until a snapshot it cannot build is sent.
    RequestSnapshot,
}

impl RejectReason {
    /// Every reason, in declaration order (the index of a reason in this
    /// array is its slot in [`RejectedMessages`]).
    pub const ALL: [RejectReason; 15] = [
        RejectReason::ToPeerMismatch,
        RejectReason::PeerIdsMismatch,
        RejectReason::LocalMessageType,
        RejectReason::NotSentByStores,
        RejectReason::ZeroTerm,
        RejectReason::TermTooLarge,
        RejectReason::SnapshotMetadata,
        RejectReason::SnapshotDataMissing,
        RejectReason::AppendNotContiguous,
        RejectReason::AppendEntryTerms,
        RejectReason::AppendZeroLogTerm,
        RejectReason::HeartbeatCommitPastLastIndex,
        RejectReason::AppendResponseIndexPastLastIndex,
        RejectReason::RejectHintPastLastIndex,
        RejectReason::RequestSnapshot,
    ];

    /// The reason as a metric label and log value (snake case).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::ToPeerMismatch => "to_peer_mismatch",
            RejectReason::PeerIdsMismatch => "peer_ids_mismatch",
            RejectReason::LocalMessageType => "local_message_type",
            RejectReason::NotSentByStores => "not_sent_by_stores",
            RejectReason::ZeroTerm => "zero_term",
            RejectReason::TermTooLarge => "term_too_large",
            RejectReason::SnapshotMetadata => "snapshot_metadata",
            RejectReason::SnapshotDataMissing => "snapshot_data_missing",
            RejectReason::AppendNotContiguous => "append_not_contiguous",
            RejectReason::AppendEntryTerms => "append_entry_terms",
            RejectReason::AppendZeroLogTerm => "append_zero_log_term",
            RejectReason::HeartbeatCommitPastLastIndex => "heartbeat_commit_past_last_index",
            RejectReason::AppendResponseIndexPastLastIndex => {
                "append_response_index_past_last_index"
            }
            RejectReason::RejectHintPastLastIndex => "reject_hint_past_last_index",
            RejectReason::RequestSnapshot => "request_snapshot",
        }
    }

    /// Whether a correct peer never sends such a message (every reason but
    /// [`ToPeerMismatch`](Self::ToPeerMismatch) and
    /// [`SnapshotDataMissing`](Self::SnapshotDataMissing): a correct
    /// leader's snapshot message arrives without its data when it is
    /// delivered twice, or after a newer snapshot of the region replaced
    /// the data).
    pub fn is_malformed(self) -> bool {
        !matches!(
            self,
            RejectReason::ToPeerMismatch | RejectReason::SnapshotDataMissing
        )
    }

    fn slot(self) -> usize {
        RejectReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(0)
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-reason counts of the raft messages a store dropped in validation
/// (part of [`StoreStats`](crate::StoreStats)).
#[derive(Debug, Default)]
pub struct RejectedMessages {
    counts: [AtomicU64; RejectReason::ALL.len()],
}

impl RejectedMessages {
    /// Messages dropped for `reason` so far.
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.counts[reason.slot()].load(Ordering::Relaxed)
    }

    /// Messages dropped for any reason so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Messages dropped for a reason a correct peer never causes
    /// ([`RejectReason::is_malformed`]).
    pub fn malformed(&self) -> u64 {
        RejectReason::ALL
            .iter()
            .filter(|r| r.is_malformed())
            .map(|r| self.get(*r))
            .sum()
    }

    /// Counts one message dropped for `reason`, here and in the
    /// `raftstore_rejected_raft_messages_total` metric.
    pub(crate) fn record(&self, reason: RejectReason) {
        self.counts[reason.slot()].fetch_add(1, Ordering::Relaxed);
        crate::metrics::raft_message_rejected(reason.as_str());
    }
}

/// The smallest term a message may not carry (2^63): far beyond any term
/// a region reaches by elections, far enough below `u64::MAX` that raft-rs's
/// `term + 1` never overflows.
pub const MAX_TERM: u64 = 1 << 63;

/// The message types one store sends another and raft-rs steps.
fn is_wire_type(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgAppend
            | MessageType::MsgAppendResponse
            | MessageType::MsgRequestVote
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgRequestPreVote
            | MessageType::MsgRequestPreVoteResponse
            | MessageType::MsgHeartbeat
            | MessageType::MsgHeartbeatResponse
            | MessageType::MsgTimeoutNow
            | MessageType::MsgSnapshot
    )
}

/// Checks what can be checked from the message alone: the envelope agrees
/// with the raft message, the type is one stores exchange, the term is
/// set, and snapshots and appends are self-consistent.
///
/// # Errors
///
/// The first check the message fails.
pub fn check_message(msg: &RaftMessage) -> Result<(), RejectReason> {
    let m = msg.get_message();
    let (from, to) = (msg.get_from_peer().get_id(), msg.get_to_peer().get_id());
    if from == 0 || to == 0 || from == to || m.from != from || m.to != to {
        return Err(RejectReason::PeerIdsMismatch);
    }
    let t = m.get_msg_type();
    if raft::raw_node::is_local_msg(t) {
        return Err(RejectReason::LocalMessageType);
    }
    if !is_wire_type(t) {
        return Err(RejectReason::NotSentByStores);
    }
    if m.term == 0 {
        return Err(RejectReason::ZeroTerm);
    }
    if m.term >= MAX_TERM {
        return Err(RejectReason::TermTooLarge);
    }
    match t {
        MessageType::MsgSnapshot => check_snapshot(m),
        MessageType::MsgAppend => check_append(m),
        MessageType::MsgAppendResponse if m.request_snapshot != 0 => {
            Err(RejectReason::RequestSnapshot)
        }
        _ => Ok(()),
    }
}

fn check_snapshot(m: &Message) -> Result<(), RejectReason> {
    let meta = m.get_snapshot().get_metadata();
    let cs = meta.get_conf_state();
    let in_conf = |id: u64| {
        cs.get_voters().contains(&id)
            || cs.get_learners().contains(&id)
            || cs.get_voters_outgoing().contains(&id)
    };
    let overlap = cs
        .get_learners()
        .iter()
        .chain(cs.get_learners_next())
        .any(|l| cs.get_voters().contains(l))
        || cs
            .get_learners()
            .iter()
            .any(|l| cs.get_voters_outgoing().contains(l));
    if meta.index == 0
        || meta.term == 0
        || meta.term > m.term
        || cs.get_voters().is_empty()
        || overlap
        || !in_conf(m.to)
    {
        return Err(RejectReason::SnapshotMetadata);
    }
    Ok(())
}

fn check_append(m: &Message) -> Result<(), RejectReason> {
    let mut expected = m.index;
    let mut prev_term = m.log_term;
    for e in m.get_entries() {
        expected = expected
            .checked_add(1)
            .ok_or(RejectReason::AppendNotContiguous)?;
        if e.index != expected {
            return Err(RejectReason::AppendNotContiguous);
        }
        if e.term < prev_term || e.term > m.term {
            return Err(RejectReason::AppendEntryTerms);
        }
        prev_term = e.term;
    }
    if m.log_term == 0 && m.index != 0 {
        return Err(RejectReason::AppendZeroLogTerm);
    }
    Ok(())
}

/// Checks `msg` against the raft state of the peer `peer_id` that is about
/// to step it, after [`check_message`]: the message is for this peer, and
/// its indexes are within this peer's log where raft-rs assumes they are.
///
/// # Errors
///
/// The first check the message fails.
pub fn check_for_peer<S: Storage>(
    raft: &Raft<S>,
    peer_id: u64,
    msg: &RaftMessage,
) -> Result<(), RejectReason> {
    if msg.get_to_peer().get_id() != peer_id {
        return Err(RejectReason::ToPeerMismatch);
    }
    check_message(msg)?;
    let m = msg.get_message();
    let last = raft.raft_log.last_index();
    match m.get_msg_type() {
        // raft-rs ignores a heartbeat of an older term; of this term or a
        // newer one it commits up to its commit index.
        MessageType::MsgHeartbeat if m.term >= raft.term && m.commit > last => {
            Err(RejectReason::HeartbeatCommitPastLastIndex)
        }
        // Only a leader in the message's term acts on an append response.
        MessageType::MsgAppendResponse
            if raft.state == StateRole::Leader && m.term == raft.term =>
        {
            if m.index > last {
                Err(RejectReason::AppendResponseIndexPastLastIndex)
            } else if m.reject && m.reject_hint > last {
                Err(RejectReason::RejectHintPastLastIndex)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvproto_lite::eraftpb::{ConfState, Entry};

    fn wire(t: MessageType, term: u64) -> RaftMessage {
        let mut rm = RaftMessage::default();
        rm.set_region_id(1);
        rm.mut_from_peer().set_id(1);
        rm.mut_from_peer().set_store_id(1);
        rm.mut_to_peer().set_id(2);
        rm.mut_to_peer().set_store_id(2);
        let m = rm.mut_message();
        m.set_msg_type(t);
        m.from = 1;
        m.to = 2;
        m.term = term;
        rm
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn every_reason_has_its_own_counter_slot_and_label() {
        let stats = RejectedMessages::default();
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.slot(), i);
            stats.record(*r);
            assert_eq!(stats.get(*r), 1, "{r}");
        }
        assert_eq!(stats.total(), RejectReason::ALL.len() as u64);
        // Neither a message for another peer id nor a snapshot without its
        // data is malformed.
        assert_eq!(stats.malformed(), RejectReason::ALL.len() as u64 - 2);
        let labels: std::collections::HashSet<_> =
            RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), RejectReason::ALL.len());
    }

    #[test]
    fn messages_raft_sends_between_stores_pass() {
        for t in [
            MessageType::MsgAppendResponse,
            MessageType::MsgRequestVote,
            MessageType::MsgRequestVoteResponse,
            MessageType::MsgRequestPreVote,
            MessageType::MsgRequestPreVoteResponse,
            MessageType::MsgHeartbeat,
            MessageType::MsgHeartbeatResponse,
            MessageType::MsgTimeoutNow,
        ] {
            assert_eq!(check_message(&wire(t, 3)), Ok(()), "{t:?}");
        }
        let mut append = wire(MessageType::MsgAppend, 3);
        let m = append.mut_message();
        m.index = 5;
        m.log_term = 2;
        m.set_entries(vec![entry(6, 2), entry(7, 3)].into());
        assert_eq!(check_message(&append), Ok(()));
    }

    #[test]
    fn envelope_and_message_must_name_the_same_peers() {
        let mut rm = wire(MessageType::MsgHeartbeat, 1);
        rm.mut_message().from = 9;
        assert_eq!(check_message(&rm), Err(RejectReason::PeerIdsMismatch));
        let mut rm = wire(MessageType::MsgHeartbeat, 1);
        rm.mut_message().to = 9;
        assert_eq!(check_message(&rm), Err(RejectReason::PeerIdsMismatch));
        let mut rm = wire(MessageType::MsgHeartbeat, 1);
        rm.mut_to_peer().set_id(1);
        rm.mut_message().to = 1;
        assert_eq!(check_message(&rm), Err(RejectReason::PeerIdsMismatch));
    }

    #[test]
    fn local_and_never_sent_types_are_refused() {
        for t in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgUnreachable,
            MessageType::MsgSnapStatus,
            MessageType::MsgCheckQuorum,
        ] {
            assert_eq!(
                check_message(&wire(t, 1)),
                Err(RejectReason::LocalMessageType)
            );
        }
        for t in [
            MessageType::MsgPropose,
            MessageType::MsgReadIndex,
            MessageType::MsgReadIndexResp,
            MessageType::MsgTransferLeader,
        ] {
            assert_eq!(
                check_message(&wire(t, 1)),
                Err(RejectReason::NotSentByStores)
            );
        }
    }

    #[test]
    fn a_zero_term_is_refused() {
        assert_eq!(
            check_message(&wire(MessageType::MsgRequestVote, 0)),
            Err(RejectReason::ZeroTerm)
        );
    }

    #[test]
    fn terms_from_max_term_on_are_refused() {
        assert_eq!(
            check_message(&wire(MessageType::MsgHeartbeat, MAX_TERM - 1)),
            Ok(())
        );
        for term in [MAX_TERM, u64::MAX] {
            assert_eq!(
                check_message(&wire(MessageType::MsgHeartbeat, term)),
                Err(RejectReason::TermTooLarge)
            );
        }
    }

    #[test]
    fn appends_must_be_contiguous_with_sane_terms() {
        let mut rm = wire(MessageType::MsgAppend, 3);
        rm.mut_message().index = 5;
        rm.mut_message().log_term = 2;
        rm.mut_message().set_entries(vec![entry(5, 3)].into());
        assert_eq!(check_message(&rm), Err(RejectReason::AppendNotContiguous));
        rm.mut_message().index = u64::MAX;
        rm.mut_message().set_entries(vec![entry(0, 3)].into());
        assert_eq!(check_message(&rm), Err(RejectReason::AppendNotContiguous));
        rm.mut_message().index = 5;
        rm.mut_message().set_entries(vec![entry(6, 1)].into());
        assert_eq!(check_message(&rm), Err(RejectReason::AppendEntryTerms));
        rm.mut_message().set_entries(vec![entry(6, 4)].into());
        assert_eq!(check_message(&rm), Err(RejectReason::AppendEntryTerms));
        rm.mut_message().log_term = 0;
        rm.mut_message().set_entries(vec![entry(6, 3)].into());
        assert_eq!(check_message(&rm), Err(RejectReason::AppendZeroLogTerm));
    }

    #[test]
    fn snapshot_metadata_is_checked() {
        let mut rm = wire(MessageType::MsgSnapshot, 3);
        let meta = rm.mut_message().mut_snapshot().mut_metadata();
        meta.index = 10;
        meta.term = 3;
        let mut cs = ConfState::default();
        cs.set_voters(vec![1, 2, 3]);
        meta.set_conf_state(cs.clone());
        assert_eq!(check_message(&rm), Ok(()));
        cs.set_learners(vec![2]);
        rm.mut_message()
            .mut_snapshot()
            .mut_metadata()
            .set_conf_state(cs);
        assert_eq!(check_message(&rm), Err(RejectReason::SnapshotMetadata));
    }

    #[test]
    fn append_responses_asking_for_snapshots_are_refused() {
        let mut rm = wire(MessageType::MsgAppendResponse, 3);
        rm.mut_message().reject = true;
        rm.mut_message().request_snapshot = 7;
        assert_eq!(check_message(&rm), Err(RejectReason::RequestSnapshot));
    }
}
