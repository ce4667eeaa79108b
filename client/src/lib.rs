//! The client of multi-raft stores: routes each key to its region and the
//! region's leader, retries on the answers that say "ask someone else" or
//! "ask again later", and gives up on those that say "this will never
//! work".
//!
//! The routing and retry logic is a **sans-IO core**: nothing in it sends,
//! sleeps or reads a clock, so a blocking client, an async client and a
//! deterministic simulation all make the same decisions.
//!
//! - [`RegionCache`]: the regions (key ranges, epochs) a client believes
//!   in; learns from `EpochNotMatch` answers, never takes an older epoch
//!   back.
//! - [`LeaderCache`]: the store believed to lead each region.
//! - [`route`] picks where an attempt goes; [`learn`] updates both caches
//!   from the answer and [`classify`]s it ([`ErrorClass`]: retry now,
//!   retry after a backoff, fail, outcome unknown). [`Routing`] bundles
//!   the two caches.
//! - [`Backoff`] and [`Deadline`] compute waits from the time they are
//!   given.
//! - [`Call`]: one operation with its retries, a state machine a driver
//!   steps with what its transport reports; [`Call::for_request`] is how
//!   every driver starts one (read mode for reads, session for writes).
//! - [`Session`] and [`SessionPool`]: the client id and sequence numbers
//!   that make retried writes exactly-once (one session per write in
//!   flight).
//!
//! [`Client`] is a blocking driver of [`Call`] over a [`Backend`] (one
//! method: send this command to that store, wait for the answer). The
//! crate depends on the protocol messages only (`kvproto-lite`), not on
//! the store: an application talking to remote stores does not build
//! their storage engines.
//!
//! With the `grpc` feature, `grpc::GrpcBackend` reaches remote stores over
//! gRPC (commands to one store batched into `Kv.BatchCommands` calls) and
//! `grpc::AsyncClient` drives the same [`Call`] on tokio, with scans and
//! region lookup besides: the in-process and the remote client share every
//! routing and retry decision, and both make their writes exactly-once
//! with sessions (the async client lends each write in flight its own
//! session from a [`SessionPool`]).
//!
//! # Example
//!
//! A backend over a toy store that answers every command, first refusing
//! with `NotLeader` on store 1 (hinting store 2):
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use client::{Backend, BackendError, Client, ClientOptions};
//! use kvproto_lite::metapb::{Peer, Region};
//! use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, Response};
//! use kvproto_lite::util;
//!
//! #[derive(Default)]
//! struct ToyStore(Mutex<HashMap<Vec<u8>, Vec<u8>>>);
//!
//! impl Backend for ToyStore {
//!     fn call(&self, store_id: u64, cmd: RaftCmdRequest, _: Duration)
//!         -> Result<RaftCmdResponse, BackendError>
//!     {
//!         let region_id = cmd.get_header().get_region_id();
//!         if store_id != 2 {
//!             let mut leader = Peer::default();
//!             leader.set_store_id(2);
//!             return Ok(util::error_response(util::new_not_leader(region_id, Some(leader)), 1));
//!         }
//!         let mut data = self.0.lock().unwrap();
//!         let mut resp = RaftCmdResponse::default();
//!         for req in cmd.get_requests() {
//!             let mut r = Response::default();
//!             r.set_cmd_type(req.get_cmd_type());
//!             match req.get_cmd_type() {
//!                 CmdType::Put => {
//!                     data.insert(req.get_put().get_key().to_vec(), req.get_put().get_value().to_vec());
//!                 }
//!                 CmdType::Get => match data.get(req.get_get().get_key()) {
//!                     Some(v) => r.mut_get().set_value(v.clone()),
//!                     None => r.mut_get().set_not_found(true),
//!                 },
//!                 _ => {}
//!             }
//!             resp.mut_responses().push(r);
//!         }
//!         Ok(resp)
//!     }
//! }
//!
//! let mut region = Region::default();
//! region.set_id(1);
//! for store_id in [1, 2, 3] {
//!     let mut p = Peer::default();
//!     p.set_id(10 + store_id);
//!     p.set_store_id(store_id);
//!     region.mut_peers().push(p);
//! }
//! let mut client = Client::new(Arc::new(ToyStore::default()), vec![region], ClientOptions::default());
//! client.put(b"hello", b"world").unwrap();
//! assert_eq!(client.get(b"hello").unwrap(), Some(b"world".to_vec()));
//! assert_eq!(client.routing().leaders().get(1), Some(2));
//! ```
#![deny(missing_docs)]
// Client errors carry the store's `errorpb::Error` by value: a cold path
// where boxing buys nothing.
#![allow(clippy::result_large_err)]

mod backend;
mod backoff;
mod call;
mod classify;
mod client;
mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
mod leader_cache;
mod membership;
mod options;
mod region_cache;
mod request;
mod routing;
mod session;

pub use crate::backend::{Backend, BackendError};
pub use crate::backoff::{Backoff, Deadline};
pub use crate::call::{Call, Step};
pub use crate::classify::{classify, ErrorClass};
pub use crate::client::Client;
pub use crate::error::{ClientError, Result};
pub use crate::leader_cache::LeaderCache;
pub use crate::membership::{Membership, Plan};
pub use crate::options::ClientOptions;
pub use crate::region_cache::RegionCache;
pub use crate::request::{
    cas_outcome, compare_and_swap_request, delete_if_equal_request, delete_request, get_request,
    get_value, put_request, user_output, user_request, CasOutcome,
};
pub use crate::routing::{learn, route, route_any_peer, Route, RouteError, Routing, Verdict};
pub use crate::session::{random_client_id, Session, SessionPool};
pub use kvproto_lite::raft_cmdpb::ReadMode;
