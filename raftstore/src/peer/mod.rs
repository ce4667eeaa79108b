//! `Peer`: one replica of a region, a `raft::RawNode` plus what the store
//! keeps around it (pending proposals, the Ready being persisted).
//!
//! - this file: the peer itself, stepping raft messages, ticks, log GC,
//!   taking and finishing a Ready, apply results;
//! - [`propose`]: checking and proposing commands, the proposals waiting
//!   for their entries to apply;
//! - [`batch`]: merging a round's commands into as few entries as possible;
//! - [`hibernate`]: a region whose replicas are all caught up stops
//!   ticking, and what wakes it;
//! - `snapshot`: generating, sending, pinning and applying region
//!   snapshots (see [`crate::snapshot`]).
//!
//! Whatever reaches into raft-rs internals to correct its behaviour is in
//! [`crate::raft_compat`], called from here.

mod batch;
mod hibernate;
mod propose;
mod read;
mod snapshot;
mod stale;

use std::collections::VecDeque;
use std::sync::Arc;

use engine::RaftLogEngine;
use kvproto_lite::eraftpb::{self, Entry, MessageType};
use kvproto_lite::metapb::{self, Region};
use kvproto_lite::raft_cmdpb::{AdminCmdType, RaftCmdRequest};
use kvproto_lite::raft_serverpb::{RaftApplyState, RaftLocalState, RaftMessage};
use protobuf::Message as _;
use raft::{LightReady, RawNode, Ready, StateRole};
use slog::{debug, error, info, o, warn, Logger};

use crate::config::Config;
use crate::context::PollContext;
use crate::memory::MemoryGuard;
use crate::msg::Callback;
use crate::raft_compat;
use crate::storage::PeerStorage;
use crate::store_meta::{LeaderInfo, ProgressCell};
use crate::transport::Transport;
use crate::validate;

use self::batch::{BatchedCommand, MAX_MERGED_ENTRY_BYTES};
use self::propose::PendingProposal;

/// One replica of a region on this store.
pub struct Peer<ER: RaftLogEngine> {
    region_id: u64,
    meta: metapb::Peer,
    raft_group: RawNode<PeerStorage<ER>>,
    proposals: VecDeque<PendingProposal>,
    /// The Ready taken in this poll round, advanced after the round's log
    /// batch is durable. Boxed: a `Ready` is 256 bytes and a peer holds
    /// one only between taking it and the end of the round, so an idle
    /// peer carries a pointer instead.
    pending_ready: Option<Box<Ready>>,
    /// Messages that may only leave after `pending_ready` is durable.
    pending_persisted_msgs: Vec<eraftpb::Message>,
    /// Async I/O mode: the Readies handed to a store writer and not yet
    /// reported durable, oldest first, each with the messages that may
    /// only leave once it is (see [`crate::store_io`]).
    unpersisted_readies: VecDeque<(u64, Vec<eraftpb::Message>)>,
    /// Ticks since the leader last considered log compaction.
    gc_ticks: usize,
    /// Ticks a lagging follower has held log compaction back.
    gc_blocked_ticks: u64,
    /// Estimated bytes of the entries kept in the raft log.
    log_bytes: u64,
    /// The last index handed to the apply system.
    sent_to_apply: u64,
    /// A received snapshot's data, from its message being stepped until
    /// its Ready applies it.
    pinned_snapshot: Option<Box<snapshot::PinnedSnapshot>>,
    /// The index of a snapshot applied in the pending Ready; raft learns
    /// it is applied once the Ready is advanced.
    snapshot_applied: Option<u64>,
    /// Peers learned from messages but not (yet) in the region metadata.
    peer_cache: Vec<metapb::Peer>,
    /// Regions split off this one, returned with `EpochNotMatch` so a client
    /// learns the whole new layout from one answer.
    derived_regions: Vec<Region>,
    /// The peer was removed from its region or destroyed.
    pending_remove: bool,
    /// Ticks since this follower last heard from its leader (see
    /// `stale.rs`: a peer that missed its own removal finds out by asking).
    leader_missing_ticks: u32,
    /// Client commands accepted this round, proposed together by
    /// [`Peer::flush_proposals`]: one raft message, so one append per
    /// follower for the whole batch (raft-rs 0.7's own `batch_append` is
    /// unsafe, see `Config::raft_batch_append`).
    batched: Vec<BatchedCommand>,
    /// Most encoded bytes of commands merged into one entry.
    batched_bytes_limit: u64,
    /// `Some(election_timeout_ticks)` when election timeouts must not be
    /// random (`Config::raft_election_jitter == false`).
    fixed_election_timeout: Option<usize>,
    /// The leader's peer id while the leader is known to be unreachable (its
    /// store was reported unreachable, or a send to it failed); 0 otherwise.
    /// Cleared by the next message from that peer.
    unreachable_leader: u64,
    /// The store is shutting down gracefully: a leader hands leadership to
    /// an up-to-date follower, a follower no longer campaigns.
    evicting: bool,
    /// What this peer last published to the store's `StoreMeta`.
    published: Option<LeaderInfo>,
    /// This region's progress cell in the store's `StoreStats` (attached at
    /// the first publish).
    progress: Option<Arc<ProgressCell>>,
    /// Whether the peer sleeps, and the hibernation handshake.
    hibernation: hibernate::Hibernation,
    /// ReadIndex / follower reads waiting (`None` when there are none).
    reads: Option<Box<read::PendingReads>>,
    /// The leader lease, shared with the store's local reader.
    lease: Arc<crate::local_reader::LeaseCell>,
    /// `(term, version, conf_ver)` of the read delegate published to the
    /// local reader, if one is.
    read_delegate: Option<(u64, u64, u64)>,
    /// This peer's term and leader as other stores' leader checks see
    /// them, and the answers to this peer's own checks (see
    /// [`crate::leader_check`]).
    check_cell: Arc<crate::leader_check::LeaderCheckCell>,
    /// `(term, leader_id)` last published to `check_cell`.
    check_published: (u64, u64),
    /// Memory-quota guards of the committed entries handed to apply, by
    /// the last index of each task: released once the apply system reports
    /// that index applied.
    apply_memory: VecDeque<(u64, MemoryGuard)>,
    logger: Logger,
}

