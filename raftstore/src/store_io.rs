//! Store I/O writers: the raft log written off the raft poller threads.
//!
//! With `Config::store_io_pool_size = N > 0` a store runs `N` writers. A
//! raft poller no longer writes its round's log batch itself; it hands the
//! round's log writes to the writers and goes on with other regions:
//!
//! ```text
//! raft poller, per peer Ready (no snapshot)      store writer (one per region:
//!   send ready.messages() at once                  region_id % N, so one region's
//!   hand committed entries to apply                writes stay in order)
//!   stage entries + raft state as a PeerWrite      drain the channel: every task
//!     in the round's WriteTask for the region's    queued (many rounds, many
//!     writer; PeerStorage serves them from its     pollers) goes into ONE log batch
//!     cache until they are durable                 write it, with one fsync if any
//!   RawNode::advance_append_async(ready)           task must sync
//!   hold ready.persisted_messages()                for each (region, peer) written:
//! end of round: one WriteTask per writer  ---->      PeerMsg::Persisted { peer_id,
//!                                                      ready_number }   (the last one)
//! peer, on Persisted (peer id and number checked):
//!   RawNode::on_persist_ready(number)
//!   send the held messages of the Readies up to `number`
//!   the next Ready carries what became committed (raft-rs hands out only
//!   entries that are both committed and persisted)
//! ```
//!
//! The rules that keep this safe:
//!
//! - **Order per region.** A region's writes go to one writer through one
//!   FIFO channel, and a poller sends its round's tasks before the round's
//!   FSMs are released to another poller, so a region's writes are made
//!   in the order its Readies were taken (a new leader's truncation lands
//!   after the older append it overwrites).
//! - **Readable before durable.** raft-rs drops the entries of a Ready
//!   from its unstable log at `advance_append_async`; from then on it
//!   reads them through [`PeerStorage`](crate::PeerStorage), which keeps
//!   entries of writes in flight in its cache (never evicted before they
//!   are durable) and serves the durable prefix from the engine.
//! - **Durable state only at restart.** A restart reads the engine, which
//!   holds only what a writer made durable; `PeerStorage`'s in-memory raft
//!   state is the staged one (what will be written next).
//! - **Snapshots inline.** A Ready with a snapshot is taken only once the
//!   peer has no write in flight, and is written on the poller thread as in
//!   inline mode (the snapshot rewrites the region's log).
//! - **Destroy after durability.** A removed peer is destroyed (and its
//!   log cleaned) only once none of its writes is in flight.
//! - **Disk failure.** A failed write stops the store (recorded in its
//!   `DiskFailure`): the writer drops everything else it gets, notifies
//!   nobody, and every poller fences its peers; no message that waited for
//!   persistence is ever sent.
//!
//! The idea (a pool of store writers fed per poll round, raft-rs's
//! asynchronous `advance_append_async` / `on_persist_ready`) is TiKV's
//! `async_io` store writers; this module is its own, smaller design: one
//! task per round per writer, one batch per drain, notification through
//! the peers' mailboxes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use apply::DiskFailure;
use crossbeam_channel::{Receiver, Sender};
use engine::{RaftLogBatch, RaftLogEngine};
use kvproto_lite::eraftpb::Entry;
use kvproto_lite::raft_serverpb::RaftLocalState;
use slog::{error, Logger};

use crate::metrics::PollerMetrics;
use crate::store_meta::StoreStats;

/// How a writer tells a peer its Readies are durable: called with
/// `(region_id, peer_id, ready_number)`; the store sends the peer a
/// `PeerMsg::Persisted` (this module sits below the router and names no
/// FSM).
pub(crate) type PersistNotifier = Arc<dyn Fn(u64, u64, u64) + Send + Sync>;

/// Items a writer's log batch is first sized for.
const WRITER_BATCH_ITEMS: usize = 256;

