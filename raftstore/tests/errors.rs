//! Every error a command can get is produced here and checked, and every
//! accepted command is answered exactly once, shutdown included.

mod common;

use common::{fast_config, WAIT};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cluster::{Cluster, FilterAction, PredicateFilter};
use engine::{Engines, MemKvEngine, MemRaftLogEngine};
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::RaftCmdRequest;
use raftstore::{
    bootstrap_store, create_raft_batch_system, initial_regions, Callback, CommandSink, Config,
    Peer, PeerFsm, RaftCommand,
};

fn started(regions: usize) -> Cluster<MemKvEngine, MemRaftLogEngine> {
    let mut cluster = Cluster::memory(3, regions, fast_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    cluster
}

#[test]
fn follower_answers_not_leader_with_the_leader_hint() {
    let cluster = started(1);
    let region = cluster.regions()[0].clone();
    let leader_store = cluster.leader_store(1).unwrap();
    let follower = *cluster
        .store_ids()
        .iter()
        .find(|s| **s != leader_store)
        .unwrap();
    // The follower learns the leader from its first heartbeat/append.
    cluster
        .call(leader_store, put(&region, leader_store, b"a"), WAIT)
        .unwrap();
    let resp = cluster
        .call(follower, put(&region, follower, b"a"), WAIT)
        .unwrap();
    let err = resp.get_header().get_error();
    assert!(err.has_not_leader(), "{err:?}");
    assert_eq!(err.get_not_leader().get_region_id(), 1);
    assert_eq!(
        err.get_not_leader().get_leader().get_store_id(),
        leader_store
    );
}

#[test]
fn unknown_region_answers_region_not_found() {
    let cluster = started(1);
    let mut region = cluster.regions()[0].clone();
    region.set_id(999);
    let resp = cluster.call(1, put(&region, 1, b"a"), WAIT).unwrap();
    let err = resp.get_header().get_error();
    assert!(err.has_region_not_found(), "{err:?}");
    assert_eq!(err.get_region_not_found().get_region_id(), 999);
}

#[test]
fn stale_epoch_answers_epoch_not_match_with_the_current_region() {
    let cluster = started(1);
    let region = cluster.regions()[0].clone();
    let leader = cluster.leader_store(1).unwrap();
    let mut req = put(&region, leader, b"a");
    req.mut_header().mut_region_epoch().set_version(0);
    let resp = cluster.call(leader, req, WAIT).unwrap();
    let err = resp.get_header().get_error();
    assert!(err.has_epoch_not_match(), "{err:?}");
    assert_eq!(err.get_epoch_not_match().get_current_regions(), &[region]);
    // Zero fields are spelled out: the text names the stale field.
    let text = err.get_message();
    assert!(
        text.contains("request epoch (conf_ver 1, version 0) is older than region epoch (conf_ver 1, version 1)"),
        "{text}"
    );
}

#[test]
fn command_with_a_term_two_behind_answers_stale_command_and_zero_is_unchecked() {
    let cluster = started(1);
    let region = cluster.regions()[0].clone();
    let leader = cluster.leader_store(1).unwrap();
    let resp = cluster
        .call(leader, put(&region, leader, b"t0"), WAIT)
        .unwrap();
    assert!(!resp.get_header().has_error(), "{resp:?}");
    let term = resp.get_header().get_current_term();
    assert!(term >= 2, "bootstrapped regions start above term 1: {term}");

    let with_term = |t: u64| {
        let mut req = put(&region, leader, b"t");
        req.mut_header().set_term(t);
        cluster.call(leader, req, WAIT).unwrap()
    };
    // The current term and one behind are accepted.
    for ok in [term, term - 1] {
        let resp = with_term(ok);
        assert!(!resp.get_header().has_error(), "term {ok}: {resp:?}");
    }
    // Two behind: the client's view predates two leader changes.
    let resp = with_term(term - 2);
    let err = resp.get_header().get_error();
    assert!(err.has_stale_command(), "{err:?}");
    assert!(
        err.get_message().contains("more than one behind"),
        "{err:?}"
    );
}

#[test]
fn refused_command_is_answered_as_not_proposed() {
    let cluster = started(1);
    let mut region = cluster.regions()[0].clone();
    region.set_id(999);
    let (tx, rx) = raftstore::crossbeam_channel::bounded(1);
    let cb = Callback::new(move |resp| tx.send(resp).unwrap());
    let router = cluster.router(1).unwrap();
    match router.send_raft_command(RaftCommand::new(put(&region, 1, b"a"), cb)) {
        Err(refused @ raftstore::TrySendError::Disconnected(_)) => {
            raftstore::answer_refused(refused)
        }
        other => panic!("region 999 has no peer: {other:?}"),
    }
    let resp = rx.recv_timeout(WAIT).unwrap();
    let err = resp.get_header().get_error();
    assert_eq!(err.get_region_not_found().get_region_id(), 999, "{err:?}");
}

#[test]
fn key_outside_the_region_answers_key_not_in_region() {
    let cluster = started(2);
    let left = cluster.regions()[0].clone();
    let leader = cluster.leader_store(left.get_id()).unwrap();
    let outside = left.get_end_key().to_vec(); // first key of the right region
    let resp = cluster
        .call(leader, put(&left, leader, &outside), WAIT)
        .unwrap();
    let err = resp.get_header().get_error();
    assert!(err.has_key_not_in_region(), "{err:?}");
    assert_eq!(err.get_key_not_in_region().get_key(), outside.as_slice());
}

#[test]
fn oversized_command_answers_raft_entry_too_large() {
    let cfg = Config {
        raft_entry_max_size: 1024,
        ..fast_config()
    };
    let mut cluster = Cluster::memory(3, 1, cfg).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let region = cluster.regions()[0].clone();
    let leader = cluster.leader_store(1).unwrap();
    let mut req = put(&region, leader, b"big");
    req.mut_requests()[0].mut_put().set_value(vec![0; 4096]);
    let resp = cluster.call(leader, req, WAIT).unwrap();
    assert!(resp.get_header().get_error().has_raft_entry_too_large());
}

/// A peer FSM registered with a router whose pollers never run: its mailbox
/// fills up.
#[test]
fn full_mailbox_answers_server_is_busy_and_loses_nothing() {
    let cfg = Config {
        peer_mailbox_capacity: 2,
        ..fast_config()
    };
    let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
    let regions = initial_regions(&[1], &[]).unwrap();
    bootstrap_store(&engines, 1, &regions).unwrap();
    let (router, system) = create_raft_batch_system::<MemKvEngine, MemRaftLogEngine>(&cfg);
    let region = regions[0].clone();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let peer = Peer::new(
        &cfg,
        engines.raft.clone(),
        region.clone(),
        region.get_peers()[0].clone(),
        engine::RaftLogEngine::get_raft_state(&engines.raft, 1)
            .unwrap()
            .unwrap(),
        engine::KvEngine::get_apply_state(&engines.kv, 1)
            .unwrap()
            .unwrap(),
        &logger,
    )
    .unwrap();
    let (tx, fsm) = PeerFsm::new(&cfg, peer);
    router.register(1, batch_system::BasicMailbox::new(tx, fsm));

    let answered = Arc::new(AtomicUsize::new(0));
    let mut accepted = 0;
    let mut busy = 0;
    for _ in 0..5 {
        let answered = answered.clone();
        let cb = Callback::new(move |_| {
            answered.fetch_add(1, Ordering::SeqCst);
        });
        match router.send_raft_command(RaftCommand::new(put(&region, 1, b"k"), cb)) {
            Ok(()) => accepted += 1,
            Err(raftstore::TrySendError::Full(cmd)) => {
                busy += 1;
                // The command came back unanswered: the caller answers it.
                cmd.callback
                    .invoke_with_error(kvproto_lite::util::new_server_is_busy("full"), 0);
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 2);
    assert_eq!(busy, 3);
    // Through the CommandSink helper the refusal is a ServerIsBusy response.
    let resp = router
        .submit(put(&region, 1, b"k"))
        .recv_timeout(WAIT)
        .unwrap();
    assert!(resp.get_header().get_error().has_server_is_busy());
    // Dropping the system drops the FSM and answers the queued commands.
    drop(router);
    drop(system);
    assert_eq!(answered.load(Ordering::SeqCst), 5);
}

#[test]
fn proposal_overwritten_by_a_new_leader_answers_stale_command() {
    // A long election timeout so the isolated leader keeps accepting
    // proposals for a while (check-quorum steps it down only after it).
    let cfg = Config {
        raft_election_timeout_ticks: 100,
        ..fast_config()
    };
    let mut cluster = Cluster::memory(3, 1, cfg).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let region = cluster.regions()[0].clone();
    let old = cluster.leader_store(1).unwrap();
    let mut client = cluster.client();
    client.put(b"\x01", b"warm").unwrap();

    // Isolate the old leader in both directions.
    cluster.transport().add_filter(PredicateFilter::new(
        FilterAction::Drop,
        move |from, to, _| from == old || to == old,
    ));
    let rx = cluster
        .send_command(old, put(&region, old, b"\x02doomed"))
        .unwrap();
    // The others elect a leader and commit at the same log positions.
    client.put(b"\x03", b"new-term").unwrap();
    client.put(b"\x04", b"new-term").unwrap();
    let new = cluster.leader_store(1).unwrap();
    assert_ne!(new, old);
    cluster.transport().clear_filters();
    let resp = rx.recv_timeout(WAIT).unwrap();
    let err = resp.get_header().get_error();
    assert!(err.has_stale_command(), "{err:?}");
    // Whatever the answer, the doomed write never took effect anywhere.
    assert_eq!(client.get(b"\x02doomed").unwrap(), None);
}

#[test]
fn every_accepted_command_is_answered_exactly_once_even_at_shutdown() {
    let mut cluster = started(4);
    let counts: Arc<Vec<AtomicUsize>> = Arc::new((0..400).map(|_| AtomicUsize::new(0)).collect());
    let regions = cluster.regions().to_vec();
    for i in 0..400usize {
        let region = &regions[i % regions.len()];
        let store = 1 + (i as u64 % 3);
        let counts = counts.clone();
        let cb = Callback::new(move |_| {
            counts[i].fetch_add(1, Ordering::SeqCst);
        });
        let router = cluster.router(store).unwrap();
        if let Err(e) =
            router.send_raft_command(RaftCommand::new(put(region, store, &[1, i as u8]), cb))
        {
            // Refused: the command came back; answer it here.
            drop(e);
        }
    }
    cluster.shutdown();
    for (i, c) in counts.iter().enumerate() {
        assert_eq!(c.load(Ordering::SeqCst), 1, "command {i}");
    }
}

fn put(region: &Region, store_id: u64, key: &[u8]) -> RaftCmdRequest {
    common::put_request(region, store_id, key, b"v")
}
