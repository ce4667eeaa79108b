//! Membership changes: the new region metadata of a conf change, checked
//! against raft's own rules before anything is written.
//!
//! A conf change is applied in two places: here, where the region's peer
//! list (with roles) is rewritten and persisted, and in raftstore, where
//! `RawNode::apply_conf_change` updates raft's progress tracker. The two
//! must never disagree, so the new region is planned here and then checked
//! with raft's [`Changer`] on a tracker rebuilt from the current region:
//! a change raft would refuse ("removed all voters", "config is already
//! joint", ...) is refused here with raft's message, before the region
//! metadata changes, and the caller gets that error. A change that passes
//! yields the conf state raft will reach, which must equal the one the new
//! region describes.
//!
//! Roles encode the joint configuration in the region itself:
//!
//! | role | incoming voters | outgoing voters | learners | learners_next |
//! | --- | --- | --- | --- | --- |
//! | `Voter` | yes | yes (when joint) | | |
//! | `IncomingVoter` | yes | | | |
//! | `DemotingVoter` | | yes | | yes |
//! | `Learner` | | | yes | |
//!
//! A voter cannot be removed inside a joint change (it would have to stay
//! listed as an outgoing voter with no role to say so): demote it to a
//! learner first (`AddLearnerNode`), then remove the learner.

// Refusals are `errorpb::Error` values (large, but only built on the cold
// error path, and moved straight into the command's response).
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;

use kvproto_lite::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
};
use kvproto_lite::errorpb;
use kvproto_lite::metapb::{Peer, PeerRole, Region};
use kvproto_lite::raft_cmdpb::{AdminCmdType, AdminRequest, ChangePeerRequest};
use kvproto_lite::util;
use raft::{Changer, ProgressTracker};

/// Whether the region is in a joint configuration (some peer is an
/// `IncomingVoter` or a `DemotingVoter`).
pub fn is_joint(region: &Region) -> bool {
    region.get_peers().iter().any(|p| {
        matches!(
            p.get_role(),
            PeerRole::IncomingVoter | PeerRole::DemotingVoter
        )
    })
}

/// The raft configuration a region's peer list describes (ids in the
/// region's peer order; a joint configuration is left automatically).
pub fn conf_state_of(region: &Region) -> ConfState {
    let ids = |roles: &[PeerRole]| -> Vec<u64> {
        region
            .get_peers()
            .iter()
            .filter(|p| roles.contains(&p.get_role()))
            .map(|p| p.get_id())
            .collect()
    };
    let mut cs = ConfState::default();
    cs.set_voters(ids(&[PeerRole::Voter, PeerRole::IncomingVoter]));
    cs.set_learners(ids(&[PeerRole::Learner]));
    if is_joint(region) {
        cs.set_voters_outgoing(ids(&[PeerRole::Voter, PeerRole::DemotingVoter]));
        cs.set_learners_next(ids(&[PeerRole::DemotingVoter]));
        cs.set_auto_leave(true);
    }
    cs
}

/// The `ConfChangeV2` form of a `ConfChange` (what raft itself applies):
/// one change, the same context.
pub fn v1_to_v2(mut cc: ConfChange) -> ConfChangeV2 {
    let mut v2 = ConfChangeV2::default();
    v2.set_changes(vec![single(cc.get_change_type(), cc.get_node_id())].into());
    v2.set_context(cc.take_context());
    v2
}

fn single(change_type: ConfChangeType, id: u64) -> ConfChangeSingle {
    let mut c = ConfChangeSingle::default();
    c.set_change_type(change_type);
    c.set_node_id(id);
    c
}

