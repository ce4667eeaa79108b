//! The FSMs of the apply batch system: one [`ApplyFsm`] per region and the
//! [`ControlFsm`] that creates them.

use batch_system::mpsc::{self, LooseBoundedSender, Receiver};
use batch_system::Fsm;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_serverpb::RaftApplyState;
use kvproto_lite::util;

use crate::delegate::ApplyDelegate;
use crate::response::err_outcome_unknown;
use crate::{ApplyMsg, Config, ControlMsg, Registration};

/// The apply FSM of one region: its apply state, the committed entries and
/// proposals waiting to be applied, and its mailbox's receiving end.
///
/// Created by the control FSM when a [`Registration`] arrives through
/// [`ApplyRouter::schedule_task`](crate::ApplyRouter::schedule_task); a
/// simulation creates it directly with [`ApplyFsm::from_registration`] and
/// hands it to an [`ApplyPoller`](crate::ApplyPoller).
pub struct ApplyFsm {
    pub(crate) delegate: ApplyDelegate,
    pub(crate) receiver: Receiver<ApplyMsg>,
}

impl ApplyFsm {
    /// Creates a region's FSM with a mailbox of `cfg.mailbox_capacity`.
    /// Returns the mailbox's sender and the FSM.
    ///
    /// # Examples
    ///
    /// ```
    /// use apply::{ApplyFsm, Config, Registration};
    /// use kvproto_lite::metapb::Region;
    ///
    /// let mut region = Region::default();
    /// region.set_id(1);
    /// let reg = Registration { peer_id: 1, region, apply_state: Default::default(), applied_term: 0 };
    /// let (_tx, fsm) = ApplyFsm::from_registration(reg, &Config::default());
    /// assert_eq!(fsm.region_id(), 1);
    /// ```
    pub fn from_registration(
        reg: Registration,
        cfg: &Config,
    ) -> (LooseBoundedSender<ApplyMsg>, Box<ApplyFsm>) {
        let (tx, receiver) = mpsc::loose_bounded(cfg.mailbox_capacity);
        let fsm = ApplyFsm {
            delegate: ApplyDelegate::from_registration(reg),
            receiver,
        };
        (tx, Box::new(fsm))
    }

    /// The region's id.
    pub fn region_id(&self) -> u64 {
        self.delegate.region_id()
    }

    /// This store's peer of the region.
    pub fn peer_id(&self) -> u64 {
        self.delegate.peer_id
    }

    /// The region as of the last applied entry.
    pub fn region(&self) -> &Region {
        &self.delegate.region
    }

    /// The apply state as of the last applied entry (possibly not written
    /// yet, until the round ends).
    pub fn apply_state(&self) -> &RaftApplyState {
        &self.delegate.apply_state
    }

    /// Term of the last applied entry.
    pub fn applied_term(&self) -> u64 {
        self.delegate.applied_term
    }

    /// Committed entries received but not applied yet.
    pub fn pending_entries(&self) -> usize {
        self.delegate.queue.len()
    }

    /// Messages waiting in the mailbox.
    pub fn pending_messages(&self) -> usize {
        self.receiver.len()
    }
}

impl Fsm for ApplyFsm {
    type Message = ApplyMsg;

    fn is_stopped(&self) -> bool {
        self.delegate.stopped
    }
}

impl Drop for ApplyFsm {
    fn drop(&mut self) {
        // Nobody will apply these here any more: answer instead of going
        // silent. Their entries are committed, so they may still take effect
        // (applied after a restart, or by the other replicas): the outcome
        // is unknown, which is an untyped error. A typed error such as
        // `RegionNotFound` would tell the client the command certainly did
        // not run (found by the simulation, seed 3329: a put answered
        // `RegionNotFound` at a crash was applied after the restart).
        let region_id = self.delegate.region_id();
        for p in self.delegate.proposals.drain(..) {
            (p.cb)(util::error_response(
                util::new_error(format!(
                    "region {region_id}: apply stopped before the command was applied: outcome unknown"
                )),
                self.delegate.term,
            ));
        }
    }
}

impl std::fmt::Debug for ApplyFsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyFsm")
            .field("region_id", &self.region_id())
            .field("peer_id", &self.peer_id())
            .field(
                "applied_index",
                &self.delegate.apply_state.get_applied_index(),
            )
            .field("pending_entries", &self.delegate.queue.len())
            .field("stopped", &self.delegate.stopped)
            .finish()
    }
}

/// The control FSM: creates [`ApplyFsm`]s for registrations of regions that
/// have no mailbox, and routes other messages for such regions.
pub struct ControlFsm {
    pub(crate) receiver: Receiver<ControlMsg>,
}

impl ControlFsm {
    /// Creates the control FSM with a mailbox of
    /// `cfg.control_mailbox_capacity`; returns the mailbox's sender and the FSM.
    pub fn new(cfg: &Config) -> (LooseBoundedSender<ControlMsg>, Box<ControlFsm>) {
        let (tx, receiver) = mpsc::loose_bounded(cfg.control_mailbox_capacity);
        (tx, Box::new(ControlFsm { receiver }))
    }
}

impl Fsm for ControlFsm {
    type Message = ControlMsg;

    fn is_stopped(&self) -> bool {
        false
    }
}

impl std::fmt::Debug for ControlFsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlFsm")
            .field("pending_messages", &self.receiver.len())
            .finish()
    }
}

/// Answers the callbacks of a message that cannot be delivered.
pub(crate) fn reject(region_id: u64, msg: ApplyMsg) {
    if let ApplyMsg::Apply(apply) = msg {
        for p in apply.proposals {
            (p.cb)(util::error_response(
                err_outcome_unknown(region_id),
                apply.term,
            ));
        }
    }
}