/// One peer Ready's part of a write: the entries and raft state to make
/// durable, and who to tell when they are.
#[derive(Debug)]
pub(crate) struct PeerWrite {
    pub(crate) region_id: u64,
    pub(crate) peer_id: u64,
    /// The Ready's number (`raft::Ready::number`).
    pub(crate) ready_number: u64,
    /// Entries to append (may overwrite a conflicting suffix).
    pub(crate) entries: Vec<Entry>,
    /// The raft state after the Ready (`None`: unchanged; the write only
    /// keeps the Ready's place in the region's order).
    pub(crate) raft_state: Option<RaftLocalState>,
}

/// One poll round's writes for one writer.
#[derive(Debug, Default)]
pub(crate) struct WriteTask {
    pub(crate) writes: Vec<PeerWrite>,
    /// Some Ready of the task must be synced (new entries, term or vote).
    pub(crate) sync: bool,
}

/// What a writer's channel carries.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    Write(WriteTask),
    /// Write what came before, then stop.
    Stop,
}

/// The poller's side of the store's writers: one channel per writer and
/// the round's task for each.
pub(crate) struct IoSenders {
    senders: Vec<Sender<WriterMsg>>,
    tasks: Vec<WriteTask>,
}

impl IoSenders {
    pub(crate) fn new(senders: Vec<Sender<WriterMsg>>) -> IoSenders {
        let tasks = senders.iter().map(|_| WriteTask::default()).collect();
        IoSenders { senders, tasks }
    }

    /// Adds a peer's write to the round's task of the region's writer.
    pub(crate) fn stage(&mut self, write: PeerWrite, sync: bool) {
        let n = self.tasks.len().max(1) as u64;
        let i = (write.region_id % n) as usize;
        if let Some(task) = self.tasks.get_mut(i) {
            task.sync |= sync;
            task.writes.push(write);
        }
    }

    /// Whether the round staged any write.
    pub(crate) fn has_staged(&self) -> bool {
        self.tasks.iter().any(|t| !t.writes.is_empty())
    }

    /// Sends the round's tasks to their writers. Returns `false` if a
    /// writer is gone (its task is lost; the caller stops the store).
    pub(crate) fn send(&mut self) -> bool {
        let mut ok = true;
        for (task, tx) in self.tasks.iter_mut().zip(&self.senders) {
            if task.writes.is_empty() {
                continue;
            }
            let task = std::mem::take(task);
            ok &= tx.send(WriterMsg::Write(task)).is_ok();
        }
        ok
    }

    /// Drops the round's tasks unsent (the store stopped).
    pub(crate) fn discard(&mut self) {
        for task in &mut self.tasks {
            *task = WriteTask::default();
        }
    }
}

/// Creates the channels of `n` writers: the senders for the pollers and
/// the receivers for the writers.
pub(crate) fn writer_channels(n: usize) -> (Vec<Sender<WriterMsg>>, Vec<Receiver<WriterMsg>>) {
    (0..n).map(|_| crossbeam_channel::unbounded()).unzip()
}

/// One store writer: drains its channel and writes what it got as one log
/// batch. Run on its own thread by [`StoreWriters`], or stepped by hand
/// as a [`ManualWriter`].
pub(crate) struct StoreWriter<ER: RaftLogEngine> {
    store_id: u64,
    engine: ER,
    rx: Receiver<WriterMsg>,
    notifier: PersistNotifier,
    disk_failure: Arc<DiskFailure>,
    stats: Arc<StoreStats>,
    metrics: PollerMetrics,
    sync_log: bool,
    batch: ER::LogBatch,
    /// (region, peer, number) to notify after the batch is durable.
    notify: Vec<(u64, u64, u64)>,
    logger: Logger,
}

