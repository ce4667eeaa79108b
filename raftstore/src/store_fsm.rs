//! `StoreFsm`: the store's control FSM, and everything that creates or
//! removes peers on this store.
//!
//! - raft messages for a region with no peer here come to the store FSM
//!   ([`send_raft_message`] falls back to it); it creates an uninitialized
//!   peer when that is safe (a vote, pre-vote or first heartbeat for a
//!   region that is not a tombstone here) and drops the rest with a logged
//!   reason;
//! - regions created by a split applied in a round get their peer at the
//!   end of the round ([`create_split_peers`]);
//! - a removed peer is destroyed ([`destroy_peer`]);
//! - [`start_peer`] registers a new peer with the apply system and the
//!   router: [`build_peer`] then [`register_peer`] (a starting store builds
//!   its peers on several threads and registers them afterwards).
//!
//! These functions take the batch router of the store's FSMs themselves;
//! [`RaftRouter`](crate::RaftRouter) wraps that router.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use apply::ApplyRouter;
use batch_system::mpsc::{self, LooseBoundedSender, Receiver, TrySendError};
use batch_system::{BatchRouter, Fsm};
use either::Either;
use engine::{Engines, KvEngine, RaftLogBatch, RaftLogEngine};
use kvproto_lite::eraftpb::MessageType;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_serverpb::{
    ExtraMessageType, PeerState, RaftApplyState, RaftLocalState, RaftMessage,
};
use kvproto_lite::util;
use slog::{debug, error, info, warn, Logger};

use crate::awake::AwakeRegions;
use crate::config::Config;
use crate::context::PollContext;
use crate::memory::MemoryQuota;
use crate::msg::{InboundMessage, PeerMsg, StoreMsg};
use crate::peer::Peer;
use crate::peer_fsm::PeerFsm;
use crate::storage::{initial_apply_state, split_raft_state, RAFT_INIT_LOG_INDEX};
use crate::store_meta::StoreMeta;
use crate::transport::Transport;
use crate::validate;

/// The batch-system router of a store's peer FSMs and its store FSM.
pub(crate) type PeerRouter<ER> = BatchRouter<PeerFsm<ER>, StoreFsm>;

/// The store's control FSM. It receives raft messages for regions that have
/// no peer on this store yet and store-wide ticks.
pub struct StoreFsm {
    pub(crate) receiver: Receiver<StoreMsg>,
    pub(crate) stopped: bool,
    /// Store ticks received so far.
    pub(crate) ticks: u64,
}

impl StoreFsm {
    /// Creates the store FSM and the sender of its mailbox (pass both to
    /// `create_system`).
    pub fn new(cfg: &Config) -> (LooseBoundedSender<StoreMsg>, Box<StoreFsm>) {
        let (tx, rx) = mpsc::loose_bounded(cfg.store_mailbox_capacity);
        (
            tx,
            Box::new(StoreFsm {
                receiver: rx,
                stopped: false,
                ticks: 0,
            }),
        )
    }
}

impl Fsm for StoreFsm {
    type Message = StoreMsg;

    fn is_stopped(&self) -> bool {
        self.stopped
    }
}

impl StoreFsm {
    /// Handles up to `limit` messages from the store mailbox.
    pub(crate) fn handle_messages<EK: KvEngine, ER: RaftLogEngine, T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        router: &PeerRouter<ER>,
        limit: usize,
    ) {
        let mut handled = 0;
        while handled < limit {
            match self.receiver.try_recv() {
                Ok(msg) => {
                    self.on_message(ctx, router, msg);
                    handled += 1;
                }
                Err(_) => break,
            }
        }
    }

    /// Drops up to `limit` messages unhandled (the store stopped after a
    /// failed disk write: it creates no peers and runs no store ticks).
    pub(crate) fn discard_messages(&mut self, limit: usize) {
        for _ in 0..limit {
            if self.receiver.try_recv().is_err() {
                break;
            }
        }
    }

    fn on_message<EK: KvEngine, ER: RaftLogEngine, T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        router: &PeerRouter<ER>,
        msg: StoreMsg,
    ) {
        match msg {
            StoreMsg::RaftMessage(m) => on_unknown_region_message(ctx, router, *m),
            StoreMsg::Tick => {
                self.ticks += 1;
                // Hibernated followers whose liveness check is due.
                for region_id in ctx.awake.on_store_tick() {
                    let _ = router.force_send(region_id, PeerMsg::CheckLeader);
                }
                if self.ticks % ctx.cfg.raft_engine_purge_interval_ticks == 0 {
                    if let Err(e) = ctx.engines.raft.purge_expired() {
                        error!(ctx.logger, "raft log purge failed"; "err" => %e);
                    }
                }
            }
            StoreMsg::Start => {}
            StoreMsg::PeerDestroyed { region_id } => {
                // Crash tests stop here: the tombstone is durable, the log
                // is not cleaned yet.
                fail::fail_point!("peer_destroyed_before_log_clean", |_| {});
                // A peer created since (over the tombstone) cleaned the old
                // log itself and owns the region's log now.
                if router.mailbox(region_id).is_none() {
                    clean_raft_log(ctx, region_id);
                }
            }
        }
    }
}

