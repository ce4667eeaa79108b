//! A generic actor-polling runtime: many finite state machines (FSMs), each
//! with a mailbox, driven in batches by a small pool of poller threads.
//!
//! Each FSM (a region's peer, say) owns the receiving half of its mailbox.
//! Sending to an idle FSM *notifies* it: the FSM is handed, exactly once, to
//! the pollers' queue. A poller takes up to `max_batch_size` notified FSMs,
//! lets a [`PollHandler`] process all of them, and calls
//! [`PollHandler::end`] once for the whole batch: the place to write one
//! log batch and sync once for every region in it. FSMs that still have
//! work stay for the next round (up to a fairness limit); idle ones go back
//! to their mailboxes.
//!
//! ```text
//!  senders ──Router──► BasicMailbox (channel + FsmState) ──notify──► scheduler queue
//!                                                                        │
//!       ┌────────────────────── poller thread (×pool_size) ◄─────────────┘
//!       │ begin → handle_control → handle_normal* → light_end → end
//!       └─► keep hot FSMs, release idle ones, top the batch up, repeat
//! ```
//!
//! The pieces: [`Fsm`], [`FsmState`] (NOTIFIED / IDLE / DROP), [`mpsc`]
//! (loosely bounded channels), [`BasicMailbox`] / [`Mailbox`], [`Router`] /
//! [`BatchRouter`], [`PollHandler`] / [`HandlerBuilder`] (read its
//! contract), [`BatchSystem`], [`create_system`] and [`Config`] (defaults
//! documented there), [`Health`]. With the `test-runner` feature,
//! `test_runner` provides a sample FSM and handler for tests.
//! [`ManualPoller`] (from [`BatchSystem::manual_poller`]) runs poll rounds on
//! the caller's thread instead of a pool: for deterministic simulation.
//!
//! # Example: FSMs created on demand
//!
//! A user-written FSM, handler and builder, and a control FSM that creates
//! a missing FSM when the router has no mailbox for an address (the
//! pattern raftstore uses for new regions). `examples/accounts.rs` is a
//! longer, narrated version.
//!
//! ```
//! use std::ops::DerefMut;
//! use std::sync::mpsc::{channel, Sender};
//!
//! use batch_system::mpsc::{self, Receiver};
//! use batch_system::{
//!     create_system, BasicMailbox, BatchRouter, Either, Fsm, HandleResult, HandlerBuilder,
//!     PollHandler,
//! };
//!
//! enum Msg {
//!     Hit,
//!     Report(Sender<(u64, u64)>),
//! }
//!
//! /// A normal FSM: counts hits for one address.
//! struct Counter { id: u64, rx: Receiver<Msg>, hits: u64 }
//!
//! impl Fsm for Counter {
//!     type Message = Msg;
//!     fn is_stopped(&self) -> bool { false }
//! }
//!
//! /// The control FSM: gets messages for addresses without a mailbox.
//! struct Creator { rx: Receiver<(u64, Msg)> }
//!
//! impl Fsm for Creator {
//!     type Message = (u64, Msg);
//!     fn is_stopped(&self) -> bool { false }
//! }
//!
//! /// One per poller; reaches the router through the clone it was built with.
//! struct Handler { router: BatchRouter<Counter, Creator> }
//!
//! impl PollHandler<Counter, Creator> for Handler {
//!     fn begin(&mut self, _batch_size: usize) {}
//!
//!     fn handle_control(&mut self, control: &mut Creator) -> Option<usize> {
//!         while let Ok((id, msg)) = control.rx.try_recv() {
//!             if let Either::Right(msg) = self.router.try_send(id, msg) {
//!                 // Still missing: create it, register it, then deliver.
//!                 let (tx, rx) = mpsc::loose_bounded(1024);
//!                 let fsm = Box::new(Counter { id, rx, hits: 0 });
//!                 self.router.register(id, BasicMailbox::new(tx, fsm));
//!                 let _ = self.router.force_send(id, msg);
//!             }
//!         }
//!         Some(0) // mailbox drained: release the control FSM
//!     }
//!
//!     fn handle_normal(&mut self, fsm: &mut impl DerefMut<Target = Counter>) -> HandleResult {
//!         while let Ok(msg) = fsm.rx.try_recv() {
//!             match msg {
//!                 Msg::Hit => fsm.hits += 1,
//!                 Msg::Report(to) => { let _ = to.send((fsm.id, fsm.hits)); }
//!             }
//!         }
//!         HandleResult::stop_at(0, false) // empty: release until the next send
//!     }
//!
//!     fn end(&mut self, _batch: &mut [Option<impl DerefMut<Target = Counter>>]) {
//!         // Once per round: group commit would go here.
//!     }
//! }
//!
//! struct Builder { router: BatchRouter<Counter, Creator> }
//!
//! impl HandlerBuilder<Counter, Creator> for Builder {
//!     type Handler = Handler;
//!     fn build(&mut self) -> Handler { Handler { router: self.router.clone() } }
//! }
//!
//! /// Sends to `id`, asking the control FSM to create it if it is missing.
//! fn send(router: &BatchRouter<Counter, Creator>, id: u64, msg: Msg) {
//!     if let Either::Right(msg) = router.try_send(id, msg) {
//!         router.force_send_control((id, msg)).unwrap();
//!     }
//! }
//!
//! let (control_tx, control_rx) = mpsc::loose_bounded(usize::MAX);
//! let (router, mut system) =
//!     create_system(2, 64, control_tx, Box::new(Creator { rx: control_rx }));
//! system.spawn("counters".to_owned(), Builder { router: router.clone() }).unwrap();
//!
//! for i in 0..1_000 {
//!     send(&router, i % 100, Msg::Hit); // 100 counters, created on first use
//! }
//! // A message that went through the control FSM can be overtaken by a
//! // later one sent straight to the new mailbox. To read each counter after
//! // all its hits, send the reports through the control FSM too: it
//! // forwards them after any hits it still holds.
//! let (report_tx, report_rx) = channel();
//! for id in 0..100 {
//!     router.force_send_control((id, Msg::Report(report_tx.clone()))).unwrap();
//! }
//! let hits: u64 = (0..100).map(|_| report_rx.recv().unwrap().1).sum();
//! assert_eq!(hits, 1_000);
//! assert_eq!(router.alive_cnt(), 100);
//!
//! // Shutdown refuses new sends, drains what was accepted, joins the
//! // threads and drops every FSM.
//! system.shutdown();
//! assert!(router.send(1, Msg::Hit).is_err());
//! ```
#![deny(missing_docs)]

mod batch;
mod config;
mod error;
mod fsm;
mod handler;
mod health;
mod idle;
mod log;
#[cfg(loom)]
pub mod loom_model;
mod mailbox;
pub mod mpsc;
mod router;
mod scheduler;
#[cfg(feature = "test-runner")]
pub mod test_runner;

pub use crate::batch::{create_system, create_system_with_config, BatchSystem, ManualPoller};
pub use crate::config::Config;
pub use crate::error::{Error, Result};
pub use crate::fsm::{Fsm, FsmScheduler, FsmState};
pub use crate::handler::{HandleResult, HandlerBuilder, PollHandler};
pub use crate::health::Health;
pub use crate::mailbox::{BasicMailbox, Mailbox};
pub use crate::router::{BatchRouter, Router};
pub use crate::scheduler::{ControlScheduler, NormalScheduler};
/// The return type of [`Router::try_send`]: `Left` for a registered address
/// (with the send's result), `Right` with the message for an unknown one.
/// Re-exported from the `either` crate so users need not depend on it.
pub use either::Either;
