//! Membership changes in a running cluster: removal destroys the removed
//! peer and leaves a tombstone, a peer that missed its own removal is found
//! and destroyed, joint changes enter and leave the joint configuration,
//! and the changes that must be refused are refused with an error and
//! change nothing.

mod common;

use std::sync::atomic::Ordering;

use common::{assert_ok, fast_config, leader_of, put_request, WAIT};

use cluster::{wait_until, Cluster, PartitionFilter};
use engine::{KvEngine, MemKvEngine, MemRaftLogEngine, RaftLogBatch, RaftLogEngine};
use kvproto_lite::eraftpb::ConfChangeType;
use kvproto_lite::metapb::{Peer, PeerRole, Region};
use kvproto_lite::raft_cmdpb::{ChangePeerRequest, RaftCmdResponse};
use kvproto_lite::raft_serverpb::{PeerState, RaftLocalState};
use kvproto_lite::util::{self, change_peer as change};
use raftstore::Config;

type MemCluster = Cluster<MemKvEngine, MemRaftLogEngine>;

fn config() -> Config {
    Config {
        hibernate_regions: false,
        ..fast_config()
    }
}

/// The region as store `store_id` has it (its persisted region state).
fn region_on(cluster: &MemCluster, store_id: u64, region_id: u64) -> Region {
    cluster
        .engines(store_id)
        .unwrap()
        .kv
        .get_region_state(region_id)
        .unwrap()
        .unwrap()
        .get_region()
        .clone()
}

fn peer_on(region: &Region, store_id: u64) -> Peer {
    kvproto_lite::util::find_peer(region, store_id)
        .cloned()
        .unwrap()
}

/// Proposes `changes` at the region's leader and returns its answer.
fn propose_change(
    cluster: &MemCluster,
    region_id: u64,
    changes: Vec<ChangePeerRequest>,
) -> RaftCmdResponse {
    let leader = leader_of(cluster, region_id);
    let region = region_on(cluster, leader, region_id);
    let cmd = util::new_change_peer_request(&region, peer_on(&region, leader), changes);
    cluster.call(leader, cmd, WAIT).unwrap()
}

fn error_of(resp: &RaftCmdResponse) -> String {
    assert!(resp.get_header().has_error(), "expected an error: {resp:?}");
    resp.get_header().get_error().get_message().to_owned()
}

fn put(cluster: &MemCluster, key: &[u8], value: &[u8]) {
    let region = cluster.regions()[0].clone();
    let leader = leader_of(cluster, region.get_id());
    let current = region_on(cluster, leader, region.get_id());
    let resp = cluster
        .call(leader, put_request(&current, leader, key, value), WAIT)
        .unwrap();
    assert_ok(&resp);
}

fn is_tombstone(cluster: &MemCluster, store_id: u64, region_id: u64) -> bool {
    matches!(
        cluster.engines(store_id).unwrap().kv.get_region_state(region_id),
        Ok(Some(s)) if s.get_state() == PeerState::Tombstone
    )
}

fn has_raft_state(cluster: &MemCluster, store_id: u64, region_id: u64) -> bool {
    cluster
        .engines(store_id)
        .unwrap()
        .raft
        .get_raft_state(region_id)
        .unwrap()
        .is_some()
}

/// A follower's store (not the leader's), highest id first.
fn a_follower_store(cluster: &MemCluster, region_id: u64) -> u64 {
    let leader = leader_of(cluster, region_id);
    *cluster
        .store_ids()
        .iter()
        .rev()
        .find(|s| **s != leader)
        .unwrap()
}

#[test]
fn a_removed_follower_is_destroyed_its_log_cleaned_and_a_tombstone_left() {
    let mut cluster = Cluster::memory(3, 1, config()).unwrap();
    cluster.start().unwrap();
    put(&cluster, b"k1", b"v1");
    let victim = a_follower_store(&cluster, 1);
    let leader = leader_of(&cluster, 1);
    let region = region_on(&cluster, leader, 1);
    let resp = propose_change(
        &cluster,
        1,
        vec![change(ConfChangeType::RemoveNode, peer_on(&region, victim))],
    );
    assert_ok(&resp);
    let after = resp.get_admin_response().get_change_peer().get_region();
    assert_eq!(after.get_peers().len(), 2);
    assert_eq!(after.get_region_epoch().get_conf_ver(), 2);
    assert!(
        wait_until(WAIT, || is_tombstone(&cluster, victim, 1)
            && !has_raft_state(&cluster, victim, 1)
            && cluster.router(victim).unwrap().mailbox(1).is_none()),
        "the removed peer was not destroyed"
    );
    // Its data went with it (deleted in the tombstone's write batch).
    assert_eq!(cluster.kv_get(victim, b"k1").unwrap(), None);
    let destroyed = cluster
        .stats(victim)
        .unwrap()
        .peers_destroyed
        .load(Ordering::Relaxed);
    assert_eq!(destroyed, 1);
    // The two remaining voters go on.
    put(&cluster, b"k2", b"v2");
    for s in cluster.store_ids().to_vec() {
        if s != victim {
            cluster.wait_for_kv(s, b"k2", Some(b"v2"), WAIT).unwrap();
        }
    }
    cluster.shutdown();
}

