//! One region's apply state and the execution of its committed entries.
//!
//! Everything here is deterministic: given the same entries and the same
//! starting state, every replica writes the same data and region metadata.
//! Command errors become `errorpb::Error` responses, never panics; an entry
//! whose command fails still counts as applied.

// Command errors are `errorpb::Error` values (large, but only built on the
// cold error path, and moved straight into the response).
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;

use engine::{KvEngine, KvWriteBatch};
use kvproto_lite::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType};
use kvproto_lite::errorpb;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, CmdType, RaftCmdRequest, RaftCmdResponse, Response,
};
use kvproto_lite::raft_serverpb::{
    PeerState, RaftApplyState, RaftTruncatedState, RegionLocalState,
};
use kvproto_lite::util;
use slog::{debug, error, info, warn};

use crate::context::{ApplyContext, Checkpoint, RoundRecord};
use crate::membership;
use crate::response::err_outcome_unknown;
use crate::session::{self, SessionCmd, SessionRecord};
use crate::user_cmd::KeyAccess;
use crate::{Apply, ExecResult, Proposal, Registration};

/// Log index a region created by a split starts at: its initial
/// `RaftApplyState` has `applied_index == truncated_state.index ==
/// RAFT_INIT_LOG_INDEX`, so raftstore creates the new peer's raft state with
/// `last_index = commit = RAFT_INIT_LOG_INDEX` and
/// `term = RAFT_INIT_LOG_TERM`.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
/// Term of the entry at [`RAFT_INIT_LOG_INDEX`] for a region created by a split.
pub const RAFT_INIT_LOG_TERM: u64 = 5;

/// The initial apply state of a region created by a split (see
/// [`RAFT_INIT_LOG_INDEX`]).
///
/// # Examples
///
/// ```
/// let state = apply::initial_apply_state();
/// assert_eq!(state.get_applied_index(), apply::RAFT_INIT_LOG_INDEX);
/// assert_eq!(state.get_truncated_state().get_term(), apply::RAFT_INIT_LOG_TERM);
/// ```
pub fn initial_apply_state() -> RaftApplyState {
    let mut state = RaftApplyState::default();
    state.set_applied_index(RAFT_INIT_LOG_INDEX);
    state.set_commit_index(RAFT_INIT_LOG_INDEX);
    state.set_commit_term(RAFT_INIT_LOG_TERM);
    let t = state.mut_truncated_state();
    t.set_index(RAFT_INIT_LOG_INDEX);
    t.set_term(RAFT_INIT_LOG_TERM);
    state
}

/// Per-round limits for one region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub entries: usize,
    pub bytes: usize,
}

impl Budget {
    pub(crate) const UNLIMITED: Budget = Budget {
        entries: usize::MAX,
        bytes: usize::MAX,
    };
}

/// The outcome of executing one command: its response, the admin result, and
/// whether its writes were kept.
type ExecOutcome = std::result::Result<(RaftCmdResponse, Option<ExecResult>), errorpb::Error>;

/// One region's apply-side state.
pub(crate) struct ApplyDelegate {
    pub peer_id: u64,
    pub region: Region,
    pub apply_state: RaftApplyState,
    pub applied_term: u64,
    /// The peer's raft term as last reported by raftstore.
    pub term: u64,
    /// Callbacks waiting for their entries, ascending by index.
    pub proposals: VecDeque<Proposal>,
    /// Committed entries not applied yet (budget exhausted, or re-queued
    /// after a failed write).
    pub queue: VecDeque<Entry>,
    /// This peer was removed by a conf change: nothing more is applied.
    pub pending_remove: bool,
    pub stopped: bool,
    /// Bumped by every registration, so a round that straddles one is not
    /// rolled back over it.
    pub generation: u64,
}

impl ApplyDelegate {
    pub(crate) fn from_registration(reg: Registration) -> ApplyDelegate {
        ApplyDelegate {
            peer_id: reg.peer_id,
            region: reg.region,
            apply_state: reg.apply_state,
            applied_term: reg.applied_term,
            term: reg.applied_term,
            proposals: VecDeque::new(),
            queue: VecDeque::new(),
            pending_remove: false,
            stopped: false,
            generation: 0,
        }
    }

