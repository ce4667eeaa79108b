//! [`RaftEngineLogEngine`]: a durable raft log engine over TiKV's
//! [raft-engine](https://crates.io/crates/raft-engine) 0.4.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvproto_lite::raft_serverpb::RaftLocalState;
use raft::eraftpb::Entry;
use raft_engine::{Command, Config, LogBatch, MessageExt, ReadableSize};

use crate::block_cache_guard::BlockCacheGuard;
use crate::log_check::{check_changes, entries_span, SpanChange};
use crate::open::{guarded_open, prepare_dir, IfMissing};
use crate::{Error, RaftLogBatch, RaftLogEngine, Result};

const ENGINE_NAME: &str = "raft-engine";

/// Key of a region's `RaftLocalState` in raft-engine's per-region key space.
const RAFT_STATE_KEY: &[u8] = b"raft_state";

/// Region whose key space [`RaftLogEngine::sync`] deletes a marker key from:
/// raft-engine 0.4.2 skips empty batches, so its own `sync()` never fsyncs.
/// The marker key is not the raft-state key, so region 0 stays usable.
const SYNC_MARKER_REGION: u64 = 0;
const SYNC_MARKER_KEY: &[u8] = b"sync";

/// Tells raft-engine how to find the index of an [`Entry`] (the orphan rule
/// forbids implementing [`MessageExt`] on `Entry` itself).
#[derive(Clone, Copy, Debug)]
struct EntryMessage;

impl MessageExt for EntryMessage {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// A durable [`RaftLogEngine`] over raft-engine 0.4: an append-only log of
/// batches shared by every region, with an in-memory index per region.
///
/// - One [`consume`](RaftLogEngine::consume) is one raft-engine write: atomic
///   across regions and followed by exactly one `fdatasync` when `sync` is
///   set. Concurrent consumers are group-committed by raft-engine.
/// - Batch compression is **off** (`batch_compression_threshold = 0`): raft
///   entries are mostly already-encoded commands that LZ4 barely shrinks; on
///   random payloads it cost 6–7% more writer CPU for no space saving
///   (`docs/benchmarks.md`), plus decompression on every read. Use
///   [`open_with_config`](Self::open_with_config) to turn it on.
/// - Recovery tolerates a torn tail (`TolerateTailCorruption`), so a crash in
///   the middle of a write loses only unsynced batches.
/// - Appends are checked before they reach raft-engine (which panics on a
///   gap or on rewriting compacted entries): such a batch is rejected with
///   [`Error::LogGap`]/[`Error::OverwriteCompacted`].
/// - Old log files are reclaimed by [`purge_expired_files`](Self::purge_expired_files),
///   which the owner should call periodically after compacting.
/// - raft-engine caches the last entry block per *thread*, keyed by file
///   position only, so two instances read on one thread could see each
///   other's entries. Reads from a thread that last read through another
///   instance are therefore handed to a reader thread of this instance
///   (spawned on first need); a store's own threads keep reading inline.
/// - raft-engine aborts the process (panics) if an fsync fails: after a
///   failed fsync the page cache state is unknown and the log cannot be
///   trusted.
///
/// Clones share the same engine.
///
/// # Examples
///
/// ```
/// use engine::{RaftEngineLogEngine, RaftLogBatch, RaftLogEngine};
/// use raft::eraftpb::Entry;
///
/// let dir = tempfile::tempdir().unwrap();
/// let raft = RaftEngineLogEngine::open(dir.path()).unwrap();
/// let mut batch = raft.log_batch(2);
/// for region_id in [1, 2] {
///     let e = Entry { index: 1, term: 1, data: b"put".to_vec().into(), ..Default::default() };
///     batch.append(region_id, vec![e]).unwrap();
/// }
/// raft.consume(&mut batch, true).unwrap(); // one fsync for both regions
/// drop(raft);
///
/// let raft = RaftEngineLogEngine::open(dir.path()).unwrap();
/// assert_eq!(raft.get_entry(2, 1).unwrap().unwrap().data, &b"put"[..]);
/// ```
#[derive(Clone)]
pub struct RaftEngineLogEngine {
    engine: Arc<raft_engine::Engine>,
    /// Routes entry reads so raft-engine's thread-local block cache never
    /// serves another engine instance's block (see `block_cache_guard`).
    reads: Arc<BlockCacheGuard>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for RaftEngineLogEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftEngineLogEngine")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RaftEngineLogEngine {
    /// Opens (or creates) the engine in directory `dir`, recovering every
    /// batch written before.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] if `dir` is not a usable directory (a file, not
    /// UTF-8, unreadable), holds corrupted log files, or is in use by another
    /// engine.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(dir.as_ref(), IfMissing::Create)
    }

