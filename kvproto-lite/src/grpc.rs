//! gRPC over this crate's messages (feature `grpc`): a
//! [`tonic::codec::Codec`] for rust-protobuf 2 messages, the method table of
//! the services in `proto/kvrpcpb.proto` and `proto/transportpb.proto`, and
//! typed clients for them.
//!
//! The wire types stay this crate's messages: there is no second set of
//! (prost) types. [`ProtobufCodec`] encodes with the rust-protobuf runtime
//! and decodes with [`crate::decode`], so malformed bytes from a peer are a
//! `Status` with code `Internal`, never a panic.
//!
//! protobuf-codegen-pure generates no code for `service` blocks, so the
//! service code is written by hand here (clients) and in the `server` crate
//! (services). [`METHODS`] lists every method with its gRPC path and
//! message types; the `service_contract` test checks it against the
//! `.proto` files, so the paths cannot drift from the contract.
//!
//! # Example
//!
//! The codec round-trips a message through the bytes a gRPC frame carries:
//!
//! ```
//! use kvproto_lite::grpc::ProtobufCodec;
//! use kvproto_lite::kvrpcpb::{GetRequest, GetResponse};
//!
//! // Client side: encodes requests, decodes responses.
//! let _codec = ProtobufCodec::<GetRequest, GetResponse>::default();
//! assert_eq!(kvproto_lite::grpc::paths::KV_GET, "/kvrpcpb.Kv/Get");
//! let get = kvproto_lite::grpc::METHODS
//!     .iter()
//!     .find(|m| m.path == kvproto_lite::grpc::paths::KV_GET)
//!     .unwrap();
//! assert_eq!((get.request, get.response), ("kvrpcpb.GetRequest", "kvrpcpb.GetResponse"));
//! ```

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use protobuf::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{IntoRequest, Response, Status};

use crate::kvrpcpb::{
    AddStoreRequest, AddStoreResponse, AdminCommandRequest, AdminCommandResponse,
    BatchCommandsRequest, BatchCommandsResponse, BatchGetRequest, BatchGetResponse,
    BatchPutRequest, BatchPutResponse, CompareAndSwapRequest, CompareAndSwapResponse,
    DeleteIfEqualRequest, DeleteIfEqualResponse, DeleteRequest, DeleteResponse, GetRegionRequest,
    GetRegionResponse, GetRequest, GetResponse, GetStoresRequest, GetStoresResponse,
    ListRegionsRequest, ListRegionsResponse, PutRequest, PutResponse, ScanRequest, ScanResponse,
};
use crate::transportpb::{BatchRaftMessage, Done, SnapshotChunk};

/// Boxed error type of the transport under a client.
type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The gRPC path of every method of the services.
pub mod paths {
    /// `Kv.Get`: read one key.
    pub const KV_GET: &str = "/kvrpcpb.Kv/Get";
    /// `Kv.Put`: write one key.
    pub const KV_PUT: &str = "/kvrpcpb.Kv/Put";
    /// `Kv.Delete`: remove one key.
    pub const KV_DELETE: &str = "/kvrpcpb.Kv/Delete";
    /// `Kv.Scan`: read a key range within one region.
    pub const KV_SCAN: &str = "/kvrpcpb.Kv/Scan";
    /// `Kv.BatchGet`: read several keys of one region.
    pub const KV_BATCH_GET: &str = "/kvrpcpb.Kv/BatchGet";
    /// `Kv.BatchPut`: write several keys of one region atomically.
    pub const KV_BATCH_PUT: &str = "/kvrpcpb.Kv/BatchPut";
    /// `Kv.GetRegion`: the region holding a key.
    pub const KV_GET_REGION: &str = "/kvrpcpb.Kv/GetRegion";
    /// `Kv.ListRegions`: every region of a store.
    pub const KV_LIST_REGIONS: &str = "/kvrpcpb.Kv/ListRegions";
    /// `Kv.GetStores`: the stores of the cluster and their addresses.
    pub const KV_GET_STORES: &str = "/kvrpcpb.Kv/GetStores";
    /// `Kv.BatchCommands`: several commands for one store's regions.
    pub const KV_BATCH_COMMANDS: &str = "/kvrpcpb.Kv/BatchCommands";
    /// `Kv.CompareAndSwap`: write a key if it holds an expected value.
    pub const KV_COMPARE_AND_SWAP: &str = "/kvrpcpb.Kv/CompareAndSwap";
    /// `Kv.DeleteIfEqual`: remove a key if it holds an expected value.
    pub const KV_DELETE_IF_EQUAL: &str = "/kvrpcpb.Kv/DeleteIfEqual";
    /// `Kv.AddStore`: register a store joining the cluster.
    pub const KV_ADD_STORE: &str = "/kvrpcpb.Kv/AddStore";
    /// `Kv.AdminCommand`: change a region's membership or leader.
    pub const KV_ADMIN_COMMAND: &str = "/kvrpcpb.Kv/AdminCommand";
    /// `Raft.BatchRaft`: the store-to-store stream of message batches.
    pub const RAFT_BATCH_RAFT: &str = "/transportpb.Raft/BatchRaft";
    /// `Raft.Snapshot`: the stream of one snapshot's chunks.
    pub const RAFT_SNAPSHOT: &str = "/transportpb.Raft/Snapshot";
}

