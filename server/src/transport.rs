//! [`GrpcTransport`]: raft messages to other stores over gRPC streams.
//!
//! ```text
//! raft poller thread                         tokio task per connection
//! ------------------                         -------------------------
//! send(msg)   -> per-connection buffer       connect (backoff 50 ms .. 2 s)
//! send(msg)   -> ...                         open BatchRaft stream
//! flush()     -> queue (bounded) ----------> take what is queued, up to
//!                full: drop + count            max batch size / bytes
//!                                            -> one BatchRaftMessage
//!                                            stream broke / refused:
//!                                              drop the queue, report the
//!                                              store unreachable, back off
//! ```
//!
//! A poller owns one clone of the transport; [`Transport::send`] only
//! appends to that clone's buffer for the destination connection, and
//! [`Transport::flush`] (once per poll round) hands each buffer to its
//! connection's queue in one step. So every flush turns into as few
//! `BatchRaftMessage`s as the batch bounds allow. While a connection is down
//! `send` answers [`raftstore::Error::StoreUnreachable`] and the peer tells
//! raft, which probes instead of pipelining; raft retransmits whatever was
//! dropped.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use kvproto_lite::grpc::RaftClient;
use kvproto_lite::raft_serverpb::RaftMessage;
use kvproto_lite::transportpb::{BatchRaftMessage, SnapshotChunk};
use metrics::counter;
use protobuf::Message;
use raftstore::snapshot::{OutgoingSnapshot, SharedChunks};
use raftstore::Transport;
use slog::{debug, info, o, warn, Logger};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use crate::address::AddressBook;
use crate::config::Config;
use crate::metrics as m;

/// Called with a store id when the connection to that store fails; a store
/// passes `move |id| router.report_unreachable(id)`, so that every peer with
/// a replica there tells raft.
pub type UnreachableReporter = Arc<dyn Fn(u64) + Send + Sync>;

/// Called with a store id when a connection to that store is up again after
/// it failed; a store passes `move |id| router.report_reachable(id)`, so
/// that hibernated leaders with a peer there wake and catch it up at once
/// (see [`GrpcTransport::set_reachable_reporter`]).
pub type ReachableReporter = Arc<dyn Fn(u64) + Send + Sync>;

/// Counters of a [`GrpcTransport`], summed over every connection (the
/// per-store numbers go to the `metrics` facade).
#[derive(Debug, Default)]
struct Counters {
    sent_messages: AtomicU64,
    sent_batches: AtomicU64,
    sent_bytes: AtomicU64,
    dropped_full: AtomicU64,
    dropped_unreachable: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    stream_failures: AtomicU64,
}

/// What a [`GrpcTransport`] did so far (monotonic counters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GrpcTransportStats {
    /// Messages handed to a gRPC stream.
    pub sent_messages: u64,
    /// `BatchRaftMessage`s handed to a gRPC stream.
    pub sent_batches: u64,
    /// Encoded bytes of those batches.
    pub sent_bytes: u64,
    /// Messages dropped because their connection's queue was full.
    pub dropped_full: u64,
    /// Messages dropped because their store was unknown or unreachable
    /// (including what was queued when a connection broke).
    pub dropped_unreachable: u64,
    /// Connections established (first connections and reconnections).
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Established streams that broke or were refused.
    pub stream_failures: u64,
}

impl Counters {
    fn snapshot(&self) -> GrpcTransportStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GrpcTransportStats {
            sent_messages: l(&self.sent_messages),
            sent_batches: l(&self.sent_batches),
            sent_bytes: l(&self.sent_bytes),
            dropped_full: l(&self.dropped_full),
            dropped_unreachable: l(&self.dropped_unreachable),
            connects: l(&self.connects),
            connect_failures: l(&self.connect_failures),
            stream_failures: l(&self.stream_failures),
        }
    }
}

/// Connection state: messages are queued while connecting or up, refused
/// while down.
const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Identifies one connection: destination store and connection index.
type ConnKey = (u64, usize);