impl<ER: RaftLogEngine> StoreWriter<ER> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store_id: u64,
        engine: ER,
        rx: Receiver<WriterMsg>,
        notifier: PersistNotifier,
        disk_failure: Arc<DiskFailure>,
        stats: Arc<StoreStats>,
        sync_log: bool,
        logger: Logger,
    ) -> StoreWriter<ER> {
        let batch = engine.log_batch(WRITER_BATCH_ITEMS);
        StoreWriter {
            store_id,
            engine,
            rx,
            notifier,
            disk_failure,
            stats,
            metrics: PollerMetrics::new(),
            sync_log,
            batch,
            notify: Vec::new(),
            logger,
        }
    }

    /// Tasks queued and not written yet.
    fn queued(&self) -> usize {
        self.rx.len()
    }

    /// Moves the tasks queued now into `tasks`, up to a stop; returns
    /// whether a stop was met.
    fn take_queued(&mut self, tasks: &mut Vec<WriteTask>) -> bool {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                WriterMsg::Write(task) => tasks.push(task),
                WriterMsg::Stop => return true,
            }
        }
        false
    }

    /// Writes every task queued now as one batch. Returns `(tasks, stop)`:
    /// how many tasks were taken and whether a stop was among them.
    fn write_queued(&mut self) -> (usize, bool) {
        let mut tasks = Vec::new();
        let stop = self.take_queued(&mut tasks);
        let n = tasks.len();
        self.write(tasks);
        (n, stop)
    }

    /// Blocks for the next message, then writes it and everything queued
    /// behind it as one batch. Returns `false` once stopped (or every
    /// sender is gone).
    fn run_once(&mut self) -> bool {
        let first = match self.rx.recv() {
            Ok(WriterMsg::Write(task)) => task,
            Ok(WriterMsg::Stop) | Err(_) => return false,
        };
        let mut tasks = vec![first];
        let stop = self.take_queued(&mut tasks);
        self.write(tasks);
        !stop
    }

    /// Writes `tasks` as one log batch (one fsync if any needs it), then
    /// tells each peer written the last Ready of it that is durable.
    fn write(&mut self, tasks: Vec<WriteTask>) {
        if tasks.is_empty() {
            return;
        }
        let mut sync = false;
        self.notify.clear();
        if self.disk_failure.is_failed() {
            // The store stopped: nothing more is written. The peers are
            // only woken, to be fenced (see `fail`).
            for task in tasks {
                for w in task.writes {
                    self.note(&w);
                }
            }
            self.wake_fenced();
            return;
        }
        let mut staged: crate::Result<()> = Ok(());
        for task in tasks {
            sync |= task.sync;
            for w in task.writes {
                if staged.is_ok() {
                    staged = self.stage(&w);
                }
                self.note(&w);
            }
        }
        if let Err(e) = staged {
            self.fail(format!("cannot stage raft log write: {e}"));
            return;
        }
        if !self.batch.is_empty() {
            let sync = sync && self.sync_log;
            let failed = consume_log_batch(
                &self.engine,
                &mut self.batch,
                sync,
                &self.stats,
                &self.metrics,
            )
            .err();
            if let Some(e) = failed {
                self.fail(format!("raft log write failed: {e}"));
                return;
            }
        }
        self.stats
            .async_writes
            .fetch_add(self.notify.len() as u64, Ordering::Relaxed);
        for &(region_id, peer_id, ready_number) in &self.notify {
            (self.notifier)(region_id, peer_id, ready_number);
        }
        self.notify.clear();
    }

    /// Remembers to tell `w`'s peer (once per peer, the last number).
    fn note(&mut self, w: &PeerWrite) {
        match self
            .notify
            .iter_mut()
            .find(|(r, p, _)| *r == w.region_id && *p == w.peer_id)
        {
            Some(slot) => slot.2 = slot.2.max(w.ready_number),
            None => self.notify.push((w.region_id, w.peer_id, w.ready_number)),
        }
    }

    /// After a failure: wakes the peers of the lost writes, so that their
    /// poller fences them at once (it checks the store's failure before it
    /// handles any message, so the report is never taken as durability).
    fn wake_fenced(&mut self) {
        for &(region_id, peer_id, ready_number) in &self.notify {
            (self.notifier)(region_id, peer_id, ready_number);
        }
        self.notify.clear();
    }

    fn stage(&mut self, w: &PeerWrite) -> crate::Result<()> {
        if !w.entries.is_empty() {
            self.batch.append(w.region_id, w.entries.clone())?;
        }
        if let Some(state) = &w.raft_state {
            self.batch.put_raft_state(w.region_id, state)?;
        }
        Ok(())
    }

    /// Stops the store after a failed write: the failure is recorded
    /// first, then the batch is dropped and its peers are woken to be
    /// fenced.
    fn fail(&mut self, reason: String) {
        self.batch = self.engine.log_batch(WRITER_BATCH_ITEMS);
        if self.disk_failure.record(reason.clone()) {
            error!(self.logger, "store writer failed: the store stops; nothing more is written";
                "store_id" => self.store_id, "error" => %reason);
        }
        self.wake_fenced();
    }
}