/// Delivers a raft message to its region's peer, or to the store FSM if
/// the region has no peer on this store (it may create one).
///
/// # Errors
///
/// The message comes back in `TrySendError::Full` when the mailbox is
/// full, and in `TrySendError::Disconnected` when the peer (or the store)
/// is shut down.
pub(crate) fn send_raft_message<ER: RaftLogEngine>(
    router: &PeerRouter<ER>,
    memory: &Arc<MemoryQuota>,
    msg: RaftMessage,
) -> Result<(), TrySendError<RaftMessage>> {
    let id = msg.get_region_id();
    let guard = memory.charge(crate::memory::raft_message_bytes(&msg));
    let inbound = InboundMessage::charged(msg, guard);
    let msg = match router.try_send(id, PeerMsg::RaftMessage(Box::new(inbound))) {
        Either::Left(Ok(())) => return Ok(()),
        Either::Left(Err(TrySendError::Full(m))) => {
            return Err(TrySendError::Full(unwrap_raft_message(m)));
        }
        Either::Left(Err(TrySendError::Disconnected(m))) => {
            return Err(TrySendError::Disconnected(unwrap_raft_message(m)));
        }
        Either::Right(m) => unwrap_raft_message(m),
    };
    match router.send_control(StoreMsg::RaftMessage(Box::new(msg))) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(m)) => Err(TrySendError::Full(unwrap_store_raft_message(m))),
        Err(TrySendError::Disconnected(m)) => {
            Err(TrySendError::Disconnected(unwrap_store_raft_message(m)))
        }
    }
}

// The helpers below unwrap the variant that was just wrapped: the router gives
// back exactly the message it was handed.
fn unwrap_raft_message(m: PeerMsg) -> RaftMessage {
    match m {
        PeerMsg::RaftMessage(m) => m.into_message(),
        other => unreachable!("router returned a different message: {other:?}"),
    }
}

fn unwrap_store_raft_message(m: StoreMsg) -> RaftMessage {
    match m {
        StoreMsg::RaftMessage(m) => *m,
        other => unreachable!("router returned a different message: {other:?}"),
    }
}

