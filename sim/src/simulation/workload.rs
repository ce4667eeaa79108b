//! The workload: clients issuing puts, gets and deletes, each attempt a
//! history operation, refused attempts retried as new operations until
//! `op_deadline`; and the final reads.
//!
//! Routing and the reading of answers are the client crate's core, the same
//! code the shipped `Client` runs: [`client::route`] picks the region and
//! store (a random peer while no leader is known), [`client::learn`]
//! updates the shared region cache and each client's leader cache and
//! classifies the answer; [`client::Backoff`] and [`client::Deadline`]
//! time the retries (simulated time units taken as milliseconds). What is
//! the simulation's own is the history model: every refused attempt is
//! recorded as failed and retried as a new operation (until `op_deadline`,
//! and not during the final reads), and an attempt with an unknown outcome
//! or no answer in time is recorded as unknown and not retried.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use batch_system::mpsc::TrySendError;
use client::{Backoff, Deadline, LeaderCache, Route, RouteError, Verdict};
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdResponse};
use kvproto_lite::util;
use protobuf::Message as _;
use raftstore::{Callback, RaftCommand};
use rand::Rng;

use super::event::{Event, Phase};
use super::Simulation;
use crate::history::{decode_value, encode_value, Command, Operation, Outcome};
use crate::report::Failure;

/// A response delivered to a client callback.
pub(super) struct Completion {
    pub(super) client: usize,
    pub(super) op: usize,
    pub(super) attempt: u32,
    pub(super) resp: RaftCmdResponse,
}

pub(super) type Completions = Arc<Mutex<Vec<Completion>>>;

/// Longest pause (time units) before a refused operation is retried; the
/// pause is drawn from `1..=` this.
const RETRY_BACKOFF: u64 = 20;

/// Simulated time as the client core's time (one unit = one millisecond).
fn units(t: u64) -> Duration {
    Duration::from_millis(t)
}

#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) op: usize,
    pub(super) attempt: u32,
    /// Waiting for a response (as opposed to backing off).
    pub(super) sent: bool,
    /// Where the attempt went (set when it is sent).
    pub(super) route: Option<Route>,
}

/// A logical operation whose attempt was refused: it is retried as a new
/// history operation (puts with a new value), so a refused attempt that
/// took effect after all shows up in the history.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retry {
    pub(super) key: usize,
    pub(super) command: Command,
    /// `op_deadline` after the logical operation started.
    pub(super) deadline: Deadline,
    /// The pause before the next retry.
    pub(super) backoff: Backoff,
    /// Attempts so far.
    pub(super) attempts: u32,
}

#[derive(Debug, Default)]
pub(super) struct ClientState {
    pub(super) current: Option<InFlight>,
    pub(super) retry: Option<Retry>,
    /// The store believed to lead each region.
    pub(super) leaders: LeaderCache,
}

impl Simulation {
    /// Hands every response the stores produced to its client, in (client,
    /// operation) order; clients may send new requests.
    pub(super) fn process_completions(&mut self) {
        self.learn_splits();
        loop {
            let mut done =
                std::mem::take(&mut *self.completions.lock().unwrap_or_else(|e| e.into_inner()));
            if done.is_empty() {
                return;
            }
            done.sort_by_key(|c| (c.client, c.op, c.attempt));
            for c in done {
                self.digest.write_u64(c.client as u64);
                self.digest.write_u64(c.op as u64);
                self.digest.write_u64(u64::from(c.attempt));
                if let Ok(bytes) = c.resp.write_to_bytes() {
                    self.digest.write(&bytes);
                }
                self.on_response(c);
            }
        }
    }

