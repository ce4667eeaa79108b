//! The test kit's error type.

/// Errors of the in-process [`Cluster`](crate::Cluster).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A store failed to bootstrap, start or answer.
    #[error("store: {0}")]
    Store(#[from] raftstore::Error),
    /// A store's engines failed.
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
    /// The cluster layout asked for is invalid (no stores, no regions).
    #[error("invalid cluster: {0}")]
    InvalidLayout(String),
    /// The store is not running.
    #[error("store {0} is not running")]
    NotRunning(u64),
    /// The store is already running.
    #[error("store {0} is already running")]
    AlreadyRunning(u64),
    /// A condition did not hold before its deadline; says what was seen.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The temporary directory for durable engines could not be created.
    #[error("create temp dir: {0}")]
    TempDir(#[from] std::io::Error),
}

/// A specialised `Result` for the test kit.
pub type Result<T> = std::result::Result<T, Error>;
