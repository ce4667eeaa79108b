//! `Call`: one client operation with its retries, as a state machine that
//! does no I/O and reads no clock.
//!
//! ```text
//!             start / on_wake
//!                   |
//!                   v
//!   +-------> route the key ----- no region ------------> Done(Err)
//!   |               |             deadline passed -------> Done(Err(Timeout))
//!   |               v
//!   |          Send { attempt, store, command }
//!   |               |
//!   |   on_response / on_timeout / on_unreachable (the driver's report)
//!   |               |
//!   |   success ----+--------------------------------------> Done(Ok)
//!   |   KeyNotInRegion, RaftEntryTooLarge ----------------> Done(Err(Store))
//!   +-- NotLeader with a hint, EpochNotMatch, a timeout
//!       busy, stale, no leader, unknown outcome, unreachable --> Wait { until }
//!                                              (backoff, cut to the deadline; then
//!                                               on_wake; no time left: Done(Timeout))
//! ```
//!
//! A driver sends each `Send` with its transport, reports what came back,
//! sleeps (or schedules a wake-up) until each `Wait`, and stops at `Done`.
//! The blocking [`Client`](crate::Client) is such a driver; an async one or
//! a simulation can drive the same machine with their own time and I/O.
//! An untyped error (outcome unknown) and a timeout are retried like a
//! refusal. That is safe because a write carries a client session
//! ([`Call::with_session`]): every attempt repeats the same client id and
//! sequence, and the store runs the command at most once, answering a
//! repeat with the saved response. Without a session a retried write can
//! apply twice (a put v1 applied again after a later v2).

use std::time::Duration;

use kvproto_lite::raft_cmdpb::{
    CmdType, RaftCmdRequest, RaftCmdResponse, ReadMode, Request, Response,
};

use crate::backend::BackendError;
use crate::backoff::{Backoff, Deadline};
use crate::classify::ErrorClass;
use crate::error::{ClientError, Result};
use crate::options::ClientOptions;
use crate::routing::{Route, RouteError, Routing, Verdict};
use crate::session::Session;

/// What the driver of a [`Call`] does next.
#[derive(Debug)]
pub enum Step {
    /// Send `command` to store `store_id` and report the outcome with
    /// [`Call::on_response`], [`Call::on_timeout`] or
    /// [`Call::on_unreachable`], naming `attempt`.
    Send {
        /// Number of this attempt (1 for the first).
        attempt: usize,
        /// The store to send to.
        store_id: u64,
        /// The command.
        command: RaftCmdRequest,
    },
    /// Wait until `until` (driver time), then call [`Call::on_wake`].
    Wait {
        /// When to try again.
        until: Duration,
    },
    /// The operation finished.
    Done(Result<Response>),
}

/// One key-value operation on one key, retried until it succeeds, fails for
/// good or runs out of time.
///
/// # Examples
///
/// Driving a call by hand against a store that first refuses, then answers:
///
/// ```
/// use std::time::Duration;
/// use client::{put_request, Call, ClientOptions, RegionCache, Routing, Step};
/// use kvproto_lite::metapb::Region;
/// use kvproto_lite::raft_cmdpb::{RaftCmdResponse, Response};
/// use kvproto_lite::util;
///
/// let mut region = Region::default();
/// region.set_id(1);
/// region.mut_peers().push(Default::default());
/// region.mut_peers()[0].set_store_id(1);
/// let mut routing = Routing::new(RegionCache::new(vec![region]));
/// let opts = ClientOptions::default();
/// let now = Duration::ZERO;
/// let mut call = Call::new(b"k".to_vec(), put_request(b"k".to_vec(), b"v".to_vec()), now, &opts);
///
/// let Step::Send { attempt, store_id, .. } = call.start(&mut routing, now) else { panic!() };
/// assert_eq!(store_id, 1);
/// let busy = util::error_response(util::new_server_is_busy("full"), 0);
/// let Some(Step::Wait { until }) = call.on_response(&mut routing, attempt, &busy, now) else { panic!() };
/// assert_eq!(until, opts.initial_backoff);
///
/// let Step::Send { attempt, .. } = call.on_wake(&mut routing, until) else { panic!() };
/// let mut ok = RaftCmdResponse::default();
/// ok.mut_responses().push(Response::default());
/// let Some(Step::Done(result)) = call.on_response(&mut routing, attempt, &ok, until) else { panic!() };
/// assert!(result.is_ok());
/// ```
#[derive(Debug)]
pub struct Call {
    key: Vec<u8>,
    request: Request,
    deadline: Deadline,
    backoff: Backoff,
    attempts: usize,
    in_flight: Option<Route>,
    last_error: String,
    session: Option<(u64, u64)>,
    read_mode: ReadMode,
    /// Follower reads: which peer the first attempt goes to.
    spread: usize,
}

