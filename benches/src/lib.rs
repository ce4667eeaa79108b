//! Workloads shared by the benchmark binaries and the criterion benches:
//! the actor workload of `batch-bench` (below), and the replicated-cluster
//! load generator ([`load`]) and process measurements ([`sys`]) of
//! `cluster-bench` and `scale-bench`.
//!
//! The same actor workload runs on two runtimes:
//!
//! - [`run_batch_system`]: one [`Actor`] FSM per actor in a
//!   [`batch_system::BatchSystem`], driven by [`ActorHandler`], which
//!   reports progress once per poll round (in `end`);
//! - [`run_tokio_baseline`]: one tokio task per actor, each fed by a
//!   `tokio::sync::mpsc` unbounded channel, on a multi-thread runtime with
//!   the same number of worker threads. This is the idiomatic way to write
//!   the same thing without a batch system, and it is not weakened: each
//!   task does the same work per message and reports once when done.
//!
//! In both, one producer thread sends [`Workload::messages`] `u64`s
//! round-robin over [`Workload::actors`] actors through the runtime's
//! ordinary send path (`Router::send`, `UnboundedSender::send`), and the
//! clock stops when every message has been handled.
//!
//! With a non-zero [`Workload::sync_cost`] each side also pays a simulated
//! sync (CPU spin) per unit of group commit: per poll round for the batch
//! system, per task wake for the baseline. That is where batching is
//! meant to win; with zero cost the comparison is plain message delivery.
//!
//! # Examples
//!
//! ```
//! use benches::{run_batch_system, run_tokio_baseline, Workload};
//!
//! use std::time::Duration;
//!
//! let w = Workload {
//!     actors: 100,
//!     messages: 10_000,
//!     pool_size: 2,
//!     max_batch_size: 64,
//!     sync_cost: Duration::ZERO,
//! };
//! let batch = run_batch_system(&w);
//! let tokio = run_tokio_baseline(&w);
//! assert_eq!(batch.messages, 10_000);
//! assert_eq!(tokio.messages, 10_000);
//! assert!(batch.msgs_per_sec() > 0.0 && tokio.msgs_per_sec() > 0.0);
//! ```
#![deny(missing_docs)]

mod actor;
pub mod load;
pub mod sys;
mod system;
mod workload;

pub use crate::actor::{Actor, ActorBuilder, ActorHandler};
pub use crate::system::ActorSystem;
pub use crate::workload::{run_batch_system, run_tokio_baseline, RunStats, Workload};
