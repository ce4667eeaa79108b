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
use std::time::Instant;

use apply::ApplyRouter;
use engine::{Engines, KvEngine, RaftLogBatch, RaftLogEngine};
use kvproto_lite::metapb::Region;
use slog::Logger;

use crate::awake::AwakeRegions;
use crate::config::Config;
use crate::metrics::PollerMetrics;
use crate::snapshot::{SnapManager, SnapScheduler};
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
        }
    }

    /// Starts a round: nothing staged, counters at zero.
    pub(crate) fn begin_round(&mut self) {
        self.need_sync = false;
        self.ready_count = 0;
        self.committed_entries = 0;
        self.max_mailbox_depth = 0;
    }

    /// Writes the round's log batch, with one fsync if any Ready needs it.
    pub(crate) fn write_log_batch(&mut self) {
        if self.log_batch.is_empty() {
            return;
        }
        let sync = self.need_sync && self.cfg.sync_log;
        let started = Instant::now();
        let written = self.engines.raft.consume(&mut self.log_batch, sync);
        let took = started.elapsed();
        self.stats.log_write_duration.record(took);
        if sync {
            self.metrics.log_write_synced.record(took.as_secs_f64());
        } else {
            self.metrics.log_write_unsynced.record(took.as_secs_f64());
        }
        if let Err(e) = written {
            // Raft promised peers these entries are durable; without the
            // log there is no safe way on.
            panic!("store {}: raft log write failed: {e}", self.store_id);
        }
        self.stats.log_writes.fetch_add(1, Ordering::Relaxed);
        self.metrics.log_writes.increment(1);
        if sync {
            self.stats.log_syncs.fetch_add(1, Ordering::Relaxed);
            self.metrics.log_syncs.increment(1);
        }
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
