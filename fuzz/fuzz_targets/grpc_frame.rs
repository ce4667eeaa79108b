//! cargo-fuzz target `grpc_frame`: see `multi_raft_fuzz::harness::grpc_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multi_raft_fuzz::harness::grpc_frame(data);
});