/// One method of a service, as declared in the `.proto` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodDesc {
    /// The gRPC path, `/package.Service/Method`.
    pub path: &'static str,
    /// Full name of the request message.
    pub request: &'static str,
    /// Full name of the response message.
    pub response: &'static str,
    /// Whether the client sends a stream of requests.
    pub client_streaming: bool,
}

const fn unary(path: &'static str, request: &'static str, response: &'static str) -> MethodDesc {
    MethodDesc {
        path,
        request,
        response,
        client_streaming: false,
    }
}

/// Every method of the `Kv` and `Raft` services, in declaration order.
pub const METHODS: &[MethodDesc] = &[
    unary(paths::KV_GET, "kvrpcpb.GetRequest", "kvrpcpb.GetResponse"),
    unary(paths::KV_PUT, "kvrpcpb.PutRequest", "kvrpcpb.PutResponse"),
    unary(
        paths::KV_DELETE,
        "kvrpcpb.DeleteRequest",
        "kvrpcpb.DeleteResponse",
    ),
    unary(
        paths::KV_SCAN,
        "kvrpcpb.ScanRequest",
        "kvrpcpb.ScanResponse",
    ),
    unary(
        paths::KV_BATCH_GET,
        "kvrpcpb.BatchGetRequest",
        "kvrpcpb.BatchGetResponse",
    ),
    unary(
        paths::KV_BATCH_PUT,
        "kvrpcpb.BatchPutRequest",
        "kvrpcpb.BatchPutResponse",
    ),
    unary(
        paths::KV_GET_REGION,
        "kvrpcpb.GetRegionRequest",
        "kvrpcpb.GetRegionResponse",
    ),
    unary(
        paths::KV_LIST_REGIONS,
        "kvrpcpb.ListRegionsRequest",
        "kvrpcpb.ListRegionsResponse",
    ),
    unary(
        paths::KV_GET_STORES,
        "kvrpcpb.GetStoresRequest",
        "kvrpcpb.GetStoresResponse",
    ),
    unary(
        paths::KV_BATCH_COMMANDS,
        "kvrpcpb.BatchCommandsRequest",
        "kvrpcpb.BatchCommandsResponse",
    ),
    unary(
        paths::KV_COMPARE_AND_SWAP,
        "kvrpcpb.CompareAndSwapRequest",
        "kvrpcpb.CompareAndSwapResponse",
    ),
    unary(
        paths::KV_DELETE_IF_EQUAL,
        "kvrpcpb.DeleteIfEqualRequest",
        "kvrpcpb.DeleteIfEqualResponse",
    ),
    unary(
        paths::KV_ADD_STORE,
        "kvrpcpb.AddStoreRequest",
        "kvrpcpb.AddStoreResponse",
    ),
    unary(
        paths::KV_ADMIN_COMMAND,
        "kvrpcpb.AdminCommandRequest",
        "kvrpcpb.AdminCommandResponse",
    ),
    MethodDesc {
        path: paths::RAFT_BATCH_RAFT,
        request: "transportpb.BatchRaftMessage",
        response: "transportpb.Done",
        client_streaming: true,
    },
    MethodDesc {
        path: paths::RAFT_SNAPSHOT,
        request: "transportpb.SnapshotChunk",
        response: "transportpb.Done",
        client_streaming: true,
    },
];

