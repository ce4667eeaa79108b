//! Protobuf schemas for a multi-raft store: region metadata ([`metapb`]),
//! store-to-store messages and persisted state ([`raft_serverpb`]), client
//! commands ([`raft_cmdpb`]) and client-visible errors ([`errorpb`]).
//!
//! The Rust code is generated at build time from `proto/*.proto` with
//! protobuf-codegen-pure 2.28 (no system `protoc`). Raft's own messages are
//! never generated again: [`eraftpb`] is `raft::eraftpb`, so
//! `RaftMessage::get_message` returns exactly the `raft::eraftpb::Message`
//! that `RawNode::step` takes.

#![deny(missing_docs)]

pub use raft::eraftpb;

#[allow(
    missing_docs,
    elided_lifetimes_in_paths,
    mismatched_lifetime_syntaxes,
    non_upper_case_globals,
    unused_parens,
    clippy::all
)]
pub mod errorpb;
#[allow(
    missing_docs,
    elided_lifetimes_in_paths,
    mismatched_lifetime_syntaxes,
    non_upper_case_globals,
    unused_parens,
    clippy::all
)]
pub mod metapb;
#[allow(
    missing_docs,
    elided_lifetimes_in_paths,
    mismatched_lifetime_syntaxes,
    non_upper_case_globals,
    unused_parens,
    clippy::all
)]
pub mod raft_cmdpb;
#[allow(
    missing_docs,
    elided_lifetimes_in_paths,
    mismatched_lifetime_syntaxes,
    non_upper_case_globals,
    unused_parens,
    clippy::all
)]
pub mod raft_serverpb;
