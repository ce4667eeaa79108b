//! Generated from `proto/raft_cmdpb.proto` (see the crate docs).

include!(concat!(env!("OUT_DIR"), "/protos/raft_cmdpb.rs"));
