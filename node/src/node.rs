//! [`Node`]: one store process: engines, raft store, gRPC server, status
//! server, metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{FjallKvEngine, RaftEngineLogEngine};
use kvproto_lite::metapb;
use raftstore::{create_raft_batch_system, RaftBatchSystem};
use server::{AddressBook, GrpcTransport, Server, StoreService};
use slog::{info, warn, Logger};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::config::NodeConfig;
use crate::data_dir::{prepare, DataDir};
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
    _dir: DataDir,
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
        let dir = DataDir::open(&cfg.data_dir)?;
        let prepared = prepare(&dir, &cfg, logger)?;
        let record = prepared.record.clone();
        let engines = prepared.engines;
        let store_id = record.store_id;
        let book = AddressBook::new(
            record
                .initial_cluster
                .stores()
                .iter()
                .map(|(&id, a)| (id, a.clone())),
        )?;
        let address = book.get(store_id).unwrap_or_else(|| cfg.listen.clone());
        if address != cfg.listen {
            warn!(logger, "listening on an address other than the one the cluster knows this store by";
                  "listen" => &cfg.listen, "known_as" => &address);
        }

        let metrics = crate::metrics::install().map_err(Error::InvalidConfig)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.grpc_threads)
            .thread_name(format!("grpc-{store_id}"))
            .enable_all()
            .build()
            .map_err(Error::io("start the tokio runtime"))?;
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

        let service = StoreService::for_store(
            store_id,
            &router,
            system.store_meta(),
            engines.kv.clone(),
            book,
            &cfg.server,
            logger,
        );
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
