//! Transports carry `RaftMessage`s between stores.
//!
//! [`Transport`] is what the raft pollers send through; a
//! [`RaftMessageSink`] is where a transport delivers the messages for one
//! store. A network transport implements both ends over the wire; the
//! `cluster` test kit has an in-process one with fault filters.

use crossbeam_channel::TrySendError;
use kvproto_lite::raft_serverpb::RaftMessage;

use crate::error::{Error, Result};
use crate::snapshot::{IncomingSnapshot, OutgoingSnapshot};

/// Sends raft messages to other stores.
///
/// A poller owns one clone and calls [`Transport::send`] for every message
/// of a round, then [`Transport::flush`] once at the end of the round, so an
/// implementation may buffer.
///
/// # Wiring stores together
///
/// A transport needs, for each destination store, something that delivers
/// to that store's [`RaftMessageSink`] (its [`RaftRouter`](crate::RaftRouter),
/// or a network client whose server does that). The order does not matter:
/// a store's router exists from
/// [`create_raft_batch_system`](crate::create_raft_batch_system) on, so it
/// can be connected before or after that store's
/// [`spawn`](crate::RaftBatchSystem::spawn); messages to a store that is
/// not connected yet are refused with `StoreUnreachable`, which raft
/// handles like a lost message (it retries). When a store goes away, call
/// [`RaftRouter::report_unreachable`](crate::RaftRouter::report_unreachable)
/// on the others. The `three_stores` example of this crate wires three
/// stores by hand.
pub trait Transport: Clone + Send + 'static {
    /// Queues `msg` for the store named by `msg.to_peer.store_id`.
    ///
    /// # Errors
    ///
    /// [`Error::StoreUnreachable`](crate::Error::StoreUnreachable) when the destination is known to be down;
    /// the caller reports the peer unreachable to raft. A message may still
    /// be lost silently after `Ok` (as on a real network).
    fn send(&mut self, msg: RaftMessage) -> Result<()>;

    /// Sends a snapshot: `msg` (a `MsgSnapshot` carrying only the
    /// snapshot's metadata) and the snapshot's data, out of band, in the
    /// bounded chunks of `snap`. The data must never travel as one message
    /// or through a mailbox: the receiving store's
    /// [`RaftMessageSink::receive_snapshot`] takes it chunk by chunk and
    /// gives back `msg` to deliver once the data is complete and verified.
    ///
    /// The transport must end `snap` with
    /// [`OutgoingSnapshot::finish`] (or drop it, which counts as a
    /// failure): the leader's raft learns the outcome from it. It may send
    /// on another thread and should stop when
    /// [`OutgoingSnapshot::is_cancelled`] says a newer snapshot superseded
    /// this one.
    ///
    /// The default refuses: a transport that cannot carry snapshots keeps
    /// every follower that needs one waiting.
    ///
    /// # Errors
    ///
    /// As [`send`](Transport::send); `snap` has been finished as failed.
    fn send_snapshot(&mut self, msg: RaftMessage, snap: OutgoingSnapshot) -> Result<()> {
        snap.finish(false);
        Err(Error::Snapshot(format!(
            "this transport cannot send snapshots (to store {})",
            msg.get_to_peer().get_store_id()
        )))
    }

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

    /// Starts receiving the data of the snapshot `msg` announces (see
    /// [`Transport::send_snapshot`]). Push the chunks into the returned
    /// [`IncomingSnapshot`], then `finish` it and [`deliver`](Self::deliver)
    /// the message it gives back.
    ///
    /// The default refuses (a sink that cannot take snapshots).
    ///
    /// # Errors
    ///
    /// Not a well-formed snapshot message, or too many receptions under
    /// way.
    fn receive_snapshot(&self, msg: RaftMessage) -> Result<IncomingSnapshot> {
        Err(Error::Snapshot(format!(
            "store {} cannot receive snapshots",
            msg.get_to_peer().get_store_id()
        )))
    }
}

/// A transport with no other store to talk to: every message is refused
/// with [`Error::StoreUnreachable`]. For a store whose regions have a
/// single voter (examples, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTransport;

impl Transport for NoTransport {
    fn send(&mut self, msg: RaftMessage) -> Result<()> {
        Err(Error::StoreUnreachable(msg.get_to_peer().get_store_id()))
    }

    fn flush(&mut self) {}
}
