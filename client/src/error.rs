//! The client error type.

use kvproto_lite::errorpb;

/// Why a client operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// No answer before the deadline; a write may or may not have happened.
    #[error("timed out after {attempts} attempts; last error: {last_error}")]
    Timeout {
        /// How many times the command was sent.
        attempts: usize,
        /// The last error seen.
        last_error: String,
    },
    /// The store answered with an error that retrying cannot fix (see
    /// [`ErrorClass::Fail`](crate::ErrorClass::Fail)).
    #[error("store error: {0:?}")]
    Store(errorpb::Error),
    /// No region covers the key (the client's region list is incomplete).
    #[error("no region covers key {0:?}")]
    NoRegion(Vec<u8>),
    /// The response did not have the shape of the request.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// A user command's handler returned this error (the command was
    /// applied, without effect).
    #[error("command failed: {0}")]
    Command(String),
    /// No store could be reached to learn the cluster's stores or regions
    /// (a remote client connecting, or refreshing its region list).
    #[error("unreachable: {0}")]
    Unreachable(String),
}

/// A specialised `Result` for client operations.
pub type Result<T> = std::result::Result<T, ClientError>;