#[test]
fn removing_or_demoting_the_leader_itself_is_refused() {
    let mut cluster = Cluster::memory(3, 1, config()).unwrap();
    cluster.start().unwrap();
    let leader = leader_of(&cluster, 1);
    let region = region_on(&cluster, leader, 1);
    for t in [ConfChangeType::RemoveNode, ConfChangeType::AddLearnerNode] {
        let resp = cluster
            .call(
                leader,
                util::new_change_peer_request(
                    &region,
                    peer_on(&region, leader),
                    vec![change(t, peer_on(&region, leader))],
                ),
                WAIT,
            )
            .unwrap();
        assert!(error_of(&resp).contains("transfer leadership"), "{resp:?}");
    }
    assert_eq!(region_on(&cluster, leader, 1), region);
    cluster.shutdown();
}

#[test]
fn a_change_while_another_is_pending_is_refused_not_answered_ok() {
    let mut cluster = Cluster::memory(3, 1, config()).unwrap();
    cluster.start().unwrap();
    put(&cluster, b"k", b"v");
    let leader = leader_of(&cluster, 1);
    let region = region_on(&cluster, leader, 1);
    let followers: Vec<u64> = cluster
        .store_ids()
        .iter()
        .copied()
        .filter(|s| *s != leader)
        .collect();
    // Cut the leader off so the first change cannot commit.
    cluster
        .transport()
        .add_filter(PartitionFilter::new(vec![vec![leader], followers.clone()]));
    let first = cluster
        .send_command(
            leader,
            util::new_change_peer_request(
                &region,
                peer_on(&region, leader),
                vec![change(
                    ConfChangeType::AddLearnerNode,
                    peer_on(&region, followers[0]),
                )],
            ),
        )
        .unwrap();
    let second = cluster
        .call(
            leader,
            util::new_change_peer_request(
                &region,
                peer_on(&region, leader),
                vec![change(
                    ConfChangeType::AddLearnerNode,
                    peer_on(&region, followers[1]),
                )],
            ),
            WAIT,
        )
        .unwrap();
    assert!(error_of(&second).contains("not applied yet"), "{second:?}");
    cluster.transport().clear_filters();
    // The first one is answered (applied, or refused by a new leader's
    // term): never lost.
    let first = first.recv_timeout(WAIT).unwrap();
    if !first.get_header().has_error() {
        let r = first.get_admin_response().get_change_peer().get_region();
        assert_eq!(peer_on(r, followers[0]).get_role(), PeerRole::Learner);
    }
    cluster.shutdown();
}

#[test]
fn a_joint_change_enters_and_leaves_the_joint_configuration_on_every_store() {
    let mut cluster = Cluster::memory(3, 1, config()).unwrap();
    cluster.start().unwrap();
    put(&cluster, b"k1", b"v1");
    let leader = leader_of(&cluster, 1);
    let region = region_on(&cluster, leader, 1);
    let followers: Vec<Peer> = region
        .get_peers()
        .iter()
        .filter(|p| p.get_store_id() != leader)
        .cloned()
        .collect();
    // Demote both followers at once: a joint configuration.
    let resp = propose_change(
        &cluster,
        1,
        followers
            .iter()
            .map(|p| change(ConfChangeType::AddLearnerNode, p.clone()))
            .collect(),
    );
    assert_ok(&resp);
    let joint = resp.get_admin_response().get_change_peer_v2().get_region();
    assert!(joint
        .get_peers()
        .iter()
        .filter(|p| p.get_store_id() != leader)
        .all(|p| p.get_role() == PeerRole::DemotingVoter));
    // Raft leaves the joint configuration by itself: learners everywhere.
    let left = |cluster: &MemCluster, role: PeerRole, conf_ver: u64| {
        cluster.store_ids().iter().all(|s| {
            let r = region_on(cluster, *s, 1);
            r.get_region_epoch().get_conf_ver() == conf_ver
                && followers
                    .iter()
                    .all(|f| peer_on(&r, f.get_store_id()).get_role() == role)
        })
    };
    assert!(
        wait_until(WAIT, || left(&cluster, PeerRole::Learner, 3)),
        "the joint configuration was not left on every store"
    );
    // A single voter commits alone; the learners still learn.
    put(&cluster, b"k2", b"v2");
    for s in cluster.store_ids().to_vec() {
        cluster.wait_for_kv(s, b"k2", Some(b"v2"), WAIT).unwrap();
    }
    // Promote them back together.
    let resp = propose_change(
        &cluster,
        1,
        followers
            .iter()
            .map(|p| change(ConfChangeType::AddNode, p.clone()))
            .collect(),
    );
    assert_ok(&resp);
    assert!(
        wait_until(WAIT, || left(&cluster, PeerRole::Voter, 5)),
        "the followers were not promoted back on every store"
    );
    put(&cluster, b"k3", b"v3");
    cluster.shutdown();
}

