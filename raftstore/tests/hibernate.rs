//! Region hibernation in a three-store cluster: idle regions stop ticking,
//! wake when needed, and the known failure modes of hibernation (a
//! sleeping peer taken for down, a split missed by a store that was down, a
//! follower missing for a long time, an election after the leader died
//! while its region slept) do not happen.
//!
//! Every wait is on a condition with a generous deadline. "A long time" is
//! counted in store ticks (which keep running while regions sleep), never
//! slept through.

mod common;

use common::{assert_ok, fast_config, put_request, WAIT};

use cluster::{wait_until, Cluster, PartitionFilter};
use engine::{MemKvEngine, MemRaftLogEngine};
use kvproto_lite::raft_cmdpb::{AdminCmdType, RaftCmdRequest};
use raftstore::Config;

type MemCluster = Cluster<MemKvEngine, MemRaftLogEngine>;

/// Fast ticks, hibernation on, liveness checks every `check_ticks` store
/// ticks.
fn hibernating_config(check_ticks: u64) -> Config {
    Config {
        hibernate_regions: true,
        hibernate_check_leader_ticks: check_ticks,
        ..fast_config()
    }
}

/// So rare that no test run reaches one.
const NO_CHECKS: u64 = 1_000_000_000;

/// A key inside region `i` (0-based) of a cluster with `n` regions.
fn key_in(i: u64, n: u64, suffix: u64) -> Vec<u8> {
    let mut k = (i * (u64::MAX / n) + 1).to_be_bytes().to_vec();
    k.extend_from_slice(&suffix.to_be_bytes());
    k
}

/// Writes `key` = `value` through region `index`'s current leader and
/// returns the term the leader answered in.
fn put_at_leader(cluster: &MemCluster, index: usize, key: &[u8], value: &[u8]) -> u64 {
    let region = cluster.regions()[index].clone();
    let mut leader = None;
    assert!(
        wait_until(WAIT, || {
            leader = cluster.leader_store(region.get_id());
            leader.is_some()
        }),
        "region {} has no leader",
        region.get_id()
    );
    let leader = leader.unwrap();
    let resp = cluster
        .call(leader, put_request(&region, leader, key, value), WAIT)
        .unwrap();
    assert_ok(&resp);
    resp.get_header().get_current_term()
}

fn wait_hibernated(cluster: &MemCluster, regions: &[u64]) {
    assert!(
        wait_until(WAIT, || regions.iter().all(|r| cluster.is_hibernated(*r))),
        "regions {regions:?} did not all hibernate"
    );
}

/// Waits until every running store among `stores` counted `n` more store
/// ticks.
fn wait_store_ticks(cluster: &MemCluster, stores: &[u64], n: u64) {
    let start: Vec<u64> = stores
        .iter()
        .map(|s| cluster.awake_regions(*s).unwrap().store_ticks())
        .collect();
    assert!(
        wait_until(WAIT * 4, || stores.iter().zip(&start).all(|(s, t0)| {
            cluster.awake_regions(*s).unwrap().store_ticks() >= t0 + n
        })),
        "stores {stores:?} did not tick {n} times"
    );
}

