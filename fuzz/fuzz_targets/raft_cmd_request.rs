//! cargo-fuzz target `raft_cmd_request`: see `multi_raft_fuzz::harness::raft_cmd_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multi_raft_fuzz::harness::raft_cmd_request(data);
});
