//! cargo-fuzz target `node_config`: see `multi_raft_fuzz::harness::node_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multi_raft_fuzz::harness::node_config(data);
});
