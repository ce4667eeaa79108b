//! The server error type.

use std::net::SocketAddr;

/// What can go wrong starting or running a store's gRPC server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid server config: {0}")]
    InvalidConfig(String),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An address in the address book cannot be parsed as `host:port`.
    #[error("bad address {address:?} of store {store_id}: {reason}")]
    BadAddress {
        /// The store.
        store_id: u64,
        /// The address as given.
        address: String,
        /// Why it is refused.
        reason: String,
    },
    /// A store id is already in the address book at another address.
    #[error("store {store_id} is already a member of the cluster, at {known}; refusing {given}")]
    StoreExists {
        /// The store.
        store_id: u64,
        /// The address the book has for it.
        known: String,
        /// The address that was refused.
        given: String,
    },
    /// The address book could not be saved; it is unchanged.
    #[error("cannot save the address book: {0}")]
    Persist(String),
    /// Any other I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Server(#[from] tonic::transport::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
