//! Integration tests of kvproto-lite: round trips of every message, malformed
//! input, raft interoperability, the field-number wire contract and the
//! gRPC service contract.

mod malformed;
mod raft_interop;
mod roundtrip;
mod service_contract;
mod strategies;
mod wire_contract;