/// One connection to one store, shared by every transport clone; its task
/// owns the receiving end of `tx`.
struct Conn {
    to_store: u64,
    state: AtomicU8,
    /// Messages in `tx` plus those the task holds but has not batched yet.
    queued: AtomicUsize,
    tx: mpsc::UnboundedSender<Vec<RaftMessage>>,
    metrics: m::ConnMetrics,
}

impl Conn {
    /// A new connection to `to_store` and the receiving end of its queue.
    fn new(to_store: u64) -> (Arc<Conn>, mpsc::UnboundedReceiver<Vec<RaftMessage>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            to_store,
            state: AtomicU8::new(CONNECTING),
            queued: AtomicUsize::new(0),
            tx,
            metrics: m::ConnMetrics::new(to_store),
        });
        (conn, rx)
    }

    fn set_state(&self, s: u8) {
        self.state.store(s, Ordering::Release);
    }

    fn is_down(&self) -> bool {
        self.state.load(Ordering::Acquire) == DOWN
    }

    /// Queues one flush worth of messages, dropping what does not fit.
    fn enqueue(&self, mut msgs: Vec<RaftMessage>, cap: usize, counters: &Counters) {
        let n = msgs.len();
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > cap {
            let fit = cap.saturating_sub(before).min(n);
            let dropped = n - fit;
            msgs.truncate(fit);
            self.queued.fetch_sub(dropped, Ordering::AcqRel);
            counters
                .dropped_full
                .fetch_add(dropped as u64, Ordering::Relaxed);
            self.metrics.dropped_full.increment(dropped as u64);
        }
        if msgs.is_empty() {
            return;
        }
        let len = msgs.len();
        if self.tx.send(msgs).is_err() {
            // The task ended (transport shut down).
            self.queued.fetch_sub(len, Ordering::AcqRel);
            counters
                .dropped_unreachable
                .fetch_add(len as u64, Ordering::Relaxed);
        }
    }
}

struct Shared {
    store_id: u64,
    cfg: Config,
    book: AddressBook,
    handle: Handle,
    reporter: UnreachableReporter,
    reachable: std::sync::OnceLock<ReachableReporter>,
    conns: RwLock<HashMap<ConnKey, Arc<Conn>>>,
    counters: Counters,
    stop: watch::Sender<bool>,
    logger: Logger,
}

/// A [`raftstore::Transport`] that carries raft messages to other stores'
/// gRPC servers (`Raft.BatchRaft`), one long-lived stream per connection.
///
/// Cloning gives another handle to the same connections with its own send
/// buffers (one clone per raft poller). Connection tasks run on the tokio
/// runtime given to [`GrpcTransport::new`] and are started on the first
/// message for a store. [`GrpcTransport::shutdown`] ends them.
///
/// Bounded everywhere: at most `raft_queue_capacity` messages wait per
/// connection (more are dropped and counted), and a batch holds at most
/// `raft_msg_max_batch_size` messages and about `raft_msg_max_batch_bytes`.
pub struct GrpcTransport {
    shared: Arc<Shared>,
    /// This clone's buffers, one per connection it sent to.
    buffers: HashMap<ConnKey, (Arc<Conn>, Vec<RaftMessage>)>,
}

impl Clone for GrpcTransport {
    fn clone(&self) -> Self {
        GrpcTransport {
            shared: self.shared.clone(),
            buffers: HashMap::new(),
        }
    }
}

impl GrpcTransport {
    /// Calls `reporter` with a store's id whenever a connection to it comes
    /// up after a failure (not on the first connection). Set once, before
    /// or after the transport is handed to the store; returns `false` (and
    /// keeps the first) if one was set already. Every clone shares it.
    ///
    /// A store passes `move |id| router.report_reachable(id)`: a region
    /// hibernating with a peer on a store that was down wakes its leader,
    /// which catches that peer up instead of waiting for the peer's own
    /// liveness check.
    pub fn set_reachable_reporter(&self, reporter: ReachableReporter) -> bool {
        self.shared.reachable.set(reporter).is_ok()
    }

