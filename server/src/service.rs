//! [`StoreService`]: one gRPC service (a tower `Service` over HTTP/2
//! requests) serving both `kvrpcpb.Kv` and `transportpb.Raft` on one port,
//! dispatching on the request path.
//!
//! This is what tonic's generated server code does, written by hand because
//! the messages are rust-protobuf 2 types (see `kvproto_lite::grpc`): each
//! path decodes its request with [`ProtobufCodec`], calls the handler and
//! encodes its answer. Unknown paths answer gRPC status `Unimplemented`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use engine::KvEngine;
use kvproto_lite::errorpb;
use kvproto_lite::grpc::{paths, ProtobufCodec};
use kvproto_lite::kvrpcpb::{
    AddStoreResponse, AdminCommandResponse, BatchCommandsResponse, BatchGetResponse,
    BatchPutResponse, CompareAndSwapResponse, DeleteIfEqualResponse, DeleteResponse,
    GetRegionResponse, GetResponse, GetStoresResponse, ListRegionsResponse, PutResponse,
    ScanResponse,
};
use kvproto_lite::transportpb::{BatchRaftMessage, Done, SnapshotChunk};
use metrics::{counter, histogram};
use protobuf::Message;
use tonic::server::Grpc;
use tonic::Status;

use crate::kv_service::KvService;
use crate::raft_service::RaftService;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A store's gRPC endpoints: the client KV service and the store-to-store
/// raft stream, on one port. Give it to [`crate::Server::start`].
pub struct StoreService<EK: KvEngine> {
    kv: Arc<KvService<EK>>,
    raft: Arc<RaftService>,
    max_message_size: usize,
}

impl<EK: KvEngine> Clone for StoreService<EK> {
    fn clone(&self) -> Self {
        StoreService {
            kv: self.kv.clone(),
            raft: self.raft.clone(),
            max_message_size: self.max_message_size,
        }
    }
}

impl<EK: KvEngine> StoreService<EK> {
    /// Serves `kv` and `raft`, accepting and sending messages of at most
    /// `max_message_size` bytes.
    pub fn new(kv: KvService<EK>, raft: RaftService, max_message_size: usize) -> StoreService<EK> {
        StoreService {
            kv: Arc::new(kv),
            raft: Arc::new(raft),
            max_message_size,
        }
    }

    /// The services of store `store_id` over its `router` (commands and
    /// incoming raft messages), `meta` (leaders, from
    /// `RaftBatchSystem::store_meta`) and KV engine `kv`, with the limits of
    /// `cfg`.
    pub fn for_store<ER: engine::RaftLogEngine>(
        store_id: u64,
        router: &raftstore::RaftRouter<ER>,
        meta: Arc<raftstore::StoreMeta>,
        kv: EK,
        book: crate::AddressBook,
        cfg: &crate::Config,
        logger: &slog::Logger,
    ) -> StoreService<EK> {
        let kv = KvService::new(store_id, Arc::new(router.clone()), kv, meta, book, cfg);
        let raft = RaftService::new(store_id, Arc::new(router.clone()), logger);
        StoreService::new(kv, raft, cfg.max_message_size)
    }

    /// Ends the raft streams being served (see
    /// [`RaftService::close_streams`]).
    pub(crate) fn close_streams(&self) {
        self.raft.close_streams();
    }

