//! Creating, starting and stopping the apply batch system; routing messages.

use std::ops::Deref;
use std::sync::Arc;

use batch_system::mpsc::SendError;
use batch_system::{BasicMailbox, BatchRouter, BatchSystem, ManualPoller};
use engine::KvEngine;
use slog::Logger;

use crate::fsm::reject;
use crate::ranges::RegionRanges;
use crate::user_cmd::CommandHandlers;
use crate::{
    ApplyFsm, ApplyMsg, ApplyNotifier, ApplyPoller, ApplyPollerBuilder, Config, ControlFsm,
    ControlMsg, DiskFailure, Result,
};

/// Routes [`ApplyMsg`]s to the regions' apply FSMs. Cheap to clone.
///
/// Derefs to the underlying [`BatchRouter`] (for `alive_cnt`, `mailbox`, ...).
#[derive(Clone)]
pub struct ApplyRouter {
    router: BatchRouter<ApplyFsm, ControlFsm>,
    cfg: Arc<Config>,
    disk_failure: Arc<DiskFailure>,
}

impl Deref for ApplyRouter {
    type Target = BatchRouter<ApplyFsm, ControlFsm>;

    fn deref(&self) -> &BatchRouter<ApplyFsm, ControlFsm> {
        &self.router
    }
}

impl ApplyRouter {
    /// The store's disk failure, shared by every clone of this router, the
    /// apply pollers and the raft pollers of the same store.
    pub fn disk_failure(&self) -> &Arc<DiskFailure> {
        &self.disk_failure
    }

    /// Delivers `msg` to region `region_id`'s apply FSM.
    ///
    /// Never refused for being full (committed entries must not be dropped).
    /// A [`ApplyMsg::Registration`] for a region without a live FSM creates
    /// the FSM and registers its mailbox right here, on the caller's thread,
    /// so everything the caller sends afterwards reaches it in order. Any
    /// other message for a region without an FSM goes through the control
    /// FSM, which delivers it if the region was registered meanwhile and
    /// otherwise answers its callbacks with an untyped "outcome unknown" error (as after
    /// shutdown).
    ///
    /// After [`ApplyMsg::Destroy`], wait for the [`ApplyRes`](crate::ApplyRes)
    /// with `destroyed == true` before registering the region again.
    pub fn schedule_task(&self, region_id: u64, msg: ApplyMsg) {
        let msg = match self.router.force_send(region_id, msg) {
            Ok(()) => return,
            Err(SendError(msg)) => msg,
        };
        let msg = match msg {
            ApplyMsg::Registration(reg) if !self.router.is_shutdown() => {
                let (tx, fsm) = ApplyFsm::from_registration(*reg, &self.cfg);
                self.router.register(region_id, BasicMailbox::new(tx, fsm));
                return;
            }
            other => other,
        };
        if let Err(SendError(ControlMsg::Route { region_id, msg })) = self
            .router
            .force_send_control(ControlMsg::Route { region_id, msg })
        {
            reject(region_id, msg);
        }
    }
}

impl std::fmt::Debug for ApplyRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyRouter")
            .field("alive", &self.router.alive_cnt())
            .finish()
    }
}

/// The apply batch system: a pool of [`ApplyPoller`](crate::ApplyPoller)
/// threads over the regions' [`ApplyFsm`]s.
pub struct ApplyBatchSystem {
    system: BatchSystem<ApplyFsm, ControlFsm>,
    router: ApplyRouter,
    cfg: Config,
    logger: Logger,
    handlers: CommandHandlers,
    ranges: Option<Arc<RegionRanges>>,
}

