//! Proposing commands: the checks a command passes before it is proposed
//! (leader, epoch, key range, size), admin commands, and the proposals
//! waiting for their entries to be applied.
//!
//! Normal commands accepted in a round are batched ([`super::batch`]) and
//! proposed together by [`Peer::flush_proposals`] before the peer's Ready
//! is taken.

use std::collections::VecDeque;
use std::time::Instant;

use engine::RaftLogEngine;
use kvproto_lite::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry,
};
use kvproto_lite::raft_cmdpb::{AdminCmdType, CmdType, RaftCmdRequest};
use kvproto_lite::util;
use protobuf::Message as _;
use raft::RawNode;

use super::batch::{merge_commands, MAX_MERGED_ENTRY_BYTES};
use super::Peer;
use crate::context::PollContext;
use crate::memory::COMMAND_OVERHEAD_BYTES;
use crate::msg::{Callback, RaftCommand};
use crate::raft_compat;
use crate::storage::PeerStorage;
use crate::transport::Transport;

/// A proposal waiting for its entry to be applied.
pub(super) struct PendingProposal {
    pub(super) index: u64,
    pub(super) term: u64,
    pub(super) cb: Callback,
    /// When it was proposed: only for the commit-duration metric.
    pub(super) proposed_at: Instant,
    /// The command the entry encodes (normal commands): apply uses it
    /// instead of decoding the entry again.
    pub(super) request: Option<Box<RaftCmdRequest>>,
}

