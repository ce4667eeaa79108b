//! Malformed raft messages sent to real stores: each is dropped before
//! raft-rs sees it, counted under its reason, and the region keeps
//! serving. Each test of the first group sends a message that panics
//! inside raft-rs 0.7 when the store's check is taken out (the table in
//! `docs/untrusted-input.md` names the panic site); the second group
//! covers checks that keep state consistent rather than prevent a panic.
//!
//! Every wait is on a condition with a generous deadline.

mod common;

use common::{fast_config, WAIT};

use cluster::{wait_until, Cluster};
use engine::{MemKvEngine, MemRaftLogEngine};
use kvproto_lite::eraftpb::{ConfState, Entry, MessageType};
use kvproto_lite::metapb::{Peer, Region};
use kvproto_lite::raft_serverpb::RaftMessage;
use raftstore::validate::RejectReason;
use raftstore::{Config, RegionProgress};

type MemCluster = Cluster<MemKvEngine, MemRaftLogEngine>;

/// One region on three stores (or on the stores in `start`), with a
/// leader and a write applied everywhere, so the last entry of every
/// replica is of the leader's term and committed.
struct Fixture {
    cluster: MemCluster,
    region: Region,
    leader_store: u64,
    follower_store: u64,
    /// The leader's term.
    term: u64,
    writes: u64,
}

