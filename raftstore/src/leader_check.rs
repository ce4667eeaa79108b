//! Leader checks: ReadIndex reads confirmed by one message per store pair
//! and poll round, instead of one heartbeat round per region.
//!
//! raft-rs confirms a ReadIndex read with a heartbeat round of its region:
//! the leader heartbeats every follower, each follower's peer FSM is
//! activated to answer, and the leader's FSM is activated again by the
//! answers. With thousands of regions reading, that is two follower
//! activations and their Readies per read batch. A leader check asks the
//! same question for every region of a round at once, and the follower's
//! store answers it from shared cells, without activating a peer (the idea
//! of TiKV's `check_leader`, which resolved-ts and stale reads use to
//! learn that a leader is still in charge):
//!
//! ```text
//! leader store, poll round r           follower store
//!   peer R: reads arrived, leader of T,
//!     an entry of T committed, no conf
//!     change / transfer pending
//!     -> batch.read_index = commit now
//!     -> (R, T, me, follower peer) added
//!        to the round's check per store
//!   end of round: one LeaderCheck id=c  ---->  message sink, at delivery
//!   per follower store                         (no FSM): for each region,
//!                                              yes iff its peer's cell says
//!                                              exactly term T and leader me
//!   sink: each answer recorded in the   <----  one LeaderCheckResponse, sent
//!   region's cell; the peer woken if           and flushed at once through
//!   the answer can confirm a waiting           the store's transport
//!   batch
//!   peer R: a quorum of voters (itself included, both halves of a joint
//!   configuration) confirmed a check >= c in term T -> serve the batch
//!   once applied >= read_index; a lost quorum, a timeout, or anything
//!   unusual -> the batch falls back to raft's read_index
//! ```
//!
//! # Why it is safe
//!
//! A read must see every write acknowledged before it arrived. Such a write
//! was committed either in a term up to T (then the leader's commit index,
//! taken after the reads arrived and once an entry of T is committed,
//! covers it: Leader Completeness), or by a leader of a higher term T'
//! elected before the read arrived. The second case is impossible once a
//! quorum confirmed a check sent after the read arrived: T' needed votes
//! from a quorum, which shares a member m with the confirming quorum.
//!
//! - Every peer publishes its term in its cell **before** any message of
//!   that term leaves it (`Peer::send_messages` publishes first; a vote,
//!   a vote request, a rejection are messages). So if m's vote for T' (or
//!   its vote request, when m is the candidate) left before m answered,
//!   the answer read a term >= T' and said no.
//! - If m answered yes first, its part in electing T' came after the
//!   answer, after the check was sent, after the read arrived: T' was
//!   elected after the read arrived, and its writes are concurrent with
//!   the read.
//!
//! Terms only grow, so a cell never goes back to T. Checks are numbered
//! per store in increasing order; a region joins checks in the order of
//! its poll rounds (a region is in one poll round at a time, and the
//! number is taken in a round after the region's previous round ended), so
//! a confirmation of any check numbered >= c of the region was sent after
//! the reads of batch c arrived.
//!
//! The quorum is raft's own (`JointConfig::vote_result` over the leader's
//! voters; learners have no say). Whenever something is unusual the batch
//! uses raft's `read_index` instead: no entry of the term committed yet, a
//! configuration change pending or a joint configuration, a leadership
//! transfer, a voter whose store is unknown, a quorum that said no, no
//! quorum within the timeout. Leases are renewed only by raft's read
//! index: a leader check does not reset the followers' election timers, so
//! it proves nothing about the future.
//!
//! # Wire form
//!
//! A check travels in a `RaftMessage` with `extra = LeaderCheckRequest`,
//! `region_id = 0`, only the stores in `from_peer`/`to_peer` and the
//! question in `leader_check`; the answer with `extra =
//! LeaderCheckResponse` in `leader_check_response`. Every transport
//! carries it like any raft message (and every fault filter applies).
//! Both are checked as untrusted input ([`validate_request`],
//! [`validate_response`]): a bad one is dropped and counted, never a
//! panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use kvproto_lite::raft_serverpb::{
    ExtraMessageType, LeaderCheck, LeaderCheckAnswer, LeaderCheckRegion, LeaderCheckResponse,
    RaftMessage,
};