    /// A transport sending as store `store_id` to the stores in `book`,
    /// running its connections on `handle`'s runtime and calling `reporter`
    /// when a connection to a store fails.
    ///
    /// `cfg` should be valid ([`Config::validate`]); the metric handles are
    /// registered with the `metrics` recorder installed at the time each
    /// connection is created.
    pub fn new(
        store_id: u64,
        book: AddressBook,
        cfg: Config,
        handle: Handle,
        reporter: UnreachableReporter,
        logger: &Logger,
    ) -> GrpcTransport {
        let (stop, _) = watch::channel(false);
        GrpcTransport {
            shared: Arc::new(Shared {
                store_id,
                cfg,
                book,
                handle,
                reporter,
                reachable: std::sync::OnceLock::new(),
                conns: RwLock::new(HashMap::new()),
                counters: Counters::default(),
                stop,
                logger: logger.new(o!("store_id" => store_id)),
            }),
            buffers: HashMap::new(),
        }
    }

    /// The counters summed over every connection.
    pub fn stats(&self) -> GrpcTransportStats {
        self.shared.counters.snapshot()
    }

    /// Ends every connection task (their streams are closed after what they
    /// hold is handed over); later sends are refused. Idempotent.
    pub fn shutdown(&self) {
        let _ = self.shared.stop.send(true);
        for conn in self
            .shared
            .conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            conn.set_state(DOWN);
        }
    }

    /// The connection for `key`, created (and its task started) on first
    /// use. `None` after shutdown.
    fn conn(&self, key: ConnKey) -> Option<Arc<Conn>> {
        if *self.shared.stop.borrow() {
            return None;
        }
        if let Some(c) = self
            .shared
            .conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Some(c.clone());
        }
        let mut conns = self.shared.conns.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = conns.get(&key) {
            return Some(c.clone());
        }
        let (conn, rx) = Conn::new(key.0);
        conns.insert(key, conn.clone());
        let task = ConnTask {
            shared: self.shared.clone(),
            conn: conn.clone(),
            rx,
            carry: VecDeque::new(),
            logger: self
                .shared
                .logger
                .new(o!("to_store" => key.0, "conn" => key.1)),
        };
        self.shared.handle.spawn(task.run());
        Some(conn)
    }

    fn unreachable(&self, to: u64) -> raftstore::Error {
        self.shared
            .counters
            .dropped_unreachable
            .fetch_add(1, Ordering::Relaxed);
        raftstore::Error::StoreUnreachable(to)
    }
}

/// Streams one snapshot to `addr` on a connection of its own (so a large
/// snapshot never holds up the raft messages of the batch stream).
async fn stream_snapshot(
    cfg: &Config,
    addr: &str,
    msg: RaftMessage,
    chunks: SharedChunks,
    sent_bytes: Arc<dyn Fn(usize) + Send + Sync>,
) -> Result<(), String> {
    let channel = connect(cfg, addr).await?;
    let mut client = RaftClient::new(channel).max_encoding_message_size(cfg.max_message_size);
    let stream = ChunkStream {
        msg: Some(msg),
        chunks,
        next: 0,
        sent_bytes,
    };
    client
        .snapshot(stream)
        .await
        .map(|_| ())
        .map_err(|s| s.to_string())
}

/// The request stream of `Raft.Snapshot`: the message with the first chunk,
/// then the other chunks, copied into messages one at a time.
struct ChunkStream {
    msg: Option<RaftMessage>,
    chunks: SharedChunks,
    next: usize,
    sent_bytes: Arc<dyn Fn(usize) + Send + Sync>,
}

impl futures_core::Stream for ChunkStream {
    type Item = SnapshotChunk;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<SnapshotChunk>> {
        let mut chunk = SnapshotChunk::default();
        if let Some(msg) = self.msg.take() {
            chunk.set_message(msg);
        } else if self.next >= self.chunks.chunks().len() {
            return Poll::Ready(None);
        }
        if let Some(data) = self.chunks.chunks().get(self.next) {
            chunk.set_data(data.clone());
            (self.sent_bytes)(data.len());
            self.next += 1;
        }
        Poll::Ready(Some(chunk))
    }
}

