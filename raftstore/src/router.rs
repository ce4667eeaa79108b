//! `RaftRouter`: the address book of a store's peers (TiKV's raftstore
//! router over the batch system's `BatchRouter`), and the sink traits that
//! clients and the apply system deliver through.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use batch_system::BatchRouter;
use crossbeam_channel::TrySendError;
use engine::RaftLogEngine;
use kvproto_lite::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse, ReadMode};
use kvproto_lite::raft_serverpb::RaftMessage;
use kvproto_lite::util;
use protobuf::Message as _;

use crate::leader_check::{self, LeaderChecks};
use crate::local_reader::LocalReader;
use crate::memory::{MemoryQuota, COMMAND_OVERHEAD_BYTES};
use crate::msg::{Callback, PeerMsg, RaftCommand, SignificantMsg, StoreMsg};
use crate::peer_fsm::PeerFsm;
use crate::snapshot::{IncomingSnapshot, SnapManager};
use crate::store_fsm::{self, StoreFsm};
use crate::transport::RaftMessageSink;

/// Routes messages to the peers of one store, falling back to the store FSM
/// for regions that have no peer here yet.
///
/// # What a user calls
///
/// - [`send_raft_command`](Self::send_raft_command) (or
///   [`CommandSink::submit`], which answers refusals itself): a client
///   command for one region;
/// - [`send_raft_message`](Self::send_raft_message): a raft message that
///   arrived from another store (what a [`Transport`](crate::Transport) delivers; the router
///   is a [`RaftMessageSink`]);
/// - [`report_unreachable`](Self::report_unreachable): a transport lost
///   its connection to a store;
/// - [`evict_leaders`](Self::evict_leaders): the first step of a planned
///   stop (done for you by
///   [`RaftBatchSystem::shutdown_gracefully`](crate::RaftBatchSystem::shutdown_gracefully)).
///
/// # What is the store's own
///
/// The router derefs to the underlying [`BatchRouter`] (part of its
/// contract: the store, the apply system and the simulation drive peers
/// through it). Its `register`, `close`, `close_all`,
/// `broadcast_shutdown`, `force_send` and `send_control` calls act on the
/// store's FSMs directly and are for the store itself: on a live store,
/// `register`ing or `close`ing a region's mailbox by hand bypasses the
/// peer's creation and destruction, `broadcast_shutdown`/`close_all` stop
/// peers without [`RaftBatchSystem::shutdown`](crate::RaftBatchSystem::shutdown),
/// and `force_send` ignores the mailbox capacity that keeps a flood of
/// commands from exhausting memory. Read-only calls (`alive_cnt`,
/// `mailbox`) are harmless. The batch system's own examples use its test
/// FSM, not raft peers.
///
/// # Examples
///
/// A command and what a refusal means (region 9 has no peer on this
/// store):
///
/// ```
/// use std::time::Duration;
///
/// use engine::{Engines, MemKvEngine, MemRaftLogEngine};
/// use kvproto_lite::{metapb, util};
/// use raftstore::{
///     answer_refused, bootstrap_store, create_raft_batch_system, initial_regions, Callback,
///     Config, RaftCommand, TrySendError,
/// };
///
/// let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
/// let regions = initial_regions(&[1], &[]).unwrap();
/// bootstrap_store(&engines, 1, &regions).unwrap();
/// let (router, mut system) = create_raft_batch_system(&Config::default());
/// let mut store = metapb::Store::default();
/// store.set_id(1);
/// system
///     .spawn(store, engines, raftstore::NoTransport, &raftstore::discard_logger())
///     .unwrap();
///
/// let mut elsewhere = regions[0].clone();
/// elsewhere.set_id(9);
/// let request = util::new_cmd_request(&elsewhere, util::find_peer(&elsewhere, 1).unwrap().clone());
/// let (tx, rx) = crossbeam_channel::bounded(1);
/// let cmd = RaftCommand::new(request, Callback::new(move |resp| tx.send(resp).unwrap()));
/// match router.send_raft_command(cmd) {
///     Ok(()) => unreachable!("region 9 has no peer here"),
///     // Nothing was proposed: answer with what the refusal means (here
///     // RegionNotFound), not with a dropped callback's "outcome unknown".
///     Err(refused @ TrySendError::Disconnected(_)) => answer_refused(refused),
///     Err(refused @ TrySendError::Full(_)) => answer_refused(refused),
/// }
/// let resp = rx.recv_timeout(Duration::from_secs(10)).unwrap();
/// assert!(resp.get_header().get_error().has_region_not_found());
/// system.shutdown();
/// ```
pub struct RaftRouter<ER: RaftLogEngine> {
    /// The batch-system router of peer FSMs and the store FSM.
    pub router: BatchRouter<PeerFsm<ER>, StoreFsm>,
    /// The store's snapshots in flight (receptions start here).
    pub(crate) snap_mgr: Arc<SnapManager>,
    /// Serves lease reads on the sender's thread when it can.
    pub(crate) local: Arc<LocalReader>,
    /// The store's memory quota: commands are admitted and charged here,
    /// at the mailbox door.
    pub(crate) memory: Arc<MemoryQuota>,
    /// The store's leader checks: other stores' checks and the answers to
    /// this store's own are taken here, at the door (see
    /// [`crate::leader_check`]).
    pub(crate) checks: Arc<LeaderChecks>,
    /// This store's id, once it is started (0 before).
    pub(crate) store_id: Arc<AtomicU64>,
    /// Sends the answer to a leader check back through the store's
    /// transport (set when the store starts).
    pub(crate) check_replier: Arc<OnceLock<CheckReplier>>,
}

