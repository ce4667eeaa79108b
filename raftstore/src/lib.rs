//! Multi-region raft stores on [raft-rs](raft): many Raft groups per store,
//! each a [`PeerFsm`] over a real `raft::RawNode`, polled in batches by a
//! few threads, with the Readies of every peer in a round persisted in one
//! log batch with one fsync (group commit), and committed entries applied
//! by the [`apply`] batch system.
//!
//! # Pieces
//!
//! - [`create_raft_batch_system`] returns a [`RaftRouter`] and a
//!   [`RaftBatchSystem`]; [`RaftBatchSystem::spawn`] loads the store's
//!   regions from its [`engine::Engines`] and starts the raft pollers, the
//!   apply pollers and the tick timer.
//! - [`RaftRouter`] routes [`PeerMsg`]s by region id, falling back to the
//!   store FSM ([`StoreFsm`]) for regions with no peer here
//!   ([`RaftRouter::send_raft_message`]); commands go in with
//!   [`RaftRouter::send_raft_command`] and are answered through their
//!   [`Callback`] exactly once.
//! - [`Transport`] carries raft messages between stores and delivers them
//!   to a store's [`RaftMessageSink`] (its router); clients submit
//!   commands through a [`CommandSink`].
//! - [`bootstrap_store`] writes a store's initial regions.
//!
//! The in-process cluster, the channel transport with fault filters and the
//! wait helpers of the tests are in the `cluster` test kit; the routing
//! client is the `client` crate. `examples/three_stores.rs` wires three
//! durable stores by hand without either (run it with
//! `cargo run -p raftstore --example three_stores`).
//!
//! # Using the stores as a library
//!
//! - **Types in the API.** [`TrySendError`] (the refusal of
//!   [`RaftRouter::send_raft_command`], [`RaftRouter::send_raft_message`],
//!   [`CommandSink`] and [`RaftMessageSink`]) is crossbeam-channel's, and
//!   [`CommandSink::submit`] returns a crossbeam [`Receiver`]; both are
//!   re-exported here, as are the [`crossbeam_channel`] and [`slog`]
//!   crates themselves. [`RaftBatchSystem::spawn`] takes a
//!   [`slog::Logger`]: [`discard_logger`] when you want none.
//! - **Commands.** Build a `RaftCmdRequest` with
//!   `kvproto_lite::util::new_cmd_request` and send it to the region's
//!   leader. A refused command ([`TrySendError`]) was not proposed: answer
//!   it with [`answer_refused`]. Reads go through the log and are
//!   linearizable. The header fields (`term` included) are explained in
//!   the `kvproto_lite` crate docs.
//! - **Finding leaders.** [`RaftBatchSystem::leader_info`] (or
//!   [`StoreMeta::leader_info`]) tells who leads a region as a store knows
//!   it; [`RaftBatchSystem::wait_for_leaders`] waits at start-up until every
//!   region of the store has one. A follower whose leader is unreachable
//!   answers `NotLeader` *without* a hint, so a client backs off instead of
//!   chasing a stopped store.
//! - **Planned restarts.** [`RaftBatchSystem::shutdown_gracefully`] hands
//!   the store's leaderships to other stores before stopping, so its
//!   regions never wait an election timeout;
//!   [`RaftBatchSystem::region_progress`] (also in [`StoreStats`]) shows a
//!   restarted store catching up: its applied index against the leader's
//!   commit index.
//! - **Configuration.** [`Config::default`] lists every default.
//!
//! The poll round is sketched in the [`poller`] module docs. FSM logic
//! never reads the clock or spawns threads (ticks are messages), so a
//! simulation can drive [`RaftPoller`] directly.
//!
//! # Example
//!
//! One store with one region (a single voter elects itself at once), in
//! memory; it has no other store to talk to, so its transport refuses
//! every message:
//!
//! ```
//! use std::time::Duration;
//!
//! use engine::{Engines, MemKvEngine, MemRaftLogEngine};
//! use kvproto_lite::{metapb, util};
//! use kvproto_lite::raft_cmdpb::{CmdType, Request};
//! use kvproto_lite::raft_serverpb::RaftMessage;
//! use raftstore::{
//!     bootstrap_store, create_raft_batch_system, initial_regions, CommandSink, Config, Error,
//!     Transport,
//! };
//!
//! #[derive(Clone)]
//! struct Alone;
//!
//! impl Transport for Alone {
//!     fn send(&mut self, msg: RaftMessage) -> raftstore::Result<()> {
//!         Err(Error::StoreUnreachable(msg.get_to_peer().get_store_id()))
//!     }
//!     fn flush(&mut self) {}
//! }
//!
//! let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
//! let regions = initial_regions(&[1], &[]).unwrap();
//! bootstrap_store(&engines, 1, &regions).unwrap();
//! let (router, mut system) = create_raft_batch_system(&Config::default());
//! let mut store = metapb::Store::default();
//! store.set_id(1);
//! system.spawn(store, engines.clone(), Alone, &raftstore::discard_logger()).unwrap();
//!
//! let region = &regions[0];
//! let mut cmd = util::new_cmd_request(region, util::find_peer(region, 1).unwrap().clone());
//! let mut put = Request::default();
//! put.set_cmd_type(CmdType::Put);
//! put.mut_put().set_key(b"hello".to_vec());
//! put.mut_put().set_value(b"world".to_vec());
//! cmd.mut_requests().push(put);
//! let resp = router.submit(cmd).recv_timeout(Duration::from_secs(10)).unwrap();
//! assert!(!resp.get_header().has_error(), "{resp:?}");
//! system.shutdown();
//! assert_eq!(engine::KvEngine::get(&engines.kv, b"hello").unwrap(), Some(b"world".to_vec()));
//! ```
#![deny(missing_docs)]
// Send errors give the unsent message back by value (as the batch
// system's `try_send` does): a cold path where boxing buys nothing.
#![allow(clippy::result_large_err)]

