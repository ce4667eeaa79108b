//! Planned and unplanned stops of a store, with time measured in raft ticks.
//!
//! The stores here never tick on their own (the tick interval is an hour):
//! the test sends every `PeerMsg::Tick` itself. An election needs a
//! follower to see an election timeout's worth of ticks, so a leader that
//! appears on a store that was never ticked can only come from a
//! leadership transfer, and the write gap of a stop can be counted as the
//! ticks the surviving stores needed before every region took writes
//! again. No assertion depends on wall-clock time.

mod common;

use std::time::Duration;

use cluster::{wait_until, Cluster};
use engine::{Engines, MemKvEngine, MemRaftLogEngine};
use kvproto_lite::metapb;
use raftstore::{
    bootstrap_store, create_raft_batch_system, initial_regions, Config, Error, NoTransport, PeerMsg,
};

use common::{put_request, WAIT};

type MemCluster = Cluster<MemKvEngine, MemRaftLogEngine>;

/// Default config, but the store's timer never ticks in a test's lifetime.
fn manual_tick_config() -> Config {
    Config {
        raft_base_tick_interval_ms: 3_600_000,
        ..Config::default()
    }
}

/// One tick to every peer of `stores`.
fn tick(cluster: &MemCluster, stores: &[u64]) {
    for store in stores {
        if let Some(router) = cluster.router(*store) {
            router.broadcast_normal(|| PeerMsg::Tick);
        }
    }
}

/// Ticks `stores` until `done` holds; returns how many ticks that took (0:
/// it held at once). After each tick the cluster settles (every message
/// the tick caused, and every answer to it, is handled) before `done` is
/// asked again: a tick is a unit of raft time only if the messages of one
/// tick do not race with the next (a burst of ticks queued faster than the
/// stores handle them would expire election timeouts before a heartbeat
/// could arrive).
fn ticks_until(
    cluster: &MemCluster,
    stores: &[u64],
    max: usize,
    mut done: impl FnMut() -> bool,
) -> usize {
    for ticks in 0..=max {
        if done() {
            return ticks;
        }
        tick(cluster, stores);
        assert!(cluster.wait_idle(WAIT), "the cluster did not settle");
    }
    panic!("condition still false after {max} ticks");
}

/// Writes `key` = `value` to every region in `regions` through its leader;
/// `false` at the first region without a leader or refusing the write.
fn try_write(cluster: &MemCluster, regions: &[u64], key: &[u8], value: &[u8]) -> bool {
    regions.iter().all(|id| {
        let Some(leader) = cluster.leader_store(*id) else {
            return false;
        };
        let region = region(cluster, *id);
        let k = key_in(&region, key);
        let req = put_request(&region, leader, &k, value);
        cluster
            .call(leader, req, WAIT)
            .is_ok_and(|resp| !resp.get_header().has_error())
    })
}

/// A key inside `region`: its start key, a zero byte, then `suffix`.
fn key_in(region: &metapb::Region, suffix: &[u8]) -> Vec<u8> {
    let mut key = region.get_start_key().to_vec();
    key.push(0);
    key.extend_from_slice(suffix);
    key
}

fn region(cluster: &MemCluster, id: u64) -> metapb::Region {
    cluster
        .regions()
        .iter()
        .find(|r| r.get_id() == id)
        .cloned()
        .unwrap()
}

/// Whether `store` has applied everything the leader of each region had
/// committed.
fn caught_up(cluster: &MemCluster, store: u64, regions: &[u64]) -> bool {
    regions.iter().all(|id| {
        let Some(leader) = cluster.leader_store(*id) else {
            return false;
        };
        let leader = cluster.stats(leader).unwrap().region_progress(*id);
        let mine = cluster.stats(store).unwrap().region_progress(*id);
        matches!((mine, leader), (Some(m), Some(l)) if m.caught_up_with(&l))
    })
}

