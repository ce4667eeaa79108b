//! The poll handler: one KV write batch per round for every region in it.

use std::ops::DerefMut;
use std::sync::Arc;
use std::time::Instant;

use batch_system::{BasicMailbox, HandleResult, HandlerBuilder, PollHandler};
use engine::{KvEngine, KvWriteBatch};
use kvproto_lite::util;
use slog::{error, info, o, Logger};

use crate::context::{ApplyContext, Checkpoint, RoundRecord, SessionLimits};
use crate::delegate::Budget;
use crate::fsm::reject;
use crate::metrics::ApplyMetrics;
use crate::ranges::RegionRanges;
use crate::user_cmd::CommandHandlers;
use crate::{
    ApplyFsm, ApplyMsg, ApplyNotifier, ApplyRes, ApplyRouter, Config, ControlFsm, ControlMsg,
};

/// The apply system's [`PollHandler`]: executes committed entries of every
/// region in a poll round into one KV write batch and writes it once in
/// [`end`](PollHandler::end).
///
/// ```text
/// begin
/// handle_control   registrations -> new ApplyFsm registered with the router
/// handle_normal    per region: drain mailbox (Apply messages merged),
///                  apply queued entries within the per-round budget into
///                  the shared write batch (+ the region's RaftApplyState)
/// end              write the batch once (sync per config / admin command);
///                  ok   -> run callbacks in order, notify(Vec<ApplyRes>)
///                  fail -> record the store's DiskFailure, answer the
///                          callbacks with an error naming it, restore the
///                          regions' state to what is durable; from then
///                          on nothing is written and every region's
///                          pending and new callbacks get that error
/// ```
///
/// It never reads the clock or spawns threads, so a simulation can build
/// one with [`ApplyPoller::new`], hand it FSMs from
/// [`ApplyFsm::from_registration`] and call `begin`/`handle_normal`/`end`
/// itself (or let [`ApplyBatchSystem::manual_poller`](crate::ApplyBatchSystem::manual_poller)
/// do the scheduling on the caller's thread).
///
/// # Examples
///
/// Driving one region by hand:
///
/// ```
/// use std::sync::mpsc;
///
/// use apply::{Apply, ApplyFsm, ApplyMsg, ApplyPoller, ApplyRes, Config, Registration};
/// use batch_system::PollHandler;
/// use engine::{KvEngine, MemKvEngine};
/// use kvproto_lite::eraftpb::Entry;
/// use kvproto_lite::metapb::Region;
///
/// let cfg = Config::default();
/// let (router, _system) = apply::create_apply_batch_system(&cfg); // never spawned
/// let kv = MemKvEngine::new();
/// let (tx, results) = mpsc::channel::<Vec<ApplyRes>>();
/// let logger = slog::Logger::root(slog::Discard, slog::o!());
/// let mut poller = ApplyPoller::new(router, kv.clone(), tx, &cfg, logger);
///
/// let mut region = Region::default();
/// region.set_id(1);
/// let reg = Registration { peer_id: 1, region, apply_state: Default::default(), applied_term: 0 };
/// let (mailbox, fsm) = ApplyFsm::from_registration(reg, &cfg);
/// let mut batch = vec![Some(fsm)];
///
/// // A new leader's no-op entry.
/// let mut noop = Entry::default();
/// noop.set_index(1);
/// noop.set_term(1);
/// mailbox.force_send(ApplyMsg::apply(Apply::new(1, 1, vec![noop]))).unwrap();
///
/// poller.begin(batch.len());
/// for fsm in batch.iter_mut().flatten() {
///     poller.handle_normal(fsm);
/// }
/// poller.end(&mut batch);
///
/// let res = results.try_recv().unwrap();
/// assert_eq!(res[0].apply_state.get_applied_index(), 1);
/// assert_eq!(kv.get_apply_state(1).unwrap().unwrap().get_applied_index(), 1);
/// ```
pub struct ApplyPoller<K: KvEngine, N: ApplyNotifier> {
    ctx: ApplyContext<K>,
    notifier: N,
    router: ApplyRouter,
    cfg: Config,
    metrics: ApplyMetrics,
}

impl<K: KvEngine, N: ApplyNotifier> ApplyPoller<K, N> {
    /// Creates a handler. `router` is used to register FSMs created for
    /// registrations and to wake regions whose round must be retried.
    pub fn new(router: ApplyRouter, engine: K, notifier: N, cfg: &Config, logger: Logger) -> Self {
        let mut ctx = ApplyContext::new(engine, logger);
        ctx.sessions = SessionLimits::of(cfg);
        ApplyPoller {
            ctx,
            notifier,
            router,
            cfg: cfg.clone(),
            metrics: ApplyMetrics::new(),
        }
    }

