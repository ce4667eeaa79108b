//! Client-visible errors: [`Error`] carries a human-readable message and at
//! most one typed detail ([`NotLeader`], [`RegionNotFound`],
//! [`KeyNotInRegion`], [`EpochNotMatch`], [`ServerIsBusy`], [`StaleCommand`],
//! [`StoreNotMatch`], [`RaftEntryTooLarge`]) telling the client how to react.
//! Build them with the constructors in [`crate::util`].
//!
//! Generated from `proto/errorpb.proto`; see the crate docs for field numbers.

include!(concat!(env!("OUT_DIR"), "/protos/errorpb.rs"));
