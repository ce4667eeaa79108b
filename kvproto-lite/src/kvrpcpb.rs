//! Client-to-store requests: [`Context`] (region, epoch, believed leader),
//! `Get`, `Put`, `Delete`, `Scan`, `BatchGet`, `BatchPut` requests and
//! responses (each response with an `errorpb::Error` in `region_error` on
//! failure), and region lookup ([`GetRegionRequest`],
//! [`ListRegionsRequest`], [`GetStoresRequest`]). The `Kv` gRPC service of
//! `proto/kvrpcpb.proto` serves them.
//!
//! Generated from `proto/kvrpcpb.proto`; see the crate docs for field numbers.

include!(concat!(env!("OUT_DIR"), "/protos/kvrpcpb.rs"));