    pub(crate) fn region_id(&self) -> u64 {
        self.region.get_id()
    }

    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint::of(&self.apply_state, self.applied_term, self.pending_remove)
    }

    /// Replaces the state with a new registration; what was pending is stale.
    pub(crate) fn reset(&mut self, reg: Registration, rec: &mut RoundRecord) {
        for p in self.proposals.drain(..) {
            rec.respond(
                p.cb,
                util::error_response(util::new_stale_command(), self.term),
                false,
            );
        }
        self.queue.clear();
        self.peer_id = reg.peer_id;
        self.region = reg.region;
        self.apply_state = reg.apply_state;
        self.applied_term = reg.applied_term;
        self.term = self.term.max(reg.applied_term);
        self.pending_remove = false;
        self.stopped = false;
        self.generation += 1;
    }

    /// Stops the delegate: pending proposals get "outcome unknown", and the
    /// region's `Tombstone` state goes into the round's write batch, after
    /// anything applied earlier in the round (so a conf change applied just
    /// before cannot overwrite it).
    pub(crate) fn destroy<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        rec: &mut RoundRecord,
    ) {
        let region_id = self.region_id();
        ctx.put_region_state(&region_local_state(PeerState::Tombstone, &self.region));
        delete_region_data(ctx, &self.region);
        for p in self.proposals.drain(..) {
            rec.respond(
                p.cb,
                util::error_response(err_outcome_unknown(region_id), self.term),
                false,
            );
        }
        self.queue.clear();
        self.stopped = true;
        rec.destroyed = true;
        // Raftstore cleans the raft log once it hears of this round: the
        // tombstone must be durable by then.
        ctx.force_sync = true;
    }

    /// The store stopped after a failed write: pending proposals get
    /// `failure` and queued entries are dropped (a restart applies them
    /// again from the raft log).
    pub(crate) fn fence(&mut self, failure: &errorpb::Error, rec: &mut RoundRecord) {
        for p in self.proposals.drain(..) {
            rec.respond(
                p.cb,
                util::error_response(failure.clone(), self.term),
                false,
            );
        }
        self.queue = VecDeque::new();
        self.proposals = VecDeque::new();
    }

    /// Queues an `Apply` message's entries and proposals (merging messages).
    pub(crate) fn enqueue(&mut self, apply: Apply, rec: &mut RoundRecord) {
        self.term = self.term.max(apply.term);
        let applied = self.apply_state.get_applied_index();
        if self.pending_remove || self.stopped {
            let region_id = self.region_id();
            for p in apply.proposals {
                rec.respond(
                    p.cb,
                    util::error_response(err_outcome_unknown(region_id), self.term),
                    false,
                );
            }
            return;
        }
        for p in apply.proposals {
            // Its entry was applied already (without it): it can never match.
            if p.index <= applied {
                rec.respond(
                    p.cb,
                    util::error_response(util::new_stale_command(), self.term),
                    false,
                );
            } else {
                self.proposals.push_back(p);
            }
        }
        self.queue.extend(apply.entries);
    }

    /// Applies queued entries within `budget`. Returns `true` if entries
    /// remain for a later round.
    pub(crate) fn apply_queued<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        rec: &mut RoundRecord,
        budget: Budget,
    ) -> bool {
        let (mut entries, mut bytes) = (0usize, 0usize);
        while entries < budget.entries && bytes < budget.bytes {
            let Some(entry) = self.queue.pop_front() else {
                break;
            };
            if self.pending_remove || self.stopped {
                self.queue.clear();
                break;
            }
            let index = entry.get_index();
            let applied = self.apply_state.get_applied_index();
            if index <= applied {
                // Redelivered: applied before, never again.
                continue;
            }
            if index != applied + 1 {
                error!(ctx.logger, "entry index gap, dropping the queued entries";
                    "region_id" => self.region_id(), "peer_id" => self.peer_id,
                    "applied_index" => applied, "entry_index" => index);
                self.queue.clear();
                break;
            }
            entries += 1;
            bytes += entry.get_data().len() + entry.get_context().len();
            self.apply_entry(ctx, rec, &entry);
            rec.applied.push(entry);
        }
        if !rec.applied.is_empty() || rec.apply_state.is_some() {
            ctx.wb.put_apply_state(self.region_id(), &self.apply_state);
            rec.apply_state = Some(self.apply_state.clone());
            rec.applied_term = self.applied_term;
        }
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            // An idle region keeps no buffer: the next burst allocates.
            self.queue = VecDeque::new();
        }
        if self.proposals.is_empty() && self.proposals.capacity() > 0 {
            self.proposals = VecDeque::new();
        }
        !self.queue.is_empty() && !self.pending_remove && !self.stopped
    }

    /// Takes the proposal for (`index`, `term`), answering superseded
    /// proposals on the way.
    fn take_proposal(&mut self, index: u64, term: u64, rec: &mut RoundRecord) -> Option<Proposal> {
        while let Some(p) = self.proposals.front() {
            if p.index > index {
                return None;
            }
            let matches = p.index == index && p.term == term;
            let p = self.proposals.pop_front()?;
            if matches {
                return Some(p);
            }
            rec.respond(
                p.cb,
                util::error_response(util::new_stale_command(), self.term),
                false,
            );
        }
        None
    }

    fn apply_entry<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        rec: &mut RoundRecord,
        entry: &Entry,
    ) {
        let (index, term) = (entry.get_index(), entry.get_term());
        let (cb, request) = match self.take_proposal(index, term, rec) {
            Some(p) => (Some(p.cb), p.request),
            None => (None, None),
        };
        let outcome = match entry.get_entry_type() {
            EntryType::EntryNormal if entry.get_data().is_empty() => {
                if cb.is_some() {
                    // Nothing proposes an empty entry with a callback: raft
                    // put this one in place of a proposed conf change that
                    // it refused (another one was pending, or the region
                    // is in a joint configuration). The change did not
                    // happen and must not be answered OK.
                    Err(util::new_error(format!(
                        "membership change at index {index} dropped by raft: another \
                         membership change was still pending; nothing changed, retry"
                    )))
                } else {
                    // The leader's no-op of a new term.
                    Ok((self.ok_response(), None))
                }
            }
            EntryType::EntryNormal => {
                // The proposer's own copy saves a decode; otherwise the
                // entry is decoded, as every follower does.
                let req = match request {
                    Some(req) => Ok(*req),
                    None => kvproto_lite::decode::<RaftCmdRequest>(entry.get_data()),
                };
                match req {
                    Ok(req) => self.exec_command(ctx, rec, req, index, None, cb.is_some()),
                    Err(e) => Err(util::new_error(format!(
                        "undecodable entry at index {index}: {e}"
                    ))),
                }
            }
            EntryType::EntryConfChange if entry.get_data().is_empty() => {
                Ok((self.ok_response(), None))
            }
            EntryType::EntryConfChangeV2 if entry.get_data().is_empty() => {
                // Raft's automatic transition out of a joint configuration
                // (or a leader's explicit request for it).
                self.exec_leave_joint(ctx, rec)
            }
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                self.exec_conf_change_entry(ctx, rec, entry)
            }
        };
        self.maybe_sweep_sessions(ctx, index);
        self.apply_state.set_applied_index(index);
        self.applied_term = term;
        if index > self.apply_state.get_commit_index() {
            self.apply_state.set_commit_index(index);
            self.apply_state.set_commit_term(term);
        }
        let resp = match outcome {
            Ok((resp, result)) => {
                if let Some(result) = result {
                    ctx.force_sync = true;
                    rec.exec_results.push(result);
                }
                resp
            }
            Err(err) => {
                debug!(ctx.logger, "command failed";
                    "region_id" => self.region_id(), "peer_id" => self.peer_id,
                    "index" => index, "error" => err.get_message());
                util::error_response(err, self.term)
            }
        };
        if let Some(cb) = cb {
            rec.respond(cb, resp, true);
        }
    }

    fn ok_response(&self) -> RaftCmdResponse {
        let mut resp = RaftCmdResponse::default();
        resp.mut_header().set_current_term(self.term);
        resp
    }

    fn exec_conf_change_entry<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        rec: &mut RoundRecord,
        entry: &Entry,
    ) -> ExecOutcome {
        let index = entry.get_index();
        let undecodable =
            |e| util::new_error(format!("undecodable conf change at index {index}: {e}"));
        let cc: ConfChangeV2 = if entry.get_entry_type() == EntryType::EntryConfChange {
            membership::v1_to_v2(
                kvproto_lite::decode::<ConfChange>(entry.get_data()).map_err(undecodable)?,
            )
        } else {
            kvproto_lite::decode::<ConfChangeV2>(entry.get_data()).map_err(undecodable)?
        };
        // RawNode::propose_conf_change puts its context in the entry; accept
        // the conf change's own context as well.
        let context = if entry.get_context().is_empty() {
            cc.get_context()
        } else {
            entry.get_context()
        };
        let req = kvproto_lite::decode::<RaftCmdRequest>(context).map_err(|e| {
            util::new_error(format!(
                "undecodable conf change command at index {index}: {e}"
            ))
        })?;
        self.exec_command(ctx, rec, req, index, Some(&cc), true)
    }

    /// Executes one command inside a write-batch save point: on error its
    /// writes are rolled back.
    fn exec_command<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        rec: &mut RoundRecord,
        mut req: RaftCmdRequest,
        index: u64,
        cc: Option<&ConfChangeV2>,
        respond: bool,
    ) -> ExecOutcome {
        let header = req.get_header();
        if header.get_region_id() != self.region_id() {
            return Err(util::new_region_not_found(header.get_region_id()));
        }
        if req.has_admin_request() && !req.get_requests().is_empty() {
            return Err(util::new_error(
                "a command may not mix an admin request with normal requests",
            ));
        }
        let session = if req.has_admin_request() || cc.is_some() {
            None
        } else {
            SessionCmd::from_header(req.get_header())
        };
        let session_key = match session {
            Some(s) => match self.check_session(ctx, s)? {
                SessionCheck::Duplicate(resp) => return Ok((*resp, None)),
                SessionCheck::New(key) => Some(key),
            },
            None => None,
        };
        ctx.begin_command();
        let mut outcome = if req.has_admin_request() {
            self.exec_admin(ctx, rec, &mut req, index, cc)
        } else if cc.is_some() {
            Err(util::new_error(format!(
                "conf change at index {index} carries no ChangePeer admin request"
            )))
        } else {
            // A session command's response is saved, so every replica builds
            // it in full (reads included), callback or not.
            self.exec_normal(ctx, &mut req, respond || session.is_some())
        };
        if let (Some(s), Some(key), Ok((resp, _))) = (session, session_key, &outcome) {
            let mut saved = resp.clone();
            saved.mut_header().clear_current_term();
            let record = SessionRecord {
                sequence: s.sequence,
                last_index: index,
                response: saved,
            };
            match record.encode() {
                Ok(value) => ctx.put(key, value),
                Err(e) => outcome = Err(e),
            }
        }
        if let Err(e) = ctx.end_command(outcome.is_ok()) {
            // Save points are pushed and popped in pairs here; a failure
            // means the write batch is broken: nothing sensible to keep.
            error!(ctx.logger, "write batch save point failed";
                "region_id" => self.region_id(), "peer_id" => self.peer_id, "error" => %e);
            return Err(util::new_error(format!(
                "write batch save point failed: {e}"
            )));
        }
        outcome
    }

    /// Looks up the session of a command: a repeat of the saved sequence
    /// gets the saved response, a lower one `StaleSequence`, a higher one
    /// runs (and its record goes to the returned key).
    fn check_session<K: KvEngine>(
        &self,
        ctx: &ApplyContext<K>,
        s: SessionCmd,
    ) -> Result<SessionCheck, errorpb::Error> {
        let key = session::session_key(self.region.get_start_key(), s.client_id);
        if !util::is_key_in_region(&key, &self.region) {
            return Err(util::new_invalid_request(format!(
                "region {} is too narrow to hold client sessions",
                self.region_id()
            )));
        }
        if s.sequence == 0 {
            return Err(util::new_invalid_request(
                "a session command needs a sequence number above 0",
            ));
        }
        let saved = match ctx.get(&key) {
            Ok(Some(v)) => Some(SessionRecord::decode(&v)?),
            Ok(None) => None,
            Err(e) => {
                error!(ctx.logger, "reading a session record failed";
                    "region_id" => self.region_id(), "peer_id" => self.peer_id,
                    "client_id" => s.client_id, "error" => %e);
                return Err(util::new_error(format!(
                    "reading the session of client {} failed: {e}",
                    s.client_id
                )));
            }
        };
        match saved {
            Some(rec) if rec.sequence == s.sequence => {
                let mut resp = rec.response;
                resp.mut_header().set_current_term(self.term);
                Ok(SessionCheck::Duplicate(Box::new(resp)))
            }
            Some(rec) if rec.sequence > s.sequence => Err(util::new_stale_sequence(
                s.client_id,
                s.sequence,
                rec.sequence,
            )),
            _ => Ok(SessionCheck::New(key)),
        }
    }

    /// At indexes that are multiples of the sweep interval, removes expired
    /// session records (see the `session` module): deterministic, by log
    /// position only.
    fn maybe_sweep_sessions<K: KvEngine>(&self, ctx: &mut ApplyContext<K>, index: u64) {
        let limits = ctx.sessions;
        if limits.sweep_interval == 0 || index % limits.sweep_interval != 0 {
            return;
        }
        let start = self.region.get_start_key();
        let (lo, hi) = session::session_span(start);
        let pairs = match ctx.scan(&lo, &hi) {
            Ok(p) => p,
            Err(e) => {
                // Same policy as a failed read: the replica keeps going; the
                // records stay until a later sweep.
                warn!(ctx.logger, "session sweep read failed";
                    "region_id" => self.region_id(), "peer_id" => self.peer_id, "error" => %e);
                return;
            }
        };
        let records: Vec<(u64, u64)> = pairs
            .iter()
            .filter_map(|(k, v)| {
                let client = session::client_of_key(start, k)?;
                let rec = SessionRecord::decode(v).ok()?;
                Some((client, rec.last_index))
            })
            .collect();
        let gone = session::expired(&records, index, limits.ttl_entries, limits.max_per_region);
        if gone.is_empty() {
            return;
        }
        ctx.begin_command();
        for client in &gone {
            ctx.delete(session::session_key(start, *client));
        }
        if let Err(e) = ctx.end_command(true) {
            error!(ctx.logger, "write batch save point failed in a session sweep";
                "region_id" => self.region_id(), "peer_id" => self.peer_id, "error" => %e);
            return;
        }
        debug!(ctx.logger, "expired client sessions";
            "region_id" => self.region_id(), "peer_id" => self.peer_id,
            "index" => index, "expired" => gone.len());
    }

    /// Copies the left region's session records to the right half of a
    /// split, so a retry routed to the new region finds its session.
    fn copy_sessions_to<K: KvEngine>(
        &self,
        ctx: &mut ApplyContext<K>,
        right_start: &[u8],
    ) -> Result<(), errorpb::Error> {
        let start = self.region.get_start_key();
        let (lo, hi) = session::session_span(start);
        let pairs = ctx
            .scan(&lo, &hi)
            .map_err(|e| util::new_error(format!("reading sessions for a split failed: {e}")))?;
        for (k, v) in pairs {
            if let Some(client) = session::client_of_key(start, &k) {
                ctx.put(session::session_key(right_start, client), v);
            }
        }
        Ok(())
    }

    fn check_epoch(
        &self,
        req: &RaftCmdRequest,
        check_conf_ver: bool,
        check_ver: bool,
    ) -> Result<(), errorpb::Error> {
        let from = req.get_header().get_region_epoch();
        let cur = self.region.get_region_epoch();
        if (check_conf_ver && from.get_conf_ver() != cur.get_conf_ver())
            || (check_ver && from.get_version() != cur.get_version())
        {
            return Err(util::new_epoch_not_match(
                format!(
                    "region {} is at conf_ver {} version {}",
                    self.region.get_id(),
                    self.region.get_region_epoch().get_conf_ver(),
                    self.region.get_region_epoch().get_version()
                ),
                vec![self.region.clone()],
            ));
        }
        Ok(())
    }

    fn exec_normal<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        req: &mut RaftCmdRequest,
        respond: bool,
    ) -> ExecOutcome {
        self.check_epoch(req, false, true)?;
        let mut resp = self.ok_response();
        let mut read_error = None;
        for r in req.mut_requests().iter_mut() {
            let mut out = Response::default();
            out.set_cmd_type(r.get_cmd_type());
            // Without a callback nobody sees the response: reads are skipped
            // (they change nothing), writes and checks still run.
            match r.get_cmd_type() {
                CmdType::Put if r.has_put() => {
                    let put = r.mut_put();
                    self.check_user_key(put.get_key())?;
                    ctx.put(put.take_key(), put.take_value());
                    if respond {
                        out.mut_put();
                    }
                }
                CmdType::Delete if r.has_delete() => {
                    let del = r.mut_delete();
                    self.check_user_key(del.get_key())?;
                    ctx.delete(del.take_key());
                    if respond {
                        out.mut_delete();
                    }
                }
                CmdType::Get if r.has_get() => {
                    let key = r.get_get().get_key();
                    self.check_user_key(key)?;
                    if !respond {
                        continue;
                    }
                    match ctx.get(key) {
                        Ok(Some(v)) => out.mut_get().set_value(v),
                        Ok(None) => out.mut_get().set_not_found(true),
                        // A failed read must not change what this replica
                        // writes (the others read fine): keep executing.
                        Err(e) => read_error = Some(e),
                    }
                }
                CmdType::CompareAndSwap if r.has_cas() => {
                    let cas = r.mut_cas();
                    self.check_user_key(cas.get_key())?;
                    let current = match ctx.get(cas.get_key()) {
                        Ok(v) => v,
                        Err(e) => return Err(read_failed_before_writing(&e)),
                    };
                    let holds = if cas.get_expected_absent() {
                        current.is_none()
                    } else {
                        current.as_deref() == Some(cas.get_expected())
                    };
                    if holds {
                        ctx.put(cas.take_key(), cas.take_value());
                    }
                    fill_cas_response(&mut out, holds, current);
                }
                CmdType::DeleteIfEqual if r.has_delete_if_equal() => {
                    let del = r.mut_delete_if_equal();
                    self.check_user_key(del.get_key())?;
                    let current = match ctx.get(del.get_key()) {
                        Ok(v) => v,
                        Err(e) => return Err(read_failed_before_writing(&e)),
                    };
                    let holds = current.as_deref() == Some(del.get_expected());
                    if holds {
                        ctx.delete(del.take_key());
                    }
                    fill_cas_response(&mut out, holds, current);
                }
                CmdType::User if r.has_user() => {
                    let user = r.get_user();
                    let handler = ctx.handlers.get(user.get_name()).cloned();
                    let mark = ctx.nested_save_point();
                    let result = match handler {
                        Some(h) => {
                            let mut keys = KeyAccess::new(ctx, &self.region);
                            h.handle(&mut keys, user.get_input())
                        }
                        None => Err(format!("no handler registered under {:?}", user.get_name())),
                    };
                    ctx.end_nested(mark, result.is_ok()).map_err(|e| {
                        util::new_error(format!("write batch save point failed: {e}"))
                    })?;
                    let resp = out.mut_user();
                    match result {
                        Ok(output) => resp.set_output(output),
                        Err(msg) => {
                            resp.set_failed(true);
                            resp.set_error(msg);
                        }
                    }
                }
                t => {
                    return Err(util::new_error(format!(
                        "invalid request: command type {t:?} without its body"
                    )))
                }
            }
            if respond {
                resp.mut_responses().push(out);
            }
        }
        if let Some(e) = read_error {
            warn!(ctx.logger, "read through the log failed";
                "region_id" => self.region_id(), "peer_id" => self.peer_id, "error" => %e);
            // The writes stay (deterministic state); the caller learns the
            // read failed and that the command's writes were applied.
            let err = util::new_error(format!(
                "engine read failed: {e}; the command's writes were applied"
            ));
            return Ok((util::error_response(err, self.term), None));
        }
        Ok((resp, None))
    }

    /// A key a normal request names must lie in the region and must not be
    /// a reserved (session record) key.
    fn check_user_key(&self, key: &[u8]) -> Result<(), errorpb::Error> {
        if !util::is_key_in_region(key, &self.region) {
            return Err(util::new_key_not_in_region(key, &self.region));
        }
        if session::is_reserved_key(key) {
            return Err(util::new_invalid_request(format!(
                "key {} is reserved for session records",
                key.escape_ascii()
            )));
        }
        Ok(())
    }

    fn exec_admin<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        rec: &mut RoundRecord,
        req: &mut RaftCmdRequest,
        index: u64,
        cc: Option<&ConfChangeV2>,
    ) -> ExecOutcome {
        let cmd_type = req.get_admin_request().get_cmd_type();
        let mut admin_resp = AdminResponse::default();
        admin_resp.set_cmd_type(cmd_type);
        let result = match (cmd_type, cc) {
            (AdminCmdType::ChangePeer | AdminCmdType::ChangePeerV2, Some(cc)) => {
                self.exec_change_peer(ctx, rec, req, cc, &mut admin_resp)?
            }
            (AdminCmdType::ChangePeer | AdminCmdType::ChangePeerV2, None) => {
                return Err(util::new_error(format!(
                    "{cmd_type:?} must be proposed as a conf change entry"
                )))
            }
            (_, Some(_)) => {
                return Err(util::new_error(format!(
                    "conf change entry carries {cmd_type:?} instead of ChangePeer"
                )))
            }
            (AdminCmdType::CompactLog, None) => {
                self.exec_compact_log(req.get_admin_request(), index)?
            }
            (AdminCmdType::Split, None) => self.exec_split(ctx, rec, req, &mut admin_resp)?,
            (AdminCmdType::TransferLeader, None) => {
                return Err(util::new_error(
                    "TransferLeader is handled by raftstore and must not be proposed",
                ))
            }
            (AdminCmdType::InvalidAdmin, None) => {
                return Err(util::new_error("invalid admin command type"))
            }
        };
        if cmd_type == AdminCmdType::CompactLog {
            admin_resp.mut_compact_log();
        }
        let mut resp = self.ok_response();
        resp.set_admin_response(admin_resp);
        Ok((resp, result))
    }

    fn exec_compact_log(
        &mut self,
        req: &AdminRequest,
        index: u64,
    ) -> Result<Option<ExecResult>, errorpb::Error> {
        if !req.has_compact_log() {
            return Err(util::new_error("CompactLog without its request body"));
        }
        let compact = req.get_compact_log();
        let (compact_index, compact_term) =
            (compact.get_compact_index(), compact.get_compact_term());
        let truncated = self.apply_state.get_truncated_state().get_index();
        if compact_index <= truncated {
            // Already compacted further: nothing to do.
            return Ok(None);
        }
        if compact_term == 0 {
            return Err(util::new_error("CompactLog with compact_term 0"));
        }
        if compact_index > index {
            return Err(util::new_error(format!(
                "CompactLog to {compact_index} beyond its own index {index}"
            )));
        }
        let mut state = RaftTruncatedState::default();
        state.set_index(compact_index);
        state.set_term(compact_term);
        self.apply_state.set_truncated_state(state.clone());
        Ok(Some(ExecResult::CompactLog {
            state,
            first_index: truncated + 1,
        }))
    }

    fn save_region_checkpoint(&self, rec: &mut RoundRecord) {
        if rec.checkpoint.region.is_none() {
            rec.checkpoint.region = Some(self.region.clone());
        }
    }

    fn exec_change_peer<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        rec: &mut RoundRecord,
        req: &RaftCmdRequest,
        cc: &ConfChangeV2,
        admin_resp: &mut AdminResponse,
    ) -> Result<Option<ExecResult>, errorpb::Error> {
        self.check_epoch(req, true, false)?;
        let admin = req.get_admin_request();
        let requests = membership::requested_changes(admin)?;
        let region = membership::plan_change(&self.region, cc, &requests)?;
        if admin.get_cmd_type() == AdminCmdType::ChangePeerV2 {
            admin_resp.mut_change_peer_v2().set_region(region.clone());
        } else {
            admin_resp.mut_change_peer().set_region(region.clone());
        }
        Ok(Some(self.adopt_membership(ctx, rec, cc.clone(), region)))
    }

    /// Leaves a joint configuration (an empty `ConfChangeV2` entry); a
    /// region that is not joint (the transition was applied already) stays
    /// as it is.
    fn exec_leave_joint<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        rec: &mut RoundRecord,
    ) -> ExecOutcome {
        let Some(region) = membership::plan_leave_joint(&self.region)? else {
            return Ok((self.ok_response(), None));
        };
        let result = self.adopt_membership(ctx, rec, ConfChangeV2::default(), region);
        Ok((self.ok_response(), Some(result)))
    }

    /// Writes the region after a membership change (a `Tombstone` if this
    /// peer is no longer in it) and makes it the delegate's region.
    fn adopt_membership<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        rec: &mut RoundRecord,
        cc: ConfChangeV2,
        region: Region,
    ) -> ExecResult {
        let remove_self = !region
            .get_peers()
            .iter()
            .any(|p| p.get_id() == self.peer_id);
        self.save_region_checkpoint(rec);
        let state = if remove_self {
            PeerState::Tombstone
        } else {
            PeerState::Normal
        };
        ctx.put_region_state(&region_local_state(state, &region));
        if remove_self {
            delete_region_data(ctx, &region);
        }
        info!(ctx.logger, "membership change applied";
            "region_id" => region.get_id(), "peer_id" => self.peer_id,
            "changes" => ?cc.get_changes(), "peers" => ?region.get_peers(),
            "conf_ver" => region.get_region_epoch().get_conf_ver());
        self.region = region.clone();
        self.pending_remove |= remove_self;
        ExecResult::ChangePeer { cc, region }
    }

    fn exec_split<K: KvEngine>(
        &mut self,
        ctx: &mut ApplyContext<K>,
        rec: &mut RoundRecord,
        req: &RaftCmdRequest,
        admin_resp: &mut AdminResponse,
    ) -> Result<Option<ExecResult>, errorpb::Error> {
        self.check_epoch(req, true, true)?;
        let admin = req.get_admin_request();
        if !admin.has_split() {
            return Err(util::new_error("Split without its request body"));
        }
        let split = admin.get_split();
        let key = split.get_split_key();
        if key.is_empty() {
            return Err(util::new_error("Split with an empty split key"));
        }
        if key == self.region.get_start_key() || !util::is_key_in_region(key, &self.region) {
            return Err(util::new_key_not_in_region(key, &self.region));
        }
        if !session::split_keeps_sessions(&self.region, key) {
            return Err(util::new_invalid_request(format!(
                "split key {} leaves a half too narrow for its session records",
                key.escape_ascii()
            )));
        }
        let new_id = split.get_new_region_id();
        if new_id == 0 || new_id == self.region_id() {
            return Err(util::new_error(format!(
                "Split with invalid new region id {new_id}"
            )));
        }
        let new_peer_ids = split.get_new_peer_ids();
        if new_peer_ids.len() != self.region.get_peers().len() {
            return Err(util::new_error(format!(
                "Split gives {} new peer ids for {} peers",
                new_peer_ids.len(),
                self.region.get_peers().len()
            )));
        }
        if new_peer_ids.contains(&0) {
            return Err(util::new_error("Split with new peer id 0"));
        }
        let mut left = self.region.clone();
        let version = left.get_region_epoch().get_version() + 1;
        left.mut_region_epoch().set_version(version);
        let mut right = left.clone();
        left.set_end_key(key.to_vec());
        right.set_id(new_id);
        right.set_start_key(key.to_vec());
        for (p, id) in right.mut_peers().iter_mut().zip(new_peer_ids) {
            p.set_id(*id);
        }
        self.save_region_checkpoint(rec);
        ctx.put_region_state(&region_local_state(PeerState::Normal, &left));
        match ctx.engine.get_region_state(new_id) {
            Ok(Some(existing)) => {
                // Created earlier by a message from the new region's leader,
                // or already destroyed: its state must not be overwritten.
                warn!(ctx.logger, "split target region already exists, its state is kept";
                    "region_id" => self.region_id(), "peer_id" => self.peer_id,
                    "new_region_id" => new_id, "state" => ?existing.get_state());
                if existing.get_state() == PeerState::Tombstone {
                    // The new region's peer here was removed before this
                    // store applied the split: the keys the split hands it
                    // belong to no peer of this store any more.
                    delete_region_data(ctx, &right);
                }
            }
            Ok(None) | Err(_) => {
                self.copy_sessions_to(ctx, key)?;
                ctx.put_region_state(&region_local_state(PeerState::Normal, &right));
                ctx.wb.put_apply_state(new_id, &initial_apply_state());
            }
        }
        info!(ctx.logger, "region split";
            "region_id" => self.region_id(), "peer_id" => self.peer_id,
            "new_region_id" => new_id, "version" => version);
        self.region = left.clone();
        let s = admin_resp.mut_split();
        s.set_left(left.clone());
        s.set_right(right.clone());
        Ok(Some(ExecResult::Split { left, right }))
    }

    /// Puts the round's state back after a failed write and re-queues the
    /// round's entries ahead of anything queued since.
    pub(crate) fn restore(&mut self, rec: &mut RoundRecord) {
        let cp = &mut rec.checkpoint;
        cp.restore_apply_state(&mut self.apply_state);
        self.applied_term = cp.applied_term;
        self.pending_remove = cp.pending_remove;
        if let Some(region) = cp.region.take() {
            self.region = region;
        }
        for e in rec.applied.drain(..).rev() {
            self.queue.push_front(e);
        }
    }
}

