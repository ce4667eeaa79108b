//! A peer's part in region snapshots (see [`crate::snapshot`]): a leader
//! schedules the generations raft-rs asks for and sends the result through
//! the transport; a follower takes a snapshot's data before raft-rs may
//! restore it, and applies it when the Ready carries it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use engine::RaftLogEngine;
use kvproto_lite::eraftpb::{MessageType, Snapshot};
use kvproto_lite::raft_serverpb::RaftMessage;
use raft::SnapshotStatus;
use slog::{debug, info, warn};

use super::Peer;
use crate::context::PollContext;
use crate::snapshot::{check, restored_apply_state, write_to_kv, SnapKey, SnapshotMeta};
use crate::transport::Transport;
use crate::validate::RejectReason;

/// A received snapshot whose message this peer stepped: its data, taken
/// from the store's `SnapManager`, until the Ready applies it.
pub(super) struct PinnedSnapshot {
    meta: SnapshotMeta,
    data: Arc<Vec<u8>>,
    /// The snapshot's key range, reserved on the store until it is
    /// written or given up.
    _range: apply::RangeReservation,
}

impl<ER: RaftLogEngine> Peer<ER> {
    /// Before a `MsgSnapshot` is stepped: takes its data from the store's
    /// snapshot manager and checks it completely. `false` drops the
    /// message (counted as [`RejectReason::SnapshotDataMissing`]): raft-rs
    /// must never restore a snapshot this store cannot apply.
    pub(crate) fn pin_snapshot_data<EK, T>(
        &mut self,
        ctx: &PollContext<EK, ER, T>,
        msg: &RaftMessage,
    ) -> bool
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let m = msg.get_message();
        if m.get_msg_type() != MessageType::MsgSnapshot {
            return true;
        }
        // The data is kept (not taken) until every check passed, so a
        // refused snapshot's data is still there when it may go in later.
        let malformed = |e: crate::Error| {
            ctx.stats
                .rejected_messages
                .record(RejectReason::SnapshotMetadata);
            e
        };
        let res = SnapshotMeta::decode(m.get_snapshot().get_data())
            .map_err(malformed)
            .and_then(|meta| {
                if meta.key.region_id != self.region_id {
                    return Err(malformed(crate::Error::Snapshot(format!(
                        "snapshot {} is not of region {}",
                        meta.key, self.region_id
                    ))));
                }
                // Refuse a snapshot whose key range overlaps another region
                // this store holds (as last written here), or another
                // snapshot about to go in. Such a region has not applied
                // the split that moved the range yet; if the snapshot went
                // in, that region's older commands for the range would
                // later be applied over the snapshot's newer data. Once it
                // applies the split, the leader's next snapshot goes in
                // (TiKV refuses the same snapshots). A lookup in the
                // store's region ranges, not a scan of every region state.
                let range = ctx.ranges.reserve(&meta.region).map_err(|other| {
                    crate::Error::Snapshot(format!(
                        "snapshot {} overlaps region {other} on this store",
                        meta.key
                    ))
                })?;
                let Some(data) = ctx.snap_mgr.take_received(&meta.key) else {
                    ctx.stats
                        .rejected_messages
                        .record(RejectReason::SnapshotDataMissing);
                    return Err(crate::Error::Snapshot(format!(
                        "the data of snapshot {} is not here",
                        meta.key
                    )));
                };
                check(&meta, &data).map_err(malformed)?;
                Ok(PinnedSnapshot {
                    meta,
                    data,
                    _range: range,
                })
            });
        match res {
            Ok(pinned) => {
                self.pinned_snapshot = Some(Box::new(pinned));
                true
            }
            Err(e) => {
                warn!(self.logger, "drop snapshot message"; "err" => %e,
                    "from_peer_id" => msg.get_from_peer().get_id(), "term" => self.term());
                false
            }
        }
    }

    /// As a leader, hands a snapshot generation raft-rs asked for to the
    /// store's snapshot worker, over a consistent view of the KV engine
    /// taken now.
    pub(crate) fn schedule_snapshot_generation<EK, T>(&mut self, ctx: &PollContext<EK, ER, T>)
    where
        EK: engine::KvEngine,
        T: Transport,
    {
        let Some(slot) = self.raft_group.mut_store().take_snapshot_request() else {
            return;
        };
        debug!(self.logger, "generating snapshot"; "term" => self.term());
        let view = engine::KvEngine::snapshot(&ctx.engines.kv);
        ctx.snap_scheduler.schedule_generate(
            ctx.snap_mgr.clone(),
            view,
            self.region_id,
            slot,
            self.logger.clone(),
        );
    }

    /// Whether a snapshot raft-rs restored must wait before its Ready is
    /// taken: apply has not yet applied every entry handed to it (its
    /// writes would land after, and over, the snapshot's).
    pub(crate) fn snapshot_waits_for_apply(&self) -> bool {
        self.raft_group.snap().is_some_and(|s| !s.is_empty())
            && self.raft_group.store().apply_state().get_applied_index() < self.sent_to_apply
    }

    /// Applies the snapshot of a Ready: the KV engine first (data, apply
    /// state, region state in one synced batch), then the raft log and
    /// state are staged in the round's log batch, then the apply FSM is
    /// re-registered at the snapshot's state.
    ///
    /// # Panics
    ///
    /// If the engines fail: raft-rs has restored the snapshot and there is
    /// no way to keep its promises without storage (as for a failed log
    /// write).
    pub(crate) fn apply_ready_snapshot<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        snap: &Snapshot,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        let md = snap.get_metadata();
        let key = SnapKey {
            region_id: self.region_id,
            term: md.get_term(),
            index: md.get_index(),
        };
        let pinned = match self.pinned_snapshot.take() {
            Some(p) if p.meta.key == key => p,
            // Only a stepped MsgSnapshot lets raft-rs restore one, and it is
            // stepped only with its data pinned.
            _ => panic!(
                "region {}: raft restored snapshot {key} without its data",
                self.region_id
            ),
        };
        let meta = &pinned.meta;
        // Crash tests stop the world at these two points (fail points).
        fail::fail_point!("snapshot_apply_before_kv_write");
        let previous = self.is_initialized().then(|| self.region().clone());
        if let Err(e) = write_to_kv(&ctx.engines.kv, meta, &pinned.data, previous.as_ref()) {
            panic!(
                "region {}: cannot write snapshot {key}: {e}",
                self.region_id
            );
        }
        // The region now holds the snapshot's range here (and no longer
        // its previous one); the reservation ends with `pinned`.
        ctx.ranges
            .publish([(self.region_id, Some(meta.region.clone()))]);
        fail::fail_point!("snapshot_apply_after_kv_write");
        let apply_state = restored_apply_state(meta);
        if let Err(e) = self.raft_group.mut_store().apply_snapshot(
            meta,
            apply_state.clone(),
            &mut ctx.log_batch,
        ) {
            panic!(
                "region {}: cannot stage snapshot {key}: {e}",
                self.region_id
            );
        }
        ctx.need_sync = true;
        self.sent_to_apply = key.index;
        self.snapshot_applied = Some(key.index);
        self.peer_cache.retain(|p| {
            !meta
                .region
                .get_peers()
                .iter()
                .any(|q| q.get_id() == p.get_id())
        });
        let reg = apply::Registration {
            peer_id: self.meta.get_id(),
            region: meta.region.clone(),
            apply_state,
            applied_term: key.term,
        };
        ctx.apply_router
            .schedule_task(self.region_id, apply::ApplyMsg::Registration(Box::new(reg)));
        ctx.snap_mgr.stats().applied.fetch_add(1, Ordering::Relaxed);
        info!(self.logger, "snapshot applied"; "index" => key.index, "snap_term" => key.term,
            "term" => self.term(), "bytes" => meta.data_size, "pairs" => meta.pairs);
    }

    /// Sends a `MsgSnapshot` with its data through the transport.
    pub(super) fn send_snapshot_message<EK, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        rm: RaftMessage,
    ) where
        EK: engine::KvEngine,
        T: Transport,
    {
        let to = rm.get_to_peer().get_id();
        let meta = match SnapshotMeta::decode(rm.get_message().get_snapshot().get_data()) {
            Ok(meta) => meta,
            Err(e) => {
                warn!(self.logger, "cannot send snapshot"; "to_peer_id" => to, "err" => %e);
                self.raft_group.report_snapshot(to, SnapshotStatus::Failure);
                return;
            }
        };
        // A refusal has been reported to this peer already (by message).
        let out = match ctx.snap_mgr.begin_send(meta.key, to) {
            Ok(out) => out,
            Err(e) => {
                debug!(self.logger, "snapshot send refused"; "to_peer_id" => to, "err" => %e);
                return;
            }
        };
        info!(self.logger, "sending snapshot"; "to_peer_id" => to, "index" => meta.key.index,
            "bytes" => meta.data_size, "term" => self.term());
        if let Err(e) = ctx.transport.send_snapshot(rm, out) {
            debug!(self.logger, "snapshot send failed"; "to_peer_id" => to, "err" => %e);
        }
    }

    /// The transport's outcome of a snapshot send, for raft-rs.
    pub(crate) fn on_snapshot_status(&mut self, to_peer_id: u64, delivered: bool) {
        let status = if delivered {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        debug!(self.logger, "snapshot status"; "to_peer_id" => to_peer_id, "delivered" => delivered);
        self.raft_group.report_snapshot(to_peer_id, status);
    }
}