/// Rebuilds raft's progress tracker for the region's configuration: the
/// configuration before any joint change is built one change at a time
/// (the only way raft's `Changer` accepts), then the joint change is
/// entered on top of it.
fn tracker_of(region: &Region) -> Result<ProgressTracker, raft::Error> {
    let with_role = |roles: &[PeerRole]| -> Vec<u64> {
        region
            .get_peers()
            .iter()
            .filter(|p| roles.contains(&p.get_role()))
            .map(|p| p.get_id())
            .collect()
    };
    let mut tracker = ProgressTracker::new(1);
    let step = |tracker: &mut ProgressTracker, change: ConfChangeSingle| {
        let (cfg, changes) = Changer::new(tracker).simple(&[change])?;
        tracker.apply_conf(cfg, changes, 1);
        Ok::<(), raft::Error>(())
    };
    for id in with_role(&[PeerRole::Voter, PeerRole::DemotingVoter]) {
        step(&mut tracker, single(ConfChangeType::AddNode, id))?;
    }
    for id in with_role(&[PeerRole::Learner]) {
        step(&mut tracker, single(ConfChangeType::AddLearnerNode, id))?;
    }
    if is_joint(region) {
        let mut changes: Vec<ConfChangeSingle> = with_role(&[PeerRole::IncomingVoter])
            .into_iter()
            .map(|id| single(ConfChangeType::AddNode, id))
            .collect();
        changes.extend(
            with_role(&[PeerRole::DemotingVoter])
                .into_iter()
                .map(|id| single(ConfChangeType::AddLearnerNode, id)),
        );
        let (cfg, map) = Changer::new(&tracker).enter_joint(true, &changes)?;
        tracker.apply_conf(cfg, map, 1);
    }
    Ok(tracker)
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

fn same_conf(a: &ConfState, b: &ConfState) -> bool {
    sorted(a.get_voters().to_vec()) == sorted(b.get_voters().to_vec())
        && sorted(a.get_learners().to_vec()) == sorted(b.get_learners().to_vec())
        && sorted(a.get_voters_outgoing().to_vec()) == sorted(b.get_voters_outgoing().to_vec())
        && sorted(a.get_learners_next().to_vec()) == sorted(b.get_learners_next().to_vec())
}

/// Checks `next` (the planned region) against what raft reaches when it
/// applies `cc` to the configuration of `current`.
fn check_with_raft(
    current: &Region,
    cc: &ConfChangeV2,
    next: &Region,
) -> Result<(), errorpb::Error> {
    let refused = |e: raft::Error| {
        util::new_error(format!(
            "membership change refused by raft: {e} (region {} stays at conf_ver {})",
            current.get_id(),
            current.get_region_epoch().get_conf_ver()
        ))
    };
    let tracker = tracker_of(current).map_err(|e| {
        util::new_error(format!(
            "region {} has peer roles raft cannot represent: {e}",
            current.get_id()
        ))
    })?;
    let changer = Changer::new(&tracker);
    let (cfg, _) = if cc.leave_joint() {
        changer.leave_joint()
    } else if let Some(auto_leave) = cc.enter_joint() {
        changer.enter_joint(auto_leave, cc.get_changes())
    } else {
        let mut changer = changer;
        changer.simple(cc.get_changes())
    }
    .map_err(refused)?;
    let raft_conf = cfg.to_conf_state();
    let planned = conf_state_of(next);
    if !same_conf(&raft_conf, &planned) {
        return Err(util::new_error(format!(
            "membership change of region {} would leave raft at {:?} but the region at {:?}; refused",
            current.get_id(),
            raft_conf,
            planned
        )));
    }
    Ok(())
}

/// The changes an admin request asks for: its `ChangePeerRequest`, or
/// the list of a `ChangePeerV2Request`.
pub fn requested_changes(admin: &AdminRequest) -> Result<Vec<ChangePeerRequest>, errorpb::Error> {
    match admin.get_cmd_type() {
        AdminCmdType::ChangePeer if admin.has_change_peer() => {
            Ok(vec![admin.get_change_peer().clone()])
        }
        AdminCmdType::ChangePeerV2 if admin.has_change_peer_v2() => {
            Ok(admin.get_change_peer_v2().get_changes().to_vec())
        }
        t => Err(util::new_error(format!("{t:?} without its request body"))),
    }
}

/// Plans the region after the requested changes (one per
/// `ChangePeerRequest`, in the same order as `cc`'s), or says why they are
/// refused. `current` is not changed; neither is anything else.
pub fn plan_change(
    current: &Region,
    cc: &ConfChangeV2,
    requests: &[ChangePeerRequest],
) -> Result<Region, errorpb::Error> {
    if requests.is_empty() {
        return Err(util::new_error("membership change without any change"));
    }
    if requests.len() != cc.get_changes().len() {
        return Err(util::new_error(format!(
            "conf change has {} changes but its request {}",
            cc.get_changes().len(),
            requests.len()
        )));
    }
    let joint = cc.enter_joint().is_some();
    let mut region = current.clone();
    let mut seen = BTreeSet::new();
    for (change, req) in cc.get_changes().iter().zip(requests) {
        let peer = req.get_peer();
        let id = peer.get_id();
        if change.get_change_type() != req.get_change_type() || change.get_node_id() != id {
            return Err(util::new_error(format!(
                "conf change {:?} of node {} disagrees with its request {:?} of peer {}",
                change.get_change_type(),
                change.get_node_id(),
                req.get_change_type(),
                id
            )));
        }
        if id == 0 {
            return Err(util::new_error("membership change of peer id 0"));
        }
        if !seen.insert(id) {
            return Err(util::new_error(format!(
                "peer {id} appears twice in one membership change"
            )));
        }
        apply_one(&mut region, req.get_change_type(), peer, joint)?;
    }
    check_with_raft(current, cc, &region)?;
    let conf_ver = region.get_region_epoch().get_conf_ver() + 1;
    region.mut_region_epoch().set_conf_ver(conf_ver);
    Ok(region)
}

/// Plans the region after leaving its joint configuration: incoming voters
/// become voters, demoting voters learners. `None` if it is not joint.
pub fn plan_leave_joint(current: &Region) -> Result<Option<Region>, errorpb::Error> {
    if !is_joint(current) {
        return Ok(None);
    }
    let mut region = current.clone();
    for p in region.mut_peers().iter_mut() {
        match p.get_role() {
            PeerRole::IncomingVoter => p.set_role(PeerRole::Voter),
            PeerRole::DemotingVoter => p.set_role(PeerRole::Learner),
            PeerRole::Voter | PeerRole::Learner => {}
        }
    }
    let mut leave = ConfChangeV2::default();
    leave.set_transition(ConfChangeTransition::Auto);
    check_with_raft(current, &leave, &region)?;
    let conf_ver = region.get_region_epoch().get_conf_ver() + 1;
    region.mut_region_epoch().set_conf_ver(conf_ver);
    Ok(Some(region))
}

fn apply_one(
    region: &mut Region,
    change_type: ConfChangeType,
    peer: &Peer,
    joint: bool,
) -> Result<(), errorpb::Error> {
    let region_id = region.get_id();
    let id = peer.get_id();
    let pos = region.get_peers().iter().position(|p| p.get_id() == id);
    match (change_type, pos) {
        (ConfChangeType::AddNode | ConfChangeType::AddLearnerNode, None) => {
            if peer.get_store_id() == 0 {
                return Err(util::new_error(format!("new peer {id} has no store id")));
            }
            if region
                .get_peers()
                .iter()
                .any(|p| p.get_store_id() == peer.get_store_id())
            {
                return Err(util::new_error(format!(
                    "store {} already holds a peer of region {region_id}",
                    peer.get_store_id()
                )));
            }
            let mut p = peer.clone();
            p.set_role(match (change_type, joint) {
                (ConfChangeType::AddNode, false) => PeerRole::Voter,
                (ConfChangeType::AddNode, true) => PeerRole::IncomingVoter,
                _ => PeerRole::Learner,
            });
            region.mut_peers().push(p);
        }
        (ConfChangeType::AddNode | ConfChangeType::AddLearnerNode, Some(i)) => {
            // A promotion (learner -> voter) or a demotion (voter ->
            // learner); in a joint change the peer takes the role that says
            // which half of the configuration it votes in.
            let (from, to, to_joint, becomes) = if change_type == ConfChangeType::AddNode {
                (
                    PeerRole::Learner,
                    PeerRole::Voter,
                    PeerRole::IncomingVoter,
                    "a voter",
                )
            } else {
                (
                    PeerRole::Voter,
                    PeerRole::Learner,
                    PeerRole::DemotingVoter,
                    "a learner",
                )
            };
            let existing = &mut region.mut_peers()[i];
            let role = existing.get_role();
            if role != from {
                return Err(util::new_error(format!(
                    "peer {id} cannot become {becomes} of region {region_id}: it is {role:?}"
                )));
            }
            existing.set_role(if joint { to_joint } else { to });
        }
        (ConfChangeType::RemoveNode, Some(i)) => {
            let role = region.get_peers()[i].get_role();
            if joint && role != PeerRole::Learner {
                return Err(util::new_error(format!(
                    "peer {id} is {role:?}: a voter cannot be removed in a joint change; \
                     demote it to a learner first"
                )));
            }
            region.mut_peers().remove(i);
        }
        (ConfChangeType::RemoveNode, None) => {
            return Err(util::new_error(format!(
                "peer {id} is not a member of region {region_id}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store: u64, role: PeerRole) -> Peer {
        let mut p = Peer::default();
        p.set_id(id);
        p.set_store_id(store);
        p.set_role(role);
        p
    }

    fn region(peers: Vec<Peer>) -> Region {
        let mut r = Region::default();
        r.set_id(1);
        r.mut_region_epoch().set_conf_ver(5);
        r.mut_region_epoch().set_version(1);
        r.set_peers(peers.into());
        r
    }

    fn request(t: ConfChangeType, p: Peer) -> ChangePeerRequest {
        let mut r = ChangePeerRequest::default();
        r.set_change_type(t);
        r.set_peer(p);
        r
    }

    fn cc_of(reqs: &[ChangePeerRequest]) -> ConfChangeV2 {
        let mut cc = ConfChangeV2::default();
        cc.set_changes(
            reqs.iter()
                .map(|r| single(r.get_change_type(), r.get_peer().get_id()))
                .collect::<Vec<_>>()
                .into(),
        );
        cc
    }

    fn three() -> Region {
        region(vec![
            peer(1, 1, PeerRole::Voter),
            peer(2, 2, PeerRole::Voter),
            peer(3, 3, PeerRole::Voter),
        ])
    }

    fn plan(r: &Region, reqs: &[ChangePeerRequest]) -> Result<Region, errorpb::Error> {
        plan_change(r, &cc_of(reqs), reqs)
    }

    #[test]
    fn adding_a_voter_or_learner_bumps_conf_ver_and_sets_the_role() {
        let r = three();
        let v = plan(
            &r,
            &[request(
                ConfChangeType::AddNode,
                peer(4, 4, PeerRole::Voter),
            )],
        )
        .unwrap();
        assert_eq!(v.get_region_epoch().get_conf_ver(), 6);
        assert_eq!(v.get_peers()[3].get_role(), PeerRole::Voter);
        let l = plan(
            &r,
            &[request(
                ConfChangeType::AddLearnerNode,
                peer(4, 4, PeerRole::Voter),
            )],
        )
        .unwrap();
        assert_eq!(l.get_peers()[3].get_role(), PeerRole::Learner);
        assert_eq!(conf_state_of(&l).get_learners(), &[4]);
    }

    #[test]
    fn removing_the_last_voter_is_refused_with_raft_reason_and_region_unchanged() {
        let r = region(vec![
            peer(1, 1, PeerRole::Voter),
            peer(2, 2, PeerRole::Learner),
        ]);
        let before = r.clone();
        let err = plan(
            &r,
            &[request(
                ConfChangeType::RemoveNode,
                peer(1, 1, PeerRole::Voter),
            )],
        )
        .unwrap_err();
        assert!(err.get_message().contains("removed all voters"), "{err:?}");
        assert_eq!(r, before);
    }

    #[test]
    fn two_voter_changes_at_once_enter_a_joint_configuration() {
        let r = three();
        let reqs = [
            request(ConfChangeType::AddNode, peer(4, 4, PeerRole::Voter)),
            request(ConfChangeType::AddNode, peer(5, 5, PeerRole::Voter)),
        ];
        let mut cc = cc_of(&reqs);
        cc.set_transition(ConfChangeTransition::Auto);
        // Auto with two changes is a joint change: accepted.
        let joint = plan_change(&r, &cc, &reqs).unwrap();
        assert!(is_joint(&joint));
        assert_eq!(joint.get_peers()[3].get_role(), PeerRole::IncomingVoter);
        let cs = conf_state_of(&joint);
        assert_eq!(sorted(cs.get_voters_outgoing().to_vec()), vec![1, 2, 3]);
        assert_eq!(sorted(cs.get_voters().to_vec()), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_joint_change_demotes_then_leaving_makes_learners_and_voters() {
        let r = three();
        let reqs = [
            request(ConfChangeType::AddLearnerNode, peer(3, 3, PeerRole::Voter)),
            request(ConfChangeType::AddNode, peer(4, 4, PeerRole::Voter)),
        ];
        let joint = plan(&r, &reqs).unwrap();
        assert_eq!(joint.get_peers()[2].get_role(), PeerRole::DemotingVoter);
        assert_eq!(joint.get_peers()[3].get_role(), PeerRole::IncomingVoter);
        // Another change while joint is refused by raft.
        let err = plan(
            &joint,
            &[request(
                ConfChangeType::AddLearnerNode,
                peer(5, 5, PeerRole::Learner),
            )],
        )
        .unwrap_err();
        assert!(err.get_message().contains("joint"), "{err:?}");
        let left = plan_leave_joint(&joint).unwrap().unwrap();
        assert_eq!(left.get_peers()[2].get_role(), PeerRole::Learner);
        assert_eq!(left.get_peers()[3].get_role(), PeerRole::Voter);
        assert_eq!(left.get_region_epoch().get_conf_ver(), 7);
        assert!(plan_leave_joint(&left).unwrap().is_none());
    }

    #[test]
    fn a_voter_cannot_be_removed_inside_a_joint_change() {
        let r = three();
        let reqs = [
            request(ConfChangeType::RemoveNode, peer(3, 3, PeerRole::Voter)),
            request(ConfChangeType::AddNode, peer(4, 4, PeerRole::Voter)),
        ];
        let err = plan(&r, &reqs).unwrap_err();
        assert!(err.get_message().contains("demote it"), "{err:?}");
    }

    #[test]
    fn invalid_requests_are_refused() {
        let r = three();
        let refusals = [
            (
                ConfChangeType::AddNode,
                peer(4, 1, PeerRole::Voter),
                "already holds",
            ),
            (
                ConfChangeType::AddNode,
                peer(4, 0, PeerRole::Voter),
                "no store id",
            ),
            (
                ConfChangeType::RemoveNode,
                peer(9, 9, PeerRole::Voter),
                "not a member",
            ),
            (
                ConfChangeType::AddNode,
                peer(2, 2, PeerRole::Voter),
                "cannot become a voter",
            ),
        ];
        for (change, p, why) in refusals {
            let err = plan(&r, &[request(change, p)]).unwrap_err();
            assert!(err.get_message().contains(why), "{why}: {err:?}");
        }
        let twice = [
            request(
                ConfChangeType::AddLearnerNode,
                peer(4, 4, PeerRole::Learner),
            ),
            request(ConfChangeType::RemoveNode, peer(4, 4, PeerRole::Learner)),
        ];
        assert!(plan(&r, &twice)
            .unwrap_err()
            .get_message()
            .contains("twice"));
        assert!(plan(&r, &[]).is_err());
    }

    #[test]
    fn a_learner_is_promoted_and_a_voter_demoted_by_a_simple_change() {
        let r = region(vec![
            peer(1, 1, PeerRole::Voter),
            peer(2, 2, PeerRole::Voter),
            peer(3, 3, PeerRole::Learner),
        ]);
        let promoted = plan(
            &r,
            &[request(
                ConfChangeType::AddNode,
                peer(3, 3, PeerRole::Learner),
            )],
        )
        .unwrap();
        assert_eq!(promoted.get_peers()[2].get_role(), PeerRole::Voter);
        let demoted = plan(
            &promoted,
            &[request(
                ConfChangeType::AddLearnerNode,
                peer(1, 1, PeerRole::Voter),
            )],
        )
        .unwrap();
        assert_eq!(demoted.get_peers()[0].get_role(), PeerRole::Learner);
    }
}
