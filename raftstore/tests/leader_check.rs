//! ReadIndex reads confirmed by store-level leader checks (see
//! `raftstore::leader_check`) in a three-store cluster: a read sees the
//! last acknowledged write, a deposed leader cannot serve one, and a
//! malformed check is dropped and counted.
//!
//! Every wait is on a condition with a generous deadline.

mod common;

use common::{assert_ok, fast_config, leader_of, put_request, WAIT};

use cluster::{wait_until, Cluster, FilterAction, PredicateFilter};
use engine::{MemKvEngine, MemRaftLogEngine};
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, ReadMode, Request};
use kvproto_lite::raft_serverpb::{ExtraMessageType, LeaderCheck, RaftMessage};
use raftstore::leader_check::is_leader_check;
use raftstore::{Config, LeaderCheckStats};

type MemCluster = Cluster<MemKvEngine, MemRaftLogEngine>;

fn started(cfg: Config) -> MemCluster {
    let mut cluster = Cluster::memory(3, 1, cfg).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    cluster
}

fn get_request(region: &Region, store_id: u64, key: &[u8], mode: ReadMode) -> RaftCmdRequest {
    let mut req = RaftCmdRequest::default();
    req.mut_header().set_region_id(region.get_id());
    if let Some(p) = kvproto_lite::util::find_peer(region, store_id) {
        req.mut_header().set_peer(p.clone());
    }
    req.mut_header()
        .set_region_epoch(region.get_region_epoch().clone());
    req.mut_header().set_read_mode(mode);
    let mut get = Request::default();
    get.set_cmd_type(CmdType::Get);
    get.mut_get().set_key(key.to_vec());
    req.mut_requests().push(get);
    req
}

fn stats(cluster: &MemCluster, store: u64) -> LeaderCheckStats {
    cluster.store_meta(store).unwrap().leader_checks().stats()
}

#[test]
fn a_read_index_read_confirmed_by_a_leader_check_sees_the_last_acknowledged_write() {
    let cluster = started(fast_config());
    let region = cluster.regions()[0].clone();
    let leader = leader_of(&cluster, region.get_id());
    // No heartbeat can confirm a read: only leader checks can.
    cluster.transport().add_filter(PredicateFilter::new(
        FilterAction::Drop,
        |_, _, m: &RaftMessage| {
            m.get_extra() == ExtraMessageType::NoExtra
                && m.get_message().get_msg_type()
                    == kvproto_lite::eraftpb::MessageType::MsgHeartbeat
                && !m.get_message().get_context().is_empty()
        },
    ));
    for i in 0..10u32 {
        let value = format!("v{i}").into_bytes();
        let put = cluster
            .call(leader, put_request(&region, leader, b"k", &value), WAIT)
            .unwrap();
        assert_ok(&put);
        let resp = cluster
            .call(
                leader,
                get_request(&region, leader, b"k", ReadMode::ReadIndex),
                WAIT,
            )
            .unwrap();
        assert_ok(&resp);
        assert_eq!(resp.get_responses()[0].get_get().get_value(), value);
    }
    let s = stats(&cluster, leader);
    assert!(s.batches_confirmed >= 10, "{s:?}");
    assert_eq!(s.batches_refused + s.batches_timed_out, 0, "{s:?}");
    let yes: u64 = cluster
        .store_ids()
        .iter()
        .filter(|s| **s != leader)
        .map(|s| stats(&cluster, *s).answered_yes)
        .sum();
    assert!(yes >= 10, "followers confirmed {yes} regions");
}

