//! [`RaftService`]: the receiving end of other stores' raft streams.

use std::sync::Arc;

use batch_system::mpsc::TrySendError;
use kvproto_lite::transportpb::{BatchRaftMessage, Done, SnapshotChunk};
use metrics::counter;
use raftstore::RaftMessageSink;
use slog::{warn, Logger};
use tokio::sync::watch;
use tonic::{Status, Streaming};

/// Delivers the messages of incoming `Raft.BatchRaft` streams to this
/// store's router.
///
/// A message the store cannot take (a full mailbox, a store shutting down)
/// is dropped and counted: raft retransmits. A stream carrying a message
/// for another store is refused with `FailedPrecondition`, since its sender
/// dials the wrong address (the sender logs that and retries later).
pub struct RaftService {
    store_id: u64,
    sink: Arc<dyn RaftMessageSink>,
    /// Set by [`RaftService::close_streams`]: every stream ends.
    closed: watch::Sender<bool>,
    logger: Logger,
}

impl RaftService {
    /// The service of store `store_id`, delivering to `sink` (the store's
    /// router).
    pub fn new(store_id: u64, sink: Arc<dyn RaftMessageSink>, logger: &Logger) -> RaftService {
        RaftService {
            store_id,
            sink,
            closed: watch::channel(false).0,
            logger: logger.clone(),
        }
    }

    /// Ends every stream being served, now and later, with `Unavailable`:
    /// the senders see their connection to this store fail (as they would
    /// if the process had exited) and report it unreachable. Raft streams
    /// never end by themselves, so a server stopping gracefully needs this
    /// to let its connections close.
    pub fn close_streams(&self) {
        let _ = self.closed.send(true);
    }

    /// The next item of a stream (`None` once the sender closed it), or
    /// `Unavailable` as soon as the store starts shutting down.
    async fn next_or_shutdown<M>(
        &self,
        stream: &mut Streaming<M>,
        closed: &mut watch::Receiver<bool>,
    ) -> Result<Option<M>, Status> {
        tokio::select! {
            next = stream.message() => next,
            _ = closed.wait_for(|c| *c) => Err(Status::unavailable(format!(
                "store {} is shutting down",
                self.store_id
            ))),
        }
    }

    /// Serves one `BatchRaft` stream until its sender closes it.
    ///
    /// # Errors
    ///
    /// The stream's own error (connection lost, malformed batch), or
    /// `FailedPrecondition` for a message addressed to another store.
    pub async fn batch_raft(
        &self,
        mut stream: Streaming<BatchRaftMessage>,
    ) -> Result<Done, Status> {
        let received = counter!("raft_messages_received_total");
        let full = counter!("raft_messages_received_dropped_total", "reason" => "mailbox_full");
        let stopped = counter!("raft_messages_received_dropped_total", "reason" => "not_running");
        let mut closed = self.closed.subscribe();
        loop {
            let Some(mut batch) = self.next_or_shutdown(&mut stream, &mut closed).await? else {
                break;
            };
            received.increment(batch.get_msgs().len() as u64);
            for msg in batch.take_msgs() {
                let to = msg.get_to_peer().get_store_id();
                if to != self.store_id {
                    counter!("raft_streams_refused_total").increment(1);
                    warn!(self.logger, "refused a raft stream carrying messages for another store";
                          "to_store" => to, "from_store" => msg.get_from_peer().get_store_id());
                    return Err(Status::failed_precondition(format!(
                        "this is store {}, not store {to}: check the address book",
                        self.store_id
                    )));
                }
                match self.sink.deliver(msg) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => full.increment(1),
                    Err(TrySendError::Disconnected(_)) => stopped.increment(1),
                }
            }
        }
        Ok(Done::default())
    }

    /// Serves one `Snapshot` stream: the first chunk's message starts the
    /// reception ([`RaftMessageSink::receive_snapshot`]: limits, metadata
    /// checks), every chunk's data is added in order, and when the sender
    /// closes the stream the data is verified and the message delivered.
    /// `Done` tells the sender the store took the whole snapshot.
    ///
    /// # Errors
    ///
    /// The stream's own error, `InvalidArgument` for a first chunk without
    /// a snapshot message or one for another store, `ResourceExhausted`
    /// when the store refuses the reception, `DataLoss` when the data does
    /// not match its metadata, `Unavailable` when the store is shutting
    /// down or cannot take the message.
    pub async fn snapshot(&self, mut stream: Streaming<SnapshotChunk>) -> Result<Done, Status> {
        let mut closed = self.closed.subscribe();
        let mut incoming = None;
        loop {
            let Some(mut chunk) = self.next_or_shutdown(&mut stream, &mut closed).await? else {
                break;
            };
            if incoming.is_none() {
                if !chunk.has_message() {
                    return Err(Status::invalid_argument(
                        "the first snapshot chunk carries no message",
                    ));
                }
                let msg = chunk.take_message();
                let to = msg.get_to_peer().get_store_id();
                if to != self.store_id {
                    return Err(Status::invalid_argument(format!(
                        "this is store {}, not store {to}",
                        self.store_id
                    )));
                }
                let started = self
                    .sink
                    .receive_snapshot(msg)
                    .map_err(|e| Status::resource_exhausted(e.to_string()))?;
                incoming = Some(started);
            }
            if let Some(receiving) = incoming.as_mut() {
                if !chunk.get_data().is_empty() {
                    receiving
                        .push(chunk.get_data())
                        .map_err(|e| Status::data_loss(e.to_string()))?;
                }
            }
        }
        let Some(receiving) = incoming else {
            return Err(Status::invalid_argument("an empty snapshot stream"));
        };
        let msg = receiving
            .finish()
            .map_err(|e| Status::data_loss(e.to_string()))?;
        counter!("raft_snapshots_received_total").increment(1);
        self.sink
            .deliver(msg)
            .map_err(|_| Status::unavailable("the store cannot take the snapshot's message"))?;
        Ok(Done::default())
    }
}
