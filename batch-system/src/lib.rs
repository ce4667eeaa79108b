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
//! (loosely bounded channels), [`BasicMailbox`], [`Router`] /
//! [`BatchRouter`], [`PollHandler`] / [`HandlerBuilder`], [`BatchSystem`]
//! and [`create_system`]. With the `test-runner` feature, `test_runner`
//! provides a sample FSM and handler.
//! [`ManualPoller`] (from [`BatchSystem::manual_poller`]) runs poll rounds on
//! the caller's thread instead of a pool: for deterministic simulation.
//!
//! # Example
//!
//! ```
//! use batch_system::test_runner::{Builder, Message, Runner};
//! use batch_system::{create_system, BasicMailbox};
//! use std::time::Duration;
//!
//! // The control FSM and its mailbox sender come as a pair.
//! let (control_tx, control) = Runner::new(1024);
//! let (router, mut system) = create_system::<Runner, Runner>(2, 64, control_tx, control);
//! let builder = Builder::new();
//! let metrics = builder.metrics();
//! system.spawn("example".to_owned(), builder).unwrap();
//!
//! // Register 100 FSMs, each under its own address.
//! for addr in 0..100 {
//!     let (tx, runner) = Runner::new(1024);
//!     router.register(addr, BasicMailbox::new(tx, runner));
//! }
//! for addr in 0..100 {
//!     router.send(addr, Message::Count(addr)).unwrap();
//! }
//! // Ask FSM 99 to report its sum once it got there.
//! let (done_tx, done_rx) = std::sync::mpsc::channel();
//! router
//!     .send(99, Message::callback(move |r: &mut Runner| done_tx.send(r.sum()).unwrap()))
//!     .unwrap();
//! assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 99);
//!
//! // Shutdown drains what was accepted, joins the threads, drops the FSMs.
//! system.shutdown();
//! assert_eq!(metrics.handled(), 101);
//! assert!(router.send(1, Message::Count(1)).is_err());
//! ```
#![deny(missing_docs)]

mod batch;
mod config;
mod error;
mod fsm;
mod handler;
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
pub use crate::mailbox::{BasicMailbox, Mailbox};
pub use crate::router::{BatchRouter, Router};
pub use crate::scheduler::{ControlScheduler, NormalScheduler};