impl Transport for GrpcTransport {
    /// Streams the snapshot on a connection of its own (`Raft.Snapshot`),
    /// on the transport's runtime; the outcome is reported when the
    /// receiving store answers. Sends are bounded by the store's
    /// `SnapManager` (`snap_max_concurrent_sends`).
    fn send_snapshot(&mut self, msg: RaftMessage, snap: OutgoingSnapshot) -> raftstore::Result<()> {
        let to = msg.get_to_peer().get_store_id();
        let addr = match self.shared.book.get(to) {
            Some(addr) if !*self.shared.stop.borrow() && to != self.shared.store_id => addr,
            _ => {
                snap.finish(false);
                return Err(self.unreachable(to));
            }
        };
        let shared = self.shared.clone();
        let chunks = snap.shared_chunks();
        let snap = Arc::new(std::sync::Mutex::new(Some(snap)));
        let progress = snap.clone();
        let sent_bytes: Arc<dyn Fn(usize) + Send + Sync> = Arc::new(move |n| {
            if let Some(s) = progress.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                s.record_sent(n);
            }
        });
        self.shared.handle.spawn(async move {
            let res = stream_snapshot(&shared.cfg, &addr, msg, chunks, sent_bytes).await;
            let taken = snap.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(snap) = taken {
                match res {
                    Ok(()) => {
                        counter!("raft_snapshots_sent_total").increment(1);
                        snap.finish(true);
                    }
                    Err(why) => {
                        warn!(shared.logger, "snapshot send failed"; "to_store" => to,
                            "snapshot" => %snap.key(), "error" => why);
                        snap.finish(false);
                    }
                }
            }
        });
        Ok(())
    }

    fn send(&mut self, msg: RaftMessage) -> raftstore::Result<()> {
        let to = msg.get_to_peer().get_store_id();
        let idx = (msg.get_region_id() % self.shared.cfg.raft_conns_per_store as u64) as usize;
        let key = (to, idx);
        if !self.buffers.contains_key(&key) {
            // First message of this clone to that connection: check the
            // destination once (later ones only look at the buffer map).
            if to == self.shared.store_id || !self.shared.book.contains(to) {
                return Err(self.unreachable(to));
            }
            let Some(conn) = self.conn(key) else {
                return Err(self.unreachable(to));
            };
            self.buffers.insert(key, (conn, Vec::new()));
        }
        let Some((conn, buf)) = self.buffers.get_mut(&key) else {
            return Err(self.unreachable(to));
        };
        if conn.is_down() {
            conn.metrics.dropped_unreachable.increment(1);
            return Err(self.unreachable(to));
        }
        buf.push(msg);
        Ok(())
    }

    fn flush(&mut self) {
        let cap = self.shared.cfg.raft_queue_capacity;
        for (conn, buf) in self.buffers.values_mut() {
            if buf.is_empty() {
                continue;
            }
            let msgs = std::mem::replace(buf, Vec::with_capacity(buf.len()));
            conn.enqueue(msgs, cap, &self.shared.counters);
        }
    }
}

/// A rough size of a message on the wire, for the batch byte bound: the
/// payload of its entries and snapshot plus a fixed allowance for headers.
fn estimated_size(msg: &RaftMessage) -> usize {
    let m = msg.get_message();
    let entries: usize = m
        .get_entries()
        .iter()
        .map(|e| e.get_data().len() + e.get_context().len() + 24)
        .sum();
    96 + entries + m.get_snapshot().get_data().len() + m.get_context().len()
}

/// How a connection's stream ended.
enum StreamEnd {
    /// The transport is shutting down.
    Stopped,
    /// The stream broke, or the store refused or closed it.
    Failed(String),
}

/// The task of one connection: connects, streams batches, reconnects.
struct ConnTask {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    rx: mpsc::UnboundedReceiver<Vec<RaftMessage>>,
    /// Messages taken from `rx` that did not fit in the last batch.
    carry: VecDeque<RaftMessage>,
    logger: Logger,
}

