//! `PeerFsm`: the FSM of one region replica, and how it handles the
//! messages in its mailbox.
//!
//! The poller drains a bounded number of messages per round
//! ([`PeerFsm::handle_messages`]); each one goes to the [`Peer`]: raft
//! messages are stepped, commands checked and batched, ticks tick, apply
//! results advance raft. Taking the peer's Ready and destroying a removed
//! peer are the poller's and the store FSM's part.

use batch_system::mpsc::{self, LooseBoundedSender, Receiver};
use batch_system::Fsm;
use engine::{KvEngine, RaftLogEngine};

use crate::config::Config;
use crate::context::PollContext;
use crate::msg::{PeerMsg, SignificantMsg};
use crate::peer::Peer;
use crate::transport::Transport;

/// The FSM of one region replica: a [`Peer`] and the receiving end of its
/// mailbox.
pub struct PeerFsm<ER: RaftLogEngine> {
    pub(crate) peer: Peer<ER>,
    pub(crate) receiver: Receiver<PeerMsg>,
    pub(crate) stopped: bool,
}

impl<ER: RaftLogEngine> PeerFsm<ER> {
    /// Wraps `peer` in an FSM with a mailbox of
    /// `cfg.peer_mailbox_capacity`; returns the sending half of the mailbox
    /// channel with it.
    pub fn new(cfg: &Config, peer: Peer<ER>) -> (LooseBoundedSender<PeerMsg>, Box<PeerFsm<ER>>) {
        let (tx, rx) = mpsc::loose_bounded(cfg.peer_mailbox_capacity);
        (
            tx,
            Box::new(PeerFsm {
                peer,
                receiver: rx,
                stopped: false,
            }),
        )
    }

    /// The peer inside.
    pub fn peer(&self) -> &Peer<ER> {
        &self.peer
    }

    /// Handles up to `limit` messages from the mailbox; returns how many
    /// it handled (`limit` means more may be waiting).
    pub(crate) fn handle_messages<EK: KvEngine, T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        limit: usize,
    ) -> usize {
        let mut handled = 0;
        while handled < limit {
            match self.receiver.try_recv() {
                Ok(msg) => {
                    self.on_message(ctx, msg);
                    handled += 1;
                }
                Err(_) => break,
            }
        }
        handled
    }

    /// The store stopped after a failed disk write: the Ready staged this
    /// round (if any) is dropped without being advanced or its waiting
    /// messages sent, pending proposals are answered with the failure
    /// (outcome unknown: their entries may still commit on other stores),
    /// and up to `limit` queued messages are drained, each command refused
    /// as not served here (it was never proposed). The peer stays
    /// registered, so every later command is refused the same way.
    pub(crate) fn fence<EK: KvEngine, T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        limit: usize,
    ) {
        let region_id = self.peer.region_id();
        let reason = ctx
            .apply_router
            .disk_failure()
            .reason()
            .unwrap_or("unknown")
            .to_owned();
        self.peer.discard_ready();
        ctx.awake.remove(region_id);
        let unknown = kvproto_lite::util::new_error(format!(
            "store {} stopped after a failed disk write ({reason}): outcome unknown",
            ctx.store_id
        ));
        self.peer.fail_pending_proposals(unknown);
        let term = self.peer.term();
        for _ in 0..limit {
            let Ok(msg) = self.receiver.try_recv() else {
                break;
            };
            if let PeerMsg::RaftCommand(cmd) = msg {
                let mut err = kvproto_lite::util::new_region_not_found(region_id);
                err.set_message(format!(
                    "store {} stopped after a failed disk write ({reason}); region {region_id} is not served here",
                    ctx.store_id
                ));
                cmd.callback.invoke_with_error(err, term);
            }
        }
    }

    fn on_message<EK: KvEngine, T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msg: PeerMsg,
    ) {
        match msg {
            PeerMsg::RaftMessage(m) => self.peer.on_raft_message(ctx, m.into_message()),
            PeerMsg::RaftCommand(cmd) => {
                // A command for another region (refused below) says
                // nothing about this one: it does not wake it.
                let for_this_region =
                    cmd.request.get_header().get_region_id() == self.peer.region_id();
                let follower_read = crate::local_reader::fast_read_mode(&cmd.request)
                    == Some(kvproto_lite::raft_cmdpb::ReadMode::Follower);
                if self.peer.is_asleep() && for_this_region {
                    if self.peer.is_leader() {
                        self.peer.wake_for_command(ctx);
                    } else if follower_read {
                        self.peer.wake(ctx);
                    } else {
                        // Answered with NotLeader below; the client may
                        // know something is wrong with the leader, so
                        // check on it.
                        self.peer.check_leader(ctx);
                    }
                }
                self.peer.propose(ctx, *cmd)
            }
            PeerMsg::Tick => {
                // The timer may send the next one (see
                // `AwakeRegions::take_tick_slice`).
                ctx.awake.tick_handled(self.peer.region_id());
                // A sleeping peer ignores ticks sent before it fell asleep.
                if !self.peer.is_asleep() {
                    self.peer.tick(ctx);
                }
            }
            PeerMsg::ApplyRes(res) => self.peer.on_apply_res(ctx, *res),
            PeerMsg::SignificantMsg(SignificantMsg::StoreUnreachable { store_id }) => {
                // A follower whose leader lives there must be able to
                // elect a new one. A leader is not woken: raft has nothing
                // to tell an unreachable follower, and transports repeat
                // this report on every failed reconnection.
                if self.peer.is_asleep() && self.peer.leader_on_store(store_id) {
                    self.peer.wake(ctx);
                }
                self.peer.on_store_unreachable(store_id)
            }
            PeerMsg::SignificantMsg(SignificantMsg::EvictLeader) => self.peer.evict_leadership(),
            PeerMsg::SignificantMsg(SignificantMsg::StoreReachable { store_id }) => {
                // A leader heartbeats the peer that came back at once; a
                // first campaigner asks it for its vote.
                self.peer.on_store_reachable(ctx, store_id)
            }
            PeerMsg::SignificantMsg(SignificantMsg::SnapshotStatus {
                to_peer_id,
                delivered,
            }) => self.peer.on_snapshot_status(to_peer_id, delivered),
            PeerMsg::CheckLeader => self.peer.check_leader(ctx),
            PeerMsg::LeaderChecked => self.peer.on_leader_checked(ctx),
            PeerMsg::Start => self.peer.start(),
            PeerMsg::Destroy => self.peer.mark_pending_remove(),
            PeerMsg::Persisted {
                peer_id,
                ready_number,
            } => self.peer.on_persisted(ctx, peer_id, ready_number),
        }
    }
}

impl<ER: RaftLogEngine> Fsm for PeerFsm<ER> {
    type Message = PeerMsg;

    fn is_stopped(&self) -> bool {
        self.stopped
    }
}

impl<ER: RaftLogEngine> Drop for PeerFsm<ER> {
    fn drop(&mut self) {
        // Commands still queued are answered (their callbacks report an
        // unknown outcome when dropped); proposals in flight likewise.
        while let Ok(msg) = self.receiver.try_recv() {
            drop(msg);
        }
        self.peer.lease_cell().expire();
        self.peer
            .fail_pending_proposals(kvproto_lite::util::new_error(
                "peer stopped before the command was applied: outcome unknown",
            ));
    }
}
