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
