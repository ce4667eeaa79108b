//! The `node` server binary and the `kvctl` client of a multi-raft
//! cluster, and the pieces they are made of.
//!
//! A node is one store: it keeps its regions in durable engines (fjall for
//! the state machine, raft-engine for the raft logs) under `--data-dir`,
//! serves clients and the other stores over gRPC on `--listen` (the
//! `server` crate), and answers `GET /status`, `GET /status/regions` and
//! `GET /metrics` (Prometheus text) on `--status`.
//!
//! ```text
//! node --store-id 1 --listen 127.0.0.1:20161 --status 127.0.0.1:20181 \
//!      --data-dir DIR --initial-cluster 1=127.0.0.1:20161,2=127.0.0.1:20162,3=127.0.0.1:20163 \
//!      [--regions 16] [--config node.toml]
//! kvctl --endpoints 127.0.0.1:20161,127.0.0.1:20162 put k v
//! kvctl --endpoints 127.0.0.1:20161 get k
//! node --store-id 4 --listen 127.0.0.1:20164 --status 127.0.0.1:20184 \
//!      --data-dir DIR4 --join 127.0.0.1:20161
//! ```
//!
//! - [`NodeConfig`]: the TOML config (every field optional, unknown keys
//!   refused) and [`NodeConfig::validate`]; [`NodeFlags`]: the flags that
//!   override it.
//! - [`data_dir`]: the data directory's identity record, the first-start
//!   bootstrap (the same region layout on every node, computed from the
//!   initial cluster) and the restart checks (a store id that does not
//!   match the directory is refused).
//! - [`Node`]: starts everything, waits for SIGTERM/SIGINT, stops
//!   gracefully.
//! - [`status`], [`mod@metrics`]: the status server and what it exports.
//!
//! `kvctl` runs on the `client` crate's remote client
//! (`client::grpc::AsyncClient`): the same routing and retries as the
//! in-process client, over gRPC, with exactly-once writes (client
//! sessions). Its commands: `put`, `get [--read-mode log|read-index|lease|follower]`,
//! `delete`, `cas KEY EXPECTED NEW` / `cas --absent KEY NEW` and
//! `delete-if-equal KEY EXPECTED` (exit 0: written; 1: not written, the
//! current value printed; 2: an error), `scan START END [--limit N]
//! [--read-mode ...]`, `regions`, `stores`, `move-replica REGION FROM TO
//! --peer-id ID`.
//!
//! - [`join`]: `--join ADDR` adds a node to a running cluster: it
//!   registers its store with every store (address books are saved in the
//!   data dirs and kept in step between nodes), then replicas move onto it
//!   by conf change and snapshot until it holds its fair share.
//!
//! # Example
//!
//! A config as a TOML file would hold it, with what `validate` says about a
//! mistake:
//!
//! ```
//! use node::NodeConfig;
//!
//! let mut cfg: NodeConfig = toml::from_str(r#"
//!     store_id = 1
//!     listen = "127.0.0.1:20161"
//!     status = "127.0.0.1:20181"
//!     data_dir = "/var/lib/multi-raft/1"
//!     initial_cluster = "1=127.0.0.1:20161,2=127.0.0.1:20162,3=127.0.0.1:20163"
//!     regions = 16
//!
//!     [raftstore]
//!     raft_base_tick_interval_ms = 50
//! "#)?;
//! cfg.validate()?;
//! assert_eq!(cfg.initial_cluster.store_ids(), vec![1, 2, 3]);
//!
//! cfg.store_id = 4;
//! assert_eq!(
//!     cfg.validate().unwrap_err().to_string(),
//!     "invalid config: initial-cluster 1=127.0.0.1:20161,2=127.0.0.1:20162,3=127.0.0.1:20163 \
//!      does not list this store (4)"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod cli;
mod config;
pub mod data_dir;
mod error;
pub mod join;
mod logging;
pub mod metrics;
mod node;
pub mod status;

pub use cli::NodeFlags;
pub use config::{InitialCluster, NodeConfig, LOG_LEVELS, MAX_INITIAL_REGIONS};
pub use error::{Error, Result};
pub use logging::{logger, LogGuard};
pub use node::Node;
