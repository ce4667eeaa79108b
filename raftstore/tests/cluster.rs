//! Integration tests of multi-region stores in one process.
//!
//! Every wait is on a condition with a generous deadline; nothing sleeps and
//! hopes.

mod common;

use common::{assert_ok, fast_config, put_request, WAIT};

use std::time::Duration;

use cluster::{wait_until, Cluster, PartitionFilter};
use kvproto_lite::raft_cmdpb::RaftCmdRequest;
use raftstore::Config;

/// A key inside region `i` (0-based) of a cluster with `n` regions.
fn key_in(i: u64, n: u64, suffix: u64) -> Vec<u8> {
    let mut k = (i * (u64::MAX / n) + 1).to_be_bytes().to_vec();
    k.extend_from_slice(&suffix.to_be_bytes());
    k
}

#[test]
fn every_region_elects_a_leader_on_three_stores() {
    let mut cluster = Cluster::memory(3, 8, fast_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    cluster.shutdown();
}

#[test]
fn writes_replicate_to_every_store() {
    let mut cluster = Cluster::memory(3, 4, fast_config()).unwrap();
    cluster.start().unwrap();
    let mut client = cluster.client();
    for i in 0u64..40 {
        client
            .put(&key_in(i % 4, 4, i), format!("v{i}").as_bytes())
            .unwrap();
    }
    for i in 0u64..40 {
        let key = key_in(i % 4, 4, i);
        for store in [1, 2, 3] {
            cluster
                .wait_for_kv(store, &key, Some(format!("v{i}").as_bytes()), WAIT)
                .unwrap();
        }
        assert_eq!(
            client.get(&key).unwrap(),
            Some(format!("v{i}").into_bytes())
        );
    }
    client.delete(&key_in(0, 4, 0)).unwrap();
    assert_eq!(client.get(&key_in(0, 4, 0)).unwrap(), None);
    for store in [1, 2, 3] {
        cluster
            .wait_for_kv(store, &key_in(0, 4, 0), None, WAIT)
            .unwrap();
    }
}

#[test]
fn killing_the_leader_store_elects_a_new_leader_and_writes_continue() {
    let mut cluster = Cluster::memory(3, 2, fast_config()).unwrap();
    cluster.start().unwrap();
    let mut client = cluster.client();
    client.put(&key_in(0, 2, 1), b"before").unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let old = cluster.leader_store(1).unwrap();
    cluster.stop_store(old);
    client.put(&key_in(0, 2, 2), b"after").unwrap();
    let new = cluster.leader_store(1).unwrap();
    assert_ne!(new, old);
    assert_eq!(
        client.get(&key_in(0, 2, 1)).unwrap(),
        Some(b"before".to_vec())
    );
    assert_eq!(
        client.get(&key_in(0, 2, 2)).unwrap(),
        Some(b"after".to_vec())
    );
}

#[test]
fn partitioned_minority_cannot_commit_and_catches_up_after_healing() {
    let mut cluster = Cluster::memory(3, 1, fast_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let region = cluster.regions()[0].clone();
    let leader = cluster.leader_store(1).unwrap();
    let minority = *cluster.store_ids().iter().find(|s| **s != leader).unwrap();
    let majority: Vec<u64> = cluster
        .store_ids()
        .iter()
        .copied()
        .filter(|s| *s != minority)
        .collect();
    cluster
        .transport()
        .add_filter(PartitionFilter::new(vec![vec![minority], majority.clone()]));

    // The majority keeps committing.
    let mut client = cluster.client();
    client.put(b"\x01key", b"majority").unwrap();
    for s in &majority {
        cluster
            .wait_for_kv(*s, b"\x01key", Some(b"majority"), WAIT)
            .unwrap();
    }
    // The minority store cannot take writes: it is not the leader and
    // pre-vote keeps it from becoming one without a majority.
    let resp = cluster
        .call(
            minority,
            put_request(&region, minority, b"\x01lost", b"x"),
            WAIT,
        )
        .unwrap();
    assert!(
        resp.get_header().get_error().has_not_leader(),
        "{:?}",
        resp.get_header()
    );
    assert_eq!(cluster.kv_get(minority, b"\x01key").unwrap(), None);

    cluster.transport().clear_filters();
    cluster
        .wait_for_kv(minority, b"\x01key", Some(b"majority"), WAIT)
        .unwrap();
    client.put(b"\x01key2", b"healed").unwrap();
    for s in cluster.store_ids().to_vec() {
        cluster
            .wait_for_kv(s, b"\x01key2", Some(b"healed"), WAIT)
            .unwrap();
    }
}

#[test]
fn restarted_durable_store_recovers_and_catches_up() {
    let mut cluster = Cluster::durable(3, 2, fast_config()).unwrap();
    cluster.start().unwrap();
    let mut client = cluster.client();
    for i in 0..20u64 {
        client.put(&key_in(i % 2, 2, i), b"one").unwrap();
    }
    for i in 0..20u64 {
        cluster
            .wait_for_kv(3, &key_in(i % 2, 2, i), Some(b"one"), WAIT)
            .unwrap();
    }
    cluster.stop_store(3);
    for i in 0..20u64 {
        client.put(&key_in(i % 2, 2, i), b"two").unwrap();
    }
    cluster.start_store(3).unwrap();
    for i in 0..20u64 {
        cluster
            .wait_for_kv(3, &key_in(i % 2, 2, i), Some(b"two"), WAIT)
            .unwrap();
    }
    // Restart everything: every region comes back from the engines alone.
    cluster.shutdown();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    assert_eq!(client.get(&key_in(1, 2, 1)).unwrap(), Some(b"two".to_vec()));
}

#[test]
fn a_thousand_regions_on_three_stores_all_serve_writes() {
    let n = 1000u64;
    let cfg = Config {
        raft_base_tick_interval_ms: 20,
        ..Config::default()
    };
    let mut cluster = Cluster::memory(3, n as usize, cfg).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(Duration::from_secs(120)).unwrap();
    // Proposals to every region in flight at once, then every answer.
    let pending: Vec<_> = cluster
        .regions()
        .iter()
        .enumerate()
        .map(|(i, region)| {
            let store = cluster.leader_store(region.get_id()).unwrap();
            let key = key_in(i as u64, n, 7);
            cluster
                .send_command(store, put_request(region, store, &key, b"v"))
                .unwrap()
        })
        .collect();
    // Leadership may still move under this load (debug build, 2 cores): a
    // command that met a leader change is retried through the client,
    // which follows NotLeader hints.
    let mut client = cluster.client();
    for (i, rx) in pending.into_iter().enumerate() {
        let resp = rx.recv_timeout(WAIT).unwrap();
        if resp.get_header().has_error() {
            client.put(&key_in(i as u64, n, 7), b"v").unwrap();
        }
    }
    for i in 0..n {
        for s in [1, 2, 3] {
            cluster
                .wait_for_kv(s, &key_in(i, n, 7), Some(b"v"), WAIT)
                .unwrap();
        }
    }
    let stats = cluster.stats(1).unwrap().snapshot();
    assert!(stats.log_syncs < stats.readies, "group commit: {stats:?}");
}

#[test]
fn log_is_compacted_once_every_follower_has_it() {
    let cfg = Config {
        raft_log_gc_threshold: 10,
        raft_log_gc_tick_interval: 2,
        ..fast_config()
    };
    let mut cluster = Cluster::memory(3, 1, cfg).unwrap();
    cluster.start().unwrap();
    let mut client = cluster.client();
    for i in 0..60u64 {
        client.put(&i.to_be_bytes(), b"x").unwrap();
    }
    for s in [1, 2, 3] {
        assert!(
            wait_until(WAIT, || {
                cluster
                    .engines(s)
                    .and_then(|e| engine::RaftLogEngine::first_index(&e.raft, 1))
                    .is_some_and(|first| first > 30)
            }),
            "store {s} never compacted its log"
        );
    }
    // Data is intact and the region keeps working.
    client.put(b"after-gc", b"y").unwrap();
    assert_eq!(
        client.get(&5u64.to_be_bytes()).unwrap(),
        Some(b"x".to_vec())
    );
}

#[test]
fn store_creates_a_peer_only_for_initial_messages_of_unknown_regions_in_a_free_range() {
    use kvproto_lite::eraftpb::MessageType;
    use kvproto_lite::raft_serverpb::RaftMessage;

    let mut cluster = Cluster::memory(3, 1, fast_config()).unwrap();
    cluster.start().unwrap();
    // Store 4 holds no region: every key range is free there. Stores 1-3
    // hold region 1, which covers every key.
    let free = cluster.add_store().unwrap();
    let msg =
        |to_store: u64, region_id: u64, msg_type: MessageType, commit: u64, tombstone: bool| {
            let mut m = RaftMessage::default();
            m.set_region_id(region_id);
            m.mut_from_peer().set_id(9002);
            m.mut_from_peer().set_store_id(2);
            m.mut_to_peer().set_id(9001);
            m.mut_to_peer().set_store_id(to_store);
            m.set_is_tombstone(tombstone);
            m.set_start_key(b"k".to_vec());
            m.set_end_key(b"l".to_vec());
            m.mut_message().set_msg_type(msg_type);
            m.mut_message().set_from(9002);
            m.mut_message().set_to(9001);
            m.mut_message().set_term(7);
            m.mut_message().set_commit(commit);
            m
        };
    let router = cluster.router(free).unwrap();
    // Dropped: a tombstone, and a non-initial append, for unknown regions.
    router
        .send_raft_message(msg(free, 78, MessageType::MsgHeartbeat, 0, true))
        .unwrap();
    router
        .send_raft_message(msg(free, 79, MessageType::MsgAppend, 9, false))
        .unwrap();
    // Created: a vote request for an unknown region.
    router
        .send_raft_message(msg(free, 77, MessageType::MsgRequestVote, 0, false))
        .unwrap();
    assert!(
        wait_until(WAIT, || router.mailbox(77).is_some()),
        "peer for region 77 created"
    );
    // The store FSM handles its mailbox in order: the earlier two are done.
    assert!(router.mailbox(78).is_none());
    assert!(router.mailbox(79).is_none());

    // On store 1 the same vote finds its range held by region 1 (which has
    // not split it off): no peer; the split would create it.
    let held = cluster.router(1).unwrap();
    held.send_raft_message(msg(1, 80, MessageType::MsgRequestVote, 0, false))
        .unwrap();
    // The store FSM has handled the vote once its mailbox is empty and a
    // poll round that began after that has ended (or the store has nothing
    // left to do at all: no round will come).
    let stats = cluster.stats(1).unwrap();
    assert!(wait_until(WAIT, || held.control_mailbox().is_empty()));
    let taken_at = stats.rounds.load(std::sync::atomic::Ordering::SeqCst);
    assert!(wait_until(WAIT, || {
        stats.rounds.load(std::sync::atomic::Ordering::SeqCst) >= taken_at + 2
            || cluster.wait_idle(std::time::Duration::from_millis(1))
    }));
    assert!(held.mailbox(80).is_none(), "no peer over region 1's range");
}

#[test]
fn split_region_serves_both_halves_on_every_store() {
    use kvproto_lite::raft_cmdpb::AdminCmdType;

    let mut cluster = Cluster::memory(3, 1, fast_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let mut client = cluster.client();
    client.put(b"a", b"1").unwrap();
    client.put(b"m", b"2").unwrap();

    let region = cluster.regions()[0].clone();
    let leader = cluster.leader_store(1).unwrap();
    let mut req = RaftCmdRequest::default();
    req.mut_header().set_region_id(1);
    req.mut_header()
        .set_region_epoch(region.get_region_epoch().clone());
    let admin = req.mut_admin_request();
    admin.set_cmd_type(AdminCmdType::Split);
    admin.mut_split().set_split_key(b"h".to_vec());
    admin.mut_split().set_new_region_id(100);
    admin.mut_split().set_new_peer_ids(vec![1001, 1002, 1003]);
    let resp = cluster.call(leader, req, WAIT).unwrap();
    assert_ok(&resp);

    // The client's cached region is stale now: EpochNotMatch tells it both
    // halves, and writes on either side work.
    client.put(b"b", b"left").unwrap();
    client.put(b"z", b"right").unwrap();
    assert_eq!(client.region_for(b"z").unwrap().get_id(), 100);
    assert_eq!(client.get(b"m").unwrap(), Some(b"2".to_vec()));
    for s in [1, 2, 3] {
        cluster.wait_for_kv(s, b"z", Some(b"right"), WAIT).unwrap();
        cluster.wait_for_kv(s, b"b", Some(b"left"), WAIT).unwrap();
    }
}

#[test]
fn destroyed_peer_leaves_a_tombstone_and_its_mailbox() {
    use kvproto_lite::raft_serverpb::PeerState;
    use raftstore::PeerMsg;

    let mut cluster = Cluster::memory(3, 1, fast_config()).unwrap();
    cluster.start().unwrap();
    let mut client = cluster.client();
    client.put(b"k", b"v").unwrap();
    cluster.wait_for_kv(3, b"k", Some(b"v"), WAIT).unwrap();
    let router = cluster.router(3).unwrap();
    router.force_send(1, PeerMsg::Destroy).unwrap();
    let engines = cluster.engines(3).unwrap().clone();
    assert!(
        wait_until(WAIT, || {
            matches!(
                engine::KvEngine::get_region_state(&engines.kv, 1),
                Ok(Some(s)) if s.get_state() == PeerState::Tombstone
            ) && router.mailbox(1).is_none()
        }),
        "region 1 on store 3 was not destroyed"
    );
    // The other two stores still form a quorum.
    client.put(b"k2", b"v2").unwrap();
}

#[test]
fn the_leader_records_each_stage_of_its_writes_and_followers_record_none() {
    let mut cluster = Cluster::memory(3, 1, fast_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let mut client = cluster.client();
    // One write first, so the leader is settled and known to the client.
    client.put(&key_in(0, 1, 0), b"warm-up").unwrap();
    let leader = cluster.leader_store(1).unwrap();
    let term = cluster
        .stats(leader)
        .unwrap()
        .region_progress(1)
        .unwrap()
        .term;
    let before: Vec<_> = [1, 2, 3]
        .iter()
        .map(|s| cluster.stats(*s).unwrap().snapshot())
        .collect();
    for i in 1u64..=20 {
        client.put(&key_in(0, 1, i), b"v").unwrap();
    }
    let deltas: Vec<_> = [1u64, 2, 3]
        .iter()
        .zip(&before)
        .map(|(s, b)| cluster.stats(*s).unwrap().snapshot().since(b))
        .collect();
    // Whatever happened to leadership: every put passed some leader's
    // checks, and every entry handed to apply was answered (a put returns
    // only after its answer).
    let sum =
        |f: &dyn Fn(&raftstore::StoreStatsSnapshot) -> u64| -> u64 { deltas.iter().map(f).sum() };
    assert!(sum(&|d| d.propose_wait.count()) >= 20);
    assert!(sum(&|d| d.commit.count()) >= 20);
    assert_eq!(sum(&|d| d.commit.count()), sum(&|d| d.apply.count()));
    // With one leader throughout (the usual case), it recorded exactly one
    // sample per put and stage (one at a time: one entry each), the
    // followers none.
    let same_term = cluster
        .stats(leader)
        .unwrap()
        .region_progress(1)
        .unwrap()
        .term
        == term;
    if same_term && cluster.leader_store(1) == Some(leader) {
        for (store, d) in [1u64, 2, 3].iter().zip(&deltas) {
            let counts = (d.propose_wait.count(), d.commit.count(), d.apply.count());
            let want = if *store == leader {
                (20, 20, 20)
            } else {
                (0, 0, 0)
            };
            assert_eq!(counts, want, "store {store} (leader {leader})");
        }
    }
    cluster.shutdown();
}