/// Most regions one leader check may name: far above any store's region
/// count in one round; a message naming more is refused as malformed.
pub const MAX_CHECK_REGIONS: usize = 1 << 20;

/// Why a leader check message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The envelope is not a store-level message: a region id, a peer id,
    /// a raft message or region data where only stores may be named.
    #[error("leader check envelope names a region or peer")]
    Envelope,
    /// The sending or the receiving store is 0, or they are the same store.
    #[error("leader check between invalid stores")]
    Stores,
    /// The extra type does not match the body (a request without
    /// `leader_check`, a response without `leader_check_response`, or
    /// both).
    #[error("leader check body does not match its type")]
    Body,
    /// The check id is 0 (ids start at 1).
    #[error("leader check id 0")]
    ZeroId,
    /// More than [`MAX_CHECK_REGIONS`] regions.
    #[error("leader check names too many regions")]
    TooManyRegions,
    /// A region entry with a region id, term or peer id of 0, or naming the
    /// same peer as leader and as the asked peer.
    #[error("leader check region entry with a zero or self-contradicting field")]
    Region,
}

/// The store-wide counters of leader checks (see [`LeaderChecks::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaderCheckStats {
    /// Read batches this store sent through a leader check.
    pub batches_sent: u64,
    /// Of those, batches a quorum confirmed.
    pub batches_confirmed: u64,
    /// Batches that fell back to raft's read index because a quorum
    /// answered no.
    pub batches_refused: u64,
    /// Batches that fell back to raft's read index because no quorum
    /// answered in time.
    pub batches_timed_out: u64,
    /// Check messages this store sent (one per store and round).
    pub messages_sent: u64,
    /// Region questions this store answered yes.
    pub answered_yes: u64,
    /// Region questions this store answered no.
    pub answered_no: u64,
    /// Check messages (requests or answers) dropped as malformed.
    pub malformed: u64,
}

/// What a peer published: its term and the leader it follows in it.
#[derive(Debug, Default)]
struct CellState {
    term: u64,
    leader_id: u64,
    /// The lowest check id the peer (as a leader) has batches waiting
    /// for, 0 when none: an answer to that check or a later one wakes it
    /// (an earlier one can confirm none of them).
    waiting_from: u64,
    /// Answers received for this region, one entry per answering store.
    acks: Vec<StoreAck>,
}

/// The answers one store gave for a region in one term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreAck {
    pub(crate) store_id: u64,
    pub(crate) term: u64,
    /// Highest check id the store confirmed (0: none).
    pub(crate) confirmed: u64,
    /// Highest check id the store refused (0: none).
    pub(crate) refused: u64,
}

/// A peer's shared cell: what it published about its term (for the
/// follower side of a check) and the answers its checks got (for the
/// leader side). Written by the peer and the store's message handling,
/// under a lock that nothing holds for long.
#[derive(Debug)]
pub struct LeaderCheckCell {
    peer_id: u64,
    state: Mutex<CellState>,
}