/// A raft message for a region with no peer here: create the peer when
/// that is safe, otherwise drop the message with a logged reason.
fn on_unknown_region_message<EK: KvEngine, ER: RaftLogEngine, T: Transport>(
    ctx: &mut PollContext<EK, ER, T>,
    router: &PeerRouter<ER>,
    msg: RaftMessage,
) {
    let region_id = msg.get_region_id();
    // The peer may have been created since the message was routed here.
    if router.mailbox(region_id).is_some() {
        let _ = send_raft_message(router, &ctx.stats.memory, msg);
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
    if msg.get_extra() != ExtraMessageType::NoExtra {
        debug!(ctx.logger, "drop hibernation message for unknown region"; "region_id" => region_id);
        return;
    }
    // A malformed message must not create a peer (which would then step it).
    if let Err(reason) = validate::check_message(&msg) {
        ctx.stats.rejected_messages.record(reason);
        let m = msg.get_message();
        warn!(ctx.logger, "drop invalid raft message for unknown region";
            "reason" => %reason,
            "region_id" => region_id,
            "from_store_id" => msg.get_from_peer().get_store_id(),
            "from_peer_id" => msg.get_from_peer().get_id(),
            "to_peer_id" => to.get_id(),
            "msg_type" => ?m.get_msg_type(),
            "msg_term" => m.term);
        return;
    }
    let mut over_tombstone = false;
    match ctx.engines.kv.get_region_state(region_id) {
        Ok(Some(state)) if state.get_state() == PeerState::Tombstone => {
            let local = state.get_region().get_region_epoch();
            if !util::is_epoch_stale(local, msg.get_region_epoch())
                || to.get_id() <= find_peer_id(state.get_region(), ctx.store_id)
            {
                debug!(ctx.logger, "drop message for a destroyed peer"; "region_id" => region_id);
                return;
            }
            over_tombstone = true;
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
    // A region of this store still holds (part of) that range: it has not
    // applied the split that creates this region yet, and its split will
    // create the peer. A peer made from the message now would be replaced
    // by the split, and whatever it did meanwhile (a vote) could be lost
    // with it when another poller runs the split while this one still
    // holds the old peer's unwritten state. Drop the message, as TiKV does:
    // the region's other peers elect without this one until the split.
    if let Some(holder) = ctx.ranges.overlapping(&region) {
        debug!(ctx.logger, "drop message: its range is still held by another region";
            "region_id" => region_id, "holder" => holder, "msg_type" => ?msg_type);
        return;
    }
    // An earlier uninitialized peer of this region (before a restart)
    // may have voted: its persisted term and vote must survive, or it
    // could vote twice in one term and let two leaders share a term
    // (found by the simulation, seed 13285: two different entries at
    // index 12 of term 8).
    if over_tombstone {
        // What is left of the destroyed peer's log (its cleaning may still
        // be queued) belongs to another peer id: the new one starts empty.
        clean_raft_log(ctx, region_id);
    }
    let raft_state = match ctx.engines.raft.get_raft_state(region_id) {
        Ok(Some(s)) if s.get_last_index() == 0 => s,
        Ok(_) => RaftLocalState::default(),
        Err(e) => {
            error!(ctx.logger, "read raft state"; "region_id" => region_id, "err" => %e);
            return;
        }
    };
    let created = start_peer_in_round(
        ctx,
        router,
        region,
        to.clone(),
        raft_state,
        RaftApplyState::default(),
    );
    match created {
        Ok(()) => {
            info!(ctx.logger, "created uninitialized peer from message"; "region_id" => region_id,
                "peer_id" => to.get_id());
            let _ = send_raft_message(router, &ctx.stats.memory, msg);
        }
        Err(e) => error!(ctx.logger, "create peer"; "region_id" => region_id, "err" => %e),
    }
}

/// Creates the peers of the regions split off this round (at the end of
/// the round, after apply reported the splits).
pub(crate) fn create_split_peers<EK: KvEngine, ER: RaftLogEngine, T: Transport>(
    ctx: &mut PollContext<EK, ER, T>,
    router: &PeerRouter<ER>,
) {
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
        if router.mailbox(region_id).is_some() {
            if existing
                .as_ref()
                .is_some_and(|s| s.get_last_index() >= RAFT_INIT_LOG_INDEX)
            {
                continue;
            }
            info!(ctx.logger, "split: replace uninitialized peer"; "region_id" => region_id);
            router.close(region_id);
        }
        let apply_state = match ctx.engines.kv.get_apply_state(region_id) {
            Ok(Some(s)) => s,
            Ok(None) => initial_apply_state(),
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
        if let Err(e) = start_peer_in_round(ctx, router, region, meta, raft_state, apply_state) {
            error!(ctx.logger, "split: start peer"; "region_id" => region_id, "err" => %e);
        }
    }
}

/// [`start_peer`] with the store parts of the round's context.
fn start_peer_in_round<EK: KvEngine, ER: RaftLogEngine, T: Transport>(
    ctx: &PollContext<EK, ER, T>,
    router: &PeerRouter<ER>,
    region: Region,
    meta: kvproto_lite::metapb::Peer,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
) -> crate::Result<()> {
    start_peer(
        &ctx.cfg,
        &ctx.engines,
        router,
        &ctx.apply_router,
        &ctx.store_meta,
        &ctx.awake,
        &ctx.logger,
        region,
        meta,
        raft_state,
        apply_state,
    )
}

fn find_peer_id(region: &Region, store_id: u64) -> u64 {
    util::find_peer(region, store_id).map_or(0, |p| p.get_id())
}

/// Destroys a removed peer: answers its proposals (outcome unknown),
/// closes its mailbox, tells apply to write the Tombstone, forgets its
/// leadership and cleans its raft log.
pub(crate) fn destroy_peer<EK: KvEngine, ER: RaftLogEngine, T: Transport>(
    ctx: &mut PollContext<EK, ER, T>,
    router: &PeerRouter<ER>,
    fsm: &mut PeerFsm<ER>,
) {
    let region_id = fsm.peer.region_id();
    info!(ctx.logger, "destroying peer"; "region_id" => region_id, "peer_id" => fsm.peer.meta().get_id());
    fsm.stopped = true;
    fsm.peer
        .fail_pending_proposals(util::new_error(format!(
            "region {region_id}: peer destroyed with the command proposed but not applied: outcome unknown"
        )));
    router.close(region_id);
    ctx.awake.remove(region_id);
    ctx.apply_router
        .schedule_task(region_id, apply::ApplyMsg::Destroy { region_id });
    ctx.store_meta.remove(region_id);
    ctx.store_meta
        .leader_checks
        .unregister(region_id, fsm.peer.meta().get_id());
    ctx.stats.remove_region(region_id);
    ctx.stats.peers_destroyed.fetch_add(1, Ordering::Relaxed);
    if fsm.peer.is_initialized() {
        // The apply system writes the Tombstone region state when it
        // handles the Destroy, after whatever it still had queued for the
        // region, and syncs it; then the store FSM cleans the raft log
        // (`StoreMsg::PeerDestroyed`). The other order would leave, after
        // a crash between the two, a live region state without its log.
        return;
    }
    // An uninitialized peer has no region state, only (maybe) a raft state
    // with its term and vote.
    clean_raft_log(ctx, region_id);
}

/// Removes region `region_id`'s raft log and raft state, synced.
fn clean_raft_log<EK: KvEngine, ER: RaftLogEngine, T: Transport>(
    ctx: &mut PollContext<EK, ER, T>,
    region_id: u64,
) {
    let mut lb = ctx.engines.raft.log_batch(0);
    let cleaned = lb
        .clean(region_id)
        .and_then(|_| ctx.engines.raft.consume(&mut lb, true));
    if let Err(e) = cleaned {
        error!(ctx.logger, "clean raft log"; "region_id" => region_id, "err" => %e);
    }
}

/// Creates a peer FSM, registers it with the apply system (when it has
/// region metadata) and the router, marks it awake and starts it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_peer<EK: KvEngine, ER: RaftLogEngine>(
    cfg: &Config,
    engines: &Engines<EK, ER>,
    router: &PeerRouter<ER>,
    apply_router: &ApplyRouter,
    store_meta: &StoreMeta,
    awake: &AwakeRegions,
    logger: &Logger,
    region: Region,
    meta: kvproto_lite::metapb::Peer,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
) -> crate::Result<()> {
    let peer = build_peer(
        cfg,
        &engines.raft,
        logger,
        region,
        meta,
        raft_state,
        apply_state,
    )?;
    register_peer(router, apply_router, store_meta, awake, peer);
    Ok(())
}

/// A peer FSM built from its persisted state ([`build_peer`]) that no
/// router, apply system or store meta knows yet ([`register_peer`]).
pub(crate) struct BuiltPeer<ER: RaftLogEngine> {
    region_id: u64,
    mailbox: batch_system::BasicMailbox<PeerFsm<ER>>,
    /// What the apply system needs (a peer with region metadata).
    registration: Option<Box<apply::Registration>>,
    /// The peer's term cell, answered to other stores' leader checks.
    leader_check_cell: Arc<crate::leader_check::LeaderCheckCell>,
}

/// Builds a peer FSM and its mailbox from the peer's persisted state,
/// touching nothing shared: several threads may build the peers of a
/// starting store at once. The raft log engine is only written when the
/// raft state needs repair (see [`PeerStorage::new`](crate::PeerStorage::new)).
pub(crate) fn build_peer<ER: RaftLogEngine>(
    cfg: &Config,
    raft_engine: &ER,
    logger: &Logger,
    region: Region,
    meta: kvproto_lite::metapb::Peer,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
) -> crate::Result<BuiltPeer<ER>> {
    let region_id = region.get_id();
    let initialized = !region.get_peers().is_empty();
    let applied_term =
        if apply_state.get_applied_index() == apply_state.get_truncated_state().get_index() {
            apply_state.get_truncated_state().get_term()
        } else {
            apply_state.get_commit_term()
        };
    let registration = initialized.then(|| {
        Box::new(apply::Registration {
            peer_id: meta.get_id(),
            region: region.clone(),
            apply_state: apply_state.clone(),
            applied_term,
        })
    });
    let peer = Peer::new(
        cfg,
        raft_engine.clone(),
        region,
        meta,
        raft_state,
        apply_state,
        logger,
    )?;
    let leader_check_cell = Arc::clone(peer.leader_check_cell());
    let (tx, fsm) = PeerFsm::new(cfg, peer);
    Ok(BuiltPeer {
        region_id,
        mailbox: batch_system::BasicMailbox::new(tx, fsm),
        registration,
        leader_check_cell,
    })
}

/// Registers a built peer with the apply system (when it has region
/// metadata), the store meta and the router, marks it awake and starts it.
pub(crate) fn register_peer<ER: RaftLogEngine>(
    router: &PeerRouter<ER>,
    apply_router: &ApplyRouter,
    store_meta: &StoreMeta,
    awake: &AwakeRegions,
    peer: BuiltPeer<ER>,
) {
    let region_id = peer.region_id;
    if let Some(reg) = peer.registration {
        apply_router.schedule_task(region_id, apply::ApplyMsg::Registration(reg));
    }
    store_meta
        .leader_checks
        .register(region_id, peer.leader_check_cell);
    store_meta.add_region(region_id);
    router.register(region_id, peer.mailbox);
    awake.insert(region_id);
    let _ = router.force_send(region_id, PeerMsg::Start);
}
