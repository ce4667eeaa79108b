//! Protobuf schemas for a multi-raft store: the wire contract between
//! stores, between clients and stores, and the per-region state a store
//! persists.
//!
//! The Rust code is generated at build time from the `.proto` files in this
//! crate's `proto/` directory with protobuf-codegen-pure 2.28, the protobuf
//! family that `raft` 0.7 uses; no system `protoc` is needed. The messages
//! use rust-protobuf 2 accessors: `get_x`, `set_x`, `mut_x`, `take_x`,
//! `has_x` (for message fields), and implement [`protobuf::Message`].
//!
//! # Modules
//!
//! | Module | Contents |
//! |---|---|
//! | [`metapb`] | `Store`, `Region` (`[start_key, end_key)`, epoch, peers), `RegionEpoch`, `Peer`, `PeerRole` |
//! | [`raft_serverpb`] | `RaftMessage` (store to store), the persisted `RaftLocalState`, `RaftApplyState`, `RaftTruncatedState`, `RegionLocalState`, `PeerState`, `ExtraMessageType` and `StoreIdent` |
//! | [`raft_cmdpb`] | Client commands: `RaftCmdRequest` with normal `Request`s (Get, Put, Delete) or one `AdminRequest` (ChangePeer, Split, CompactLog, TransferLeader), and the matching responses |
//! | [`errorpb`] | `Error`, the client-visible error, with one typed detail per kind (`NotLeader`, `EpochNotMatch`, ...) |
//! | [`kvrpcpb`] | Client to store: `Get`, `Put`, `Delete`, `Scan`, `BatchGet`, `BatchPut`, `CompareAndSwap`, `DeleteIfEqual` requests addressed to a region (`Context`, which also carries a write's client session), reads with a read mode, responses carrying an `errorpb::Error` on failure, region lookup (`GetRegion`, `ListRegions`), the store list (`GetStores`), `BatchCommands` (many `raft_cmdpb` commands in one call), store registration (`AddStore`) and membership changes (`AdminCommand`); the `Kv` service |
//! | [`transportpb`] | Store to store: `BatchRaftMessage`, `SnapshotChunk`, `Done`; the `Raft` service |
//! | `grpc` (feature `grpc`) | A `tonic::codec::Codec` for these messages, the method table of both services and typed clients |
//! | [`eraftpb`] | Raft's own messages: this *is* `raft::eraftpb`, re-exported, never a second generated copy |
//! | [`util`] | Key-in-region checks, epoch comparison, one `errorpb::Error` constructor per kind |
//!
//! # What the fields of a command mean
//!
//! The generated Rust types carry no docs of their own (the comments live
//! in the `.proto` files); this table states what a store does with each
//! field a client sets or reads.
//!
//! | Field | Meaning |
//! |---|---|
//! | `RaftRequestHeader.region_id` | The region the command is for; a store without a peer of it answers `RegionNotFound`. |
//! | `RaftRequestHeader.peer` | The peer the client believes leads the region. Its `store_id` must be the receiving store's (else `StoreNotMatch`); an unset peer skips that check. |
//! | `RaftRequestHeader.region_epoch` | The epoch the client routed with. A `version` or `conf_ver` older than the region's is refused with `EpochNotMatch` carrying the current region(s); a newer one is accepted. |
//! | `RaftRequestHeader.term` | The leader term the client last saw (`RaftResponseHeader.current_term` of an earlier answer). `0` means unchecked. Otherwise a command whose term is more than one behind the leader's current term is refused with `StaleCommand`: the client's view of the region predates at least two leader changes, so it should refresh its routing. One term behind is accepted (a single leader change is the common case and the command is still safe to propose). |
//! | `RaftCmdRequest.requests` | Normal commands, executed in order and atomically as one log entry. |
//! | `RaftCmdRequest.admin_request` | One administrative command, set instead of `requests`. |
//! | `Request.cmd_type = Get` | A read. It goes through the raft log like a write and is answered when its entry is applied, so it sees every write acknowledged before it was sent: reads are linearizable, and cost a log write. |
//! | `Request.cmd_type = Put / Delete` | A write, acknowledged once its entry is committed and applied on the leader. |
//! | `RaftResponseHeader.error` | Set when the command failed; `responses` and `admin_response` are then empty. An error without a typed detail means the outcome is unknown (the command may or may not have been applied). |
//! | `RaftResponseHeader.current_term` | The responding peer's raft term (`0` when the store answered without a peer, e.g. `RegionNotFound`). |
//! | `NotLeader.leader` | The leader the responding peer knows of. Unset when it knows none *that can be reached*: during an election, after an election timeout without a heartbeat, or while the leader's store is reported unreachable. A client should then back off before retrying instead of following a hint. |
//! | `EpochNotMatch.current_regions` | The region as the store knows it now, and after a split its siblings: enough to re-route without another lookup. |
//! | `ServerIsBusy.reason` | Which limit refused the command (e.g. a full mailbox); retry later. |
//! | `StaleCommand` | The command was superseded: its entry was overwritten after a leader change (outcome: not applied), or its header term was too old (not proposed). |
//!
//! [`decode`] and [`encode`] wrap the protobuf runtime with this crate's
//! [`Error`]: any malformed input is an error value, never a panic.
//!
//! # The contract for other languages
//!
//! The `.proto` files in `proto/` are the contract for clients and stores
//! written in other languages: they are plain proto3 and compile with the
//! standard `protoc` and any gRPC code generator. `raft_cmdpb.proto` and
//! `raft_serverpb.proto` import raft-rs's `eraftpb.proto`, which imports
//! rust-protobuf's `rustproto.proto` (options only), so `protoc` needs both
//! directories on its include path, for example
//!
//! ```text
//! R=~/.cargo/registry/src/index.crates.io-*
//! protoc -I kvproto-lite/proto -I $R/raft-proto-0.7.0/proto \
//!        -I $R/protobuf-codegen-pure-2.28.0/src/proto \
//!        --python_out=OUT --cpp_out=OUT kvproto-lite/proto/*.proto
//! ```
//!
//! The services (`service Kv` in `kvrpcpb.proto`, `service Raft` in
//! `transportpb.proto`) define the gRPC paths, `/kvrpcpb.Kv/Get`,
//! `/transportpb.Raft/BatchRaft`, .... This crate's build generates no code
//! for them (protobuf-codegen-pure skips `service` blocks); the `grpc`
//! feature holds the hand-written client side, checked against the files by
//! the `service_contract` test, and the `server` crate the services.
//! `Raft.Snapshot` is declared for the snapshot transfer a later version
//! serves; stores do not serve it yet.
//!
//! # Decoding untrusted bytes
//!
//! Use [`decode`] for bytes from the network or from disk rather than
//! `protobuf::Message::parse_from_bytes`. The runtime's entry point (2.28)
//! does not bound nested messages by the input length, so a nested message
//! whose length prefix runs past the end of the input is silently accepted
//! as if it ended there: the 2 bytes `[0x0a, 0x02]` "decode" as a
//! `RaftCmdRequest` with an empty header. [`decode`] sets the input length
//! as the stream's limit, which turns that case into [`Error::Decode`]; the
//! tests check that every proper prefix of an encoding either fails or ends
//! exactly on a field boundary.
//!
//! # Reusing raft's types
//!
//! Because `eraftpb.proto` (from the `raft-proto` crate's sources) is only an
//! include path at code-generation time, `RaftMessage.message` is exactly a
//! [`raft::eraftpb::Message`], `RaftLocalState.hard_state` a
//! [`raft::eraftpb::HardState`] and `ChangePeerRequest.change_type` a
//! [`raft::eraftpb::ConfChangeType`]. A received message goes straight into
//! `RawNode::step(raft_message.take_message())`.
//!
//! # Field numbers are the contract
//!
//! Stores exchange these messages over the network, and `RaftCmdRequest`s
//! are stored inside Raft log entries, `RaftLocalState`/`RaftApplyState`/
//! `RegionLocalState` in the engines. So a field's number is both a wire and
//! an on-disk format: **never renumber or reuse a field number**; add new
//! fields with new numbers. The integration tests pin every field number
//! listed here and the exact bytes of sample encodings. Enum values are
//! pinned the same way (for example `CmdType::Put = 3`).
//!
//! | Message | Fields (number) |
//! |---|---|
//! | `metapb.Store` | id (1), address (2) |
//! | `metapb.RegionEpoch` | conf_ver (1), version (2) |
//! | `metapb.Peer` | id (1), store_id (2), role (3) |
//! | `metapb.Region` | id (1), start_key (2), end_key (3), region_epoch (4), peers (5) |
//! | `raft_serverpb.RaftMessage` | region_id (1), from_peer (2), to_peer (3), message (4), region_epoch (5), is_tombstone (6), start_key (7), end_key (8), extra (9) |
//! | `raft_serverpb.RaftLocalState` | hard_state (1), last_index (2) |
//! | `raft_serverpb.RaftTruncatedState` | index (1), term (2) |
//! | `raft_serverpb.RaftApplyState` | applied_index (1), truncated_state (2), commit_index (3), commit_term (4) |
//! | `raft_serverpb.RegionLocalState` | state (1), region (2) |
//! | `raft_serverpb.StoreIdent` | cluster_id (1), store_id (2) |
//! | `raft_cmdpb.GetRequest` / `GetResponse` | key (1) / value (1), not_found (2) |
//! | `raft_cmdpb.PutRequest` / `DeleteRequest` | key (1), value (2) / key (1) |
//! | `raft_cmdpb.Request` / `Response` | cmd_type (1), get (2), put (4), delete (5), cas (6), delete_if_equal (7, request only), user (8) |
//! | `raft_cmdpb.CompareAndSwapRequest` / `Response` | key (1), expected (2), expected_absent (3), value (4) / succeeded (1), previous (2), previous_not_found (3) |
//! | `raft_cmdpb.DeleteIfEqualRequest` | key (1), expected (2) |
//! | `raft_cmdpb.UserRequest` / `UserResponse` | name (1), input (2) / output (1), failed (2), error (3) |
//! | `raft_cmdpb.ChangePeerRequest` / `Response` | change_type (1), peer (2) / region (1) |
//! | `raft_cmdpb.ChangePeerV2Request` / `Response` | changes (1) / region (1) |
//! | `raft_cmdpb.SplitRequest` / `Response` | split_key (1), new_region_id (2), new_peer_ids (3) / left (1), right (2) |
//! | `raft_cmdpb.CompactLogRequest` | compact_index (1), compact_term (2) |
//! | `raft_cmdpb.TransferLeaderRequest` | peer (1) |
//! | `raft_cmdpb.AdminRequest` / `AdminResponse` | cmd_type (1), change_peer (2), split (3), compact_log (4), transfer_leader (5), change_peer_v2 (6) |
//! | `raft_cmdpb.RaftRequestHeader` | region_id (1), peer (2), region_epoch (3), term (4), client_id (5), sequence (6), read_mode (7) |
//! | `raft_cmdpb.RaftResponseHeader` | error (1), current_term (2) |
//! | `raft_cmdpb.RaftCmdRequest` / `RaftCmdResponse` | header (1), requests / responses (2), admin_request / admin_response (3) |
//! | `errorpb.NotLeader` | region_id (1), leader (2) |
//! | `errorpb.RegionNotFound` | region_id (1) |
//! | `errorpb.KeyNotInRegion` | key (1), region_id (2), start_key (3), end_key (4) |
//! | `errorpb.EpochNotMatch` | current_regions (1) |
//! | `errorpb.ServerIsBusy` | reason (1) |
//! | `errorpb.StoreNotMatch` | to_store_id (1), actual_store_id (2) |
//! | `errorpb.RaftEntryTooLarge` | region_id (1), entry_size (2) |
//! | `errorpb.Error` | message (1), not_leader (2), region_not_found (3), key_not_in_region (4), epoch_not_match (5), server_is_busy (6), stale_command (7), store_not_match (8), raft_entry_too_large (9), invalid_request (10), stale_sequence (11) |
//! | `errorpb.InvalidRequest` / `StaleSequence` | reason (1) / client_id (1), sequence (2), applied_sequence (3) |
//! | `kvrpcpb.Context` | region_id (1), region_epoch (2), peer (3), client_id (4), sequence (5) |
//! | `kvrpcpb.KvPair` | key (1), value (2) |
//! | `kvrpcpb.GetRequest` / `GetResponse` | context (1), key (2), read_mode (3) / region_error (1), value (2), not_found (3) |
//! | `kvrpcpb.PutRequest` / `PutResponse` | context (1), key (2), value (3) / region_error (1) |
//! | `kvrpcpb.DeleteRequest` / `DeleteResponse` | context (1), key (2) / region_error (1) |
//! | `kvrpcpb.ScanRequest` / `ScanResponse` | context (1), start_key (2), end_key (3), limit (4), read_mode (5) / region_error (1), pairs (2), limit (3) |
//! | `kvrpcpb.BatchGetRequest` / `BatchGetResponse` | context (1), keys (2), read_mode (3) / region_error (1), pairs (2) |
//! | `kvrpcpb.BatchPutRequest` / `BatchPutResponse` | context (1), pairs (2) / region_error (1) |
//! | `kvrpcpb.GetRegionRequest` / `GetRegionResponse` | key (1) / region_error (1), region (2) |
//! | `kvrpcpb.RegionInfo` | region (1), leader (2), leader_term (3) |
//! | `kvrpcpb.ListRegionsResponse` | regions (1) |
//! | `kvrpcpb.GetStoresResponse` | store_id (1), stores (2), cluster_id (3) |
//! | `kvrpcpb.BatchCommandsRequest` / `BatchCommandsResponse` | commands (1) / responses (1) |
//! | `kvrpcpb.CompareAndSwapRequest` / `CompareAndSwapResponse` | context (1), key (2), expected (3), expected_absent (4), value (5) / region_error (1), succeeded (2), previous (3), previous_not_found (4) |
//! | `kvrpcpb.DeleteIfEqualRequest` / `DeleteIfEqualResponse` | context (1), key (2), expected (3) / region_error (1), succeeded (2), previous (3), previous_not_found (4) |
//! | `kvrpcpb.AddStoreRequest` / `AddStoreResponse` | store (1) / error (1), stores (2) |
//! | `kvrpcpb.AdminCommandRequest` / `AdminCommandResponse` | command (1) / response (1) |
//! | `transportpb.BatchRaftMessage` | msgs (1) |
//! | `transportpb.SnapshotChunk` | message (1), data (2) |
//!
//! `PutResponse`, `DeleteResponse`, `CompactLogResponse`,
//! `TransferLeaderResponse`, `errorpb.StaleCommand`,
//! `kvrpcpb.ListRegionsRequest`, `kvrpcpb.GetStoresRequest` and
//! `transportpb.Done` have no fields.
//!
//! Region key ranges are `[start_key, end_key)`; an empty `start_key` means
//! minus infinity and an empty `end_key` plus infinity. A split of
//! `[start, end)` at `split_key` gives left `[start, split_key)` with the old
//! region id and right `[split_key, end)` with `new_region_id`;
//! `new_peer_ids[i]` is the new region's peer on the store of the old
//! `peers[i]`; both halves get `version + 1`.
//!
//! # Example: a Put command through bytes
//!
//! ```
//! use kvproto_lite::metapb::Peer;
//! use kvproto_lite::raft_cmdpb::{CmdType, PutRequest, RaftCmdRequest, Request};
//! use kvproto_lite::{decode, encode, util};
//!
//! // Build the command a client sends to the leader of region 1.
//! let mut cmd = RaftCmdRequest::default();
//! let header = cmd.mut_header();
//! header.set_region_id(1);
//! header.set_peer({
//!     let mut p = Peer::default();
//!     p.set_id(1);
//!     p.set_store_id(1);
//!     p
//! });
//! header.mut_region_epoch().set_version(1);
//! header.mut_region_epoch().set_conf_ver(1);
//!
//! let mut put = PutRequest::default();
//! put.set_key(b"k1".to_vec());
//! put.set_value(b"v1".to_vec());
//! let mut req = Request::default();
//! req.set_cmd_type(CmdType::Put);
//! req.set_put(put);
//! cmd.mut_requests().push(req);
//!
//! // Encode it (this is what goes into a Raft entry's data) and decode it.
//! let bytes = encode(&cmd)?;
//! let decoded: RaftCmdRequest = decode(&bytes)?;
//! assert_eq!(decoded, cmd);
//! assert_eq!(decoded.get_requests()[0].get_cmd_type(), CmdType::Put);
//! assert_eq!(decoded.get_requests()[0].get_put().get_value(), b"v1");
//!
//! // Bad bytes are an error value, never a panic.
//! assert!(decode::<RaftCmdRequest>(&bytes[..bytes.len() - 1]).is_err());
//!
//! // The apply side checks keys against the region with a helper.
//! let mut region = kvproto_lite::metapb::Region::default();
//! region.set_end_key(b"k5".to_vec());
//! assert!(util::check_key_in_region(b"k1", &region).is_ok());
//! # Ok::<(), kvproto_lite::Error>(())
//! ```

#![deny(missing_docs)]

mod codec;
mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod util;

// The generated modules. rust-protobuf 2.28 output trips lints of newer
// rustc versions and has no docs on its items; the allowances apply to these
// modules only, so the rest of the crate keeps every lint.
macro_rules! generated_modules {
    ($($name:ident),* $(,)?) => {
        $(
            #[allow(
                missing_docs,
                elided_lifetimes_in_paths,
                mismatched_lifetime_syntaxes,
                non_upper_case_globals,
                unused_parens,
                clippy::all
            )]
            pub mod $name;
        )*
    };
}

generated_modules!(
    errorpb,
    kvrpcpb,
    metapb,
    raft_cmdpb,
    raft_serverpb,
    transportpb
);

pub use codec::{decode, encode};
pub use error::{Error, Result};
/// Raft's protobuf messages (`Message`, `Entry`, `HardState`,
/// `ConfChangeType`, ...), re-exported from `raft` so that the generated
/// modules and users share one copy.
pub use raft::eraftpb;
