//! cargo-fuzz target `raft_message`: see `multi_raft_fuzz::harness::raft_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multi_raft_fuzz::harness::raft_message(data);
});
