//! The remote client (feature `grpc`): [`GrpcBackend`] carries commands to
//! stores over gRPC, [`AsyncClient`] drives the same [`Call`] state machine
//! as the blocking [`Client`](crate::Client) on tokio.
//!
//! ```text
//! AsyncClient::put ... Call (routing, retries: the shared sans-IO core)
//!        | Step::Send { store, command }
//!        v
//! GrpcBackend::send -> per-store queue -> store task: what is queued, up to
//!                                         max_batch commands, becomes one
//!                                         Kv.BatchCommands call (several in
//!                                         flight per store)
//!        ^                                        |
//!        +------ each command's response ---------+
//! ```
//!
//! Batching is what makes many small operations affordable over gRPC: a
//! call's fixed cost (HTTP/2 frames, headers, a task wake-up on each side)
//! is paid once per batch instead of once per operation. [`GrpcBackend`]
//! also implements the blocking [`Backend`], so [`Client`](crate::Client)
//! runs over the network unchanged (from threads outside the runtime).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kvproto_lite::grpc::KvClient;
use kvproto_lite::kvrpcpb::{
    AdminCommandRequest, BatchCommandsRequest, Context, GetStoresRequest, KvPair,
    ListRegionsRequest, RegionInfo, ScanRequest,
};
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::{
    CmdType, RaftCmdRequest, RaftCmdResponse, ReadMode, Request, Response,
};
use kvproto_lite::util;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::transport::{Channel, Endpoint};

use crate::backend::{Backend, BackendError};
use crate::call::{Call, Step};
use crate::classify::ErrorClass;
use crate::error::{ClientError, Result};
use crate::options::ClientOptions;
use crate::region_cache::RegionCache;
use crate::request::{
    cas_outcome, compare_and_swap_request, delete_if_equal_request, delete_request, get_request,
    get_value, put_request, CasOutcome,
};
use crate::routing::{Routing, Verdict};
use crate::session::{Session, SessionPool};

/// Settings of a [`GrpcBackend`].
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    /// Deadline of one connection attempt.
    pub connect_timeout: Duration,
    /// Most commands in one `BatchCommands` call.
    pub max_batch: usize,
    /// Most `BatchCommands` calls in flight to one store.
    pub max_batches_in_flight: usize,
    /// Largest message sent or accepted, in bytes.
    pub max_message_size: usize,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        GrpcOptions {
            connect_timeout: Duration::from_secs(2),
            max_batch: 256,
            max_batches_in_flight: 8,
            max_message_size: 64 * 1024 * 1024,
        }
    }
}

/// A queued command and where its answer goes.
struct Queued {
    command: RaftCmdRequest,
    reply: oneshot::Sender<std::result::Result<RaftCmdResponse, BackendError>>,
}

struct Inner {
    stores: RwLock<BTreeMap<u64, String>>,
    queues: Mutex<HashMap<u64, mpsc::UnboundedSender<Queued>>>,
    handle: Handle,
    opts: GrpcOptions,
}

/// Carries commands to stores over gRPC (`Kv.BatchCommands`), batching the
/// commands in flight to each store.
///
/// Cloning gives another handle to the same connections. Made by
/// [`GrpcBackend::connect`] inside a tokio runtime, whose tasks carry the
/// calls.
#[derive(Clone)]
pub struct GrpcBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GrpcBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcBackend")
            .field("stores", &self.stores())
            .finish_non_exhaustive()
    }
}

/// The connection to `addr` (`host:port`); it connects on first use and
/// reconnects by itself after a failure.
fn channel(addr: &str, opts: &GrpcOptions) -> std::result::Result<Channel, BackendError> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| BackendError::Unreachable(format!("bad address {addr:?}: {e}")))?
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

fn kv_client(
    addr: &str,
    opts: &GrpcOptions,
) -> std::result::Result<KvClient<Channel>, BackendError> {
    Ok(KvClient::new(channel(addr, opts)?).max_decoding_message_size(opts.max_message_size))
}

/// A failed call's error: `Unavailable` (no connection) means the command
/// was not delivered; anything else leaves its outcome unknown.
fn status_error(addr: &str, status: &tonic::Status) -> BackendError {
    if status.code() == tonic::Code::Unavailable {
        BackendError::Unreachable(format!("{addr}: {}", status.message()))
    } else {
        BackendError::Timeout
    }
}

