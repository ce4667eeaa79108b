//! The crate's error type.

/// Errors returned by configuration checks and by [`BatchSystem`](crate::BatchSystem)
/// life-cycle calls.
///
/// Errors of individual sends are not this type: they are
/// [`TrySendError`](crate::mpsc::TrySendError) /
/// [`SendError`](crate::mpsc::SendError), which give the unsent message back.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range; the text names the field.
    #[error("invalid batch-system config: {0}")]
    InvalidConfig(String),
    /// [`BatchSystem::spawn`](crate::BatchSystem::spawn) was called on a
    /// system whose pollers are already running.
    #[error("batch system is already running")]
    AlreadySpawned,
    /// The system has been shut down and cannot be started again.
    #[error("batch system has been shut down")]
    ShutDown,
    /// [`ManualPoller::begin_round`](crate::ManualPoller::begin_round) was
    /// called while the poller's previous round was not finished.
    #[error("the manual poller's previous round is not finished")]
    RoundInProgress,
    /// [`ManualPoller::finish_round`](crate::ManualPoller::finish_round) was
    /// called without a round begun by `begin_round`.
    #[error("the manual poller has no round in progress")]
    NoRoundInProgress,
    /// The operating system refused to start a poller thread.
    #[error("failed to spawn poller thread {name}: {source}")]
    Spawn {
        /// Name of the thread that could not be started.
        name: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