impl LeaderCheckCell {
    /// The cell of peer `peer_id` at `term` (its persisted term when it
    /// starts), following no known leader.
    pub(crate) fn new(peer_id: u64, term: u64) -> LeaderCheckCell {
        LeaderCheckCell {
            peer_id,
            state: Mutex::new(CellState {
                term,
                ..CellState::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CellState> {
        // A poisoned cell still holds whole values (each write is a few
        // plain stores).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the peer's term and the leader it follows (itself when it
    /// leads, 0 when it knows none). Must be called before any message of
    /// `term` leaves the peer.
    pub(crate) fn publish(&self, term: u64, leader_id: u64) {
        let mut s = self.lock();
        if term > s.term {
            s.term = term;
        }
        if term == s.term {
            s.leader_id = leader_id;
        }
    }

    /// Whether this peer follows `leader_id` in exactly `term`.
    fn follows(&self, peer_id: u64, term: u64, leader_id: u64) -> bool {
        if peer_id != self.peer_id {
            return false;
        }
        let s = self.lock();
        s.term == term && s.leader_id == leader_id
    }

    /// Sets the lowest check id the peer waits for answers to (0: none).
    pub(crate) fn set_waiting_from(&self, id: u64) {
        self.lock().waiting_from = id;
    }

    /// Records `store_id`'s answer to check `id` in `term`; returns whether
    /// the peer waits for answers to that check or an earlier one (and
    /// should be woken).
    fn record(&self, store_id: u64, term: u64, id: u64, confirmed: bool) -> bool {
        let mut s = self.lock();
        let ack = match s.acks.iter_mut().position(|a| a.store_id == store_id) {
            Some(i) => &mut s.acks[i],
            None => {
                s.acks.push(StoreAck {
                    store_id,
                    term,
                    confirmed: 0,
                    refused: 0,
                });
                let last = s.acks.len() - 1;
                &mut s.acks[last]
            }
        };
        if term > ack.term {
            *ack = StoreAck {
                store_id,
                term,
                confirmed: 0,
                refused: 0,
            };
        }
        if term == ack.term {
            if confirmed {
                ack.confirmed = ack.confirmed.max(id);
            } else {
                ack.refused = ack.refused.max(id);
            }
        }
        s.waiting_from != 0 && id >= s.waiting_from
    }

    /// Calls `f` with the answers of every store (of any term; an entry's
    /// `term` says which), under the cell's lock.
    pub(crate) fn with_acks<R>(&self, f: impl FnOnce(&[StoreAck]) -> R) -> R {
        f(&self.lock().acks)
    }
}

/// The store's leader checks: every peer's cell by region, the check
/// numbering, counters. Shared by the router (checks and answers arrive
/// there), the pollers (peers ask through them) and the store FSM (peers
/// are created and destroyed there).
#[derive(Debug, Default)]
pub struct LeaderChecks {
    cells: RwLock<HashMap<u64, Arc<LeaderCheckCell>>>,
    next_id: AtomicU64,
    batches_sent: AtomicU64,
    batches_confirmed: AtomicU64,
    batches_refused: AtomicU64,
    batches_timed_out: AtomicU64,
    messages_sent: AtomicU64,
    answered_yes: AtomicU64,
    answered_no: AtomicU64,
    malformed: AtomicU64,
}

impl LeaderChecks {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Arc<LeaderCheckCell>>> {
        self.cells.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Arc<LeaderCheckCell>>> {
        self.cells.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `cell` region `region_id`'s (a peer was created or started).
    pub(crate) fn register(&self, region_id: u64, cell: Arc<LeaderCheckCell>) {
        self.write().insert(region_id, cell);
    }

    /// Forgets region `region_id`'s cell if it is still peer `peer_id`'s
    /// (the peer was destroyed).
    pub(crate) fn unregister(&self, region_id: u64, peer_id: u64) {
        let mut cells = self.write();
        if cells.get(&region_id).is_some_and(|c| c.peer_id == peer_id) {
            cells.remove(&region_id);
        }
    }

    /// A fresh check id (increasing, from 1).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The counters so far.
    pub fn stats(&self) -> LeaderCheckStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LeaderCheckStats {
            batches_sent: l(&self.batches_sent),
            batches_confirmed: l(&self.batches_confirmed),
            batches_refused: l(&self.batches_refused),
            batches_timed_out: l(&self.batches_timed_out),
            messages_sent: l(&self.messages_sent),
            answered_yes: l(&self.answered_yes),
            answered_no: l(&self.answered_no),
            malformed: l(&self.malformed),
        }
    }

    pub(crate) fn count_batch_sent(&self) {
        self.batches_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_batch_confirmed(&self) {
        self.batches_confirmed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_batch_refused(&self) {
        self.batches_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_batch_timed_out(&self) {
        self.batches_timed_out.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers a (validated) check from this store's cells, without
    /// touching a peer FSM.
    pub fn answer(&self, check: &LeaderCheck) -> LeaderCheckResponse {
        let cells = self.read();
        let mut resp = LeaderCheckResponse::default();
        resp.set_id(check.get_id());
        let (mut yes, mut no) = (0, 0);
        let mut answers = Vec::with_capacity(check.get_regions().len());
        for r in check.get_regions() {
            let confirmed = cells
                .get(&r.get_region_id())
                .is_some_and(|c| c.follows(r.get_peer_id(), r.get_term(), r.get_leader_peer_id()));
            if confirmed {
                yes += 1;
            } else {
                no += 1;
            }
            let mut a = LeaderCheckAnswer::default();
            a.set_region_id(r.get_region_id());
            a.set_term(r.get_term());
            a.set_confirmed(confirmed);
            answers.push(a);
        }
        resp.set_answers(answers.into());
        self.answered_yes.fetch_add(yes, Ordering::Relaxed);
        self.answered_no.fetch_add(no, Ordering::Relaxed);
        resp
    }

    /// Records a (validated) answer from `from_store` in the cells of the
    /// regions it names; calls `wake(region_id)` for each region whose peer
    /// waits for answers.
    pub fn on_response(
        &self,
        from_store: u64,
        resp: &LeaderCheckResponse,
        mut wake: impl FnMut(u64),
    ) {
        let cells = self.read();
        for a in resp.get_answers() {
            let Some(cell) = cells.get(&a.get_region_id()) else {
                continue;
            };
            if cell.record(from_store, a.get_term(), resp.get_id(), a.get_confirmed()) {
                wake(a.get_region_id());
            }
        }
    }
}

/// The checks a poller collects in one round: one [`LeaderCheck`] per
/// follower store, sent at the end of the round.
#[derive(Debug, Default)]
pub(crate) struct RoundChecks {
    /// This round's check id, taken when the first region joins.
    id: Option<u64>,
    by_store: Vec<(u64, Vec<LeaderCheckRegion>)>,
}

impl RoundChecks {
    /// The round's check id (taken from `checks` on first use).
    pub(crate) fn id(&mut self, checks: &LeaderChecks) -> u64 {
        *self.id.get_or_insert_with(|| checks.next_id())
    }

    /// Asks `store_id` whether its peer `peer_id` of `region_id` follows
    /// `leader_peer_id` in `term`.
    pub(crate) fn add(
        &mut self,
        store_id: u64,
        region_id: u64,
        term: u64,
        leader_peer_id: u64,
        peer_id: u64,
    ) {
        let mut r = LeaderCheckRegion::default();
        r.set_region_id(region_id);
        r.set_term(term);
        r.set_leader_peer_id(leader_peer_id);
        r.set_peer_id(peer_id);
        match self.by_store.iter_mut().find(|(s, _)| *s == store_id) {
            Some((_, list)) => list.push(r),
            None => self.by_store.push((store_id, vec![r])),
        }
    }

    /// Takes the round's checks as messages from `from_store` (and starts
    /// a new round).
    pub(crate) fn take_messages(
        &mut self,
        from_store: u64,
        checks: &LeaderChecks,
    ) -> Vec<RaftMessage> {
        let Some(id) = self.id.take() else {
            return Vec::new();
        };
        let msgs: Vec<RaftMessage> = std::mem::take(&mut self.by_store)
            .into_iter()
            .map(|(to_store, regions)| {
                let mut check = LeaderCheck::default();
                check.set_id(id);
                check.set_regions(regions.into());
                let mut m = store_envelope(from_store, to_store);
                m.set_extra(ExtraMessageType::LeaderCheckRequest);
                m.set_leader_check(check);
                m
            })
            .collect();
        checks
            .messages_sent
            .fetch_add(msgs.len() as u64, Ordering::Relaxed);
        msgs
    }
}

/// A store-level message from `from_store` to `to_store`.
fn store_envelope(from_store: u64, to_store: u64) -> RaftMessage {
    let mut m = RaftMessage::default();
    m.mut_from_peer().set_store_id(from_store);
    m.mut_to_peer().set_store_id(to_store);
    m
}

/// The answer to `check` from `from_store` (who was asked) to `to_store`.
pub(crate) fn response_message(
    from_store: u64,
    to_store: u64,
    resp: LeaderCheckResponse,
) -> RaftMessage {
    let mut m = store_envelope(from_store, to_store);
    m.set_extra(ExtraMessageType::LeaderCheckResponse);
    m.set_leader_check_response(resp);
    m
}

/// Whether `msg` is a store-level leader check message (request or
/// answer) rather than a region's.
pub fn is_leader_check(msg: &RaftMessage) -> bool {
    matches!(
        msg.get_extra(),
        ExtraMessageType::LeaderCheckRequest | ExtraMessageType::LeaderCheckResponse
    )
}

/// Checks the envelope of a leader check message received by `store_id`.
fn check_envelope(msg: &RaftMessage, store_id: u64) -> Result<(), CheckError> {
    let (from, to) = (msg.get_from_peer(), msg.get_to_peer());
    if msg.get_region_id() != 0
        || from.get_id() != 0
        || to.get_id() != 0
        || msg.has_message()
        || msg.has_region_epoch()
        || msg.get_is_tombstone()
        || !msg.get_start_key().is_empty()
        || !msg.get_end_key().is_empty()
    {
        return Err(CheckError::Envelope);
    }
    let (from, to) = (from.get_store_id(), to.get_store_id());
    if from == 0 || to == 0 || from == to || (store_id != 0 && to != store_id) {
        return Err(CheckError::Stores);
    }
    Ok(())
}

/// Checks a leader check request received by store `store_id` (0: any
/// store) as untrusted input: a store-level envelope, a body matching the
/// type, an id, and region entries with every field set.
///
/// # Errors
///
/// The first [`CheckError`] found.
pub fn validate_request(msg: &RaftMessage, store_id: u64) -> Result<&LeaderCheck, CheckError> {
    check_envelope(msg, store_id)?;
    if msg.get_extra() != ExtraMessageType::LeaderCheckRequest
        || !msg.has_leader_check()
        || msg.has_leader_check_response()
    {
        return Err(CheckError::Body);
    }
    let check = msg.get_leader_check();
    if check.get_id() == 0 {
        return Err(CheckError::ZeroId);
    }
    if check.get_regions().len() > MAX_CHECK_REGIONS {
        return Err(CheckError::TooManyRegions);
    }
    for r in check.get_regions() {
        if r.get_region_id() == 0
            || r.get_term() == 0
            || r.get_leader_peer_id() == 0
            || r.get_peer_id() == 0
            || r.get_peer_id() == r.get_leader_peer_id()
        {
            return Err(CheckError::Region);
        }
    }
    Ok(check)
}

/// Checks a leader check answer received by store `store_id` (0: any
/// store) as untrusted input, like [`validate_request`].
///
/// # Errors
///
/// The first [`CheckError`] found.
pub fn validate_response(
    msg: &RaftMessage,
    store_id: u64,
) -> Result<&LeaderCheckResponse, CheckError> {
    check_envelope(msg, store_id)?;
    if msg.get_extra() != ExtraMessageType::LeaderCheckResponse
        || !msg.has_leader_check_response()
        || msg.has_leader_check()
    {
        return Err(CheckError::Body);
    }
    let resp = msg.get_leader_check_response();
    if resp.get_id() == 0 {
        return Err(CheckError::ZeroId);
    }
    if resp.get_answers().len() > MAX_CHECK_REGIONS {
        return Err(CheckError::TooManyRegions);
    }
    if resp
        .get_answers()
        .iter()
        .any(|a| a.get_region_id() == 0 || a.get_term() == 0)
    {
        return Err(CheckError::Region);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Store 2's cells: region 1's peer 12 at term 5 following peer 11.
    fn follower_store() -> LeaderChecks {
        let checks = LeaderChecks::default();
        let cell = Arc::new(LeaderCheckCell::new(12, 4));
        cell.publish(5, 11);
        checks.register(1, cell);
        checks
    }

    fn region(region_id: u64, term: u64, leader: u64, peer: u64) -> LeaderCheckRegion {
        let mut r = LeaderCheckRegion::default();
        r.set_region_id(region_id);
        r.set_term(term);
        r.set_leader_peer_id(leader);
        r.set_peer_id(peer);
        r
    }

    fn request(from: u64, to: u64, regions: Vec<LeaderCheckRegion>) -> RaftMessage {
        let mut rc = RoundChecks::default();
        let checks = LeaderChecks::default();
        rc.id(&checks);
        for r in regions {
            rc.add(
                to,
                r.get_region_id(),
                r.get_term(),
                r.get_leader_peer_id(),
                r.get_peer_id(),
            );
        }
        rc.take_messages(from, &checks).pop().unwrap()
    }

    fn answers(resp: &LeaderCheckResponse) -> Vec<bool> {
        resp.get_answers()
            .iter()
            .map(|a| a.get_confirmed())
            .collect()
    }

    #[test]
    fn a_follower_confirms_only_its_exact_term_and_leader() {
        let checks = follower_store();
        let msg = request(
            1,
            2,
            vec![
                region(1, 5, 11, 12),
                region(1, 4, 11, 12),
                region(1, 6, 11, 12),
                region(1, 5, 13, 12),
                region(1, 5, 11, 14),
                region(9, 5, 11, 12),
            ],
        );
        let check = validate_request(&msg, 2).unwrap();
        let resp = checks.answer(check);
        assert_eq!(resp.get_id(), check.get_id());
        assert_eq!(answers(&resp), [true, false, false, false, false, false]);
        let stats = checks.stats();
        assert_eq!((stats.answered_yes, stats.answered_no), (1, 5));
    }

    #[test]
    fn a_follower_that_moved_to_a_higher_term_answers_no() {
        let checks = follower_store();
        let msg = request(1, 2, vec![region(1, 5, 11, 12)]);
        let check = validate_request(&msg, 2).unwrap();
        assert_eq!(answers(&checks.answer(check)), [true]);
        // The peer campaigns (or votes) in term 6: published before its
        // first message of term 6 leaves.
        checks.read()[&1].publish(6, 0);
        assert_eq!(answers(&checks.answer(check)), [false]);
        // A late publish of the old term never takes the cell back.
        checks.read()[&1].publish(5, 11);
        assert_eq!(answers(&checks.answer(check)), [false]);
    }

    #[test]
    fn a_destroyed_peer_answers_no_and_a_recreated_one_keeps_its_cell() {
        let checks = follower_store();
        let msg = request(1, 2, vec![region(1, 5, 11, 12)]);
        let check = validate_request(&msg, 2).unwrap();
        // Another peer id of the region cannot remove the current cell.
        checks.unregister(1, 99);
        assert_eq!(answers(&checks.answer(check)), [true]);
        checks.unregister(1, 12);
        assert_eq!(answers(&checks.answer(check)), [false]);
    }

    #[test]
    fn answers_are_recorded_per_store_and_term_and_wake_a_waiting_peer() {
        let leader = LeaderChecks::default();
        let cell = Arc::new(LeaderCheckCell::new(11, 5));
        leader.register(1, cell.clone());
        let answer = |id: u64, term: u64, confirmed: bool| {
            let mut a = LeaderCheckAnswer::default();
            a.set_region_id(1);
            a.set_term(term);
            a.set_confirmed(confirmed);
            let mut resp = LeaderCheckResponse::default();
            resp.set_id(id);
            resp.set_answers(vec![a].into());
            resp
        };
        let mut woken = Vec::new();
        leader.on_response(2, &answer(3, 5, true), |r| woken.push(r));
        assert!(woken.is_empty(), "the peer does not wait");
        cell.set_waiting_from(2);
        leader.on_response(2, &answer(2, 5, true), |r| woken.push(r));
        leader.on_response(3, &answer(4, 5, false), |r| woken.push(r));
        assert_eq!(woken, [1, 1]);
        // An answer to a check older than every waiting batch's wakes
        // nobody (it can confirm none of them).
        leader.on_response(3, &answer(1, 5, true), |r| woken.push(r));
        assert_eq!(woken, [1, 1]);
        let acks = |term: u64| -> Vec<StoreAck> {
            cell.with_acks(|a| a.iter().filter(|a| a.term == term).copied().collect())
        };
        assert_eq!(
            acks(5),
            [
                StoreAck {
                    store_id: 2,
                    term: 5,
                    confirmed: 3,
                    refused: 0
                },
                StoreAck {
                    store_id: 3,
                    term: 5,
                    confirmed: 1,
                    refused: 4
                }
            ]
        );
        // A newer term replaces a store's answers; an older one is ignored.
        leader.on_response(2, &answer(7, 6, true), |_| {});
        leader.on_response(2, &answer(8, 5, true), |_| {});
        assert_eq!(acks(5).len(), 1);
        assert_eq!(acks(6)[0].confirmed, 7);
        // Answers about a region this store has no cell for are ignored.
        let mut other = answer(9, 5, true);
        other.mut_answers()[0].set_region_id(42);
        leader.on_response(2, &other, |r| panic!("woke region {r}"));
    }

    #[test]
    fn a_round_sends_one_check_per_store_and_numbers_rounds_in_order() {
        let checks = LeaderChecks::default();
        let mut rc = RoundChecks::default();
        assert!(rc.take_messages(1, &checks).is_empty());
        let id = rc.id(&checks);
        assert_eq!(rc.id(&checks), id, "one id per round");
        rc.add(2, 1, 5, 11, 12);
        rc.add(3, 1, 5, 11, 13);
        rc.add(2, 7, 3, 71, 72);
        let msgs = rc.take_messages(1, &checks);
        assert_eq!(msgs.len(), 2);
        for m in &msgs {
            let to = m.get_to_peer().get_store_id();
            let check = validate_request(m, to).unwrap();
            assert_eq!(check.get_id(), id);
            assert_eq!(check.get_regions().len(), if to == 2 { 2 } else { 1 });
        }
        assert!(rc.id(&checks) > id);
        assert_eq!(checks.stats().messages_sent, 2);
    }

    #[test]
    fn malformed_checks_are_refused_with_an_error() {
        let good = request(1, 2, vec![region(1, 5, 11, 12)]);
        assert!(validate_request(&good, 2).is_ok());
        assert_eq!(validate_request(&good, 3), Err(CheckError::Stores));
        assert_eq!(validate_response(&good, 2).err(), Some(CheckError::Body));
        let broken = |f: &dyn Fn(&mut RaftMessage)| {
            let mut m = good.clone();
            f(&mut m);
            validate_request(&m, 0).err()
        };
        assert_eq!(broken(&|m| m.set_region_id(1)), Some(CheckError::Envelope));
        assert_eq!(
            broken(&|m| m.mut_from_peer().set_id(5)),
            Some(CheckError::Envelope)
        );
        assert_eq!(
            broken(&|m| m.mut_message().set_term(1)),
            Some(CheckError::Envelope)
        );
        assert_eq!(
            broken(&|m| m.set_start_key(b"k".to_vec())),
            Some(CheckError::Envelope)
        );
        assert_eq!(
            broken(&|m| m.mut_from_peer().set_store_id(0)),
            Some(CheckError::Stores)
        );
        assert_eq!(
            broken(&|m| m.mut_from_peer().set_store_id(2)),
            Some(CheckError::Stores)
        );
        assert_eq!(broken(&|m| m.clear_leader_check()), Some(CheckError::Body));
        assert_eq!(
            broken(&|m| m.set_leader_check_response(LeaderCheckResponse::default())),
            Some(CheckError::Body)
        );
        assert_eq!(
            broken(&|m| m.mut_leader_check().set_id(0)),
            Some(CheckError::ZeroId)
        );
        for field in 0..5 {
            let bad = broken(&|m| {
                let r = &mut m.mut_leader_check().mut_regions()[0];
                match field {
                    0 => r.set_region_id(0),
                    1 => r.set_term(0),
                    2 => r.set_leader_peer_id(0),
                    3 => r.set_peer_id(0),
                    _ => r.set_peer_id(r.get_leader_peer_id()),
                }
            });
            assert_eq!(bad, Some(CheckError::Region), "field {field}");
        }

        let checks = follower_store();
        let resp = response_message(2, 1, checks.answer(validate_request(&good, 2).unwrap()));
        assert!(validate_response(&resp, 1).is_ok());
        assert_eq!(validate_request(&resp, 1).err(), Some(CheckError::Body));
        let broken = |f: &dyn Fn(&mut RaftMessage)| {
            let mut m = resp.clone();
            f(&mut m);
            validate_response(&m, 1).err()
        };
        assert_eq!(
            broken(&|m| m.mut_leader_check_response().set_id(0)),
            Some(CheckError::ZeroId)
        );
        assert_eq!(
            broken(&|m| m.mut_leader_check_response().mut_answers()[0].set_term(0)),
            Some(CheckError::Region)
        );
        assert_eq!(
            broken(&|m| m.mut_leader_check_response().mut_answers()[0].set_region_id(0)),
            Some(CheckError::Region)
        );
        assert_eq!(
            broken(&|m| m.set_extra(ExtraMessageType::WakeUp)),
            Some(CheckError::Body)
        );
    }
}