    async fn dispatch<B>(self, req: http::Request<B>) -> http::Response<tonic::body::Body>
    where
        B: http_body::Body + Send + 'static,
        B::Error: Into<BoxError> + Send + 'static,
    {
        let kv = self.kv.clone();
        let max = self.max_message_size;
        let Some(route) = Route::of(req.uri().path()) else {
            let path = req.uri().path().to_owned();
            return Status::unimplemented(format!("no method {path}")).into_http();
        };
        match route {
            Route::Get => unary(max, route, req, move |r| async move { kv.get(r).await }).await,
            Route::Put => unary(max, route, req, move |r| async move { kv.put(r).await }).await,
            Route::Delete => {
                unary(max, route, req, move |r| async move { kv.delete(r).await }).await
            }
            Route::Scan => unary(max, route, req, move |r| async move { kv.scan(r).await }).await,
            Route::BatchGet => {
                unary(
                    max,
                    route,
                    req,
                    move |r| async move { kv.batch_get(r).await },
                )
                .await
            }
            Route::BatchPut => {
                unary(
                    max,
                    route,
                    req,
                    move |r| async move { kv.batch_put(r).await },
                )
                .await
            }
            Route::GetRegion => {
                unary(
                    max,
                    route,
                    req,
                    move |r| async move { kv.get_region(r).await },
                )
                .await
            }
            Route::ListRegions => {
                unary(
                    max,
                    route,
                    req,
                    move |r| async move { kv.list_regions(r).await },
                )
                .await
            }
            Route::BatchCommands => {
                unary(max, route, req, move |r| async move {
                    kv.batch_commands(r).await
                })
                .await
            }
            Route::GetStores => {
                unary(
                    max,
                    route,
                    req,
                    move |r| async move { kv.get_stores(r).await },
                )
                .await
            }
            Route::CompareAndSwap => {
                unary(max, route, req, move |r| async move {
                    kv.compare_and_swap(r).await
                })
                .await
            }
            Route::DeleteIfEqual => {
                unary(max, route, req, move |r| async move {
                    kv.delete_if_equal(r).await
                })
                .await
            }
            Route::AddStore => {
                unary(
                    max,
                    route,
                    req,
                    move |r| async move { kv.add_store(r).await },
                )
                .await
            }
            Route::AdminCommand => {
                unary(max, route, req, move |r| async move {
                    kv.admin_command(r).await
                })
                .await
            }
            Route::BatchRaft => {
                let raft = self.raft.clone();
                let mut grpc = Grpc::new(ProtobufCodec::<Done, BatchRaftMessage>::default())
                    .max_decoding_message_size(max);
                let handler = Handler::new(move |s| async move { raft.batch_raft(s).await });
                grpc.client_streaming(handler, req).await
            }
            Route::Snapshot => {
                let raft = self.raft.clone();
                let mut grpc = Grpc::new(ProtobufCodec::<Done, SnapshotChunk>::default())
                    .max_decoding_message_size(max);
                let handler = Handler::new(move |s| async move { raft.snapshot(s).await });
                grpc.client_streaming(handler, req).await
            }
        }
    }
}

/// Serves one unary request with `f`, recording the request count,
/// duration and region errors of `route`.
async fn unary<Req, Resp, F, Fut, B>(
    max_message_size: usize,
    route: Route,
    req: http::Request<B>,
    f: F,
) -> http::Response<tonic::body::Body>
where
    Req: Message,
    Resp: Message + RegionError,
    F: FnOnce(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    let started = Instant::now();
    let mut grpc = Grpc::new(ProtobufCodec::<Resp, Req>::default())
        .max_decoding_message_size(max_message_size)
        .max_encoding_message_size(max_message_size);
    let handler = Handler::new(move |r| {
        let fut = f(r);
        async move {
            let resp = fut.await;
            for e in resp.region_errors() {
                counter!("kv_request_errors_total", "method" => route.name(), "kind" => kvproto_lite::util::error_kind(e))
                    .increment(1);
            }
            Ok(resp)
        }
    });
    let resp = grpc.unary(handler, req).await;
    counter!("kv_requests_total", "method" => route.name()).increment(1);
    histogram!("kv_request_duration_seconds", "method" => route.name())
        .record(started.elapsed().as_secs_f64());
    resp
}

impl<EK, B> tower_service::Service<http::Request<B>> for StoreService<EK>
where
    EK: KvEngine,
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.dispatch(req).await) })
    }
}

/// The methods this service serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Get,
    Put,
    Delete,
    Scan,
    BatchGet,
    BatchPut,
    GetRegion,
    ListRegions,
    GetStores,
    BatchCommands,
    CompareAndSwap,
    DeleteIfEqual,
    AddStore,
    AdminCommand,
    BatchRaft,
    Snapshot,
}

