//! The node error type.

use std::path::PathBuf;

/// Why a node refused to start or stopped with an error. Every variant's
/// message is one line meant for the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing, out of range or inconsistent.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The config file cannot be read or parsed.
    #[error("config file {}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The data directory belongs to another store, another cluster, or is
    /// in a state this node cannot start from.
    #[error("data dir {}: {message}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An engine failed to open or write.
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
    /// The raft store failed.
    #[error("raftstore: {0}")]
    Raftstore(#[from] raftstore::Error),
    /// The gRPC server failed.
    #[error("server: {0}")]
    Server(#[from] server::Error),
    /// Joining a running cluster failed (see `--join`).
    #[error("join: {0}")]
    Join(String),
    /// Any other I/O failure, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What the node was doing.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
