//! Membership changes through a [`Backend`]: send a change to a region's
//! leader, wherever it is, retrying what is transient; and the workflow
//! that moves a replica from one store to another (how a dead store is
//! replaced).
//!
//! A membership change is not idempotent the way a Put is: sent again
//! after an unknown outcome it may be refused because it already happened.
//! So every attempt is *planned* from the region as the leader has it
//! now: a plan that finds nothing left to do ends the change successfully.

use std::time::{Duration, Instant};

use kvproto_lite::eraftpb::ConfChangeType;
use kvproto_lite::metapb::{Peer, PeerRole, Region};
use kvproto_lite::raft_cmdpb::{ChangePeerRequest, RaftCmdResponse};
use kvproto_lite::util;

use crate::backend::{Backend, BackendError};
use crate::backoff::Backoff;
use crate::classify::{classify, ErrorClass};
use crate::error::{ClientError, Result};

/// Sends membership changes of regions to their leaders.
///
/// # Examples
///
/// Replacing the replica of region 1 on store 3 by one on store 4 (see
/// [`Membership::move_replica`]); `backend` reaches the stores:
///
/// ```no_run
/// # fn run(backend: &dyn client::Backend, region: kvproto_lite::metapb::Region) -> client::Result<()> {
/// use std::time::Duration;
///
/// let membership = client::Membership::new(backend, Duration::from_secs(2), Duration::from_secs(60));
/// let region = membership.move_replica(&region, 3, 4, 1_000_001)?;
/// assert!(region.get_peers().iter().all(|p| p.get_store_id() != 3));
/// # Ok(())
/// # }
/// ```
pub struct Membership<'a> {
    backend: &'a dyn Backend,
    attempt_timeout: Duration,
    deadline: Duration,
}

/// What a plan asks for, given the region as its leader has it.
pub enum Plan {
    /// Send these changes (one: `ChangePeer`; several: `ChangePeerV2`).
    Change(Vec<ChangePeerRequest>),
    /// Nothing (more) to do: the region is as wanted.
    Done,
}

impl<'a> Membership<'a> {
    /// Changes through `backend`; each attempt waits up to
    /// `attempt_timeout`, a whole change gives up after `deadline`.
    pub fn new(backend: &'a dyn Backend, attempt_timeout: Duration, deadline: Duration) -> Self {
        Membership {
            backend,
            attempt_timeout,
            deadline,
        }
    }

