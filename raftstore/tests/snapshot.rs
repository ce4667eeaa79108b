//! Region snapshots and log GC past lagging followers, end to end in an
//! in-process cluster: a follower the log was compacted past catches up by
//! snapshot, a brand-new peer created from the leader's messages is filled
//! by one, and transfers that break or fail are retried.
//!
//! Every wait is on a condition with a generous deadline.

mod common;

use common::{gc_config, key, truncated_index, value, WAIT};

use std::sync::atomic::Ordering;
use std::time::Duration;

use cluster::{wait_until, Cluster};
use engine::{KvEngine, MemKvEngine, MemRaftLogEngine};
use kvproto_lite::eraftpb::ConfChangeType;
use kvproto_lite::metapb::{Peer, Region};
use kvproto_lite::raft_cmdpb::{AdminCmdType, RaftCmdRequest};
use kvproto_lite::raft_serverpb::PeerState;

type MemCluster = Cluster<MemKvEngine, MemRaftLogEngine>;

fn snapshots_applied(cluster: &MemCluster, store: u64) -> u64 {
    cluster
        .stats(store)
        .map_or(0, |s| s.snapshots.applied.load(Ordering::Relaxed))
}

fn snapshots_sent(cluster: &MemCluster, store: u64) -> u64 {
    cluster
        .stats(store)
        .map_or(0, |s| s.snapshots.sent.load(Ordering::Relaxed))
}

fn assert_has_all(cluster: &MemCluster, store: u64, n: u64) {
    for i in 0..n {
        cluster
            .wait_for_kv(store, &key(i), Some(&value(i)), WAIT)
            .unwrap();
    }
}

/// Stops `lagging`, writes until every live store compacted its log past
/// what `lagging` had, and returns how many keys were written.
fn write_past_a_stopped_store(cluster: &mut MemCluster, lagging: u64) -> u64 {
    let last_before = cluster
        .stats(lagging)
        .and_then(|s| s.region_progress(1))
        .map_or(0, |p| p.last_index);
    cluster.stop_store(lagging);
    let mut client = cluster.client();
    let mut n = 0;
    let live: Vec<u64> = cluster
        .store_ids()
        .iter()
        .copied()
        .filter(|s| *s != lagging)
        .collect();
    let compacted_past = |c: &MemCluster| {
        live.iter()
            .all(|s| truncated_index(c, *s, 1) > last_before + 1)
    };
    while !compacted_past(cluster) {
        client.put(&key(n), &value(n)).unwrap();
        n += 1;
        assert!(
            n < 5_000,
            "the log was never compacted past store {lagging}"
        );
    }
    n
}

