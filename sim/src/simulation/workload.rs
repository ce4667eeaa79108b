//! The workload: clients issuing puts, gets and deletes through the
//! shipped client's call machine, and the final reads.
//!
//! Each logical operation is one [`client::Call`], the same state machine
//! the shipped blocking `Client` drives: routing, leader hints, region
//! refreshes, backoffs, retries after timeouts and after unknown outcomes,
//! all the client crate's decisions. The simulation is only its driver: it
//! sends each `Step::Send` to the store's router, reports the answer (or
//! the attempt's timeout) back, and wakes the call after each
//! `Step::Wait` (simulated time units taken as milliseconds). Writes carry
//! a client session (client id + sequence, like `Client`), unless the
//! config turns sessions off; reads ask for a read mode drawn from the
//! config's list.
//!
//! One history operation per call: invoked when the call starts, complete
//! when it is done. A call that ends in an error is "failed" (no effect)
//! only if no attempt could have run; once an attempt timed out or got an
//! unknown answer, the operation is unknown (it may take effect late).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use batch_system::mpsc::TrySendError;
use client::{Call, ClientError, ClientOptions, ErrorClass, LeaderCache, Routing, Step};
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdResponse, Response};
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

/// Simulated time as the client core's time (one unit = one millisecond).
fn units(t: u64) -> Duration {
    Duration::from_millis(t)
}

/// The operation a client is running.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) op: usize,
    call: Call,
    /// The attempt waiting for an answer (none while backing off).
    attempt: Option<u32>,
    /// The store that attempt went to.
    store: u64,
    /// Some attempt may have run (it timed out or got an unknown answer).
    maybe_applied: bool,
}