#[test]
fn planned_restart_costs_no_election_timeout_and_an_unplanned_stop_does() {
    let cfg = manual_tick_config();
    let mut cluster = Cluster::memory(3, 3, cfg.clone()).unwrap();
    cluster.start().unwrap();
    let regions: Vec<u64> = cluster.regions().iter().map(|r| r.get_id()).collect();

    // Nothing has ticked: no region has a leader, and the wait says which.
    match cluster
        .store_meta(2)
        .unwrap()
        .wait_for_leaders(Duration::ZERO)
    {
        Err(Error::NoLeader(missing)) => assert_eq!(missing, regions),
        other => panic!("expected NoLeader, got {other:?}"),
    }

    // Only store 1 ticks, so its peers time out first and lead every region.
    ticks_until(&cluster, &[1], 500, || {
        regions.iter().all(|r| cluster.leader_store(*r) == Some(1))
    });
    for store in [1, 2, 3] {
        cluster
            .store_meta(store)
            .unwrap()
            .wait_for_leaders(WAIT)
            .unwrap();
        let info = cluster.store_meta(store).unwrap().leader_info(regions[0]);
        let info = info.unwrap();
        assert_eq!((info.leader_store_id, info.is_leader), (1, store == 1));
    }
    assert!(try_write(&cluster, &regions, b"a", b"1"));

    // Planned stop of store 1: every leadership is handed over first.
    let report = cluster.stop_store_gracefully(1, WAIT).unwrap();
    assert_eq!(report.handed_off, regions);
    assert!(report.still_leading.is_empty(), "{report:?}");
    // Stores 2 and 3 have never been ticked, so no election timeout can
    // have passed there: only the transfer explains these leaders.
    for r in &regions {
        let leader = cluster.leader_store(*r);
        assert!(matches!(leader, Some(2 | 3)), "region {r}: {leader:?}");
    }
    let planned_gap = ticks_until(&cluster, &[2, 3], 500, || {
        try_write(&cluster, &regions, b"b", b"planned")
    });

    // Restart store 1: it catches up with what it missed, which its
    // per-region progress shows.
    cluster.start_store(1).unwrap();
    ticks_until(&cluster, &[1, 2, 3], 500, || {
        caught_up(&cluster, 1, &regions)
    });
    for r in &regions {
        let key = key_in(&region(&cluster, *r), b"b");
        assert_eq!(
            cluster.kv_get(1, &key).unwrap().as_deref(),
            Some(&b"planned"[..])
        );
    }

    // Unplanned stop. First a write to every region, and no tick after it:
    // once a follower has the write's entry it has just heard from its
    // leader, so its election clock is at zero.
    assert!(try_write(&cluster, &regions, b"c", b"2"));
    assert!(wait_until(WAIT, || regions.iter().all(|r| {
        let leader = cluster.leader_store(*r).unwrap();
        let last = cluster
            .stats(leader)
            .unwrap()
            .region_progress(*r)
            .unwrap()
            .last_index;
        [1, 2, 3].iter().all(|s| {
            cluster
                .stats(*s)
                .unwrap()
                .region_progress(*r)
                .unwrap()
                .last_index
                == last
        })
    })));
    let victim = cluster.leader_store(regions[0]).unwrap();
    let led: Vec<u64> = regions
        .iter()
        .copied()
        .filter(|r| cluster.leader_store(*r) == Some(victim))
        .collect();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|s| *s != victim).collect();
    cluster.stop_store(victim);
    // The followers were told the victim's store is unreachable: they name
    // no leader, so a client backs off instead of chasing the dead one.
    for r in &led {
        assert_eq!(cluster.leader_store(*r), None);
        for s in &others {
            let resp = cluster
                .call(
                    *s,
                    put_request(
                        &region(&cluster, *r),
                        *s,
                        &key_in(&region(&cluster, *r), b"x"),
                        b"x",
                    ),
                    WAIT,
                )
                .unwrap();
            let err = resp.get_header().get_error();
            assert!(err.has_not_leader(), "{err:?}");
            assert!(!err.get_not_leader().has_leader(), "{err:?}");
            // The answer comes from the command's handling; the store's
            // published view follows at the end of the same poll round.
            let meta = cluster.store_meta(*s).unwrap();
            assert!(
                wait_until(WAIT, || !meta.leader_info(*r).unwrap().has_leader()),
                "{:?}",
                meta.leader_info(*r)
            );
        }
    }
    let unplanned_gap = ticks_until(&cluster, &others, 500, || {
        try_write(&cluster, &led, b"d", b"unplanned")
    });

    eprintln!(
        "write gap in ticks: planned restart {planned_gap}, unplanned stop {unplanned_gap} \
         (election timeout {} ticks)",
        cfg.raft_election_timeout_ticks
    );
    assert_eq!(planned_gap, 0);
    assert!(
        unplanned_gap >= cfg.raft_election_timeout_ticks,
        "an election needs a full election timeout: {unplanned_gap}"
    );
    cluster.shutdown();
}

#[test]
fn graceful_shutdown_reports_regions_it_could_not_hand_off() {
    // A single voter has nobody to hand leadership to.
    let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
    let regions = initial_regions(&[1], &[b"m".to_vec()]).unwrap();
    bootstrap_store(&engines, 1, &regions).unwrap();
    let (_router, mut system) =
        create_raft_batch_system::<MemKvEngine, MemRaftLogEngine>(&common::fast_config());
    let mut store = metapb::Store::default();
    store.set_id(1);
    system
        .spawn(store, engines, NoTransport, &raftstore::discard_logger())
        .unwrap();
    system.wait_for_leaders(WAIT).unwrap();
    assert!(system.leader_info(1).unwrap().is_leader);
    let report = system.shutdown_gracefully(Duration::from_millis(200));
    assert!(report.handed_off.is_empty(), "{report:?}");
    assert_eq!(report.still_leading, vec![1, 2]);
}