impl Call {
    /// An operation on `key` carrying `request`, started at `now`, with the
    /// deadline and backoff of `opts`.
    pub fn new(key: Vec<u8>, request: Request, now: Duration, opts: &ClientOptions) -> Call {
        Call {
            key,
            request,
            deadline: opts.deadline(now),
            backoff: opts.backoff(),
            attempts: 0,
            in_flight: None,
            last_error: String::from("none"),
            session: None,
            read_mode: ReadMode::Log,
            spread: 0,
        }
    }

    /// The call every driver makes for `request` on `key`: a Get is served
    /// as `mode` says (a `Follower` read starts at peer `spread`, see
    /// [`Call::with_read_mode`]); any other request is a write and, when
    /// `opts.sessions` is on, carries `session`'s next sequence number (see
    /// [`Call::with_session`]). `session` must not be numbering another
    /// write in flight.
    pub fn for_request(
        key: Vec<u8>,
        request: Request,
        mode: ReadMode,
        spread: usize,
        session: &mut Session,
        now: Duration,
        opts: &ClientOptions,
    ) -> Call {
        let is_read = request.get_cmd_type() == CmdType::Get;
        let call = Call::new(key, request, now, opts);
        if is_read {
            call.with_read_mode(mode, spread)
        } else if opts.sessions {
            let sequence = session.next_sequence();
            call.with_session(session.client_id(), sequence)
        } else {
            call
        }
    }

    /// Makes every attempt carry client `client_id`'s session sequence
    /// `sequence`, so the store runs the command at most once however many
    /// attempts reach it.
    pub fn with_session(mut self, client_id: u64, sequence: u64) -> Call {
        self.session = Some((client_id, sequence));
        self
    }

    /// Makes every attempt ask for `mode` (meaningful for reads only). A
    /// `Follower` read goes to any peer of the region, starting with peer
    /// `spread` (modulo the peer count) and moving on with each retry.
    pub fn with_read_mode(mut self, mode: ReadMode, spread: usize) -> Call {
        self.read_mode = mode;
        self.spread = spread;
        self
    }

    /// Attempts sent so far.
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// The first step.
    pub fn start(&mut self, routing: &mut Routing, now: Duration) -> Step {
        self.attempt(routing, now)
    }

    /// The next attempt after a [`Step::Wait`].
    pub fn on_wake(&mut self, routing: &mut Routing, now: Duration) -> Step {
        self.attempt(routing, now)
    }

    /// The answer to attempt `attempt`. `None` if that attempt is no longer
    /// in flight (a late answer after a timeout): ignore it.
    pub fn on_response(
        &mut self,
        routing: &mut Routing,
        attempt: usize,
        resp: &RaftCmdResponse,
        now: Duration,
    ) -> Option<Step> {
        let route = self.take_in_flight(attempt)?;
        let verdict = if self.read_mode == ReadMode::Follower && !resp.get_header().has_error() {
            // Any peer answers a follower read: it says nothing of the
            // leader.
            Verdict::Succeeded
        } else {
            routing.learn(&route, resp)
        };
        Some(match verdict {
            Verdict::Succeeded => {
                let mut responses = resp.get_responses().to_vec();
                let result = responses.pop().ok_or_else(|| {
                    ClientError::Malformed("no response in a successful reply".to_owned())
                });
                Step::Done(result)
            }
            Verdict::Error(class) => {
                let err = resp.get_header().get_error();
                self.last_error = format!("{err:?}");
                match class {
                    ErrorClass::RetryNow => self.attempt(routing, now),
                    ErrorClass::RetryLater | ErrorClass::Unknown => self.wait(now),
                    ErrorClass::Fail => Step::Done(Err(ClientError::Store(err.clone()))),
                }
            }
        })
    }