#[derive(Debug, Default)]
pub(super) struct ClientState {
    pub(super) current: Option<InFlight>,
    /// The store believed to lead each region.
    pub(super) leaders: LeaderCache,
    /// The session sequence of the client's last write.
    sequence: u64,
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

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            timeout: units(self.cfg.op_deadline),
            attempt_timeout: units(self.cfg.attempt_timeout),
            initial_backoff: units(5),
            max_backoff: units(40),
            sessions: self.cfg.sessions,
        }
    }

    /// Runs `f` on `client`'s routing (the shared region cache and the
    /// client's leader cache) and puts both back.
    fn with_routing<R>(
        &mut self,
        client: usize,
        f: impl FnOnce(&mut Routing, &mut Call) -> R,
    ) -> Option<R> {
        let state = self.clients.get_mut(client)?;
        let mut flight = state.current.take()?;
        let mut routing = Routing::with_leaders(
            std::mem::take(&mut self.regions),
            std::mem::take(&mut state.leaders),
        );
        let out = f(&mut routing, &mut flight.call);
        let (regions, leaders) = routing.into_parts();
        self.regions = regions;
        state.leaders = leaders;
        state.current = Some(flight);
        Some(out)
    }

    pub(super) fn client_wake(&mut self, client: usize) {
        if self
            .clients
            .get(client)
            .map_or(true, |c| c.current.is_some())
        {
            return;
        }
        let (key, command) = match self.phase {
            Phase::Workload => {
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
                (key, command)
            }
            Phase::FinalReads => match self.final_queue.pop_front() {
                Some(key) => (key, Command::Get),
                None => return,
            },
            Phase::Settling | Phase::Done => return,
        };
        let Some(k) = self.keys.get(key).cloned() else {
            return;
        };
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
            attempts: 0,
        });
        let request = match command {
            Command::Put(v) => client::put_request(k.clone(), encode_value(v)),
            Command::Delete => client::delete_request(k.clone()),
            Command::Get => client::get_request(k.clone()),
        };
        let opts = self.client_options();
        let mut call = Call::new(k, request, units(self.now), &opts);
        if command == Command::Get {
            // The final reads go through the log: they judge the replicas.
            let mode = if self.phase == Phase::FinalReads || self.cfg.read_modes.is_empty() {
                client::ReadMode::Log
            } else {
                self.cfg.read_modes[self.rng.gen_range(0..self.cfg.read_modes.len())]
            };
            let spread = self.rng.gen_range(0..self.cfg.stores as usize);
            let counted = match mode {
                client::ReadMode::Log => &mut self.stats.gets_log,
                client::ReadMode::ReadIndex => &mut self.stats.gets_read_index,
                client::ReadMode::Lease => &mut self.stats.gets_lease,
                client::ReadMode::Follower => &mut self.stats.gets_follower,
            };
            *counted += 1;
            call = call.with_read_mode(mode, spread);
        } else if self.cfg.sessions {
            let state = &mut self.clients[client];
            state.sequence += 1;
            call = call.with_session(client as u64 + 1, state.sequence);
        }
        self.clients[client].current = Some(InFlight {
            op: id,
            call,
            attempt: None,
            store: 0,
            maybe_applied: false,
        });
        let now = units(self.now);
        if let Some(step) = self.with_routing(client, |r, c| c.start(r, now)) {
            self.drive(client, step);
        }
    }

    /// A backoff ended: the call's next attempt.
    pub(super) fn call_wake(&mut self, client: usize, op: usize) {
        let waiting = self
            .clients
            .get(client)
            .and_then(|c| c.current.as_ref())
            .is_some_and(|f| f.op == op && f.attempt.is_none());
        if !waiting {
            return;
        }
        let now = units(self.now);
        if let Some(step) = self.with_routing(client, |r, c| c.on_wake(r, now)) {
            self.drive(client, step);
        }
    }

    /// The attempt got no answer in time: it may still run; the call
    /// retries.
    pub(super) fn attempt_timeout(&mut self, client: usize, op: usize, attempt: u32) {
        let Some(flight) = self
            .clients
            .get_mut(client)
            .and_then(|c| c.current.as_mut())
        else {
            return;
        };
        if flight.op != op || flight.attempt != Some(attempt) {
            return;
        }
        flight.maybe_applied = true;
        flight.attempt = None;
        self.stats.attempts_unknown += 1;
        let now = units(self.now);
        let step = self.with_routing(client, |r, c| c.on_timeout(r, attempt as usize, now));
        if let Some(Some(step)) = step {
            self.drive(client, step);
        }
    }

    /// Carries out what the call asks for next.
    fn drive(&mut self, client: usize, step: Step) {
        match step {
            Step::Send {
                attempt,
                store_id,
                command,
            } => self.send_attempt(client, attempt as u32, store_id, command),
            Step::Wait { until } => {
                let Some(op) = self.clients[client].current.as_ref().map(|f| f.op) else {
                    return;
                };
                let at = (until.as_millis() as u64).max(self.now + 1);
                self.schedule(at, Event::CallWake { client, op });
            }
            Step::Done(result) => self.finish_call(client, result),
        }
    }

    fn send_attempt(
        &mut self,
        client: usize,
        attempt: u32,
        store: u64,
        req: kvproto_lite::raft_cmdpb::RaftCmdRequest,
    ) {
        let Some(flight) = self
            .clients
            .get_mut(client)
            .and_then(|c| c.current.as_mut())
        else {
            return;
        };
        flight.attempt = Some(attempt);
        flight.store = store;
        let op = flight.op;
        if let Some(record) = self.history.get_mut(op) {
            record.attempts = attempt;
        }
        self.stats.attempts += 1;
        let region_id = req.get_header().get_region_id();
        if self.verbose {
            let h = req.get_header();
            self.trace(&format!(
                "client {client} op {op} attempt {attempt} -> store {store} region {region_id} \
                 {:?} session {}/{}",
                h.get_read_mode(),
                h.get_client_id(),
                h.get_sequence()
            ));
        }
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
        let Some(router) = self.router_of(store) else {
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

    pub(super) fn on_response(&mut self, c: Completion) {
        let Some(flight) = self
            .clients
            .get_mut(c.client)
            .and_then(|s| s.current.as_mut())
        else {
            return;
        };
        if flight.op != c.op || flight.attempt != Some(c.attempt) {
            return; // a late answer to an attempt already given up on
        }
        let store = flight.store;
        let err = c.resp.get_header().get_error();
        if c.resp.get_header().has_error() && client::classify(err) == ErrorClass::Unknown {
            flight.maybe_applied = true;
            self.stats.attempts_unknown += 1;
        }
        flight.attempt = None;
        let epoch_changed = err.has_epoch_not_match();
        let now = units(self.now);
        let step = self.with_routing(c.client, |r, call| {
            call.on_response(r, c.attempt as usize, &c.resp, now)
        });
        if epoch_changed {
            // The answer lists the split-off regions only while the peer
            // remembers them (not after a restart): like a client asking a
            // placement service, refresh the layout from that store's
            // region metadata.
            self.refresh_regions_from(store);
        }
        if let Some(Some(step)) = step {
            self.drive(c.client, step);
        }
    }

    fn finish_call(&mut self, client: usize, result: client::Result<Response>) {
        let Some(flight) = self.clients.get(client).and_then(|c| c.current.as_ref()) else {
            return;
        };
        let (op, maybe_applied) = (flight.op, flight.maybe_applied);
        let Some(command) = self.history.get(op).map(|o| o.command) else {
            return;
        };
        let outcome = match result {
            Ok(resp) => match command {
                Command::Put(_) | Command::Delete => Outcome::Written,
                Command::Get => {
                    if resp.get_cmd_type() != CmdType::Get {
                        self.failure = Some(Failure::MalformedResponse {
                            detail: format!("get op {op} answered {resp:?}"),
                        });
                        return;
                    }
                    let g = resp.get_get();
                    if g.get_not_found() {
                        Outcome::Read(None)
                    } else {
                        // A value no put wrote reads as u64::MAX, which the
                        // checker reports as never written.
                        Outcome::Read(Some(decode_value(g.get_value()).unwrap_or(u64::MAX)))
                    }
                }
            },
            Err(e @ ClientError::Timeout { .. }) if command != Command::Get => {
                Outcome::Unknown(e.to_string())
            }
            Err(e) if maybe_applied => Outcome::Unknown(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.finish_op(client, outcome);
    }

    pub(super) fn finish_op(&mut self, client: usize, outcome: Outcome) {
        let Some(_flight) = self.clients.get_mut(client).and_then(|c| c.current.take()) else {
            return;
        };
        let op_id = _flight.op;
        let complete = match outcome {
            Outcome::Unknown(_) => None,
            _ => Some(self.stamp()),
        };
        let now = self.now;
        let Some(op) = self.history.get_mut(op_id) else {
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
        let pause = self.rng.gen_range(1..=self.cfg.max_think_time.max(1));
        self.schedule(now + pause, Event::ClientWake { client });
    }
}
