//! Reads that do not go through the raft log: ReadIndex on the leader,
//! ReadIndex asked by a follower, and the leader lease.
//!
//! ```text
//! propose(read-only command, mode != Log)
//!   Lease, lease valid, leader applied an entry of its term
//!       -> served at once from the KV engine if everything committed is
//!          applied; otherwise a batch whose read index is the commit
//!          index now (the lease stands for the quorum round), served once
//!          applied like any batch
//!   otherwise -> this round's read batch
//! handle_ready (once per round)
//!   round's batch, on a leader whose region may use a leader check (no
//!   lease read in it; see `crate::leader_check`) -> read index = commit
//!   index now, the region joins the round's check to each other voter's
//!   store; answers (PeerMsg::LeaderChecked) -> a quorum that confirmed a
//!   check sent after the batch's reads arrived gives the batch its read
//!   index; a lost quorum or an election timeout without one -> the batch
//!   falls back to:
//!   round's batch otherwise -> one raft read_index(batch id) for all of
//!   them (a leader that has not committed an entry of its term waits:
//!   raft-rs drops such requests)
//!   Ready.read_states -> the batch's read index (the commit index that a
//!   quorum confirmed the leader still led at); on the leader it renews the
//!   lease from the moment the request was sent (a leader check never does:
//!   it does not reset the followers' election timers)
//! applied index >= read index -> every read of the batch is served from
//!   the KV engine (whose applied state covers the read index)
//! ticks: a batch unanswered for two election timeouts, and a leader's
//!   batches when it stops leading, are answered NotLeader (retryable).
//!   A leader whose lease served reads since the last tick and has less
//!   than half of its length left renews it in advance: a read index
//!   with no reads (so lease reads keep being served off the raft thread
//!   instead of falling back to ReadIndex each time the lease runs out),
//!   and it does not hibernate while its lease is read.
//! ```
//!
//! Batching follows TiKV (`peer.rs` read_index: one raft read index per
//! batch of reads), leader checks TiKV's `check_leader` (one question per
//! store pair for many regions), and the lease follows TiKV's `Lease`: renewed from the
//! time the confirming request was *sent*, never from when the answer came,
//! and shorter than the election timeout by a clock-drift bound.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use engine::RaftLogEngine;
use kvproto_lite::raft_cmdpb::ReadMode;
use kvproto_lite::util;
use raft::StateRole;

use super::Peer;
use crate::context::PollContext;
use crate::local_reader::{read_from_engine, LeaseCell};
use crate::msg::{Callback, RaftCommand};
use crate::raft_compat;
use crate::transport::Transport;

/// Reads waiting for one raft read index.
pub(super) struct ReadBatch {
    id: u64,
    /// Asked by a follower (`Follower` mode) rather than the leader.
    follower: bool,
    /// The read index, once raft answered.
    index: Option<u64>,
    /// `read_index` was called (the leader may have to wait for an entry of
    /// its term to commit first).
    sent: bool,
    /// Clock time `read_index` was called: the lease start if confirmed.
    sent_at: Duration,
    /// Ticks since the batch was created (or fell back to raft's read
    /// index).
    age: usize,
    /// May be confirmed by a leader check (see [`crate::leader_check`])
    /// instead of raft's read index: a leader batch with no lease read in
    /// it (only raft's read index renews the lease) that did not fall back
    /// already.
    checkable: bool,
    /// While a leader check confirms the batch: `(check id, read index)`,
    /// the read index being the commit index when the check was asked.
    check: Option<(u64, u64)>,
    reads: Vec<RaftCommand>,
}

/// The reads of one peer, kept out of line: an idle peer holds `None`.
#[derive(Default)]
pub(super) struct PendingReads {
    /// Reads accepted this round, batched in `flush_reads`.
    round: Vec<RaftCommand>,
    round_follower: Vec<RaftCommand>,
    batches: VecDeque<ReadBatch>,
    /// The last check id this region joined (it joins a round's check
    /// once).
    last_check: u64,
}

