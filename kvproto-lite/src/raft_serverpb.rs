//! Store-to-store messages and persisted per-region state: [`RaftMessage`]
//! (a `raft::eraftpb::Message` plus routing data), [`RaftLocalState`],
//! [`RaftApplyState`], [`RaftTruncatedState`], [`RegionLocalState`] with
//! [`PeerState`], and [`StoreIdent`].
//!
//! Generated from `proto/raft_serverpb.proto`; see the crate docs for field
//! numbers.

include!(concat!(env!("OUT_DIR"), "/protos/raft_serverpb.rs"));
