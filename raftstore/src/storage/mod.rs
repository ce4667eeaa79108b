//! A peer's persisted raft state as raft-rs sees it: [`PeerStorage`] (the
//! `raft::Storage` over the store's raft log engine) and the states a peer
//! starts from (bootstrap, split).
//!
//! Snapshots (building, sending, applying) will live here too.

mod initial;
mod peer_storage;

pub(crate) use initial::{initial_apply_state, initial_raft_state, split_raft_state};
pub use initial::{RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
pub use peer_storage::{conf_state_from_region, PeerStorage};