    /// Sets the user command handlers this poller runs (none by default).
    pub fn set_command_handlers(&mut self, handlers: CommandHandlers) {
        self.ctx.handlers = handlers;
    }

    /// Tells `ranges` about every region state this poller writes, once
    /// the round's write succeeded (by default nobody is told).
    pub fn set_region_ranges(&mut self, ranges: Arc<RegionRanges>) {
        self.ctx.ranges = Some(ranges);
    }

    fn budget(&self) -> Budget {
        Budget {
            entries: self.cfg.max_entries_per_round,
            bytes: self.cfg.max_bytes_per_round,
        }
    }

    fn push_record(&mut self, rec: RoundRecord) {
        if !rec.is_empty() {
            self.ctx.records.push(rec);
        }
    }

    fn route_from_control(&mut self, region_id: u64, msg: ApplyMsg) {
        let msg = match msg {
            ApplyMsg::Registration(reg) => match self
                .router
                .force_send(region_id, ApplyMsg::Registration(reg))
            {
                Ok(()) => return,
                Err(batch_system::mpsc::SendError(ApplyMsg::Registration(reg))) => {
                    let (tx, fsm) = ApplyFsm::from_registration(*reg, &self.cfg);
                    info!(self.ctx.logger, "apply fsm created";
                        "region_id" => region_id, "peer_id" => fsm.peer_id(),
                        "applied_index" => fsm.apply_state().get_applied_index());
                    self.router.register(region_id, BasicMailbox::new(tx, fsm));
                    return;
                }
                Err(batch_system::mpsc::SendError(other)) => other,
            },
            other => other,
        };
        if let Err(batch_system::mpsc::SendError(msg)) = self.router.force_send(region_id, msg) {
            reject(region_id, msg);
        }
    }

    /// Answers everything a region of a stopped store holds or receives
    /// with `failure`: its mailbox, its pending proposals, its queue.
    fn fence(
        &mut self,
        fsm: &mut ApplyFsm,
        failure: &kvproto_lite::errorpb::Error,
        rec: &mut RoundRecord,
    ) {
        while let Ok(msg) = fsm.receiver.try_recv() {
            if let ApplyMsg::Apply(apply) = msg {
                for p in apply.proposals {
                    rec.respond(
                        p.cb,
                        util::error_response(failure.clone(), apply.term),
                        false,
                    );
                }
            }
        }
        fsm.delegate.fence(failure, rec);
    }

    /// Handles one message of a region.
    fn handle_msg(&mut self, fsm: &mut ApplyFsm, rec: &mut RoundRecord, msg: ApplyMsg) {
        match msg {
            ApplyMsg::Apply(apply) => fsm.delegate.enqueue(*apply, rec),
            ApplyMsg::Registration(reg) => {
                let region_id = fsm.region_id();
                let wrote_state = rec.apply_state.is_some();
                // Stale callbacks are answered in the current record, which
                // then closes; the new generation starts a fresh one.
                fsm.delegate.reset(*reg, rec);
                let fresh = RoundRecord::new(
                    region_id,
                    fsm.delegate.generation,
                    fsm.delegate.checkpoint(),
                );
                let old = std::mem::replace(rec, fresh);
                self.push_record(old);
                if wrote_state {
                    // This round already wrote an older apply state for the
                    // region: the registration's state must win.
                    self.ctx
                        .wb
                        .put_apply_state(region_id, &fsm.delegate.apply_state);
                }
                info!(self.ctx.logger, "apply fsm re-registered";
                    "region_id" => region_id, "peer_id" => fsm.peer_id(),
                    "applied_index" => fsm.apply_state().get_applied_index());
            }
            ApplyMsg::Destroy { .. } => {
                let region_id = fsm.region_id();
                fsm.delegate
                    .apply_queued(&mut self.ctx, rec, Budget::UNLIMITED);
                fsm.delegate.destroy(&mut self.ctx, rec);
                // New messages for the region now go to the control FSM;
                // what was queued behind the Destroy is routed there too.
                self.router.close(region_id);
                // Once a registration (of a new incarnation) is rerouted,
                // everything after it must follow it, in order.
                let mut rerouting = false;
                while let Ok(msg) = fsm.receiver.try_recv() {
                    rerouting |= matches!(msg, ApplyMsg::Registration(_));
                    if rerouting {
                        if let Err(batch_system::mpsc::SendError(ControlMsg::Route {
                            msg, ..
                        })) = self
                            .router
                            .force_send_control(ControlMsg::Route { region_id, msg })
                        {
                            reject(region_id, msg);
                        }
                    } else if let ApplyMsg::Apply(apply) = msg {
                        // A stopped delegate answers the callbacks with
                        // "outcome unknown", in order, through the record.
                        fsm.delegate.enqueue(*apply, rec);
                    }
                }
                info!(self.ctx.logger, "apply fsm destroyed";
                    "region_id" => region_id, "peer_id" => fsm.peer_id(),
                    "applied_index" => fsm.apply_state().get_applied_index());
            }
        }
    }

