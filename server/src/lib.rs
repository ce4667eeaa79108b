//! gRPC services of a multi-raft store, on tonic (HTTP/2, tokio), over
//! kvproto-lite's rust-protobuf messages (no second set of wire types).
//!
//! # Pieces
//!
//! - [`GrpcTransport`] implements [`raftstore::Transport`]: raft messages
//!   to other stores go over one long-lived `Raft.BatchRaft` stream per
//!   connection (one connection per peer store by default), batched per
//!   poller flush with bounded batch size and bytes, through bounded queues
//!   (full: drop and count; raft retransmits), reconnecting with
//!   exponential backoff and reporting the store unreachable to raft when a
//!   connection fails.
//! - [`RaftService`] is the receiving end: it hands each message to the
//!   store's router.
//! - [`KvService`] serves clients: `Get`, `Put`, `Delete`, `BatchGet`,
//!   `BatchPut`, `CompareAndSwap`, `DeleteIfEqual` as raft commands (writes
//!   with the client's session from the request context, so retries apply
//!   once; reads in the requested read mode), `Scan` as a read in its read
//!   mode followed by an engine snapshot, region lookup (`GetRegion`,
//!   `ListRegions`, `GetStores`) and store registration (`AddStore`, for a
//!   node joining the cluster). Errors of the store travel in each
//!   response's `region_error` as an `errorpb::Error`.
//! - [`StoreService`] serves both on one port; [`Server`] runs it.
//! - [`AddressBook`] maps store ids to addresses; [`Config`] holds the
//!   knobs (batch bounds, queue capacity, backoff, message size limit).
//! - [`metrics`] lists what is recorded through the `metrics` facade; the
//!   program that runs the server installs the exporter.
//!
//! The services are defined in kvproto-lite's `proto/kvrpcpb.proto` and
//! `proto/transportpb.proto`, the contract for clients in any language.
//! Region snapshots travel on `Raft.Snapshot`, one client stream per
//! snapshot on a connection of its own: the first chunk carries the raft
//! message, every chunk at most `snap_chunk_size` bytes of data
//! (`GrpcTransport::send_snapshot`, `RaftService::snapshot`).
//!
//! # Example
//!
//! One store serving on a free loopback port, with in-memory engines, and a
//! client writing and reading a key over gRPC:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use engine::{Engines, MemKvEngine, MemRaftLogEngine};
//! use kvproto_lite::grpc::KvClient;
//! use kvproto_lite::kvrpcpb::{Context, GetRegionRequest, GetRequest, PutRequest};
//! use kvproto_lite::metapb::Store;
//! use server::{AddressBook, GrpcTransport, Server, StoreService};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let logger = slog::Logger::root(slog::Discard, slog::o!());
//! let rt = tokio::runtime::Runtime::new()?;
//! let listener = Server::bind("127.0.0.1:0".parse()?)?;
//! let addr = listener.local_addr()?.to_string();
//! let book = AddressBook::new([(1, addr.clone())])?;
//!
//! // A store with one region, bootstrapped and started as usual ...
//! let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
//! raftstore::bootstrap_store(&engines, 1, &raftstore::initial_regions(&[1], &[])?)?;
//! let mut cfg = raftstore::Config::default();
//! cfg.raft_base_tick_interval_ms = 10;
//! let (router, mut system) = raftstore::create_raft_batch_system(&cfg);
//! let net_cfg = server::Config::default();
//! let reporter = router.clone();
//! let transport = GrpcTransport::new(
//!     1,
//!     book.clone(),
//!     net_cfg.clone(),
//!     rt.handle().clone(),
//!     Arc::new(move |store_id| reporter.report_unreachable(store_id)),
//!     &logger,
//! );
//! let mut store = Store::default();
//! store.set_id(1);
//! store.set_address(addr.clone());
//! system.spawn(store, engines.clone(), transport.clone(), &logger)?;
//!
//! // ... and served over gRPC.
//! let service = StoreService::for_store(
//!     1, &router, system.store_meta(), engines.kv.clone(), book, &net_cfg, &logger,
//! );
//! let server = Server::start(rt.handle(), listener, service, &net_cfg)?;
//!
//! rt.block_on(async {
//!     let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
//!         .connect()
//!         .await?;
//!     let mut client = KvClient::new(channel);
//!     // Ask the store which region holds the key and who leads it (the
//!     // region elects its leader within a few ticks).
//!     let mut ctx = Context::default();
//!     for _ in 0..500 {
//!         let mut req = GetRegionRequest::default();
//!         req.set_key(b"hello".to_vec());
//!         let info = client.get_region(req).await?.into_inner().take_region();
//!         if info.has_leader() {
//!             ctx.set_region_id(info.get_region().get_id());
//!             ctx.set_region_epoch(info.get_region().get_region_epoch().clone());
//!             ctx.set_peer(info.get_leader().clone());
//!             break;
//!         }
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!     }
//!     let mut put = PutRequest::default();
//!     put.set_context(ctx.clone());
//!     put.set_key(b"hello".to_vec());
//!     put.set_value(b"world".to_vec());
//!     assert!(!client.put(put).await?.get_ref().has_region_error());
//!     let mut get = GetRequest::default();
//!     get.set_context(ctx);
//!     get.set_key(b"hello".to_vec());
//!     assert_eq!(client.get(get).await?.get_ref().get_value(), b"world");
//!     server.stop(Duration::from_secs(1)).await?;
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! system.shutdown();
//! transport.shutdown();
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod address;
mod config;
mod error;
mod kv_service;
pub mod metrics;
mod raft_service;
mod server;
mod service;
mod transport;

pub use address::{AddressBook, Persister};
pub use config::Config;
pub use error::{Error, Result};
pub use kv_service::{store_regions, KvService};
pub use raft_service::RaftService;
pub use server::Server;
pub use service::StoreService;
pub use transport::{
    error_chain, GrpcTransport, GrpcTransportStats, ReachableReporter, UnreachableReporter,
};
