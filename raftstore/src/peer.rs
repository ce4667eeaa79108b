//! `Peer`: one replica of a region, a `raft::RawNode` plus what the store
//! keeps around it (pending proposals, the Ready being persisted).

use std::collections::VecDeque;

use engine::RaftLogEngine;
use kvproto_lite::eraftpb::{self, ConfChange, Entry, MessageType};
use kvproto_lite::metapb::{self, Region};
use kvproto_lite::raft_cmdpb::{AdminCmdType, CmdType, RaftCmdRequest};
use kvproto_lite::raft_serverpb::{RaftApplyState, RaftLocalState, RaftMessage};
use kvproto_lite::util;
use protobuf::Message as _;
use raft::{RawNode, Ready, StateRole};
use slog::{debug, error, info, o, warn, Logger};

use crate::config::Config;
use crate::msg::{Callback, RaftCommand};
use crate::peer_storage::PeerStorage;
use crate::poller::PollContext;
use crate::transport::Transport;

/// A proposal waiting for its entry to be applied.
struct PendingProposal {
    index: u64,
    term: u64,
    cb: Callback,
}

/// One replica of a region on this store.
pub struct Peer<ER: RaftLogEngine> {
    region_id: u64,
    meta: metapb::Peer,
    raft_group: RawNode<PeerStorage<ER>>,
    proposals: VecDeque<PendingProposal>,
    /// The Ready taken in this poll round, advanced after the round's log
    /// batch is durable.
    pending_ready: Option<Ready>,
    /// Messages that may only leave after `pending_ready` is durable.
    pending_persisted_msgs: Vec<eraftpb::Message>,
    /// Ticks since the leader last considered log compaction.
    gc_ticks: usize,
    /// Peers learned from messages but not (yet) in the region metadata.
    peer_cache: Vec<metapb::Peer>,
    /// Regions split off this one, returned with `EpochNotMatch` so a client
    /// learns the whole new layout from one answer.
    derived_regions: Vec<Region>,
    /// The peer was removed from its region or destroyed.
    pending_remove: bool,
    /// Client commands accepted this round, proposed together by
    /// [`Peer::flush_proposals`]: one raft message, so one append per
    /// follower for the whole batch (raft-rs 0.7's own `batch_append` is
    /// unsafe, see `Config::raft_batch_append`).
    batched: Vec<(RaftCmdRequest, u64, Callback)>,
    /// Most encoded bytes of commands merged into one entry.
    batched_bytes_limit: u64,
    /// `Some(election_timeout_ticks)` when election timeouts must not be
    /// random (`Config::raft_election_jitter == false`).
    fixed_election_timeout: Option<usize>,
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
        let mut peer = Peer {
            region_id,
            meta,
            raft_group,
            proposals: VecDeque::new(),
            pending_ready: None,
            pending_persisted_msgs: Vec::new(),
            gc_ticks: 0,
            peer_cache: Vec::new(),
            derived_regions: Vec::new(),
            pending_remove: false,
            batched: Vec::new(),
            batched_bytes_limit: MAX_MERGED_ENTRY_BYTES,
            fixed_election_timeout: (!cfg.raft_election_jitter)
                .then_some(cfg.raft_election_timeout_ticks),
            logger,
        };
        peer.pin_election_timeout();
        Ok(peer)
    }

    /// Without election jitter, replaces the election timeout raft-rs drew
    /// from its thread-local RNG (on every role change) with
    /// `election + h(peer id, term) % election`: reproducible, yet different
    /// in every term. A timeout fixed per peer for good would livelock a
    /// region whose quickest peer has a stale log: it times out first in
    /// every term, its votes are rejected, and its higher term resets the
    /// others' election timers before they can run (found by the
    /// simulation, seed 65). Called after every tick and step.
    fn pin_election_timeout(&mut self) {
        let Some(election) = self.fixed_election_timeout else {
            return;
        };
        let raft = &mut self.raft_group.raft;
        let timeout =
            crate::config::fixed_election_timeout(self.meta.get_id(), raft.term, election);
        if raft.randomized_election_timeout() != timeout {
            raft.set_randomized_election_timeout(timeout);
        }
    }

    /// A leader without snapshots can only send entries above its
    /// truncated index. raft-rs moves a follower's `next_idx` down on
    /// rejections and on `report_unreachable` (to `matched + 1`), possibly
    /// to or below the truncated index: it then tries a snapshot, which this
    /// store cannot make, and never sends that follower anything again. A
    /// follower that cannot be served has to be probed at the earliest entry
    /// the leader still has instead: it accepts once its log reaches the
    /// truncated index (e.g. once a split peer replaced an uninitialized one,
    /// simulation seed 85 with splits), and rejects harmlessly until then.
    fn unstick_probes(&mut self) {
        if !self.is_leader() {
            return;
        }
        let floor = self.raft_group.store().truncated_index() + 1;
        for (_, pr) in self.raft_group.raft.mut_prs().iter_mut() {
            if pr.state == raft::ProgressState::Probe && pr.next_idx < floor {
                pr.next_idx = floor;
                pr.resume();
            }
        }
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

    fn find_peer(&self, peer_id: u64) -> Option<&metapb::Peer> {
        self.region()
            .get_peers()
            .iter()
            .find(|p| p.get_id() == peer_id)
            .or_else(|| self.peer_cache.iter().find(|p| p.get_id() == peer_id))
    }

    fn leader_peer(&self) -> Option<metapb::Peer> {
        let leader_id = self.leader_id();
        if leader_id == raft::INVALID_ID {
            return None;
        }
        self.find_peer(leader_id).cloned()
    }

    /// Starts the peer: a region with a single voter elects itself at once.
    pub(crate) fn start(&mut self) {
        let voters = self.raft_group.raft.prs().conf().voters().ids().len();
        if voters == 1 && self.raft_group.raft.state != StateRole::Leader {
            if let Err(e) = self.raft_group.campaign() {
                warn!(self.logger, "campaign failed"; "err" => %e);
            }
            self.pin_election_timeout();
        }
    }

    /// One raft tick; a leader also considers compacting its log.
    pub(crate) fn tick<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        self.raft_group.tick();
        self.pin_election_timeout();
        self.unstick_probes();
        // Give back what a burst grew (an idle region should stay small);
        // on ticks, not per round, so a busy region does not reallocate.
        self.raft_group.mut_store().shrink_cache();
        if self.proposals.is_empty() && self.proposals.capacity() > 0 {
            self.proposals = VecDeque::new();
        }
        self.gc_ticks += 1;
        if self.gc_ticks >= ctx.cfg.raft_log_gc_tick_interval {
            self.gc_ticks = 0;
            self.maybe_propose_compact_log(ctx);
        }
    }

    /// Steps a raft message from another peer.
    pub(crate) fn step(&mut self, mut msg: RaftMessage) {
        if msg.get_to_peer().get_id() != self.meta.get_id() {
            debug!(self.logger, "drop message for another peer id";
                "to_peer_id" => msg.get_to_peer().get_id());
            return;
        }
        let from = msg.take_from_peer();
        if self.find_peer(from.get_id()).is_none() {
            // A peer this replica's metadata does not list yet (its conf
            // change is not applied here): remember where it lives so that
            // replies can reach it.
            self.peer_cache.push(from);
        }
        let mut m = msg.take_message();
        if raft::raw_node::is_local_msg(m.get_msg_type()) {
            warn!(self.logger, "drop local message type from the network";
                "msg_type" => ?m.get_msg_type());
            return;
        }
        if m.get_msg_type() == MessageType::MsgAppendResponse
            && m.reject
            && self.is_leader()
            && m.term == self.term()
        {
            let matched = self
                .raft_group
                .raft
                .prs()
                .get(m.from)
                .map_or(0, |pr| pr.matched);
            if !sanitize_append_rejection(&mut m, matched) {
                debug!(self.logger, "drop stale append rejection";
                    "from" => m.from, "rejected" => m.index, "matched" => matched);
                return;
            }
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

    /// Reports a peer's store as unreachable to raft.
    pub(crate) fn on_store_unreachable(&mut self, store_id: u64) {
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

    /// Validates and proposes a client command, answering its callback at
    /// once when the command cannot be proposed.
    pub(crate) fn propose<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, cmd: RaftCommand)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let RaftCommand { request, callback } = cmd;
        let term = self.term();
        if let Err(err) = self.pre_propose_check(ctx, &request) {
            callback.invoke_with_error(err, term);
            return;
        }
        if request.has_admin_request() {
            self.propose_admin(ctx, request, callback);
            return;
        }
        // The encoded size (what the entry will hold); also caches the
        // nested sizes for the encoding in `flush_proposals`.
        let size = u64::from(request.compute_size());
        if size > ctx.cfg.raft_entry_max_size {
            callback.invoke_with_error(util::new_raft_entry_too_large(self.region_id, size), term);
            return;
        }
        // Proposed with the rest of this round's commands in
        // `flush_proposals` (before the peer's Ready is taken).
        self.batched_bytes_limit = ctx.cfg.raft_entry_max_size.min(MAX_MERGED_ENTRY_BYTES);
        self.batched.push((request, size, callback));
    }

    /// Proposes every command batched this round as one `MsgPropose` with
    /// one entry per command: raft appends them together and sends one
    /// append per follower instead of one per command. Each command keeps
    /// its own entry, index and callback. Called before the peer's Ready is
    /// taken and before any other proposal (so order is kept).
    pub(crate) fn flush_proposals(&mut self) {
        if self.batched.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batched);
        if !self.is_leader() {
            // Leadership moved since the commands were checked: do not let
            // raft forward them; the client retries at the new leader.
            let err = util::new_not_leader(self.region_id, self.leader_peer());
            let term = self.term();
            for (_, _, cb) in batch {
                cb.invoke_with_error(err.clone(), term);
            }
            return;
        }
        let mut entries = Vec::new();
        let mut callbacks = Vec::new();
        for (request, cb) in merge_commands(batch, self.batched_bytes_limit) {
            match request.write_to_bytes() {
                Ok(data) => {
                    entries.push(Entry {
                        data: data.into(),
                        ..Default::default()
                    });
                    callbacks.push(cb);
                }
                Err(e) => cb.invoke_with_error(
                    util::new_error(format!("encode request: {e}")),
                    self.term(),
                ),
            }
        }
        if entries.is_empty() {
            return;
        }
        let count = entries.len() as u64;
        let mut m = eraftpb::Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.meta.get_id();
        m.set_entries(entries.into());
        let last_before = self.raft_group.raft.raft_log.last_index();
        // `RawNode::step` refuses local messages; `RawNode::propose` steps
        // its one-entry MsgPropose into `raft` the same way.
        let result = self.raft_group.raft.step(m);
        let term = self.term();
        match result {
            Ok(()) => {
                let last = self.raft_group.raft.raft_log.last_index();
                if last != last_before + count {
                    // raft-rs appends all or nothing; anything else leaves
                    // the outcome of each command unknown.
                    for cb in callbacks {
                        cb.invoke_with_error(util::new_error("proposal dropped by raft"), term);
                    }
                    return;
                }
                for (i, cb) in callbacks.into_iter().enumerate() {
                    self.proposals.push_back(PendingProposal {
                        index: last_before + 1 + i as u64,
                        term,
                        cb,
                    });
                }
            }
            Err(raft::Error::ProposalDropped) => {
                let err = util::new_not_leader(self.region_id, self.leader_peer());
                for cb in callbacks {
                    cb.invoke_with_error(err.clone(), term);
                }
            }
            Err(e) => {
                let err = util::new_error(format!("propose: {e}"));
                for cb in callbacks {
                    cb.invoke_with_error(err.clone(), term);
                }
            }
        }
    }

    fn propose_data(
        &mut self,
        data: Vec<u8>,
        callback: Callback,
        propose: impl FnOnce(&mut RawNode<PeerStorage<ER>>, Vec<u8>) -> raft::Result<()>,
    ) {
        self.flush_proposals();
        let last_before = self.raft_group.raft.raft_log.last_index();
        match propose(&mut self.raft_group, data) {
            Ok(()) => {
                let index = self.raft_group.raft.raft_log.last_index();
                if index == last_before {
                    // raft-rs dropped it silently (e.g. a pending conf change).
                    callback.invoke_with_error(
                        util::new_error("proposal dropped by raft"),
                        self.term(),
                    );
                    return;
                }
                let term = self.term();
                self.proposals.push_back(PendingProposal {
                    index,
                    term,
                    cb: callback,
                });
            }
            Err(raft::Error::ProposalDropped) => {
                let err = util::new_not_leader(self.region_id, self.leader_peer());
                callback.invoke_with_error(err, self.term());
            }
            Err(e) => {
                callback.invoke_with_error(util::new_error(format!("propose: {e}")), self.term());
            }
        }
    }

    fn propose_admin<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        request: RaftCmdRequest,
        callback: Callback,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        // Commands batched earlier in the round go first.
        self.flush_proposals();
        let admin = request.get_admin_request();
        let term = self.term();
        match admin.get_cmd_type() {
            AdminCmdType::TransferLeader => {
                let target = admin.get_transfer_leader().get_peer().get_id();
                if self.find_peer(target).is_none() {
                    callback.invoke_with_error(
                        util::new_error(format!("transfer leader: peer {target} not in region")),
                        term,
                    );
                    return;
                }
                self.raft_group.transfer_leader(target);
                let mut resp = kvproto_lite::raft_cmdpb::RaftCmdResponse::default();
                resp.mut_header().set_current_term(term);
                resp.mut_admin_response()
                    .set_cmd_type(AdminCmdType::TransferLeader);
                callback.invoke(resp);
            }
            AdminCmdType::ChangePeer => {
                let cp = admin.get_change_peer();
                let mut cc = ConfChange::default();
                cc.set_change_type(cp.get_change_type());
                cc.set_node_id(cp.get_peer().get_id());
                let context = match request.write_to_bytes() {
                    Ok(c) => c,
                    Err(e) => {
                        callback.invoke_with_error(util::new_error(format!("encode: {e}")), term);
                        return;
                    }
                };
                self.propose_data(context, callback, |raft_group, context| {
                    raft_group.propose_conf_change(context, cc)
                });
            }
            AdminCmdType::Split | AdminCmdType::CompactLog => {
                let data = match request.write_to_bytes() {
                    Ok(d) => d,
                    Err(e) => {
                        callback.invoke_with_error(util::new_error(format!("encode: {e}")), term);
                        return;
                    }
                };
                let _ = ctx;
                self.propose_data(data, callback, |raft_group, data| {
                    raft_group.propose(vec![], data)
                });
            }
            AdminCmdType::InvalidAdmin => {
                callback.invoke_with_error(util::new_error("invalid admin command type"), term);
            }
        }
    }

    fn pre_propose_check<EK, T>(
        &self,
        ctx: &PollContext<EK, ER, T>,
        request: &RaftCmdRequest,
    ) -> Result<(), kvproto_lite::errorpb::Error>
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let header = request.get_header();
        if header.get_region_id() != self.region_id {
            return Err(util::new_region_not_found(header.get_region_id()));
        }
        if header.has_peer() && header.get_peer().get_store_id() != ctx.store_id {
            return Err(util::new_store_not_match(
                header.get_peer().get_store_id(),
                ctx.store_id,
            ));
        }
        if !self.is_leader() {
            return Err(util::new_not_leader(self.region_id, self.leader_peer()));
        }
        if request.get_requests().is_empty() && !request.has_admin_request() {
            return Err(util::new_error(
                "empty command: no requests and no admin request",
            ));
        }
        let region = self.region();
        if util::is_epoch_stale(header.get_region_epoch(), region.get_region_epoch()) {
            let mut current = Vec::with_capacity(1 + self.derived_regions.len());
            current.push(region.clone());
            current.extend(self.derived_regions.iter().cloned());
            return Err(util::new_epoch_not_match(
                format!(
                    "request epoch {:?} is older than region epoch {:?}",
                    header.get_region_epoch(),
                    region.get_region_epoch()
                ),
                current,
            ));
        }
        for req in request.get_requests() {
            let key = match req.get_cmd_type() {
                CmdType::Get => req.get_get().get_key(),
                CmdType::Put => req.get_put().get_key(),
                CmdType::Delete => req.get_delete().get_key(),
                CmdType::Invalid => return Err(util::new_error("invalid command type")),
            };
            util::check_key_in_region(key, region)?;
        }
        Ok(())
    }

    /// Proposes a CompactLog when enough applied entries are kept and every
    /// follower already has them (snapshots do not exist yet, so the log is
    /// never compacted past what a follower still needs).
    fn maybe_propose_compact_log<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        if !self.is_leader() {
            return;
        }
        let store = self.raft_group.store();
        let applied = store.apply_state().get_applied_index();
        let truncated = store.truncated_index();
        let min_matched = self
            .raft_group
            .raft
            .prs()
            .iter()
            .map(|(_, pr)| pr.matched)
            .min()
            .unwrap_or(0);
        let compact_idx = applied.min(min_matched);
        if compact_idx <= truncated || compact_idx - truncated < ctx.cfg.raft_log_gc_threshold {
            return;
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
        if self.pending_ready.is_some() || !self.raft_group.has_ready() {
            return;
        }
        let mut rd = self.raft_group.ready();
        if let Some(ss) = rd.ss() {
            ctx.on_role_changed(self.region_id, ss.raft_state, self.term(), ss.leader_id);
        }
        self.send_messages(ctx, rd.take_messages());
        if !rd.snapshot().is_empty() {
            // Storage never produces snapshots, so no leader sends one.
            error!(self.logger, "received a snapshot, which this store cannot apply yet";
                "index" => rd.snapshot().get_metadata().get_index());
        }
        let committed = rd.take_committed_entries();
        self.send_to_apply(ctx, committed);
        if !rd.entries().is_empty() {
            self.fail_overwritten_proposals(rd.entries());
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
                // broken and raft's promises cannot be kept.
                panic!(
                    "region {}: cannot stage raft log write: {e}",
                    self.region_id
                );
            }
        }
        if rd.must_sync() {
            ctx.need_sync = true;
        }
        self.pending_persisted_msgs = rd.take_persisted_messages();
        self.pending_ready = Some(rd);
        ctx.ready_count += 1;
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
        let mut light = self.raft_group.advance_append(rd);
        if let Some(commit) = light.commit_index() {
            self.raft_group.mut_store().set_commit_index(commit);
        }
        self.send_messages(ctx, light.take_messages());
        let committed = light.take_committed_entries();
        self.send_to_apply(ctx, committed);
    }

    /// A new leader overwrote part of the log: proposals whose entries were
    /// replaced can never commit.
    fn fail_overwritten_proposals(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        if self.is_leader() {
            return;
        }
        let first_index = first.get_index();
        let first_term = first.get_term();
        let term = self.term();
        let mut kept = VecDeque::with_capacity(self.proposals.len());
        for p in self.proposals.drain(..) {
            if p.index >= first_index && p.term < first_term {
                p.cb.invoke_with_error(util::new_stale_command(), term);
            } else {
                kept.push_back(p);
            }
        }
        self.proposals = kept;
    }

    fn send_to_apply<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, entries: Vec<Entry>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let Some(last) = entries.last() else { return };
        let last_index = last.get_index();
        let mut proposals = Vec::new();
        while self
            .proposals
            .front()
            .is_some_and(|p| p.index <= last_index)
        {
            if let Some(p) = self.proposals.pop_front() {
                proposals.push(apply::Proposal {
                    index: p.index,
                    term: p.term,
                    cb: p.cb.into_apply_callback(),
                });
            }
        }
        ctx.committed_entries += entries.len() as u64;
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
        for msg in msgs {
            let to = msg.get_to();
            let Some(to_peer) = self.find_peer(to).cloned() else {
                warn!(self.logger, "drop message to unknown peer"; "to_peer_id" => to);
                continue;
            };
            let msg_type = msg.get_msg_type();
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
            if let Err(e) = ctx.transport.send(rm) {
                debug!(self.logger, "send failed, report unreachable";
                    "to_peer_id" => to, "err" => %e);
                self.raft_group.report_unreachable(to);
            }
        }
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
        for result in res.exec_results {
            self.on_exec_result(ctx, result);
        }
        self.raft_group.mut_store().set_apply_state(res.apply_state);
        self.raft_group.advance_apply_to(applied);
        // Applied entries are only needed by followers that have not
        // replicated them yet (those read the engine beyond the cache). Keep
        // the last one itself: raft looks its term up for the next append's
        // previous index and for commit checks, and a miss reads the engine.
        let mut keep_from = applied;
        if self.is_leader() {
            let min_matched = self
                .raft_group
                .raft
                .prs()
                .iter()
                .map(|(_, pr)| pr.matched)
                .min()
                .unwrap_or(applied);
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
                if let Err(e) = self.raft_group.apply_conf_change(&cc) {
                    error!(self.logger, "apply conf change"; "err" => %e);
                }
                self.pin_election_timeout();
                let removed = !region
                    .get_peers()
                    .iter()
                    .any(|p| p.get_id() == self.meta.get_id());
                info!(self.logger, "conf change applied";
                    "change" => ?cc.get_change_type(), "node" => cc.get_node_id(),
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

    /// Answers every pending proposal with `err`.
    pub(crate) fn fail_pending_proposals(&mut self, err: kvproto_lite::errorpb::Error) {
        let term = self.term();
        for p in self.proposals.drain(..) {
            p.cb.invoke_with_error(err.clone(), term);
        }
        for (_, _, cb) in self.batched.drain(..) {
            cb.invoke_with_error(err.clone(), term);
        }
    }
}

/// Guards raft-rs 0.7 against a stale append rejection (one that arrives
/// after the follower has already acknowledged more, e.g. reordered or
/// delayed by the network). raft-rs's `Progress::maybe_decr_to` only checks
/// staleness against `matched` in Replicate state; in Probe state it sets
/// `next_idx = min(rejected, hint + 1)`, which can fall to `matched` or
/// below. If the log was compacted up to `matched` (allowed: the follower
/// has it), the leader then needs a compacted entry, falls back to a
/// snapshot (which this store cannot make) and never replicates to that
/// follower again (found by the simulation, seed 113: a replica stuck 14
/// entries behind forever). etcd's raft clamps `next` to `match + 1`; this
/// does the same from outside: a rejection of an index the follower has
/// matched is dropped, and a hint below `matched` is raised to it. Returns
/// `false` to drop the message.
pub(crate) fn sanitize_append_rejection(m: &mut eraftpb::Message, matched: u64) -> bool {
    if m.index <= matched {
        return false;
    }
    if m.reject_hint < matched {
        m.reject_hint = matched;
        // The hint is then a plain index, not a (index, term) pair to search
        // the leader's log with.
        m.log_term = 0;
    }
    true
}

/// Most bytes of client commands merged into one raft entry (a command
/// larger than this gets an entry of its own).
const MAX_MERGED_ENTRY_BYTES: u64 = 512 * 1024;

/// A merged command being built: the request, its encoded bytes so far,
/// and (requests, callback) of each original command.
type MergeGroup = (RaftCmdRequest, u64, Vec<(usize, Callback)>);

/// Merges consecutive commands with identical headers into one
/// `RaftCmdRequest` per entry (at most `limit` encoded bytes each), so a
/// round's commands cost one entry to replicate, persist, decode and apply.
/// The merged command's callback hands each original callback its own
/// slice of the responses, or a copy of the error: apply executes a merged
/// command atomically, which each original command's checks already
/// passed alone (same header, keys checked against the region).
fn merge_commands(
    batch: Vec<(RaftCmdRequest, u64, Callback)>,
    limit: u64,
) -> Vec<(RaftCmdRequest, Callback)> {
    let mut out: Vec<(RaftCmdRequest, Callback)> = Vec::new();
    let mut group: Option<MergeGroup> = None;
    let finish = |g: MergeGroup| -> (RaftCmdRequest, Callback) {
        let (request, _, mut parts) = g;
        if parts.len() == 1 {
            if let Some((_, cb)) = parts.pop() {
                return (request, cb);
            }
        }
        (request, split_callback(parts))
    };
    for (mut request, size, cb) in batch {
        let fits = group.as_ref().is_some_and(|(g, bytes, _)| {
            bytes + size <= limit && g.get_header() == request.get_header()
        });
        if fits {
            if let Some((g, bytes, parts)) = group.as_mut() {
                let n = request.get_requests().len();
                g.mut_requests().extend(request.take_requests());
                *bytes += size;
                parts.push((n, cb));
            }
        } else {
            if let Some(g) = group.take() {
                out.push(finish(g));
            }
            let n = request.get_requests().len();
            group = Some((request, size, vec![(n, cb)]));
        }
    }
    if let Some(g) = group.take() {
        out.push(finish(g));
    }
    out
}

/// A callback for a merged command: answers each part with its own
/// responses (in order), or every part with the error.
fn split_callback(parts: Vec<(usize, Callback)>) -> Callback {
    Callback::new(move |mut resp: kvproto_lite::raft_cmdpb::RaftCmdResponse| {
        let total: usize = parts.iter().map(|(n, _)| n).sum();
        let header = resp.take_header();
        if header.has_error() || resp.get_responses().len() != total {
            let mut err = header.get_error().clone();
            if !header.has_error() {
                err.set_message(format!(
                    "merged command answered with {} responses for {total} requests",
                    resp.get_responses().len()
                ));
            }
            for (_, cb) in parts {
                cb.invoke_with_error(err.clone(), header.get_current_term());
            }
            return;
        }
        let mut responses = resp.take_responses().into_iter();
        for (n, cb) in parts {
            let mut r = kvproto_lite::raft_cmdpb::RaftCmdResponse::default();
            r.set_header(header.clone());
            r.set_responses(responses.by_ref().take(n).collect());
            cb.invoke(r);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(index: u64, hint: u64, log_term: u64) -> eraftpb::Message {
        let mut m = eraftpb::Message::default();
        m.set_msg_type(MessageType::MsgAppendResponse);
        m.reject = true;
        m.index = index;
        m.reject_hint = hint;
        m.log_term = log_term;
        m
    }

    /// Regression (simulation seed 113): a late rejection of index 75 (hint
    /// 74) reached the leader after the follower had matched 75; raft-rs
    /// moved `next_idx` to 75, below the compacted log, and replication to
    /// that follower stopped for good.
    #[test]
    fn seed_113_rejection_of_a_matched_index_is_dropped() {
        let mut m = rejection(75, 74, 18);
        assert!(!sanitize_append_rejection(&mut m, 75));
        let mut m = rejection(60, 59, 18);
        assert!(!sanitize_append_rejection(&mut m, 75));
    }

    #[test]
    fn rejection_hint_below_matched_is_raised_to_matched() {
        let mut m = rejection(78, 74, 18);
        assert!(sanitize_append_rejection(&mut m, 75));
        assert_eq!((m.index, m.reject_hint, m.log_term), (78, 75, 0));
    }

    #[test]
    fn fresh_rejection_is_left_alone() {
        let mut m = rejection(80, 77, 18);
        assert!(sanitize_append_rejection(&mut m, 75));
        assert_eq!((m.index, m.reject_hint, m.log_term), (80, 77, 18));
    }

    fn put_command(
        key: &[u8],
        header_region: u64,
    ) -> (
        RaftCmdRequest,
        u64,
        Callback,
        std::sync::mpsc::Receiver<kvproto_lite::raft_cmdpb::RaftCmdResponse>,
    ) {
        let mut req = RaftCmdRequest::default();
        req.mut_header().set_region_id(header_region);
        let mut r = kvproto_lite::raft_cmdpb::Request::default();
        r.set_cmd_type(CmdType::Put);
        r.mut_put().set_key(key.to_vec());
        r.mut_put().set_value(b"v".to_vec());
        req.mut_requests().push(r);
        let size = u64::from(req.compute_size());
        let (tx, rx) = std::sync::mpsc::channel();
        let cb = Callback::new(move |resp| {
            let _ = tx.send(resp);
        });
        (req, size, cb, rx)
    }

    #[test]
    fn commands_with_one_header_merge_and_each_gets_its_own_response() {
        let cmds: Vec<_> = (0..3u8).map(|i| put_command(&[i], 1)).collect();
        let mut rxs = Vec::new();
        let batch = cmds
            .into_iter()
            .map(|(req, size, cb, rx)| {
                rxs.push(rx);
                (req, size, cb)
            })
            .collect();
        let mut merged = merge_commands(batch, MAX_MERGED_ENTRY_BYTES);
        assert_eq!(merged.len(), 1);
        let (req, cb) = merged.pop().unwrap();
        let keys: Vec<Vec<u8>> = req
            .get_requests()
            .iter()
            .map(|r| r.get_put().get_key().to_vec())
            .collect();
        assert_eq!(keys, vec![vec![0], vec![1], vec![2]]);
        let mut resp = kvproto_lite::raft_cmdpb::RaftCmdResponse::default();
        resp.mut_header().set_current_term(7);
        for _ in 0..3 {
            let mut r = kvproto_lite::raft_cmdpb::Response::default();
            r.set_cmd_type(CmdType::Put);
            resp.mut_responses().push(r);
        }
        cb.invoke(resp);
        for rx in rxs {
            let r = rx.try_recv().unwrap();
            assert!(!r.get_header().has_error());
            assert_eq!(r.get_header().get_current_term(), 7);
            assert_eq!(r.get_responses().len(), 1);
        }
    }

    #[test]
    fn an_error_for_a_merged_command_reaches_every_part() {
        let (a, sa, ca, ra) = put_command(b"a", 1);
        let (b, sb, cb, rb) = put_command(b"b", 1);
        let (req, merged_cb) =
            merge_commands(vec![(a, sa, ca), (b, sb, cb)], MAX_MERGED_ENTRY_BYTES)
                .pop()
                .unwrap();
        assert_eq!(req.get_requests().len(), 2);
        merged_cb.invoke_with_error(util::new_stale_command(), 3);
        assert!(ra
            .try_recv()
            .unwrap()
            .get_header()
            .get_error()
            .has_stale_command());
        assert!(rb
            .try_recv()
            .unwrap()
            .get_header()
            .get_error()
            .has_stale_command());
    }

    #[test]
    fn a_dropped_merged_callback_answers_every_part() {
        let (a, sa, ca, ra) = put_command(b"a", 1);
        let (b, sb, cb, rb) = put_command(b"b", 1);
        drop(merge_commands(
            vec![(a, sa, ca), (b, sb, cb)],
            MAX_MERGED_ENTRY_BYTES,
        ));
        assert!(ra.try_recv().unwrap().get_header().has_error());
        assert!(rb.try_recv().unwrap().get_header().has_error());
    }

    #[test]
    fn different_headers_and_the_size_limit_start_new_entries() {
        let (a, sa, ca, _ra) = put_command(b"a", 1);
        let (b, sb, cb, _rb) = put_command(b"b", 2);
        let (c, sc, cc, _rc) = put_command(b"c", 2);
        let merged = merge_commands(
            vec![(a, sa, ca), (b, sb, cb), (c, sc, cc)],
            MAX_MERGED_ENTRY_BYTES,
        );
        assert_eq!(merged.len(), 2);
        let (d, sd, cd, _rd) = put_command(b"d", 1);
        let (e, se, ce, _re) = put_command(b"e", 1);
        let limit = sd + se - 1;
        assert_eq!(
            merge_commands(vec![(d, sd, cd), (e, se, ce)], limit).len(),
            2
        );
    }
}