mod awake;
mod bootstrap;
mod config;
mod context;
mod error;
pub mod leader_check;
mod local_reader;
mod memory;
pub mod metrics;
mod msg;
mod peer;
mod peer_fsm;
pub mod poller;
mod raft_compat;
mod router;
pub mod snapshot;
mod storage;
mod store_fsm;
mod store_io;
mod store_meta;
mod system;
mod transport;
pub mod validate;

pub use apply::{is_reserved_key, CommandHandler, CommandHandlers, KeyAccess};
pub use awake::{tick_slice, AwakeRegions, TICK_SLICES};
pub use bootstrap::{bootstrap_store, even_split_keys, initial_regions, is_bootstrapped};
pub use config::{Config, MAX_STORE_IO_POOL_SIZE};
pub use context::PollContext;
pub use error::{Error, Result};
pub use leader_check::{LeaderCheckStats, LeaderChecks};
pub use local_reader::{Clock, LeaseCell, LocalGet, LocalRead, LocalReader, MonotonicClock};
pub use memory::{default_memory_quota, MemoryGuard, MemoryQuota};
pub use msg::{
    error_response, Callback, InboundMessage, PeerMsg, RaftCommand, SignificantMsg, StoreMsg,
};
pub use peer::Peer;
pub use peer_fsm::PeerFsm;
pub use poller::{RaftPoller, RaftPollerBuilder};
pub use router::{answer_refused, CommandSink, RaftRouter};
pub use storage::{conf_state_from_region, PeerStorage, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
pub use store_fsm::StoreFsm;
pub use store_io::ManualWriter;
pub use store_meta::{
    DurationHistogram, HistogramSnapshot, LeaderInfo, RegionProgress, StoreMeta, StoreStats,
    StoreStatsSnapshot, WriteStages, HISTOGRAM_BUCKETS,
};
pub use system::{
    create_raft_batch_system, GracefulShutdown, ManualApplyPoller, ManualPollers, ManualPool,
    ManualRaftPoller, RaftBatchSystem,
};
pub use transport::{NoTransport, RaftMessageSink, Transport};

/// The channel crate of the API's refusals and response receivers.
pub use crossbeam_channel;
/// Where [`CommandSink::submit`] delivers the response.
pub use crossbeam_channel::Receiver;
/// The refusal of [`RaftRouter::send_raft_command`],
/// [`RaftRouter::send_raft_message`], [`CommandSink::send_command`] and
/// [`RaftMessageSink::deliver`]: the message comes back, unsent.
pub use crossbeam_channel::TrySendError;
/// The logging crate [`RaftBatchSystem::spawn`] takes a logger of.
pub use slog;

/// A logger that drops every record: for embedding the store where its
/// logs are not wanted (and for tests). For terminal output build a
/// `slog::Logger` over a drain such as `slog_term`'s.
///
/// # Examples
///
/// ```
/// let logger = raftstore::discard_logger();
/// raftstore::slog::info!(logger, "nobody reads this"; "region_id" => 1);
/// ```
pub fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}
