//! `RaftRouter`: the address book of a store's peers (TiKV's raftstore
//! router over the batch system's `BatchRouter`), and the sink traits that
//! clients and the apply system deliver through.

use std::ops::Deref;

use batch_system::mpsc::TrySendError;
use batch_system::BatchRouter;
use engine::RaftLogEngine;
use kvproto_lite::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use kvproto_lite::raft_serverpb::RaftMessage;
use kvproto_lite::util;

use crate::msg::{Callback, PeerMsg, RaftCommand, SignificantMsg};
use crate::peer_fsm::PeerFsm;
use crate::store_fsm::{self, StoreFsm};
use crate::transport::RaftMessageSink;

/// Routes messages to the peers of one store, falling back to the store FSM
/// for regions that have no peer here yet.
///
/// Derefs to the underlying [`BatchRouter`], so every `Router` method
/// (`try_send`, `send`, `force_send`, `broadcast_normal`, `alive_cnt`, ...)
/// is available.
pub struct RaftRouter<ER: RaftLogEngine> {
    /// The batch-system router of peer FSMs and the store FSM.
    pub router: BatchRouter<PeerFsm<ER>, StoreFsm>,
}

impl<ER: RaftLogEngine> Clone for RaftRouter<ER> {
    fn clone(&self) -> Self {
        RaftRouter {
            router: self.router.clone(),
        }
    }
}

impl<ER: RaftLogEngine> Deref for RaftRouter<ER> {
    type Target = BatchRouter<PeerFsm<ER>, StoreFsm>;

    fn deref(&self) -> &BatchRouter<PeerFsm<ER>, StoreFsm> {
        &self.router
    }
}

impl<ER: RaftLogEngine> RaftRouter<ER> {
    /// Delivers a raft message to its region's peer, or to the store FSM if
    /// the region has no peer on this store (it may create one).
    ///
    /// # Errors
    ///
    /// The message comes back in `TrySendError::Full` when the mailbox is
    /// full, and in `TrySendError::Disconnected` when the peer (or the
    /// store) is shut down.
    pub fn send_raft_message(&self, msg: RaftMessage) -> Result<(), TrySendError<RaftMessage>> {
        store_fsm::send_raft_message(&self.router, msg)
    }

    /// Sends a client command to its region's peer (named by the request
    /// header).
    ///
    /// # Errors
    ///
    /// The command comes back in `TrySendError::Full` (answer it with
    /// `ServerIsBusy`) or `TrySendError::Disconnected` (no such region on
    /// this store, or shut down: answer `RegionNotFound`). Nothing is lost:
    /// the callback inside is still unanswered.
    pub fn send_raft_command(&self, cmd: RaftCommand) -> Result<(), TrySendError<RaftCommand>> {
        let region_id = cmd.request.get_header().get_region_id();
        match self.send(region_id, PeerMsg::RaftCommand(Box::new(cmd))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(m)) => Err(TrySendError::Full(unwrap_command(m))),
            Err(TrySendError::Disconnected(m)) => {
                Err(TrySendError::Disconnected(unwrap_command(m)))
            }
        }
    }

    /// Tells every peer of this store that `store_id` cannot be reached
    /// (hibernated followers whose leader is there wake).
    pub fn report_unreachable(&self, store_id: u64) {
        self.broadcast_normal(|| {
            PeerMsg::SignificantMsg(SignificantMsg::StoreUnreachable { store_id })
        });
    }

    /// Tells every peer of this store that `store_id` can be reached again
    /// (it restarted, or the network healed): hibernated leaders with a
    /// peer there wake, so that peer hears from its leader at once.
    pub fn report_reachable(&self, store_id: u64) {
        self.broadcast_normal(|| {
            PeerMsg::SignificantMsg(SignificantMsg::StoreReachable { store_id })
        });
    }
}

// The router gives back exactly the command it was handed.
fn unwrap_command(m: PeerMsg) -> RaftCommand {
    match m {
        PeerMsg::RaftCommand(c) => *c,
        other => unreachable!("router returned a different message: {other:?}"),
    }
}

impl<ER: RaftLogEngine> RaftMessageSink for RaftRouter<ER> {
    fn deliver(&self, msg: RaftMessage) -> Result<(), TrySendError<RaftMessage>> {
        self.send_raft_message(msg)
    }
}

/// Where a client sends commands for one store. Implemented by
/// [`RaftRouter`]; lets clients stay independent of engine types.
pub trait CommandSink: Send + Sync {
    /// Sends `cmd` to its region on this store.
    ///
    /// # Errors
    ///
    /// Gives the command back, unanswered, when it cannot be accepted.
    fn send_command(&self, cmd: RaftCommand) -> Result<(), TrySendError<RaftCommand>>;

    /// Sends `request` and returns the channel its response arrives on.
    /// Refusals are answered on the channel too: a full mailbox with
    /// `ServerIsBusy`, a missing or stopped region with `RegionNotFound`.
    fn submit(&self, request: RaftCmdRequest) -> crossbeam_channel::Receiver<RaftCmdResponse> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let region_id = request.get_header().get_region_id();
        let cb = Callback::new(move |resp| {
            let _ = tx.send(resp);
        });
        match self.send_command(RaftCommand::new(request, cb)) {
            Ok(()) => {}
            Err(TrySendError::Full(cmd)) => cmd.callback.invoke_with_error(
                util::new_server_is_busy(format!("mailbox of region {region_id} is full")),
                0,
            ),
            Err(TrySendError::Disconnected(cmd)) => cmd
                .callback
                .invoke_with_error(util::new_region_not_found(region_id), 0),
        }
        rx
    }
}

impl<ER: RaftLogEngine> CommandSink for RaftRouter<ER> {
    fn send_command(&self, cmd: RaftCommand) -> Result<(), TrySendError<RaftCommand>> {
        self.send_raft_command(cmd)
    }
}

/// The notifier the apply system reports through: each result goes to its
/// region's peer as a `PeerMsg::ApplyRes`.
impl<ER: RaftLogEngine> apply::ApplyNotifier for RaftRouter<ER> {
    fn notify(&self, results: Vec<apply::ApplyRes>) {
        for res in results {
            let region_id = res.region_id;
            // force_send: apply results must never be refused for capacity.
            // A missing or closed peer (destroyed meanwhile) needs none.
            let _ = self.force_send(region_id, PeerMsg::ApplyRes(Box::new(res)));
        }
    }
}
