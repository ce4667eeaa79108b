//! `Backend`: how the blocking [`Client`](crate::Client) reaches a store.

use std::time::Duration;

use kvproto_lite::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};

/// Why a command got no response from a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The store cannot be reached (unknown, down, connection refused):
    /// the command was not delivered.
    #[error("store unreachable: {0}")]
    Unreachable(String),
    /// No response within the attempt timeout: the command may or may not
    /// have run.
    #[error("no response in time")]
    Timeout,
}

/// Sends one command to one store and waits for its response.
///
/// The routing and retries are the client's; a backend only carries a
/// command to the store named and brings back what that store answered
/// (refusals included, as error responses). An in-process implementation
/// over the stores' command sinks is in the `cluster` test kit; a network
/// one sends the command over the wire.
pub trait Backend: Send + Sync {
    /// Sends `command` to store `store_id` and waits at most `timeout` for
    /// the response.
    ///
    /// # Errors
    ///
    /// See [`BackendError`].
    fn call(
        &self,
        store_id: u64,
        command: RaftCmdRequest,
        timeout: Duration,
    ) -> Result<RaftCmdResponse, BackendError>;
}