impl ConnTask {
    async fn run(mut self) {
        let cfg = self.shared.cfg.clone();
        let mut stop = self.shared.stop.subscribe();
        let mut backoff = cfg.initial_backoff();
        let mut failures_in_a_row = 0u32;
        // Whether the connection failed since it was last up (the next
        // connect is then a comeback worth reporting).
        let mut was_down = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let to = self.conn.to_store;
            let attempt = match self.shared.book.get(to) {
                Some(addr) => connect(&cfg, &addr).await,
                None => Err(format!("store {to} is not in the address book")),
            };
            let failure = match attempt {
                Ok(channel) => {
                    self.conn.set_state(UP);
                    self.shared
                        .counters
                        .connects
                        .fetch_add(1, Ordering::Relaxed);
                    info!(self.logger, "connected");
                    if std::mem::take(&mut was_down) {
                        if let Some(report) = self.shared.reachable.get() {
                            report(to);
                        }
                    }
                    backoff = cfg.initial_backoff();
                    failures_in_a_row = 0;
                    match self.stream(channel, &mut stop).await {
                        StreamEnd::Stopped => return,
                        StreamEnd::Failed(why) => {
                            self.shared
                                .counters
                                .stream_failures
                                .fetch_add(1, Ordering::Relaxed);
                            self.conn.metrics.stream_failures.increment(1);
                            warn!(self.logger, "raft stream broke"; "error" => why);
                            None
                        }
                    }
                }
                Err(why) => {
                    self.shared
                        .counters
                        .connect_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.conn.metrics.connect_failures.increment(1);
                    Some(why)
                }
            };
            self.conn.set_state(DOWN);
            was_down = true;
            let dropped = self.drop_queued();
            if let Some(why) = failure {
                failures_in_a_row += 1;
                // The first failure of a run is worth a warning; the retries
                // after it only at debug level.
                if failures_in_a_row == 1 {
                    warn!(self.logger, "cannot connect"; "error" => why, "dropped" => dropped,
                          "retry_in_ms" => backoff.as_millis() as u64);
                } else {
                    debug!(self.logger, "cannot connect"; "error" => why,
                           "attempts" => failures_in_a_row, "dropped" => dropped);
                }
            }
            (self.shared.reporter)(to);
            let stopped = tokio::select! {
                _ = tokio::time::sleep(backoff) => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopped {
                return;
            }
            backoff = (backoff * 2).min(cfg.max_backoff());
        }
    }

    /// Drops every queued message (the connection is down), returning how
    /// many.
    fn drop_queued(&mut self) -> usize {
        let mut n = self.carry.len();
        self.carry.clear();
        while let Ok(chunk) = self.rx.try_recv() {
            n += chunk.len();
        }
        if n > 0 {
            self.conn.queued.fetch_sub(n, Ordering::AcqRel);
            self.shared
                .counters
                .dropped_unreachable
                .fetch_add(n as u64, Ordering::Relaxed);
            self.conn.metrics.dropped_unreachable.increment(n as u64);
        }
        n
    }

    /// The next batch: what `carry` holds plus what is queued, up to the
    /// batch bounds (at least one message).
    fn next_batch(&mut self) -> BatchRaftMessage {
        let cfg = &self.shared.cfg;
        while self.carry.len() < cfg.raft_msg_max_batch_size {
            match self.rx.try_recv() {
                Ok(chunk) => self.carry.extend(chunk),
                Err(_) => break,
            }
        }
        let mut batch = BatchRaftMessage::default();
        let mut bytes = 0;
        while let Some(msg) = self.carry.front() {
            let size = estimated_size(msg);
            let msgs = batch.get_msgs();
            if !msgs.is_empty()
                && (msgs.len() >= cfg.raft_msg_max_batch_size
                    || bytes + size > cfg.raft_msg_max_batch_bytes)
            {
                break;
            }
            bytes += size;
            if let Some(msg) = self.carry.pop_front() {
                batch.mut_msgs().push(msg);
            }
        }
        self.conn
            .queued
            .fetch_sub(batch.get_msgs().len(), Ordering::AcqRel);
        batch
    }

