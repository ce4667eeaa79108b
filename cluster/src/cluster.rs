//! An in-process cluster of stores, for tests, examples and benchmarks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use engine::{
    Engines, FjallKvEngine, KvEngine, MemKvEngine, MemRaftLogEngine, RaftEngineLogEngine,
    RaftLogEngine,
};
use kvproto_lite::metapb::{self, Region};
use kvproto_lite::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use slog::Logger;

use client::{Client, ClientOptions};
use raftstore::{
    bootstrap_store, create_raft_batch_system, even_split_keys, initial_regions, is_bootstrapped,
    AwakeRegions, CommandSink, Config, GracefulShutdown, RaftBatchSystem, RaftRouter, StoreMeta,
    StoreStats,
};

use crate::backend::{InProcessBackend, StoreDirectory};
use crate::error::{Error, Result};
use crate::transport::ChannelTransport;
use crate::wait::wait_until;

/// Opens (or reopens) a store's engines. Called from several threads at
/// once when [`Cluster::start_stores`] starts several stores, each call
/// for another store.
pub type EngineFactory<EK, ER> = Box<dyn Fn(u64) -> Result<Engines<EK, ER>> + Send + Sync>;

/// A store about to start: its id, opened engines, router and system.
type Prepared<EK, ER> = (
    u64,
    Engines<EK, ER>,
    RaftRouter<ER>,
    RaftBatchSystem<EK, ER>,
);

struct Node<EK: KvEngine, ER: RaftLogEngine> {
    system: RaftBatchSystem<EK, ER>,
    router: RaftRouter<ER>,
}

/// Several stores in one process, connected by a [`ChannelTransport`].
///
/// Bootstraps `regions` regions (splitting the 8-byte key space evenly, see
/// [`even_split_keys`]) with a voter on every store, starts every store, and
/// lets tests stop, restart and partition stores.
///
/// # Examples
///
/// ```
/// let mut cluster = cluster::Cluster::memory(3, 2, raftstore::Config::default()).unwrap();
/// cluster.start().unwrap();
/// let mut client = cluster.client();
/// client.put(b"k", b"v").unwrap();
/// assert_eq!(client.get(b"k").unwrap(), Some(b"v".to_vec()));
/// cluster.shutdown();
/// ```
pub struct Cluster<EK: KvEngine, ER: RaftLogEngine> {
    cfg: Config,
    store_ids: Vec<u64>,
    regions: Vec<Region>,
    transport: ChannelTransport,
    nodes: HashMap<u64, Node<EK, ER>>,
    engines: HashMap<u64, Engines<EK, ER>>,
    metas: HashMap<u64, Arc<StoreMeta>>,
    stats: HashMap<u64, Arc<StoreStats>>,
    directory: StoreDirectory,
    factory: EngineFactory<EK, ER>,
    logger: Logger,
    handlers: raftstore::CommandHandlers,
    _dir: Option<tempfile::TempDir>,
}

impl Cluster<MemKvEngine, MemRaftLogEngine> {
    /// A cluster of `stores` stores with in-memory engines.
    ///
    /// A stopped store keeps its engines (as if the process kept its page
    /// cache); use [`Cluster::engines`] and the engines' `crash()` to lose
    /// unsynced writes.
    ///
    /// # Errors
    ///
    /// An invalid config or region layout.
    pub fn memory(stores: usize, regions: usize, cfg: Config) -> Result<Self> {
        let made: Mutex<HashMap<u64, Engines<MemKvEngine, MemRaftLogEngine>>> = Mutex::default();
        let factory: EngineFactory<MemKvEngine, MemRaftLogEngine> = Box::new(move |id| {
            Ok(made
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id)
                .or_insert_with(|| Engines::new(MemKvEngine::new(), MemRaftLogEngine::new()))
                .clone())
        });
        Cluster::with_factory(stores, regions, cfg, factory, None)
    }
}

impl Cluster<FjallKvEngine, RaftEngineLogEngine> {
    /// A cluster of `stores` stores with durable engines (fjall + raft-engine)
    /// in a temporary directory removed when the cluster is dropped.
    ///
    /// # Errors
    ///
    /// An invalid config, or the directory cannot be created.
    pub fn durable(stores: usize, regions: usize, cfg: Config) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("multi-raft-cluster")
            .tempdir()?;
        let root = dir.path().to_path_buf();
        let factory = durable_factory(root);
        Cluster::with_factory(stores, regions, cfg, factory, Some(dir))
    }

    /// Like [`Cluster::durable`] but in `dir`, which is kept.
    ///
    /// # Errors
    ///
    /// An invalid config.
    pub fn durable_in(dir: &Path, stores: usize, regions: usize, cfg: Config) -> Result<Self> {
        Cluster::with_factory(
            stores,
            regions,
            cfg,
            durable_factory(dir.to_path_buf()),
            None,
        )
    }
}

