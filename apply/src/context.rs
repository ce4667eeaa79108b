//! Per-round state shared by every region a poller handles in one round:
//! the KV write batch, reads through it, and what to report afterwards.

use std::cell::RefCell;
use std::collections::HashMap;

use engine::{KvEngine, KvWriteBatch};
use kvproto_lite::eraftpb::Entry;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::RaftCmdResponse;
use kvproto_lite::raft_serverpb::{
    PeerState, RaftApplyState, RaftTruncatedState, RegionLocalState,
};
use std::sync::Arc;

use crate::ranges::{RangeUpdate, RegionRanges};
use crate::user_cmd::{CommandHandlers, KeyStore};
use crate::{Callback, ExecResult};

/// A response waiting for the round's write.
pub(crate) struct PendingCallback {
    pub cb: Callback,
    pub resp: RaftCmdResponse,
    /// The response reports a command whose effects are in the write batch:
    /// if the write fails it is replaced by an error.
    pub needs_write: bool,
}

/// A region's state before the round, restored if the round's write fails.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checkpoint {
    pub applied_index: u64,
    pub applied_term: u64,
    pub commit_index: u64,
    pub commit_term: u64,
    pub truncated: (u64, u64),
    /// Cloned only when an admin command is about to change the region.
    pub region: Option<Region>,
    pub pending_remove: bool,
}

impl Checkpoint {
    pub(crate) fn of(state: &RaftApplyState, applied_term: u64, pending_remove: bool) -> Self {
        Checkpoint {
            applied_index: state.get_applied_index(),
            applied_term,
            commit_index: state.get_commit_index(),
            commit_term: state.get_commit_term(),
            truncated: (
                state.get_truncated_state().get_index(),
                state.get_truncated_state().get_term(),
            ),
            region: None,
            pending_remove,
        }
    }

    pub(crate) fn restore_apply_state(&self, state: &mut RaftApplyState) {
        state.set_applied_index(self.applied_index);
        state.set_commit_index(self.commit_index);
        state.set_commit_term(self.commit_term);
        let mut t = RaftTruncatedState::default();
        t.set_index(self.truncated.0);
        t.set_term(self.truncated.1);
        state.set_truncated_state(t);
    }
}

/// What one region did in the current round.
pub(crate) struct RoundRecord {
    pub region_id: u64,
    /// The FSM's registration generation when the round started.
    pub generation: u64,
    pub checkpoint: Checkpoint,
    pub callbacks: Vec<PendingCallback>,
    pub exec_results: Vec<ExecResult>,
    /// Entries executed this round, kept so a failed write can re-queue them.
    pub applied: Vec<Entry>,
    /// The state after the round, reported in `ApplyRes`.
    pub apply_state: Option<RaftApplyState>,
    pub applied_term: u64,
    pub destroyed: bool,
}

impl RoundRecord {
    pub(crate) fn new(region_id: u64, generation: u64, checkpoint: Checkpoint) -> Self {
        RoundRecord {
            region_id,
            generation,
            checkpoint,
            callbacks: Vec::new(),
            exec_results: Vec::new(),
            applied: Vec::new(),
            apply_state: None,
            applied_term: 0,
            destroyed: false,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
            && self.exec_results.is_empty()
            && self.applied.is_empty()
            && self.apply_state.is_none()
            && !self.destroyed
    }

    pub(crate) fn respond(&mut self, cb: Callback, resp: RaftCmdResponse, needs_write: bool) {
        self.callbacks.push(PendingCallback {
            cb,
            resp,
            needs_write,
        });
    }
}

/// A write staged by the command being executed.
pub(crate) type StagedWrite = (Vec<u8>, Option<Vec<u8>>);

/// Capacity of the round's write list and index kept between rounds; a
/// larger one is freed.
const OVERLAY_KEEP_CAPACITY: usize = 4096;

/// Where each key was last written in [`ApplyContext`]'s `round` list,
/// covering its first `indexed` entries. Built only when a command reads:
/// a round of plain writes never hashes a key.
#[derive(Default)]
struct RoundIndex {
    indexed: usize,
    last_write: HashMap<Vec<u8>, usize>,
}

/// The round's KV write batch plus reads through it.
pub(crate) struct ApplyContext<K: KvEngine> {
    pub engine: K,
    pub wb: K::WriteBatch,
    /// Writes of earlier commands this round (not yet in the engine), in
    /// log order: a read must see them. `None` = deleted.
    round: Vec<StagedWrite>,
    /// Finds a key's last write in `round`, caught up lazily by reads.
    index: RefCell<RoundIndex>,
    /// Writes of the command being executed, moved into `overlay` when it
    /// succeeds and dropped when it is rolled back.
    pub staged: Vec<StagedWrite>,
    pub records: Vec<RoundRecord>,
    /// Some command this round needs a durable write.
    pub force_sync: bool,
    pub logger: slog::Logger,
    /// User command handlers, by name.
    pub handlers: CommandHandlers,
    /// The store's region ranges, told about the region states this round
    /// wrote once the write succeeded (none: nobody is told).
    pub ranges: Option<Arc<RegionRanges>>,
    /// Region states written this round, in order (see [`RegionRanges`]).
    range_updates: Vec<RangeUpdate>,
    /// `range_updates.len()` when the current command began.
    range_mark: usize,
    /// Session expiry settings (from the apply config).
    pub sessions: SessionLimits,
}

/// How session records are bounded (see the `session` module).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    pub ttl_entries: u64,
    pub max_per_region: usize,
    pub sweep_interval: u64,
}

