//! The simulation's error type.

use thiserror::Error;

/// What can go wrong while setting up or running a simulation (as opposed
/// to a correctness violation, which is a [`Failure`](crate::Failure)).
#[derive(Debug, Error)]
pub enum Error {
    /// A raftstore call failed (bootstrap, start, restart).
    #[error("raftstore: {0}")]
    Raftstore(#[from] raftstore::Error),
    /// An engine call failed.
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
    /// A configuration the simulation cannot run.
    #[error("invalid simulation config: {0}")]
    Config(String),
}

/// Result of simulation set-up calls.
pub type Result<T> = std::result::Result<T, Error>;
