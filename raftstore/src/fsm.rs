//! The two FSM kinds of the raft batch system: `PeerFsm` (one per region
//! replica) and `StoreFsm` (the control FSM).

use batch_system::mpsc::{self, LooseBoundedSender, Receiver};
use batch_system::Fsm;
use engine::RaftLogEngine;
use kvproto_lite::metapb::{self, Region};
use kvproto_lite::raft_serverpb::{RaftApplyState, RaftLocalState};
use slog::Logger;

use crate::config::Config;
use crate::msg::{PeerMsg, StoreMsg};
use crate::peer::Peer;

/// The FSM of one region replica: a [`Peer`] and the receiving end of its
/// mailbox.
pub struct PeerFsm<ER: RaftLogEngine> {
    pub(crate) peer: Peer<ER>,
    pub(crate) receiver: Receiver<PeerMsg>,
    pub(crate) stopped: bool,
}

impl<ER: RaftLogEngine> PeerFsm<ER> {
    /// Creates the FSM of peer `meta` of `region` from its persisted states,
    /// with the sending half of its mailbox channel.
    ///
    /// # Errors
    ///
    /// Inconsistent persisted states or a raft configuration error.
    pub fn create(
        cfg: &Config,
        engine: ER,
        region: Region,
        meta: metapb::Peer,
        raft_state: RaftLocalState,
        apply_state: RaftApplyState,
        logger: &Logger,
    ) -> crate::Result<(LooseBoundedSender<PeerMsg>, Box<PeerFsm<ER>>)> {
        let peer = Peer::new(cfg, engine, region, meta, raft_state, apply_state, logger)?;
        let (tx, rx) = mpsc::loose_bounded(cfg.peer_mailbox_capacity);
        Ok((
            tx,
            Box::new(PeerFsm {
                peer,
                receiver: rx,
                stopped: false,
            }),
        ))
    }

    /// The peer inside.
    pub fn peer(&self) -> &Peer<ER> {
        &self.peer
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
        self.peer
            .fail_pending_proposals(kvproto_lite::util::new_error(
                "peer stopped before the command was applied: outcome unknown",
            ));
    }
}

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