impl GrpcBackend {
    /// Learns the cluster's stores from the first of `endpoints`
    /// (`host:port`) that answers `GetStores`. Must run inside a tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`BackendError::Unreachable`] when no endpoint answers.
    pub async fn connect(
        endpoints: &[String],
        opts: GrpcOptions,
    ) -> std::result::Result<GrpcBackend, BackendError> {
        let mut last = "no endpoints given".to_owned();
        for addr in endpoints {
            let mut client = kv_client(addr, &opts)?;
            let answer = tokio::time::timeout(
                opts.connect_timeout,
                client.get_stores(GetStoresRequest::default()),
            )
            .await;
            match answer {
                Ok(Ok(resp)) => {
                    let stores = resp
                        .get_ref()
                        .get_stores()
                        .iter()
                        .map(|s| (s.get_id(), s.get_address().to_owned()))
                        .collect();
                    return Ok(GrpcBackend {
                        inner: Arc::new(Inner {
                            stores: RwLock::new(stores),
                            queues: Mutex::new(HashMap::new()),
                            handle: Handle::current(),
                            opts,
                        }),
                    });
                }
                Ok(Err(status)) => last = format!("{addr}: {}", status.message()),
                Err(_) => last = format!("{addr}: no answer in {:?}", opts.connect_timeout),
            }
        }
        Err(BackendError::Unreachable(format!(
            "no endpoint answered ({}): {last}",
            endpoints.join(",")
        )))
    }

    /// The stores the backend knows, by id, with their addresses.
    pub fn stores(&self) -> BTreeMap<u64, String> {
        self.inner
            .stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks the stores the backend knows for the stores they know
    /// (`Kv.GetStores`) and adds what is new: how the backend learns of a
    /// store that joined the cluster after it connected. The first store
    /// that answers is enough.
    ///
    /// # Errors
    ///
    /// [`BackendError::Unreachable`] when no store answers.
    pub async fn refresh_stores(&self) -> std::result::Result<(), BackendError> {
        let mut last = String::from("no store known");
        for (_, addr) in self.stores() {
            let mut client = kv_client(&addr, &self.inner.opts)?;
            match tokio::time::timeout(
                self.inner.opts.connect_timeout,
                client.get_stores(GetStoresRequest::default()),
            )
            .await
            {
                Ok(Ok(resp)) => {
                    let mut stores = self.inner.stores.write().unwrap_or_else(|e| e.into_inner());
                    for s in resp.get_ref().get_stores() {
                        stores.insert(s.get_id(), s.get_address().to_owned());
                    }
                    return Ok(());
                }
                Ok(Err(status)) => last = format!("{addr}: {}", status.message()),
                Err(_) => last = format!("{addr}: no answer"),
            }
        }
        Err(BackendError::Unreachable(last))
    }

    /// The address of `store_id`, asking the known stores once when it is
    /// unknown (a store that joined later).
    async fn resolve(&self, store_id: u64) -> std::result::Result<String, BackendError> {
        match self.address(store_id) {
            Ok(addr) => Ok(addr),
            Err(e) => {
                if self.refresh_stores().await.is_err() {
                    return Err(e);
                }
                self.address(store_id)
            }
        }
    }

    fn address(&self, store_id: u64) -> std::result::Result<String, BackendError> {
        self.inner
            .stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&store_id)
            .cloned()
            .ok_or_else(|| {
                BackendError::Unreachable(format!("store {store_id} has no known address"))
            })
    }

    /// The queue of `store_id`'s batching task, started on first use.
    fn queue(
        &self,
        store_id: u64,
    ) -> std::result::Result<mpsc::UnboundedSender<Queued>, BackendError> {
        let mut queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = queues.get(&store_id) {
            if !q.is_closed() {
                return Ok(q.clone());
            }
        }
        let addr = self.address(store_id)?;
        let client = kv_client(&addr, &self.inner.opts)?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .handle
            .spawn(run_store(addr, client, rx, self.inner.opts.clone()));
        queues.insert(store_id, tx.clone());
        Ok(tx)
    }

