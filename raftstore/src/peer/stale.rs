//! Peers that missed their own removal.
//!
//! A peer removed from its region while its store was down or cut off
//! never applies the conf change that removed it: it lives on with the old
//! configuration, campaigns, and asks to hibernate. The peers that did
//! apply the removal recognise it by its messages: a sender that their
//! region no longer lists, with an older `conf_ver`. They answer with a
//! tombstone message carrying their (newer) epoch, and the stale peer,
//! seeing an epoch newer than its own that no longer includes it, destroys
//! itself (its data is deleted and a `Tombstone` state is left, as for a
//! removal it applied).
//!
//! A message for a newer peer of the region on this store (a higher peer
//! id, a newer epoch) says the same: this peer was removed and the region
//! was given a new one here; the old peer destroys itself so the store can
//! create the new one.
//!
//! A sender with `conf_ver` 0 has never been initialized (it waits for its
//! first snapshot) and is left alone: its own region metadata says nothing,
//! and a peer just added would look the same to a replica that has not
//! applied the addition yet.

use engine::RaftLogEngine;
use kvproto_lite::raft_serverpb::{ExtraMessageType, RaftMessage};
use slog::{debug, info};

use super::Peer;
use crate::context::PollContext;
use crate::transport::Transport;

/// Election timeouts without a word from the leader after which a follower
/// asks the other peers of its region whether it is still a member.
const LEADER_MISSING_ELECTIONS: u32 = 4;

impl<ER: RaftLogEngine> Peer<ER> {
    /// On a follower's tick: after [`LEADER_MISSING_ELECTIONS`] election
    /// timeouts without a message from its leader, sends a `WakeUp` to every
    /// other peer of its region. A voter would have campaigned by then
    /// (and been told by the answers); a learner never campaigns, so
    /// without this a learner removed while its store was down would keep
    /// its data for ever. A peer that removed it answers with a tombstone
    /// message, a live leader wakes (if asleep) and heartbeats, which
    /// resets the count; other followers ignore it.
    pub(super) fn probe_if_leader_missing<EK, T>(&mut self, ctx: &mut PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        if self.is_leader() || !self.is_initialized() {
            self.leader_missing_ticks = 0;
            return;
        }
        self.leader_missing_ticks += 1;
        let limit = LEADER_MISSING_ELECTIONS * ctx.cfg.raft_election_timeout_ticks as u32;
        if self.leader_missing_ticks < limit {
            return;
        }
        self.leader_missing_ticks = 0;
        let me = self.meta.get_id();
        let others: Vec<u64> = self
            .region()
            .get_peers()
            .iter()
            .map(|p| p.get_id())
            .filter(|id| *id != me)
            .collect();
        debug!(self.logger, "no word from the leader for a long time: asking the other peers";
            "peers" => ?others);
        let term = self.term();
        for to in others {
            self.send_extra(ctx, to, ExtraMessageType::WakeUp, term, 0);
        }
    }

    /// Handles what a raft message says about membership before the message
    /// is stepped. Returns `true` when the message was consumed: a
    /// tombstone message, or a message from a peer that was removed (which
    /// is answered with a tombstone message).
    pub(super) fn on_membership_news<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msg: &RaftMessage,
    ) -> bool
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let ours = self.region().get_region_epoch().get_conf_ver();
        let theirs = msg.get_region_epoch().get_conf_ver();
        if msg.get_is_tombstone() {
            if msg.get_to_peer().get_id() == self.meta.get_id() && ours < theirs {
                info!(self.logger, "removed from the region by a newer configuration: destroying";
                    "conf_ver" => ours, "newer_conf_ver" => theirs,
                    "from_peer_id" => msg.get_from_peer().get_id(),
                    "from_store_id" => msg.get_from_peer().get_store_id());
                self.mark_pending_remove();
            }
            return true;
        }
        let to = msg.get_to_peer().get_id();
        if to > self.meta.get_id() && theirs > ours {
            // A newer peer of this region lives on this store now (peer ids
            // only grow): this one was removed without learning it. It
            // makes way; the next message creates the new peer.
            info!(self.logger, "a newer peer of the region is on this store: destroying";
                "newer_peer_id" => to, "conf_ver" => ours, "newer_conf_ver" => theirs,
                "from_peer_id" => msg.get_from_peer().get_id());
            self.mark_pending_remove();
            return true;
        }
        let from = msg.get_from_peer();
        let listed = self
            .region()
            .get_peers()
            .iter()
            .any(|p| p.get_id() == from.get_id());
        if listed || theirs == 0 || theirs >= ours || from.get_id() == 0 {
            return false;
        }
        debug!(self.logger, "message from a removed peer: answering with a tombstone";
            "from_peer_id" => from.get_id(), "from_store_id" => from.get_store_id(),
            "their_conf_ver" => theirs, "conf_ver" => ours);
        let mut gc = RaftMessage::default();
        gc.set_region_id(self.region_id);
        gc.set_from_peer(self.meta.clone());
        gc.set_to_peer(from.clone());
        gc.set_region_epoch(self.region().get_region_epoch().clone());
        gc.set_is_tombstone(true);
        ctx.stats
            .tombstones_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = ctx.transport.send(gc) {
            debug!(self.logger, "send tombstone message"; "err" => %e);
        }
        true
    }
}
