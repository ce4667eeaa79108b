//! Storage for a multi-raft store (preliminary docs).

#![deny(missing_docs)]

mod engines;
mod error;
mod fjall_kv;
pub mod keys;
mod kv;
mod log_check;
mod mem_kv;
mod mem_raft;
mod open;
mod raft_engine_log;
mod raft_log;
mod write_batch;

pub use kvproto_lite;

pub use crate::engines::Engines;
pub use crate::error::{Error, Result};
pub use crate::fjall_kv::{FjallKvEngine, FjallKvSnapshot};
pub use crate::kv::{KvEngine, KvSnapshot, KvWriteBatch};
pub use crate::mem_kv::{MemKvEngine, MemKvSnapshot};
pub use crate::mem_raft::{MemLogBatch, MemRaftLogEngine};
pub use crate::raft_engine_log::{RaftEngineLogBatch, RaftEngineLogEngine};
pub use crate::raft_log::{RaftLogBatch, RaftLogEngine};
pub use crate::write_batch::WriteBatch;