fn wakes(cluster: &MemCluster, stores: &[u64]) -> u64 {
    stores
        .iter()
        .map(|s| {
            cluster
                .stats(*s)
                .unwrap()
                .wakes
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum()
}

fn split_request(cluster: &MemCluster, split_key: &[u8], new_region_id: u64) -> RaftCmdRequest {
    let region = cluster.regions()[0].clone();
    let mut req = RaftCmdRequest::default();
    req.mut_header().set_region_id(region.get_id());
    req.mut_header()
        .set_region_epoch(region.get_region_epoch().clone());
    let admin = req.mut_admin_request();
    admin.set_cmd_type(AdminCmdType::Split);
    admin.mut_split().set_split_key(split_key.to_vec());
    admin.mut_split().set_new_region_id(new_region_id);
    admin.mut_split().set_new_peer_ids(vec![
        new_region_id * 10 + 1,
        new_region_id * 10 + 2,
        new_region_id * 10 + 3,
    ]);
    req
}

#[test]
fn idle_regions_hibernate_and_are_not_ticked_while_asleep() {
    let mut cluster = Cluster::memory(3, 4, hibernating_config(NO_CHECKS)).unwrap();
    cluster.start().unwrap();
    for i in 0..4 {
        put_at_leader(&cluster, i, &key_in(i as u64, 4, 1), b"v");
    }
    wait_hibernated(&cluster, &[1, 2, 3, 4]);
    let readies: Vec<u64> = [1, 2, 3]
        .iter()
        .map(|s| cluster.stats(*s).unwrap().snapshot().readies)
        .collect();
    let woken = wakes(&cluster, &[1, 2, 3]);
    // Fifty tick periods: an awake region would heartbeat 25 times.
    wait_store_ticks(&cluster, &[1, 2, 3], 50);
    for (i, s) in [1, 2, 3].iter().enumerate() {
        assert!(cluster.awake_regions(*s).unwrap().is_empty(), "store {s}");
        assert_eq!(
            cluster.stats(*s).unwrap().snapshot().readies,
            readies[i],
            "store {s} did raft work for hibernated regions"
        );
    }
    assert_eq!(wakes(&cluster, &[1, 2, 3]), woken);
}

#[test]
fn a_write_wakes_a_hibernated_region_which_sleeps_again_afterwards() {
    let mut cluster = Cluster::memory(3, 2, hibernating_config(NO_CHECKS)).unwrap();
    cluster.start().unwrap();
    let term = put_at_leader(&cluster, 0, &key_in(0, 2, 1), b"one");
    wait_hibernated(&cluster, &[1, 2]);
    let mut client = cluster.client();
    client.put(&key_in(0, 2, 2), b"two").unwrap();
    assert_eq!(client.get(&key_in(0, 2, 2)).unwrap(), Some(b"two".to_vec()));
    for s in [1, 2, 3] {
        cluster
            .wait_for_kv(s, &key_in(0, 2, 2), Some(b"two"), WAIT)
            .unwrap();
    }
    wait_hibernated(&cluster, &[1, 2]);
    assert_eq!(put_at_leader(&cluster, 0, &key_in(0, 2, 3), b"three"), term);
}

#[test]
fn a_command_for_another_region_does_not_wake_a_hibernated_region() {
    let mut cluster = Cluster::memory(3, 4, hibernating_config(NO_CHECKS)).unwrap();
    cluster.start().unwrap();
    for i in 0..4 {
        put_at_leader(&cluster, i, &key_in(i as u64, 4, 1), b"v");
    }
    wait_hibernated(&cluster, &[1, 2, 3, 4]);
    let woken = wakes(&cluster, &[1, 2, 3]);
    // One command for a region no store has, broadcast to every peer of
    // every store (what a store-wide sweep does): each peer refuses it.
    for s in [1u64, 2, 3] {
        let router = cluster.router(s).unwrap();
        let (tx, rx) = raftstore::crossbeam_channel::unbounded();
        router.broadcast_normal(|| {
            let tx = tx.clone();
            let mut request = RaftCmdRequest::default();
            request.mut_header().set_region_id(999);
            raftstore::PeerMsg::RaftCommand(Box::new(raftstore::RaftCommand {
                request,
                callback: raftstore::Callback::new(move |resp| {
                    let _ = tx.send(resp);
                }),
            }))
        });
        for _ in 0..4 {
            let resp = rx.recv_timeout(WAIT).unwrap();
            assert!(resp.get_header().get_error().has_region_not_found());
        }
    }
    for s in [1, 2, 3] {
        assert!(cluster.awake_regions(s).unwrap().is_empty(), "store {s}");
    }
    assert_eq!(wakes(&cluster, &[1, 2, 3]), woken);
}

#[test]
fn regions_never_hibernate_when_hibernation_is_off() {
    let cfg = Config {
        hibernate_regions: false,
        ..fast_config()
    };
    let mut cluster = Cluster::memory(3, 2, cfg).unwrap();
    cluster.start().unwrap();
    put_at_leader(&cluster, 0, &key_in(0, 2, 1), b"v");
    wait_store_ticks(&cluster, &[1, 2, 3], 50);
    for s in [1, 2, 3] {
        assert_eq!(cluster.awake_regions(s).unwrap().ids(), vec![1, 2]);
        let stats = cluster.stats(s).unwrap();
        assert_eq!(
            stats
                .hibernations
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
}

/// TiKV #10017: a follower of a sleeping region answers no heartbeats; the
/// leader must not hold that against it when it wakes (no step-down by
/// check-quorum, no election, the write replicates to every store).
#[test]
fn a_hibernated_follower_is_not_taken_for_down_when_its_region_wakes() {
    let mut cluster = Cluster::memory(3, 1, hibernating_config(NO_CHECKS)).unwrap();
    cluster.start().unwrap();
    let term = put_at_leader(&cluster, 0, b"a", b"1");
    let leader = cluster.leader_store(1).unwrap();
    wait_hibernated(&cluster, &[1]);
    // Twenty election timeouts asleep.
    wait_store_ticks(&cluster, &[1, 2, 3], 200);
    assert!(cluster.is_hibernated(1), "nothing should wake the region");
    assert_eq!(put_at_leader(&cluster, 0, b"b", b"2"), term);
    assert_eq!(cluster.leader_store(1), Some(leader));
    for s in [1, 2, 3] {
        cluster.wait_for_kv(s, b"b", Some(b"2"), WAIT).unwrap();
    }
    // Still the same leader in the same term once the region is asleep
    // again: nobody was judged down or started an election.
    wait_hibernated(&cluster, &[1]);
    assert_eq!(put_at_leader(&cluster, 0, b"c", b"3"), term);
    assert_eq!(cluster.leader_store(1), Some(leader));
}

/// TiKV #6667: a region split off while a store was down gets its peer on
/// that store after the store restarts, without waiting for any liveness
/// check.
#[test]
fn a_region_split_while_a_store_was_down_is_created_there_after_restart() {
    let mut cluster = Cluster::memory(3, 1, hibernating_config(NO_CHECKS)).unwrap();
    cluster.start().unwrap();
    put_at_leader(&cluster, 0, b"a", b"left");
    wait_hibernated(&cluster, &[1]);
    let leader = cluster.leader_store(1).unwrap();
    let down = [1, 2, 3].into_iter().find(|s| *s != leader).unwrap();
    let up: Vec<u64> = [1, 2, 3].into_iter().filter(|s| *s != down).collect();
    cluster.stop_store(down);

    let resp = cluster
        .call(leader, split_request(&cluster, b"h", 100), WAIT)
        .unwrap();
    assert_ok(&resp);
    let mut client = cluster.client();
    client.put(b"z", b"right").unwrap();
    // The store stays down for a long time.
    wait_store_ticks(&cluster, &up, 100);

    cluster.start_store(down).unwrap();
    cluster
        .wait_for_kv(down, b"z", Some(b"right"), WAIT)
        .unwrap();
    cluster
        .wait_for_kv(down, b"a", Some(b"left"), WAIT)
        .unwrap();
    assert!(
        wait_until(WAIT, || cluster
            .router(down)
            .is_some_and(|r| r.mailbox(100).is_some())),
        "no peer of region 100 on store {down}"
    );
    wait_hibernated(&cluster, &[1, 100]);
}

/// TiKV #9022: a follower missing for a long time while its region took
/// writes (so the leader cannot sleep: the follower is behind) catches up
/// when it returns, and then the region hibernates.
#[test]
fn a_follower_missing_for_a_long_time_catches_up_when_it_returns() {
    let mut cluster = Cluster::memory(3, 1, hibernating_config(NO_CHECKS)).unwrap();
    cluster.start().unwrap();
    put_at_leader(&cluster, 0, b"k0", b"v0");
    wait_hibernated(&cluster, &[1]);
    let leader = cluster.leader_store(1).unwrap();
    let missing = [1, 2, 3].into_iter().find(|s| *s != leader).unwrap();
    let up: Vec<u64> = [1, 2, 3].into_iter().filter(|s| *s != missing).collect();
    cluster.stop_store(missing);
    let mut client = cluster.client();
    for i in 1..=30u32 {
        client
            .put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes())
            .unwrap();
    }
    wait_store_ticks(&cluster, &up, 200);
    cluster.start_store(missing).unwrap();
    for i in 0..=30u32 {
        cluster
            .wait_for_kv(
                missing,
                format!("k{i}").as_bytes(),
                Some(format!("v{i}").as_bytes()),
                WAIT,
            )
            .unwrap();
    }
    wait_hibernated(&cluster, &[1]);
}

/// TiKV #18886: when the leader's store dies while its regions sleep, the
/// followers wake (the store is reported unreachable) and elect a new
/// leader; writes continue.
#[test]
fn hibernated_regions_elect_a_new_leader_after_the_leader_store_dies() {
    let mut cluster = Cluster::memory(3, 2, hibernating_config(NO_CHECKS)).unwrap();
    cluster.start().unwrap();
    put_at_leader(&cluster, 0, &key_in(0, 2, 1), b"before");
    put_at_leader(&cluster, 1, &key_in(1, 2, 1), b"before");
    wait_hibernated(&cluster, &[1, 2]);
    let old = cluster.leader_store(1).unwrap();
    cluster.stop_store(old);
    assert!(
        wait_until(WAIT, || cluster.leader_store(1).is_some_and(|s| s != old)
            && cluster.leader_store(2).is_some_and(|s| s != old)),
        "no new leader without store {old}"
    );
    let mut client = cluster.client();
    client.put(&key_in(0, 2, 2), b"after").unwrap();
    client.put(&key_in(1, 2, 2), b"after").unwrap();
    assert_eq!(
        client.get(&key_in(0, 2, 1)).unwrap(),
        Some(b"before".to_vec())
    );
}

/// TiKV #18886 without any unreachable report: the leader is cut off while
/// its region sleeps; the followers' liveness checks wake them, they find
/// no leader and elect one among themselves.
#[test]
fn hibernated_followers_replace_a_cut_off_leader_after_their_liveness_check() {
    let mut cluster = Cluster::memory(3, 1, hibernating_config(20)).unwrap();
    cluster.start().unwrap();
    let term = put_at_leader(&cluster, 0, b"a", b"1");
    wait_hibernated(&cluster, &[1]);
    let old = cluster.leader_store(1).unwrap();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|s| *s != old).collect();
    cluster
        .transport()
        .add_filter(PartitionFilter::new(vec![vec![old], others.clone()]));
    let mut new = None;
    assert!(
        wait_until(WAIT, || {
            new = cluster.leader_store(1).filter(|s| *s != old);
            new.is_some()
        }),
        "the followers did not replace the cut-off leader"
    );
    let new = new.unwrap();
    let region = cluster.regions()[0].clone();
    let resp = cluster
        .call(new, put_request(&region, new, b"b", b"2"), WAIT)
        .unwrap();
    assert_ok(&resp);
    assert!(resp.get_header().get_current_term() > term);
    cluster.transport().clear_filters();
    for s in [1, 2, 3] {
        cluster.wait_for_kv(s, b"b", Some(b"2"), WAIT).unwrap();
    }
}

/// A liveness check with the leader alive wakes the region briefly and it
/// goes back to sleep with the same leader and term.
#[test]
fn a_liveness_check_with_a_live_leader_changes_nothing_and_the_region_sleeps_again() {
    let mut cluster = Cluster::memory(3, 1, hibernating_config(10)).unwrap();
    cluster.start().unwrap();
    let term = put_at_leader(&cluster, 0, b"a", b"1");
    let leader = cluster.leader_store(1).unwrap();
    wait_hibernated(&cluster, &[1]);
    let woken = wakes(&cluster, &[1, 2, 3]);
    assert!(
        wait_until(WAIT, || wakes(&cluster, &[1, 2, 3]) > woken),
        "no liveness check woke the region"
    );
    wait_hibernated(&cluster, &[1]);
    assert_eq!(cluster.leader_store(1), Some(leader));
    assert_eq!(put_at_leader(&cluster, 0, b"b", b"2"), term);
}

/// Election timeouts of a minute and heartbeats as rare (at 10 ms ticks):
/// within a test no follower times out into an election and no heartbeat
/// goes out, so whatever elects a leader or puts a region to sleep is the
/// first campaign after a start and the hibernation handshake.
fn no_timeouts_config() -> Config {
    Config {
        raft_election_timeout_ticks: 6000,
        raft_heartbeat_ticks: 5999,
        ..hibernating_config(NO_CHECKS)
    }
}

/// Engines shared by two clusters over the same stores: the second one
/// restarts what the first one wrote, with another config.
fn shared_memory_engines() -> impl Fn() -> cluster::EngineFactory<MemKvEngine, MemRaftLogEngine> {
    use engine::Engines;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let made: Arc<Mutex<HashMap<u64, Engines<MemKvEngine, MemRaftLogEngine>>>> = Arc::default();
    move || {
        let made = made.clone();
        Box::new(move |id| {
            Ok(made
                .lock()
                .unwrap()
                .entry(id)
                .or_insert_with(|| Engines::new(MemKvEngine::new(), MemRaftLogEngine::new()))
                .clone())
        })
    }
}

/// Runs `regions` regions on three stores until they sleep and returns
/// their leaders' stores, then restarts the stores (one by one) from the
/// same engines with [`no_timeouts_config`].
fn restart_without_timeouts(regions: usize) -> (MemCluster, Vec<u64>) {
    let engines = shared_memory_engines();
    let mut first =
        Cluster::with_factory(3, regions, hibernating_config(NO_CHECKS), engines(), None).unwrap();
    first.start().unwrap();
    for i in 0..regions {
        put_at_leader(&first, i, &key_in(i as u64, regions as u64, 1), b"v");
    }
    let ids: Vec<u64> = first.regions().iter().map(|r| r.get_id()).collect();
    wait_hibernated(&first, &ids);
    let leaders: Vec<u64> = ids
        .iter()
        .map(|id| first.leader_store(*id).unwrap())
        .collect();
    first.shutdown();
    drop(first);

    let mut second =
        Cluster::with_factory(3, regions, no_timeouts_config(), engines(), None).unwrap();
    second.start().unwrap();
    (second, leaders)
}

#[test]
fn a_restarted_region_elects_its_last_leader_at_once_without_an_election_timeout() {
    let (cluster, leaders_before) = restart_without_timeouts(6);
    // No follower times out within the wait: only the peer that led
    // before the stop campaigns (at start, and again as the other stores
    // come up).
    cluster.wait_for_leaders(WAIT).unwrap();
    let leaders_after: Vec<u64> = cluster
        .regions()
        .iter()
        .map(|r| cluster.leader_store(r.get_id()).unwrap())
        .collect();
    assert_eq!(leaders_after, leaders_before);
}

#[test]
fn a_newly_elected_region_sleeps_without_waiting_for_a_heartbeat() {
    let (cluster, _) = restart_without_timeouts(4);
    cluster.wait_for_leaders(WAIT).unwrap();
    // The followers learn that the election's entry is committed from the
    // hibernate request itself (commits are not broadcast and no heartbeat
    // goes out), so the region sleeps a round trip after its leader
    // applied that entry.
    let ids: Vec<u64> = cluster.regions().iter().map(|r| r.get_id()).collect();
    wait_hibernated(&cluster, &ids);
    let key = key_in(2, 4, 9);
    put_at_leader(&cluster, 2, &key, b"after");
    wait_hibernated(&cluster, &ids);
}

#[test]
fn a_write_to_a_sleeping_region_wakes_it_without_a_heartbeat_round() {
    use kvproto_lite::eraftpb::MessageType;
    use kvproto_lite::raft_serverpb::ExtraMessageType;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let (cluster, _) = restart_without_timeouts(2);
    cluster.wait_for_leaders(WAIT).unwrap();
    let ids: Vec<u64> = cluster.regions().iter().map(|r| r.get_id()).collect();
    wait_hibernated(&cluster, &ids);
    // Counts (and passes on) every heartbeat and append of region 0.
    let region = ids[0];
    let heartbeats = Arc::new(AtomicUsize::new(0));
    let appends = Arc::new(AtomicUsize::new(0));
    let (h, a) = (heartbeats.clone(), appends.clone());
    cluster
        .transport()
        .add_filter(cluster::PredicateFilter::new(
            cluster::FilterAction::Drop,
            move |_, _, m| {
                // Hibernate requests and answers travel as extra messages.
                if m.get_region_id() == region && m.get_extra() == ExtraMessageType::NoExtra {
                    match m.get_message().get_msg_type() {
                        MessageType::MsgHeartbeat => {
                            h.fetch_add(1, Ordering::SeqCst);
                        }
                        MessageType::MsgAppend => {
                            a.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                }
                false
            },
        ));
    let key = key_in(0, 2, 7);
    put_at_leader(&cluster, 0, &key, b"woken");
    for s in [1, 2, 3] {
        cluster.wait_for_kv(s, &key, Some(b"woken"), WAIT).unwrap();
    }
    wait_hibernated(&cluster, &ids);
    // The write's own append woke both followers (no heartbeat is due
    // within the test): one append each, and no wake-up heartbeat whose
    // answer would have made raft send a second append.
    assert_eq!(heartbeats.load(Ordering::SeqCst), 0);
    assert_eq!(appends.load(Ordering::SeqCst), 2);
}
