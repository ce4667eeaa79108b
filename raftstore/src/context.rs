//! `PollContext`: what the peers handled in one poll round share, and the
//! state of the round itself (its log batch, whether it must be synced,
//! counters, splits to act on at its end).
//!
//! The context sits below the peers in the module tree: a [`Peer`] reads
//! the configuration and engines from it and leaves its outputs in it
//! (entries to persist, messages to send, committed entries for apply). It
//! holds no router, so nothing here can reach a peer FSM; the poller and
//! the store FSM pass the router around themselves.
//!
//! [`Peer`]: crate::Peer

use std::sync::atomic::Ordering;
use std::sync::Arc;

use apply::ApplyRouter;
use engine::{Engines, KvEngine, RaftLogBatch, RaftLogEngine};
use kvproto_lite::metapb::Region;
use slog::{error, Logger};

use crate::awake::AwakeRegions;
use crate::config::Config;
use crate::leader_check::RoundChecks;
use crate::memory::MemoryGuard;
use crate::metrics::PollerMetrics;
use crate::snapshot::{SnapManager, SnapScheduler};
use crate::store_io::{consume_log_batch, IoSenders};
use crate::store_meta::{StoreMeta, StoreStats};
use crate::transport::Transport;

/// Items a poller's log batch is first sized for (it grows with a busy
/// round). Engines read the capacity as an item count: a batch sized in
/// bytes (64 Ki items) would hold several MiB per poller for good.
const LOG_BATCH_ITEMS: usize = 256;

/// Everything a raft poller shares between the peers of one round.
pub struct PollContext<EK: KvEngine, ER: RaftLogEngine, T: Transport> {
    pub(crate) cfg: Arc<Config>,
    pub(crate) store_id: u64,
    pub(crate) engines: Engines<EK, ER>,
    /// The round's one raft log batch: every Ready of the round is staged
    /// here and written (with at most one fsync) in `end`.
    pub(crate) log_batch: ER::LogBatch,
    /// Some staged Ready must be synced before its messages leave.
    pub(crate) need_sync: bool,
    pub(crate) transport: T,
    pub(crate) apply_router: ApplyRouter,
    pub(crate) store_meta: Arc<StoreMeta>,
    pub(crate) stats: Arc<StoreStats>,
    pub(crate) logger: Logger,
    /// Readies staged this round.
    pub(crate) ready_count: u64,
    /// Committed entries handed to apply this round.
    pub(crate) committed_entries: u64,
    /// The longest peer mailbox seen this round.
    pub(crate) max_mailbox_depth: usize,
    /// What the poller records through the `metrics` facade.
    pub(crate) metrics: PollerMetrics,
    /// Regions created by splits applied this round; their peers are
    /// created at the end of the round.
    pub(crate) pending_splits: Vec<Region>,
    /// The store's awake regions: a peer takes itself out when it
    /// hibernates and puts itself back when it wakes.
    pub(crate) awake: Arc<AwakeRegions>,
    /// The store's snapshots in flight.
    pub(crate) snap_mgr: Arc<SnapManager>,
    /// Where snapshot generations run.
    pub(crate) snap_scheduler: SnapScheduler,
    /// The store's lease-read fast path: peers publish their read
    /// delegates here and measure leases with its clock.
    pub(crate) local_reader: Arc<crate::local_reader::LocalReader>,
    /// Memory-quota share of the raft messages queued for the transport
    /// this round; released after the round's flush.
    pub(crate) outgoing_memory: Option<MemoryGuard>,
    /// Which region holds which keys on this store (snapshots reserve
    /// their range here before raft sees them).
    pub(crate) ranges: Arc<apply::RegionRanges>,
    /// The store's I/O writers (`Config::store_io_pool_size > 0`): Readies
    /// are staged for them instead of in `log_batch` (see
    /// [`crate::store_io`]); `None` in inline mode.
    pub(crate) io: Option<IoSenders>,
    /// The leader checks peers asked for this round, one message per
    /// follower store, sent at the end of the round (see
    /// [`crate::leader_check`]).
    pub(crate) round_checks: RoundChecks,
}