    /// Sends `command` to store `store_id` (in the next batch to it; an
    /// administrative command on its own `Kv.AdminCommand` call) and waits
    /// at most `timeout` for its response.
    ///
    /// # Errors
    ///
    /// [`BackendError::Unreachable`] when the store is unknown or cannot be
    /// reached; [`BackendError::Timeout`] when no answer came in time or
    /// the call failed after the command was sent.
    pub async fn send(
        &self,
        store_id: u64,
        command: RaftCmdRequest,
        timeout: Duration,
    ) -> std::result::Result<RaftCmdResponse, BackendError> {
        let addr = self.resolve(store_id).await?;
        if command.has_admin_request() {
            let mut client = kv_client(&addr, &self.inner.opts)?;
            let mut req = AdminCommandRequest::default();
            req.set_command(command);
            return match tokio::time::timeout(timeout, client.admin_command(req)).await {
                Ok(Ok(resp)) => Ok(resp.into_inner().take_response()),
                Ok(Err(status)) => Err(status_error(&addr, &status)),
                Err(_) => Err(BackendError::Timeout),
            };
        }
        let (reply, answer) = oneshot::channel();
        self.queue(store_id)?
            .send(Queued { command, reply })
            .map_err(|_| {
                BackendError::Unreachable(format!("store {store_id}: connection closed"))
            })?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(BackendError::Timeout),
            Err(_) => Err(BackendError::Timeout),
        }
    }

    /// `Kv.Scan` on store `store_id`.
    ///
    /// # Errors
    ///
    /// As [`GrpcBackend::send`].
    pub async fn scan(
        &self,
        store_id: u64,
        request: ScanRequest,
        timeout: Duration,
    ) -> std::result::Result<kvproto_lite::kvrpcpb::ScanResponse, BackendError> {
        let addr = self.resolve(store_id).await?;
        let mut client = kv_client(&addr, &self.inner.opts)?;
        match tokio::time::timeout(timeout, client.scan(request)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(status_error(&addr, &status)),
            Err(_) => Err(BackendError::Timeout),
        }
    }

    /// Every region as the reachable stores report them (`Kv.ListRegions`):
    /// for each region the newest epoch and the leader seen in the highest
    /// term, by start key.
    ///
    /// # Errors
    ///
    /// [`BackendError::Unreachable`] when no store answers.
    pub async fn list_regions(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Vec<RegionInfo>, BackendError> {
        let mut merged: HashMap<u64, RegionInfo> = HashMap::new();
        let mut answered = 0;
        let mut last = String::from("no store known");
        for (_, addr) in self.stores() {
            let mut client = kv_client(&addr, &self.inner.opts)?;
            let resp = match tokio::time::timeout(
                timeout,
                client.list_regions(ListRegionsRequest::default()),
            )
            .await
            {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(status)) => {
                    last = format!("{addr}: {}", status.message());
                    continue;
                }
                Err(_) => {
                    last = format!("{addr}: no answer in {timeout:?}");
                    continue;
                }
            };
            answered += 1;
            for info in resp.get_regions() {
                merge_region_info(&mut merged, info);
            }
        }
        if answered == 0 {
            return Err(BackendError::Unreachable(last));
        }
        let mut list: Vec<RegionInfo> = merged.into_values().collect();
        list.sort_by(|a, b| {
            a.get_region()
                .get_start_key()
                .cmp(b.get_region().get_start_key())
        });
        Ok(list)
    }
}

/// Folds one store's view of a region into `merged`: the newer epoch wins
/// the metadata, the higher term the leader.
fn merge_region_info(merged: &mut HashMap<u64, RegionInfo>, info: &RegionInfo) {
    let id = info.get_region().get_id();
    let slot = merged.entry(id).or_insert_with(|| info.clone());
    let (a, b) = (
        info.get_region().get_region_epoch(),
        slot.get_region().get_region_epoch(),
    );
    if (a.get_version(), a.get_conf_ver()) > (b.get_version(), b.get_conf_ver()) {
        slot.set_region(info.get_region().clone());
    }
    if info.has_leader() && info.get_leader_term() >= slot.get_leader_term() {
        slot.set_leader(info.get_leader().clone());
        slot.set_leader_term(info.get_leader_term());
    }
}

