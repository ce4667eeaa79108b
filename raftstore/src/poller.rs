//! The raft poll handler: what a raft poller thread does each round.
//!
//! ```text
//! begin
//! handle_control(store)    raft messages for unknown regions: maybe create peers
//! handle_normal(peer)*     drain mailbox (bounded): step / propose / tick / apply results
//!                          then take the peer's Ready: send leader messages,
//!                          hand committed entries to apply, stage entries and
//!                          hard state in the round's ONE log batch
//! end
//!   write the log batch    one fsync for every peer in the round (group commit);
//!                          if it fails the store stops: every peer is fenced
//!                          (see `PeerFsm::fence`), nothing is written again
//!   post_ready(peer)*      advance raft, send messages that had to wait for
//!                          persistence, hand newly committed entries to apply
//!   flush transport
//! ```
//!
//! This module is the poll round only: a peer's messages are handled by
//! its [`PeerFsm`] (module `peer_fsm`), the store FSM's and peer creation,
//! splits and destruction by the [`StoreFsm`] (module `store_fsm`), and the
//! round's shared state is the [`PollContext`] (module `context`).
//!
//! Nothing here reads the clock or spawns threads: time arrives as
//! `PeerMsg::Tick`, so a simulation can build a [`RaftPoller`] and call the
//! `PollHandler` methods itself.

use std::ops::DerefMut;
use std::sync::Arc;

use apply::ApplyRouter;
use batch_system::{HandleResult, HandlerBuilder, PollHandler};
use engine::{Engines, KvEngine, RaftLogEngine};
use slog::Logger;

use crate::awake::AwakeRegions;
use crate::config::Config;
use crate::context::PollContext;
use crate::peer_fsm::PeerFsm;
use crate::router::RaftRouter;
use crate::snapshot::SnapScheduler;
use crate::store_fsm::{self, StoreFsm};
use crate::store_io::{IoSenders, WriterMsg};
use crate::store_meta::{StoreMeta, StoreStats};
use crate::transport::Transport;

/// The raft poll handler (one per poller thread).
pub struct RaftPoller<EK: KvEngine, ER: RaftLogEngine, T: Transport> {
    ctx: PollContext<EK, ER, T>,
    router: RaftRouter<ER>,
}

impl<EK: KvEngine, ER: RaftLogEngine, T: Transport> RaftPoller<EK, ER, T> {
    /// The shared context (for inspection in tests and simulation).
    pub fn context(&self) -> &PollContext<EK, ER, T> {
        &self.ctx
    }
}

impl<EK: KvEngine, ER: RaftLogEngine, T: Transport> PollHandler<PeerFsm<ER>, StoreFsm>
    for RaftPoller<EK, ER, T>
{
    fn begin(&mut self, _batch_size: usize) {
        self.ctx.begin_round();
    }

    fn handle_control(&mut self, store: &mut StoreFsm) -> Option<usize> {
        let limit = self.ctx.cfg.messages_per_round;
        if self.ctx.disk_failed() {
            // A stopped store creates no peers.
            store.discard_messages(limit);
            return Some(0);
        }
        store.handle_messages(&mut self.ctx, &self.router, limit);
        Some(0)
    }

    fn handle_normal(&mut self, fsm: &mut impl DerefMut<Target = PeerFsm<ER>>) -> HandleResult {
        let fsm: &mut PeerFsm<ER> = fsm;
        if fsm.stopped {
            return HandleResult::stop_at(0, false);
        }
        let limit = self.ctx.cfg.messages_per_round;
        if self.ctx.disk_failed() {
            fsm.fence(&mut self.ctx, limit);
            return HandleResult::stop_at(0, false);
        }
        self.ctx.max_mailbox_depth = self.ctx.max_mailbox_depth.max(fsm.receiver.len());
        let handled = fsm.handle_messages(&mut self.ctx, limit);
        if fsm.peer.is_pending_remove() {
            if fsm.peer.has_unpersisted_readies() {
                // A write of this peer is in flight: destroy (and clean
                // the log) only once it is durable, or it would land after
                // the clean. Its Persisted report brings the FSM back.
                return HandleResult::stop_at(0, false);
            }
            store_fsm::destroy_peer(&mut self.ctx, &self.router, fsm);
            return HandleResult::stop_at(0, false);
        }
        fsm.peer.handle_ready(&mut self.ctx);
        if !self.ctx.cfg.group_commit && fsm.peer.has_pending_ready() {
            // One write (and fsync) per peer Ready: only to measure what
            // group commit saves.
            self.ctx.write_log_batch();
            if self.ctx.disk_failed() {
                fsm.fence(&mut self.ctx, 0);
                return HandleResult::stop_at(0, false);
            }
            fsm.peer.post_ready(&mut self.ctx);
        }
        if handled >= limit {
            HandleResult::KeepProcessing
        } else {
            HandleResult::stop_at(0, false)
        }
    }

    fn end(&mut self, batch: &mut [Option<impl DerefMut<Target = PeerFsm<ER>>>]) {
        // Post-persistence work can make raft produce another Ready (rarely:
        // e.g. a commit that needs a broadcast); handle a few rounds of it
        // here. Every staged Ready is written and advanced before `end`
        // returns: the FSM may be handed to another poller next, and a Ready
        // must never outlive the log batch it was staged in.
        let mut passes = 0;
        loop {
            self.ctx.write_log_batch();
            if self.ctx.disk_failed() {
                // Nothing staged this round became durable: no Ready is
                // advanced, no message that waited for persistence leaves.
                for fsm in batch.iter_mut().flatten() {
                    let fsm: &mut PeerFsm<ER> = fsm;
                    fsm.fence(&mut self.ctx, 0);
                }
                break;
            }
            for fsm in batch.iter_mut().flatten() {
                let fsm: &mut PeerFsm<ER> = fsm;
                if fsm.peer.has_pending_ready() {
                    fsm.peer.post_ready(&mut self.ctx);
                }
            }
            passes += 1;
            if passes == 3 {
                // Anything still ready is handled at the peer's next message
                // or tick.
                break;
            }
            let mut again = false;
            for fsm in batch.iter_mut().flatten() {
                let fsm: &mut PeerFsm<ER> = fsm;
                if !fsm.stopped && fsm.peer.raft_group().has_ready() {
                    fsm.peer.handle_ready(&mut self.ctx);
                    again |= fsm.peer.has_pending_ready();
                }
            }
            if !again {
                break;
            }
        }
        // Async I/O mode: the round's log writes go to the store writers
        // before the FSMs are released, so a region's next round (maybe on
        // another poller) queues its writes behind these.
        self.ctx.send_write_tasks();
        self.ctx.send_leader_checks();
        self.ctx.flush_transport();
        self.ctx.record_round();
        if !self.ctx.pending_splits.is_empty() {
            store_fsm::create_split_peers(&mut self.ctx, &self.router);
        }
    }
}