impl SessionLimits {
    pub(crate) fn of(cfg: &crate::Config) -> SessionLimits {
        SessionLimits {
            ttl_entries: cfg.session_ttl_entries,
            max_per_region: cfg.max_sessions_per_region,
            sweep_interval: cfg.session_sweep_interval,
        }
    }
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits::of(&crate::Config::default())
    }
}

impl<K: KvEngine> ApplyContext<K> {
    pub(crate) fn new(engine: K, logger: slog::Logger) -> Self {
        let wb = engine.write_batch();
        ApplyContext {
            engine,
            wb,
            round: Vec::new(),
            index: RefCell::new(RoundIndex::default()),
            staged: Vec::new(),
            records: Vec::new(),
            force_sync: false,
            logger,
            handlers: CommandHandlers::default(),
            sessions: SessionLimits::default(),
            ranges: None,
            range_updates: Vec::new(),
            range_mark: 0,
        }
    }

    /// Pairs with `start <= key < end` as of the current position in the
    /// log (the engine's, overridden by this round's and this command's
    /// writes), ascending.
    pub(crate) fn scan(&self, start: &[u8], end: &[u8]) -> engine::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut merged: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> = self
            .engine
            .scan(start, end, usize::MAX)?
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        let inside = |k: &[u8]| k >= start && (end.is_empty() || k < end);
        for (k, v) in self.round.iter().chain(&self.staged) {
            if inside(k) {
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    /// Sets a save point inside the current command (a user request that
    /// may fail on its own); returns the mark for [`Self::rollback_nested`].
    pub(crate) fn nested_save_point(&mut self) -> usize {
        self.wb.set_save_point();
        self.staged.len()
    }

    /// Ends a nested save point, keeping or dropping the writes since.
    pub(crate) fn end_nested(&mut self, mark: usize, keep: bool) -> engine::Result<()> {
        if keep {
            self.wb.pop_save_point()
        } else {
            self.staged.truncate(mark);
            self.wb.rollback_to_save_point()
        }
    }

    /// Reads `key` as of the current position in the log.
    pub(crate) fn get(&self, key: &[u8]) -> engine::Result<Option<Vec<u8>>> {
        if let Some((_, v)) = self.staged.iter().rev().find(|(k, _)| k.as_slice() == key) {
            return Ok(v.clone());
        }
        let mut index = self.index.borrow_mut();
        let RoundIndex {
            indexed,
            last_write,
        } = &mut *index;
        for (pos, (k, _)) in self.round.iter().enumerate().skip(*indexed) {
            last_write.insert(k.clone(), pos);
        }
        *indexed = self.round.len();
        if let Some((_, v)) = last_write.get(key).and_then(|pos| self.round.get(*pos)) {
            return Ok(v.clone());
        }
        drop(index);
        self.engine.get(key)
    }

    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.wb.put(&key, &value);
        self.staged.push((key, Some(value)));
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.wb.delete(&key);
        self.staged.push((key, None));
    }

    /// Writes a region's state into the round's batch, noting it for the
    /// store's [`RegionRanges`]: `Normal` holds the region's range, any
    /// other state none. Rolled back with the command it belongs to.
    pub(crate) fn put_region_state(&mut self, state: &RegionLocalState) {
        let region = state.get_region();
        self.wb.put_region_state(region.get_id(), state);
        let range = (state.get_state() == PeerState::Normal).then(|| region.clone());
        self.range_updates.push((region.get_id(), range));
    }

    /// Tells the store's [`RegionRanges`] about the region states of a
    /// round whose write succeeded.
    pub(crate) fn publish_ranges(&mut self) {
        if let Some(ranges) = &self.ranges {
            if !self.range_updates.is_empty() {
                ranges.publish(self.range_updates.drain(..));
            }
        }
        self.range_updates.clear();
    }

    /// Starts a command: its writes can be rolled back until it ends.
    pub(crate) fn begin_command(&mut self) {
        self.range_mark = self.range_updates.len();
        self.staged.clear();
        self.wb.set_save_point();
    }

    /// Ends a command, keeping (`commit`) or dropping its writes.
    pub(crate) fn end_command(&mut self, commit: bool) -> engine::Result<()> {
        if commit {
            self.wb.pop_save_point()?;
            self.round.append(&mut self.staged);
        } else {
            self.staged.clear();
            self.range_updates.truncate(self.range_mark);
            self.wb.rollback_to_save_point()?;
        }
        Ok(())
    }

    /// Forgets the round's writes (after the batch was written or failed).
    pub(crate) fn reset_round(&mut self) {
        self.wb.clear();
        let index = self.index.get_mut();
        index.indexed = 0;
        if self.round.capacity() > OVERLAY_KEEP_CAPACITY
            || index.last_write.capacity() > OVERLAY_KEEP_CAPACITY
        {
            // Do not keep a huge round's lists around while idle.
            self.round = Vec::new();
            index.last_write = HashMap::new();
        } else {
            self.round.clear();
            index.last_write.clear();
        }
        self.staged.clear();
        self.range_updates.clear();
        self.range_mark = 0;
        self.force_sync = false;
    }
}

impl<K: KvEngine> KeyStore for ApplyContext<K> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        ApplyContext::get(self, key).map_err(|e| format!("engine read failed: {e}"))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        ApplyContext::put(self, key, value);
    }

    fn delete(&mut self, key: Vec<u8>) {
        ApplyContext::delete(self, key);
    }
}

