//! Membership changes at apply: joint consensus, refusals that leave the
//! region unchanged, and conf changes that raft dropped.

use apply::ExecResult;
use engine::{KvEngine, MemKvEngine};
use kvproto_lite::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry, EntryType,
};
use kvproto_lite::metapb::{Peer, PeerRole, Region};
use kvproto_lite::raft_cmdpb::{AdminCmdType, AdminRequest, ChangePeerRequest};
use kvproto_lite::raft_serverpb::PeerState;
use protobuf::Message;

use crate::harness::*;

/// A ChangePeerV2 entry the way `RawNode::propose_conf_change` builds it
/// from a `ConfChangeV2` (automatic leave for more than one change).
fn v2_entry(index: u64, term: u64, region: &Region, changes: &[(ConfChangeType, Peer)]) -> Entry {
    let mut cc = ConfChangeV2::default();
    if changes.len() > 1 {
        cc.set_transition(ConfChangeTransition::Auto);
    }
    let mut admin = AdminRequest::default();
    admin.set_cmd_type(AdminCmdType::ChangePeerV2);
    for (t, p) in changes {
        let mut s = ConfChangeSingle::default();
        s.set_change_type(*t);
        s.set_node_id(p.get_id());
        cc.mut_changes().push(s);
        let mut r = ChangePeerRequest::default();
        r.set_change_type(*t);
        r.set_peer(p.clone());
        admin.mut_change_peer_v2().mut_changes().push(r);
    }
    let req = admin_cmd(region, admin);
    let mut e = Entry::default();
    e.set_entry_type(EntryType::EntryConfChangeV2);
    e.set_index(index);
    e.set_term(term);
    e.set_data(cc.write_to_bytes().unwrap().into());
    e.set_context(req.write_to_bytes().unwrap().into());
    e
}

/// The empty ConfChangeV2 entry raft appends to leave a joint configuration.
fn leave_joint_entry(index: u64, term: u64) -> Entry {
    let mut e = Entry::default();
    e.set_entry_type(EntryType::EntryConfChangeV2);
    e.set_index(index);
    e.set_term(term);
    e
}

fn roles(region: &Region) -> Vec<(u64, PeerRole)> {
    region
        .get_peers()
        .iter()
        .map(|p| (p.get_id(), p.get_role()))
        .collect()
}

fn setup() -> (Driver<MemKvEngine>, Region) {
    let mut d = Driver::new(MemKvEngine::new(), apply::Config::default());
    let r = region(1, b"b", b"y");
    d.register(registration(&r));
    (d, r)
}

#[test]
fn an_empty_entry_in_place_of_a_proposed_conf_change_is_answered_with_an_error() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    // Raft replaced the proposed conf change at index 1 by an empty entry
    // (another change was pending); the proposal's callback is still there.
    d.apply(
        &r,
        1,
        vec![raw_entry(1, 1, vec![])],
        vec![resps.proposal(1, 1)],
    );
    let (res, _) = d.round();
    let got = resps.take();
    assert_eq!(got.len(), 1);
    let err = got[0].1.get_header().get_error();
    assert!(err.get_message().contains("dropped by raft"), "{err:?}");
    assert!(res[0].exec_results.is_empty());
    assert_eq!(d.fsm(1).region(), &r);
}

#[test]
fn a_joint_change_enters_and_the_empty_v2_entry_leaves_it() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    // Demote 13 and add 14 as a voter at once.
    let e1 = v2_entry(
        1,
        1,
        &r,
        &[
            (ConfChangeType::AddLearnerNode, peer(13, 3)),
            (ConfChangeType::AddNode, peer(14, 4)),
        ],
    );
    d.apply(&r, 1, vec![e1], vec![resps.proposal(1, 1)]);
    let (res, _) = d.round();
    let got = resps.take();
    assert!(!got[0].1.get_header().has_error(), "{:?}", got[0].1);
    let joint = got[0]
        .1
        .get_admin_response()
        .get_change_peer_v2()
        .get_region();
    assert_eq!(
        roles(joint),
        vec![
            (11, PeerRole::Voter),
            (12, PeerRole::Voter),
            (13, PeerRole::DemotingVoter),
            (14, PeerRole::IncomingVoter)
        ]
    );
    assert_eq!(joint.get_region_epoch().get_conf_ver(), 2);
    match &res[0].exec_results[..] {
        [ExecResult::ChangePeer { cc, region }] => {
            assert_eq!(cc.get_changes().len(), 2);
            assert_eq!(region, joint);
        }
        other => panic!("unexpected {other:?}"),
    }
    d.apply(joint, 1, vec![leave_joint_entry(2, 1)], vec![]);
    let (res, _) = d.round();
    match &res[0].exec_results[..] {
        [ExecResult::ChangePeer { cc, region }] => {
            assert!(cc.get_changes().is_empty());
            assert_eq!(
                roles(region),
                vec![
                    (11, PeerRole::Voter),
                    (12, PeerRole::Voter),
                    (13, PeerRole::Learner),
                    (14, PeerRole::Voter)
                ]
            );
            assert_eq!(region.get_region_epoch().get_conf_ver(), 3);
        }
        other => panic!("unexpected {other:?}"),
    }
    let stored = d.kv.get_region_state(1).unwrap().unwrap();
    assert_eq!(stored.get_region().get_region_epoch().get_conf_ver(), 3);
    // A second leave (already left) changes nothing.
    let left = stored.get_region().clone();
    d.apply(&left, 1, vec![leave_joint_entry(3, 1)], vec![]);
    let (res, _) = d.round();
    assert!(res[0].exec_results.is_empty());
    assert_eq!(d.fsm(1).region(), &left);
}

#[test]
fn a_change_raft_refuses_leaves_the_region_and_its_stored_state_unchanged() {
    let mut d = Driver::new(MemKvEngine::new(), apply::Config::default());
    let mut r = region(1, b"b", b"y");
    r.mut_peers().truncate(1);
    r.mut_peers().push(learner(12, 2));
    d.register(registration(&r));
    let resps = Responses::default();
    // Removing the only voter: raft refuses ("removed all voters").
    let (e1, _) = conf_change_entry(1, 1, &r, ConfChangeType::RemoveNode, peer(11, 1));
    // Removing a voter inside a joint change is refused too.
    let e2 = v2_entry(
        2,
        1,
        &r,
        &[
            (ConfChangeType::RemoveNode, peer(11, 1)),
            (ConfChangeType::AddNode, peer(12, 2)),
        ],
    );
    d.apply(
        &r,
        1,
        vec![e1, e2],
        vec![resps.proposal(1, 1), resps.proposal(2, 1)],
    );
    let (res, _) = d.round();
    let got = resps.take();
    let first = got[0].1.get_header().get_error().get_message();
    assert!(first.contains("removed all voters"), "{first}");
    let second = got[1].1.get_header().get_error().get_message();
    assert!(second.contains("demote it"), "{second}");
    assert!(res[0].exec_results.is_empty());
    assert_eq!(d.fsm(1).region(), &r);
    assert_eq!(res[0].apply_state.get_applied_index(), 2);
    // Nothing but the apply state was written for the region.
    let stored = d.kv.get_region_state(1).unwrap();
    assert!(
        stored.is_none() || stored.as_ref().unwrap().get_region() == &r,
        "{stored:?}"
    );
    assert_ne!(stored.map(|s| s.get_state()), Some(PeerState::Tombstone));
}
