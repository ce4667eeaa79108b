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
//!   write the log batch    one fsync for every peer in the round (group commit)
//!   post_ready(peer)*      advance raft, send messages that had to wait for
//!                          persistence, hand newly committed entries to apply
//!   flush transport
//! ```
//!
//! Nothing here reads the clock or spawns threads: time arrives as
//! `PeerMsg::Tick`, so a simulation can build a [`RaftPoller`] and call the
//! `PollHandler` methods itself.

use std::ops::DerefMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use apply::ApplyRouter;
use batch_system::{HandleResult, HandlerBuilder, PollHandler};
use engine::{Engines, KvEngine, RaftLogBatch, RaftLogEngine};
use kvproto_lite::eraftpb::MessageType;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_serverpb::{PeerState, RaftApplyState, RaftLocalState, RaftMessage};
use kvproto_lite::util;
use raft::StateRole;
use slog::{debug, error, info, Logger};

use crate::config::Config;
use crate::fsm::{PeerFsm, StoreFsm};
use crate::msg::{PeerMsg, SignificantMsg, StoreMsg};
use crate::peer_storage::{RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
use crate::router::RaftRouter;
use crate::store_meta::{StoreMeta, StoreStats};
use crate::transport::Transport;

/// Everything a raft poller shares between the peers of one round.
pub struct PollContext<EK: KvEngine, ER: RaftLogEngine, T: Transport> {
    pub(crate) cfg: Arc<Config>,
    pub(crate) store_id: u64,
    pub(crate) engines: Engines<EK, ER>,
    pub(crate) log_batch: ER::LogBatch,
    pub(crate) need_sync: bool,
    pub(crate) transport: T,
    pub(crate) apply_router: ApplyRouter,
    pub(crate) router: RaftRouter<ER>,
    pub(crate) store_meta: Arc<StoreMeta>,
    pub(crate) stats: Arc<StoreStats>,
    pub(crate) logger: Logger,
    pub(crate) ready_count: u64,
    pub(crate) committed_entries: u64,
    pub(crate) pending_splits: Vec<Region>,
}

impl<EK: KvEngine, ER: RaftLogEngine, T: Transport> PollContext<EK, ER, T> {
    pub(crate) fn on_role_changed(
        &self,
        region_id: u64,
        role: StateRole,
        term: u64,
        leader_id: u64,
    ) {
        self.store_meta.set_role(region_id, role, term, leader_id);
    }

    /// Writes the round's log batch, with one fsync if any Ready needs it.
    fn write_log_batch(&mut self) {
        if self.log_batch.is_empty() {
            return;
        }
        let sync = self.need_sync && self.cfg.sync_log;
        let started = Instant::now();
        let written = self.engines.raft.consume(&mut self.log_batch, sync);
        self.stats.log_write_duration.record(started.elapsed());
        if let Err(e) = written {
            // Raft promised peers these entries are durable; without the
            // log there is no safe way on.
            panic!("store {}: raft log write failed: {e}", self.store_id);
        }
        self.stats.log_writes.fetch_add(1, Ordering::Relaxed);
        if sync {
            self.stats.log_syncs.fetch_add(1, Ordering::Relaxed);
        }
        self.need_sync = false;
    }
}

/// The raft poll handler (one per poller thread).
pub struct RaftPoller<EK: KvEngine, ER: RaftLogEngine, T: Transport> {
    ctx: PollContext<EK, ER, T>,
}

impl<EK: KvEngine, ER: RaftLogEngine, T: Transport> RaftPoller<EK, ER, T> {
    /// The shared context (for inspection in tests and simulation).
    pub fn context(&self) -> &PollContext<EK, ER, T> {
        &self.ctx
    }

    fn handle_peer_msg(&mut self, fsm: &mut PeerFsm<ER>, msg: PeerMsg) {
        let ctx = &mut self.ctx;
        match msg {
            PeerMsg::RaftMessage(m) => fsm.peer.step(*m),
            PeerMsg::RaftCommand(cmd) => fsm.peer.propose(ctx, *cmd),
            PeerMsg::Tick => fsm.peer.tick(ctx),
            PeerMsg::ApplyRes(res) => fsm.peer.on_apply_res(ctx, *res),
            PeerMsg::SignificantMsg(SignificantMsg::StoreUnreachable { store_id }) => {
                fsm.peer.on_store_unreachable(store_id)
            }
            PeerMsg::Start => fsm.peer.start(),
            PeerMsg::Destroy => fsm.peer.mark_pending_remove(),
        }
    }

    fn destroy_peer(&mut self, fsm: &mut PeerFsm<ER>) {
        let ctx = &mut self.ctx;
        let region_id = fsm.peer.region_id();
        info!(ctx.logger, "destroying peer"; "region_id" => region_id, "peer_id" => fsm.peer.meta().get_id());
        fsm.stopped = true;
        fsm.peer
            .fail_pending_proposals(util::new_error(format!(
                "region {region_id}: peer destroyed with the command proposed but not applied: outcome unknown"
            )));
        ctx.router.close(region_id);
        ctx.apply_router
            .schedule_task(region_id, apply::ApplyMsg::Destroy { region_id });
        ctx.store_meta.remove(region_id);
        // The apply system writes the Tombstone region state when it handles
        // the Destroy, after whatever it still had queued for the region.
        let mut lb = ctx.engines.raft.log_batch(0);
        let cleaned = lb
            .clean(region_id)
            .and_then(|_| ctx.engines.raft.consume(&mut lb, true));
        if let Err(e) = cleaned {
            error!(ctx.logger, "clean raft log"; "region_id" => region_id, "err" => %e);
        }
    }

    fn handle_store_msg(&mut self, store: &mut StoreFsm, msg: StoreMsg) {
        match msg {
            StoreMsg::RaftMessage(m) => self.on_unknown_region_message(*m),
            StoreMsg::Tick => {
                store.ticks += 1;
                if store.ticks % self.ctx.cfg.raft_engine_purge_interval_ticks == 0 {
                    if let Err(e) = self.ctx.engines.raft.purge_expired() {
                        error!(self.ctx.logger, "raft log purge failed"; "err" => %e);
                    }
                }
            }
            StoreMsg::Start => {}
        }
    }

    /// A raft message for a region with no peer here: create the peer when
    /// that is safe, otherwise drop the message with a logged reason.
    fn on_unknown_region_message(&mut self, msg: RaftMessage) {
        let ctx = &mut self.ctx;
        let region_id = msg.get_region_id();
        // The peer may have been created since the message was routed here.
        if ctx.router.mailbox(region_id).is_some() {
            let _ = ctx.router.send_raft_message(msg);
            return;
        }
        let to = msg.get_to_peer();
        if to.get_store_id() != ctx.store_id {
            debug!(ctx.logger, "drop message for another store"; "region_id" => region_id,
                "to_store_id" => to.get_store_id());
            return;
        }
        if msg.get_is_tombstone() {
            debug!(ctx.logger, "drop tombstone message for unknown region"; "region_id" => region_id);
            return;
        }
        match ctx.engines.kv.get_region_state(region_id) {
            Ok(Some(state)) if state.get_state() == PeerState::Tombstone => {
                let local = state.get_region().get_region_epoch();
                if !util::is_epoch_stale(local, msg.get_region_epoch())
                    || to.get_id() <= find_peer_id(state.get_region(), ctx.store_id)
                {
                    debug!(ctx.logger, "drop message for a destroyed peer"; "region_id" => region_id);
                    return;
                }
            }
            Ok(Some(_)) => {
                debug!(ctx.logger, "drop message: region state exists but no peer is running";
                    "region_id" => region_id);
                return;
            }
            Ok(None) => {}
            Err(e) => {
                error!(ctx.logger, "read region state"; "region_id" => region_id, "err" => %e);
                return;
            }
        }
        let msg_type = msg.get_message().get_msg_type();
        let initial = matches!(
            msg_type,
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) || (msg_type == MessageType::MsgHeartbeat
            && msg.get_message().get_commit() == 0);
        if !initial {
            debug!(ctx.logger, "drop non-initial message for unknown region";
                "region_id" => region_id, "msg_type" => ?msg_type);
            return;
        }
        // An uninitialised peer: no metadata beyond the key range, an empty
        // log. It becomes useful once it receives a snapshot.
        let mut region = Region::default();
        region.set_id(region_id);
        region.set_start_key(msg.get_start_key().to_vec());
        region.set_end_key(msg.get_end_key().to_vec());
        // An earlier uninitialized peer of this region (before a restart)
        // may have voted: its persisted term and vote must survive, or it
        // could vote twice in one term and let two leaders share a term
        // (found by the simulation, seed 13285: two different entries at
        // index 12 of term 8).
        let raft_state = match ctx.engines.raft.get_raft_state(region_id) {
            Ok(Some(s)) if s.get_last_index() == 0 => s,
            Ok(_) => RaftLocalState::default(),
            Err(e) => {
                error!(ctx.logger, "read raft state"; "region_id" => region_id, "err" => %e);
                return;
            }
        };
        let created = start_peer(
            &ctx.cfg,
            ctx.store_id,
            &ctx.engines,
            &ctx.router,
            &ctx.apply_router,
            &ctx.logger,
            region,
            to.clone(),
            raft_state,
            RaftApplyState::default(),
        );
        match created {
            Ok(()) => {
                info!(ctx.logger, "created uninitialized peer from message"; "region_id" => region_id,
                    "peer_id" => to.get_id());
                let _ = ctx.router.send_raft_message(msg);
            }
            Err(e) => error!(ctx.logger, "create peer"; "region_id" => region_id, "err" => %e),
        }
    }

    fn create_split_peers(&mut self) {
        let ctx = &mut self.ctx;
        for region in std::mem::take(&mut ctx.pending_splits) {
            let region_id = region.get_id();
            let Some(meta) = util::find_peer(&region, ctx.store_id).cloned() else {
                continue;
            };
            // A peer of the new region may exist already: created from a
            // vote or heartbeat of the new region's other peers before this
            // store applied the split. An initialized one (an earlier run of
            // this split) stays; an uninitialized one would stay empty
            // forever (it could only be filled by a snapshot), so it is
            // replaced by the split peer, keeping its term and vote.
            let existing = match ctx.engines.raft.get_raft_state(region_id) {
                Ok(s) => s,
                Err(e) => {
                    error!(ctx.logger, "split: read raft state"; "region_id" => region_id, "err" => %e);
                    continue;
                }
            };
            if ctx.router.mailbox(region_id).is_some() {
                if existing
                    .as_ref()
                    .is_some_and(|s| s.get_last_index() >= RAFT_INIT_LOG_INDEX)
                {
                    continue;
                }
                info!(ctx.logger, "split: replace uninitialized peer"; "region_id" => region_id);
                ctx.router.close(region_id);
            }
            let apply_state = match ctx.engines.kv.get_apply_state(region_id) {
                Ok(Some(s)) => s,
                Ok(None) => init_apply_state(),
                Err(e) => {
                    error!(ctx.logger, "split: read apply state"; "region_id" => region_id, "err" => %e);
                    continue;
                }
            };
            let raft_state = split_raft_state(existing);
            let mut lb = ctx.engines.raft.log_batch(0);
            let persisted = lb
                .put_raft_state(region_id, &raft_state)
                .and_then(|_| ctx.engines.raft.consume(&mut lb, true));
            if let Err(e) = persisted {
                error!(ctx.logger, "split: persist raft state"; "region_id" => region_id, "err" => %e);
                continue;
            }
            if let Err(e) = start_peer(
                &ctx.cfg,
                ctx.store_id,
                &ctx.engines,
                &ctx.router,
                &ctx.apply_router,
                &ctx.logger,
                region,
                meta,
                raft_state,
                apply_state,
            ) {
                error!(ctx.logger, "split: start peer"; "region_id" => region_id, "err" => %e);
            }
        }
    }
}

/// The raft state a peer created by a split starts with: the bootstrap
/// state, but never behind the term (and vote) an uninitialized peer of the
/// same region already persisted here, so it cannot vote twice in a term.
pub(crate) fn split_raft_state(existing: Option<RaftLocalState>) -> RaftLocalState {
    let mut state = init_raft_state();
    if let Some(old) = existing {
        let hs = old.get_hard_state();
        if hs.get_term() >= state.get_hard_state().get_term() {
            state.mut_hard_state().set_term(hs.get_term());
            state.mut_hard_state().set_vote(hs.get_vote());
        }
    }
    state
}

fn find_peer_id(region: &Region, store_id: u64) -> u64 {
    util::find_peer(region, store_id).map_or(0, |p| p.get_id())
}

/// The raft state every bootstrapped (or split-created) peer starts with.
pub(crate) fn init_raft_state() -> RaftLocalState {
    let mut state = RaftLocalState::default();
    state.mut_hard_state().set_term(RAFT_INIT_LOG_TERM);
    state.mut_hard_state().set_commit(RAFT_INIT_LOG_INDEX);
    state.set_last_index(RAFT_INIT_LOG_INDEX);
    state
}

/// The apply state every bootstrapped (or split-created) peer starts with.
pub(crate) fn init_apply_state() -> RaftApplyState {
    let mut state = RaftApplyState::default();
    state.set_applied_index(RAFT_INIT_LOG_INDEX);
    state.set_commit_index(RAFT_INIT_LOG_INDEX);
    state.set_commit_term(RAFT_INIT_LOG_TERM);
    state.mut_truncated_state().set_index(RAFT_INIT_LOG_INDEX);
    state.mut_truncated_state().set_term(RAFT_INIT_LOG_TERM);
    state
}

/// Creates a peer FSM, registers it with the apply system (when it has
/// region metadata) and the router, and starts it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_peer<EK: KvEngine, ER: RaftLogEngine>(
    cfg: &Config,
    store_id: u64,
    engines: &Engines<EK, ER>,
    router: &RaftRouter<ER>,
    apply_router: &ApplyRouter,
    logger: &Logger,
    region: Region,
    meta: kvproto_lite::metapb::Peer,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
) -> crate::Result<()> {
    let region_id = region.get_id();
    let initialized = !region.get_peers().is_empty();
    let applied_term =
        if apply_state.get_applied_index() == apply_state.get_truncated_state().get_index() {
            apply_state.get_truncated_state().get_term()
        } else {
            apply_state.get_commit_term()
        };
    let (tx, fsm) = PeerFsm::create(
        cfg,
        engines.raft.clone(),
        region.clone(),
        meta.clone(),
        raft_state,
        apply_state.clone(),
        logger,
    )?;
    if initialized {
        let reg = apply::Registration {
            peer_id: meta.get_id(),
            region,
            apply_state,
            applied_term,
        };
        apply_router.schedule_task(region_id, apply::ApplyMsg::Registration(Box::new(reg)));
    }
    let mailbox = batch_system::BasicMailbox::new(tx, fsm);
    router.register(region_id, mailbox);
    let _ = router.force_send(region_id, PeerMsg::Start);
    let _ = store_id;
    Ok(())
}

