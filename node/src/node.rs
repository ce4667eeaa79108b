//! [`Node`]: one store process: engines, raft store, gRPC server, status
//! server, metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{FjallKvEngine, RaftEngineLogEngine};
use kvproto_lite::metapb;
use raftstore::{create_raft_batch_system, RaftBatchSystem};
use server::{AddressBook, GrpcTransport, KvService, RaftService, Server, StoreService};
use slog::{info, warn, Logger};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::config::NodeConfig;
use crate::data_dir::{prepare, prepare_joined, ClusterRecord, DataDir};
use crate::join::{self, Balancer};
use crate::metrics::Sampler;
use crate::status::{StatusServer, StatusSource};
use crate::{Error, Result};

type System = RaftBatchSystem<FjallKvEngine, RaftEngineLogEngine>;

/// A running store process.
///
/// [`Node::start`] opens the data dir (bootstrapping it on the first start),
/// binds both addresses, starts the raft store, the gRPC server and the
/// status server; [`Node::stop`] takes them down in the reverse order, so
/// that client requests in progress are answered and every accepted write
/// is on disk.
pub struct Node {
    cfg: NodeConfig,
    rt: Runtime,
    system: System,
    transport: GrpcTransport,
    server: Option<Server>,
    status: StatusServer,
    sampler: JoinHandle<()>,
    engines: engine::Engines<FjallKvEngine, RaftEngineLogEngine>,
    _dir: Arc<DataDir>,
    /// Tells the balancer of a joined node to stop.
    stopping: Arc<AtomicBool>,
    logger: Logger,
}

impl Node {
    /// Starts a node with `cfg` (which should be valid).
    ///
    /// # Errors
    ///
    /// A data dir of another store or in use, an address that cannot be
    /// bound, an engine or raft store failure; nothing keeps running then.
    pub fn start(cfg: NodeConfig, root: &Logger) -> Result<Node> {
        cfg.validate()?;
        let started = Instant::now();
        // The raft store and the transport add the store id themselves.
        let logger = &root.new(slog::o!("store_id" => cfg.store_id));
        let dir = Arc::new(DataDir::open(&cfg.data_dir)?);
        let metrics = crate::metrics::install().map_err(Error::InvalidConfig)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.grpc_threads)
            .thread_name(format!("grpc-{}", cfg.store_id))
            .enable_all()
            .build()
            .map_err(Error::io("start the tokio runtime"))?;
        let prepared = match (&cfg.join, dir.record()?) {
            (Some(entry), None) => {
                // Nothing is written before the cluster accepted the store.
                let view = rt.block_on(join::join(entry, cfg.store_id, &cfg.listen))?;
                let record = ClusterRecord::joined(cfg.store_id, view.cluster_id, view.stores);
                prepare_joined(&dir, &cfg, record, logger)?
            }
            _ => prepare(&dir, &cfg, logger)?,
        };
        let record = prepared.record.clone();
        let engines = prepared.engines;
        let store_id = record.store_id;
        // The stores known at the first start, and every store learned of
        // since (saved in the data dir).
        let book = AddressBook::new(
            record
                .initial_cluster
                .stores()
                .iter()
                .map(|(&id, a)| (id, a.clone()))
                .chain(dir.stores()?),
        )?;
        dir.write_stores(&book.stores())?;
        let saver = dir.clone();
        book.set_persister(Arc::new(move |stores| {
            saver.write_stores(stores).map_err(|e| e.to_string())
        }));
        let address = book.get(store_id).unwrap_or_else(|| cfg.listen.clone());
        if address != cfg.listen {
            warn!(logger, "listening on an address other than the one the cluster knows this store by";
                  "listen" => &cfg.listen, "known_as" => &address);
        }

        let listener = Server::bind(cfg.listen_addr()?)?;
        let status_addr = cfg.status_addr()?;
        let status_listener = std::net::TcpListener::bind(status_addr).map_err(Error::io(
            format!("cannot listen on status address {status_addr}"),
        ))?;

        let (router, mut system) = create_raft_batch_system(&cfg.raftstore);
        let reporter = router.clone();
        let transport = GrpcTransport::new(
            store_id,
            book.clone(),
            cfg.server.clone(),
            rt.handle().clone(),
            Arc::new(move |id| reporter.report_unreachable(id)),
            root,
        );
        let reachable = router.clone();
        transport.set_reachable_reporter(Arc::new(move |id| reachable.report_reachable(id)));
        let mut store = metapb::Store::default();
        store.set_id(store_id);
        store.set_address(address.clone());
        system.spawn(store, engines.clone(), transport.clone(), root)?;