    /// Like [`open`](Self::open), but fails when `dir` does not exist (for a
    /// restart, where a missing directory means lost data).
    ///
    /// # Errors
    ///
    /// [`Error::DirectoryNotFound`] if `dir` does not exist, otherwise as
    /// [`open`](Self::open).
    pub fn open_existing(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(dir.as_ref(), IfMissing::Fail)
    }

    /// The configuration [`open`](Self::open) uses for `dir`: raft-engine's
    /// defaults with batch compression turned off. A starting point for
    /// [`open_with_config`](Self::open_with_config).
    ///
    /// # Errors
    ///
    /// [`Error::Open`] if `dir` is not valid UTF-8 (raft-engine keeps it as
    /// a `String`).
    pub fn default_config(dir: impl AsRef<Path>) -> Result<Config> {
        let dir = dir.as_ref();
        let dir_str = dir.to_str().ok_or_else(|| Error::Open {
            engine: ENGINE_NAME,
            path: dir.to_path_buf(),
            source: Box::new(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "raft-engine needs a UTF-8 directory path",
            ))),
        })?;
        Ok(Config {
            dir: dir_str.to_owned(),
            batch_compression_threshold: ReadableSize(0),
            ..Config::default()
        })
    }

    /// Opens (or creates) the engine with a full raft-engine configuration
    /// (file size, compression, recovery mode, ...); `cfg.dir` is the
    /// directory.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); also an invalid configuration.
    pub fn open_with_config(cfg: Config) -> Result<Self> {
        let dir = PathBuf::from(&cfg.dir);
        prepare_dir(ENGINE_NAME, &dir, IfMissing::Create)?;
        Self::open_prepared(dir, cfg)
    }

    fn open_inner(dir: &Path, if_missing: IfMissing) -> Result<Self> {
        prepare_dir(ENGINE_NAME, dir, if_missing)?;
        let cfg = Self::default_config(dir)?;
        Self::open_prepared(dir.to_path_buf(), cfg)
    }

    fn open_prepared(dir: PathBuf, cfg: Config) -> Result<Self> {
        let engine = guarded_open(ENGINE_NAME, &dir, || Ok(raft_engine::Engine::open(cfg)?))?;
        Ok(RaftEngineLogEngine {
            engine: Arc::new(engine),
            reads: Arc::new(BlockCacheGuard::new()),
            path: Arc::new(dir),
        })
    }

    /// The engine directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes log files whose entries were all compacted (or rewritten) and
    /// returns ids of regions whose old entries keep files alive: compact
    /// those regions to let the next purge reclaim more space.
    ///
    /// # Errors
    ///
    /// I/O errors while purging.
    pub fn purge_expired_files(&self) -> Result<Vec<u64>> {
        // Purging rewrites old entries, reading them through the block cache.
        Ok(self
            .reads
            .run(Arc::clone(&self.engine), |e| e.purge_expired_files())??)
    }

    fn span(&self, region_id: u64) -> Option<(u64, u64)> {
        Some((
            self.engine.first_index(region_id)?,
            self.engine.last_index(region_id)?,
        ))
    }
}

/// The [`RaftLogBatch`] of [`RaftEngineLogEngine`]: a raft-engine
/// [`LogBatch`] plus what it does to each region's span of entries, for the
/// checks made before writing.
pub struct RaftEngineLogBatch {
    batch: LogBatch,
    changes: Vec<(u64, SpanChange)>,
}

impl std::fmt::Debug for RaftEngineLogBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftEngineLogBatch")
            .field("changes", &self.changes)
            .field("approximate_size", &self.batch.approximate_size())
            .finish()
    }
}

impl RaftLogBatch for RaftEngineLogBatch {
    fn append(&mut self, region_id: u64, entries: Vec<Entry>) -> Result<()> {
        let Some((first, last)) = entries_span(region_id, &entries)? else {
            return Ok(());
        };
        self.batch
            .add_entries::<EntryMessage>(region_id, &entries)?;
        self.changes
            .push((region_id, SpanChange::Append { first, last }));
        Ok(())
    }

