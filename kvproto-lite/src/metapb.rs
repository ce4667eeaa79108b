//! Region and store metadata: [`Store`], [`Region`] with its key range
//! `[start_key, end_key)`, [`RegionEpoch`] and [`Peer`] with its [`PeerRole`].
//!
//! Generated from `proto/metapb.proto`; see the crate docs for field numbers.

include!(concat!(env!("OUT_DIR"), "/protos/metapb.rs"));