/// Deletes a destroyed peer's data: every key of the region's ranges (its
/// data and per-region state), in the same write batch as its tombstone.
fn delete_region_data<K: KvEngine>(ctx: &mut ApplyContext<K>, region: &Region) {
    for (start, end) in engine::keys::region_ranges(region) {
        ctx.wb.delete_range_raw(&start, &end);
    }
}

/// What a session lookup decided.
enum SessionCheck {
    /// The command ran before: here is its saved response.
    Duplicate(Box<RaftCmdResponse>),
    /// The command is new; its record goes under this key.
    New(Vec<u8>),
}

/// A conditional command could not read its key: it writes nothing.
fn read_failed_before_writing(e: &engine::Error) -> errorpb::Error {
    util::new_error(format!("engine read failed: {e}; nothing was written"))
}

fn fill_cas_response(out: &mut Response, succeeded: bool, previous: Option<Vec<u8>>) {
    let cas = out.mut_cas();
    cas.set_succeeded(succeeded);
    match previous {
        Some(v) => cas.set_previous(v),
        None => cas.set_previous_not_found(true),
    }
}

fn region_local_state(state: PeerState, region: &Region) -> RegionLocalState {
    let mut s = RegionLocalState::default();
    s.set_state(state);
    s.set_region(region.clone());
    s
}
