//! The raftstore error type.

use kvproto_lite::errorpb;

/// Errors returned by raftstore functions.
///
/// Errors a *client* sees travel as [`errorpb::Error`] values inside a
/// `RaftCmdResponse`; this enum is for the store's own API (starting,
/// bootstrapping, configuration) and converts into `errorpb::Error` where a
/// command has to be answered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message says which field and why.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A storage engine failed.
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
    /// raft-rs refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The batch system refused to start.
    #[error("batch system: {0}")]
    BatchSystem(#[from] batch_system::Error),
    /// The apply system failed.
    #[error("apply: {0}")]
    Apply(#[from] apply::Error),
    /// A store was asked to bootstrap but already holds data, or the
    /// bootstrap description is inconsistent.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    /// The region is not on this store.
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// The system is not running (not spawned yet, or shut down).
    #[error("the raft batch system is not running")]
    NotRunning,
    /// The system was already spawned.
    #[error("the raft batch system was already spawned")]
    AlreadySpawned,
    /// A message could not be delivered to the destination store.
    #[error("store {0} is unreachable")]
    StoreUnreachable(u64),
    /// These regions still had no leader their peer on this store could
    /// reach when the wait for leaders timed out.
    #[error("regions without a reachable leader: {0:?}")]
    NoLeader(Vec<u64>),
    /// A snapshot could not be generated, sent, received or applied; the
    /// message says which and why.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// Anything else, with a description.
    #[error("{0}")]
    Other(String),
}

impl From<Error> for errorpb::Error {
    fn from(e: Error) -> errorpb::Error {
        let mut err = errorpb::Error::default();
        if let Error::RegionNotFound(region_id) = e {
            err.mut_region_not_found().set_region_id(region_id);
        }
        err.set_message(e.to_string());
        err
    }
}

/// A specialised `Result` for raftstore.
pub type Result<T> = std::result::Result<T, Error>;
