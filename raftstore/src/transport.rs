//! Transports carry `RaftMessage`s between stores.
//!
//! [`Transport`] is what the raft pollers send through; a
//! [`RaftMessageSink`] is where a transport delivers the messages for one
//! store. A network transport implements both ends over the wire; the
//! `cluster` test kit has an in-process one with fault filters.

use batch_system::mpsc::TrySendError;
use kvproto_lite::raft_serverpb::RaftMessage;

use crate::error::Result;

/// Sends raft messages to other stores.
///
/// A poller owns one clone and calls [`Transport::send`] for every message
/// of a round, then [`Transport::flush`] once at the end of the round, so an
/// implementation may buffer.
pub trait Transport: Clone + Send + 'static {
    /// Queues `msg` for the store named by `msg.to_peer.store_id`.
    ///
    /// # Errors
    ///
    /// [`Error::StoreUnreachable`](crate::Error::StoreUnreachable) when the destination is known to be down;
    /// the caller reports the peer unreachable to raft. A message may still
    /// be lost silently after `Ok` (as on a real network).
    fn send(&mut self, msg: RaftMessage) -> Result<()>;

    /// Sends everything queued.
    fn flush(&mut self);
}

/// Where a transport delivers raft messages for one store. Implemented by
/// [`RaftRouter`](crate::RaftRouter); lets transports stay independent of engine types.
pub trait RaftMessageSink: Send + Sync {
    /// Delivers `msg` to this store.
    ///
    /// # Errors
    ///
    /// Gives the message back when it cannot be accepted.
    fn deliver(&self, msg: RaftMessage) -> std::result::Result<(), TrySendError<RaftMessage>>;
}