/// A [`Codec`] for rust-protobuf 2 messages: encodes `E`, decodes `D`.
///
/// A client uses `ProtobufCodec<Request, Response>`, a service
/// `ProtobufCodec<Response, Request>`.
pub struct ProtobufCodec<E, D> {
    _types: PhantomData<fn(E) -> D>,
}

impl<E, D> Default for ProtobufCodec<E, D> {
    fn default() -> Self {
        ProtobufCodec {
            _types: PhantomData,
        }
    }
}

impl<E, D> std::fmt::Debug for ProtobufCodec<E, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtobufCodec")
            .field("encode", &std::any::type_name::<E>())
            .field("decode", &std::any::type_name::<D>())
            .finish()
    }
}

impl<E: Message, D: Message> Codec for ProtobufCodec<E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = ProtobufEncoder<E>;
    type Decoder = ProtobufDecoder<D>;

    fn encoder(&mut self) -> ProtobufEncoder<E> {
        ProtobufEncoder { _type: PhantomData }
    }

    fn decoder(&mut self) -> ProtobufDecoder<D> {
        ProtobufDecoder { _type: PhantomData }
    }
}

/// The encoding half of [`ProtobufCodec`].
pub struct ProtobufEncoder<E> {
    _type: PhantomData<fn(E)>,
}

impl<E: Message> Encoder for ProtobufEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        encode_into(&item, dst)
    }
}

/// Writes `msg` into `dst` (what [`ProtobufEncoder`] does with a frame's
/// buffer).
///
/// `Message::write_to_bytes` sizes its vector exactly and writes without a
/// staging buffer; a `CodedOutputStream` over a writer would allocate and
/// zero an 8 KiB buffer for every message, which showed up as a tenth of a
/// node's CPU under a small-request load.
fn encode_into<M: Message>(msg: &M, dst: &mut impl BufMut) -> Result<(), Status> {
    let bytes = msg.write_to_bytes().map_err(|e| {
        Status::internal(format!("cannot encode {}: {e}", std::any::type_name::<M>()))
    })?;
    dst.put_slice(&bytes);
    Ok(())
}

/// The decoding half of [`ProtobufCodec`].
pub struct ProtobufDecoder<D> {
    _type: PhantomData<fn() -> D>,
}

impl<D: Message> Decoder for ProtobufDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        decode_frame(src).map(Some)
    }
}

/// Decodes one message from all of `src` (what [`ProtobufDecoder`] does with
/// a frame's buffer, which may hold the frame in several chunks), with
/// [`crate::decode`]'s checks.
///
/// # Errors
///
/// `Status::internal` naming the message type, for bytes that are not a
/// valid encoding of `M`.
pub fn decode_frame<M: Message>(src: &mut impl Buf) -> Result<M, Status> {
    let len = src.remaining();
    let result = if src.chunk().len() == len {
        let r = crate::decode::<M>(src.chunk());
        src.advance(len);
        r
    } else {
        let bytes: Bytes = src.copy_to_bytes(len);
        crate::decode::<M>(&bytes)
    };
    result.map_err(|e| Status::internal(e.to_string()))
}

/// A gRPC transport the typed clients can run over (for example
/// `tonic::transport::Channel`): what tonic's client plumbing needs of it.
pub trait GrpcChannel:
    tonic::client::GrpcService<
    tonic::body::Body,
    Error: Into<StdError>,
    ResponseBody: http_body::Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
>
{
}

impl<T> GrpcChannel for T where
    T: tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<StdError>,
        ResponseBody: http_body::Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
    >
{
}

/// Sends one unary request on `inner`.
async fn call_unary<T: GrpcChannel, Req: Message, Resp: Message>(
    inner: &mut tonic::client::Grpc<T>,
    request: tonic::Request<Req>,
    path: &'static str,
) -> Result<Response<Resp>, Status> {
    inner
        .ready()
        .await
        .map_err(|e| Status::unavailable(format!("connection not ready: {}", e.into())))?;
    let codec = ProtobufCodec::<Req, Resp>::default();
    inner
        .unary(request, PathAndQuery::from_static(path), codec)
        .await
}

