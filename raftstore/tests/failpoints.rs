//! Snapshot tests driven by fail points (the `fail` crate, compiled in for
//! this crate's tests). Each test holds a `FailScenario`, so they run one
//! at a time: fail points are process-wide.
//!
//! Destroying a removed peer is tested the same way: the store stops after
//! the tombstone is durable and before the peer's raft log is cleaned.
//!
//! The crash tests copy a durable store's directory at the chosen step of
//! applying a snapshot, while the store is stopped there: the copy is what a
//! process killed at that step leaves on disk (every synced write, nothing
//! after it). A cluster restarted from the copies must recover every
//! acknowledged write.

mod common;

use common::{fast_config, gc_config, key, truncated_index, value, WAIT};

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use cluster::Cluster;
use engine::{FjallKvEngine, KvEngine, RaftEngineLogEngine, RaftLogEngine};

/// Stops `lagging` and writes until the other stores compacted their logs
/// past it; returns the number of keys written.
fn write_past<EK: KvEngine, ER: RaftLogEngine>(c: &mut Cluster<EK, ER>, lagging: u64) -> u64 {
    let last_before = c
        .stats(lagging)
        .and_then(|s| s.region_progress(1))
        .map_or(0, |p| p.last_index);
    c.stop_store(lagging);
    let live: Vec<u64> = c
        .store_ids()
        .iter()
        .copied()
        .filter(|s| *s != lagging)
        .collect();
    let mut client = c.client();
    let mut n = 0;
    while !live
        .iter()
        .all(|s| truncated_index(c, *s, 1) > last_before + 1)
    {
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
fn a_failed_snapshot_generation_is_retried() {
    let scenario = fail::FailScenario::setup();
    fail::cfg("snapshot_generate", "2*return").unwrap();
    let mut cluster = Cluster::memory(3, 1, gc_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let n = write_past(&mut cluster, 3);
    cluster.start_store(3).unwrap();
    for i in 0..n {
        cluster
            .wait_for_kv(3, &key(i), Some(&value(i)), WAIT)
            .unwrap();
    }
    let failures: u64 = cluster
        .store_ids()
        .iter()
        .filter_map(|s| cluster.stats(*s))
        .map(|s| s.snapshots.generate_failures.load(Ordering::Relaxed))
        .sum();
    assert_eq!(failures, 2);
    scenario.teardown();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            // A file the engine deletes meanwhile (an obsolete segment) is
            // not needed by a restart.
            let _ = std::fs::copy(&path, &target);
        }
    }
}

/// Kills store 3 (by copying its directory) at `fail_point` while it
/// applies a snapshot, restarts the whole cluster from the copies, and
/// checks that store 3 recovers every acknowledged write. Returns the
/// crashed store's (KV truncated index, raft last index) as found on disk.
fn crash_while_applying_a_snapshot(fail_point: &str) -> (u64, u64) {
    let scenario = fail::FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    let image = root.path().join("image");
    let mut cluster = Cluster::durable_in(&run, 3, 1, gc_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let n = write_past(&mut cluster, 3);

    let copied = Arc::new(Mutex::new(false));
    {
        let (copied, from, to) = (copied.clone(), run.join("store-3"), image.join("store-3"));
        fail::cfg_callback(fail_point, move || {
            let mut done = copied.lock().unwrap();
            if !*done {
                copy_dir(&from, &to);
                *done = true;
            }
        })
        .unwrap();
    }
    cluster.start_store(3).unwrap();
    assert!(
        cluster::wait_until(WAIT, || *copied.lock().unwrap()),
        "no snapshot was applied"
    );
    fail::remove(fail_point);
    for i in 0..n {
        cluster
            .wait_for_kv(3, &key(i), Some(&value(i)), WAIT)
            .unwrap();
    }
    cluster.shutdown();
    drop(cluster);
    for s in [1, 2] {
        copy_dir(
            &run.join(format!("store-{s}")),
            &image.join(format!("store-{s}")),
        );
    }

    let on_disk = {
        let base: PathBuf = image.join("store-3");
        let kv = FjallKvEngine::open(base.join("kv")).unwrap();
        let raft = RaftEngineLogEngine::open(base.join("raft")).unwrap();
        let truncated = kv
            .get_apply_state(1)
            .unwrap()
            .map_or(0, |s| s.get_truncated_state().get_index());
        let last = raft
            .get_raft_state(1)
            .unwrap()
            .map_or(0, |s| s.get_last_index());
        (truncated, last)
    };

    let mut restarted = Cluster::durable_in(&image, 3, 1, gc_config()).unwrap();
    restarted.start().unwrap();
    restarted.wait_for_leaders(WAIT).unwrap();
    for i in 0..n {
        restarted
            .wait_for_kv(3, &key(i), Some(&value(i)), WAIT)
            .unwrap();
    }
    let mut client = restarted.client();
    client.put(b"after", b"restart").unwrap();
    restarted
        .wait_for_kv(3, b"after", Some(b"restart"), WAIT)
        .unwrap();
    restarted.shutdown();
    scenario.teardown();
    on_disk
}

#[test]
fn a_store_killed_before_the_snapshot_kv_write_restarts_in_the_old_state_and_catches_up() {
    let (truncated, last) = crash_while_applying_a_snapshot("snapshot_apply_before_kv_write");
    assert!(
        truncated <= last,
        "old state: truncated {truncated}, last {last}"
    );
}

#[test]
fn a_store_killed_between_the_snapshot_kv_write_and_its_raft_state_restarts_in_the_new_state() {
    let (truncated, last) = crash_while_applying_a_snapshot("snapshot_apply_after_kv_write");
    // The KV engine has the snapshot, the raft log does not: the restart
    // repairs the log (see PeerStorage::new) instead of refusing to start.
    assert!(
        truncated > last,
        "new KV state: truncated {truncated}, last {last}"
    );
}

/// A store crashed after a removed peer's tombstone was synced and before
/// its raft log was cleaned restarts: the peer stays destroyed, its data
/// gone, and the leftover log is cleaned at the start.
#[test]
fn a_store_crashed_between_a_tombstone_and_the_log_cleaning_restarts_clean() {
    use kvproto_lite::eraftpb::ConfChangeType;
    use kvproto_lite::raft_serverpb::PeerState;
    use kvproto_lite::util;

    let scenario = fail::FailScenario::setup();
    fail::cfg("peer_destroyed_before_log_clean", "return").unwrap();
    let mut cluster = Cluster::memory(3, 1, fast_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let region_id = cluster.regions()[0].get_id();
    let leader = cluster.leader_store(region_id).unwrap();
    let victim = *cluster.store_ids().iter().find(|s| **s != leader).unwrap();
    let mut client = cluster.client();
    client.put(&key(1), &value(1)).unwrap();
    cluster
        .wait_for_kv(victim, &key(1), Some(&value(1)), WAIT)
        .unwrap();
    let region = cluster
        .engines(leader)
        .unwrap()
        .kv
        .get_region_state(region_id)
        .unwrap()
        .unwrap()
        .get_region()
        .clone();
    let leader_peer = util::find_peer(&region, leader).unwrap().clone();
    let victim_peer = util::find_peer(&region, victim).unwrap().clone();
    let cmd = util::new_change_peer_request(
        &region,
        leader_peer,
        vec![util::change_peer(ConfChangeType::RemoveNode, victim_peer)],
    );
    let resp = cluster.call(leader, cmd, WAIT).unwrap();
    assert!(!resp.get_header().has_error(), "{resp:?}");
    let engines = cluster.engines(victim).unwrap().clone();
    let tombstoned = || {
        matches!(engines.kv.get_region_state(region_id),
            Ok(Some(s)) if s.get_state() == PeerState::Tombstone)
    };
    assert!(cluster::wait_until(WAIT, tombstoned));
    // Stopped at the fail point: the log is still there.
    assert!(engines.raft.get_raft_state(region_id).unwrap().is_some());
    cluster.stop_store(victim);
    engines.kv.crash();
    engines.raft.crash();
    fail::remove("peer_destroyed_before_log_clean");
    cluster.start_store(victim).unwrap();
    assert!(tombstoned());
    assert!(engines.raft.get_raft_state(region_id).unwrap().is_none());
    assert_eq!(engines.kv.get(&key(1)).unwrap(), None);
    assert!(cluster.router(victim).unwrap().mailbox(region_id).is_none());
    cluster.shutdown();
    scenario.teardown();
}
