//! The apply batch system: committed raft entries applied to the KV engine
//! by a small pool of pollers, one [`ApplyFsm`] per region.
//!
//! Raftstore hands each region's committed entries (and the callbacks of
//! the commands it proposed) to [`ApplyRouter::schedule_task`]. A poller
//! takes a batch of busy regions, executes their entries into **one** KV
//! write batch (data and each region's `RaftApplyState` together, so a crash
//! never applies an entry twice or loses one), writes it once at the end of
//! the round, then runs the callbacks and reports every region's progress
//! through [`ApplyNotifier::notify`]. The apply crate never depends on
//! raftstore: raftstore implements the notifier.
//!
//! # Using it
//!
//! ```
//! use std::sync::mpsc;
//! use std::time::Duration;
//!
//! use apply::{Apply, ApplyMsg, ApplyRes, Config, Proposal, Registration};
//! use engine::{KvEngine, MemKvEngine};
//! use kvproto_lite::eraftpb::Entry;
//! use kvproto_lite::metapb::{Peer, Region};
//! use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, Request};
//! use protobuf::Message;
//!
//! // 1. Create the system (no threads yet) and start it with an engine and
//! //    a notifier (here a channel of every round's results).
//! let (router, mut system) = apply::create_apply_batch_system(&Config::default());
//! let kv = MemKvEngine::new();
//! let (res_tx, res_rx) = mpsc::channel::<Vec<ApplyRes>>();
//! system.spawn("apply".to_owned(), kv.clone(), res_tx)?;
//!
//! // 2. Register region 1 (this store's peer 1), covering every key.
//! let mut region = Region::default();
//! region.set_id(1);
//! region.mut_region_epoch().set_conf_ver(1);
//! region.mut_region_epoch().set_version(1);
//! let mut peer = Peer::default();
//! peer.set_id(1);
//! peer.set_store_id(1);
//! region.mut_peers().push(peer);
//! let reg = Registration { peer_id: 1, region: region.clone(), apply_state: Default::default(), applied_term: 0 };
//! router.schedule_task(1, ApplyMsg::registration(reg));
//!
//! // 3. A committed entry holding a Put, with the proposer's callback.
//! let mut cmd = RaftCmdRequest::default();
//! cmd.mut_header().set_region_id(1);
//! cmd.mut_header().set_region_epoch(region.get_region_epoch().clone());
//! let mut put = Request::default();
//! put.set_cmd_type(CmdType::Put);
//! put.mut_put().set_key(b"k".to_vec());
//! put.mut_put().set_value(b"v".to_vec());
//! cmd.mut_requests().push(put);
//! let mut entry = Entry::default();
//! entry.set_index(1);
//! entry.set_term(1);
//! entry.set_data(cmd.write_to_bytes()?.into());
//!
//! let (cb_tx, cb_rx) = mpsc::channel();
//! let proposal = Proposal::new(1, 1, Box::new(move |resp| cb_tx.send(resp).unwrap()));
//! let apply = Apply { region_id: 1, term: 1, entries: vec![entry], proposals: vec![proposal] };
//! router.schedule_task(1, ApplyMsg::apply(apply));
//!
//! // 4. The callback runs once the round's batch is written...
//! let resp = cb_rx.recv_timeout(Duration::from_secs(10))?;
//! assert!(!resp.get_header().has_error());
//! assert_eq!(kv.get(b"k")?, Some(b"v".to_vec()));
//!
//! // 5. ...and the notifier hears the new applied index.
//! let results = res_rx.recv_timeout(Duration::from_secs(10))?;
//! assert_eq!(results[0].region_id, 1);
//! assert_eq!(results[0].apply_state.get_applied_index(), 1);
//! assert_eq!(kv.get_apply_state(1)?.unwrap().get_applied_index(), 1);
//!
//! system.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What an entry does
//!
//! - `EntryNormal` with empty data (a new leader's no-op) and conf-change
//!   entries with empty data only advance the applied index.
//! - `EntryNormal` data is a `RaftCmdRequest`: Put, Delete and Get (a read
//!   through the log, seeing every earlier entry even if not yet written),
//!   or one admin request (CompactLog, Split). `EntryConfChange` data is an
//!   `eraftpb::ConfChange` whose context (the entry's, or else the conf
//!   change's own) is a `RaftCmdRequest` with a ChangePeer admin request.
//! - Failures are responses, never panics, and the entry still counts as
//!   applied: undecodable data, wrong region id, region epoch mismatch
//!   (`EpochNotMatch` with the current region), a key outside the region
//!   (`KeyNotInRegion`). A failing command's writes are rolled back with a
//!   write-batch save point. A proposal whose entry was superseded (same
//!   index, other term) gets `StaleCommand`.
//! - Entries at or below the applied index are skipped: redelivery after a
//!   restart never applies anything twice.
//!
//! # A poll round
//!
//! See [`ApplyPoller`]. Each region applies at most
//! [`Config::max_entries_per_round`] entries / [`Config::max_bytes_per_round`]
//! bytes per round and stays in the batch for the next round if more wait,
//! so one big region cannot stall the others. If the engine write fails, the
//! store stops: the failure is recorded in the [`DiskFailure`] its raft and
//! apply pollers share, the round's callbacks are answered with an error
//! naming it (outcome unknown), no progress is reported, the regions'
//! in-memory state is restored to what is durable, and nothing is written
//! again; every later command gets the same error. A restart recovers
//! from the durable state and applies the entries again.

#![deny(missing_docs)]

mod config;
mod context;
mod delegate;
mod error;
mod failure;
mod fsm;
pub mod membership;
pub mod metrics;
mod msg;
mod notifier;
mod poller;
mod ranges;
mod response;
mod session;
mod system;
mod user_cmd;

pub use crate::config::Config;
pub use crate::delegate::{initial_apply_state, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
pub use crate::error::{Error, Result};
pub use crate::failure::DiskFailure;
pub use crate::fsm::{ApplyFsm, ControlFsm};
pub use crate::msg::{
    Apply, ApplyMsg, ApplyRes, Callback, ControlMsg, ExecResult, Proposal, Registration,
};
pub use crate::notifier::ApplyNotifier;
pub use crate::poller::{ApplyPoller, ApplyPollerBuilder};
pub use crate::ranges::{RangeReservation, RangeUpdate, RegionRanges};
pub use crate::session::{is_reserved_key, session_key, split_keeps_sessions, SESSION_MARK};
pub use crate::system::{create_apply_batch_system, ApplyBatchSystem, ApplyRouter};
pub use crate::user_cmd::{CommandHandler, CommandHandlers, KeyAccess, KeyStore};
