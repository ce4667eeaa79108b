//! Deterministic simulation of a multi-raft cluster with fault injection
//! and a linearizability checker.
//!
//! The simulation runs the **production** raftstore and apply handlers
//! ([`raftstore::RaftPoller`], [`apply::ApplyPoller`]) for three stores on
//! one thread: each store is started with
//! [`raftstore::RaftBatchSystem::spawn_manual`], and the simulation calls
//! [`batch_system::ManualPoller::poll_once`] on its pollers until every FSM
//! is idle. Time is simulated: ticks are `PeerMsg::Tick`s the simulation
//! sends; raft messages go through [`SimTransport`] into the simulation's
//! event queue, where a seeded RNG decides their fate (loss, duplication,
//! delay, reordering, partitions). Stores crash (their FSMs dropped, the
//! in-memory engines losing every unsynced write) and restart from their
//! engines. Clients issue puts, gets and deletes with retries, routed by
//! the `client` crate's core (the shipped client's region cache, leader
//! cache and error classification); every operation is recorded and the
//! history is checked with a Wing–Gong/Knossos-style linearizability
//! checker ([`check_history`]).
//!
//! Layout: the simulation loop and its event queue (`simulation/mod.rs`,
//! `event.rs`), the stores (`stores.rs`: start, crash, restart, poll, tick,
//! deliver), the `nemesis.rs`, the region `layout.rs`, the client
//! `workload.rs`, the end-of-run `checks.rs`; beside them the fault model
//! of the network ([`network`](SimTransport)), the [`history`](Operation),
//! the [`checker`](check_history) and the [`report`](RunReport).
//!
//! Same seed, same run, bit for bit: [`RunReport::digest`] hashes the whole
//! event trace.
//!
//! # Example
//!
//! ```
//! use sim::{run_seed, Profile, SimConfig};
//!
//! let report = run_seed(SimConfig::from_seed(42, Profile::Quick), false);
//! assert!(report.failure.is_none(), "seed 42: {:?}", report.failure);
//! let again = run_seed(SimConfig::from_seed(42, Profile::Quick), false);
//! assert_eq!(report.digest, again.digest);
//! ```
//!
//! See `docs/testing.md` for the fault model and how to replay a seed
//! (`cargo run --release -p sim -- --seed N --verbose`).
#![deny(missing_docs)]

mod checker;
mod config;
mod digest;
mod error;
mod history;
mod logging;
mod network;
mod report;
mod simulation;

pub use crate::checker::{check_history, check_key, CheckResult, Violation, DEFAULT_STEP_LIMIT};
pub use crate::config::{
    forge_leader_check_answers, skew_clocks_beyond_the_lease_bound, MessageFaults, NemesisConfig,
    Profile, SimConfig,
};
pub use crate::digest::Digest;
pub use crate::error::{Error, Result};
pub use crate::history::{decode_value, encode_value, Command, Operation, Outcome, Stamp};
pub use crate::logging::terminal_logger;
pub use crate::network::{NetFault, NetState, Outbox, SimTransport};
pub use crate::report::{Failure, RunReport, SimStats};
pub use crate::simulation::{run_seed, Simulation};