    pub(super) fn client_wake(&mut self, client: usize) {
        if self
            .clients
            .get(client)
            .map_or(true, |c| c.current.is_some())
        {
            return;
        }
        let retry = self.clients[client].retry.take();
        let (key, command, attempts) = match (self.phase, retry) {
            (Phase::Workload | Phase::Settling, Some(r)) => {
                let command = match r.command {
                    Command::Put(_) => {
                        let v = self.next_value;
                        self.next_value += 1;
                        Command::Put(v)
                    }
                    other => other,
                };
                self.clients[client].retry = Some(r);
                (r.key, command, r.attempts + 1)
            }
            (Phase::Workload, None) => {
                let key = self.rng.gen_range(0..self.keys.len());
                let roll = self.rng.gen_range(0..100);
                let command = if roll < 45 {
                    let v = self.next_value;
                    self.next_value += 1;
                    Command::Put(v)
                } else if roll < 85 {
                    Command::Get
                } else {
                    Command::Delete
                };
                let deadline = Deadline::new(units(self.now), units(self.cfg.op_deadline));
                let backoff = Backoff::new(units(RETRY_BACKOFF), units(RETRY_BACKOFF));
                self.clients[client].retry = Some(Retry {
                    key,
                    command,
                    deadline,
                    backoff,
                    attempts: 0,
                });
                (key, command, 1)
            }
            (Phase::FinalReads, _) => match self.final_queue.pop_front() {
                Some(key) => (key, Command::Get, 1),
                None => return,
            },
            (Phase::Settling, None) | (Phase::Done, _) => return,
        };
        if let Some(r) = self.clients[client].retry.as_mut() {
            r.attempts = attempts;
        }
        let id = self.history.len();
        let invoke = self.stamp();
        self.history.push(Operation {
            id: id as u64,
            client: client as u64,
            key,
            command,
            invoke,
            complete: None,
            outcome: Outcome::Pending,
            attempts,
        });
        self.clients[client].current = Some(InFlight {
            op: id,
            attempt: 0,
            sent: false,
            route: None,
        });
        self.send_attempt(client, id);
    }