fn durable_factory(root: PathBuf) -> EngineFactory<FjallKvEngine, RaftEngineLogEngine> {
    Box::new(move |id| {
        let base = root.join(format!("store-{id}"));
        let kv = FjallKvEngine::open(base.join("kv"))?;
        let raft = RaftEngineLogEngine::open(base.join("raft"))?;
        Ok(Engines::new(kv, raft))
    })
}

/// Runs `work` for every `(store_id, item)`, each on a thread of its own
/// named `{name}-{store_id}` (on the calling thread when there is only
/// one), and returns the results in the order of `items`.
fn on_store_threads<I: Send, T: Send>(
    name: &str,
    items: Vec<(u64, I)>,
    work: impl Fn(u64, I) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    if items.len() == 1 {
        return items.into_iter().map(|(id, item)| work(id, item)).collect();
    }
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .into_iter()
            .map(|(store_id, item)| {
                let handle = std::thread::Builder::new()
                    .name(format!("{name}-{store_id}"))
                    .spawn_scoped(scope, move || work(store_id, item));
                (store_id, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(store_id, h)| join_scoped(store_id, h))
            .collect()
    })
}

/// The result of a scoped thread working for store `store_id` (an error
/// if it could not be spawned or panicked).
fn join_scoped<T>(
    store_id: u64,
    handle: std::io::Result<std::thread::ScopedJoinHandle<'_, Result<T>>>,
) -> Result<T> {
    let handle = handle.map_err(|e| {
        raftstore::Error::Other(format!("spawn a thread for store {store_id}: {e}"))
    })?;
    handle.join().unwrap_or_else(|_| {
        Err(raftstore::Error::Other(format!("the thread for store {store_id} panicked")).into())
    })
}

/// The environment variable that sets `Config::store_io_pool_size` of every
/// cluster the test kit builds whose config leaves it at its default (a
/// test that chose a mode keeps it): run a whole suite with store I/O
/// writers (`MULTIRAFT_STORE_IO=1 cargo test -p raftstore`) or inline
/// (`=0`). Unset or not a number: the tests' own configs.
pub const STORE_IO_ENV: &str = "MULTIRAFT_STORE_IO";

impl<EK: KvEngine, ER: RaftLogEngine> Cluster<EK, ER> {
    /// A cluster whose stores get their engines from `factory` (called on
    /// every start of a store, so it must reopen what an earlier call made).
    /// [`STORE_IO_ENV`] in the environment may set the config's
    /// `store_io_pool_size`.
    ///
    /// # Errors
    ///
    /// An invalid config or region layout.
    pub fn with_factory(
        stores: usize,
        regions: usize,
        mut cfg: Config,
        factory: EngineFactory<EK, ER>,
        dir: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        if let Some(n) = std::env::var(STORE_IO_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            if cfg.store_io_pool_size == Config::default().store_io_pool_size {
                cfg.store_io_pool_size = n;
            }
        }
        cfg.validate()?;
        if stores == 0 || regions == 0 {
            return Err(Error::InvalidLayout(
                "a cluster needs at least one store and one region".to_owned(),
            ));
        }
        let store_ids: Vec<u64> = (1..=stores as u64).collect();
        let regions = initial_regions(&store_ids, &even_split_keys(regions))?;
        Ok(Cluster {
            cfg,
            store_ids,
            regions,
            transport: ChannelTransport::new(0),
            nodes: HashMap::new(),
            engines: HashMap::new(),
            metas: HashMap::new(),
            stats: HashMap::new(),
            directory: Arc::new(RwLock::new(HashMap::new())),
            factory,
            logger: Logger::root(slog::Discard, slog::o!()),
            handlers: raftstore::CommandHandlers::default(),
            _dir: dir,
        })
    }

    /// Logs through `logger` instead of discarding.
    pub fn set_logger(&mut self, logger: Logger) {
        self.logger = logger;
    }

    /// Registers user command handlers on every store started from now on
    /// (set before [`start`](Self::start)).
    pub fn set_command_handlers(&mut self, handlers: raftstore::CommandHandlers) {
        self.handlers = handlers;
    }

