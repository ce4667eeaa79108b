//! cargo-fuzz target `store_messages`: see `multi_raft_fuzz::harness::store_messages`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multi_raft_fuzz::harness::store_messages(data);
});
