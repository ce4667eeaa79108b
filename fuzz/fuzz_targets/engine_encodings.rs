//! cargo-fuzz target `engine_encodings`: see `multi_raft_fuzz::harness::engine_encodings`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multi_raft_fuzz::harness::engine_encodings(data);
});