/// Sends one store-level message and flushes it (a leader check's answer).
pub(crate) type CheckReplier = Box<dyn Fn(RaftMessage) + Send + Sync>;

impl<ER: RaftLogEngine> Clone for RaftRouter<ER> {
    fn clone(&self) -> Self {
        RaftRouter {
            router: self.router.clone(),
            snap_mgr: self.snap_mgr.clone(),
            local: self.local.clone(),
            memory: self.memory.clone(),
            checks: self.checks.clone(),
            store_id: self.store_id.clone(),
            check_replier: self.check_replier.clone(),
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
    /// The store's snapshot manager (snapshots in flight, their limits and
    /// counters).
    pub fn snap_manager(&self) -> &Arc<SnapManager> {
        &self.snap_mgr
    }

    /// Delivers a raft message to its region's peer, or to the store FSM if
    /// the region has no peer on this store (it may create one).
    ///
    /// # Errors
    ///
    /// The message comes back in `TrySendError::Full` when the mailbox is
    /// full, and in `TrySendError::Disconnected` when the peer (or the
    /// store) is shut down.
    ///
    /// A store-level leader check (see [`crate::leader_check`]) is taken
    /// here, on the caller's thread, without any FSM: a question is
    /// answered from the peers' cells and the answer sent back through the
    /// store's transport at once (a store not started yet answers
    /// nothing); an answer to this store's own checks is recorded in the
    /// regions' cells, and each region whose leader waits for it is woken.
    /// A malformed one is dropped (and counted in [`LeaderChecks::stats`]).
    pub fn send_raft_message(&self, msg: RaftMessage) -> Result<(), TrySendError<RaftMessage>> {
        if leader_check::is_leader_check(&msg) {
            return self.on_leader_check(msg);
        }
        store_fsm::send_raft_message(&self.router, &self.memory, msg)
    }

    fn on_leader_check(&self, msg: RaftMessage) -> Result<(), TrySendError<RaftMessage>> {
        let store_id = self.store_id.load(Ordering::Relaxed);
        if msg.get_extra() == kvproto_lite::raft_serverpb::ExtraMessageType::LeaderCheckRequest {
            let Ok(check) = leader_check::validate_request(&msg, store_id) else {
                self.checks.count_malformed();
                return Ok(());
            };
            let Some(reply) = self.check_replier.get() else {
                return Ok(());
            };
            let resp = self.checks.answer(check);
            let from_store = msg.get_from_peer().get_store_id();
            reply(leader_check::response_message(store_id, from_store, resp));
            return Ok(());
        }
        let Ok(resp) = leader_check::validate_response(&msg, store_id) else {
            self.checks.count_malformed();
            return Ok(());
        };
        let from_store = msg.get_from_peer().get_store_id();
        self.checks.on_response(from_store, resp, |region_id| {
            // Like apply results, never refused for capacity: the answer
            // is small and the read batch waits for it.
            let _ = self.force_send(region_id, PeerMsg::LeaderChecked);
        });
        Ok(())
    }

    /// The store's leader checks (counters of the ReadIndex confirmations
    /// batched per store pair, see [`crate::leader_check`]).
    pub fn leader_checks(&self) -> &Arc<LeaderChecks> {
        &self.checks
    }

    /// Sends a client command to its region's peer (named by the request
    /// header). Its callback is answered exactly once: with the response
    /// when the command was applied, or with an error.
    ///
    /// Reads (`CmdType::Get`) go through the raft log like writes and are
    /// answered when their entry is applied on the leader, so a read sees
    /// every write acknowledged before it was sent (linearizable); it costs
    /// a log write and a round trip to a quorum.
    ///
    /// # Errors
    ///
    /// The command comes back, unproposed and with its callback still
    /// unanswered, in `TrySendError::Full` (the peer's mailbox is full:
    /// answer `ServerIsBusy`) or `TrySendError::Disconnected` (no such
    /// region on this store, or shut down: answer `RegionNotFound`).
    /// [`answer_refused`] gives exactly those answers. Dropping the command
    /// instead would answer "outcome unknown", which is wrong here: nothing
    /// was proposed.
    ///
    /// While the store's memory quota is exceeded (see
    /// [`MemoryQuota`](crate::MemoryQuota)) a normal command is not queued
    /// at all: its callback is answered at once with `ServerIsBusy` naming
    /// the quota, and `Ok` is returned. An admitted command holds its bytes
    /// in the quota until it is answered. A lease read served on the
    /// caller's thread (see [`LocalReader`]) is answered before that and
    /// costs the quota nothing.
    pub fn send_raft_command(&self, mut cmd: RaftCommand) -> Result<(), TrySendError<RaftCommand>> {
        if crate::local_reader::fast_read_mode(&cmd.request) == Some(ReadMode::Lease) {
            if let Some(resp) = self.local.try_read(&cmd.request) {
                cmd.callback.invoke(resp);
                return Ok(());
            }
        }
        if !cmd.request.has_admin_request() {
            if let Err(err) = self.memory.check_admission() {
                crate::metrics::command_refused(&err);
                cmd.callback.invoke_with_error(err, 0);
                return Ok(());
            }
            let bytes = u64::from(cmd.request.compute_size()) + COMMAND_OVERHEAD_BYTES;
            cmd.callback.hold_memory(self.memory.charge(bytes));
        }
        let region_id = cmd.request.get_header().get_region_id();
        match self.send(region_id, PeerMsg::RaftCommand(Box::new(cmd))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(m)) => Err(TrySendError::Full(unwrap_command(m))),
            Err(TrySendError::Disconnected(m)) => {
                Err(TrySendError::Disconnected(unwrap_command(m)))
            }
        }
    }

    /// Tells every peer of this store that `store_id` cannot be reached: a
    /// leader stops pipelining appends to its peer there and probes
    /// instead; a follower whose leader lives there stops naming it in
    /// `NotLeader` answers (clients back off instead of chasing it) until
    /// it hears from that leader again, and a hibernated follower whose
    /// leader is there wakes. A transport calls this when a
    /// connection to `store_id` fails; a failed [`Transport::send`] has the
    /// same effect for the one peer it was meant for.
    ///
    /// [`Transport::send`]: crate::Transport::send
    pub fn report_unreachable(&self, store_id: u64) {
        self.broadcast_normal(|| {
            PeerMsg::SignificantMsg(SignificantMsg::StoreUnreachable { store_id })
        });
    }

    /// Asks every peer of this store to hand its leadership to an
    /// up-to-date peer on another store and to stop campaigning: the first
    /// step of a planned stop. [`RaftBatchSystem::shutdown_gracefully`]
    /// sends it (repeatedly) and waits; call it yourself when you drive the
    /// pollers with `spawn_manual`.
    ///
    /// [`RaftBatchSystem::shutdown_gracefully`]: crate::RaftBatchSystem::shutdown_gracefully
    pub fn evict_leaders(&self) {
        self.broadcast_normal(|| PeerMsg::SignificantMsg(SignificantMsg::EvictLeader));
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

    fn receive_snapshot(&self, msg: RaftMessage) -> crate::Result<IncomingSnapshot> {
        self.snap_mgr.begin_receive(msg)
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
    /// Refusals are answered on the channel too ([`answer_refused`]): a full
    /// mailbox with `ServerIsBusy`, a missing or stopped region with
    /// `RegionNotFound`.
    fn submit(&self, request: RaftCmdRequest) -> crossbeam_channel::Receiver<RaftCmdResponse> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let cb = Callback::new(move |resp| {
            let _ = tx.send(resp);
        });
        if let Err(refused) = self.send_command(RaftCommand::new(request, cb)) {
            answer_refused(refused);
        }
        rx
    }
}

/// Answers a command that [`RaftRouter::send_raft_command`] (or a
/// [`CommandSink`]) gave back: `Full` with `ServerIsBusy` (retry later),
/// `Disconnected` with `RegionNotFound` (the region has no running peer on
/// this store). Both say the command was not proposed, which is exactly
/// what happened.
///
/// # Examples
///
/// ```
/// use kvproto_lite::raft_cmdpb::RaftCmdRequest;
/// use raftstore::{answer_refused, Callback, RaftCommand, TrySendError};
///
/// let (tx, rx) = crossbeam_channel::bounded(1);
/// let mut request = RaftCmdRequest::default();
/// request.mut_header().set_region_id(7);
/// let cmd = RaftCommand::new(request, Callback::new(move |resp| tx.send(resp).unwrap()));
/// answer_refused(TrySendError::Full(cmd));
/// let resp = rx.recv().unwrap();
/// assert!(resp.get_header().get_error().has_server_is_busy());
/// ```
pub fn answer_refused(refused: TrySendError<RaftCommand>) {
    match refused {
        TrySendError::Full(cmd) => {
            let region_id = cmd.request.get_header().get_region_id();
            cmd.callback.invoke_with_error(
                util::new_server_is_busy(&format!("mailbox of region {region_id} is full")),
                0,
            );
        }
        TrySendError::Disconnected(cmd) => {
            let region_id = cmd.request.get_header().get_region_id();
            cmd.callback
                .invoke_with_error(util::new_region_not_found(region_id), 0);
        }
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
            let destroyed = res.destroyed;
            // force_send: apply results must never be refused for capacity.
            // A missing or closed peer (destroyed meanwhile) needs none.
            let _ = self.force_send(region_id, PeerMsg::ApplyRes(Box::new(res)));
            if destroyed {
                // The tombstone is durable: the store may clean the log.
                let _ = self.force_send_control(StoreMsg::PeerDestroyed { region_id });
            }
        }
    }
}
