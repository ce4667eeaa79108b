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
use kvproto_lite::raft_serverpb::PeerState;
use kvproto_lite::util;
use slog::{info, o, Logger};

use crate::awake::{AwakeRegions, TICK_SLICES};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::msg::{PeerMsg, StoreMsg};
use crate::peer_fsm::PeerFsm;
use crate::poller::{RaftPoller, RaftPollerBuilder};
use crate::router::RaftRouter;
use crate::storage::{split_raft_state, RAFT_INIT_LOG_INDEX};
use crate::store_fsm::{start_peer, StoreFsm};
use crate::store_meta::{StoreMeta, StoreStats};
use crate::transport::Transport;

/// A store's raft batch system plus its apply batch system.
///
/// Made by [`create_raft_batch_system`]; [`RaftBatchSystem::spawn`] loads
/// the store's regions from its engines and starts the pollers and the tick
/// timer; [`RaftBatchSystem::shutdown`] stops everything and joins every
/// thread. Every command accepted before shutdown is answered (with an
/// error saying the outcome is unknown if it had not completed).
pub struct RaftBatchSystem<EK: KvEngine, ER: RaftLogEngine> {
    system: BatchSystem<PeerFsm<ER>, StoreFsm>,
    apply_router: ApplyRouter,
    apply_system: ApplyBatchSystem,
    router: RaftRouter<ER>,
    cfg: Config,
    store_meta: Arc<StoreMeta>,
    stats: Arc<StoreStats>,
    awake: Arc<AwakeRegions>,
    timer: Option<(Sender<()>, JoinHandle<()>)>,
    running: bool,
    _kv: PhantomData<EK>,
}

/// The two handlers of a store started with
/// [`RaftBatchSystem::spawn_manual`], each in a [`ManualPoller`] that runs
/// one poll round per `poll_once` call on the caller's thread.
pub struct ManualPollers<EK: KvEngine, ER: RaftLogEngine, T: Transport> {
    /// Polls the peer FSMs and the store FSM ([`RaftPoller`]).
    pub raft: ManualPoller<PeerFsm<ER>, StoreFsm, RaftPoller<EK, ER, T>>,
    /// Polls the apply FSMs ([`ApplyPoller`]), reporting to the raft router.
    pub apply: ManualPoller<ApplyFsm, ControlFsm, ApplyPoller<EK, RaftRouter<ER>>>,
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
    let raft_router = RaftRouter { router };
    let system = RaftBatchSystem {
        system,
        apply_router,
        apply_system,
        router: raft_router.clone(),
        cfg: cfg.clone(),
        store_meta: Arc::new(StoreMeta::default()),
        stats: Arc::new(StoreStats::default()),
        awake: Arc::new(AwakeRegions::new()),
        timer: None,
        running: false,
        _kv: PhantomData,
    };
    (raft_router, system)
}

impl<EK: KvEngine, ER: RaftLogEngine> RaftBatchSystem<EK, ER> {
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

    /// Work counters of this store.
    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
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
    fn load_peers(
        &self,
        store_id: u64,
        cfg: &Config,
        engines: &Engines<EK, ER>,
        logger: &Logger,
    ) -> Result<usize> {
        let mut count = 0usize;
        for state in engines.kv.region_states()? {
            if state.get_state() != PeerState::Normal {
                continue;
            }
            let region = state.get_region().clone();
            let region_id = region.get_id();
            let Some(meta) = util::find_peer(&region, store_id).cloned() else {
                continue;
            };
            let raft_state = engines.raft.get_raft_state(region_id)?;
            let apply_state = engines
                .kv
                .get_apply_state(region_id)?
                .ok_or_else(|| Error::Other(format!("region {region_id} has no apply state")))?;
            let raft_state = match raft_state {
                Some(s) if s.get_last_index() >= RAFT_INIT_LOG_INDEX => s,
                // A region created by a split whose raft state was not
                // written yet (the store crashed between apply's split write
                // and raftstore creating the peer) or is still that of an
                // uninitialized peer: start it as the split would have
                // (simulation, seed 4675 with splits).
                existing
                    if apply_state.get_truncated_state().get_index() == RAFT_INIT_LOG_INDEX =>
                {
                    let state = split_raft_state(existing);
                    let mut lb = engines.raft.log_batch(0);
                    lb.put_raft_state(region_id, &state)?;
                    engines.raft.consume(&mut lb, true)?;
                    state
                }
                Some(s) => s,
                None => {
                    return Err(Error::Other(format!(
                        "region {region_id} has no raft state"
                    )));
                }
            };
            start_peer(
                cfg,
                engines,
                &self.router,
                &self.apply_router,
                &self.awake,
                logger,
                region,
                meta,
                raft_state,
                apply_state,
            )?;
            count += 1;
        }
        Ok(count)
    }

    /// What `spawn` and `spawn_manual` share: refuse a second start,
    /// validate the config, and create a peer for every region of the store
    /// found in the engines.
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
        let count = self.load_peers(store_id, &cfg, engines, &logger)?;
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
        let (store_id, cfg, logger) = self.prepare(&store, &engines, logger)?;
        let apply = self
            .apply_system
            .manual_poller(engines.kv.clone(), self.router.clone())?;
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
        .with_awake_regions(self.awake.clone());
        let raft = self.system.manual_poller(builder.build());
        let _ = self.router.send_control(StoreMsg::Start);
        self.running = true;
        Ok(ManualPollers { raft, apply })
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

        self.apply_system.spawn(
            format!("apply-{store_id}"),
            engines.kv.clone(),
            self.router.clone(),
        )?;
        let builder = RaftPollerBuilder::new(
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
        .with_awake_regions(self.awake.clone());
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

    /// Stops the tick timer, the raft pollers, then the apply pollers, and
    /// joins every thread. Safe to call more than once.
    pub fn shutdown(&mut self) {
        if let Some((stop, handle)) = self.timer.take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
        if self.running {
            self.system.shutdown();
            self.apply_system.shutdown();
            self.running = false;
        }
    }
}

impl<EK: KvEngine, ER: RaftLogEngine> Drop for RaftBatchSystem<EK, ER> {
    fn drop(&mut self) {
        self.shutdown();
    }
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
        awake.append_slice(slice, slices, &mut ids);
        for &id in &ids {
            // A region that fell asleep or went away since it was read
            // ignores the tick (or it is refused): both harmless.
            let _ = router.force_send(id, PeerMsg::Tick);
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