/// The writer threads of a store started with [`crate::RaftBatchSystem::spawn`].
pub(crate) struct StoreWriters {
    handles: Vec<(Sender<WriterMsg>, JoinHandle<()>)>,
}

impl StoreWriters {
    /// Starts one thread per writer.
    pub(crate) fn start<ER: RaftLogEngine>(
        writers: Vec<StoreWriter<ER>>,
        senders: &[Sender<WriterMsg>],
    ) -> crate::Result<StoreWriters> {
        let mut handles = Vec::with_capacity(writers.len());
        for (i, (mut writer, tx)) in writers.into_iter().zip(senders).enumerate() {
            let name = format!("store-io-{}-{i}", writer.store_id);
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || while writer.run_once() {})
                .map_err(|e| crate::Error::Other(format!("spawn store writer: {e}")))?;
            handles.push((tx.clone(), handle));
        }
        Ok(StoreWriters { handles })
    }

    /// Asks every writer to write what it was given and stop, and joins
    /// them. Call after the raft pollers stopped (nothing more is sent).
    pub(crate) fn stop(&mut self) {
        for (tx, _) in &self.handles {
            let _ = tx.send(WriterMsg::Stop);
        }
        for (_, handle) in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for StoreWriters {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A store writer driven by hand (see
/// [`RaftBatchSystem::spawn_manual_pool`](crate::RaftBatchSystem::spawn_manual_pool)):
/// the caller decides when the tasks the raft pollers handed it are
/// written, so a simulation can interleave writes with everything else and
/// crash a store with writes in flight (dropping the writer drops them).
pub struct ManualWriter<ER: RaftLogEngine> {
    inner: StoreWriter<ER>,
    written: u64,
}

impl<ER: RaftLogEngine> ManualWriter<ER> {
    pub(crate) fn new(inner: StoreWriter<ER>) -> ManualWriter<ER> {
        ManualWriter { inner, written: 0 }
    }

    /// Write tasks (one per raft poll round that staged writes for this
    /// writer) waiting to be written.
    pub fn pending(&self) -> usize {
        self.inner.queued()
    }

    /// Writes every waiting task as one log batch and notifies the peers
    /// written; returns how many tasks it wrote.
    pub fn write_once(&mut self) -> usize {
        let (n, _) = self.inner.write_queued();
        self.written += n as u64;
        n
    }

    /// Tasks written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

/// Writes `batch` to the raft log engine (with an fsync when `sync`),
/// records the write's duration and counts it in `stats` and `metrics`
/// once it succeeded. A failure or a panic of the engine comes back as its
/// message; the caller stops the store.
pub(crate) fn consume_log_batch<ER: RaftLogEngine>(
    engine: &ER,
    batch: &mut ER::LogBatch,
    sync: bool,
    stats: &StoreStats,
    metrics: &PollerMetrics,
) -> Result<(), String> {
    let started = Instant::now();
    let written =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.consume(batch, sync)));
    let took = started.elapsed();
    stats.log_write_duration.record(took);
    if sync {
        metrics.log_write_synced.record(took.as_secs_f64());
    } else {
        metrics.log_write_unsynced.record(took.as_secs_f64());
    }
    match written {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(panic) => {
            return Err(format!(
                "the raft log engine panicked: {}",
                panic_message(panic.as_ref())
            ))
        }
    }
    stats.log_writes.fetch_add(1, Ordering::Relaxed);
    metrics.log_writes.increment(1);
    if sync {
        stats.log_syncs.fetch_add(1, Ordering::Relaxed);
        metrics.log_syncs.increment(1);
    }
    Ok(())
}

/// The text of a caught panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
