//! Region snapshots: generating them on the leader, carrying them to a
//! follower out of band, and applying them there.
//!
//! ```text
//! leader                                   follower's store
//! raft-rs: Storage::snapshot()
//!   -> SnapshotTemporarilyUnavailable,
//!      request recorded in PeerStorage
//! peer: take_snapshot_request
//!   -> SnapScheduler: worker thread reads a
//!      consistent KvSnapshot: region state,
//!      apply state, data range + per-region
//!      keys; chunks <= chunk_size, CRC32
//!   -> SnapManager keeps the chunks, GenSlot
//!      gets raft's Snapshot {index, term,
//!      conf state, data = SnapshotMeta}
//! raft-rs (next heartbeat response):
//!   Storage::snapshot() -> the snapshot
//!   -> MsgSnapshot
//! peer: Transport::send_snapshot(msg,      RaftMessageSink::receive_snapshot(msg)
//!        OutgoingSnapshot)          ------>  -> IncomingSnapshot (limits, cancels
//!   chunks in order, is_cancelled()            an older one of the region)
//!   between them                     chunks  push(chunk)*  (bounded, counted)
//!                                            finish(): size + CRC32 checked,
//!                                            data kept in SnapManager,
//!                                            MsgSnapshot delivered to the peer
//! OutgoingSnapshot::finish(ok)     <------ (the transport's outcome)
//!   -> SignificantMsg::SnapshotStatus
//!   -> raft-rs report_snapshot             peer steps MsgSnapshot only if its
//!                                            data is here (pins it);
//!                                          Ready with the snapshot, once apply
//!                                          has applied everything sent to it:
//!                                          1. KV engine, one synced batch: old
//!                                             keys of the range deleted, data,
//!                                             apply state, region state
//!                                          2. raft log batch: log cleaned, raft
//!                                             state at the snapshot (synced with
//!                                             the round)
//!                                          3. apply FSM re-registered
//! ```
//!
//! A crash between 1 and 2 is repaired at the next start by
//! `PeerStorage::new` (see [`PeerStorage`](crate::PeerStorage)): the KV engine says the
//! snapshot is applied, so the raft log restarts at its index.

mod data;
mod manager;
mod meta;
mod worker;

pub use data::{
    applied_term, check, generate, region_ranges, restored_apply_state, verify, write_to_kv,
    GeneratedSnapshot,
};
pub use manager::{
    IncomingSnapshot, OutgoingSnapshot, SharedChunks, SnapLimits, SnapManager, SnapshotReporter,
    SnapshotStats,
};
pub use meta::{conf_state_from_region, SnapKey, SnapshotMeta};
pub(crate) use worker::SnapWorker;
pub use worker::{raft_snapshot, GenSlot, SnapScheduler};