impl<ER: RaftLogEngine> Peer<ER> {
    /// Creates the peer `meta` of `region` from its persisted states.
    ///
    /// # Errors
    ///
    /// Inconsistent persisted state, or raft-rs refusing the configuration.
    pub fn new(
        cfg: &Config,
        engine: ER,
        region: Region,
        meta: metapb::Peer,
        raft_state: RaftLocalState,
        apply_state: RaftApplyState,
        logger: &Logger,
    ) -> crate::Result<Peer<ER>> {
        let region_id = region.get_id();
        let logger = logger.new(o!("region_id" => region_id, "peer_id" => meta.get_id()));
        let applied = apply_state.get_applied_index();
        let storage = PeerStorage::new(engine, region, raft_state, apply_state)?;
        let raft_cfg = cfg.raft_config(meta.get_id(), applied);
        raft_cfg.validate()?;
        let raft_group = RawNode::new(&raft_cfg, storage, &logger)?;
        let term = raft_group.raft.term;
        let peer_id = meta.get_id();
        let mut peer = Peer {
            region_id,
            meta,
            raft_group,
            proposals: VecDeque::new(),
            pending_ready: None,
            pending_persisted_msgs: Vec::new(),
            unpersisted_readies: VecDeque::new(),
            gc_ticks: 0,
            gc_blocked_ticks: 0,
            log_bytes: 0,
            sent_to_apply: applied,
            pinned_snapshot: None,
            snapshot_applied: None,
            peer_cache: Vec::new(),
            derived_regions: Vec::new(),
            pending_remove: false,
            leader_missing_ticks: 0,
            batched: Vec::new(),
            batched_bytes_limit: MAX_MERGED_ENTRY_BYTES,
            fixed_election_timeout: (!cfg.raft_election_jitter)
                .then_some(cfg.raft_election_timeout_ticks),
            unreachable_leader: 0,
            evicting: false,
            published: None,
            progress: None,
            hibernation: hibernate::Hibernation::default(),
            reads: None,
            lease: Arc::default(),
            read_delegate: None,
            check_cell: Arc::new(crate::leader_check::LeaderCheckCell::new(peer_id, term)),
            check_published: (term, 0),
            apply_memory: VecDeque::new(),
            logger,
        };
        peer.pin_election_timeout();
        Ok(peer)
    }

    /// Without election jitter, replaces the election timeout raft-rs drew
    /// with one derived from (peer id, term): see
    /// [`raft_compat::pin_election_timeout`]. Called after every tick, step
    /// and conf change.
    fn pin_election_timeout(&mut self) {
        if let Some(election) = self.fixed_election_timeout {
            raft_compat::pin_election_timeout(&mut self.raft_group.raft, election);
        }
    }

    /// Probes followers that raft-rs would leave waiting for a snapshot at
    /// the first entry this leader still has: see
    /// [`raft_compat::unstick_probes`].
    fn unstick_probes(&mut self) {
        let first_index = self.raft_group.store().truncated_index() + 1;
        raft_compat::unstick_probes(&mut self.raft_group.raft, first_index);
    }

    /// The current election timeout in ticks.
    pub fn election_timeout(&self) -> usize {
        self.raft_group.raft.randomized_election_timeout()
    }

    /// The region id.
    pub fn region_id(&self) -> u64 {
        self.region_id
    }

    /// This peer's metadata.
    pub fn meta(&self) -> &metapb::Peer {
        &self.meta
    }

    /// The region as this peer knows it.
    pub fn region(&self) -> &Region {
        self.raft_group.store().region()
    }

    /// The raft node (read-only).
    pub fn raft_group(&self) -> &RawNode<PeerStorage<ER>> {
        &self.raft_group
    }

    /// The lowest index every tracked peer (this one included) has
    /// matched, as far as this peer's raft knows (meaningful on a leader).
    fn min_matched(&self) -> Option<u64> {
        self.raft_group
            .raft
            .prs()
            .iter()
            .map(|(_, pr)| pr.matched)
            .min()
    }