    /// Applies what `plan` asks for to the region `known` (which may be
    /// stale: the current region is learned from the leader's answers and
    /// planned again). Returns the region once the plan says
    /// [`Plan::Done`].
    ///
    /// Retried: a leader elsewhere (`NotLeader`), a stale epoch
    /// (`EpochNotMatch`, planned again), another change still pending or a
    /// joint configuration not left yet (`ServerIsBusy`), unreachable
    /// stores and timeouts (planned again, so a change that did happen is
    /// not repeated).
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] for a refusal that retrying cannot fix (the
    /// change is invalid), [`ClientError::Timeout`] after the deadline.
    pub fn change(&self, known: &Region, mut plan: impl FnMut(&Region) -> Plan) -> Result<Region> {
        let started = Instant::now();
        let mut region = known.clone();
        let mut backoff = fresh_backoff();
        let mut attempts = 0usize;
        let mut last_error = String::from("no attempt made");
        // The store to try next: the last known leader, else each peer's.
        let mut target = 0usize;
        let mut leader_hint: Option<u64> = None;
        let mut last_unknown = None;
        loop {
            if started.elapsed() >= self.deadline {
                return Err(ClientError::Timeout {
                    attempts,
                    last_error,
                });
            }
            let changes = match plan(&region) {
                Plan::Done => return Ok(region),
                Plan::Change(c) => c,
            };
            let stores: Vec<u64> = region
                .get_peers()
                .iter()
                .map(|p| p.get_store_id())
                .collect();
            if stores.is_empty() {
                return Err(ClientError::Malformed(format!(
                    "region {} has no peers",
                    region.get_id()
                )));
            }
            let store = leader_hint
                .take()
                .unwrap_or_else(|| stores[target % stores.len()]);
            let Some(peer) = util::find_peer(&region, store).cloned() else {
                target += 1;
                continue;
            };
            let cmd = util::new_change_peer_request(&region, peer, changes);
            attempts += 1;
            let resp = match self.backend.call(store, cmd, self.attempt_timeout) {
                Ok(resp) => resp,
                Err(e @ (BackendError::Unreachable(_) | BackendError::Timeout)) => {
                    last_error = format!("store {store}: {e}");
                    target += 1;
                    std::thread::sleep(backoff.next_delay());
                    continue;
                }
            };
            match answer(&resp) {
                Answer::Changed(r) => {
                    region = r;
                    backoff = fresh_backoff();
                    leader_hint = Some(store);
                }
                Answer::Refused(err) => {
                    last_error = format!("store {store}: {}", err.get_message());
                    if err.has_epoch_not_match() {
                        if let Some(r) = err
                            .get_epoch_not_match()
                            .get_current_regions()
                            .iter()
                            .find(|r| r.get_id() == region.get_id())
                        {
                            region = r.clone();
                        }
                        leader_hint = Some(store);
                        continue;
                    }
                    match classify(&err) {
                        ErrorClass::RetryNow => {
                            leader_hint = Some(err.get_not_leader().get_leader().get_store_id());
                        }
                        ErrorClass::RetryLater => {
                            if err.has_not_leader() {
                                target += 1;
                            } else {
                                leader_hint = Some(store);
                            }
                            std::thread::sleep(backoff.next_delay());
                        }
                        ErrorClass::Fail => return Err(ClientError::Store(err)),
                        // Untyped: a refusal of the change itself (invalid,
                        // or against raft's rules) or an unknown outcome.
                        // Plan again; the same answer twice for the same
                        // region epoch is a refusal, and final.
                        ErrorClass::Unknown => {
                            let seen = (
                                err.get_message().to_owned(),
                                region.get_region_epoch().clone(),
                            );
                            if last_unknown.as_ref() == Some(&seen) {
                                return Err(ClientError::Store(err));
                            }
                            last_unknown = Some(seen);
                            leader_hint = Some(store);
                            std::thread::sleep(backoff.next_delay());
                        }
                    }
                }
            }
        }
    }

    /// Moves the replica of `region` on `from_store` to `to_store`, as a
    /// new peer with id `new_peer_id`, in three changes that each keep a
    /// quorum without the old store (so it works when `from_store` is dead
    /// for good):
    ///
    /// 1. add the new peer as a learner (it is created on `to_store` by the
    ///    leader's first message and filled by a snapshot);
    /// 2. one joint change: promote the new peer, demote the old one;
    /// 3. remove the old peer (now a learner).
    ///
    /// The old peer must not be the leader (transfer leadership first).
    /// Each step is planned from the current region, so calling this again
    /// after an error continues where it stopped.
    ///
    /// # Errors
    ///
    /// As [`Membership::change`].
    pub fn move_replica(
        &self,
        region: &Region,
        from_store: u64,
        to_store: u64,
        new_peer_id: u64,
    ) -> Result<Region> {
        let mut new_peer = Peer::default();
        new_peer.set_id(new_peer_id);
        new_peer.set_store_id(to_store);
        let change = |t: ConfChangeType, p: &Peer| util::change_peer(t, p.clone());
        let region = self.change(region, |r| match util::find_peer(r, to_store) {
            Some(_) => Plan::Done,
            None => Plan::Change(vec![change(ConfChangeType::AddLearnerNode, &new_peer)]),
        })?;
        let region = self.change(&region, |r| {
            let new = util::find_peer(r, to_store).cloned();
            let old = util::find_peer(r, from_store).cloned();
            match (new, old) {
                (Some(n), Some(o)) if n.get_role() == PeerRole::Learner => {
                    if o.get_role() == PeerRole::Voter {
                        Plan::Change(vec![
                            change(ConfChangeType::AddNode, &n),
                            change(ConfChangeType::AddLearnerNode, &o),
                        ])
                    } else {
                        Plan::Change(vec![change(ConfChangeType::AddNode, &n)])
                    }
                }
                _ => Plan::Done,
            }
        })?;
        // Removing the old peer is refused (ServerIsBusy, retried) until
        // raft has left the joint configuration of step 2.
        self.change(&region, |r| match util::find_peer(r, from_store) {
            None => Plan::Done,
            Some(o) => Plan::Change(vec![change(ConfChangeType::RemoveNode, o)]),
        })
    }
}

/// The wait between attempts of one change: from 10 ms, doubling, at most
/// 500 ms.
fn fresh_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(10), Duration::from_millis(500))
}

enum Answer {
    Changed(Region),
    Refused(kvproto_lite::errorpb::Error),
}

fn answer(resp: &RaftCmdResponse) -> Answer {
    let header = resp.get_header();
    if header.has_error() {
        return Answer::Refused(header.get_error().clone());
    }
    let admin = resp.get_admin_response();
    let region = if admin.has_change_peer_v2() {
        admin.get_change_peer_v2().get_region()
    } else {
        admin.get_change_peer().get_region()
    };
    Answer::Changed(region.clone())
}