/// A client of the `Kv` service (client to store) over any gRPC transport
/// `T` (for example `tonic::transport::Channel`).
#[derive(Debug, Clone)]
pub struct KvClient<T> {
    inner: tonic::client::Grpc<T>,
}

macro_rules! kv_methods {
    ($($(#[$doc:meta])* $name:ident($req:ty) -> $resp:ty = $path:expr;)*) => {
        $(
            $(#[$doc])*
            ///
            /// # Errors
            ///
            /// A `Status` when the call fails at the gRPC level (connection
            /// refused or lost, deadline, malformed response). Errors of the
            /// store travel inside the response's `region_error`.
            pub async fn $name(
                &mut self,
                request: impl IntoRequest<$req>,
            ) -> Result<Response<$resp>, Status> {
                call_unary(&mut self.inner, request.into_request(), $path).await
            }
        )*
    };
}

impl<T: GrpcChannel> KvClient<T> {
    /// A client over `inner`.
    pub fn new(inner: T) -> Self {
        KvClient {
            inner: tonic::client::Grpc::new(inner),
        }
    }

    /// Refuses responses larger than `limit` bytes (tonic's default is
    /// 4 MiB).
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.inner = self.inner.max_decoding_message_size(limit);
        self
    }

    kv_methods! {
        /// `Kv.Get`: reads one key.
        get(GetRequest) -> GetResponse = paths::KV_GET;
        /// `Kv.Put`: writes one key.
        put(PutRequest) -> PutResponse = paths::KV_PUT;
        /// `Kv.Delete`: removes one key.
        delete(DeleteRequest) -> DeleteResponse = paths::KV_DELETE;
        /// `Kv.Scan`: reads a key range within one region.
        scan(ScanRequest) -> ScanResponse = paths::KV_SCAN;
        /// `Kv.BatchGet`: reads several keys of one region.
        batch_get(BatchGetRequest) -> BatchGetResponse = paths::KV_BATCH_GET;
        /// `Kv.BatchPut`: writes several keys of one region atomically.
        batch_put(BatchPutRequest) -> BatchPutResponse = paths::KV_BATCH_PUT;
        /// `Kv.GetRegion`: which region holds a key, its epoch and leader.
        get_region(GetRegionRequest) -> GetRegionResponse = paths::KV_GET_REGION;
        /// `Kv.ListRegions`: every region of the store.
        list_regions(ListRegionsRequest) -> ListRegionsResponse = paths::KV_LIST_REGIONS;
        /// `Kv.GetStores`: the stores of the cluster and their addresses.
        get_stores(GetStoresRequest) -> GetStoresResponse = paths::KV_GET_STORES;
        /// `Kv.BatchCommands`: several commands for the store's regions.
        batch_commands(BatchCommandsRequest) -> BatchCommandsResponse = paths::KV_BATCH_COMMANDS;
        /// `Kv.CompareAndSwap`: writes a key if it holds an expected value.
        compare_and_swap(CompareAndSwapRequest) -> CompareAndSwapResponse = paths::KV_COMPARE_AND_SWAP;
        /// `Kv.DeleteIfEqual`: removes a key if it holds an expected value.
        delete_if_equal(DeleteIfEqualRequest) -> DeleteIfEqualResponse = paths::KV_DELETE_IF_EQUAL;
        /// `Kv.AddStore`: registers a store joining the cluster.
        add_store(AddStoreRequest) -> AddStoreResponse = paths::KV_ADD_STORE;
        /// `Kv.AdminCommand`: changes a region's membership or leader.
        admin_command(AdminCommandRequest) -> AdminCommandResponse = paths::KV_ADMIN_COMMAND;
    }
}

/// A client of the `Raft` service (store to store) over any gRPC transport
/// `T`.
#[derive(Debug, Clone)]
pub struct RaftClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T: GrpcChannel> RaftClient<T> {
    /// A client over `inner`.
    pub fn new(inner: T) -> Self {
        RaftClient {
            inner: tonic::client::Grpc::new(inner),
        }
    }

    /// Refuses encoded batches larger than `limit` bytes.
    pub fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.inner = self.inner.max_encoding_message_size(limit);
        self
    }

    /// `Raft.BatchRaft`: streams `batches` to the store until the stream
    /// ends; resolves when the store answers (after the stream ended) or the
    /// call fails.
    ///
    /// # Errors
    ///
    /// A `Status` when the connection fails or the store refuses the stream.
    pub async fn batch_raft<S>(&mut self, batches: S) -> Result<Response<Done>, Status>
    where
        S: futures_core::Stream<Item = BatchRaftMessage> + Send + 'static,
    {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("connection not ready: {}", e.into())))?;
        let codec = ProtobufCodec::<BatchRaftMessage, Done>::default();
        self.inner
            .client_streaming(
                tonic::Request::new(batches),
                PathAndQuery::from_static(paths::RAFT_BATCH_RAFT),
                codec,
            )
            .await
    }

    /// `Raft.Snapshot`: streams one snapshot's `chunks` (the first carries
    /// the snapshot's message); resolves when the store answers, after it
    /// took the whole snapshot, or the call fails.
    ///
    /// # Errors
    ///
    /// A `Status` when the connection fails or the store refuses or cannot
    /// verify the snapshot.
    pub async fn snapshot<S>(&mut self, chunks: S) -> Result<Response<Done>, Status>
    where
        S: futures_core::Stream<Item = SnapshotChunk> + Send + 'static,
    {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("connection not ready: {}", e.into())))?;
        let codec = ProtobufCodec::<SnapshotChunk, Done>::default();
        self.inner
            .client_streaming(
                tonic::Request::new(chunks),
                PathAndQuery::from_static(paths::RAFT_SNAPSHOT),
                codec,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metapb::Peer;
    use crate::raft_serverpb::RaftMessage;
    use bytes::BytesMut;

    /// Encodes `msg` as the encoder does into a frame's buffer and decodes
    /// it back as the decoder does.
    fn through_codec<M: Message + Clone>(msg: &M) -> Result<M, Status> {
        let mut buf = BytesMut::new();
        encode_into(msg, &mut buf)?;
        assert_eq!(&buf[..], &crate::encode(msg).unwrap()[..]);
        let mut frozen = buf.freeze();
        let decoded = decode_frame(&mut frozen)?;
        assert!(frozen.is_empty());
        Ok(decoded)
    }

    #[test]
    fn decoding_a_split_buffer_reads_every_piece() {
        let mut req = GetRequest::default();
        req.set_key(b"a key longer than one piece".to_vec());
        let bytes = crate::encode(&req).unwrap();
        let (a, b) = bytes.split_at(5);
        let mut chained = Buf::chain(a, b);
        assert_eq!(decode_frame::<GetRequest>(&mut chained).unwrap(), req);
    }

    #[test]
    fn codec_round_trips_a_batch_of_raft_messages() {
        let mut batch = BatchRaftMessage::default();
        for i in 1..=3 {
            let mut m = RaftMessage::default();
            m.set_region_id(i);
            m.set_to_peer({
                let mut p = Peer::default();
                p.set_id(i + 10);
                p.set_store_id(2);
                p
            });
            m.mut_message().set_commit(i * 7);
            batch.mut_msgs().push(m);
        }
        assert_eq!(through_codec(&batch).unwrap(), batch);
    }

    #[test]
    fn codec_round_trips_an_empty_message() {
        assert_eq!(
            through_codec(&GetRequest::default()).unwrap(),
            GetRequest::default()
        );
    }

    #[test]
    fn malformed_bytes_are_an_internal_status() {
        // Field 2 (`key`) claiming 9 bytes with one following.
        let mut buf = &[0x12u8, 0x09, b'k'][..];
        let err = decode_frame::<GetRequest>(&mut buf).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        assert!(err.message().contains("GetRequest"), "{}", err.message());
    }

    #[test]
    fn every_path_is_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for m in METHODS {
            assert!(seen.insert(m.path), "duplicate path {}", m.path);
            let (package, rest) = m.path[1..].split_once('.').unwrap();
            let (_service, method) = rest.split_once('/').unwrap();
            assert!(m.request.starts_with(package) && m.response.starts_with(package));
            assert!(method.chars().next().unwrap().is_ascii_uppercase());
        }
    }
}