impl<ER: RaftLogEngine> Peer<ER> {
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
            crate::metrics::command_refused(&err);
            callback.invoke_with_error(err, term);
            return;
        }
        // The command left its mailbox; what is batched this round is
        // proposed before the round ends.
        ctx.stats
            .stages
            .propose_wait
            .record(callback.created_at().elapsed());
        if request.has_admin_request() {
            self.propose_admin(ctx, request, callback);
            return;
        }
        if let Some(mode) = crate::local_reader::fast_read_mode(&request) {
            self.propose_read(ctx, RaftCommand { request, callback }, mode);
            return;
        }
        // The encoded size (what the entry will hold); also caches the
        // nested sizes for the encoding in `flush_proposals`.
        let size = u64::from(request.compute_size());
        if size > ctx.cfg.raft_entry_max_size {
            callback.invoke_with_error(util::new_raft_entry_too_large(self.region_id, size), term);
            return;
        }
        // The memory quota: refuse new work while accepted work holds the
        // store's quota; what is accepted holds its bytes until answered.
        // Commands that came through `RaftRouter::send_raft_command` were
        // admitted and charged at the mailbox door already: they are
        // accepted work and never refused here.
        let mut callback = callback;
        if !callback.holds_memory() {
            if let Err(err) = ctx.stats.memory.check_admission() {
                crate::metrics::command_refused(&err);
                callback.invoke_with_error(err, term);
                return;
            }
            callback.hold_memory(ctx.stats.memory.charge(size + COMMAND_OVERHEAD_BYTES));
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
            let err = util::new_not_leader(self.region_id, self.leader_hint());
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
                    callbacks.push((cb, Box::new(request)));
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
        let last_before = self.raft_group.raft.raft_log.last_index();
        let result = raft_compat::propose_entries(&mut self.raft_group.raft, entries);
        let term = self.term();
        match result {
            Ok(()) => {
                let last = self.raft_group.raft.raft_log.last_index();
                if last != last_before + count {
                    // raft-rs appends all or nothing; anything else leaves
                    // the outcome of each command unknown.
                    for (cb, _) in callbacks {
                        cb.invoke_with_error(util::new_error("proposal dropped by raft"), term);
                    }
                    return;
                }
                let proposed_at = Instant::now();
                crate::metrics::proposed(count);
                for (i, (cb, request)) in callbacks.into_iter().enumerate() {
                    self.proposals.push_back(PendingProposal {
                        index: last_before + 1 + i as u64,
                        term,
                        cb,
                        proposed_at,
                        request: Some(request),
                    });
                }
            }
            Err(raft::Error::ProposalDropped) => {
                let err = util::new_not_leader(self.region_id, self.leader_hint());
                for (cb, _) in callbacks {
                    cb.invoke_with_error(err.clone(), term);
                }
            }
            Err(e) => {
                let err = util::new_error(format!("propose: {e}"));
                for (cb, _) in callbacks {
                    cb.invoke_with_error(err.clone(), term);
                }
            }
        }
    }

    pub(super) fn propose_data(
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
                crate::metrics::proposed(1);
                self.proposals.push_back(PendingProposal {
                    index,
                    term,
                    cb: callback,
                    proposed_at: Instant::now(),
                    request: None,
                });
            }
            Err(raft::Error::ProposalDropped) => {
                let err = util::new_not_leader(self.region_id, self.leader_hint());
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
                // The target may win at once (MsgTimeoutNow skips the
                // followers' lease): no lease read from here on.
                self.lease.expire();
                self.raft_group.transfer_leader(target);
                let mut resp = kvproto_lite::raft_cmdpb::RaftCmdResponse::default();
                resp.mut_header().set_current_term(term);
                resp.mut_admin_response()
                    .set_cmd_type(AdminCmdType::TransferLeader);
                callback.invoke(resp);
            }
            AdminCmdType::ChangePeer | AdminCmdType::ChangePeerV2 => {
                let cc = match self.check_membership_change(&request) {
                    Ok(cc) => cc,
                    Err(err) => {
                        callback.invoke_with_error(err, term);
                        return;
                    }
                };
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

    /// The checks a membership change passes before it is proposed, and
    /// the raft conf change it becomes. Refused here: a change while
    /// another one is still pending or the region is in a joint
    /// configuration (raft would silently drop it), and removing or
    /// demoting the leader itself (transfer leadership first). What raft
    /// itself would refuse is checked again when the change is applied.
    fn check_membership_change(
        &self,
        request: &RaftCmdRequest,
    ) -> Result<ConfChangeV2, kvproto_lite::errorpb::Error> {
        let admin = request.get_admin_request();
        let changes = apply::membership::requested_changes(admin)?;
        if changes.is_empty() {
            return Err(util::new_error("membership change without any change"));
        }
        let raft = &self.raft_group.raft;
        // Both refusals are transient: `ServerIsBusy` tells a client the
        // command did not run and to try again later.
        if raft.has_pending_conf() {
            return Err(util::new_server_is_busy(&format!(
                "region {}: another membership change (index {}) is not applied yet",
                self.region_id, raft.pending_conf_index
            )));
        }
        if apply::membership::is_joint(self.region()) {
            return Err(util::new_server_is_busy(&format!(
                "region {} is in a joint configuration until it leaves it",
                self.region_id
            )));
        }
        let me = self.meta.get_id();
        for c in &changes {
            let target = c.get_peer().get_id();
            let demotes_or_removes = matches!(
                c.get_change_type(),
                ConfChangeType::RemoveNode | ConfChangeType::AddLearnerNode
            );
            if target == me && demotes_or_removes {
                return Err(util::new_error(format!(
                    "peer {me} is the leader of region {}: transfer leadership before \
                     removing or demoting it",
                    self.region_id
                )));
            }
        }
        let mut cc = ConfChangeV2::default();
        if changes.len() > 1 {
            cc.set_transition(ConfChangeTransition::Auto);
        }
        cc.set_changes(
            changes
                .iter()
                .map(|c| {
                    let mut single = ConfChangeSingle::default();
                    single.set_change_type(c.get_change_type());
                    single.set_node_id(c.get_peer().get_id());
                    single
                })
                .collect::<Vec<_>>()
                .into(),
        );
        Ok(cc)
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
        // A follower read is served by any peer; everything else by the
        // leader only.
        let follower_read = crate::local_reader::fast_read_mode(request)
            == Some(kvproto_lite::raft_cmdpb::ReadMode::Follower);
        if !self.is_leader() && !follower_read {
            return Err(util::new_not_leader(self.region_id, self.leader_hint()));
        }
        if let Some(target) = self
            .raft_group
            .raft
            .lead_transferee
            .filter(|_| !follower_read)
        {
            // raft-rs drops proposals while it hands leadership over: send
            // the client to the peer taking over.
            return Err(util::new_not_leader(
                self.region_id,
                self.find_peer(target).cloned(),
            ));
        }
        let request_term = header.get_term();
        if request_term != 0 && request_term.saturating_add(1) < self.term() {
            // The client's view predates at least two leader changes (0
            // means unchecked; one change behind is the common case).
            let mut err = util::new_error(format!(
                "stale command: request term {request_term} is more than one behind the current term {}",
                self.term()
            ));
            err.set_stale_command(kvproto_lite::errorpb::StaleCommand::default());
            return Err(err);
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
                    "request epoch ({}) is older than region epoch ({})",
                    util::epoch_text(header.get_region_epoch()),
                    util::epoch_text(region.get_region_epoch())
                ),
                current,
            ));
        }
        for req in request.get_requests() {
            let key = match req.get_cmd_type() {
                CmdType::Get => req.get_get().get_key(),
                CmdType::Put => req.get_put().get_key(),
                CmdType::Delete => req.get_delete().get_key(),
                CmdType::CompareAndSwap => req.get_cas().get_key(),
                CmdType::DeleteIfEqual => req.get_delete_if_equal().get_key(),
                // A user command names no key; its handler can only reach
                // keys of the region it is applied in.
                CmdType::User => continue,
                CmdType::Invalid => return Err(util::new_error("invalid command type")),
            };
            util::check_key_in_region(key, region)?;
        }
        Ok(())
    }

    /// A new leader overwrote part of the log: proposals whose entries were
    /// replaced can never commit.
    pub(super) fn fail_overwritten_proposals(&mut self, entries: &[Entry]) {
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

    /// Answers every pending proposal (and waiting read) with `err`.
    pub(crate) fn fail_pending_proposals(&mut self, err: kvproto_lite::errorpb::Error) {
        self.fail_pending_reads(&err);
        let term = self.term();
        for p in self.proposals.drain(..) {
            p.cb.invoke_with_error(err.clone(), term);
        }
        for (_, _, cb) in self.batched.drain(..) {
            cb.invoke_with_error(err.clone(), term);
        }
    }
}