    /// Whether this peer is the region's leader.
    pub fn is_leader(&self) -> bool {
        self.raft_group.raft.state == StateRole::Leader
    }

    /// The current raft term.
    pub fn term(&self) -> u64 {
        self.raft_group.raft.term
    }

    /// The leader as far as this peer knows (0 = unknown).
    pub fn leader_id(&self) -> u64 {
        self.raft_group.raft.leader_id
    }

    /// Number of proposals waiting to be applied.
    pub fn pending_proposals(&self) -> usize {
        self.proposals.len() + self.batched.len()
    }

    /// Whether the peer was removed and its FSM should stop.
    pub fn is_pending_remove(&self) -> bool {
        self.pending_remove
    }

    pub(crate) fn mark_pending_remove(&mut self) {
        self.pending_remove = true;
    }

    /// Tells the local reader whether this peer has applied everything it
    /// knows committed (lease reads are served only then).
    fn note_caught_up(&self) {
        let log = &self.raft_group.raft.raft_log;
        self.lease.set_caught_up(log.applied >= log.committed);
    }

    /// Whether the peer has region metadata (an uninitialized peer, created
    /// from a message, waits for a snapshot to get it).
    pub(crate) fn is_initialized(&self) -> bool {
        !self.region().get_peers().is_empty()
    }

    fn find_peer(&self, peer_id: u64) -> Option<&metapb::Peer> {
        self.region()
            .get_peers()
            .iter()
            .find(|p| p.get_id() == peer_id)
            .or_else(|| self.peer_cache.iter().find(|p| p.get_id() == peer_id))
    }

    /// The peer this one believes leads (whether or not it can be
    /// reached), if it knows one.
    fn leader_peer(&self) -> Option<metapb::Peer> {
        let leader_id = self.leader_id();
        if leader_id == raft::INVALID_ID {
            return None;
        }
        self.find_peer(leader_id).cloned()
    }

    /// The leader a client should be sent to (the hint of a `NotLeader`
    /// answer): this peer when it leads; for a follower the leader it
    /// follows, unless that leader is known to be unreachable or has not
    /// been heard from for a whole election timeout; nobody during an
    /// election. `None` tells a client to back off rather than chase a
    /// leader that cannot answer.
    pub(crate) fn leader_hint(&self) -> Option<metapb::Peer> {
        let raft = &self.raft_group.raft;
        let leader = match raft.state {
            StateRole::Leader => return Some(self.meta.clone()),
            StateRole::Follower => raft.leader_id,
            StateRole::Candidate | StateRole::PreCandidate => return None,
        };
        if leader == raft::INVALID_ID
            || leader == self.unreachable_leader
            || raft.election_elapsed >= raft.election_timeout()
        {
            return None;
        }
        self.find_peer(leader).cloned()
    }

    /// Publishes this peer's leadership (when it changed) and progress to
    /// the store's `StoreMeta` and `StoreStats`. Called whenever the peer
    /// is handled and after its Ready is persisted: a few relaxed stores,
    /// and a lock only when leadership changed.
    pub(crate) fn publish<EK, T>(&mut self, ctx: &PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let hint = self.leader_hint();
        let raft = &self.raft_group.raft;
        let is_leader = raft.state == StateRole::Leader;
        let info = LeaderInfo {
            term: raft.term,
            leader_id: hint.as_ref().map_or(0, |p| p.get_id()),
            leader_store_id: hint.as_ref().map_or(0, |p| p.get_store_id()),
            is_leader,
        };
        let (applied, commit, last, term) = (
            self.raft_group.store().apply_state().get_applied_index(),
            raft.raft_log.committed,
            raft.raft_log.last_index(),
            raft.term,
        );
        if self.published != Some(info) {
            ctx.store_meta.set_leader(self.region_id, info);
            self.published = Some(info);
            if !is_leader {
                self.lease.expire();
            }
            self.publish_read_delegate(ctx);
        }
        let region_id = self.region_id;
        self.progress
            .get_or_insert_with(|| ctx.stats.progress_cell(region_id))
            .store(applied, commit, last, term, is_leader);
    }

    /// Starts handing leadership away because the store is shutting down
    /// gracefully; from now on this peer never campaigns. Repeated calls
    /// retry the transfer (with the best target at that moment).
    pub(crate) fn evict_leadership(&mut self) {
        if !self.evicting {
            debug!(self.logger, "evicting leadership");
        }
        self.evicting = true;
        self.transfer_leadership_away();
    }

    /// Whether the store is shutting down gracefully.
    pub fn is_evicting(&self) -> bool {
        self.evicting
    }

