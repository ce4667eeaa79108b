//! Generated from `proto/metapb.proto` (see the crate docs).

include!(concat!(env!("OUT_DIR"), "/protos/metapb.rs"));
