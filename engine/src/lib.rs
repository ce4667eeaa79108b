//! Storage for a multi-raft store: the raft logs of every region and the
//! replicated key-value state machine they drive.
//!
//! A store keeps two engines, paired in [`Engines`]:
//!
//! - a [`RaftLogEngine`] with every region's log entries and raft state
//!   (`RaftLocalState`: hard state + last index). Writes for many regions go
//!   into one [`RaftLogBatch`] and are made durable with **one** fsync, so a
//!   poll round of a busy store costs one disk sync, not one per region;
//! - a [`KvEngine`] with the user data plus each region's `RaftApplyState`
//!   and `RegionLocalState`. A command's data and the new applied index are
//!   written in the same [`KvWriteBatch`], so after a crash they agree: no
//!   entry is applied twice or lost.
//!
//! | trait          | for tests and simulation | durable                                   |
//! |----------------|--------------------------|-------------------------------------------|
//! | [`RaftLogEngine`] | [`MemRaftLogEngine`]  | [`RaftEngineLogEngine`] (raft-engine 0.4) |
//! | [`KvEngine`]      | [`MemKvEngine`]       | [`FjallKvEngine`] (fjall 3)               |
//!
//! The in-memory engines model durability: `crash()` drops every write not
//! yet synced, which is what a deterministic simulation needs.
//!
//! # Example: write, reopen, read back
//!
//! ```
//! use engine::kvproto_lite::raft_serverpb::{RaftApplyState, RaftLocalState};
//! use engine::{
//!     Engines, FjallKvEngine, KvEngine, KvWriteBatch, RaftEngineLogEngine, RaftLogBatch,
//!     RaftLogEngine,
//! };
//! use raft::eraftpb::Entry;
//!
//! # fn main() -> engine::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let open = || -> engine::Result<_> {
//!     Ok(Engines::new(
//!         FjallKvEngine::open(dir.path().join("kv"))?,
//!         RaftEngineLogEngine::open(dir.path().join("raft"))?,
//!     ))
//! };
//! let engines = open()?;
//!
//! // Persist a Ready for two regions in one log batch, one fsync.
//! let mut log = engines.raft.log_batch(4);
//! for region_id in [1, 2] {
//!     let entry = Entry { index: 6, term: 2, data: b"cmd".to_vec().into(), ..Default::default() };
//!     log.append(region_id, vec![entry])?;
//!     let mut state = RaftLocalState::default();
//!     state.set_last_index(6);
//!     state.mut_hard_state().set_term(2);
//!     log.put_raft_state(region_id, &state)?;
//! }
//! engines.raft.consume(&mut log, true)?;
//!
//! // Apply region 1's entry: data and applied index in one atomic batch.
//! let mut wb = engines.kv.write_batch();
//! wb.put(b"key", b"value");
//! let mut apply_state = RaftApplyState::default();
//! apply_state.set_applied_index(6);
//! wb.put_apply_state(1, &apply_state);
//! engines.kv.write(&mut wb, true)?;
//!
//! // Restart: everything synced is still there.
//! drop(engines);
//! let engines = open()?;
//! assert_eq!(engines.raft.region_ids()?, vec![1, 2]);
//! assert_eq!(engines.raft.last_index(2), Some(6));
//! assert_eq!(engines.raft.get_entry(1, 6)?.map(|e| e.term), Some(2));
//! assert_eq!(engines.kv.get(b"key")?, Some(b"value".to_vec()));
//! assert_eq!(engines.kv.get_apply_state(1)?.map(|s| s.get_applied_index()), Some(6));
//! # Ok(())
//! # }
//! ```
//!
//! # Key layout of the KV engines
//!
//! ```text
//! 0x01 0x01 <region_id u64 BE>   RaftApplyState
//! 0x01 0x02 <region_id u64 BE>   RegionLocalState
//! 'z' <user key>                 user data
//! ```
//!
//! Metadata sorts before all data, and data scans are bounded to
//! `['z', '{')`, so they never see metadata; see [`keys`].
//!
//! # Durability
//!
//! ```text
//! consume(batch, sync=true) / write(batch, sync=true) / sync()
//!     -> every earlier write of that engine is durable when it returns
//! consume(batch, sync=false) / write(batch, sync=false) / compact_to()
//!     -> visible at once; may be lost by a crash until the next synced write
//! every batch is atomic: after a crash it is there entirely or not at all
//! ```
//!
//! The raft log and KV engines are synced independently. The usual order
//! (raftstore's) is: persist raft logs and states (synced), then apply
//! committed entries into the KV engine, which may lag behind: after a crash
//! the applied index in the KV engine says where to resume.
//!
//! # Errors
//!
//! One [`Error`] enum for every engine. Reading a compacted or missing range
//! of the log gives [`Error::EntriesCompacted`] / [`Error::EntriesUnavailable`],
//! which convert into raft-rs's `StorageError::Compacted` / `Unavailable`
//! (`From<Error> for raft::Error`). Opening a missing, unusable or corrupted
//! directory gives [`Error::DirectoryNotFound`] or [`Error::Open`], never a
//! panic; raft-engine checks entry payload checksums when entries are read,
//! so damage there is reported by the read ([`Error::RaftEngine`]).

#![deny(missing_docs)]

mod block_cache_guard;
mod engines;
mod error;
mod fjall_kv;
mod id_hash;
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
/// raft-engine itself, for the `Config` of [`RaftEngineLogEngine::open_with_config`].
pub use raft_engine;

pub use crate::engines::Engines;
pub use crate::error::{Error, Result};
pub use crate::fjall_kv::{FjallKvEngine, FjallKvSnapshot};
pub use crate::kv::{KvEngine, KvSnapshot, KvWriteBatch, RawVisitor};
pub use crate::mem_kv::{MemKvEngine, MemKvSnapshot, MAX_UNSYNCED_OPS};
pub use crate::mem_raft::{MemLogBatch, MemRaftLogEngine};
pub use crate::raft_engine_log::{RaftEngineLogBatch, RaftEngineLogEngine};
pub use crate::raft_log::{RaftLogBatch, RaftLogEngine};
pub use crate::write_batch::WriteBatch;