    /// Streams batches on `channel` until the stream fails or the
    /// transport stops.
    async fn stream(
        &mut self,
        channel: tonic::transport::Channel,
        stop: &mut watch::Receiver<bool>,
    ) -> StreamEnd {
        let (batch_tx, batch_rx) = mpsc::channel::<BatchRaftMessage>(2);
        let mut client =
            RaftClient::new(channel).max_encoding_message_size(self.shared.cfg.max_message_size);
        let call = client.batch_raft(BatchStream { rx: batch_rx });
        tokio::pin!(call);
        let ended = |res: Result<tonic::Response<_>, tonic::Status>| match res {
            Ok(_) => StreamEnd::Failed("the store closed the stream".to_owned()),
            Err(status) => StreamEnd::Failed(status.to_string()),
        };
        /// What woke the connection task up.
        enum Event<R> {
            CallEnded(R),
            Stop,
            Chunk(Option<Vec<RaftMessage>>),
            Sent(bool),
        }
        loop {
            if self.carry.is_empty() {
                let event = tokio::select! {
                    res = &mut call => Event::CallEnded(res),
                    _ = stop.wait_for(|s| *s) => Event::Stop,
                    chunk = self.rx.recv() => Event::Chunk(chunk),
                };
                match event {
                    Event::CallEnded(res) => return ended(res),
                    Event::Chunk(Some(chunk)) => self.carry.extend(chunk),
                    Event::Stop | Event::Chunk(None) | Event::Sent(_) => {
                        return self.close(batch_tx, call).await
                    }
                }
            }
            let batch = self.next_batch();
            let (count, bytes) = (batch.get_msgs().len() as u64, batch.compute_size() as u64);
            let event = tokio::select! {
                sent = batch_tx.send(batch) => Event::Sent(sent.is_ok()),
                res = &mut call => Event::CallEnded(res),
                _ = stop.wait_for(|s| *s) => Event::Stop,
            };
            match event {
                Event::Sent(true) => {
                    let c = &self.shared.counters;
                    c.sent_messages.fetch_add(count, Ordering::Relaxed);
                    c.sent_batches.fetch_add(1, Ordering::Relaxed);
                    c.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
                    self.conn.metrics.record_batch(count, bytes);
                }
                Event::Sent(false) => return StreamEnd::Failed("the stream was closed".to_owned()),
                Event::CallEnded(res) => return ended(res),
                Event::Stop | Event::Chunk(_) => return self.close(batch_tx, call).await,
            }
        }
    }

    /// Ends the stream cleanly: closes the request stream and waits (a
    /// little) for the store's answer.
    async fn close<F>(
        &mut self,
        batch_tx: mpsc::Sender<BatchRaftMessage>,
        call: Pin<&mut F>,
    ) -> StreamEnd
    where
        F: std::future::Future,
    {
        drop(batch_tx);
        let _ = tokio::time::timeout(Duration::from_secs(1), call).await;
        self.drop_queued();
        StreamEnd::Stopped
    }
}

/// Opens an HTTP/2 connection to `addr`.
async fn connect(cfg: &Config, addr: &str) -> Result<tonic::transport::Channel, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr:?}: {e}"))?
        .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_millis(cfg.keepalive_interval_ms))
        .keep_alive_timeout(Duration::from_millis(cfg.keepalive_timeout_ms))
        .keep_alive_while_idle(true);
    endpoint
        .connect()
        .await
        .map_err(|e| format!("connect to {addr}: {}", error_chain(&e)))
}

/// An error with its sources, `a: b: c` (tonic's transport errors say
/// little at the top level: "transport error").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The request stream of a `BatchRaft` call: the batches the connection
/// task hands over.
struct BatchStream {
    rx: mpsc::Receiver<BatchRaftMessage>,
}

impl futures_core::Stream for BatchStream {
    type Item = BatchRaftMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BatchRaftMessage>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvproto_lite::eraftpb::Entry;