#[test]
fn a_deposed_leader_cannot_serve_a_read_index_read_through_a_leader_check() {
    // Hibernation lets the old leader keep believing it leads: asleep, it
    // does not tick, so check-quorum does not make it step down while the
    // other stores elect a new leader.
    let cluster = started(Config {
        hibernate_regions: true,
        hibernate_check_leader_ticks: 1_000_000_000,
        ..fast_config()
    });
    let region = cluster.regions()[0].clone();
    let old = leader_of(&cluster, region.get_id());
    let put = cluster
        .call(old, put_request(&region, old, b"k", b"old"), WAIT)
        .unwrap();
    assert_ok(&put);
    assert!(
        wait_until(WAIT, || cluster.is_hibernated(region.get_id())),
        "region did not hibernate"
    );
    // The old leader's store is cut off for raft messages in both
    // directions; leader checks still pass, so its check reaches the
    // others and their answers come back.
    cluster.transport().add_filter(PredicateFilter::new(
        FilterAction::Drop,
        move |from, to, m: &RaftMessage| (from == old || to == old) && !is_leader_check(m),
    ));
    let others: Vec<u64> = cluster
        .store_ids()
        .iter()
        .copied()
        .filter(|s| *s != old)
        .collect();
    for s in &others {
        // Wakes their sleeping followers, which then elect a new leader.
        cluster.router(*s).unwrap().report_unreachable(old);
    }
    let mut new = None;
    assert!(
        wait_until(WAIT, || {
            new = others.iter().copied().find(|s| {
                cluster
                    .store_meta(*s)
                    .unwrap()
                    .leader_info(region.get_id())
                    .is_some_and(|i| i.is_leader)
            });
            new.is_some()
        }),
        "no new leader on the other side"
    );
    let new = new.unwrap();
    let put = cluster
        .call(new, put_request(&region, new, b"k", b"new"), WAIT)
        .unwrap();
    assert_ok(&put);
    assert!(
        cluster
            .store_meta(old)
            .unwrap()
            .leader_info(region.get_id())
            .unwrap()
            .is_leader,
        "the old leader should not know yet that it was deposed"
    );
    let resp = cluster
        .call(
            old,
            get_request(&region, old, b"k", ReadMode::ReadIndex),
            WAIT,
        )
        .unwrap();
    assert!(
        resp.get_header().has_error(),
        "a deposed leader served a read: {resp:?}"
    );
    let s = stats(&cluster, old);
    assert!(s.batches_sent >= 1, "{s:?}");
    assert_eq!(s.batches_confirmed, 0, "{s:?}");
    assert!(s.batches_refused + s.batches_timed_out >= 1, "{s:?}");
    let no: u64 = others.iter().map(|s| stats(&cluster, *s).answered_no).sum();
    assert!(no >= 1, "the other stores refused nothing");
}

#[test]
fn malformed_leader_checks_are_dropped_and_counted() {
    let cluster = started(fast_config());
    let store = cluster.store_ids()[0];
    let router = cluster.router(store).unwrap();
    let mut check = LeaderCheck::default();
    check.set_id(1);
    let mut bad = Vec::new();
    // A region id in a store-level message.
    let mut m = RaftMessage::default();
    m.set_region_id(1);
    m.mut_from_peer().set_store_id(9);
    m.mut_to_peer().set_store_id(store);
    m.set_extra(ExtraMessageType::LeaderCheckRequest);
    m.set_leader_check(check.clone());
    bad.push(m.clone());
    // No body.
    m.set_region_id(0);
    m.clear_leader_check();
    bad.push(m.clone());
    // An answer with id 0.
    m.set_extra(ExtraMessageType::LeaderCheckResponse);
    m.mut_leader_check_response().set_id(0);
    bad.push(m.clone());
    // For another store.
    m.mut_leader_check_response().set_id(1);
    m.mut_to_peer().set_store_id(store + 100);
    bad.push(m);
    let n = bad.len() as u64;
    for m in bad {
        assert!(router.send_raft_message(m).is_ok());
    }
    assert_eq!(stats(&cluster, store).malformed, n);
    // The store still works.
    let region = cluster.regions()[0].clone();
    let leader = leader_of(&cluster, region.get_id());
    let resp = cluster
        .call(
            leader,
            get_request(&region, leader, b"absent", ReadMode::ReadIndex),
            WAIT,
        )
        .unwrap();
    assert_ok(&resp);
}