/// The batching task of one store: every command queued while a call is
/// being prepared joins it, up to `max_batch`; at most
/// `max_batches_in_flight` calls are outstanding.
async fn run_store(
    addr: String,
    client: KvClient<Channel>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    opts: GrpcOptions,
) {
    let in_flight = Arc::new(Semaphore::new(opts.max_batches_in_flight.max(1)));
    let addr: Arc<str> = addr.into();
    while let Some(first) = queue.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < opts.max_batch.max(1) {
            match queue.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let mut client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut req = BatchCommandsRequest::default();
            let mut replies = Vec::with_capacity(batch.len());
            for q in batch {
                req.mut_commands().push(q.command);
                replies.push(q.reply);
            }
            match client.batch_commands(req).await {
                Ok(resp) => {
                    let responses = resp.into_inner().take_responses().into_vec();
                    if responses.len() == replies.len() {
                        for (r, tx) in responses.into_iter().zip(replies) {
                            let _ = tx.send(Ok(r));
                        }
                    } else {
                        // The store broke the contract: outcome unknown.
                        for tx in replies {
                            let _ = tx.send(Err(BackendError::Timeout));
                        }
                    }
                }
                Err(status) => {
                    let err = status_error(&addr, &status);
                    for tx in replies {
                        let _ = tx.send(Err(err.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

impl Backend for GrpcBackend {
    /// Blocks on [`GrpcBackend::send`]; for threads outside the backend's
    /// runtime (a call from inside a runtime is refused, since blocking
    /// there could stall the runtime that must carry the call).
    fn call(
        &self,
        store_id: u64,
        command: RaftCmdRequest,
        timeout: Duration,
    ) -> std::result::Result<RaftCmdResponse, BackendError> {
        if Handle::try_current().is_ok() {
            return Err(BackendError::Unreachable(
                "the blocking backend was called from inside a tokio runtime: use AsyncClient there"
                    .to_owned(),
            ));
        }
        self.inner
            .handle
            .block_on(self.send(store_id, command, timeout))
    }
}

/// A key-value client of remote stores on tokio: the [`Call`] state machine
/// of the blocking [`Client`](crate::Client) (the same routing, retries and
/// backoff) driven with async I/O and tokio's timers, over a
/// [`GrpcBackend`].
///
/// Operations take `&self` and may run concurrently: clones share the
/// connections, the batches and the region and leader caches (held under a
/// lock only while the call's state machine takes a step, never across an
/// await).
///
/// Writes are exactly-once: each carries a client session (client id and
/// sequence number, see [`Session`]) that every retry of it repeats, so a
/// write retried after a timeout or a lost answer is applied at most once.
/// Since a session numbers one write at a time, each write borrows a
/// session no other write in flight holds, from a [`SessionPool`] shared by
/// the clones (as many sessions as the most writes ever in flight at once).
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use client::grpc::{AsyncClient, GrpcOptions};
///
/// let endpoints = vec!["127.0.0.1:20161".to_owned()];
/// let kv = AsyncClient::connect(&endpoints, Default::default(), GrpcOptions::default()).await?;
/// kv.put(b"hello", b"world").await?;
/// assert_eq!(kv.get(b"hello").await?, Some(b"world".to_vec()));
/// for (k, v) in kv.scan(b"", b"", 10).await? {
///     println!("{k:?} = {v:?}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AsyncClient {
    backend: GrpcBackend,
    routing: Arc<Mutex<Routing>>,
    sessions: Arc<Mutex<SessionPool>>,
    /// Reads issued (spreads follower reads over the peers).
    reads: Arc<AtomicUsize>,
    opts: ClientOptions,
    started: Instant,
}

/// A session borrowed from the pool for one write, given back when dropped
/// (also when the write's future is dropped mid-flight: a later write
/// numbered higher is safe, see [`SessionPool::release`]).
struct Lease {
    pool: Arc<Mutex<SessionPool>>,
    session: Option<Session>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.pool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(s);
        }
    }
}

/// One region's part of a scan.
struct ScanPart {
    region: Region,
    pairs: Vec<KvPair>,
    cap: usize,
}

impl AsyncClient {
    /// Connects through `endpoints` (see [`GrpcBackend::connect`]) and
    /// learns the regions and their leaders from the stores.
    ///
    /// # Errors
    ///
    /// [`ClientError::Unreachable`] when no store answers.
    pub async fn connect(
        endpoints: &[String],
        opts: ClientOptions,
        grpc: GrpcOptions,
    ) -> Result<AsyncClient> {
        let backend = GrpcBackend::connect(endpoints, grpc)
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        AsyncClient::new(backend, opts).await
    }

    /// A client over `backend`, with the regions and leaders the stores
    /// report.
    ///
    /// # Errors
    ///
    /// [`ClientError::Unreachable`] when no store answers.
    pub async fn new(backend: GrpcBackend, opts: ClientOptions) -> Result<AsyncClient> {
        let client = AsyncClient {
            backend,
            routing: Arc::new(Mutex::new(Routing::default())),
            sessions: Arc::new(Mutex::new(SessionPool::new())),
            reads: Arc::new(AtomicUsize::new(0)),
            opts,
            started: Instant::now(),
        };
        client.refresh_regions().await?;
        Ok(client)
    }

    /// Replaces the region and leader caches with what the stores report
    /// now.
    ///
    /// # Errors
    ///
    /// [`ClientError::Unreachable`] when no store answers.
    pub async fn refresh_regions(&self) -> Result<()> {
        let infos = self.regions().await?;
        let regions = infos.iter().map(|i| i.get_region().clone()).collect();
        let mut routing = Routing::new(RegionCache::new(regions));
        for i in &infos {
            if i.has_leader() {
                routing.set_leader(i.get_region().get_id(), i.get_leader().get_store_id());
            }
        }
        *self.lock() = routing;
        Ok(())
    }

    /// Every region of the cluster (see [`GrpcBackend::list_regions`]).
    ///
    /// # Errors
    ///
    /// [`ClientError::Unreachable`] when no store answers.
    pub async fn regions(&self) -> Result<Vec<RegionInfo>> {
        self.backend
            .list_regions(self.opts.attempt_timeout)
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))
    }

    /// The backend (share it with [`Client`](crate::Client)s or other
    /// async clients).
    pub fn backend(&self) -> &GrpcBackend {
        &self.backend
    }

    /// A copy of the client's routing state (regions and leaders it
    /// believes in).
    pub fn routing(&self) -> Routing {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routing> {
        // The routing caches stay consistent across a panic elsewhere (each
        // update is one call on them).
        self.routing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `value` under `key`.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.execute(key, put_request(key.to_vec(), value.to_vec()))
            .await
            .map(|_| ())
    }

    /// Reads `key` through the raft log (linearizable).
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(key, ReadMode::Log).await
    }

    /// Reads `key` served as `mode` says (every mode is linearizable; see
    /// [`ReadMode`]; a `Follower` read goes to any peer of the region).
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub async fn get_with(&self, key: &[u8], mode: ReadMode) -> Result<Option<Vec<u8>>> {
        get_value(self.run(key, get_request(key.to_vec()), mode).await?)
    }

    /// Writes `value` under `key` if the key holds `expected` (`None`: if it
    /// has no value); reports whether it did and the previous value. A
    /// retried swap that succeeded reports success (its saved answer), not
    /// a failure against its own write.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<CasOutcome> {
        let req =
            compare_and_swap_request(key.to_vec(), expected.map(<[u8]>::to_vec), value.to_vec());
        cas_outcome(self.execute(key, req).await?)
    }

    /// Deletes `key` if it holds `expected`; reports whether it did and the
    /// previous value.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub async fn delete_if_equal(&self, key: &[u8], expected: &[u8]) -> Result<CasOutcome> {
        let req = delete_if_equal_request(key.to_vec(), expected.to_vec());
        cas_outcome(self.execute(key, req).await?)
    }

    /// Deletes `key`.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub async fn delete(&self, key: &[u8]) -> Result<()> {
        self.execute(key, delete_request(key.to_vec()))
            .await
            .map(|_| ())
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs one request on the region of `key`, with the retries of
    /// [`Call`]; a key no cached region covers refreshes the regions once.
    /// A write (anything but a Get) carries a session with a new sequence
    /// number, which all its attempts repeat.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub async fn execute(&self, key: &[u8], request: Request) -> Result<Response> {
        self.run(key, request, ReadMode::Log).await
    }

    async fn run(&self, key: &[u8], request: Request, mode: ReadMode) -> Result<Response> {
        let started = self.now();
        let is_read = request.get_cmd_type() == CmdType::Get;
        // A read numbers nothing: a throwaway session, not one of the pool.
        let mut lease = Lease {
            pool: self.sessions.clone(),
            session: None,
        };
        let mut unused = Session::new(u64::MAX);
        let session = if is_read {
            &mut unused
        } else {
            let s = self
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .acquire();
            lease.session.insert(s)
        };
        let spread = if is_read {
            self.reads.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let mut call = Call::for_request(
            key.to_vec(),
            request,
            mode,
            spread,
            session,
            started,
            &self.opts,
        );
        let first = call.start(&mut self.lock(), started);
        match self.drive(&mut call, first).await {
            // Nothing was sent for a key no cached region covers: learn the
            // regions and route the same call (same session sequence) again.
            Err(ClientError::NoRegion(_)) => {
                self.refresh_regions().await?;
                let now = self.now();
                let step = call.on_wake(&mut self.lock(), now);
                self.drive(&mut call, step).await
            }
            other => other,
        }
    }

    /// Steps `call` from `step` until it is done.
    async fn drive(&self, call: &mut Call, mut step: Step) -> Result<Response> {
        loop {
            step = match step {
                Step::Send {
                    attempt,
                    store_id,
                    command,
                } => {
                    let answer = self
                        .backend
                        .send(store_id, command, self.opts.attempt_timeout)
                        .await;
                    let now = self.now();
                    call.on_answer(&mut self.lock(), attempt, answer, now)
                }
                Step::Wait { until } => {
                    tokio::time::sleep(until.saturating_sub(self.now())).await;
                    let now = self.now();
                    call.on_wake(&mut self.lock(), now)
                }
                Step::Done(result) => return result,
            };
        }
    }

    /// The pairs with `start <= key < end` (empty `end`: no bound), in key
    /// order, at most `limit` (0: all), region after region; each region's
    /// part is linearizable (see the store's `Kv.Scan`).
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_with(start, end, limit, ReadMode::Log).await
    }

    /// [`AsyncClient::scan`] with each region's part served as `mode` says
    /// (a `Follower` scan asks any peer of each region).
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub async fn scan_with(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        mode: ReadMode,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut cursor = start.to_vec();
        loop {
            let want = if limit == 0 {
                0
            } else {
                u32::try_from(limit - out.len()).unwrap_or(u32::MAX)
            };
            let part = self.scan_region(&cursor, end, want, mode).await?;
            let full = part.cap > 0 && part.pairs.len() >= part.cap;
            let last = part.pairs.last().map(|p| p.get_key().to_vec());
            out.extend(
                part.pairs
                    .into_iter()
                    .map(|mut p| (p.take_key(), p.take_value())),
            );
            if limit != 0 && out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            cursor = match last {
                // More may follow in this region: continue after the last key.
                Some(mut k) if full => {
                    k.push(0);
                    k
                }
                // The region is exhausted: continue in the next one.
                _ => {
                    let region_end = part.region.get_end_key();
                    if region_end.is_empty() || (!end.is_empty() && region_end >= end) {
                        return Ok(out);
                    }
                    region_end.to_vec()
                }
            };
        }
    }

    /// One `Kv.Scan` on the region holding `cursor`, routed and retried like
    /// a [`Call`]: the same routing, learning and backoff.
    async fn scan_region(
        &self,
        cursor: &[u8],
        end: &[u8],
        limit: u32,
        mode: ReadMode,
    ) -> Result<ScanPart> {
        let spread = self.reads.fetch_add(1, Ordering::Relaxed);
        let started = self.now();
        let deadline = self.opts.deadline(started);
        let mut backoff = self.opts.backoff();
        let mut attempts = 0usize;
        let mut refreshed = false;
        let mut last_error = String::from("none");
        loop {
            let now = self.now();
            if deadline.expired(now) {
                return Err(ClientError::Timeout {
                    attempts,
                    last_error,
                });
            }
            let routed = if mode == ReadMode::Follower {
                self.lock()
                    .route_any_peer(cursor, |n| (spread + attempts) % n)
            } else {
                self.lock().route(cursor, |n| attempts % n)
            };
            let route = match routed {
                Ok(r) => r,
                Err(e) if !refreshed => {
                    last_error = e.to_string();
                    refreshed = true;
                    self.refresh_regions().await?;
                    continue;
                }
                Err(_) => return Err(ClientError::NoRegion(cursor.to_vec())),
            };
            attempts += 1;
            let Some(region) = self.lock().regions().locate(cursor).cloned() else {
                continue;
            };
            let mut ctx = Context::default();
            ctx.set_region_id(route.region_id());
            ctx.set_region_epoch(route.epoch().clone());
            ctx.set_peer(route.peer().clone());
            let mut req = ScanRequest::default();
            req.set_context(ctx);
            req.set_start_key(cursor.to_vec());
            req.set_end_key(end.to_vec());
            req.set_limit(limit);
            req.set_read_mode(mode);
            let answer = self
                .backend
                .scan(route.store_id(), req, self.opts.attempt_timeout)
                .await;
            let mut resp = match answer {
                Ok(resp) => resp,
                Err(e) => {
                    self.lock().forget_leader(route.region_id());
                    last_error = e.to_string();
                    let wait = backoff.next_delay().min(deadline.remaining(self.now()));
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let as_cmd = match resp.has_region_error() {
                true => util::error_response(resp.take_region_error(), 0),
                false => RaftCmdResponse::default(),
            };
            let verdict = if mode == ReadMode::Follower && !as_cmd.get_header().has_error() {
                // Any peer answers a follower scan: it says nothing of the
                // leader.
                Verdict::Succeeded
            } else {
                self.lock().learn(&route, &as_cmd)
            };
            match verdict {
                Verdict::Succeeded => {
                    return Ok(ScanPart {
                        region,
                        cap: resp.get_limit() as usize,
                        pairs: resp.take_pairs().into_vec(),
                    })
                }
                Verdict::Error(class) => {
                    let err = as_cmd.get_header().get_error();
                    last_error = err.get_message().to_owned();
                    match class {
                        ErrorClass::RetryNow => {}
                        ErrorClass::Fail => return Err(ClientError::Store(err.clone())),
                        ErrorClass::RetryLater | ErrorClass::Unknown => {
                            let wait = backoff.next_delay().min(deadline.remaining(self.now()));
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64, version: u64, leader_store: Option<u64>, term: u64) -> RegionInfo {
        let mut i = RegionInfo::default();
        i.mut_region().set_id(id);
        i.mut_region().mut_region_epoch().set_version(version);
        if let Some(s) = leader_store {
            i.mut_leader().set_store_id(s);
        }
        i.set_leader_term(term);
        i
    }

    #[test]
    fn merging_keeps_the_newest_epoch_and_the_highest_term_leader() {
        let mut merged = HashMap::new();
        merge_region_info(&mut merged, &info(1, 1, Some(1), 5));
        merge_region_info(&mut merged, &info(1, 2, Some(2), 4));
        merge_region_info(&mut merged, &info(1, 1, None, 9));
        let m = &merged[&1];
        assert_eq!(m.get_region().get_region_epoch().get_version(), 2);
        assert_eq!((m.get_leader().get_store_id(), m.get_leader_term()), (1, 5));
        merge_region_info(&mut merged, &info(1, 1, Some(3), 6));
        assert_eq!(merged[&1].get_leader().get_store_id(), 3);
    }

    #[test]
    fn the_blocking_backend_refuses_calls_from_inside_a_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let backend = GrpcBackend {
            inner: Arc::new(Inner {
                stores: RwLock::new(BTreeMap::new()),
                queues: Mutex::new(HashMap::new()),
                handle: rt.handle().clone(),
                opts: GrpcOptions::default(),
            }),
        };
        let err = rt.block_on(async {
            backend.call(1, RaftCmdRequest::default(), Duration::from_millis(10))
        });
        assert!(
            matches!(err, Err(BackendError::Unreachable(m)) if m.contains("inside a tokio runtime"))
        );
        // Outside the runtime: an unknown store is unreachable, not a panic.
        let err = backend.call(1, RaftCmdRequest::default(), Duration::from_millis(10));
        assert!(matches!(err, Err(BackendError::Unreachable(m)) if m.contains("no known address")));
    }
}