    /// Attempt `attempt` got no answer in time: the leader is forgotten and
    /// the next attempt goes out at once. `None` if that attempt is no
    /// longer in flight.
    pub fn on_timeout(
        &mut self,
        routing: &mut Routing,
        attempt: usize,
        now: Duration,
    ) -> Option<Step> {
        let route = self.take_in_flight(attempt)?;
        routing.forget_leader(route.region_id());
        self.last_error = "attempt timed out".to_owned();
        Some(self.attempt(routing, now))
    }

    /// Attempt `attempt` could not be sent (`why`): the leader is forgotten
    /// and the next attempt waits for a backoff. `None` if that attempt is
    /// no longer in flight.
    pub fn on_unreachable(
        &mut self,
        routing: &mut Routing,
        attempt: usize,
        why: &str,
        now: Duration,
    ) -> Option<Step> {
        let route = self.take_in_flight(attempt)?;
        routing.forget_leader(route.region_id());
        self.last_error = why.to_owned();
        Some(self.wait(now))
    }

    /// The outcome of attempt `attempt` as a backend reports it, handed to
    /// [`Call::on_response`], [`Call::on_timeout`] or
    /// [`Call::on_unreachable`]; if that attempt is no longer in flight (a
    /// late answer), the next attempt is made as after a wait. What a
    /// driver that waits for every answer calls.
    pub fn on_answer(
        &mut self,
        routing: &mut Routing,
        attempt: usize,
        answer: std::result::Result<RaftCmdResponse, BackendError>,
        now: Duration,
    ) -> Step {
        let next = match answer {
            Ok(resp) => self.on_response(routing, attempt, &resp, now),
            Err(BackendError::Timeout) => self.on_timeout(routing, attempt, now),
            Err(BackendError::Unreachable(why)) => self.on_unreachable(routing, attempt, &why, now),
        };
        next.unwrap_or_else(|| self.on_wake(routing, now))
    }

    fn take_in_flight(&mut self, attempt: usize) -> Option<Route> {
        if attempt != self.attempts {
            return None;
        }
        self.in_flight.take()
    }

    fn wait(&mut self, now: Duration) -> Step {
        let remaining = self.deadline.remaining(now);
        if remaining.is_zero() {
            // No time left for a backoff and another attempt.
            return self.timed_out();
        }
        let delay = self.backoff.next_delay().min(remaining);
        Step::Wait { until: now + delay }
    }

    fn timed_out(&mut self) -> Step {
        Step::Done(Err(ClientError::Timeout {
            attempts: self.attempts,
            last_error: std::mem::take(&mut self.last_error),
        }))
    }