impl PendingReads {
    fn is_empty(&self) -> bool {
        self.round.is_empty() && self.round_follower.is_empty() && self.batches.is_empty()
    }
}

impl<ER: RaftLogEngine> Peer<ER> {
    /// The lease: the election timeout minus the configured clock drift
    /// (and one tick, since a follower's election clock may be a tick
    /// ahead when it hears the leader).
    pub(super) fn lease_duration<EK, T>(ctx: &PollContext<EK, ER, T>) -> Duration
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let tick = Duration::from_millis(ctx.cfg.raft_base_tick_interval_ms);
        let election = tick * (ctx.cfg.raft_election_timeout_ticks.saturating_sub(1) as u32);
        election.saturating_sub(ctx.cfg.lease_max_clock_drift())
    }

    /// Whether this leader applied an entry of its own term: then its KV
    /// engine holds everything earlier leaders committed.
    pub(super) fn applied_own_term(&self) -> bool {
        let raft = &self.raft_group.raft;
        let applied = raft.raft_log.applied;
        raft.state == StateRole::Leader && raft.raft_log.term(applied).ok() == Some(raft.term)
    }

    /// Whether this peer holds a valid lease now: then no other peer can
    /// lead (and commit) before it runs out, so its commit index covers
    /// every write acknowledged anywhere.
    fn lease_valid(&self, now: Duration) -> bool {
        self.is_leader()
            && self.raft_group.raft.lead_transferee.is_none()
            && !self.is_asleep()
            && self.applied_own_term()
            && self.lease.valid_at(now, self.term())
    }

    /// Accepts a read-only command whose header asks for `mode` (see the
    /// module docs). Checks were done by the caller, except leadership.
    pub(super) fn propose_read<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        cmd: RaftCommand,
        mode: ReadMode,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        let term = self.term();
        let follower = mode == ReadMode::Follower && !self.is_leader();
        if !follower && !self.is_leader() {
            let err = util::new_not_leader(self.region_id, self.leader_hint());
            cmd.callback.invoke_with_error(err, term);
            return;
        }
        let now = ctx.local_reader.now();
        if mode == ReadMode::Lease && self.lease_valid(now) {
            ctx.local_reader.count_raft_thread_lease_read();
            self.lease.mark_read();
            let raft_log = &self.raft_group.raft.raft_log;
            let (applied, committed) = (raft_log.applied, raft_log.committed);
            if applied >= committed {
                let resp = read_from_engine(&ctx.engines.kv, &cmd.request, term);
                cmd.callback.invoke(resp);
                return;
            }
            // Entries committed and not applied yet (a follower may
            // already show them): the read waits for them, with the commit
            // index as its read index, as if a quorum had just confirmed
            // it; the lease already proves what that round would.
            let reads = self.reads.get_or_insert_with(Default::default);
            match reads.batches.back_mut() {
                Some(b) if !b.follower && b.index == Some(committed) => b.reads.push(cmd),
                _ => reads.batches.push_back(ReadBatch {
                    id: ctx.local_reader.next_read_id(),
                    follower: false,
                    index: Some(committed),
                    sent: true,
                    sent_at: now,
                    age: 0,
                    checkable: false,
                    check: None,
                    reads: vec![cmd],
                }),
            }
            return;
        }
        let reads = self.reads.get_or_insert_with(Default::default);
        if follower {
            reads.round_follower.push(cmd);
        } else {
            reads.round.push(cmd);
        }
    }

    /// Turns the round's reads into read batches and asks raft for read
    /// indexes (once per batch), then answers batches whose index is
    /// applied. Called before the Ready is taken.
    pub(super) fn flush_reads<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let Some(reads) = self.reads.as_mut() else {
            return;
        };
        let now = ctx.local_reader.now();
        for (follower, list) in [
            (false, std::mem::take(&mut reads.round)),
            (true, std::mem::take(&mut reads.round_follower)),
        ] {
            if list.is_empty() {
                continue;
            }
            let checkable = !follower
                && ctx.cfg.read_index_leader_check
                && !list.iter().any(|c| {
                    crate::local_reader::fast_read_mode(&c.request) == Some(ReadMode::Lease)
                });
            reads.batches.push_back(ReadBatch {
                id: ctx.local_reader.next_read_id(),
                follower,
                index: None,
                sent: false,
                sent_at: now,
                age: 0,
                checkable,
                check: None,
                reads: list,
            });
        }
        self.send_read_indexes(ctx, now);
        self.serve_reads(ctx);
    }

    /// On a leader's tick (after the hibernation check, which counts a
    /// lease read since the last tick as activity): renews in advance a
    /// lease that served reads since the last tick and has less than half
    /// of its length left, with a read index batch that holds no reads,
    /// unless a leader batch is already waiting for its index (its answer
    /// renews the lease too). Renewing only leases in use lets an idle
    /// region's lease run out and the region hibernate.
    pub(super) fn tick_lease<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        if !self.lease.take_read() || !self.is_leader() || self.is_asleep() {
            return;
        }
        let now = ctx.local_reader.now();
        if self.lease.remaining_at(now, self.term()) >= Self::lease_duration(ctx) / 2 {
            return;
        }
        let reads = self.reads.get_or_insert_with(Default::default);
        if reads
            .batches
            .iter()
            .any(|b| !b.follower && b.index.is_none())
        {
            return;
        }
        reads.batches.push_back(ReadBatch {
            id: ctx.local_reader.next_read_id(),
            follower: false,
            index: None,
            sent: false,
            sent_at: now,
            age: 0,
            checkable: false,
            check: None,
            reads: Vec::new(),
        });
        self.send_read_indexes(ctx, now);
    }

    /// Sends every batch not sent yet: a checkable batch joins this
    /// round's leader check when the region may use one
    /// ([`Peer::leader_check_voters`]); the others go to raft's
    /// `read_index` when raft can take them.
    fn send_read_indexes<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, now: Duration)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        if self
            .reads
            .as_ref()
            .is_some_and(|r| r.batches.iter().any(|b| !b.sent && b.checkable))
        {
            self.send_leader_checks(ctx, now);
        }
        let is_leader = self.is_leader();
        let raft = &self.raft_group.raft;
        let leader_ready =
            is_leader && raft.raft_log.term(raft.raft_log.committed).ok() == Some(raft.term);
        let follower_ready = !is_leader && raft.leader_id != raft::INVALID_ID;
        let Some(reads) = self.reads.as_mut() else {
            return;
        };
        let mut to_send = Vec::new();
        for b in reads.batches.iter_mut().filter(|b| !b.sent) {
            let can = if b.follower {
                follower_ready || leader_ready
            } else {
                leader_ready
            };
            if can {
                b.sent = true;
                b.sent_at = now;
                to_send.push(b.id);
            }
        }
        let me = self.meta.get_id();
        for id in to_send {
            self.raft_group.read_index(read_context(me, id));
        }
    }

    /// The voters a leader check of this region asks, `(peer id, store
    /// id)` of each voter but this peer, when the region may use one now:
    /// an awake leader with an entry of its term committed (raft-rs's own
    /// condition for a read index), no leadership transfer, no
    /// configuration change pending, not in a joint configuration, more
    /// than one voter, and every other voter on another, known store.
    /// `None` means: use raft's read index.
    fn leader_check_voters<EK, T>(&self, ctx: &PollContext<EK, ER, T>) -> Option<Vec<(u64, u64)>>
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let raft = &self.raft_group.raft;
        if !ctx.cfg.read_index_leader_check
            || !self.is_leader()
            || self.is_asleep()
            || raft.raft_log.term(raft.raft_log.committed).ok() != Some(raft.term)
            || raft.lead_transferee.is_some()
            || raft.has_pending_conf()
            || apply::membership::is_joint(self.region())
        {
            return None;
        }
        let me = self.meta.get_id();
        let voters = raft.prs().conf().voters();
        let mut out = Vec::with_capacity(voters.ids().len());
        for id in voters.ids().iter() {
            if id == me {
                continue;
            }
            let store = self.find_peer(id)?.get_store_id();
            if store == 0 || store == ctx.store_id {
                return None;
            }
            out.push((id, store));
        }
        (!out.is_empty()).then_some(out)
    }

    /// Puts the batches not sent yet that may be confirmed by a leader
    /// check into this round's check: each records the commit index now as
    /// its read index, and the region joins the round's check to every
    /// other voter's store (once per round).
    fn send_leader_checks<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, now: Duration)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let Some(voters) = self.leader_check_voters(ctx) else {
            return;
        };
        let checks = ctx.store_meta.leader_checks.clone();
        let id = ctx.round_checks.id(&checks);
        let committed = self.raft_group.raft.raft_log.committed;
        let (region_id, term, me) = (self.region_id, self.term(), self.meta.get_id());
        let Some(reads) = self.reads.as_mut() else {
            return;
        };
        for b in reads.batches.iter_mut().filter(|b| !b.sent && b.checkable) {
            b.sent = true;
            b.sent_at = now;
            b.check = Some((id, committed));
            checks.count_batch_sent();
        }
        if reads.last_check != id {
            reads.last_check = id;
            for (peer_id, store_id) in voters {
                ctx.round_checks.add(store_id, region_id, term, me, peer_id);
            }
        }
        // Before the check leaves: its answers wake this peer.
        self.check_cell
            .set_waiting_from(lowest_pending_check(&reads.batches));
    }

    /// Answers to this peer's leader checks arrived (or a tick passed):
    /// every batch whose check a quorum of voters confirmed (a check with
    /// the batch's id or a later one, in this term, this peer counting as
    /// a yes) gets its read index and is served once applied; a batch
    /// whose check can no longer reach a quorum falls back to raft's read
    /// index.
    pub(crate) fn on_leader_checked<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let waiting = self
            .reads
            .as_ref()
            .is_some_and(|r| r.batches.iter().any(|b| b.check.is_some()));
        if !waiting {
            self.check_cell.set_waiting_from(0);
            return;
        }
        if !self.is_leader() {
            // `check_reads_after_role_change` answers them.
            return;
        }
        let raft = &self.raft_group.raft;
        // A configuration that changed since the check was asked: the
        // answers may not be of a quorum of the right voters any more.
        let unusual = raft.has_pending_conf() || apply::membership::is_joint(self.region());
        let me = self.meta.get_id();
        let region = self.raft_group.store().region();
        let checks = &ctx.store_meta.leader_checks;
        let Some(reads) = self.reads.as_mut() else {
            return;
        };
        let mut fell_back = false;
        self.check_cell.with_acks(|acks| {
            for b in reads.batches.iter_mut() {
                let Some((id, read_index)) = b.check else {
                    continue;
                };
                let verdict = if unusual {
                    Some(false)
                } else {
                    raft_compat::quorum_verdict(raft, |voter| {
                        if voter == me {
                            return Some(true);
                        }
                        let store = region
                            .get_peers()
                            .iter()
                            .find(|p| p.get_id() == voter)?
                            .get_store_id();
                        let ack = acks
                            .iter()
                            .find(|a| a.store_id == store && a.term == raft.term)?;
                        check_answer(ack, id)
                    })
                };
                match verdict {
                    Some(true) => {
                        b.index = Some(read_index);
                        b.check = None;
                        checks.count_batch_confirmed();
                    }
                    Some(false) => {
                        b.check = None;
                        b.checkable = false;
                        b.sent = false;
                        b.age = 0;
                        fell_back = true;
                        checks.count_batch_refused();
                    }
                    None => {}
                }
            }
        });
        self.check_cell
            .set_waiting_from(lowest_pending_check(&reads.batches));
        if fell_back {
            let now = ctx.local_reader.now();
            self.send_read_indexes(ctx, now);
        }
        self.serve_reads(ctx);
    }

    /// Takes the read states of a Ready: each gives its batch a read index;
    /// a confirmed leader batch renews the lease.
    pub(super) fn on_read_states<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        states: Vec<raft::ReadState>,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        let lease = Self::lease_duration(ctx);
        let term = self.term();
        let is_leader = self.is_leader();
        let Some(reads) = self.reads.as_mut() else {
            return;
        };
        let mut renew = None;
        let me = self.meta.get_id();
        for rs in states {
            let Some(id) = read_id_of(me, &rs.request_ctx) else {
                continue;
            };
            if let Some(b) = reads.batches.iter_mut().find(|b| b.id == id) {
                b.index = Some(rs.index);
                if is_leader && !b.follower {
                    renew = Some(renew.map_or(b.sent_at, |t: Duration| t.max(b.sent_at)));
                }
            }
        }
        if let Some(sent_at) = renew {
            self.lease.renew(sent_at + lease, term);
        }
        self.serve_reads(ctx);
    }

    /// Answers every batch whose read index is applied (data in the KV
    /// engine), in order.
    pub(super) fn serve_reads<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let applied = self.raft_group.raft.raft_log.applied;
        let term = self.term();
        let region = self.raft_group.store().region();
        let version = region.get_region_epoch().get_version();
        let Some(reads) = self.reads.as_mut() else {
            return;
        };
        while reads
            .batches
            .front()
            .is_some_and(|b| b.index.is_some_and(|i| i <= applied))
        {
            let Some(batch) = reads.batches.pop_front() else {
                break;
            };
            for cmd in batch.reads {
                let req = &cmd.request;
                if req.get_header().get_region_epoch().get_version() != version {
                    // A split applied since the read was accepted: its key
                    // may have moved.
                    let err = util::new_epoch_not_match(
                        format!("region {} changed while the read waited", region.get_id()),
                        vec![region.clone()],
                    );
                    cmd.callback.invoke_with_error(err, term);
                    continue;
                }
                let resp = read_from_engine(&ctx.engines.kv, req, term);
                cmd.callback.invoke(resp);
            }
        }
        if reads.is_empty() {
            self.reads = None;
        }
    }

    /// On a tick: re-sends batches raft could not take yet, and answers
    /// batches that waited two election timeouts (their request or answer
    /// was lost) with NotLeader, a retryable refusal.
    ///
    /// A batch waiting for a leader check longer than an election timeout
    /// (the check or its answers were lost, a store is down) falls back
    /// to raft's read index.
    pub(super) fn tick_reads<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, now: Duration)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let election_ticks = ctx.cfg.raft_election_timeout_ticks;
        if let Some(reads) = self.reads.as_mut() {
            for b in reads.batches.iter_mut() {
                if b.check.is_some() && b.age >= election_ticks {
                    b.check = None;
                    b.checkable = false;
                    b.sent = false;
                    b.age = 0;
                    ctx.store_meta.leader_checks.count_batch_timed_out();
                }
            }
        }
        self.send_read_indexes(ctx, now);
        let hint = self.leader_hint();
        let (region_id, term) = (self.region_id, self.term());
        let Some(reads) = self.reads.as_mut() else {
            return;
        };
        let mut kept = VecDeque::with_capacity(reads.batches.len());
        for mut b in reads.batches.drain(..) {
            b.age += 1;
            if b.index.is_none() && b.age > 2 * election_ticks {
                fail_batch(b, util::new_not_leader(region_id, hint.clone()), term);
            } else {
                kept.push_back(b);
            }
        }
        reads.batches = kept;
        if reads.is_empty() {
            self.reads = None;
        }
    }

    /// A leader that stopped leading answers its own (leader-mode) batches
    /// that have no read index yet: raft-rs forgets them.
    pub(super) fn check_reads_after_role_change(&mut self) {
        if self.is_leader() {
            return;
        }
        let hint = self.leader_hint();
        let (region_id, term) = (self.region_id, self.term());
        let Some(reads) = self.reads.as_mut() else {
            return;
        };
        let mut round = std::mem::take(&mut reads.round);
        let mut kept = VecDeque::with_capacity(reads.batches.len());
        for b in reads.batches.drain(..) {
            if !b.follower && b.index.is_none() {
                fail_batch(b, util::new_not_leader(region_id, hint.clone()), term);
            } else {
                kept.push_back(b);
            }
        }
        for cmd in round.drain(..) {
            cmd.callback
                .invoke_with_error(util::new_not_leader(region_id, hint.clone()), term);
        }
        reads.batches = kept;
        if reads.is_empty() {
            self.reads = None;
        }
    }

    /// Answers every waiting read with `err` (the peer stops).
    pub(crate) fn fail_pending_reads(&mut self, err: &kvproto_lite::errorpb::Error) {
        let term = self.term();
        if let Some(reads) = self.reads.take() {
            for cmd in reads.round.into_iter().chain(reads.round_follower) {
                cmd.callback.invoke_with_error(err.clone(), term);
            }
            for b in reads.batches {
                fail_batch(b, err.clone(), term);
            }
        }
    }

    /// Publishes (or withdraws) this peer's read delegate in the store's
    /// local reader: present while the peer is an awake leader, not handing
    /// leadership over, that applied an entry of its own term.
    pub(crate) fn publish_read_delegate<EK, T>(&mut self, ctx: &PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let eligible = self.applied_own_term()
            && self.raft_group.raft.lead_transferee.is_none()
            && !self.is_asleep()
            && !self.is_pending_remove();
        let epoch = self.region().get_region_epoch();
        let want = eligible.then(|| (self.term(), epoch.get_version(), epoch.get_conf_ver()));
        if want == self.read_delegate {
            return;
        }
        self.read_delegate = want;
        let delegate = want.map(|(term, _, _)| crate::local_reader::ReadDelegate {
            region: self.region().clone(),
            store_id: ctx.store_id,
            term,
            lease: self.lease.clone(),
        });
        ctx.local_reader.publish(self.region_id, delegate);
    }

    /// The lease cell shared with the store's local reader.
    pub(crate) fn lease_cell(&self) -> &Arc<LeaseCell> {
        &self.lease
    }
}

