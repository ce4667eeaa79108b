//! ReadIndex, lease and follower reads through a running cluster.

use std::time::Duration;

use client::{get_request, ReadMode};
use cluster::{wait_until, Cluster};
use raftstore::Config;

const TIMEOUT: Duration = Duration::from_secs(30);

fn started(cfg: Config) -> Cluster<engine::MemKvEngine, engine::MemRaftLogEngine> {
    let mut cluster = Cluster::memory(3, 1, cfg).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(TIMEOUT).unwrap();
    cluster
}

#[test]
fn every_read_mode_sees_the_last_acknowledged_write() {
    let cluster = started(Config::default());
    let mut c = cluster.client();
    for (i, mode) in [
        ReadMode::Log,
        ReadMode::ReadIndex,
        ReadMode::Lease,
        ReadMode::Follower,
    ]
    .into_iter()
    .enumerate()
    {
        let value = format!("v{i}").into_bytes();
        c.put(b"k", &value).unwrap();
        for _ in 0..5 {
            assert_eq!(
                c.get_with(b"k", mode).unwrap(),
                Some(value.clone()),
                "{mode:?}"
            );
        }
        assert_eq!(c.get_with(b"absent", mode).unwrap(), None, "{mode:?}");
    }
}

#[test]
fn a_follower_answers_a_follower_read_and_refuses_a_read_index_read() {
    let cluster = started(Config::default());
    let mut c = cluster.client();
    c.put(b"k", b"v").unwrap();
    let region = cluster.regions()[0].clone();
    let leader = cluster.leader_store(region.get_id()).unwrap();
    let follower = *cluster.store_ids().iter().find(|s| **s != leader).unwrap();
    let peer = kvproto_lite::util::find_peer(&region, follower)
        .unwrap()
        .clone();
    let read = |mode| {
        let mut cmd = kvproto_lite::util::new_cmd_request(&region, peer.clone());
        cmd.mut_header().set_read_mode(mode);
        cmd.mut_requests().push(get_request(b"k".to_vec()));
        cluster.call(follower, cmd, TIMEOUT).unwrap()
    };
    let resp = read(ReadMode::Follower);
    assert!(!resp.get_header().has_error(), "{resp:?}");
    assert_eq!(resp.get_responses()[0].get_get().get_value(), b"v");
    let refused = read(ReadMode::ReadIndex);
    assert!(
        refused.get_header().get_error().has_not_leader(),
        "{refused:?}"
    );
}

#[test]
fn lease_reads_are_served_off_the_raft_thread_once_a_read_index_renewed_the_lease() {
    let cluster = started(Config::default());
    let mut c = cluster.client();
    c.put(b"k", b"v").unwrap();
    let region_id = cluster.regions()[0].get_id();
    let leader = cluster.leader_store(region_id).unwrap();
    let reader = cluster.local_reader(leader).unwrap();
    // Reads until some is served locally (the first ones renew the lease
    // through ReadIndex); every one sees the write.
    assert!(wait_until(TIMEOUT, || {
        assert_eq!(
            c.get_with(b"k", ReadMode::Lease).unwrap(),
            Some(b"v".to_vec())
        );
        reader.served() > 0
    }));
    c.put(b"k", b"w").unwrap();
    assert_eq!(
        c.get_with(b"k", ReadMode::Lease).unwrap(),
        Some(b"w".to_vec())
    );
}

#[test]
fn a_read_wakes_a_hibernated_region() {
    let cfg = Config {
        hibernate_regions: true,
        raft_base_tick_interval_ms: 10,
        raft_lease_max_drift_ms: 10,
        ..Config::default()
    };
    let cluster = started(cfg);
    let mut c = cluster.client();
    c.put(b"k", b"v").unwrap();
    let region_id = cluster.regions()[0].get_id();
    for mode in [ReadMode::ReadIndex, ReadMode::Lease, ReadMode::Follower] {
        assert!(wait_until(TIMEOUT, || cluster.is_hibernated(region_id)));
        assert_eq!(
            c.get_with(b"k", mode).unwrap(),
            Some(b"v".to_vec()),
            "{mode:?}"
        );
    }
}
