//! Hibernation of one peer: a region whose replicas are all caught up stops
//! ticking and heartbeating until something needs it.
//!
//! raft-rs has no notion of this; a hibernated peer simply is not ticked
//! (it leaves the store's [`AwakeRegions`](crate::AwakeRegions)), while
//! every message still reaches it. The protocol around that:
//!
//! ```text
//! leader, on a tick while idle             follower, on HibernateRequest(term, index, commit)
//!   idle = committed == last == applied,     from its leader, in its term:
//!     every peer matched at last, nothing      counts as the leader's heartbeat
//!     proposed, no conf change or transfer     (election timer reset); commits
//!   send HibernateRequest(term, last)            `index` if it holds the leader's
//!     to every peer that has not answered        entry there and commit >= index;
//!     (at once, then after 2, 4, 8.. ticks)    last == committed == index:
//!   on the last answer (or a quorum's,           -> sleep, book a liveness check,
//!     after an election timeout) -> sleep           answer HibernateResponse
//!                                            otherwise: stay awake (a sleeping
//!                                              one wakes)
//! ```
//!
//! So a region that just elected a leader sleeps one round trip after its
//! leader applied the election's empty entry: the followers learn the
//! commit index from the request itself (with `raft_skip_bcast_commit`
//! they would otherwise wait for a heartbeat), and the leader sleeps on the
//! last answer instead of heartbeating until its next tick. Asking again
//! with a growing interval keeps a store that is electing thousands of
//! regions at once (a restart) from filling its queues with repeated
//! requests whose answers are only late, not lost.
//!
//! After a start, the peer that was its region's candidate in its current
//! term (its persisted vote is for itself: it most likely was the leader)
//! campaigns at once, and again when a store holding one of its peers
//! becomes reachable while it still has no leader (the stores of a
//! restarted cluster come up one by one). The other peers wait out their
//! election timeout, and one more if they voted for another peer in their
//! current term (a start grace: with many regions starting at once the
//! first campaigns take a while to get through), so a restarted region
//! elects once, with no split vote, and its leader stays on the store it
//! was on. With pre-vote
//! this disturbs no leader that was elected meanwhile: its followers refuse
//! the pre-vote while they hear from it.
//!
//! What wakes a sleeping peer:
//!
//! - a client command (a sleeping follower answers it with `NotLeader` and
//!   checks on its leader instead of waking for good);
//! - any raft message, except the few that carry no news: a follower stays
//!   asleep on a heartbeat of the leader it answered (term and log
//!   unchanged); a leader stays asleep on heartbeat and append responses
//!   that leave every peer caught up and give raft nothing to send;
//! - for a follower, its leader's store reported unreachable (so it can
//!   elect another); for a leader, a store of one of its peers reported
//!   reachable again (so that peer hears from it at once);
//! - for a follower, its liveness check (every
//!   `Config::hibernate_check_leader_ticks` store ticks, spread per region):
//!   it wakes and asks its leader to wake (`WakeUp`). A live leader answers
//!   with heartbeats and the region soon sleeps again; a dead one does not,
//!   and the follower's election timer, running again, starts an election.
//!   The other sleeping followers are woken by its (pre-)vote, their
//!   election timers run again, and once their leader lease lapses they
//!   grant it: a leader that died while its region slept is replaced within
//!   the check period plus a few election timeouts.
//!
//! A leader that wakes treats every peer as recently active and restarts
//! its check-quorum period: it was asleep, not cut off, and its followers
//! acknowledged the sleep, so they get a whole election timeout to answer
//! before raft's check-quorum may judge them (a peer must not be taken for
//! down because its region slept). It heartbeats them at once, except when
//! a client command woke it and every follower is replicating: the
//! command's own append (or read-index heartbeat) reaches them all, and a
//! wake-up heartbeat would only add its answers and a second append.

use engine::RaftLogEngine;
use kvproto_lite::eraftpb::{self, MessageType};
use kvproto_lite::raft_serverpb::{ExtraMessageType, RaftMessage};
use raft::StateRole;
use slog::debug;

