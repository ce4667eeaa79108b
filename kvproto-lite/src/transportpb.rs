//! Store-to-store streams: [`BatchRaftMessage`] (several `RaftMessage`s sent
//! together), [`SnapshotChunk`] (a piece of a Raft snapshot) and [`Done`],
//! the answer to a finished stream. The `Raft` gRPC service of
//! `proto/transportpb.proto` carries them.
//!
//! Generated from `proto/transportpb.proto`; see the crate docs for field
//! numbers.

include!(concat!(env!("OUT_DIR"), "/protos/transportpb.rs"));
