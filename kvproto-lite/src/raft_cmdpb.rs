//! Client commands and responses: a [`RaftCmdRequest`] holds a
//! [`RaftRequestHeader`] and either normal [`Request`]s ([`CmdType`] Get, Put,
//! Delete) or one [`AdminRequest`] ([`AdminCmdType`] ChangePeer, Split,
//! CompactLog, TransferLeader); a [`RaftCmdResponse`] mirrors it.
//!
//! Generated from `proto/raft_cmdpb.proto`; see the crate docs for field
//! numbers and the split semantics.

include!(concat!(env!("OUT_DIR"), "/protos/raft_cmdpb.rs"));