use super::Peer;
use crate::awake::tick_slice;
use crate::context::PollContext;
use crate::raft_compat;
use crate::transport::Transport;

/// A peer's hibernation state.
#[derive(Debug, Default)]
pub(super) struct Hibernation {
    /// Not ticked (out of the store's awake set).
    pub(super) asleep: bool,
    /// Leader: the `(term, last index)` its hibernate request is for.
    request: Option<(u64, u64)>,
    /// Leader: peers that acknowledged `request`.
    acks: Vec<u64>,
    /// Leader: ticks since `request` was first sent.
    waiting_ticks: usize,
    /// Follower: `(leader id, term, index)` of the request it acknowledged
    /// when it fell asleep.
    slept_for: Option<(u64, u64, u64)>,
    /// Follower: a liveness check is booked and not yet delivered.
    check_booked: bool,
    /// Started as the region's first campaigner (see
    /// [`Peer::campaigns_first`]) and has not seen a leader since: it
    /// campaigns again when one of its peers' stores becomes reachable.
    first_campaign: bool,
    /// Follower, just started, that voted for another peer in its current
    /// term (most likely its region's last leader, which campaigns at once
    /// when its own store starts): raft ticks it skips before its election
    /// timer starts (see [`Peer::skips_start_grace_tick`]).
    start_grace_ticks: usize,
}

impl<ER: RaftLogEngine> Peer<ER> {
    /// Whether the peer is hibernating (not ticked).
    pub fn is_asleep(&self) -> bool {
        self.hibernation.asleep
    }

    /// Whether this leader's region is idle: everything committed, applied
    /// and replicated to every peer, nothing in flight.
    fn leader_is_idle(&self) -> bool {
        let raft = &self.raft_group.raft;
        if raft.state != StateRole::Leader
            || raft.lead_transferee.is_some()
            || raft.has_pending_conf()
            || apply::membership::is_joint(self.region())
            || !self.proposals.is_empty()
            || !self.batched.is_empty()
            || self.pending_ready.is_some()
            || self.reads.is_some()
            || self.lease_cell().read_recently()
        {
            return false;
        }
        let last = raft.raft_log.last_index();
        raft.raft_log.committed == last
            && self.raft_group.store().apply_state().get_applied_index() == last
            && raft.prs().iter().all(|(_, pr)| pr.matched == last)
    }

