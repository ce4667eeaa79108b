//! The memory quota: above it new commands are refused with
//! `ServerIsBusy` naming the quota, nothing accepted is dropped, and
//! service resumes once the accepted work completes.

mod common;

use common::{fast_config, put_request, WAIT};

use cluster::{wait_until, Cluster, FilterAction, PredicateFilter};
use kvproto_lite::eraftpb::MessageType;
use kvproto_lite::raft_cmdpb::RaftCmdResponse;
use raftstore::Config;

const QUOTA: u64 = 64 * 1024;
const VALUE: usize = 8 * 1024;

#[test]
fn over_the_memory_quota_new_commands_are_busy_accepted_ones_complete_and_service_resumes() {
    let cfg = Config {
        memory_quota: QUOTA,
        ..fast_config()
    };
    let mut cluster = Cluster::memory(3, 1, cfg).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let region = cluster.regions()[0].clone();
    let region_id = region.get_id();
    let leader = cluster.leader_store(region_id).unwrap();
    let stats = cluster.stats(leader).unwrap();
    assert_eq!(stats.memory.capacity(), QUOTA);

    // The leader's appends are dropped (heartbeats still pass, so it stays
    // leader): what it accepts cannot commit and holds its memory.
    cluster.transport().add_filter(PredicateFilter::new(
        FilterAction::Drop,
        move |from, _, msg| {
            from == leader && msg.get_message().get_msg_type() == MessageType::MsgAppend
        },
    ));

    let value = vec![b'v'; VALUE];
    let last_index = || stats.region_progress(region_id).map_or(0, |p| p.last_index);
    let mut accepted = Vec::new();
    let mut refusal: Option<RaftCmdResponse> = None;
    for i in 0..(4 * QUOTA as usize / VALUE) {
        let key = format!("k{i:03}");
        let before = last_index();
        let rx = cluster
            .send_command(leader, put_request(&region, leader, key.as_bytes(), &value))
            .unwrap();
        // Either proposed (the log grows) or answered at once (refused).
        let mut answer = None;
        assert!(
            wait_until(WAIT, || {
                if let Ok(resp) = rx.try_recv() {
                    answer = Some(resp);
                }
                answer.is_some() || last_index() > before
            }),
            "command {i} was neither proposed nor answered"
        );
        match answer {
            Some(resp) => {
                refusal = Some(resp);
                break;
            }
            None => accepted.push((key, rx)),
        }
    }
    let refusal = refusal.expect("the quota must refuse a command");
    let err = refusal.get_header().get_error();
    assert!(err.has_server_is_busy(), "{err:?}");
    assert!(
        err.get_server_is_busy()
            .get_reason()
            .contains("memory quota"),
        "{err:?}"
    );
    // Everything accepted is held (nothing dropped), and it is at least
    // the quota.
    assert!(!accepted.is_empty());
    assert!(accepted.len() as u64 <= QUOTA / VALUE as u64 + 1);
    assert!(stats.memory.in_use() >= QUOTA);
    assert!(accepted.iter().all(|(_, rx)| rx.is_empty()));
    // Still refused while over the quota.
    let again = cluster
        .call(leader, put_request(&region, leader, b"again", &value), WAIT)
        .unwrap();
    assert!(again.get_header().get_error().has_server_is_busy());

    // The appends flow again: every accepted command completes.
    cluster.transport().clear_filters();
    for (key, rx) in &accepted {
        let resp = rx.recv_timeout(WAIT).unwrap();
        assert!(!resp.get_header().has_error(), "{key}: {resp:?}");
    }
    for (key, _) in &accepted {
        for store in cluster.store_ids() {
            cluster
                .wait_for_kv(*store, key.as_bytes(), Some(&value), WAIT)
                .unwrap();
        }
    }

    // Below the quota again: service resumes.
    assert!(wait_until(WAIT, || stats.memory.in_use() < QUOTA));
    let resumed = cluster
        .call(leader, put_request(&region, leader, b"after", &value), WAIT)
        .unwrap();
    assert!(!resumed.get_header().has_error(), "{resumed:?}");
    assert!(stats.memory.refused() >= 2);
    cluster.shutdown();
}
