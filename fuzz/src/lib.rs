//! Fuzz targets of multi-raft-rs (cargo-fuzz; not part of the workspace).
//!
//! The work each target does with one input lives in [`harness`], which
//! the stable test `node/tests/fuzz_replay.rs` also includes, so the
//! corpus in `fuzz/corpus/<target>/` is replayed by `cargo test`.

pub mod harness;