        let kv = KvService::new(
            store_id,
            Arc::new(router.clone()),
            engines.kv.clone(),
            system.store_meta(),
            book.clone(),
            &cfg.server,
        )
        .with_cluster_id(record.cluster_id);
        let raft = RaftService::new(store_id, Arc::new(router.clone()), logger);
        let service = StoreService::new(kv, raft, cfg.server.max_message_size);
        let server = match Server::start(rt.handle(), listener, service, &cfg.server) {
            Ok(s) => s,
            Err(e) => {
                system.shutdown();
                transport.shutdown();
                return Err(e.into());
            }
        };
        let source = StatusSource {
            store_id,
            cluster_id: record.cluster_id,
            address: address.clone(),
            meta: system.store_meta(),
            awake: system.awake_regions(),
            kv: engines.kv.clone(),
            metrics: metrics.clone(),
            started,
        };
        let status = StatusServer::start(rt.handle(), status_listener, source, logger)?;
        let alive = router.clone();
        let mut sampler = Sampler::new(
            system.store_meta(),
            Box::new(move || alive.alive_cnt()),
            metrics,
        );
        let sampler = rt.spawn(async move {
            let mut tick = tokio::time::interval(Sampler::INTERVAL);
            loop {
                tick.tick().await;
                sampler.sample();
            }
        });
        rt.spawn(join::sync_addresses(store_id, book.clone(), logger.clone()));
        let stopping = Arc::new(AtomicBool::new(false));
        if record.joined {
            let (handle, stop, log) = (rt.handle().clone(), stopping.clone(), logger.clone());
            let (book, address) = (book.clone(), address.clone());
            std::thread::Builder::new()
                .name("join-balancer".to_owned())
                .spawn(move || match Balancer::backend(&handle, &book) {
                    Ok(backend) => {
                        Balancer::new(store_id, backend, book, stop, log).run(handle, address)
                    }
                    Err(e) => {
                        warn!(log, "cannot reach the cluster to take replicas"; "error" => %e)
                    }
                })
                .map_err(Error::io("start the balancer thread"))?;
        }
        info!(logger, "node started";
              "listen" => %server.local_addr(), "status" => %status.local_addr(),
              "address" => &address, "regions" => prepared.regions,
              "bootstrapped" => prepared.bootstrapped, "cluster_id" => record.cluster_id,
              "data_dir" => %dir.path().display(),
              "startup_ms" => started.elapsed().as_millis() as u64);
        Ok(Node {
            cfg,
            rt,
            system,
            transport,
            server: Some(server),
            status,
            sampler,
            engines,
            _dir: dir,
            stopping,
            logger: logger.clone(),
        })
    }

    /// Blocks until the process gets SIGTERM or SIGINT.
    ///
    /// # Errors
    ///
    /// The signal handlers cannot be installed.
    pub fn wait_for_signal(&self) -> Result<&'static str> {
        self.rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term =
                signal(SignalKind::terminate()).map_err(Error::io("install a SIGTERM handler"))?;
            let mut int =
                signal(SignalKind::interrupt()).map_err(Error::io("install a SIGINT handler"))?;
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            Ok(name)
        })
    }

    /// Stops the node: the status server, the gRPC server (client
    /// requests in progress get `shutdown_grace_ms` to finish), the raft
    /// store (every accepted command is answered), the connections to other
    /// stores; then syncs the engines.
    ///
    /// # Errors
    ///
    /// The engines could not be synced.
    pub fn stop(mut self) -> Result<()> {
        let began = Instant::now();
        self.stopping.store(true, Ordering::Relaxed);
        self.status.stop();
        self.sampler.abort();
        if let Some(server) = self.server.take() {
            let grace = Duration::from_millis(self.cfg.shutdown_grace_ms);
            if let Err(e) = self.rt.block_on(server.stop(grace)) {
                warn!(self.logger, "gRPC server stopped with an error"; "error" => %e);
            }
        }
        self.system.shutdown();
        self.transport.shutdown();
        let result = self.engines.sync();
        let Node { rt, logger, .. } = self;
        rt.shutdown_timeout(Duration::from_secs(1));
        info!(logger, "node stopped"; "stop_ms" => began.elapsed().as_millis() as u64);
        result.map_err(Error::from)
    }
}