    /// Bootstraps (first time only) and starts every store.
    ///
    /// # Errors
    ///
    /// An engine or start-up error.
    pub fn start(&mut self) -> Result<()> {
        for id in self.store_ids.clone() {
            self.start_store(id)?;
        }
        Ok(())
    }

    /// Starts (or restarts) one store from its engines.
    ///
    /// # Errors
    ///
    /// The store is already running, or an engine/start-up error.
    pub fn start_store(&mut self, store_id: u64) -> Result<()> {
        self.start_stores(&[store_id])
    }

    /// Starts several stopped stores at once, as separate machines restart
    /// independently: every store opens its engines (bootstrapping them on
    /// the first start) on a thread of its own; then, with every one of
    /// them connected to the transport, every store loads its peers and
    /// starts, again each on its own thread. One store starts on the
    /// calling thread, exactly as [`start_store`](Self::start_store).
    ///
    /// The stores already running are told each started store is
    /// reachable (as after [`start_store`](Self::start_store)); the stores
    /// started together need no such news of each other, since each was
    /// connected before any of them sent a message.
    ///
    /// # Errors
    ///
    /// A store already running or named twice (nothing is started then);
    /// engines that cannot be opened (nothing is started then either); or
    /// the first failed start (the stores that did start keep running).
    pub fn start_stores(&mut self, store_ids: &[u64]) -> Result<()> {
        let mut prepared: Vec<Prepared<EK, ER>> = Vec::with_capacity(store_ids.len());
        for (i, &store_id) in store_ids.iter().enumerate() {
            if self.nodes.contains_key(&store_id) || store_ids[..i].contains(&store_id) {
                return Err(Error::AlreadyRunning(store_id));
            }
        }
        // Open (and on the first start bootstrap) every store's engines,
        // each store on a thread of its own: recovering a store's engines
        // takes long when it holds many regions.
        let open = |store_id: u64| -> Result<Engines<EK, ER>> {
            let engines = (self.factory)(store_id)?;
            if !is_bootstrapped(&engines)? {
                bootstrap_store(&engines, store_id, &self.regions)?;
            }
            Ok(engines)
        };
        let opened = on_store_threads(
            "open-store",
            store_ids.iter().map(|&id| (id, ())).collect(),
            |store_id, ()| open(store_id),
        );
        for (&store_id, engines) in store_ids.iter().zip(opened) {
            let engines = engines?;
            let (router, mut system) = create_raft_batch_system::<EK, ER>(&self.cfg);
            system.set_command_handlers(self.handlers.clone());
            prepared.push((store_id, engines, router, system));
        }
        for (store_id, _, router, _) in &prepared {
            self.transport.connect(*store_id, Arc::new(router.clone()));
        }
        let spawn = |store_id: u64,
                     engines: &Engines<EK, ER>,
                     system: &mut RaftBatchSystem<EK, ER>|
         -> Result<()> {
            let mut store = metapb::Store::default();
            store.set_id(store_id);
            system.spawn(
                store,
                engines.clone(),
                self.transport.for_store(store_id),
                &self.logger,
            )?;
            Ok(())
        };
        let results = on_store_threads(
            "start-store",
            prepared
                .iter_mut()
                .map(|(store_id, engines, _, system)| (*store_id, (&*engines, system)))
                .collect(),
            |store_id, (engines, system)| spawn(store_id, engines, system),
        );
        let already_running: Vec<u64> = self.nodes.keys().copied().collect();
        let mut first_error = None;
        let mut started = Vec::new();
        for ((store_id, engines, router, system), result) in prepared.into_iter().zip(results) {
            if let Err(e) = result {
                self.transport.disconnect(store_id);
                first_error.get_or_insert(e);
                continue;
            }
            self.metas.insert(store_id, system.store_meta());
            self.stats.insert(store_id, system.stats());
            self.engines.insert(store_id, engines);
            let sink: Arc<dyn CommandSink> = Arc::new(router.clone());
            self.directory
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(store_id, sink);
            self.nodes.insert(store_id, Node { system, router });
            started.push(store_id);
        }
        // What a connection-level transport does when a store comes back:
        // hibernated regions with a peer there wake, so it hears from its
        // leaders at once.
        for store_id in started {
            for id in &already_running {
                if let Some(node) = self.nodes.get(id) {
                    node.router.report_reachable(store_id);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Adds a new, empty store to the cluster (the next unused store id)
    /// and starts it. It holds no region until a membership change puts a
    /// peer there (the peer is created by the leader's first message and
    /// filled by a snapshot). Returns the new store's id.
    ///
    /// # Errors
    ///
    /// The store's engines cannot be opened or the store cannot start.
    pub fn add_store(&mut self) -> Result<u64> {
        let store_id = self.store_ids.iter().max().copied().unwrap_or(0) + 1;
        self.store_ids.push(store_id);
        if let Err(e) = self.start_store(store_id) {
            self.store_ids.pop();
            return Err(e);
        }
        Ok(store_id)
    }

    /// Stops one store: disconnects it, shuts its systems down and closes its
    /// engines (they are reopened by the next start).
    pub fn stop_store(&mut self, store_id: u64) {
        self.transport.disconnect(store_id);
        self.directory
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&store_id);
        if let Some(mut node) = self.nodes.remove(&store_id) {
            node.system.shutdown();
        }
        // What a connection-level transport does when a store goes away:
        // every peer of the remaining stores stops pipelining to it.
        for node in self.nodes.values() {
            node.router.report_unreachable(store_id);
        }
        self.engines.remove(&store_id);
        self.metas.remove(&store_id);
    }

    /// A planned stop of one store: its leaderships are handed to the other
    /// stores first (within `timeout`, see
    /// [`RaftBatchSystem::shutdown_gracefully`]), then it stops as
    /// [`Cluster::stop_store`] does. `None` if the store was not running.
    pub fn stop_store_gracefully(
        &mut self,
        store_id: u64,
        timeout: Duration,
    ) -> Option<GracefulShutdown> {
        let report = self
            .nodes
            .get_mut(&store_id)
            .map(|node| node.system.shutdown_gracefully(timeout));
        self.stop_store(store_id);
        report
    }

    /// Stops every store.
    pub fn shutdown(&mut self) {
        for id in self.store_ids.clone() {
            self.stop_store(id);
        }
    }

    /// Ids of all stores (running or not).
    pub fn store_ids(&self) -> &[u64] {
        &self.store_ids
    }

    /// The initial regions.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The network between the stores (add filters to inject faults).
    pub fn transport(&self) -> &ChannelTransport {
        &self.transport
    }

    /// A running store's router.
    pub fn router(&self, store_id: u64) -> Option<RaftRouter<ER>> {
        self.nodes.get(&store_id).map(|n| n.router.clone())
    }

    /// A running store's engines.
    pub fn engines(&self, store_id: u64) -> Option<&Engines<EK, ER>> {
        self.engines.get(&store_id)
    }

    /// Why a running store stopped after a failed disk write, if it did
    /// (see `RaftBatchSystem::disk_failure`).
    pub fn disk_failure(&self, store_id: u64) -> Option<String> {
        self.nodes
            .get(&store_id)
            .and_then(|n| n.system.disk_failure())
    }

    /// A running store's awake (ticked, not hibernated) regions.
    pub fn awake_regions(&self, store_id: u64) -> Option<Arc<AwakeRegions>> {
        self.nodes.get(&store_id).map(|n| n.system.awake_regions())
    }

    /// Whether `region_id` is hibernated on every running store (no store
    /// ticks it).
    pub fn is_hibernated(&self, region_id: u64) -> bool {
        !self.nodes.is_empty()
            && self
                .nodes
                .values()
                .all(|n| !n.system.awake_regions().contains(region_id))
    }

    /// A running store's leadership view of its regions.
    pub fn store_meta(&self, store_id: u64) -> Option<Arc<StoreMeta>> {
        self.metas.get(&store_id).cloned()
    }

    /// A store's work counters and per-region progress (kept after it
    /// stops).
    pub fn stats(&self, store_id: u64) -> Option<Arc<StoreStats>> {
        self.stats.get(&store_id).cloned()
    }

    /// The store whose peer leads `region_id` in the highest term seen, among
    /// running stores.
    pub fn leader_store(&self, region_id: u64) -> Option<u64> {
        self.metas
            .iter()
            .filter_map(|(store, meta)| meta.leader_info(region_id).map(|i| (*store, i)))
            .filter(|(_, i)| i.is_leader)
            .max_by_key(|(_, i)| i.term)
            .map(|(store, _)| store)
    }

    /// Waits until the running stores have settled: every store
    /// [idle](RaftBatchSystem::is_idle) twice in a row with no poll round
    /// run anywhere in between, so no message is in flight between them
    /// (the channel transport delivers at send time). `false` if that did
    /// not happen within `timeout`.
    ///
    /// Tests that drive raft time by hand call it after each tick, so that
    /// a tick's heartbeats and their answers are handled before the next
    /// tick (otherwise a burst of ticks can expire election timeouts before
    /// any message had a chance to arrive).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let rounds = || -> u64 {
            self.stats
                .values()
                .map(|s| s.rounds.load(std::sync::atomic::Ordering::SeqCst))
                .sum()
        };
        let all_idle = || self.nodes.values().all(|n| n.system.is_idle());
        wait_until(timeout, || {
            if !all_idle() {
                return false;
            }
            let before = rounds();
            all_idle() && rounds() == before
        })
    }

    /// Waits until every region has a leader on a running store.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] naming the regions still without a leader at the
    /// deadline.
    pub fn wait_for_leaders(&self, timeout: Duration) -> Result<()> {
        let ids: Vec<u64> = self.regions.iter().map(|r| r.get_id()).collect();
        if wait_until(timeout, || {
            ids.iter().all(|id| self.leader_store(*id).is_some())
        }) {
            return Ok(());
        }
        let missing: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| self.leader_store(*id).is_none())
            .collect();
        Err(Error::Timeout(format!(
            "regions without leader: {missing:?}"
        )))
    }