    fn put_raft_state(&mut self, region_id: u64, state: &RaftLocalState) -> Result<()> {
        self.batch
            .put_message(region_id, RAFT_STATE_KEY.to_vec(), state)?;
        Ok(())
    }

    fn clean(&mut self, region_id: u64) -> Result<()> {
        self.batch.add_command(region_id, Command::Clean);
        self.changes.push((region_id, SpanChange::Clean));
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    fn approximate_size(&self) -> usize {
        self.batch.approximate_size()
    }
}

impl RaftLogEngine for RaftEngineLogEngine {
    type LogBatch = RaftEngineLogBatch;

    fn log_batch(&self, capacity: usize) -> RaftEngineLogBatch {
        RaftEngineLogBatch {
            batch: LogBatch::with_capacity(capacity),
            changes: Vec::with_capacity(capacity),
        }
    }

    fn consume(&self, batch: &mut RaftEngineLogBatch, sync: bool) -> Result<usize> {
        check_changes(&batch.changes, |id| self.span(id))?;
        if batch.batch.is_empty() {
            if sync {
                self.sync()?;
            }
            return Ok(0);
        }
        let written = self.engine.write(&mut batch.batch, sync)?;
        batch.changes.clear();
        Ok(written)
    }

    fn get_raft_state(&self, region_id: u64) -> Result<Option<RaftLocalState>> {
        Ok(self.engine.get_message(region_id, RAFT_STATE_KEY)?)
    }

    fn get_entry(&self, region_id: u64, index: u64) -> Result<Option<Entry>> {
        Ok(self.reads.run(Arc::clone(&self.engine), move |e| {
            e.get_entry::<EntryMessage>(region_id, index)
        })??)
    }

    fn fetch_entries_to(
        &self,
        region_id: u64,
        low: u64,
        high: u64,
        max_size: Option<usize>,
        buf: &mut Vec<Entry>,
    ) -> Result<usize> {
        if low >= high {
            return Ok(0);
        }
        // Checked here: raft-engine answers Ok(0) for a region it has never
        // seen, and sizes a buffer by `high - low` before checking the range.
        let Some((first, last)) = self.span(region_id) else {
            return Err(Error::EntriesUnavailable);
        };
        if low < first {
            return Err(Error::EntriesCompacted);
        }
        if high > last.saturating_add(1) {
            return Err(Error::EntriesUnavailable);
        }
        let mut fetched = self.reads.run(Arc::clone(&self.engine), move |e| {
            let mut out = Vec::new();
            e.fetch_entries_to::<EntryMessage>(region_id, low, high, max_size, &mut out)
                .map(|_| out)
        })??;
        let n = fetched.len();
        buf.append(&mut fetched);
        Ok(n)
    }

    fn first_index(&self, region_id: u64) -> Option<u64> {
        self.engine.first_index(region_id)
    }

    fn last_index(&self, region_id: u64) -> Option<u64> {
        self.engine.last_index(region_id)
    }

    fn compact_to(&self, region_id: u64, compact_to: u64) -> Result<u64> {
        let Some((first, last)) = self.span(region_id) else {
            return Ok(0);
        };
        let end = compact_to.min(last.saturating_add(1));
        if end <= first {
            return Ok(0);
        }
        // Written here rather than through `Engine::compact_to`, which logs
        // and swallows write errors.
        let mut batch = LogBatch::with_capacity(1);
        batch.add_command(region_id, Command::Compact { index: end });
        self.engine.write(&mut batch, false)?;
        Ok(end - first)
    }

    fn region_ids(&self) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = self
            .engine
            .raft_groups()
            .into_iter()
            .filter(|&id| self.engine.get(id, RAFT_STATE_KEY).is_some())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn sync(&self) -> Result<()> {
        let mut batch = LogBatch::with_capacity(1);
        batch.delete(SYNC_MARKER_REGION, SYNC_MARKER_KEY.to_vec());
        self.engine.write(&mut batch, true)?;
        Ok(())
    }

    fn purge_expired(&self) -> Result<()> {
        self.purge_expired_files().map(|_| ())
    }
}
