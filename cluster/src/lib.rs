//! Test kit for multi-raft stores: several stores in one process, the
//! network between them with fault injection, and helpers to wait for
//! conditions. Tests, examples and benchmarks use it (raftstore's own
//! integration tests as a dev-dependency); production code does not.
//!
//! - [`Cluster`] bootstraps and runs M stores (in-memory or durable
//!   engines in a temporary directory), stops and restarts them, and hands
//!   out [`client::Client`]s over them.
//! - [`ChannelTransport`] connects the stores through their routers, with
//!   [`Filter`]s that drop, partition, cut one way, duplicate or hold
//!   messages.
//! - [`InProcessBackend`] is the client's [`client::Backend`] over the
//!   stores' command sinks.
//! - [`wait_until`] polls a condition up to a deadline.
//!
//! # Example
//!
//! A three-store cluster in one process with in-memory engines:
//!
//! ```
//! use cluster::Cluster;
//! use raftstore::Config;
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

mod backend;
mod cluster;
mod error;
mod transport;
mod wait;

pub use crate::backend::{InProcessBackend, StoreDirectory};
pub use crate::cluster::{Cluster, EngineFactory, STORE_IO_ENV};
pub use crate::error::{Error, Result};
pub use crate::transport::{
    ChannelTransport, Filter, FilterAction, OneWayFilter, PartitionFilter, PredicateFilter,
    TransportStats,
};
pub use crate::wait::wait_until;
