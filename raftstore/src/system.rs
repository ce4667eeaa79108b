//! `create_raft_batch_system` and `RaftBatchSystem`: a store's two batch
//! systems (raft and apply) wired together, as TiKV's raftstore does.

use std::marker::PhantomData;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use apply::{
    create_apply_batch_system, ApplyBatchSystem, ApplyFsm, ApplyPoller, ApplyRouter, ControlFsm,
};
use batch_system::{create_system, BatchSystem, HandlerBuilder, ManualPoller};
use crossbeam_channel::{RecvTimeoutError, Sender};
use engine::{Engines, KvEngine, RaftLogBatch, RaftLogEngine};
use kvproto_lite::metapb;
use kvproto_lite::raft_serverpb::{PeerState, RaftApplyState, RaftLocalState};
use kvproto_lite::util;
use slog::{info, o, Logger};

use crate::awake::{AwakeRegions, TICK_SLICES};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::msg::{PeerMsg, SignificantMsg, StoreMsg};
use crate::peer_fsm::PeerFsm;
use crate::poller::{RaftPoller, RaftPollerBuilder};
use crate::router::RaftRouter;
use crate::snapshot::{SnapLimits, SnapManager, SnapWorker, SnapshotReporter};
use crate::storage::{split_raft_state, RAFT_INIT_LOG_INDEX};
use crate::store_fsm::{build_peer, register_peer, BuiltPeer, StoreFsm};
use crate::store_io::{
    writer_channels, ManualWriter, PersistNotifier, StoreWriter, StoreWriters, WriterMsg,
};
use crate::store_meta::{LeaderInfo, RegionProgress, StoreMeta, StoreStats};
use crate::transport::Transport;

/// A store's raft batch system plus its apply batch system.
///
/// Made by [`create_raft_batch_system`]; [`RaftBatchSystem::spawn`] loads
/// the store's regions from its engines and starts the pollers and the tick
/// timer; [`RaftBatchSystem::shutdown`] stops everything and joins every
/// thread. Every command accepted before shutdown is answered (with an
/// error saying the outcome is unknown if it had not completed).
///
/// For a planned stop (a restart, an upgrade),
/// [`RaftBatchSystem::shutdown_gracefully`] first hands the leadership of
/// every region this store leads to an up-to-date peer on another store,
/// so those regions keep taking writes instead of waiting an election
/// timeout for a new leader.
///
/// While it runs, [`leader_info`](Self::leader_info) answers who leads a
/// region as this store knows it, [`wait_for_leaders`](Self::wait_for_leaders)
/// waits at start-up until every region has a leader, and
/// [`region_progress`](Self::region_progress) tells how far this store's
/// peer of a region has applied (to see a restarted store catch up).
pub struct RaftBatchSystem<EK: KvEngine, ER: RaftLogEngine> {
    system: BatchSystem<PeerFsm<ER>, StoreFsm>,
    apply_router: ApplyRouter,
    apply_system: ApplyBatchSystem,
    router: RaftRouter<ER>,
    cfg: Config,
    store_meta: Arc<StoreMeta>,
    stats: Arc<StoreStats>,
    awake: Arc<AwakeRegions>,
    /// Which region holds which keys here: filled from the engine at
    /// start, then kept by apply and snapshot application.
    ranges: Arc<apply::RegionRanges>,
    /// Generates snapshots off the raft threads (`spawn` only; a store
    /// driven by hand generates them inline).
    snap_worker: Option<SnapWorker>,
    timer: Option<(Sender<()>, JoinHandle<()>)>,
    /// The store I/O writer threads (`spawn` with
    /// `Config::store_io_pool_size > 0`).
    writers: Option<StoreWriters>,
    running: bool,
    _kv: PhantomData<EK>,
}

/// A raft poller of a store driven by hand: the [`RaftPoller`] handler
/// in a [`ManualPoller`].
pub type ManualRaftPoller<EK, ER, T> = ManualPoller<PeerFsm<ER>, StoreFsm, RaftPoller<EK, ER, T>>;