/// Builds [`RaftPoller`]s for the pool (or for a simulation).
pub struct RaftPollerBuilder<EK: KvEngine, ER: RaftLogEngine, T: Transport> {
    pub(crate) cfg: Arc<Config>,
    pub(crate) store_id: u64,
    pub(crate) engines: Engines<EK, ER>,
    pub(crate) transport: T,
    pub(crate) apply_router: ApplyRouter,
    pub(crate) router: RaftRouter<ER>,
    pub(crate) store_meta: Arc<StoreMeta>,
    pub(crate) stats: Arc<StoreStats>,
    pub(crate) logger: Logger,
    pub(crate) awake: Arc<AwakeRegions>,
    pub(crate) snap_scheduler: SnapScheduler,
    pub(crate) ranges: Arc<apply::RegionRanges>,
    /// The store writers' channels (async I/O mode).
    pub(crate) io_senders: Option<Vec<crossbeam_channel::Sender<WriterMsg>>>,
}

impl<EK: KvEngine, ER: RaftLogEngine, T: Transport> RaftPollerBuilder<EK, ER, T> {
    /// A builder over the given store parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Arc<Config>,
        store_id: u64,
        engines: Engines<EK, ER>,
        transport: T,
        apply_router: ApplyRouter,
        router: RaftRouter<ER>,
        store_meta: Arc<StoreMeta>,
        stats: Arc<StoreStats>,
        logger: Logger,
    ) -> Self {
        RaftPollerBuilder {
            cfg,
            store_id,
            engines,
            transport,
            apply_router,
            router,
            store_meta,
            stats,
            logger,
            awake: Arc::new(AwakeRegions::new()),
            snap_scheduler: SnapScheduler::default(),
            ranges: Arc::default(),
            io_senders: None,
        }
    }

    /// Hands the pollers' log writes to the store writers behind
    /// `senders` (async I/O mode, see [`crate::store_io`]).
    pub(crate) fn with_io_senders(
        mut self,
        senders: Vec<crossbeam_channel::Sender<WriterMsg>>,
    ) -> Self {
        self.io_senders = Some(senders);
        self
    }

    /// Shares `ranges` as the store's view of which region holds which
    /// keys (the one its apply system publishes to, filled from the engine
    /// at start); without it the builder has its own, empty one.
    pub fn with_region_ranges(mut self, ranges: Arc<apply::RegionRanges>) -> Self {
        self.ranges = ranges;
        self
    }

    /// Generates snapshots through `scheduler` (the store's snapshot
    /// worker); without it they are generated inline, on the poller's
    /// thread (deterministic, for a store driven by hand).
    pub fn with_snap_scheduler(mut self, scheduler: SnapScheduler) -> Self {
        self.snap_scheduler = scheduler;
        self
    }

    /// Shares `awake` as the store's set of awake regions (the one its tick
    /// timer or simulation ticks); without it the builder has its own.
    pub fn with_awake_regions(mut self, awake: Arc<AwakeRegions>) -> Self {
        self.awake = awake;
        self
    }
}

impl<EK: KvEngine, ER: RaftLogEngine, T: Transport> HandlerBuilder<PeerFsm<ER>, StoreFsm>
    for RaftPollerBuilder<EK, ER, T>
{
    type Handler = RaftPoller<EK, ER, T>;

    fn build(&mut self) -> RaftPoller<EK, ER, T> {
        let mut ctx = PollContext::new(
            self.cfg.clone(),
            self.store_id,
            self.engines.clone(),
            self.transport.clone(),
            self.apply_router.clone(),
            self.store_meta.clone(),
            self.stats.clone(),
            self.logger.clone(),
            self.awake.clone(),
            self.router.snap_manager().clone(),
            self.snap_scheduler.clone(),
        );
        ctx.local_reader = self.router.local.clone();
        ctx.ranges = self.ranges.clone();
        ctx.io = self.io_senders.clone().map(IoSenders::new);
        RaftPoller {
            ctx,
            router: self.router.clone(),
        }
    }
}