    fn msg(to_store: u64, region: u64, payload: usize) -> RaftMessage {
        let mut m = RaftMessage::default();
        m.set_region_id(region);
        m.mut_to_peer().set_store_id(to_store);
        let mut e = Entry::default();
        e.set_data(vec![0u8; payload].into());
        m.mut_message().mut_entries().push(e);
        m
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn transport(rt: &tokio::runtime::Runtime, cfg: Config) -> GrpcTransport {
        let book = AddressBook::new([(1, "127.0.0.1:1".to_owned()), (2, "127.0.0.1:1".to_owned())])
            .unwrap();
        let logger = Logger::root(slog::Discard, o!());
        GrpcTransport::new(1, book, cfg, rt.handle().clone(), Arc::new(|_| {}), &logger)
    }

    /// A connection to store 2 and its task, not started: the test drives
    /// `next_batch` itself.
    fn idle_task(t: &GrpcTransport) -> (Arc<Conn>, ConnTask) {
        let (conn, rx) = Conn::new(2);
        let task = ConnTask {
            shared: t.shared.clone(),
            conn: conn.clone(),
            rx,
            carry: VecDeque::new(),
            logger: Logger::root(slog::Discard, o!()),
        };
        (conn, task)
    }

    #[test]
    fn unknown_and_own_stores_are_unreachable() {
        let rt = runtime();
        let mut t = transport(&rt, Config::default());
        assert!(matches!(
            t.send(msg(9, 1, 0)),
            Err(raftstore::Error::StoreUnreachable(9))
        ));
        assert!(t.send(msg(1, 1, 0)).is_err());
        assert_eq!(t.stats().dropped_unreachable, 2);
    }

    #[test]
    fn a_full_queue_drops_and_counts_the_overflow() {
        let rt = runtime();
        let cfg = Config {
            raft_msg_max_batch_size: 4,
            raft_queue_capacity: 10,
            ..Config::default()
        };
        let mut t = transport(&rt, cfg);
        // The connection task never runs (the runtime is not driven), so
        // nothing leaves the queue.
        for i in 0..25 {
            t.send(msg(2, i, 0)).unwrap();
        }
        t.flush();
        assert_eq!(t.stats().dropped_full, 15);
        let conn = t.conn((2, 0)).unwrap();
        assert_eq!(conn.queued.load(Ordering::Acquire), 10);
        t.shutdown();
        assert!(t.send(msg(2, 1, 0)).is_err());
    }

    #[test]
    fn batches_respect_the_count_and_byte_bounds() {
        let rt = runtime();
        let cfg = Config {
            raft_msg_max_batch_size: 3,
            raft_msg_max_batch_bytes: 10_000,
            ..Config::default()
        };
        let t = transport(&rt, cfg);
        let (conn, mut task) = idle_task(&t);
        // Seven small messages in two flushes, then two large ones.
        conn.enqueue(
            (0..4).map(|i| msg(2, i, 10)).collect(),
            100,
            &t.shared.counters,
        );
        conn.enqueue(
            (4..7).map(|i| msg(2, i, 10)).collect(),
            100,
            &t.shared.counters,
        );
        conn.enqueue(
            vec![msg(2, 7, 6_000), msg(2, 8, 6_000)],
            100,
            &t.shared.counters,
        );
        let sizes: Vec<usize> = (0..5).map(|_| task.next_batch().get_msgs().len()).collect();
        // The third batch holds the last small one and the first large one;
        // the two large ones together exceed the byte bound.
        assert_eq!(sizes, [3, 3, 2, 1, 0]);
        assert_eq!(conn.queued.load(Ordering::Acquire), 0);
        // Order is kept across batches.
        conn.enqueue(
            (10..15).map(|i| msg(2, i, 1)).collect(),
            100,
            &t.shared.counters,
        );
        let ids: Vec<u64> = [task.next_batch(), task.next_batch()]
            .iter()
            .flat_map(|b| b.get_msgs().iter().map(|m| m.get_region_id()))
            .collect();
        assert_eq!(ids, [10, 11, 12, 13, 14]);
    }

    #[test]
    fn a_large_message_goes_alone_but_is_not_dropped() {
        let cfg = Config {
            raft_msg_max_batch_bytes: 1_000,
            ..Config::default()
        };
        let rt = runtime();
        let t = transport(&rt, cfg);
        let (conn, mut task) = idle_task(&t);
        conn.enqueue(
            vec![msg(2, 1, 5_000), msg(2, 2, 1)],
            100,
            &t.shared.counters,
        );
        assert_eq!(task.next_batch().get_msgs().len(), 1);
        assert_eq!(task.next_batch().get_msgs().len(), 1);
    }
}