/// An apply poller of a store driven by hand: the [`ApplyPoller`] handler
/// (reporting to the raft router) in a [`ManualPoller`].
pub type ManualApplyPoller<EK, ER> =
    ManualPoller<ApplyFsm, ControlFsm, ApplyPoller<EK, RaftRouter<ER>>>;

/// The two handlers of a store started with
/// [`RaftBatchSystem::spawn_manual`], each in a [`ManualPoller`] that runs
/// one poll round per `poll_once` call on the caller's thread.
pub struct ManualPollers<EK: KvEngine, ER: RaftLogEngine, T: Transport> {
    /// Polls the peer FSMs and the store FSM ([`RaftPoller`]).
    pub raft: ManualRaftPoller<EK, ER, T>,
    /// Polls the apply FSMs ([`ApplyPoller`]), reporting to the raft router.
    pub apply: ManualApplyPoller<EK, ER>,
    /// The store's I/O writers (`Config::store_io_pool_size` of them; none
    /// in inline mode): raft log writes wait in them until
    /// [`ManualWriter::write_once`].
    pub writers: Vec<ManualWriter<ER>>,
}

/// The pollers of a store started with
/// [`RaftBatchSystem::spawn_manual_pool`]: several raft pollers and several
/// apply pollers, each with its own handler, sharing the store's queues as
/// poller threads do. Dropping it while a poller is in the middle of a
/// round drops the FSMs that poller holds (a crash).
pub struct ManualPool<EK: KvEngine, ER: RaftLogEngine, T: Transport> {
    /// The raft pollers ([`RaftPoller`]): peer FSMs and the store FSM.
    pub raft: Vec<ManualRaftPoller<EK, ER, T>>,
    /// The apply pollers ([`ApplyPoller`]), reporting to the raft router.
    pub apply: Vec<ManualApplyPoller<EK, ER>>,
    /// The store's I/O writers (`Config::store_io_pool_size` of them; none
    /// in inline mode): raft log writes wait in them until
    /// [`ManualWriter::write_once`]; dropping one drops the writes it
    /// holds (a crash with writes in flight).
    pub writers: Vec<ManualWriter<ER>>,
}

/// Creates a store's raft batch system and its router.
///
/// The store FSM is the control FSM; the apply system is created alongside
/// and started by [`RaftBatchSystem::spawn`].
pub fn create_raft_batch_system<EK: KvEngine, ER: RaftLogEngine>(
    cfg: &Config,
) -> (RaftRouter<ER>, RaftBatchSystem<EK, ER>) {
    let (store_tx, store_fsm) = StoreFsm::new(cfg);
    let (apply_router, apply_system) = create_apply_batch_system(&cfg.apply);
    let (router, system) = create_system(
        cfg.store_pool_size,
        cfg.store_max_batch_size,
        store_tx,
        store_fsm,
    );
    let stats = Arc::new(StoreStats::with_memory_quota(cfg.memory_quota));
    let reporter_router = router.clone();
    let reporter: SnapshotReporter = Arc::new(move |region_id, to_peer_id, delivered| {
        let _ = reporter_router.force_send(
            region_id,
            PeerMsg::SignificantMsg(SignificantMsg::SnapshotStatus {
                to_peer_id,
                delivered,
            }),
        );
    });
    let snap_mgr = Arc::new(SnapManager::new(
        SnapLimits {
            chunk_size: cfg.snap_chunk_size,
            max_sends: cfg.snap_max_concurrent_sends,
            max_receives: cfg.snap_max_concurrent_receives,
        },
        stats.snapshots.clone(),
        reporter,
    ));
    let leader_checks = Arc::new(crate::leader_check::LeaderChecks::default());
    let raft_router = RaftRouter {
        router,
        snap_mgr,
        local: Arc::default(),
        memory: stats.memory.clone(),
        checks: leader_checks.clone(),
        store_id: Arc::default(),
        check_replier: Arc::default(),
    };
    let system = RaftBatchSystem {
        system,
        apply_router,
        apply_system,
        router: raft_router.clone(),
        cfg: cfg.clone(),
        store_meta: Arc::new(StoreMeta::with_leader_checks(leader_checks)),
        stats,
        awake: Arc::new(AwakeRegions::new()),
        ranges: Arc::default(),
        snap_worker: None,
        timer: None,
        writers: None,
        running: false,
        _kv: PhantomData,
    };
    (raft_router, system)
}