#[cfg(test)]
mod tests {
    use engine::{KvEngine, MemKvEngine};

    use super::*;

    fn ctx() -> ApplyContext<MemKvEngine> {
        ApplyContext::new(
            MemKvEngine::new(),
            slog::Logger::root(slog::Discard, slog::o!()),
        )
    }

    #[test]
    fn reads_see_the_command_then_the_round_then_the_engine() {
        let mut c = ctx();
        let mut wb = c.engine.write_batch();
        wb.put(b"e", b"engine");
        c.engine.write(&mut wb, false).unwrap();
        c.begin_command();
        c.put(b"a".to_vec(), b"1".to_vec());
        c.delete(b"e".to_vec());
        assert_eq!(c.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(c.get(b"e").unwrap(), None);
        c.end_command(true).unwrap();
        assert_eq!(c.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(c.get(b"e").unwrap(), None);
        c.reset_round();
        assert_eq!(c.get(b"e").unwrap(), Some(b"engine".to_vec()));
    }

    #[test]
    fn rolled_back_command_leaves_no_trace() {
        let mut c = ctx();
        c.begin_command();
        c.put(b"a".to_vec(), b"1".to_vec());
        c.end_command(true).unwrap();
        c.begin_command();
        c.put(b"a".to_vec(), b"2".to_vec());
        c.put(b"b".to_vec(), b"2".to_vec());
        c.end_command(false).unwrap();
        assert_eq!(c.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(c.get(b"b").unwrap(), None);
        assert_eq!(c.wb.count(), 1);
        c.engine.write(&mut c.wb, false).unwrap();
        assert_eq!(c.engine.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(c.engine.get(b"b").unwrap(), None);
    }

    #[test]
    fn scan_sees_the_round_over_the_engine_in_key_order() {
        let mut c = ctx();
        let mut wb = c.engine.write_batch();
        wb.put(b"a", b"engine");
        wb.put(b"c", b"engine");
        wb.put(b"x", b"outside");
        c.engine.write(&mut wb, false).unwrap();
        c.begin_command();
        c.put(b"b".to_vec(), b"round".to_vec());
        c.delete(b"c".to_vec());
        c.end_command(true).unwrap();
        c.begin_command();
        c.put(b"a".to_vec(), b"command".to_vec());
        let got = c.scan(b"a", b"m").unwrap();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), b"command".to_vec()),
                (b"b".to_vec(), b"round".to_vec())
            ]
        );
    }

    #[test]
    fn nested_save_point_drops_only_the_inner_writes() {
        let mut c = ctx();
        c.begin_command();
        c.put(b"a".to_vec(), b"1".to_vec());
        let mark = c.nested_save_point();
        c.put(b"b".to_vec(), b"2".to_vec());
        c.end_nested(mark, false).unwrap();
        c.end_command(true).unwrap();
        assert_eq!(c.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(c.get(b"b").unwrap(), None);
        assert_eq!(c.wb.count(), 1);
    }

    #[test]
    fn checkpoint_restores_the_apply_state() {
        let mut state = RaftApplyState::default();
        state.set_applied_index(7);
        state.mut_truncated_state().set_index(3);
        state.mut_truncated_state().set_term(2);
        let cp = Checkpoint::of(&state, 2, false);
        let mut changed = state.clone();
        changed.set_applied_index(9);
        changed.mut_truncated_state().set_index(8);
        cp.restore_apply_state(&mut changed);
        assert_eq!(changed, state);
    }
}