fn config() -> Config {
    Config {
        // Peers stay awake, so progress counters are current.
        hibernate_regions: false,
        ..fast_config()
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_stores(&[1, 2, 3])
    }

    fn with_stores(start: &[u64]) -> Fixture {
        let mut cluster = Cluster::memory(3, 1, config()).unwrap();
        for s in start {
            cluster.start_store(*s).unwrap();
        }
        cluster.wait_for_leaders(WAIT).unwrap();
        let region = cluster.regions()[0].clone();
        let mut fx = Fixture {
            cluster,
            region,
            leader_store: 0,
            follower_store: 0,
            term: 0,
            writes: 0,
        };
        fx.write_and_wait(start);
        let leader = fx.cluster.leader_store(fx.region.get_id()).unwrap();
        fx.leader_store = leader;
        fx.follower_store = *start.iter().find(|s| **s != leader).unwrap();
        fx.term = fx.progress(leader).term;
        fx
    }

    /// Writes one more key through the client and waits until `stores`
    /// have applied it and agree on commit and last index.
    fn write_and_wait(&mut self, stores: &[u64]) {
        self.writes += 1;
        let key = format!("k{}", self.writes).into_bytes();
        let mut client = self.cluster.client();
        client.put(&key, b"v").unwrap();
        for s in stores {
            self.cluster
                .wait_for_kv(*s, &key, Some(b"v"), WAIT)
                .unwrap();
        }
        let region_id = self.region.get_id();
        assert!(wait_until(WAIT, || {
            let p: Vec<RegionProgress> = stores.iter().map(|s| self.progress(*s)).collect();
            p.iter()
                .all(|x| x.commit_index == x.last_index && x.last_index == p[0].last_index)
                && self.cluster.leader_store(region_id).is_some()
        }));
    }

    fn progress(&self, store: u64) -> RegionProgress {
        self.cluster
            .stats(store)
            .unwrap()
            .region_progress(self.region.get_id())
            .unwrap()
    }

    fn peer(&self, store: u64) -> Peer {
        kvproto_lite::util::find_peer(&self.region, store)
            .unwrap()
            .clone()
    }

    /// A well-formed envelope of a `t` message in `term` from the peer on
    /// `from` to the peer on `to`.
    fn message(&self, from: u64, to: u64, t: MessageType, term: u64) -> RaftMessage {
        let (from, to) = (self.peer(from), self.peer(to));
        let mut rm = RaftMessage::default();
        rm.set_region_id(self.region.get_id());
        rm.set_region_epoch(self.region.get_region_epoch().clone());
        let m = rm.mut_message();
        m.set_msg_type(t);
        m.from = from.get_id();
        m.to = to.get_id();
        m.term = term;
        rm.set_from_peer(from);
        rm.set_to_peer(to);
        rm
    }

    fn rejected(&self, store: u64, reason: RejectReason) -> u64 {
        self.cluster
            .stats(store)
            .unwrap()
            .rejected_messages
            .get(reason)
    }

    /// Sends `msg` to `store` and waits until the store counted it as
    /// rejected for `reason`.
    fn send_rejected(&self, store: u64, msg: RaftMessage, reason: RejectReason) {
        let before = self.rejected(store, reason);
        self.cluster
            .router(store)
            .unwrap()
            .send_raft_message(msg)
            .unwrap();
        assert!(
            wait_until(WAIT, || self.rejected(store, reason) > before),
            "store {store} did not reject the message for {reason}"
        );
    }

    /// The region still takes writes on every running store in `stores`,
    /// and no poller panicked (shutdown re-raises a poller's panic).
    fn assert_serving(mut self, stores: &[u64]) {
        self.write_and_wait(stores);
        self.cluster.shutdown();
    }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

// ---- Messages that panic inside raft-rs 0.7 without the check ----

#[test]
fn a_heartbeat_committing_past_the_followers_log_is_dropped() {
    let fx = Fixture::new();
    let last = fx.progress(fx.follower_store).last_index;
    let mut msg = fx.message(
        fx.leader_store,
        fx.follower_store,
        MessageType::MsgHeartbeat,
        fx.term,
    );
    msg.mut_message().commit = last + 100;
    fx.send_rejected(
        fx.follower_store,
        msg,
        RejectReason::HeartbeatCommitPastLastIndex,
    );
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn an_append_whose_entries_do_not_follow_its_index_is_dropped() {
    let fx = Fixture::new();
    let last = fx.progress(fx.follower_store).last_index;
    // Anchored at the follower's (committed) last entry, carrying a
    // different entry for that same index: raft-rs finds a conflict at a
    // committed index.
    let mut msg = fx.message(
        fx.leader_store,
        fx.follower_store,
        MessageType::MsgAppend,
        fx.term + 1,
    );
    let m = msg.mut_message();
    m.index = last;
    m.log_term = fx.term;
    m.set_entries(vec![entry(last, fx.term + 1)].into());
    fx.send_rejected(fx.follower_store, msg, RejectReason::AppendNotContiguous);
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn an_append_anchored_past_the_log_with_log_term_zero_is_dropped() {
    let fx = Fixture::new();
    let last = fx.progress(fx.follower_store).last_index;
    let mut msg = fx.message(
        fx.leader_store,
        fx.follower_store,
        MessageType::MsgAppend,
        fx.term,
    );
    let m = msg.mut_message();
    m.index = last + 10;
    m.log_term = 0;
    m.set_entries(vec![entry(last + 11, fx.term)].into());
    fx.send_rejected(fx.follower_store, msg, RejectReason::AppendZeroLogTerm);
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn a_term_zero_vote_for_an_unknown_region_creates_no_peer() {
    let fx = Fixture::new();
    // A region this store has never heard of: the store FSM would create
    // an uninitialized peer, which grants the vote with term 0.
    let mut msg = RaftMessage::default();
    msg.set_region_id(1000);
    msg.mut_from_peer().set_id(1001);
    msg.mut_from_peer().set_store_id(fx.leader_store);
    msg.mut_to_peer().set_id(1002);
    msg.mut_to_peer().set_store_id(fx.follower_store);
    let m = msg.mut_message();
    m.set_msg_type(MessageType::MsgRequestVote);
    m.from = 1001;
    m.to = 1002;
    m.term = 0;
    m.index = 10;
    m.log_term = 10;
    fx.send_rejected(fx.follower_store, msg, RejectReason::ZeroTerm);
    assert!(fx
        .cluster
        .router(fx.follower_store)
        .unwrap()
        .mailbox(1000)
        .is_none());
    fx.assert_serving(&[1, 2, 3]);
}

/// Found by the `store_messages` fuzz target (its input is in
/// `fuzz/corpus/store_messages/crash-term-overflow`).
#[test]
fn a_term_near_u64_max_is_dropped() {
    let fx = Fixture::new();
    // Adopted, it makes the follower's next campaign overflow `term + 1`.
    let mut msg = fx.message(
        fx.leader_store,
        fx.follower_store,
        MessageType::MsgHeartbeat,
        u64::MAX,
    );
    msg.mut_message().commit = fx.progress(fx.follower_store).commit_index;
    fx.send_rejected(fx.follower_store, msg, RejectReason::TermTooLarge);
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn a_proposal_from_the_network_is_dropped_by_the_leader() {
    let fx = Fixture::new();
    // No entries: raft-rs's leader treats an empty MsgPropose as a bug.
    let msg = fx.message(
        fx.follower_store,
        fx.leader_store,
        MessageType::MsgPropose,
        fx.term,
    );
    fx.send_rejected(fx.leader_store, msg, RejectReason::NotSentByStores);
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn a_leader_transfer_request_from_the_network_is_dropped_by_a_follower() {
    let fx = Fixture::new();
    // A follower forwards it to its leader with the term still set, which
    // raft-rs's send refuses.
    let msg = fx.message(
        fx.leader_store,
        fx.follower_store,
        MessageType::MsgTransferLeader,
        fx.term,
    );
    fx.send_rejected(fx.follower_store, msg, RejectReason::NotSentByStores);
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn a_read_index_request_without_its_context_entry_is_dropped() {
    let fx = Fixture::new();
    let msg = fx.message(
        fx.follower_store,
        fx.leader_store,
        MessageType::MsgReadIndex,
        fx.term,
    );
    fx.send_rejected(fx.leader_store, msg, RejectReason::NotSentByStores);
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn a_snapshot_with_an_inconsistent_configuration_is_dropped() {
    let fx = Fixture::new();
    let last = fx.progress(fx.follower_store).last_index;
    let follower = fx.peer(fx.follower_store).get_id();
    let mut msg = fx.message(
        fx.leader_store,
        fx.follower_store,
        MessageType::MsgSnapshot,
        fx.term,
    );
    let meta = msg.mut_message().mut_snapshot().mut_metadata();
    meta.index = last + 100;
    meta.term = fx.term;
    let mut cs = ConfState::default();
    cs.set_voters(fx.region.get_peers().iter().map(|p| p.get_id()).collect());
    // The follower both a voter and a learner.
    cs.set_learners(vec![follower]);
    meta.set_conf_state(cs);
    fx.send_rejected(fx.follower_store, msg, RejectReason::SnapshotMetadata);
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn an_append_rejection_with_a_hint_past_the_leaders_log_is_dropped() {
    // Store 3 never starts: the leader probes its peer (matched 0), the
    // state in which raft-rs moves next_idx to the hint + 1.
    let fx = Fixture::with_stores(&[1, 2]);
    let last = fx.progress(fx.leader_store).last_index;
    let before = fx.rejected(fx.leader_store, RejectReason::RejectHintPastLastIndex);
    let router = fx.cluster.router(fx.leader_store).unwrap();
    // The probe's index is not visible from outside: reject every index
    // the leader may be probing at.
    for index in 1..=last {
        let mut msg = fx.message(3, fx.leader_store, MessageType::MsgAppendResponse, fx.term);
        let m = msg.mut_message();
        m.reject = true;
        m.index = index;
        m.reject_hint = u64::MAX;
        router.send_raft_message(msg).unwrap();
    }
    assert!(wait_until(WAIT, || {
        fx.rejected(fx.leader_store, RejectReason::RejectHintPastLastIndex) == before + last
    }));
    fx.assert_serving(&[1, 2]);
}

// ---- Checks that keep state consistent (no raft-rs panic) ----

#[test]
fn an_append_response_for_entries_the_leader_does_not_have_is_dropped() {
    let fx = Fixture::new();
    let last = fx.progress(fx.leader_store).last_index;
    let mut msg = fx.message(
        fx.follower_store,
        fx.leader_store,
        MessageType::MsgAppendResponse,
        fx.term,
    );
    msg.mut_message().index = last + 100;
    fx.send_rejected(
        fx.leader_store,
        msg,
        RejectReason::AppendResponseIndexPastLastIndex,
    );
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn an_append_response_requesting_a_snapshot_is_dropped() {
    let fx = Fixture::new();
    let mut msg = fx.message(
        fx.follower_store,
        fx.leader_store,
        MessageType::MsgAppendResponse,
        fx.term,
    );
    msg.mut_message().reject = true;
    msg.mut_message().request_snapshot = 1;
    fx.send_rejected(fx.leader_store, msg, RejectReason::RequestSnapshot);
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn a_snapshot_message_without_its_data_is_dropped() {
    let fx = Fixture::new();
    let last = fx.progress(fx.follower_store).last_index;
    let mut msg = fx.message(
        fx.leader_store,
        fx.follower_store,
        MessageType::MsgSnapshot,
        fx.term,
    );
    // A well-formed snapshot message whose data never arrived out of band.
    let meta = raftstore::snapshot::SnapshotMeta {
        key: raftstore::snapshot::SnapKey {
            region_id: fx.region.get_id(),
            term: fx.term,
            index: last + 100,
        },
        region: fx.region.clone(),
        apply_state: {
            let mut s = kvproto_lite::raft_serverpb::RaftApplyState::default();
            s.set_applied_index(last + 100);
            s
        },
        data_size: 0,
        pairs: 0,
        checksum: 0,
    };
    msg.mut_message()
        .set_snapshot(raftstore::snapshot::raft_snapshot(&meta).unwrap());
    fx.send_rejected(fx.follower_store, msg, RejectReason::SnapshotDataMissing);
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn append_entries_with_terms_out_of_order_are_dropped() {
    let fx = Fixture::new();
    let last = fx.progress(fx.follower_store).last_index;
    let mut msg = fx.message(
        fx.leader_store,
        fx.follower_store,
        MessageType::MsgAppend,
        fx.term,
    );
    let m = msg.mut_message();
    m.index = last;
    m.log_term = fx.term;
    m.set_entries(vec![entry(last + 1, fx.term + 5)].into());
    fx.send_rejected(fx.follower_store, msg, RejectReason::AppendEntryTerms);
    fx.assert_serving(&[1, 2, 3]);
}

#[test]
fn local_message_types_and_mismatched_envelopes_are_dropped() {
    let fx = Fixture::new();
    let (l, f) = (fx.leader_store, fx.follower_store);
    fx.send_rejected(
        f,
        fx.message(l, f, MessageType::MsgHup, fx.term),
        RejectReason::LocalMessageType,
    );
    let mut msg = fx.message(l, f, MessageType::MsgHeartbeat, fx.term);
    msg.mut_message().from = 999;
    fx.send_rejected(f, msg, RejectReason::PeerIdsMismatch);
    // Addressed to the region's peer on another store.
    let other = [1, 2, 3].into_iter().find(|s| *s != l && *s != f).unwrap();
    let mut msg = fx.message(l, other, MessageType::MsgHeartbeat, fx.term);
    msg.mut_to_peer().set_store_id(f);
    fx.send_rejected(f, msg, RejectReason::ToPeerMismatch);
    fx.assert_serving(&[1, 2, 3]);
}