impl<EK: KvEngine, ER: RaftLogEngine> RaftBatchSystem<EK, ER> {
    /// Sets the user command handlers apply runs (see
    /// [`apply::CommandHandlers`]); call before starting the store. Every
    /// store of a cluster must register the same handlers.
    pub fn set_command_handlers(&mut self, handlers: apply::CommandHandlers) {
        self.apply_system.set_command_handlers(handlers);
    }

    /// Sets the clock leases are measured with (a monotonic clock by
    /// default); call before starting the store.
    pub fn set_clock(&mut self, clock: Arc<dyn crate::Clock>) {
        self.router.local.set_clock(clock);
    }

    /// The store's lease-read fast path (counters of what it served).
    pub fn local_reader(&self) -> Arc<crate::LocalReader> {
        self.router.local.clone()
    }

    /// The store's leader checks (counters of the ReadIndex confirmations
    /// batched per store pair, see [`crate::leader_check`]).
    pub fn leader_checks(&self) -> Arc<crate::LeaderChecks> {
        self.router.checks.clone()
    }

    /// The router of this store's peers.
    pub fn router(&self) -> RaftRouter<ER> {
        self.router.clone()
    }

    /// The router of this store's apply FSMs.
    pub fn apply_router(&self) -> ApplyRouter {
        self.apply_router.clone()
    }

    /// Leadership of this store's regions.
    pub fn store_meta(&self) -> Arc<StoreMeta> {
        self.store_meta.clone()
    }

