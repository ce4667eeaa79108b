//! Generated from `proto/errorpb.proto` (see the crate docs).

include!(concat!(env!("OUT_DIR"), "/protos/errorpb.rs"));