    /// On a leader's tick: asks the followers to hibernate while the region
    /// is idle, and falls asleep once they all agreed (or a quorum did and
    /// the others stayed silent for an election timeout: they are down or
    /// cut off, and will wake the region when they come back).
    pub(super) fn maybe_hibernate<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        if !ctx.cfg.hibernate_regions || self.hibernation.asleep {
            return;
        }
        if !self.leader_is_idle() {
            self.hibernation.request = None;
            self.hibernation.acks.clear();
            return;
        }
        let key = (self.term(), self.raft_group.raft.raft_log.last_index());
        if self.hibernation.request != Some(key) {
            self.hibernation.request = Some(key);
            self.hibernation.acks.clear();
            self.hibernation.waiting_ticks = 0;
        } else {
            self.hibernation.waiting_ticks += 1;
        }
        let missing = self.unacknowledged_peers();
        if missing.is_empty() || (self.waited_long_enough() && self.quorum_acknowledged()) {
            self.sleep(ctx);
            return;
        }
        // Ask at once, then again after 2, 4, 8, ... ticks: under load an
        // answer takes more than a tick, and asking on every tick only
        // adds messages to the queues that delay the answers.
        let waited = self.hibernation.waiting_ticks;
        if waited != 0 && (waited < 2 || !waited.is_power_of_two()) {
            return;
        }
        for to in &missing {
            self.send_extra(ctx, *to, ExtraMessageType::HibernateRequest, key.0, key.1);
        }
        // The request carries the commit index and resets the follower's
        // election timer: it stands in for this tick's heartbeat to the
        // peers it went to (their answer, or their refusal, tells the
        // leader they are active). A heartbeat carrying a read-index
        // context still goes out.
        self.raft_group.raft.msgs.retain(|m| {
            m.get_msg_type() != MessageType::MsgHeartbeat
                || !m.context.is_empty()
                || !missing.contains(&m.to)
        });
    }

    /// The leader's peers that have not acknowledged its hibernate request.
    fn unacknowledged_peers(&self) -> Vec<u64> {
        let me = self.meta.get_id();
        self.raft_group
            .raft
            .prs()
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id != me && !self.hibernation.acks.contains(id))
            .collect()
    }

    fn waited_long_enough(&self) -> bool {
        self.hibernation.waiting_ticks >= self.election_timeout()
    }

    /// Whether the voters that acknowledged (this leader included) form a
    /// majority.
    fn quorum_acknowledged(&self) -> bool {
        let me = self.meta.get_id();
        let voters: Vec<u64> = self
            .raft_group
            .raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .collect();
        let acked = voters
            .iter()
            .filter(|id| **id == me || self.hibernation.acks.contains(id))
            .count();
        acked * 2 > voters.len()
    }

    fn sleep<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        self.hibernation.asleep = true;
        ctx.awake.remove(self.region_id);
        // A sleeping leader renews no lease (nothing is acknowledged): it
        // serves lease reads only after waking and a confirmed read index.
        self.lease.expire();
        self.publish_read_delegate(ctx);
        // A sleeping region should stay small: give back what its last
        // burst grew (ticks, which would otherwise do it, stop now).
        if self.pending_ready.is_none() && self.raft_group.raft.raft_log.unstable.entries.is_empty()
        {
            // Every cached entry is in the log engine: reads after waking
            // find them there.
            self.raft_group.mut_store().release_cache();
        } else {
            self.raft_group.mut_store().shrink_cache();
        }
        raft_compat::release_idle_buffers(&mut self.raft_group.raft);
        if self.pending_persisted_msgs.is_empty() && self.pending_persisted_msgs.capacity() > 0 {
            self.pending_persisted_msgs = Vec::new();
        }
        if self.proposals.is_empty() && self.proposals.capacity() > 0 {
            self.proposals = std::collections::VecDeque::new();
        }
        if self.batched.is_empty() && self.batched.capacity() > 0 {
            self.batched = Vec::new();
        }
        ctx.stats
            .hibernations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !self.is_leader() && !self.hibernation.check_booked {
            let period = ctx.cfg.hibernate_check_leader_ticks;
            // Spread the regions' checks over a period.
            let after = period + tick_slice(self.region_id, period);
            ctx.awake.schedule_check(self.region_id, after);
            self.hibernation.check_booked = true;
        }
        debug!(self.logger, "hibernated"; "term" => self.term(), "leader" => self.is_leader());
    }

    /// Wakes the peer (if asleep): it is ticked again. A leader gives its
    /// followers a fresh check-quorum period and heartbeats them at once.
    pub(crate) fn wake<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        self.wake_and_ping(ctx, true);
    }

    /// Wakes a sleeping leader for a client command. The command itself
    /// reaches every follower (a write's append, a read index's
    /// heartbeat) when every follower is replicating, so the wake-up
    /// heartbeat would only double that: it is skipped then. A follower
    /// probing or waiting for a snapshot still gets it, and so does every
    /// peer of a region woken for another reason.
    pub(crate) fn wake_for_command<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let me = self.meta.get_id();
        let replicating = self.is_leader()
            && self.raft_group.raft.prs().iter().all(|(id, pr)| {
                *id == me || (pr.state == raft::ProgressState::Replicate && !pr.is_paused())
            });
        self.wake_and_ping(ctx, !replicating);
    }

    fn wake_and_ping<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, ping: bool)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        if !self.hibernation.asleep {
            return;
        }
        self.hibernation.asleep = false;
        self.hibernation.request = None;
        self.hibernation.acks.clear();
        self.hibernation.slept_for = None;
        ctx.awake.insert(self.region_id);
        ctx.stats
            .wakes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.is_leader() {
            let raft = &mut self.raft_group.raft;
            raft.election_elapsed = 0;
            let me = self.meta.get_id();
            let ids: Vec<u64> = raft.prs().iter().map(|(id, _)| *id).collect();
            for id in ids {
                if id != me {
                    if let Some(pr) = raft.mut_prs().get_mut(id) {
                        pr.recent_active = true;
                    }
                }
            }
            if ping {
                self.raft_group.ping();
            }
        }
        debug!(self.logger, "woke"; "term" => self.term(), "leader" => self.is_leader());
    }

    /// Steps a raft message from another peer, waking the peer first unless
    /// the message carries no news for a sleeping one (see the module docs).
    pub(crate) fn on_raft_message<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msg: RaftMessage,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        // Membership news first: a removed sender or a tombstone message
        // must not wake a sleeping region or reach raft.
        if self.on_membership_news(ctx, &msg) {
            return;
        }
        if msg.get_extra() != ExtraMessageType::NoExtra {
            self.on_extra_message(ctx, &msg);
            return;
        }
        // A malformed message is dropped before it can wake the peer.
        if !self.validate(ctx, &msg) || !self.pin_snapshot_data(ctx, &msg) {
            return;
        }
        if self.hibernation.asleep && !self.no_news_while_asleep(msg.get_message()) {
            self.wake(ctx);
        }
        self.step(msg);
        if self.hibernation.asleep
            && self.is_leader()
            && (!self.leader_is_idle() || self.raft_group.has_ready())
        {
            self.wake(ctx);
        }
    }

    /// Whether a sleeping peer may stay asleep when `m` arrives.
    fn no_news_while_asleep(&self, m: &eraftpb::Message) -> bool {
        let raft = &self.raft_group.raft;
        if m.get_term() != raft.term {
            return false;
        }
        match raft.state {
            StateRole::Follower => {
                let Some((leader, term, index)) = self.hibernation.slept_for else {
                    return false;
                };
                m.get_msg_type() == MessageType::MsgHeartbeat
                    && m.from == leader
                    && raft.leader_id == leader
                    && term == raft.term
                    && raft.raft_log.last_index() == index
            }
            StateRole::Leader => {
                m.get_msg_type() == MessageType::MsgHeartbeatResponse
                    || (m.get_msg_type() == MessageType::MsgAppendResponse && !m.reject)
            }
            _ => false,
        }
    }

    fn on_extra_message<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>, msg: &RaftMessage)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        if msg.get_to_peer().get_id() != self.meta.get_id() {
            return;
        }
        let from = msg.get_from_peer().get_id();
        let m = msg.get_message();
        match msg.get_extra() {
            ExtraMessageType::HibernateRequest => {
                let (term, index) = (m.get_term(), m.get_index());
                let raft = &mut self.raft_group.raft;
                if raft.state == StateRole::Follower && term == raft.term && raft.leader_id == from
                {
                    // The request stands in for a heartbeat of the leader.
                    raft.election_elapsed = 0;
                    // The leader asks only when every peer matched `index`
                    // and it committed `index`, an entry of its own term.
                    // An entry of that term at `index` here is the
                    // leader's entry (only the leader of a term creates
                    // entries in it), so this log equals the leader's up
                    // to `index` and may commit it, as a heartbeat
                    // carrying that commit index would let it.
                    let last = raft.raft_log.last_index();
                    if last == index
                        && raft.raft_log.committed < index
                        && m.commit >= index
                        && raft.raft_log.term(index).ok() == Some(term)
                    {
                        raft.raft_log.commit_to(index);
                    }
                }
                let raft = &self.raft_group.raft;
                let last = raft.raft_log.last_index();
                let matches = ctx.cfg.hibernate_regions
                    && raft.state == StateRole::Follower
                    && term == raft.term
                    && raft.leader_id == from
                    && last == index
                    && raft.raft_log.committed == last
                    && self.pending_ready.is_none()
                    && self.reads.is_none();
                if !matches {
                    // Out of step with the leader: a sleeping peer must
                    // catch up, so it ticks again. Its leader learns that
                    // it is alive (the request stood in for a heartbeat,
                    // whose answer would have told it).
                    let follows = raft.state == StateRole::Follower
                        && term == raft.term
                        && raft.leader_id == from;
                    self.wake(ctx);
                    if follows {
                        self.send_extra(ctx, from, ExtraMessageType::HibernateResponse, term, 0);
                    }
                    return;
                }
                self.hibernation.slept_for = Some((from, term, index));
                if !self.hibernation.asleep {
                    self.sleep(ctx);
                }
                self.send_extra(ctx, from, ExtraMessageType::HibernateResponse, term, index);
            }
            ExtraMessageType::HibernateResponse => {
                let key = (m.get_term(), m.get_index());
                if self.is_leader() && key.0 == self.term() {
                    // An answer, agreeing or not, shows the peer active (as
                    // the heartbeat response the request stood in for).
                    if let Some(pr) = self.raft_group.raft.mut_prs().get_mut(from) {
                        pr.recent_active = true;
                    }
                }
                if self.is_leader()
                    && self.hibernation.request == Some(key)
                    && !self.hibernation.acks.contains(&from)
                {
                    self.hibernation.acks.push(from);
                    // The last answer puts the leader to sleep at once, not
                    // at its next tick (which would heartbeat first).
                    let current = (self.term(), self.raft_group.raft.raft_log.last_index());
                    if !self.hibernation.asleep
                        && key == current
                        && self.unacknowledged_peers().is_empty()
                        && self.leader_is_idle()
                    {
                        self.sleep(ctx);
                    }
                }
            }
            ExtraMessageType::WakeUp => {
                if self.is_leader() {
                    self.wake(ctx);
                }
            }
            // Store-level messages, taken by the router before any peer
            // (see `crate::leader_check`); a region never gets one.
            ExtraMessageType::NoExtra
            | ExtraMessageType::LeaderCheckRequest
            | ExtraMessageType::LeaderCheckResponse => {}
        }
    }

    /// Whether this peer, just started, campaigns at once instead of
    /// waiting out an election timeout: it has no leader, and in its
    /// current term it voted for itself, so it was that term's candidate
    /// and most likely its leader. In a restarted region exactly that one
    /// peer usually qualifies (its followers voted for it), so the region
    /// elects once, without split votes, and keeps its leader where it was
    /// (leadership stays spread over the stores as it was). A fresh or
    /// split region (no vote yet) and a peer that voted for another wait
    /// their timeout as raft would.
    fn campaigns_first(&self) -> bool {
        let raft = &self.raft_group.raft;
        let me = self.meta.get_id();
        raft.state == StateRole::Follower
            && raft.leader_id == raft::INVALID_ID
            && raft.vote == me
            && raft.promotable()
            && !self.evicting
            && raft.prs().conf().voters().ids().len() > 1
    }

    /// At start: campaigns if this peer [campaigns first](Self::campaigns_first).
    /// With pre-vote on this costs nothing if the region has a leader
    /// elsewhere (its followers refuse while they hear from it).
    ///
    /// A follower that voted for another peer in its current term instead
    /// waits one more election timeout than raft would before its first
    /// election (see [`skips_start_grace_tick`](Self::skips_start_grace_tick)).
    pub(super) fn campaign_first_at_start(&mut self) {
        if !self.campaigns_first() {
            let raft = &self.raft_group.raft;
            if raft.state == StateRole::Follower
                && raft.leader_id == raft::INVALID_ID
                && raft.vote != raft::INVALID_ID
                && raft.vote != self.meta.get_id()
            {
                self.hibernation.start_grace_ticks = raft.election_timeout();
            }
            return;
        }
        self.hibernation.first_campaign = true;
        if let Err(e) = self.raft_group.campaign() {
            debug!(self.logger, "campaign at start failed"; "err" => %e);
        }
        self.pin_election_timeout();
    }

    /// Whether this tick is one of the start grace of a follower that
    /// voted for another peer in its current term and has heard of no
    /// leader since its start (the tick is then not given to raft).
    ///
    /// After a restart of every store, the peer each region voted for in
    /// its last term campaigns at once; its followers would otherwise
    /// start their own election after a random 1-2 election timeouts.
    /// With a hundred thousand regions starting together the first
    /// campaigns can take that long to get through the stores' queues;
    /// followers that time out meanwhile campaign too, split the votes
    /// (all peers of a region candidates in the same term), and the region
    /// waits another timeout (measured in `scale-bench`: half the regions
    /// of a 30,000-region restart elected seconds late). Only timing
    /// changes: a follower whose first campaigner never comes elects one
    /// election timeout later than raft alone would; one that hears of a
    /// leader (or becomes a candidate) drops the grace.
    pub(super) fn skips_start_grace_tick(&mut self) -> bool {
        if self.hibernation.start_grace_ticks == 0 {
            return false;
        }
        let raft = &self.raft_group.raft;
        if raft.state != StateRole::Follower || raft.leader_id != raft::INVALID_ID {
            self.hibernation.start_grace_ticks = 0;
            return false;
        }
        self.hibernation.start_grace_ticks -= 1;
        true
    }

    /// `store_id` can be reached again. A sleeping leader with a peer there
    /// wakes (so that peer hears from it at once). A peer that campaigned
    /// first at start and has not seen a leader since campaigns again if
    /// it has a peer there: its first (pre-)votes went to stores that were
    /// not up yet (stores of a restarted cluster come up one by one).
    pub(crate) fn on_store_reachable<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        store_id: u64,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        if !self.has_peer_on_store(store_id) {
            return;
        }
        if self.hibernation.asleep && self.is_leader() {
            self.wake(ctx);
        }
        if !self.hibernation.first_campaign {
            return;
        }
        let raft = &self.raft_group.raft;
        if raft.leader_id != raft::INVALID_ID || raft.state == StateRole::Leader {
            self.hibernation.first_campaign = false;
            return;
        }
        // A candidate's vote is under way: campaigning again would only
        // start a new term.
        if raft.state == StateRole::Candidate || self.evicting {
            return;
        }
        if let Err(e) = self.raft_group.campaign() {
            debug!(self.logger, "campaign on a store coming back failed"; "err" => %e);
        }
        self.pin_election_timeout();
    }

    /// A sleeping follower's liveness check: wake, and ask the leader to
    /// wake too. If the leader is alive it heartbeats and the region goes
    /// back to sleep; if not, the follower's election timer runs again.
    pub(crate) fn check_leader<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        self.hibernation.check_booked = false;
        if !self.hibernation.asleep || self.is_leader() {
            return;
        }
        self.wake(ctx);
        let leader = self.leader_id();
        if leader != raft::INVALID_ID && leader != self.meta.get_id() {
            let term = self.term();
            self.send_extra(ctx, leader, ExtraMessageType::WakeUp, term, 0);
        }
    }

    /// Whether this follower's leader is the region's peer on `store_id`.
    pub(crate) fn leader_on_store(&self, store_id: u64) -> bool {
        !self.is_leader()
            && self
                .leader_peer()
                .is_some_and(|p| p.get_store_id() == store_id)
    }

    /// Whether `store_id` holds another peer of this region.
    pub(crate) fn has_peer_on_store(&self, store_id: u64) -> bool {
        self.region()
            .get_peers()
            .iter()
            .any(|p| p.get_store_id() == store_id && p.get_id() != self.meta.get_id())
    }

    /// Sends a hibernation message (never stepped into raft) to peer `to`.
    pub(super) fn send_extra<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        to: u64,
        extra: ExtraMessageType,
        term: u64,
        index: u64,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        let Some(to_peer) = self.find_peer(to).cloned() else {
            return;
        };
        let mut m = eraftpb::Message::default();
        // The type only matters to raft, which never sees this message.
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = self.meta.get_id();
        m.to = to;
        m.term = term;
        m.index = index;
        m.commit = self.raft_group.raft.raft_log.committed;
        let mut rm = RaftMessage::default();
        rm.set_region_id(self.region_id);
        rm.set_from_peer(self.meta.clone());
        rm.set_to_peer(to_peer);
        rm.set_region_epoch(self.region().get_region_epoch().clone());
        rm.set_extra(extra);
        rm.set_message(m);
        if let Err(e) = ctx.transport.send(rm) {
            debug!(self.logger, "send hibernation message failed"; "to_peer_id" => to, "err" => %e);
        }
    }
}