/// The context of a read index request: the asking peer and the batch id
/// (raft-rs keys a leader's pending read index requests by context, so two
/// peers must never send the same one).
fn read_context(peer_id: u64, id: u64) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(16);
    ctx.extend_from_slice(&peer_id.to_be_bytes());
    ctx.extend_from_slice(&id.to_be_bytes());
    ctx
}

/// The batch id in a read state's context, if the context is this peer's.
fn read_id_of(peer_id: u64, ctx: &[u8]) -> Option<u64> {
    let (peer, id) = ctx.split_at_checked(8)?;
    if peer != peer_id.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// The lowest check id a batch waits for (0: none).
fn lowest_pending_check(batches: &VecDeque<ReadBatch>) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.check.map(|(id, _)| id))
        .min()
        .unwrap_or(0)
}

/// What a store's answers say about check `id`: a store confirming a
/// check numbered `id` or later confirms this one (that check was asked
/// after this batch's reads arrived), refusing one numbered `id` or later
/// refuses it; `None` while it has said neither.
fn check_answer(ack: &crate::leader_check::StoreAck, id: u64) -> Option<bool> {
    if ack.confirmed >= id {
        Some(true)
    } else if ack.refused >= id {
        Some(false)
    } else {
        None
    }
}

fn fail_batch(b: ReadBatch, err: kvproto_lite::errorpb::Error, term: u64) {
    for cmd in b.reads {
        let cb: Callback = cmd.callback;
        cb.invoke_with_error(err.clone(), term);
    }
}