    /// The lease-read fast path of a running store (its counters).
    pub fn local_reader(&self, store_id: u64) -> Option<Arc<raftstore::LocalReader>> {
        self.nodes.get(&store_id).map(|n| n.system.local_reader())
    }

    /// A client over the running stores.
    pub fn client(&self) -> Client {
        self.client_with(ClientOptions::default())
    }

    /// A backend reaching the running stores' routers (what
    /// [`Cluster::client`] uses), for tools built on [`client::Backend`]
    /// such as [`client::Membership`].
    pub fn backend(&self) -> InProcessBackend {
        InProcessBackend::new(self.directory.clone())
    }

    /// A client with explicit options.
    pub fn client_with(&self, opts: ClientOptions) -> Client {
        let backend = Arc::new(InProcessBackend::new(self.directory.clone()));
        Client::new(backend, self.regions.clone(), opts)
    }

    /// Sends `request` to a store's router and waits for its response (no
    /// retries, no routing: for tests that want to see one store's answer).
    ///
    /// # Errors
    ///
    /// The store is not running, or no answer within `timeout`.
    pub fn call(
        &self,
        store_id: u64,
        request: RaftCmdRequest,
        timeout: Duration,
    ) -> Result<RaftCmdResponse> {
        let rx = self.send_command(store_id, request)?;
        rx.recv_timeout(timeout).map_err(|_| {
            Error::Timeout(format!(
                "no response from store {store_id} within {timeout:?}"
            ))
        })
    }