#[test]
fn a_peer_removed_while_its_store_was_down_is_destroyed_when_it_comes_back() {
    let mut cluster = Cluster::memory(3, 1, config()).unwrap();
    cluster.start().unwrap();
    put(&cluster, b"k1", b"v1");
    let victim = a_follower_store(&cluster, 1);
    cluster.stop_store(victim);
    let leader = leader_of(&cluster, 1);
    let region = region_on(&cluster, leader, 1);
    let resp = propose_change(
        &cluster,
        1,
        vec![change(ConfChangeType::RemoveNode, peer_on(&region, victim))],
    );
    assert_ok(&resp);
    // Back with the old configuration: it campaigns, and the others tell it
    // it was removed.
    cluster.start_store(victim).unwrap();
    assert!(
        wait_until(WAIT, || is_tombstone(&cluster, victim, 1)
            && !has_raft_state(&cluster, victim, 1)),
        "the stale peer was not destroyed"
    );
    let sent: u64 = cluster
        .store_ids()
        .iter()
        .filter(|s| **s != victim)
        .map(|s| {
            cluster
                .stats(*s)
                .unwrap()
                .tombstones_sent
                .load(Ordering::Relaxed)
        })
        .sum();
    assert!(sent >= 1);
    put(&cluster, b"k2", b"v2");
    cluster.shutdown();
}

#[test]
fn a_learner_removed_while_its_store_was_down_is_destroyed_when_it_comes_back() {
    let mut cluster = Cluster::memory(3, 1, config()).unwrap();
    cluster.start().unwrap();
    put(&cluster, b"k1", b"v1");
    let victim = a_follower_store(&cluster, 1);
    let leader = leader_of(&cluster, 1);
    let region = region_on(&cluster, leader, 1);
    // A learner never campaigns, so it never hears "you were removed" as
    // an answer to a vote request.
    assert_ok(&propose_change(
        &cluster,
        1,
        vec![change(
            ConfChangeType::AddLearnerNode,
            peer_on(&region, victim),
        )],
    ));
    cluster
        .wait_for_kv(victim, b"k1", Some(b"v1"), WAIT)
        .unwrap();
    assert!(wait_until(WAIT, || peer_on(
        &region_on(&cluster, victim, 1),
        victim
    )
    .get_role()
        == PeerRole::Learner));
    cluster.stop_store(victim);
    let leader = leader_of(&cluster, 1);
    let region = region_on(&cluster, leader, 1);
    assert_ok(&propose_change(
        &cluster,
        1,
        vec![change(ConfChangeType::RemoveNode, peer_on(&region, victim))],
    ));
    cluster.start_store(victim).unwrap();
    assert!(
        wait_until(WAIT, || is_tombstone(&cluster, victim, 1)
            && !has_raft_state(&cluster, victim, 1)),
        "the removed learner was not destroyed"
    );
    assert_eq!(cluster.kv_get(victim, b"k1").unwrap(), None);
    cluster.shutdown();
}

#[test]
fn a_store_restarted_with_a_tombstone_and_a_leftover_raft_log_cleans_the_log() {
    let mut cluster = Cluster::memory(3, 1, config()).unwrap();
    cluster.start().unwrap();
    put(&cluster, b"k1", b"v1");
    let victim = a_follower_store(&cluster, 1);
    let leader = leader_of(&cluster, 1);
    let region = region_on(&cluster, leader, 1);
    assert_ok(&propose_change(
        &cluster,
        1,
        vec![change(ConfChangeType::RemoveNode, peer_on(&region, victim))],
    ));
    assert!(wait_until(WAIT, || is_tombstone(&cluster, victim, 1)
        && !has_raft_state(&cluster, victim, 1)));
    let engines = cluster.engines(victim).unwrap().clone();
    cluster.stop_store(victim);
    // What a crash between the (synced) tombstone and the cleaning of the
    // log leaves behind.
    let mut state = RaftLocalState::default();
    state.set_last_index(9);
    let mut lb = engines.raft.log_batch(0);
    lb.put_raft_state(1, &state).unwrap();
    engines.raft.consume(&mut lb, true).unwrap();
    cluster.start_store(victim).unwrap();
    assert!(!has_raft_state(&cluster, victim, 1));
    assert!(is_tombstone(&cluster, victim, 1));
    assert!(cluster.router(victim).unwrap().mailbox(1).is_none());
    cluster.shutdown();
}