    /// Work counters and per-region progress of this store.
    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }

    /// Why the store stopped, if a raft-log or KV write failed: from then on
    /// it writes nothing and answers every command with an error naming
    /// this reason. Shut the store down and restart it (it recovers from
    /// what is durable) once the disk is healthy.
    pub fn disk_failure(&self) -> Option<String> {
        self.apply_router.disk_failure().reason().map(str::to_owned)
    }

    /// Who leads `region_id`, as this store's peer knows it (`None` when the
    /// region has no peer here). A `leader_id` of 0 means no reachable
    /// leader is known: commands to this store are answered `NotLeader`
    /// without a hint until one is.
    pub fn leader_info(&self, region_id: u64) -> Option<LeaderInfo> {
        self.store_meta.leader_info(region_id)
    }

    /// Whether the store has nothing to do right now: every raft and apply
    /// poller thread is parked, no FSM is queued for one, and no snapshot
    /// generation runs. A moment's answer: a message from another store or
    /// a client, or a tick, ends it. Tests that drive time by hand use it
    /// to let a cluster settle (check every store, twice, until nothing
    /// changed in between); snapshot chunks still travelling in a
    /// transport are the transport's to account for.
    pub fn is_idle(&self) -> bool {
        self.system.health().is_idle()
            && self.apply_system.health().is_idle()
            && self.snap_worker.as_ref().map_or(0, |w| w.pending()) == 0
    }

    /// Waits until every region on this store knows a reachable leader; see
    /// [`StoreMeta::wait_for_leaders`].
    ///
    /// # Errors
    ///
    /// [`Error::NoLeader`] naming the regions still without one.
    pub fn wait_for_leaders(&self, timeout: Duration) -> Result<()> {
        self.store_meta.wait_for_leaders(timeout)
    }

    /// How far this store's peer of `region_id` has got (applied index,
    /// commit index, last index, term); see [`StoreStats::region_progress`].
    pub fn region_progress(&self, region_id: u64) -> Option<RegionProgress> {
        self.stats.region_progress(region_id)
    }

    /// The regions of this store that are awake (ticked); the others are
    /// hibernated (see [`Config::hibernate_regions`]). A store driven by
    /// hand ([`spawn_manual`](Self::spawn_manual)) ticks exactly these.
    pub fn awake_regions(&self) -> Arc<AwakeRegions> {
        self.awake.clone()
    }

    /// Creates a peer for every region of `store_id` found in the engines
    /// and registers it with the apply system and the router (the restart
    /// path). Returns how many peers were created.
    ///
    /// ```text
    /// region states + apply states     one pass over two key ranges of the KV engine
    /// tombstones                       clean a raft log a crash left behind
    /// peers to build                   split over up to LOAD_THREADS threads: raft
    ///                                  state (an in-memory lookup in either log
    ///                                  engine), repairs, Peer + PeerFsm + mailbox
    /// register, in region id order     apply registration, store meta, router,
    ///                                  awake set, PeerMsg::Start
    /// ```
    ///
    /// Building is all a peer's own work and touches nothing shared, so
    /// the threads only change how long it takes: the peers are
    /// registered, and their `Start` messages queued, in the same order as
    /// when they are built one by one.
    fn load_peers(
        &self,
        store_id: u64,
        cfg: &Config,
        engines: &Engines<EK, ER>,
        logger: &Logger,
    ) -> Result<usize> {
        let states = engines.kv.region_and_apply_states()?;
        self.ranges.publish(
            states
                .iter()
                .filter(|(s, _)| s.get_state() == PeerState::Normal)
                .map(|(s, _)| (s.get_region().get_id(), Some(s.get_region().clone()))),
        );
        let mut to_build = Vec::with_capacity(states.len());
        for (mut state, apply_state) in states {
            if state.get_state() == PeerState::Tombstone {
                // A crash after the tombstone was written and before the
                // destroyed peer's raft log was cleaned leaves the log.
                let region_id = state.get_region().get_id();
                if engines.raft.get_raft_state(region_id)?.is_some() {
                    let mut lb = engines.raft.log_batch(0);
                    lb.clean(region_id)?;
                    engines.raft.consume(&mut lb, true)?;
                    info!(logger, "cleaned the raft log of a destroyed peer"; "region_id" => region_id);
                }
                continue;
            }
            if state.get_state() != PeerState::Normal {
                continue;
            }
            let region = state.take_region();
            let region_id = region.get_id();
            let Some(meta) = util::find_peer(&region, store_id).cloned() else {
                continue;
            };
            let apply_state = apply_state
                .ok_or_else(|| Error::Other(format!("region {region_id} has no apply state")))?;
            to_build.push((region, meta, apply_state));
        }
        let count = to_build.len();
        let threads = load_threads(count);
        let build = |chunk: Vec<(metapb::Region, metapb::Peer, RaftApplyState)>| {
            chunk
                .into_iter()
                .map(|(region, meta, apply_state)| {
                    let raft_state = startup_raft_state(engines, region.get_id(), &apply_state)?;
                    build_peer(
                        cfg,
                        &engines.raft,
                        logger,
                        region,
                        meta,
                        raft_state,
                        apply_state,
                    )
                })
                .collect::<Result<Vec<_>>>()
        };
        let built: Vec<Vec<BuiltPeer<ER>>> = if threads <= 1 {
            vec![build(to_build)?]
        } else {
            let per_thread = count.div_ceil(threads);
            let mut chunks = Vec::with_capacity(threads);
            let mut rest = to_build.into_iter();
            loop {
                let chunk: Vec<_> = rest.by_ref().take(per_thread).collect();
                if chunk.is_empty() {
                    break;
                }
                chunks.push(chunk);
            }
            std::thread::scope(|scope| {
                let handles = chunks
                    .into_iter()
                    .enumerate()
                    .map(|(i, chunk)| {
                        std::thread::Builder::new()
                            .name(format!("load-peers-{store_id}-{i}"))
                            .spawn_scoped(scope, || build(chunk))
                            .map_err(|e| Error::Other(format!("spawn a peer loading thread: {e}")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().map_err(|_| {
                            Error::Other("a peer loading thread panicked".to_owned())
                        })?
                    })
                    .collect::<Result<Vec<_>>>()
            })?
        };
        for peer in built.into_iter().flatten() {
            register_peer(
                &self.router,
                &self.apply_router,
                &self.store_meta,
                &self.awake,
                peer,
            );
        }
        Ok(count)
    }

    /// What `spawn` and `spawn_manual` share: refuse a second start,
    /// validate the config, and create a peer for every region of the store
    /// found in the engines.
    /// Lets the router answer other stores' leader checks through (a clone
    /// of) `transport`, each answer sent and flushed at once.
    fn set_check_replier<T: Transport>(&self, transport: &T) {
        let transport = std::sync::Mutex::new(transport.clone());
        let _ = self.router.check_replier.set(Box::new(move |msg| {
            let mut t = transport.lock().unwrap_or_else(|e| e.into_inner());
            if t.send(msg).is_ok() {
                t.flush();
            }
        }));
    }

    fn prepare(
        &mut self,
        store: &metapb::Store,
        engines: &Engines<EK, ER>,
        logger: &Logger,
    ) -> Result<(u64, Arc<Config>, Logger)> {
        if self.running || self.timer.is_some() {
            return Err(Error::AlreadySpawned);
        }
        self.cfg.validate()?;
        let store_id = store.get_id();
        let logger = logger.new(o!("store_id" => store_id));
        let cfg = Arc::new(self.cfg.clone());
        let kv = engines.kv.clone();
        self.router.local.set_kv(Arc::new(kv));
        self.router.local.start_read_ids();
        self.router
            .store_id
            .store(store_id, std::sync::atomic::Ordering::Relaxed);
        let count = self.load_peers(store_id, &cfg, engines, &logger)?;
        self.apply_system.set_region_ranges(self.ranges.clone());
        info!(logger, "loaded regions"; "count" => count);
        Ok((store_id, cfg, logger))
    }

    /// Starts the store like [`spawn`](Self::spawn) (peers loaded from the
    /// engines, registered with apply and the router, the store FSM
    /// started), but without any thread or timer: the caller drives both
    /// batch systems with the returned [`ManualPollers`] and sends
    /// `PeerMsg::Tick`s itself. This is how the deterministic simulation
    /// runs the production handlers on one thread.
    ///
    /// Dropping the system (without [`shutdown`](Self::shutdown) work
    /// beyond closing mailboxes) models a crash: FSMs are dropped, nothing
    /// more is written.
    ///
    /// One raft poller and one apply poller; for more, see
    /// [`spawn_manual_pool`](Self::spawn_manual_pool).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    pub fn spawn_manual<T: Transport>(
        &mut self,
        store: metapb::Store,
        engines: Engines<EK, ER>,
        transport: T,
        logger: &Logger,
    ) -> Result<ManualPollers<EK, ER, T>> {
        let pool = self.spawn_manual_pool(store, engines, transport, logger, 1, 1)?;
        let writers = pool.writers;
        let (Some(raft), Some(apply)) =
            (pool.raft.into_iter().next(), pool.apply.into_iter().next())
        else {
            return Err(Error::Other("a manual pool without pollers".to_owned()));
        };
        Ok(ManualPollers {
            raft,
            apply,
            writers,
        })
    }

    /// Starts the store like [`spawn_manual`](Self::spawn_manual), with
    /// `raft_pollers` raft pollers and `apply_pollers` apply pollers, as
    /// [`spawn`](Self::spawn) starts `store_pool_size` and `apply.pool_size`
    /// threads: each poller has its own handler (its own poll context,
    /// log batch and write batch), built like a thread's, and all of them
    /// share the store's router, engines, transport, store meta, stats and
    /// awake set. They take FSMs from the same queues, so with
    /// [`ManualPoller::begin_round`] / [`ManualPoller::finish_round`] the
    /// caller can interleave their rounds as threads would interleave.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn); [`Error::Other`] for zero pollers of
    /// either kind (nothing is started then).
    pub fn spawn_manual_pool<T: Transport>(
        &mut self,
        store: metapb::Store,
        engines: Engines<EK, ER>,
        transport: T,
        logger: &Logger,
        raft_pollers: usize,
        apply_pollers: usize,
    ) -> Result<ManualPool<EK, ER, T>> {
        if raft_pollers == 0 || apply_pollers == 0 {
            return Err(Error::Other(format!(
                "a manual pool needs at least one poller of each kind, not {raft_pollers} raft \
                 and {apply_pollers} apply pollers"
            )));
        }
        let (store_id, cfg, logger) = self.prepare(&store, &engines, logger)?;
        self.set_check_replier(&transport);
        let apply = (0..apply_pollers)
            .map(|_| {
                self.apply_system
                    .manual_poller(engines.kv.clone(), self.router.clone())
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (senders, writers) = self.store_writers(store_id, &cfg, &engines, &logger);
        let writers = writers.into_iter().map(ManualWriter::new).collect();
        let mut builder = RaftPollerBuilder::new(
            cfg,
            store_id,
            engines,
            transport,
            self.apply_router.clone(),
            self.router.clone(),
            self.store_meta.clone(),
            self.stats.clone(),
            logger,
        )
        .with_awake_regions(self.awake.clone())
        .with_region_ranges(self.ranges.clone());
        if let Some(senders) = senders {
            builder = builder.with_io_senders(senders);
        }
        let raft = (0..raft_pollers)
            .map(|_| self.system.manual_poller(builder.build()))
            .collect();
        let _ = self.router.send_control(StoreMsg::Start);
        self.running = true;
        Ok(ManualPool {
            raft,
            apply,
            writers,
        })
    }

    /// The store's I/O writers (`cfg.store_io_pool_size` of them) and the
    /// channels the raft pollers hand them writes through; `None` and no
    /// writer in inline mode.
    #[allow(clippy::type_complexity)]
    fn store_writers(
        &self,
        store_id: u64,
        cfg: &Config,
        engines: &Engines<EK, ER>,
        logger: &Logger,
    ) -> (Option<Vec<Sender<WriterMsg>>>, Vec<StoreWriter<ER>>) {
        if cfg.store_io_pool_size == 0 {
            return (None, Vec::new());
        }
        let (senders, receivers) = writer_channels(cfg.store_io_pool_size);
        let router = self.router.clone();
        let notifier: PersistNotifier = Arc::new(move |region_id, peer_id, ready_number| {
            // A peer that went away (destroyed, store stopping) has nobody
            // to tell.
            let _ = router.force_send(
                region_id,
                PeerMsg::Persisted {
                    peer_id,
                    ready_number,
                },
            );
        });
        let writers = receivers
            .into_iter()
            .enumerate()
            .map(|(i, rx)| {
                StoreWriter::new(
                    store_id,
                    engines.raft.clone(),
                    rx,
                    notifier.clone(),
                    self.apply_router.disk_failure().clone(),
                    self.stats.clone(),
                    cfg.sync_log,
                    logger.new(o!("store_writer" => i)),
                )
            })
            .collect();
        (Some(senders), writers)
    }

    /// Starts the store: creates a peer for every region of `store` found in
    /// the engines (written by [`bootstrap_store`](crate::bootstrap_store)
    /// or by an earlier run), then the apply pollers, the raft pollers and
    /// the tick timer.
    ///
    /// # Errors
    ///
    /// An invalid config, an engine error, a region without raft or apply
    /// state, or calling it twice.
    pub fn spawn<T: Transport>(
        &mut self,
        store: metapb::Store,
        engines: Engines<EK, ER>,
        transport: T,
        logger: &Logger,
    ) -> Result<()> {
        let (store_id, cfg, logger) = self.prepare(&store, &engines, logger)?;
        self.set_check_replier(&transport);

        self.apply_system.spawn(
            format!("apply-{store_id}"),
            engines.kv.clone(),
            self.router.clone(),
        )?;
        let worker = SnapWorker::start(format!("snap-gen-{store_id}"))?;
        let (senders, writers) = self.store_writers(store_id, &cfg, &engines, &logger);
        if let Some(senders) = &senders {
            self.writers = Some(StoreWriters::start(writers, senders)?);
        }
        let mut builder = RaftPollerBuilder::new(
            cfg.clone(),
            store_id,
            engines,
            transport,
            self.apply_router.clone(),
            self.router.clone(),
            self.store_meta.clone(),
            self.stats.clone(),
            logger.clone(),
        )
        .with_awake_regions(self.awake.clone())
        .with_region_ranges(self.ranges.clone())
        .with_snap_scheduler(worker.scheduler());
        if let Some(senders) = senders {
            builder = builder.with_io_senders(senders);
        }
        self.snap_worker = Some(worker);
        self.system
            .spawn(format!("raftstore-{store_id}"), builder)?;
        let _ = self.router.send_control(StoreMsg::Start);
        self.running = true;

        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let router = self.router.clone();
        let awake = self.awake.clone();
        let interval = Duration::from_millis(cfg.raft_base_tick_interval_ms);
        let handle = std::thread::Builder::new()
            .name(format!("raft-tick-{store_id}"))
            .spawn(move || run_tick_timer(&router, &awake, interval, &stop_rx))
            .map_err(|e| Error::Other(format!("spawn tick thread: {e}")))?;
        self.timer = Some((stop_tx, handle));
        Ok(())
    }

    /// A planned stop: hands the leadership of every region this store
    /// leads to another store, then [`shutdown`](Self::shutdown)s.
    ///
    /// The protocol (TiKV evicts leaders from a store before restarting it
    /// the same way):
    ///
    /// ```text
    /// every peer  <- EvictLeader      (RaftRouter::evict_leaders)
    ///   leader:   transfer_leader(the voter with every entry, recently active;
    ///             else the one with the highest matched index)
    ///   follower: stops ticking, so it never campaigns; ignores MsgTimeoutNow
    /// the target  campaigns at once (no election timeout), wins, appends to
    ///             this store: its peer becomes a follower of the new leader
    /// repeat EvictLeader every 100 ms (a new target if one fell behind)
    /// until every region this store led names a leader elsewhere,
    /// or `timeout` passes; then shutdown()
    /// ```
    ///
    /// While a transfer is under way the leader answers commands
    /// `NotLeader` naming the peer taking over. A region that cannot be
    /// handed off in time (no other voter, or none reachable) is left as
    /// it is: the other stores elect a leader after an election timeout, as
    /// after a crash. On a system started with
    /// [`spawn_manual`](Self::spawn_manual) nothing polls while this waits,
    /// so it shuts down at once; drive the eviction yourself with
    /// [`RaftRouter::evict_leaders`] and poll.
    pub fn shutdown_gracefully(&mut self, timeout: Duration) -> GracefulShutdown {
        let led = self.store_meta.leader_regions();
        if self.timer.is_some() && !led.is_empty() {
            let deadline = Instant::now() + timeout;
            let handed_off = |map: &std::collections::HashMap<u64, LeaderInfo>| {
                led.iter()
                    .all(|id| map.get(id).map_or(true, |i| !i.is_leader && i.has_leader()))
            };
            loop {
                self.router.evict_leaders();
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let wait = (deadline - now).min(EVICT_RETRY);
                if self.store_meta.wait_until(wait, handed_off) {
                    break;
                }
            }
        }
        let still_leading = self.store_meta.leader_regions();
        self.shutdown();
        GracefulShutdown {
            handed_off: led
                .into_iter()
                .filter(|id| !still_leading.contains(id))
                .collect(),
            still_leading,
        }
    }

    /// Stops the tick timer, the raft pollers, then the apply pollers, and
    /// joins every thread. Safe to call more than once.
    ///
    /// Regions this store leads keep no leader until the other stores'
    /// election timeout; for a planned stop use
    /// [`shutdown_gracefully`](Self::shutdown_gracefully).
    pub fn shutdown(&mut self) {
        if let Some((stop, handle)) = self.timer.take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
        if self.running {
            self.system.shutdown();
            // The pollers are gone: the writers write what they were
            // given, then stop.
            if let Some(mut writers) = self.writers.take() {
                writers.stop();
            }
            self.apply_system.shutdown();
            self.running = false;
        }
        if let Some(mut writers) = self.writers.take() {
            writers.stop();
        }
        if let Some(mut worker) = self.snap_worker.take() {
            worker.stop();
        }
    }
}

impl<EK: KvEngine, ER: RaftLogEngine> Drop for RaftBatchSystem<EK, ER> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How often [`RaftBatchSystem::shutdown_gracefully`] asks its leaders
/// again to hand leadership off.
const EVICT_RETRY: Duration = Duration::from_millis(100);

/// What [`RaftBatchSystem::shutdown_gracefully`] achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GracefulShutdown {
    /// Regions this store led when the shutdown began and whose leadership
    /// moved to another store before it stopped, sorted.
    pub handed_off: Vec<u64>,
    /// Regions this store still led when the time ran out, sorted: the
    /// other stores elect their leader after an election timeout.
    pub still_leading: Vec<u64>,
}

/// Fewest peers a loading thread is started for: below that, a store
/// loads its peers on the calling thread (tests, the simulation, small
/// stores).
const PEERS_PER_LOAD_THREAD: usize = 4096;

/// Most threads a store loads its peers with.
const LOAD_THREADS: usize = 8;

/// How many threads load `count` peers: one per [`PEERS_PER_LOAD_THREAD`]
/// peers, at most one per core and at most [`LOAD_THREADS`]; 1 means the
/// calling thread.
fn load_threads(count: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (count / PEERS_PER_LOAD_THREAD).clamp(1, cores.clamp(1, LOAD_THREADS))
}

/// The raft state a peer starts from: the persisted one, or a repaired one
/// (written, synced) when a crash left it behind its apply state.
fn startup_raft_state<EK: KvEngine, ER: RaftLogEngine>(
    engines: &Engines<EK, ER>,
    region_id: u64,
    apply_state: &RaftApplyState,
) -> Result<RaftLocalState> {
    Ok(match engines.raft.get_raft_state(region_id)? {
        Some(s) if s.get_last_index() >= RAFT_INIT_LOG_INDEX => s,
        // A region created by a split whose raft state was not
        // written yet (the store crashed between apply's split write
        // and raftstore creating the peer) or is still that of an
        // uninitialized peer: start it as the split would have
        // (simulation, seed 4675 with splits).
        existing if apply_state.get_truncated_state().get_index() == RAFT_INIT_LOG_INDEX => {
            let state = split_raft_state(existing);
            let mut lb = engines.raft.log_batch(0);
            lb.put_raft_state(region_id, &state)?;
            engines.raft.consume(&mut lb, true)?;
            state
        }
        Some(s) => s,
        // Written by a snapshot whose raft state a crash lost (the
        // peer was created from a message and had persisted
        // nothing): `PeerStorage::new` restarts the log at the
        // snapshot's position.
        None => RaftLocalState::default(),
    })
}

/// The store's tick timer. Every awake peer (see [`AwakeRegions`]) gets
/// one `PeerMsg::Tick` per `interval`, but not all at once: the peers are
/// split into [`TICK_SLICES`] groups by [`tick_slice`](crate::tick_slice),
/// and one group is ticked every `interval / TICK_SLICES`. Ticking
/// thousands of peers in the same instant hands the pollers one huge round
/// (every tick, heartbeat and heartbeat response together), and every client
/// command that arrives meanwhile waits behind it; spread out, a round
/// carries a tenth of that. The store FSM gets its tick once per `interval`.
/// Returns when `stop` gets a message or its sender is dropped.
///
/// Cost: proportional to the awake regions. A slice reads only its own
/// partition of the awake set; hibernated regions are not looked at.
fn run_tick_timer<ER: RaftLogEngine>(
    router: &RaftRouter<ER>,
    awake: &AwakeRegions,
    interval: Duration,
    stop: &crossbeam_channel::Receiver<()>,
) {
    let slices = TICK_SLICES
        .min(interval.as_millis().try_into().unwrap_or(u64::MAX))
        .max(1);
    let step = interval / slices as u32;
    let mut slice = 0;
    let mut next = Instant::now() + step;
    let mut ids = Vec::new();
    while let Err(RecvTimeoutError::Timeout) = stop.recv_deadline(next) {
        ids.clear();
        awake.take_tick_slice(slice, slices, &mut ids);
        for &id in &ids {
            // A region that fell asleep since it was read ignores the tick;
            // one that went away refuses it (and leaves the set).
            if router.force_send(id, PeerMsg::Tick).is_err() {
                awake.tick_handled(id);
            }
        }
        if slice == 0 {
            let _ = router.send_control(StoreMsg::Tick);
        }
        slice = (slice + 1) % slices;
        // Keep the period, but after a stall (a suspended process) do not
        // fire the missed slices back to back.
        next += step;
        let now = Instant::now();
        if next < now {
            next = now + step;
        }
    }
}