    pub(super) fn send_attempt(&mut self, client: usize, op: usize) {
        let Some(c) = self.clients.get(client) else {
            return;
        };
        if !matches!(&c.current, Some(f) if f.op == op && !f.sent) {
            return;
        }
        let Some(record) = self.history.get(op) else {
            return;
        };
        let (key, command) = (record.key, record.command);
        let Some(k) = self.keys.get(key) else {
            self.finish_op(client, Outcome::Failed("no region for key".to_owned()));
            return;
        };
        let routed = client::route(&self.regions, &mut self.clients[client].leaders, k, |n| {
            self.rng.gen_range(0..n)
        });
        let route = match routed {
            Ok(route) => route,
            Err(RouteError::NoPeerOnStore { .. }) => {
                self.retry_later(client, "hinted store has no peer");
                return;
            }
            Err(RouteError::NoRegion | RouteError::NoPeers(_)) => {
                self.finish_op(client, Outcome::Failed("no region for key".to_owned()));
                return;
            }
        };
        let (store, region_id) = (route.store_id(), route.region_id());
        let request = match command {
            Command::Put(v) => client::put_request(k.clone(), encode_value(v)),
            Command::Delete => client::delete_request(k.clone()),
            Command::Get => client::get_request(k.clone()),
        };
        let req = route.command(request);
        let attempt = {
            let Some(f) = self.clients[client].current.as_mut() else {
                return;
            };
            f.attempt += 1;
            f.sent = true;
            f.route = Some(route);
            f.attempt
        };
        self.stats.attempts += 1;
        let sink = self.completions.clone();
        let cb = Callback::new(move |resp| {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Completion {
                    client,
                    op,
                    attempt,
                    resp,
                });
        });
        let timeout = self.cfg.attempt_timeout;
        self.schedule(
            self.now + timeout,
            Event::AttemptTimeout {
                client,
                op,
                attempt,
            },
        );
        let router = self.router_of(store);
        let Some(router) = router else {
            // The store is down: the connection is refused, nothing sent.
            cb.invoke_with_error(util::new_region_not_found(region_id), 0);
            return;
        };
        match router.send_raft_command(RaftCommand::new(req, cb)) {
            Ok(()) => self.wake(store, 0),
            Err(TrySendError::Full(cmd)) => cmd
                .callback
                .invoke_with_error(util::new_server_is_busy("mailbox full"), 0),
            Err(TrySendError::Disconnected(cmd)) => cmd
                .callback
                .invoke_with_error(util::new_region_not_found(region_id), 0),
        }
    }

    /// The attempt was refused (definitely not executed): the operation
    /// fails, and the client retries the same request as a new operation
    /// after a short backoff, until `op_deadline`.
    pub(super) fn retry_later(&mut self, client: usize, why: &str) {
        let now = units(self.now);
        let expired = self.clients[client]
            .retry
            .is_some_and(|r| r.deadline.expired(now));
        if expired || self.phase == Phase::FinalReads {
            self.clients[client].retry = None;
        }
        self.finish_op(client, Outcome::Failed(why.to_owned()));
    }

    pub(super) fn on_response(&mut self, c: Completion) {
        let current = self.clients.get(c.client).and_then(|s| s.current.as_ref());
        let Some(flight) = current else {
            return;
        };
        if flight.op != c.op || flight.attempt != c.attempt || !flight.sent {
            return; // a late answer to an attempt already given up on
        }
        let Some(route) = flight.route.clone() else {
            return;
        };
        let store = route.store_id();
        let verdict = client::learn(
            &mut self.regions,
            &mut self.clients[c.client].leaders,
            &route,
            &c.resp,
        );
        if verdict == Verdict::Succeeded {
            let command = self.history[c.op].command;
            let outcome = match command {
                Command::Put(_) | Command::Delete => Outcome::Written,
                Command::Get => match c.resp.get_responses().first() {
                    Some(r) if r.get_cmd_type() == CmdType::Get => {
                        let g = r.get_get();
                        if g.get_not_found() {
                            Outcome::Read(None)
                        } else {
                            // A value no put wrote reads as u64::MAX, which
                            // the checker reports as never written.
                            Outcome::Read(Some(decode_value(g.get_value()).unwrap_or(u64::MAX)))
                        }
                    }
                    _ => {
                        self.failure = Some(Failure::MalformedResponse {
                            detail: format!("get op {} answered {:?}", c.op, c.resp),
                        });
                        return;
                    }
                },
            };
            self.finish_op(c.client, outcome);
            return;
        }
        let err = c.resp.get_header().get_error();
        if verdict == Verdict::Error(client::ErrorClass::Unknown) {
            self.finish_op(
                c.client,
                Outcome::Unknown(format!("store {store}: {}", err.get_message())),
            );
            return;
        }
        if err.has_epoch_not_match() {
            // The answer lists the split-off regions only while the peer
            // remembers them (not after a restart): like a client asking a
            // placement service, refresh the layout from that store's
            // region metadata.
            self.refresh_regions_from(store);
        }
        let why = format!("store {store}: {}", err.get_message());
        self.retry_later(c.client, &why);
    }

    pub(super) fn finish_op(&mut self, client: usize, outcome: Outcome) {
        let Some(flight) = self.clients.get_mut(client).and_then(|c| c.current.take()) else {
            return;
        };
        if !matches!(outcome, Outcome::Failed(_)) {
            self.clients[client].retry = None;
        }
        let retry_pause = self.clients[client]
            .retry
            .as_mut()
            .map(|r| r.backoff.next_delay().as_millis() as u64);
        let complete = match outcome {
            Outcome::Unknown(_) => None,
            _ => Some(self.stamp()),
        };
        let now = self.now;
        let Some(op) = self.history.get_mut(flight.op) else {
            return;
        };
        op.complete = complete;
        op.outcome = outcome;
        match &op.outcome {
            Outcome::Written | Outcome::Read(_) => self.stats.ops_ok += 1,
            Outcome::Failed(_) => self.stats.ops_failed += 1,
            Outcome::Unknown(_) => self.stats.ops_unknown += 1,
            Outcome::Pending => {}
        }
        let line = op.to_string();
        let (key, read) = (op.key, op.outcome.clone());
        if self.phase == Phase::FinalReads {
            match read {
                Outcome::Read(v) => {
                    self.final_reads.insert(key, v);
                }
                _ => self.final_queue.push_back(key),
            }
            if self.final_reads.len() == self.keys.len() {
                // Let every replica catch up, then compare them.
                self.schedule(now + 300, Event::Converge);
            }
        }
        self.trace(&line);
        let pause = match retry_pause {
            Some(longest) => self.rng.gen_range(1..=longest.max(1)),
            None => self.rng.gen_range(1..=self.cfg.max_think_time.max(1)),
        };
        self.schedule(now + pause, Event::ClientWake { client });
    }
}