    fn attempt(&mut self, routing: &mut Routing, now: Duration) -> Step {
        loop {
            if self.deadline.expired(now) {
                return self.timed_out();
            }
            let attempts = self.attempts;
            let routed = if self.read_mode == ReadMode::Follower {
                let spread = self.spread;
                routing.route_any_peer(&self.key, |n| (spread + attempts) % n)
            } else {
                routing.route(&self.key, |n| attempts % n)
            };
            match routed {
                Ok(route) => {
                    self.attempts += 1;
                    let mut command = route.command(self.request.clone());
                    if let Some((client_id, sequence)) = self.session {
                        command.mut_header().set_client_id(client_id);
                        command.mut_header().set_sequence(sequence);
                    }
                    if self.read_mode != ReadMode::Log {
                        command.mut_header().set_read_mode(self.read_mode);
                    }
                    let store_id = route.store_id();
                    self.in_flight = Some(route);
                    return Step::Send {
                        attempt: self.attempts,
                        store_id,
                        command,
                    };
                }
                Err(e @ RouteError::NoPeerOnStore { .. }) => {
                    // The stale leader entry is gone: route again.
                    self.last_error = e.to_string();
                }
                Err(RouteError::NoRegion | RouteError::NoPeers(_)) => {
                    return Step::Done(Err(ClientError::NoRegion(self.key.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region_cache::RegionCache;
    use crate::request::get_request;
    use kvproto_lite::metapb::{Peer, Region};
    use kvproto_lite::util;

    fn routing() -> Routing {
        let mut region = Region::default();
        region.set_id(1);
        for s in 1..=3 {
            let mut p = Peer::default();
            p.set_id(10 + s);
            p.set_store_id(s);
            region.mut_peers().push(p);
        }
        Routing::new(RegionCache::new(vec![region]))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn opts() -> ClientOptions {
        ClientOptions {
            timeout: ms(100),
            attempt_timeout: ms(10),
            initial_backoff: ms(5),
            max_backoff: ms(20),
            sessions: true,
        }
    }

    fn send(step: Step) -> (usize, u64) {
        match step {
            Step::Send {
                attempt, store_id, ..
            } => (attempt, store_id),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    #[test]
    fn a_leader_hint_is_followed_at_once() {
        let mut r = routing();
        let mut call = Call::new(b"k".to_vec(), get_request(b"k".to_vec()), ms(0), &opts());
        let (a, store) = send(call.start(&mut r, ms(0)));
        assert_eq!(store, 1);
        let mut leader = Peer::default();
        leader.set_id(13);
        leader.set_store_id(3);
        let resp = util::error_response(util::new_not_leader(1, Some(leader)), 2);
        let (a2, store) = send(call.on_response(&mut r, a, &resp, ms(1)).unwrap());
        assert_eq!((a2, store), (2, 3));
    }

    #[test]
    fn busy_answers_back_off_exponentially_until_the_deadline() {
        let mut r = routing();
        let mut call = Call::new(b"k".to_vec(), get_request(b"k".to_vec()), ms(0), &opts());
        let busy = util::error_response(util::new_server_is_busy("full"), 0);
        let mut now = ms(0);
        let mut step = call.start(&mut r, now);
        let mut waits = Vec::new();
        loop {
            match step {
                Step::Send { attempt, .. } => {
                    step = call.on_response(&mut r, attempt, &busy, now).unwrap();
                }
                Step::Wait { until } => {
                    waits.push((until - now).as_millis());
                    now = until;
                    step = call.on_wake(&mut r, now);
                }
                Step::Done(result) => {
                    assert!(matches!(result, Err(ClientError::Timeout { .. })));
                    break;
                }
            }
        }
        assert_eq!(&waits[..4], &[5, 10, 20, 20]);
        // The last wait is cut to the deadline, then one more attempt.
        assert_eq!(waits.iter().sum::<u128>(), 100);
        assert!(now <= ms(101));
    }

    #[test]
    fn a_late_answer_is_ignored_and_a_timeout_retries_elsewhere() {
        let mut r = routing();
        let mut call = Call::new(b"k".to_vec(), get_request(b"k".to_vec()), ms(0), &opts());
        let (a1, s1) = send(call.start(&mut r, ms(0)));
        let (a2, s2) = send(call.on_timeout(&mut r, a1, ms(10)).unwrap());
        assert_ne!(s1, s2, "round robin moves on");
        let ok = {
            let mut resp = RaftCmdResponse::default();
            resp.mut_responses().push(Response::default());
            resp
        };
        assert!(call.on_response(&mut r, a1, &ok, ms(11)).is_none());
        assert!(matches!(
            call.on_response(&mut r, a2, &ok, ms(12)),
            Some(Step::Done(Ok(_)))
        ));
        assert_eq!(r.leaders().get(1), Some(s2));
    }

    #[test]
    fn every_attempt_of_a_session_call_repeats_its_client_id_and_sequence() {
        let mut r = routing();
        let req = crate::put_request(b"k".to_vec(), b"v".to_vec());
        let mut call = Call::new(b"k".to_vec(), req, ms(0), &opts()).with_session(42, 7);
        let mut step = call.start(&mut r, ms(0));
        for i in 0..3u64 {
            let Step::Send {
                attempt, command, ..
            } = step
            else {
                panic!("expected a send, got {step:?}");
            };
            assert_eq!(command.get_header().get_client_id(), 42);
            assert_eq!(command.get_header().get_sequence(), 7);
            let unknown = util::error_response(util::new_error("outcome unknown"), 1);
            let now = ms(10 * (i + 1));
            step = match call.on_response(&mut r, attempt, &unknown, now) {
                Some(Step::Wait { until }) => call.on_wake(&mut r, until),
                other => panic!("an unknown outcome is retried, got {other:?}"),
            };
        }
    }

    #[test]
    fn writes_number_their_session_and_reads_leave_it_alone() {
        let mut r = routing();
        let mut session = Session::new(9);
        let put = crate::put_request(b"k".to_vec(), b"v".to_vec());
        let mut sequences = Vec::new();
        for _ in 0..2 {
            let mut call = Call::for_request(
                b"k".to_vec(),
                put.clone(),
                ReadMode::Lease,
                0,
                &mut session,
                ms(0),
                &opts(),
            );
            let Step::Send { command, .. } = call.start(&mut r, ms(0)) else {
                panic!("expected a send");
            };
            let h = command.get_header();
            assert_eq!(h.get_client_id(), 9);
            assert_eq!(
                h.get_read_mode(),
                ReadMode::Log,
                "writes go through the log"
            );
            sequences.push(h.get_sequence());
        }
        assert_eq!(sequences, [1, 2]);
        let mut call = Call::for_request(
            b"k".to_vec(),
            get_request(b"k".to_vec()),
            ReadMode::Lease,
            0,
            &mut session,
            ms(0),
            &opts(),
        );
        let Step::Send { command, .. } = call.start(&mut r, ms(0)) else {
            panic!("expected a send");
        };
        assert_eq!(command.get_header().get_client_id(), 0);
        assert_eq!(command.get_header().get_read_mode(), ReadMode::Lease);
        assert_eq!(session.sequence(), 2, "a read numbers nothing");
        let no_sessions = ClientOptions {
            sessions: false,
            ..opts()
        };
        let mut call = Call::for_request(
            b"k".to_vec(),
            put,
            ReadMode::Log,
            0,
            &mut session,
            ms(0),
            &no_sessions,
        );
        let Step::Send { command, .. } = call.start(&mut r, ms(0)) else {
            panic!("expected a send");
        };
        assert_eq!(command.get_header().get_client_id(), 0);
    }

    #[test]
    fn a_read_call_carries_its_read_mode_and_no_session() {
        let mut r = routing();
        let req = get_request(b"k".to_vec());
        let mut call =
            Call::new(b"k".to_vec(), req, ms(0), &opts()).with_read_mode(ReadMode::ReadIndex, 0);
        let Step::Send { command, .. } = call.start(&mut r, ms(0)) else {
            panic!("expected a send");
        };
        assert_eq!(command.get_header().get_read_mode(), ReadMode::ReadIndex);
        assert_eq!(command.get_header().get_client_id(), 0);
    }

    #[test]
    fn errors_that_retrying_cannot_fix_end_the_call() {
        let mut r = routing();
        let mut call = Call::new(b"k".to_vec(), get_request(b"k".to_vec()), ms(0), &opts());
        let (a, _) = send(call.start(&mut r, ms(0)));
        let region = r.regions().regions()[0].clone();
        let resp = util::error_response(util::new_key_not_in_region(b"k", &region), 1);
        assert!(matches!(
            call.on_response(&mut r, a, &resp, ms(1)),
            Some(Step::Done(Err(ClientError::Store(_))))
        ));
        let mut empty = Routing::new(RegionCache::new(Vec::new()));
        let mut call = Call::new(b"k".to_vec(), get_request(b"k".to_vec()), ms(0), &opts());
        assert!(matches!(
            call.start(&mut empty, ms(0)),
            Step::Done(Err(ClientError::NoRegion(_)))
        ));
    }
}