    fn finish_round_ok(&mut self) {
        let mut results = Vec::with_capacity(self.ctx.records.len());
        for rec in self.ctx.records.drain(..) {
            for pending in rec.callbacks {
                (pending.cb)(pending.resp);
            }
            if let Some(apply_state) = rec.apply_state {
                results.push(ApplyRes {
                    region_id: rec.region_id,
                    apply_state,
                    applied_term: rec.applied_term,
                    exec_results: rec.exec_results,
                    destroyed: rec.destroyed,
                });
            } else if rec.destroyed {
                results.push(destroyed_res(rec.region_id, &rec.checkpoint));
            }
        }
        if !results.is_empty() {
            self.notifier.notify(results);
        }
    }

    /// The store stopped (this round's write failed, or an earlier one of
    /// this store): nothing of the round is written. Callbacks whose
    /// response depended on the write get `failure`, the regions' state goes
    /// back to the round's start (what is durable), and no progress is
    /// reported.
    fn finish_round_failed(
        &mut self,
        failure: &kvproto_lite::errorpb::Error,
        batch: &mut [Option<impl DerefMut<Target = ApplyFsm>>],
    ) {
        self.ctx.wb.clear();
        let mut results = Vec::new();
        for mut rec in std::mem::take(&mut self.ctx.records) {
            for pending in rec.callbacks.drain(..) {
                let resp = if pending.needs_write {
                    let term = pending.resp.get_header().get_current_term();
                    util::error_response(failure.clone(), term)
                } else {
                    pending.resp
                };
                (pending.cb)(resp);
            }
            if rec.destroyed {
                results.push(destroyed_res(rec.region_id, &rec.checkpoint));
                continue;
            }
            let fsm = batch.iter_mut().flatten().find(|f| {
                f.region_id() == rec.region_id && f.delegate.generation == rec.generation
            });
            if let Some(fsm) = fsm {
                fsm.delegate.restore(&mut rec);
                // Not retried: the store writes nothing more. What is queued
                // is answered by `fence` when the region is next polled.
                let mut fenced = RoundRecord::new(
                    rec.region_id,
                    fsm.delegate.generation,
                    fsm.delegate.checkpoint(),
                );
                fsm.delegate.fence(failure, &mut fenced);
                for pending in fenced.callbacks {
                    (pending.cb)(pending.resp);
                }
            }
        }
        if !results.is_empty() {
            self.notifier.notify(results);
        }
    }
}

impl<K: KvEngine, N: ApplyNotifier> PollHandler<ApplyFsm, ControlFsm> for ApplyPoller<K, N> {
    fn begin(&mut self, _batch_size: usize) {
        self.ctx.reset_round();
        self.ctx.records.clear();
    }

    fn handle_control(&mut self, control: &mut ControlFsm) -> Option<usize> {
        for _ in 0..self.cfg.messages_per_round {
            match control.receiver.try_recv() {
                Ok(ControlMsg::Route { region_id, msg }) => self.route_from_control(region_id, msg),
                Err(_) => return Some(0),
            }
        }
        if control.receiver.is_empty() {
            Some(0)
        } else {
            None
        }
    }

    fn handle_normal(&mut self, normal: &mut impl DerefMut<Target = ApplyFsm>) -> HandleResult {
        let fsm: &mut ApplyFsm = normal;
        let mut rec = RoundRecord::new(
            fsm.region_id(),
            fsm.delegate.generation,
            fsm.delegate.checkpoint(),
        );
        if let Some(failure) = self.router.disk_failure().outcome_unknown_error() {
            // The store stopped after a failed write: answer everything,
            // apply nothing.
            self.fence(fsm, &failure, &mut rec);
            self.push_record(rec);
            return HandleResult::stop_at(0, false);
        }
        for _ in 0..self.cfg.messages_per_round {
            if fsm.delegate.stopped {
                break;
            }
            match fsm.receiver.try_recv() {
                Ok(msg) => self.handle_msg(fsm, &mut rec, msg),
                Err(_) => break,
            }
        }
        let more = if fsm.delegate.stopped {
            false
        } else {
            let budget = self.budget();
            fsm.delegate.apply_queued(&mut self.ctx, &mut rec, budget)
        };
        self.push_record(rec);
        if more || (!fsm.delegate.stopped && !fsm.receiver.is_empty()) {
            HandleResult::KeepProcessing
        } else {
            HandleResult::stop_at(0, false)
        }
    }