impl Route {
    /// The method's name in metric labels.
    fn name(self) -> &'static str {
        match self {
            Route::Get => "get",
            Route::Put => "put",
            Route::Delete => "delete",
            Route::Scan => "scan",
            Route::BatchGet => "batch_get",
            Route::BatchPut => "batch_put",
            Route::GetRegion => "get_region",
            Route::ListRegions => "list_regions",
            Route::GetStores => "get_stores",
            Route::BatchCommands => "batch_commands",
            Route::CompareAndSwap => "compare_and_swap",
            Route::DeleteIfEqual => "delete_if_equal",
            Route::AddStore => "add_store",
            Route::AdminCommand => "admin_command",
            Route::BatchRaft => "batch_raft",
            Route::Snapshot => "snapshot",
        }
    }

    fn of(path: &str) -> Option<Route> {
        Some(match path {
            paths::KV_GET => Route::Get,
            paths::KV_PUT => Route::Put,
            paths::KV_DELETE => Route::Delete,
            paths::KV_SCAN => Route::Scan,
            paths::KV_BATCH_GET => Route::BatchGet,
            paths::KV_BATCH_PUT => Route::BatchPut,
            paths::KV_GET_REGION => Route::GetRegion,
            paths::KV_LIST_REGIONS => Route::ListRegions,
            paths::KV_GET_STORES => Route::GetStores,
            paths::KV_BATCH_COMMANDS => Route::BatchCommands,
            paths::KV_COMPARE_AND_SWAP => Route::CompareAndSwap,
            paths::KV_DELETE_IF_EQUAL => Route::DeleteIfEqual,
            paths::KV_ADD_STORE => Route::AddStore,
            paths::KV_ADMIN_COMMAND => Route::AdminCommand,
            paths::RAFT_BATCH_RAFT => Route::BatchRaft,
            paths::RAFT_SNAPSHOT => Route::Snapshot,
            _ => return None,
        })
    }
}

/// A one-shot tower service around a handler function: what
/// `tonic::server::Grpc` calls with the decoded request.
struct Handler<F>(Option<F>);

impl<F> Handler<F> {
    fn new(f: F) -> Handler<F> {
        Handler(Some(f))
    }
}

impl<Req, Resp, F, Fut> tower_service::Service<tonic::Request<Req>> for Handler<F>
where
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    Resp: Send + 'static,
{
    type Response = tonic::Response<Resp>;
    type Error = Status;
    type Future = BoxFuture<Result<tonic::Response<Resp>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::Request<Req>) -> Self::Future {
        match self.0.take() {
            Some(f) => {
                let fut = f(req.into_inner());
                Box::pin(async move { fut.await.map(tonic::Response::new) })
            }
            None => Box::pin(async { Err(Status::internal("handler called twice")) }),
        }
    }
}

/// Responses that carry `errorpb::Error`s.
trait RegionError {
    fn region_errors(&self) -> Vec<&errorpb::Error>;
}

macro_rules! region_error_field {
    ($($t:ty),*) => {
        $(impl RegionError for $t {
            fn region_errors(&self) -> Vec<&errorpb::Error> {
                self.has_region_error().then(|| self.get_region_error()).into_iter().collect()
            }
        })*
    };
}

region_error_field!(
    GetResponse,
    PutResponse,
    DeleteResponse,
    ScanResponse,
    BatchGetResponse,
    BatchPutResponse,
    GetRegionResponse,
    CompareAndSwapResponse,
    DeleteIfEqualResponse
);

impl RegionError for AdminCommandResponse {
    fn region_errors(&self) -> Vec<&errorpb::Error> {
        let h = self.get_response().get_header();
        h.has_error().then(|| h.get_error()).into_iter().collect()
    }
}

impl RegionError for AddStoreResponse {
    fn region_errors(&self) -> Vec<&errorpb::Error> {
        self.has_error()
            .then(|| self.get_error())
            .into_iter()
            .collect()
    }
}

impl RegionError for ListRegionsResponse {
    fn region_errors(&self) -> Vec<&errorpb::Error> {
        Vec::new()
    }
}

impl RegionError for GetStoresResponse {
    fn region_errors(&self) -> Vec<&errorpb::Error> {
        Vec::new()
    }
}

/// Every refused command of the batch.
impl RegionError for BatchCommandsResponse {
    fn region_errors(&self) -> Vec<&errorpb::Error> {
        self.get_responses()
            .iter()
            .filter(|r| r.get_header().has_error())
            .map(|r| r.get_header().get_error())
            .collect()
    }
}
