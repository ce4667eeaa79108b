//! Generated from `proto/raft_serverpb.proto` (see the crate docs).

include!(concat!(env!("OUT_DIR"), "/protos/raft_serverpb.rs"));