    /// As a leader, transfers leadership to the follower best placed to
    /// take it at once: a voter that has every entry (`matched` equal to
    /// the last index) and was recently active, else the one with the
    /// highest `matched` (raft-rs then sends it the missing entries and
    /// hands over when it has them). Ties go to the lowest peer id, so the
    /// choice is deterministic.
    fn transfer_leadership_away(&mut self) {
        if !self.is_leader() {
            return;
        }
        let raft = &self.raft_group.raft;
        let last = raft.raft_log.last_index();
        let me = self.meta.get_id();
        let voters = raft.prs().conf().voters();
        let best = raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me && voters.contains(**id))
            .max_by_key(|(id, pr)| {
                (
                    pr.matched == last && pr.recent_active,
                    pr.recent_active,
                    pr.matched,
                    std::cmp::Reverse(**id),
                )
            })
            .map(|(id, pr)| (*id, pr.matched));
        let Some((target, matched)) = best else {
            return;
        };
        match raft.lead_transferee {
            Some(t) if t == target => return,
            Some(_) => self.raft_group.raft.abort_leader_transfer(),
            None => {}
        }
        info!(self.logger, "transferring leadership before shutdown";
            "term" => self.term(), "to_peer_id" => target, "matched" => matched, "last_index" => last);
        // The target may win at once (MsgTimeoutNow skips the followers'
        // lease): no lease read from here on.
        self.lease.expire();
        self.raft_group.transfer_leader(target);
    }

    /// Starts the peer: a region with a single voter elects itself at once;
    /// a restarted region's last candidate campaigns at once (see
    /// `campaigns_first` in `hibernate.rs`).
    pub(crate) fn start(&mut self) {
        let voters = self.raft_group.raft.prs().conf().voters().ids().len();
        if voters == 1 && self.raft_group.raft.state != StateRole::Leader {
            if let Err(e) = self.raft_group.campaign() {
                warn!(self.logger, "campaign failed"; "err" => %e);
            }
            self.pin_election_timeout();
        } else {
            self.campaign_first_at_start();
        }
    }

    /// One raft tick; a leader also considers compacting its log.
    pub(crate) fn tick<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        if self.evicting && !self.is_leader() {
            // A store that is leaving must not win leadership back: without
            // ticks a follower never times out into an election.
        } else if self.skips_start_grace_tick() {
            // Waiting for the region's first campaigner (hibernate.rs).
        } else {
            self.raft_group.tick();
            self.pin_election_timeout();
        }
        if self.evicting {
            self.transfer_leadership_away();
        }
        self.unstick_probes();
        // Give back what a burst grew (an idle region should stay small);
        // on ticks, not per round, so a busy region does not reallocate.
        self.raft_group.mut_store().shrink_cache();
        if self.proposals.is_empty() && self.proposals.capacity() > 0 {
            self.proposals = VecDeque::new();
        }
        if self.reads.is_some() {
            let now = ctx.local_reader.now();
            self.tick_reads(ctx, now);
        }
        self.gc_ticks += 1;
        if self.gc_ticks >= ctx.cfg.raft_log_gc_tick_interval {
            self.gc_ticks = 0;
            self.maybe_propose_compact_log(ctx);
        }
        self.probe_if_leader_missing(ctx);
        if self.is_leader() {
            self.maybe_leave_joint();
            self.maybe_hibernate(ctx);
            self.tick_lease(ctx);
        }
    }

    /// A leader of a region in a joint configuration proposes to leave it
    /// once nothing else is pending. Raft does so by itself when the leader
    /// that entered the joint configuration applies it; this covers a
    /// leader elected in between, which raft would leave joint for ever.
    fn maybe_leave_joint(&mut self) {
        if !apply::membership::is_joint(self.region()) || self.raft_group.raft.has_pending_conf() {
            return;
        }
        info!(self.logger, "proposing to leave the joint configuration");
        let leave = kvproto_lite::eraftpb::ConfChangeV2::default();
        if let Err(e) = self.raft_group.propose_conf_change(vec![], leave) {
            debug!(self.logger, "propose leaving the joint configuration"; "err" => %e);
        }
    }

    /// Steps a raft message from another peer (see
    /// [`Peer::on_raft_message`], which wakes a hibernated peer first).
    ///
    /// The message has passed [`Peer::validate`].
    fn step(&mut self, mut msg: RaftMessage) {
        let from = msg.take_from_peer();
        if self.find_peer(from.get_id()).is_none() {
            // A peer this replica's metadata does not list yet (its conf
            // change is not applied here): remember where it lives so that
            // replies can reach it.
            self.peer_cache.push(from);
        }
        let mut m = msg.take_message();
        if m.from != raft::INVALID_ID && m.from == self.unreachable_leader {
            self.unreachable_leader = 0;
        }
        if self.evicting && m.get_msg_type() == MessageType::MsgTimeoutNow {
            debug!(self.logger, "ignore leadership transfer to a store that is shutting down";
                "from" => m.from);
            return;
        }
        if let raft_compat::Rejection::Stale { matched } =
            raft_compat::sanitize_append_rejection(&self.raft_group.raft, &mut m)
        {
            debug!(self.logger, "drop stale append rejection";
                "from" => m.from, "rejected" => m.index, "matched" => matched);
            return;
        }
        if m.from != raft::INVALID_ID && m.from == self.leader_id() {
            self.leader_missing_ticks = 0;
        }
        let rejection = m.get_msg_type() == MessageType::MsgAppendResponse && m.reject;
        if let Err(e) = self.raft_group.step(m) {
            debug!(self.logger, "step failed"; "err" => %e);
        }
        self.pin_election_timeout();
        if rejection {
            self.unstick_probes();
        }
    }

    /// Checks a raft message from another store before raft-rs sees it
    /// (see [`crate::validate`]); a message that fails is counted in the
    /// store's [`RejectedMessages`](crate::validate::RejectedMessages),
    /// logged with its sender and reason, and dropped (`false`).
    pub(crate) fn validate<EK, T>(&self, ctx: &PollContext<EK, ER, T>, msg: &RaftMessage) -> bool
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let Err(reason) = validate::check_for_peer(&self.raft_group.raft, self.meta.get_id(), msg)
        else {
            return true;
        };
        ctx.stats.rejected_messages.record(reason);
        let m = msg.get_message();
        if !reason.is_malformed() {
            debug!(self.logger, "drop raft message for another peer id";
                "to_peer_id" => msg.get_to_peer().get_id(),
                "from_store_id" => msg.get_from_peer().get_store_id(),
                "from_peer_id" => msg.get_from_peer().get_id());
            return false;
        }
        warn!(self.logger, "drop invalid raft message";
            "reason" => %reason,
            "from_store_id" => msg.get_from_peer().get_store_id(),
            "from_peer_id" => msg.get_from_peer().get_id(),
            "to_peer_id" => msg.get_to_peer().get_id(),
            "msg_type" => ?m.get_msg_type(),
            "msg_term" => m.term,
            "term" => self.term(),
            "index" => m.index,
            "commit" => m.commit);
        false
    }

    /// Reports a peer's store as unreachable to raft. A follower whose
    /// leader lives there stops naming it in `NotLeader` answers until it
    /// hears from it again.
    pub(crate) fn on_store_unreachable(&mut self, store_id: u64) {
        let leader = self.leader_id();
        if !self.is_leader()
            && leader != raft::INVALID_ID
            && self
                .find_peer(leader)
                .is_some_and(|p| p.get_store_id() == store_id)
        {
            self.unreachable_leader = leader;
        }
        let ids: Vec<u64> = self
            .region()
            .get_peers()
            .iter()
            .filter(|p| p.get_store_id() == store_id)
            .map(|p| p.get_id())
            .collect();
        for id in ids {
            self.raft_group.report_unreachable(id);
        }
    }

    /// Proposes a CompactLog when more than `raft_log_gc_threshold`
    /// applied entries are kept: up to what every follower has, or up to
    /// the applied index, past lagging followers (they catch up by
    /// snapshot), once the kept log passes a count, size or age limit
    /// (`raft_log_gc_count_limit`, `_size_limit`, `_max_ticks`).
    fn maybe_propose_compact_log<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        if !self.is_leader() {
            self.gc_blocked_ticks = 0;
            return;
        }
        let store = self.raft_group.store();
        let applied = store.apply_state().get_applied_index();
        let truncated = store.truncated_index();
        let min_matched = self.min_matched().unwrap_or(0);
        let kept = applied.saturating_sub(truncated);
        let cfg = &ctx.cfg;
        if min_matched < applied && kept >= cfg.raft_log_gc_threshold {
            self.gc_blocked_ticks += cfg.raft_log_gc_tick_interval as u64;
        } else {
            self.gc_blocked_ticks = 0;
        }
        let force = kept > cfg.raft_log_gc_count_limit
            || self.log_bytes > cfg.raft_log_gc_size_limit
            || self.gc_blocked_ticks >= cfg.raft_log_gc_max_ticks;
        let compact_idx = if force {
            applied
        } else {
            applied.min(min_matched)
        };
        if compact_idx <= truncated || compact_idx - truncated < ctx.cfg.raft_log_gc_threshold {
            return;
        }
        if force && min_matched < compact_idx {
            debug!(self.logger, "log gc past a lagging follower";
                "kept" => kept, "bytes" => self.log_bytes, "blocked_ticks" => self.gc_blocked_ticks,
                "min_matched" => min_matched, "compact_index" => compact_idx);
        }
        let compact_term = match self.raft_group.raft.raft_log.term(compact_idx) {
            Ok(t) => t,
            Err(e) => {
                debug!(self.logger, "skip log gc"; "err" => %e);
                return;
            }
        };
        let mut req = RaftCmdRequest::default();
        req.mut_header().set_region_id(self.region_id);
        req.mut_header().set_peer(self.meta.clone());
        req.mut_header()
            .set_region_epoch(self.region().get_region_epoch().clone());
        let admin = req.mut_admin_request();
        admin.set_cmd_type(AdminCmdType::CompactLog);
        admin.mut_compact_log().set_compact_index(compact_idx);
        admin.mut_compact_log().set_compact_term(compact_term);
        match req.write_to_bytes() {
            Ok(data) => {
                self.propose_data(data, Callback::none(), |rg, d| rg.propose(vec![], d));
            }
            Err(e) => error!(self.logger, "encode compact log"; "err" => %e),
        }
    }

    /// Takes this round's Ready, if any: sends what may leave now, hands
    /// committed entries to apply and adds entries and hard state to the
    /// round's log batch. The Ready is finished by [`Peer::post_ready`]
    /// after the batch is durable.
    pub(crate) fn handle_ready<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        self.flush_proposals();
        if self.reads.is_some() {
            self.check_reads_after_role_change();
            self.flush_reads(ctx);
        }
        // Before this round's messages (which may carry a new commit index
        // to the followers) leave: a lease read needs the leader caught up.
        self.note_caught_up();
        self.publish(ctx);
        if self.is_leader() {
            self.schedule_snapshot_generation(ctx);
        }
        if self.pending_ready.is_some()
            || !self.raft_group.has_ready()
            || self.snapshot_waits_for_apply()
        {
            return;
        }
        if !self.unpersisted_readies.is_empty()
            && self.raft_group.snap().is_some_and(|s| !s.is_empty())
        {
            // A snapshot Ready rewrites the region's log: it is written
            // inline, after every write already handed to the store
            // writer is durable (its Persisted wakes the peer).
            return;
        }
        let mut rd = self.raft_group.ready();
        let read_states = rd.take_read_states();
        if !read_states.is_empty() {
            self.on_read_states(ctx, read_states);
        }
        self.send_messages(ctx, rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.apply_ready_snapshot(ctx, &snap);
            self.log_bytes = 0;
        } else if self.raft_group.snap().is_none() {
            // raft-rs did not take a stepped snapshot (stale): its data goes.
            self.pinned_snapshot = None;
        }
        let committed = rd.take_committed_entries();
        self.send_to_apply(ctx, committed);
        if !rd.entries().is_empty() {
            self.fail_overwritten_proposals(rd.entries());
            self.log_bytes += rd
                .entries()
                .iter()
                .map(|e| e.get_data().len() as u64 + 16)
                .sum::<u64>();
        }
        if ctx.io.is_some() && rd.snapshot().is_empty() {
            self.stage_async_ready(ctx, rd);
            return;
        }
        let hs = rd.hs().cloned();
        match self
            .raft_group
            .mut_store()
            .append(rd.entries(), hs.as_ref(), &mut ctx.log_batch)
        {
            Ok(_) => {}
            Err(e) => {
                // The log batch cannot take our own entries: storage is
                // broken and raft's promises cannot be kept. The store
                // stops; the poller fences this peer and the others.
                let reason = format!(
                    "region {}: cannot stage raft log write: {e}",
                    self.region_id
                );
                if ctx.apply_router.disk_failure().record(reason) {
                    error!(self.logger, "cannot stage raft log write: the store stops"; "err" => %e);
                }
                self.pending_persisted_msgs = rd.take_persisted_messages();
                self.pending_ready = Some(Box::new(rd));
                return;
            }
        }
        if rd.must_sync() {
            ctx.need_sync = true;
        }
        self.pending_persisted_msgs = rd.take_persisted_messages();
        self.pending_ready = Some(Box::new(rd));
        ctx.ready_count += 1;
    }

    /// Async I/O mode: hands the Ready's entries and raft state to the
    /// region's store writer (through the round's task), advances raft
    /// without waiting (`advance_append_async`) and holds the messages
    /// that must wait for durability until [`Peer::on_persisted`]. A Ready
    /// with nothing to write while no earlier write is in flight is
    /// finished at once, as inline mode does.
    fn stage_async_ready<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, mut rd: Ready)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let number = rd.number();
        let hs = rd.hs().cloned();
        let staged = self
            .raft_group
            .mut_store()
            .append_async(number, rd.entries(), hs.as_ref());
        let persisted_msgs = rd.take_persisted_messages();
        ctx.ready_count += 1;
        if staged.is_none() && self.unpersisted_readies.is_empty() {
            self.send_messages(ctx, persisted_msgs);
            let light = self.raft_group.advance_append(rd);
            self.finish_light_ready(ctx, light);
            return;
        }
        let sync = rd.must_sync();
        let (entries, raft_state) = match staged {
            Some((entries, state)) => (entries, Some(state)),
            None => (Vec::new(), None),
        };
        if let Some(io) = &mut ctx.io {
            io.stage(
                crate::store_io::PeerWrite {
                    region_id: self.region_id,
                    peer_id: self.meta.get_id(),
                    ready_number: number,
                    entries,
                    raft_state,
                },
                sync,
            );
        }
        self.raft_group.advance_append_async(rd);
        self.unpersisted_readies.push_back((number, persisted_msgs));
    }

    /// Async I/O mode: a store writer made this peer's Readies up to
    /// `number` durable. Raft learns it (`on_persist_ready`), and the
    /// messages that waited for them leave; what became committed comes
    /// out of the peer's next Ready. A report for another peer id (a peer
    /// of the region destroyed and created again) or for a Ready not in
    /// flight is ignored.
    pub(crate) fn on_persisted<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        peer_id: u64,
        number: u64,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        if ctx.disk_failed() {
            // The store stopped: whatever this reports, nothing is
            // acknowledged any more (the peer is being fenced).
            return;
        }
        if peer_id != self.meta.get_id()
            || !self.unpersisted_readies.iter().any(|(n, _)| *n == number)
        {
            debug!(self.logger, "ignore a persistence report for no write in flight";
                "reported_peer_id" => peer_id, "ready_number" => number);
            return;
        }
        self.raft_group.on_persist_ready(number);
        self.raft_group.mut_store().on_persisted(number);
        while self
            .unpersisted_readies
            .front()
            .is_some_and(|(n, _)| *n <= number)
        {
            if let Some((_, msgs)) = self.unpersisted_readies.pop_front() {
                self.send_messages(ctx, msgs);
            }
        }
    }

    /// Whether Readies handed to a store writer are not durable yet.
    pub(crate) fn has_unpersisted_readies(&self) -> bool {
        !self.unpersisted_readies.is_empty()
    }

    /// Drops the Ready staged this round without advancing raft, and the
    /// messages that were to leave once it was durable (the store stopped
    /// before it became durable); likewise the Readies handed to a store
    /// writer, which will never be reported durable.
    pub(crate) fn discard_ready(&mut self) {
        self.pending_ready = None;
        self.pending_persisted_msgs = Vec::new();
        if !self.unpersisted_readies.is_empty() {
            self.unpersisted_readies = VecDeque::new();
            self.raft_group.mut_store().forget_unpersisted();
        }
    }

    /// Whether a Ready waits for the round's log write.
    pub(crate) fn has_pending_ready(&self) -> bool {
        self.pending_ready.is_some()
    }

    /// Finishes the Ready after the round's log batch is durable: advances
    /// raft, sends messages that had to wait, hands newly committed entries
    /// to apply.
    pub(crate) fn post_ready<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let Some(rd) = self.pending_ready.take() else {
            return;
        };
        let msgs = std::mem::take(&mut self.pending_persisted_msgs);
        self.send_messages(ctx, msgs);
        let light = self.raft_group.advance_append(*rd);
        if let Some(index) = self.snapshot_applied.take() {
            self.raft_group.advance_apply_to(index);
        }
        self.finish_light_ready(ctx, light);
    }

    /// What follows a Ready's persistence in raft: the commit index it
    /// learned, the messages and committed entries of the `LightReady`.
    fn finish_light_ready<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, mut light: LightReady)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        if let Some(commit) = light.commit_index() {
            self.raft_group.mut_store().set_commit_index(commit);
        }
        // The leader's own append may have advanced the commit index, which
        // these messages tell the followers.
        self.note_caught_up();
        self.send_messages(ctx, light.take_messages());
        let committed = light.take_committed_entries();
        self.send_to_apply(ctx, committed);
        self.publish(ctx);
    }

    fn send_to_apply<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, entries: Vec<Entry>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let Some(last) = entries.last() else { return };
        let last_index = last.get_index();
        self.sent_to_apply = self.sent_to_apply.max(last_index);
        let mut proposals = Vec::new();
        let mut committed_at = None;
        while self
            .proposals
            .front()
            .is_some_and(|p| p.index <= last_index)
        {
            if let Some(p) = self.proposals.pop_front() {
                let now = *committed_at.get_or_insert_with(std::time::Instant::now);
                let commit = now.saturating_duration_since(p.proposed_at);
                ctx.metrics.commit_duration.record(commit.as_secs_f64());
                ctx.stats.stages.commit.record(commit);
                proposals.push(apply::Proposal {
                    index: p.index,
                    term: p.term,
                    cb: p.cb.into_apply_callback(&ctx.stats, now),
                    request: p.request,
                });
            }
        }
        ctx.committed_entries += entries.len() as u64;
        // Until applied, the entries are held twice (the raft log's cache and
        // the apply queue); their data is charged once, as the bulk of it.
        let bytes: u64 = entries
            .iter()
            .map(|e| e.get_data().len() as u64 + crate::memory::ENTRY_OVERHEAD_BYTES)
            .sum();
        self.apply_memory
            .push_back((last_index, ctx.stats.memory.charge(bytes)));
        let task = apply::Apply {
            region_id: self.region_id,
            term: self.term(),
            entries,
            proposals,
        };
        ctx.apply_router
            .schedule_task(self.region_id, apply::ApplyMsg::Apply(Box::new(task)));
    }

    fn send_messages<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msgs: Vec<eraftpb::Message>,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        if msgs.is_empty() {
            return;
        }
        // Before any message of a new term leaves (a vote, a vote request,
        // a rejection): other stores answer leader checks from this cell.
        self.publish_check_term();
        for msg in msgs {
            let to = msg.get_to();
            let Some(to_peer) = self.find_peer(to).cloned() else {
                warn!(self.logger, "drop message to unknown peer"; "to_peer_id" => to);
                continue;
            };
            let msg_type = msg.get_msg_type();
            let is_snapshot = msg_type == MessageType::MsgSnapshot;
            let mut rm = RaftMessage::default();
            rm.set_region_id(self.region_id);
            rm.set_from_peer(self.meta.clone());
            rm.set_to_peer(to_peer.clone());
            let region = self.raft_group.store().region();
            rm.set_region_epoch(region.get_region_epoch().clone());
            if matches!(
                msg_type,
                MessageType::MsgRequestVote
                    | MessageType::MsgRequestPreVote
                    | MessageType::MsgHeartbeat
            ) || (msg_type == MessageType::MsgAppend && msg.get_commit() == 0)
            {
                // Messages that may create the peer on the receiving store
                // carry the key range.
                rm.set_start_key(region.get_start_key().to_vec());
                rm.set_end_key(region.get_end_key().to_vec());
            }
            rm.set_message(msg);
            if is_snapshot {
                self.send_snapshot_message(ctx, rm);
                continue;
            }
            let bytes = crate::memory::raft_message_bytes(&rm);
            if let Err(e) = ctx.transport.send(rm) {
                debug!(self.logger, "send failed, report unreachable";
                    "to_peer_id" => to, "err" => %e);
                if to == self.leader_id() && !self.is_leader() {
                    self.unreachable_leader = to;
                }
                self.raft_group.report_unreachable(to);
            } else {
                ctx.charge_outgoing(bytes);
            }
        }
    }

    /// Publishes this peer's term and leader to its leader-check cell when
    /// they changed (see [`crate::leader_check`]): called before any
    /// message leaves the peer.
    fn publish_check_term(&mut self) {
        let raft = &self.raft_group.raft;
        let now = (raft.term, raft.leader_id);
        if now != self.check_published {
            self.check_cell.publish(now.0, now.1);
            self.check_published = now;
        }
    }

    /// The cell other stores' leader checks read (registered with the
    /// store when the peer starts).
    pub(crate) fn leader_check_cell(&self) -> &Arc<crate::leader_check::LeaderCheckCell> {
        &self.check_cell
    }

    /// Takes the apply system's report.
    pub(crate) fn on_apply_res<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        res: apply::ApplyRes,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        let applied = res.apply_state.get_applied_index();
        if applied < self.raft_group.store().truncated_index() {
            // Written before a snapshot this peer applied since: stale.
            debug!(self.logger, "drop apply result older than the snapshot"; "applied" => applied);
            return;
        }
        while self
            .apply_memory
            .front()
            .is_some_and(|(last, _)| *last <= applied)
        {
            self.apply_memory.pop_front();
        }
        for result in res.exec_results {
            self.on_exec_result(ctx, result);
        }
        self.raft_group.mut_store().set_apply_state(res.apply_state);
        self.raft_group.advance_apply_to(applied);
        self.note_caught_up();
        if self.reads.is_some() {
            self.serve_reads(ctx);
        }
        self.publish_read_delegate(ctx);
        // Applied entries are only needed by followers that have not
        // replicated them yet (those read the engine beyond the cache). Keep
        // the last one itself: raft looks its term up for the next append's
        // previous index and for commit checks, and a miss reads the engine.
        let mut keep_from = applied;
        if self.is_leader() {
            let min_matched = self.min_matched().unwrap_or(applied);
            keep_from = keep_from.min(min_matched);
        }
        self.raft_group
            .mut_store()
            .compact_cache_to(keep_from.saturating_sub(1));
    }

    fn on_exec_result<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, result: apply::ExecResult)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        match result {
            apply::ExecResult::ChangePeer { cc, region } => {
                // Apply checked the change against raft's rules on the same
                // configuration, so raft accepts it; a refusal here would
                // mean the two disagree about the configuration.
                if let Err(e) = self.raft_group.apply_conf_change(&cc) {
                    error!(self.logger, "raft refused a membership change that apply accepted";
                        "err" => %e, "changes" => ?cc.get_changes(),
                        "conf_ver" => region.get_region_epoch().get_conf_ver());
                }
                self.pin_election_timeout();
                let removed = !region
                    .get_peers()
                    .iter()
                    .any(|p| p.get_id() == self.meta.get_id());
                if let Some(me) = region
                    .get_peers()
                    .iter()
                    .find(|p| p.get_id() == self.meta.get_id())
                {
                    self.meta.set_role(me.get_role());
                }
                info!(self.logger, "conf change applied";
                    "changes" => ?cc.get_changes(),
                    "conf_ver" => region.get_region_epoch().get_conf_ver());
                self.peer_cache
                    .retain(|p| !region.get_peers().iter().any(|q| q.get_id() == p.get_id()));
                self.raft_group.mut_store().set_region(region);
                if removed {
                    self.pending_remove = true;
                }
            }
            apply::ExecResult::CompactLog { state, first_index } => {
                let region_id = self.region_id;
                let compact_to = state.get_index() + 1;
                let last = self.raft_group.store().last_index();
                let before = last.saturating_sub(first_index.saturating_sub(1)).max(1);
                let remaining = last.saturating_sub(state.get_index());
                self.log_bytes = self.log_bytes.saturating_mul(remaining) / before;
                let mut apply_state = self.raft_group.store().apply_state().clone();
                apply_state.set_truncated_state(state);
                self.raft_group.mut_store().set_apply_state(apply_state);
                self.raft_group.mut_store().compact_cache_to(compact_to - 1);
                if let Err(e) = ctx.engines.raft.compact_to(region_id, compact_to) {
                    error!(self.logger, "raft log gc failed"; "err" => %e, "first_index" => first_index);
                }
            }
            apply::ExecResult::Split { left, right } => {
                info!(self.logger, "split applied"; "left" => left.get_id(), "right" => right.get_id());
                self.raft_group.mut_store().set_region(left);
                self.derived_regions
                    .retain(|r| r.get_id() != right.get_id());
                self.derived_regions.push(right.clone());
                ctx.pending_splits.push(right);
            }
        }
    }
}