#[test]
fn a_follower_the_log_was_compacted_past_catches_up_by_snapshot_with_every_acked_write() {
    let mut cluster = Cluster::memory(3, 1, gc_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let mut client = cluster.client();
    client.put(&key(100_000), b"first").unwrap();
    let lagging = 3;
    let n = write_past_a_stopped_store(&mut cluster, lagging);
    let leader = cluster.leader_store(1).unwrap();
    assert_ne!(leader, lagging);

    cluster.start_store(lagging).unwrap();
    assert_has_all(&cluster, lagging, n);
    cluster
        .wait_for_kv(lagging, &key(100_000), Some(b"first"), WAIT)
        .unwrap();
    assert!(snapshots_applied(&cluster, lagging) >= 1);
    assert!(
        cluster
            .store_ids()
            .iter()
            .map(|s| snapshots_sent(&cluster, *s))
            .sum::<u64>()
            >= 1
    );
    let t = cluster.transport().stats();
    assert!(t.snapshots >= 1 && t.snapshot_chunks > t.snapshots, "{t:?}");

    // Replication goes on from the snapshot's position.
    client.put(b"after", b"snapshot").unwrap();
    cluster
        .wait_for_kv(lagging, b"after", Some(b"snapshot"), WAIT)
        .unwrap();
}

#[test]
fn a_snapshot_transfer_broken_in_the_middle_is_retried_until_it_completes() {
    let mut cluster = Cluster::memory(3, 1, gc_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let lagging = 2;
    let mut n = write_past_a_stopped_store(&mut cluster, lagging);
    // The log may be compacted after a few dozen writes; the snapshot must
    // span more chunks than the transfers are broken after, whatever the
    // timing: 100 values of ~220 bytes are 5 or more 4 KiB chunks.
    let mut client = cluster.client();
    while n < 100 {
        client.put(&key(n), &value(n)).unwrap();
        n += 1;
    }
    cluster.transport().break_snapshots_after(Some(2));
    cluster.start_store(lagging).unwrap();
    assert!(
        wait_until(WAIT, || cluster.transport().stats().snapshot_failures >= 2),
        "no broken transfer: {:?}",
        cluster.transport().stats()
    );
    assert_eq!(snapshots_applied(&cluster, lagging), 0);
    let received = cluster
        .stats(lagging)
        .map_or(0, |s| s.snapshots.receive_failures.load(Ordering::Relaxed));
    assert!(received >= 2, "the receiver discarded the partial data");
    cluster.transport().break_snapshots_after(None);
    assert_has_all(&cluster, lagging, n);
    assert!(snapshots_applied(&cluster, lagging) >= 1);
}

fn leader_region(cluster: &MemCluster, region_id: u64) -> (u64, Region) {
    let leader = cluster.leader_store(region_id).unwrap();
    let region = cluster
        .engines(leader)
        .unwrap()
        .kv
        .get_region_state(region_id)
        .unwrap()
        .unwrap()
        .get_region()
        .clone();
    (leader, region)
}

/// Proposes a conf change on the leader until the leader's region shows it
/// (a conf change can be dropped by raft while another is pending).
fn change_peer(cluster: &MemCluster, change: ConfChangeType, peer: Peer) {
    let done = |r: &Region| {
        let present = r.get_peers().iter().any(|p| p.get_id() == peer.get_id());
        present == (change == ConfChangeType::AddNode)
    };
    let ok = wait_until(WAIT, || {
        cluster.wait_for_leaders(WAIT).unwrap();
        let (leader, region) = leader_region(cluster, 1);
        if done(&region) {
            return true;
        }
        let mut req = RaftCmdRequest::default();
        req.mut_header().set_region_id(1);
        req.mut_header().set_peer(
            kvproto_lite::util::find_peer(&region, leader)
                .unwrap()
                .clone(),
        );
        req.mut_header()
            .set_region_epoch(region.get_region_epoch().clone());
        let admin = req.mut_admin_request();
        admin.set_cmd_type(AdminCmdType::ChangePeer);
        admin.mut_change_peer().set_change_type(change);
        admin.mut_change_peer().set_peer(peer.clone());
        let _ = cluster.call(leader, req, Duration::from_secs(5));
        done(&leader_region(cluster, 1).1)
    });
    assert!(ok, "conf change {change:?} of {peer:?} did not apply");
}

#[test]
fn a_new_empty_peer_created_from_the_leaders_messages_is_filled_by_a_snapshot() {
    let mut cluster = Cluster::memory(3, 1, gc_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let mut client = cluster.client();
    for i in 0..50 {
        client.put(&key(i), &value(i)).unwrap();
    }
    // Take the replica on store 3 out of the region (it becomes a
    // tombstone there), so that store holds no live peer of the region.
    let (_, region) = leader_region(&cluster, 1);
    let old = kvproto_lite::util::find_peer(&region, 3).unwrap().clone();
    if cluster.leader_store(1) == Some(3) {
        // Leadership must be elsewhere for the removal.
        cluster.stop_store(3);
        cluster.wait_for_leaders(WAIT).unwrap();
        cluster.start_store(3).unwrap();
    }
    change_peer(&cluster, ConfChangeType::RemoveNode, old);
    assert!(wait_until(WAIT, || {
        cluster
            .engines(3)
            .and_then(|e| e.kv.get_region_state(1).ok().flatten())
            .is_some_and(|s| s.get_state() == PeerState::Tombstone)
    }));
    for i in 50..120 {
        client.put(&key(i), &value(i)).unwrap();
    }
    // A new peer on store 3: created empty from the leader's heartbeat,
    // filled by a snapshot, then replicated to.
    let mut new_peer = Peer::default();
    new_peer.set_id(1000);
    new_peer.set_store_id(3);
    change_peer(&cluster, ConfChangeType::AddNode, new_peer);
    assert_has_all(&cluster, 3, 120);
    assert!(snapshots_applied(&cluster, 3) >= 1);
    client.put(b"later", b"write").unwrap();
    cluster
        .wait_for_kv(3, b"later", Some(b"write"), WAIT)
        .unwrap();
    let state = cluster
        .engines(3)
        .unwrap()
        .kv
        .get_region_state(1)
        .unwrap()
        .unwrap();
    assert_eq!(state.get_state(), PeerState::Normal);
    assert!(state
        .get_region()
        .get_peers()
        .iter()
        .any(|p| p.get_id() == 1000));
}