/// Creates the apply batch system (not started) and its router.
///
/// # Examples
///
/// ```
/// let (router, mut system) = apply::create_apply_batch_system(&apply::Config::default());
/// assert_eq!(router.alive_cnt(), 0);
/// system.shutdown();
/// ```
pub fn create_apply_batch_system(cfg: &Config) -> (ApplyRouter, ApplyBatchSystem) {
    let (tx, control) = ControlFsm::new(cfg);
    let (router, system) =
        batch_system::create_system(cfg.pool_size, cfg.max_batch_size, tx, control);
    let router = ApplyRouter {
        router,
        cfg: Arc::new(cfg.clone()),
        disk_failure: Arc::new(DiskFailure::default()),
    };
    let system = ApplyBatchSystem {
        system,
        router: router.clone(),
        cfg: cfg.clone(),
        logger: Logger::root(slog::Discard, slog::o!()),
        handlers: CommandHandlers::default(),
        ranges: None,
    };
    (router, system)
}

impl ApplyBatchSystem {
    /// Sets the logger the pollers use (a discarding one by default).
    /// Takes effect at [`spawn`](Self::spawn).
    pub fn set_logger(&mut self, logger: Logger) {
        self.logger = logger;
    }

    /// Sets the user command handlers (see [`CommandHandlers`]); takes
    /// effect at [`spawn`](Self::spawn) / [`manual_poller`](Self::manual_poller).
    /// Every store of a cluster must register the same handlers.
    pub fn set_command_handlers(&mut self, handlers: CommandHandlers) {
        self.handlers = handlers;
    }

    /// The pollers (started later) publish every region state they write to
    /// `ranges` once written: the store's in-memory view of which region
    /// holds which keys (see [`RegionRanges`]).
    pub fn set_region_ranges(&mut self, ranges: Arc<RegionRanges>) {
        self.ranges = Some(ranges);
    }

    /// The router of this system.
    pub fn router(&self) -> &ApplyRouter {
        &self.router
    }

    /// The state of the poller threads: see [`batch_system::Health`]
    /// (`is_idle` says no apply work is running or queued).
    pub fn health(&self) -> batch_system::Health {
        self.system.health()
    }

    /// Starts `cfg.pool_size` poller threads named `{name_prefix}-{i}`,
    /// applying to `engine` and reporting through `notifier`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a bad
    /// configuration; [`Error::BatchSystem`](crate::Error::BatchSystem) if
    /// already spawned, shut down, or a thread could not be started.
    pub fn spawn<K: KvEngine, N: ApplyNotifier>(
        &mut self,
        name_prefix: String,
        engine: K,
        notifier: N,
    ) -> Result<()> {
        self.cfg.validate()?;
        let mut builder = ApplyPollerBuilder::new(
            self.router.clone(),
            engine,
            notifier,
            &self.cfg,
            self.logger.clone(),
        );
        builder.set_command_handlers(self.handlers.clone());
        if let Some(ranges) = &self.ranges {
            builder.set_region_ranges(Arc::clone(ranges));
        }
        self.system.spawn(name_prefix, builder)?;
        Ok(())
    }

    /// A poller driven by the caller instead of a thread (deterministic
    /// simulation): each [`ManualPoller::poll_once`] runs one apply round
    /// over the regions scheduled so far, applying to `engine` and reporting
    /// through `notifier`. Do not also [`spawn`](Self::spawn) this system.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a bad
    /// configuration.
    pub fn manual_poller<K: KvEngine, N: ApplyNotifier>(
        &self,
        engine: K,
        notifier: N,
    ) -> Result<ManualPoller<ApplyFsm, ControlFsm, ApplyPoller<K, N>>> {
        self.cfg.validate()?;
        let mut handler = ApplyPoller::new(
            self.router.clone(),
            engine,
            notifier,
            &self.cfg,
            self.logger.clone(),
        );
        handler.set_command_handlers(self.handlers.clone());
        if let Some(ranges) = &self.ranges {
            handler.set_region_ranges(Arc::clone(ranges));
        }
        Ok(self.system.manual_poller(handler))
    }

    /// Stops the system: new messages are refused (their callbacks answered
    /// with an untyped "outcome unknown" error), every message accepted before is handled and
    /// its round written, then the threads are joined and every FSM dropped.
    pub fn shutdown(&mut self) {
        self.system.shutdown();
    }
}
