//! The crate's error type.

/// Errors from the apply system's own API (configuration, starting).
///
/// Problems with a *command* never surface here: they travel to the
/// command's callback as an `errorpb::Error` inside its `RaftCmdResponse`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names the field and why.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The underlying batch system refused (already spawned, shut down, or
    /// a poller thread could not be started).
    #[error("batch system: {0}")]
    BatchSystem(#[from] batch_system::Error),
    /// A storage engine failed.
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
}

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
