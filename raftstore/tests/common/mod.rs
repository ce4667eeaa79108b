//! Helpers shared by the integration test binaries.
#![allow(dead_code)] // each binary uses a different subset

use std::time::Duration;

use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, Request};
use raftstore::Config;

/// Deadline of every wait on a condition.
pub const WAIT: Duration = Duration::from_secs(30);

/// Default config with 10 ms ticks, so elections take tens of milliseconds.
pub fn fast_config() -> Config {
    Config {
        raft_base_tick_interval_ms: 10,
        ..Config::default()
    }
}

/// A Put of `key` = `value` for `region`, addressed to its peer on `store_id`.
pub fn put_request(region: &Region, store_id: u64, key: &[u8], value: &[u8]) -> RaftCmdRequest {
    let mut req = RaftCmdRequest::default();
    req.mut_header().set_region_id(region.get_id());
    if let Some(p) = kvproto_lite::util::find_peer(region, store_id) {
        req.mut_header().set_peer(p.clone());
    }
    req.mut_header()
        .set_region_epoch(region.get_region_epoch().clone());
    let mut put = Request::default();
    put.set_cmd_type(CmdType::Put);
    put.mut_put().set_key(key.to_vec());
    put.mut_put().set_value(value.to_vec());
    req.mut_requests().push(put);
    req
}

/// Compacts eagerly: a leader keeps at most 30 applied entries past a
/// follower that does not have them, and sends snapshots in 4 KiB chunks.
pub fn gc_config() -> Config {
    Config {
        raft_log_gc_threshold: 5,
        raft_log_gc_tick_interval: 3,
        raft_log_gc_count_limit: 30,
        snap_chunk_size: 4 * 1024,
        ..fast_config()
    }
}

/// The `i`th key of the snapshot tests.
pub fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

/// The value of key `i`: big enough that a snapshot spans many chunks.
pub fn value(i: u64) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat(200)).into_bytes()
}

/// The index `store`'s peer of `region_id` truncated its log to (0 if it
/// has no apply state).
pub fn truncated_index<EK: engine::KvEngine, ER: engine::RaftLogEngine>(
    c: &cluster::Cluster<EK, ER>,
    store: u64,
    region_id: u64,
) -> u64 {
    c.engines(store)
        .and_then(|e| e.kv.get_apply_state(region_id).ok().flatten())
        .map_or(0, |s| s.get_truncated_state().get_index())
}

/// Panics with the header's error if `resp` carries one.
pub fn assert_ok(resp: &kvproto_lite::raft_cmdpb::RaftCmdResponse) {
    assert!(
        !resp.get_header().has_error(),
        "unexpected error: {:?}",
        resp.get_header().get_error()
    );
}

/// The store leading `region_id` now, waiting up to [`WAIT`] for one.
///
/// # Panics
///
/// Panics if the region has no leader within the wait.
pub fn leader_of<EK: engine::KvEngine, ER: engine::RaftLogEngine>(
    cluster: &cluster::Cluster<EK, ER>,
    region_id: u64,
) -> u64 {
    let mut leader = None;
    assert!(
        cluster::wait_until(WAIT, || {
            leader = cluster.leader_store(region_id);
            leader.is_some()
        }),
        "region {region_id} has no leader"
    );
    leader.expect("a leader was seen")
}

/// A transport for a store with no other store to talk to: every send is
/// refused as unreachable.
#[derive(Clone)]
pub struct Alone;

impl raftstore::Transport for Alone {
    fn send(&mut self, msg: kvproto_lite::raft_serverpb::RaftMessage) -> raftstore::Result<()> {
        Err(raftstore::Error::StoreUnreachable(
            msg.get_to_peer().get_store_id(),
        ))
    }
    fn flush(&mut self) {}
}