    fn end(&mut self, batch: &mut [Option<impl DerefMut<Target = ApplyFsm>>]) {
        if self.ctx.records.is_empty() && self.ctx.wb.is_empty() {
            return;
        }
        if let Some(failure) = self.router.disk_failure().outcome_unknown_error() {
            // Another poller of the store failed a write meanwhile.
            self.finish_round_failed(&failure, batch);
            self.ctx.reset_round();
            return;
        }
        let sync = self.cfg.sync_write || self.ctx.force_sync;
        let written = if self.ctx.wb.is_empty() {
            Ok(())
        } else {
            let started = Instant::now();
            let written = self.ctx.engine.write(&mut self.ctx.wb, sync);
            let took = started.elapsed().as_secs_f64();
            if sync {
                self.metrics.write_synced.record(took);
            } else {
                self.metrics.write_unsynced.record(took);
            }
            written
        };
        self.metrics.rounds.increment(1);
        match written {
            Ok(()) => {
                self.ctx.publish_ranges();
                let entries: usize = self.ctx.records.iter().map(|r| r.applied.len()).sum();
                self.metrics.entries.increment(entries as u64);
                self.finish_round_ok()
            }
            Err(e) => {
                self.metrics.write_failures.increment(1);
                let disk_failure = self.router.disk_failure().clone();
                if disk_failure.record(format!("kv engine write failed: {e}")) {
                    error!(self.ctx.logger, "kv engine write failed: the store stops; nothing more is written or applied, pending commands are answered with this error";
                        "regions" => self.ctx.records.len(), "error" => %e);
                }
                let failure = disk_failure.outcome_unknown_error().unwrap_or_else(|| {
                    util::new_error(format!("kv engine write failed ({e}): outcome unknown"))
                });
                self.finish_round_failed(&failure, batch)
            }
        }
        self.ctx.reset_round();
    }
}

/// Builds one [`ApplyPoller`] per poller thread.
pub struct ApplyPollerBuilder<K: KvEngine, N: ApplyNotifier> {
    router: ApplyRouter,
    engine: K,
    notifier: N,
    cfg: Config,
    logger: Logger,
    handlers: CommandHandlers,
    ranges: Option<Arc<RegionRanges>>,
    built: usize,
}

impl<K: KvEngine, N: ApplyNotifier> ApplyPollerBuilder<K, N> {
    /// A builder whose handlers share `engine`, `notifier` and `router`.
    pub fn new(router: ApplyRouter, engine: K, notifier: N, cfg: &Config, logger: Logger) -> Self {
        ApplyPollerBuilder {
            router,
            engine,
            notifier,
            cfg: cfg.clone(),
            logger,
            handlers: CommandHandlers::default(),
            ranges: None,
            built: 0,
        }
    }

    /// Sets the user command handlers every built poller runs.
    pub fn set_command_handlers(&mut self, handlers: CommandHandlers) {
        self.handlers = handlers;
    }

    /// Every built poller publishes the region states it writes to
    /// `ranges` (see [`ApplyPoller::set_region_ranges`]).
    pub fn set_region_ranges(&mut self, ranges: Arc<RegionRanges>) {
        self.ranges = Some(ranges);
    }
}

impl<K: KvEngine, N: ApplyNotifier> HandlerBuilder<ApplyFsm, ControlFsm>
    for ApplyPollerBuilder<K, N>
{
    type Handler = ApplyPoller<K, N>;

    fn build(&mut self) -> ApplyPoller<K, N> {
        let logger = self.logger.new(o!("apply_poller" => self.built));
        self.built += 1;
        let mut poller = ApplyPoller::new(
            self.router.clone(),
            self.engine.clone(),
            self.notifier.clone(),
            &self.cfg,
            logger,
        );
        poller.set_command_handlers(self.handlers.clone());
        if let Some(ranges) = &self.ranges {
            poller.set_region_ranges(Arc::clone(ranges));
        }
        poller
    }
}

/// The result reporting that a round destroyed its region's FSM: the apply
/// state as of the round's start (the checkpoint), nothing else.
fn destroyed_res(region_id: u64, checkpoint: &Checkpoint) -> ApplyRes {
    let mut apply_state = Default::default();
    checkpoint.restore_apply_state(&mut apply_state);
    ApplyRes {
        region_id,
        apply_state,
        applied_term: checkpoint.applied_term,
        exec_results: Vec::new(),
        destroyed: true,
    }
}
