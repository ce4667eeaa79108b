//! Integration tests of kvproto-lite: round trips of every message, malformed
//! input, raft interoperability and the field-number wire contract.

mod malformed;
mod raft_interop;
mod roundtrip;
mod strategies;
mod wire_contract;
