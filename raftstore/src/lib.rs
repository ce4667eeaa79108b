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
//! - [`Transport`] carries raft messages between stores;
//!   [`ChannelTransport`] connects stores in one process, with fault
//!   filters.
//! - [`bootstrap_store`] writes a store's initial regions;
//!   [`Cluster`] runs several stores in one process and [`Client`] routes
//!   keys to regions and leaders with retries.
//!
//! The poll round is sketched in the [`poller`] module docs. FSM logic
//! never reads the clock or spawns threads (ticks are messages), so a
//! simulation can drive [`RaftPoller`] directly.
//!
//! # Example
//!
//! A three-store cluster in one process with in-memory engines:
//!
//! ```
//! use raftstore::{Cluster, Config};
//!
//! let mut cluster = Cluster::memory(3, 4, Config::default()).unwrap();
//! cluster.start().unwrap();
//! let mut client = cluster.client();
//! client.put(b"hello", b"world").unwrap();
//! assert_eq!(client.get(b"hello").unwrap(), Some(b"world".to_vec()));
//! client.delete(b"hello").unwrap();
//! assert_eq!(client.get(b"hello").unwrap(), None);
//! cluster.shutdown();
//! ```
#![deny(missing_docs)]
// Send errors give the unsent message back by value (as the batch
// system's `try_send` does), and client errors carry the store's
// `errorpb::Error`; both are cold paths where boxing buys nothing.
#![allow(clippy::result_large_err)]

mod bootstrap;
mod client;
mod cluster;
mod config;
mod context;
mod error;
mod msg;
mod peer;
mod peer_fsm;
pub mod poller;
mod raft_compat;
mod router;
mod storage;
mod store_fsm;
mod store_meta;
mod system;
mod transport;

pub use bootstrap::{bootstrap_store, even_split_keys, initial_regions, is_bootstrapped};
pub use client::{Client, ClientError, ClientOptions, StoreDirectory};
pub use cluster::{wait_until, Cluster, EngineFactory};
pub use config::Config;
pub use context::PollContext;
pub use error::{Error, Result};
pub use msg::{error_response, Callback, PeerMsg, RaftCommand, SignificantMsg, StoreMsg};
pub use peer::Peer;
pub use peer_fsm::PeerFsm;
pub use poller::{RaftPoller, RaftPollerBuilder};
pub use router::{CommandSink, RaftRouter};
pub use storage::{conf_state_from_region, PeerStorage, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
pub use store_fsm::StoreFsm;
pub use store_meta::{
    DurationHistogram, HistogramSnapshot, LeaderInfo, StoreMeta, StoreStats, StoreStatsSnapshot,
    HISTOGRAM_BUCKETS,
};
pub use system::{
    create_raft_batch_system, tick_slice, ManualPollers, RaftBatchSystem, TICK_SLICES,
};
pub use transport::{
    ChannelTransport, Filter, FilterAction, OneWayFilter, PartitionFilter, PredicateFilter,
    RaftMessageSink, Transport, TransportStats,
};