impl<EK: KvEngine, ER: RaftLogEngine, T: Transport> PollHandler<PeerFsm<ER>, StoreFsm>
    for RaftPoller<EK, ER, T>
{
    fn begin(&mut self, _batch_size: usize) {
        self.ctx.need_sync = false;
        self.ctx.ready_count = 0;
        self.ctx.committed_entries = 0;
    }

    fn handle_control(&mut self, store: &mut StoreFsm) -> Option<usize> {
        let mut handled = 0;
        while handled < self.ctx.cfg.messages_per_round {
            match store.receiver.try_recv() {
                Ok(msg) => {
                    self.handle_store_msg(store, msg);
                    handled += 1;
                }
                Err(_) => break,
            }
        }
        Some(0)
    }

    fn handle_normal(&mut self, fsm: &mut impl DerefMut<Target = PeerFsm<ER>>) -> HandleResult {
        let fsm: &mut PeerFsm<ER> = fsm;
        if fsm.stopped {
            return HandleResult::stop_at(0, false);
        }
        let limit = self.ctx.cfg.messages_per_round;
        let mut handled = 0;
        while handled < limit {
            match fsm.receiver.try_recv() {
                Ok(msg) => {
                    self.handle_peer_msg(fsm, msg);
                    handled += 1;
                }
                Err(_) => break,
            }
        }
        if fsm.peer.is_pending_remove() {
            self.destroy_peer(fsm);
            return HandleResult::stop_at(0, false);
        }
        fsm.peer.handle_ready(&mut self.ctx);
        if !self.ctx.cfg.group_commit && fsm.peer.has_pending_ready() {
            // One write (and fsync) per peer Ready: only to measure what
            // group commit saves.
            self.ctx.write_log_batch();
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
        self.ctx.transport.flush();
        let stats = &self.ctx.stats;
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        stats
            .readies
            .fetch_add(self.ctx.ready_count, Ordering::Relaxed);
        stats
            .committed_entries
            .fetch_add(self.ctx.committed_entries, Ordering::Relaxed);
        if !self.ctx.pending_splits.is_empty() {
            self.create_split_peers();
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
        }
    }
}

impl<EK: KvEngine, ER: RaftLogEngine, T: Transport> HandlerBuilder<PeerFsm<ER>, StoreFsm>
    for RaftPollerBuilder<EK, ER, T>
{
    type Handler = RaftPoller<EK, ER, T>;

    fn build(&mut self) -> RaftPoller<EK, ER, T> {
        RaftPoller {
            ctx: PollContext {
                cfg: self.cfg.clone(),
                store_id: self.store_id,
                engines: self.engines.clone(),
                log_batch: self.engines.raft.log_batch(64 * 1024),
                need_sync: false,
                transport: self.transport.clone(),
                apply_router: self.apply_router.clone(),
                router: self.router.clone(),
                store_meta: self.store_meta.clone(),
                stats: self.stats.clone(),
                logger: self.logger.clone(),
                ready_count: 0,
                committed_entries: 0,
                pending_splits: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (simulation seed 85 with splits): a store that applied a
    /// split late already had an uninitialized peer of the new region
    /// (created from its peers' votes) that had voted; the split peer
    /// replacing it must keep that term and vote.
    #[test]
    fn seed_85_split_peer_keeps_the_term_and_vote_of_an_uninitialized_peer() {
        let mut old = RaftLocalState::default();
        old.mut_hard_state().set_term(9);
        old.mut_hard_state().set_vote(1001);
        let s = split_raft_state(Some(old));
        assert_eq!(s.get_hard_state().get_term(), 9);
        assert_eq!(s.get_hard_state().get_vote(), 1001);
        assert_eq!(s.get_hard_state().get_commit(), RAFT_INIT_LOG_INDEX);
        assert_eq!(s.get_last_index(), RAFT_INIT_LOG_INDEX);
        assert_eq!(split_raft_state(None), init_raft_state());
        let mut stale = RaftLocalState::default();
        stale.mut_hard_state().set_term(2);
        stale.mut_hard_state().set_vote(7);
        assert_eq!(split_raft_state(Some(stale)), init_raft_state());
    }
}