    /// Sends `request` to a store's router and returns the channel its
    /// response will arrive on. A full mailbox or missing region is answered
    /// on the channel too (`ServerIsBusy`, `RegionNotFound`).
    ///
    /// # Errors
    ///
    /// The store is not running.
    pub fn send_command(
        &self,
        store_id: u64,
        request: RaftCmdRequest,
    ) -> Result<crossbeam_channel::Receiver<RaftCmdResponse>> {
        let router = self.router(store_id).ok_or(Error::NotRunning(store_id))?;
        Ok(router.submit(request))
    }

    /// Reads `key` straight from a store's KV engine (what it has applied).
    ///
    /// # Errors
    ///
    /// The store is not running, or an engine error.
    pub fn kv_get(&self, store_id: u64, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let engines = self
            .engines
            .get(&store_id)
            .ok_or(Error::NotRunning(store_id))?;
        Ok(engines.kv.get(key)?)
    }

    /// Waits until `key` has `value` (or is absent for `None`) in a store's
    /// KV engine.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] with the last value seen at the deadline.
    pub fn wait_for_kv(
        &self,
        store_id: u64,
        key: &[u8],
        value: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<()> {
        if wait_until(
            timeout,
            || matches!(self.kv_get(store_id, key), Ok(v) if v.as_deref() == value),
        ) {
            return Ok(());
        }
        Err(Error::Timeout(format!(
            "store {store_id}: key {key:?} is {:?}, expected {value:?}",
            self.kv_get(store_id, key)
        )))
    }
}

impl<EK: KvEngine, ER: RaftLogEngine> Drop for Cluster<EK, ER> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