impl<EK: KvEngine, ER: RaftLogEngine, T: Transport> PollContext<EK, ER, T> {
    /// A context over the given store parts, with an empty round.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: Arc<Config>,
        store_id: u64,
        engines: Engines<EK, ER>,
        transport: T,
        apply_router: ApplyRouter,
        store_meta: Arc<StoreMeta>,
        stats: Arc<StoreStats>,
        logger: Logger,
        awake: Arc<AwakeRegions>,
        snap_mgr: Arc<SnapManager>,
        snap_scheduler: SnapScheduler,
    ) -> Self {
        let log_batch = engines.raft.log_batch(LOG_BATCH_ITEMS);
        PollContext {
            cfg,
            store_id,
            engines,
            log_batch,
            need_sync: false,
            transport,
            apply_router,
            store_meta,
            stats,
            logger,
            ready_count: 0,
            committed_entries: 0,
            max_mailbox_depth: 0,
            metrics: PollerMetrics::new(),
            pending_splits: Vec::new(),
            awake,
            snap_mgr,
            snap_scheduler,
            local_reader: Arc::default(),
            outgoing_memory: None,
            ranges: Arc::default(),
            io: None,
            round_checks: RoundChecks::default(),
        }
    }

    /// Charges `bytes` of a message handed to the transport to the store's
    /// memory quota until the round's transport flush.
    pub(crate) fn charge_outgoing(&mut self, bytes: u64) {
        match &mut self.outgoing_memory {
            Some(guard) => guard.grow(bytes),
            None => self.outgoing_memory = Some(self.stats.memory.charge(bytes)),
        }
    }

    /// Queues the round's leader checks (one message per follower store)
    /// for the transport; a store that cannot be reached gets none, and
    /// the batches waiting for it fall back when their check times out.
    pub(crate) fn send_leader_checks(&mut self) {
        let checks = self.store_meta.leader_checks.clone();
        for msg in self.round_checks.take_messages(self.store_id, &checks) {
            let to = msg.get_to_peer().get_store_id();
            if let Err(e) = self.transport.send(msg) {
                slog::debug!(self.logger, "leader check not sent"; "to_store_id" => to, "err" => %e);
            }
        }
    }

    /// Flushes the transport and releases the memory its queued messages
    /// were charged.
    pub(crate) fn flush_transport(&mut self) {
        self.transport.flush();
        self.outgoing_memory = None;
    }

    /// Starts a round: nothing staged, counters at zero.
    pub(crate) fn begin_round(&mut self) {
        self.need_sync = false;
        self.ready_count = 0;
        self.committed_entries = 0;
        self.max_mailbox_depth = 0;
    }

    /// Writes the round's log batch, with one fsync if any Ready needs it.
    ///
    /// A failed write (or a panic inside the log engine, which raft-engine
    /// raises when an fsync fails) stops the store: the failure is recorded
    /// in the store's [`DiskFailure`](apply::DiskFailure), logged, and the
    /// batch is discarded. Once the store has stopped nothing is written;
    /// the caller checks [`PollContext::disk_failed`] and fences its peers.
    pub(crate) fn write_log_batch(&mut self) {
        if self.log_batch.is_empty() {
            return;
        }
        if self.disk_failed() {
            self.discard_log_batch();
            return;
        }
        let sync = self.need_sync && self.cfg.sync_log;
        let failed = consume_log_batch(
            &self.engines.raft,
            &mut self.log_batch,
            sync,
            &self.stats,
            &self.metrics,
        )
        .err();
        if let Some(e) = failed {
            // Raft promised peers these entries are durable; without the
            // log there is no safe way on, so the store stops (and never
            // advances the Readies staged in this batch).
            self.discard_log_batch();
            if self
                .apply_router
                .disk_failure()
                .record(format!("raft log write failed: {e}"))
            {
                error!(self.logger, "raft log write failed: the store stops; nothing more is written, every pending and new command is answered with this error";
                    "store_id" => self.store_id, "error" => %e);
            }
            return;
        }
        self.need_sync = false;
    }

    /// Hands the round's staged writes to the store's writers (async I/O
    /// mode; nothing in inline mode). After a disk failure they are
    /// dropped; a writer that is gone stops the store (its peers would
    /// otherwise wait for ever).
    pub(crate) fn send_write_tasks(&mut self) {
        let failed = self.disk_failed();
        let Some(io) = &mut self.io else { return };
        if failed {
            io.discard();
            return;
        }
        if !io.has_staged() {
            return;
        }
        if !io.send()
            && self
                .apply_router
                .disk_failure()
                .record("a store writer stopped with raft log writes in flight")
        {
            error!(self.logger, "a store writer is gone: the store stops"; "store_id" => self.store_id);
        }
    }

    /// Whether the store stopped after a failed disk write (its own raft
    /// log or its apply system's KV engine).
    pub(crate) fn disk_failed(&self) -> bool {
        self.apply_router.disk_failure().is_failed()
    }

    /// Drops whatever the round staged: after a failure it must never be
    /// written (a later write would persist half of a round).
    fn discard_log_batch(&mut self) {
        self.log_batch = self.engines.raft.log_batch(LOG_BATCH_ITEMS);
        self.need_sync = false;
    }

    /// Adds the round's counters to the store's statistics (at the end of
    /// the round).
    pub(crate) fn record_round(&self) {
        let stats = &self.stats;
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        stats.readies.fetch_add(self.ready_count, Ordering::Relaxed);
        stats
            .committed_entries
            .fetch_add(self.committed_entries, Ordering::Relaxed);
        let m = &self.metrics;
        m.rounds.increment(1);
        m.readies.increment(self.ready_count);
        m.committed_entries.increment(self.committed_entries);
        m.mailbox_depth.set(self.max_mailbox_depth as f64);
    }
}
