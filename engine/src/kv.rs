//! The state machine storage traits: [`KvEngine`], [`KvWriteBatch`] and
//! [`KvSnapshot`].

use kvproto_lite::raft_serverpb::{RaftApplyState, RegionLocalState};
use protobuf::Message as _;

use crate::Result;

/// Stores the replicated key-value data of every region on a store, plus each
/// region's [`RaftApplyState`] and [`RegionLocalState`].
///
/// Keys given to [`get`](KvEngine::get), [`scan`](KvEngine::scan) and
/// [`KvWriteBatch::put`] are *user* keys; the engine stores them under the
/// data prefix described in [`keys`](crate::keys), apart from the per-region
/// metadata, so a data scan never returns metadata.
///
/// Apply writes a command's data and the new apply state in one
/// [`KvWriteBatch`], so after a crash the data and the applied index always
/// agree: no entry is applied twice or lost.
pub trait KvEngine: Clone + Send + Sync + 'static {
    /// The write batch type of this engine.
    type WriteBatch: KvWriteBatch;
    /// The snapshot type of this engine.
    type Snapshot: KvSnapshot;

    /// A new, empty write batch.
    fn write_batch(&self) -> Self::WriteBatch;

    /// Applies the batch atomically (`sync = true`: durable before return,
    /// together with every earlier write) and leaves it empty.
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store, or a state in the batch that
    /// could not be encoded; the batch is left as it was then.
    fn write(&self, batch: &mut Self::WriteBatch, sync: bool) -> Result<()>;

    /// The value of a user key.
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Pairs with `start <= key < end` (user keys; an empty `end` means
    /// unbounded), ascending, at most `limit` of them.
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// A consistent, read-only view of the data as of now; later writes are
    /// not visible through it.
    fn snapshot(&self) -> Self::Snapshot;

    /// The region's stored apply state, if any.
    ///
    /// # Errors
    ///
    /// A stored state that cannot be decoded, or an I/O error.
    fn get_apply_state(&self, region_id: u64) -> Result<Option<RaftApplyState>>;

    /// The region's stored region state, if any.
    ///
    /// # Errors
    ///
    /// A stored state that cannot be decoded, or an I/O error.
    fn get_region_state(&self, region_id: u64) -> Result<Option<RegionLocalState>>;

    /// All stored region states, ordered by region id (recovery after restart).
    ///
    /// # Errors
    ///
    /// A stored state that cannot be decoded, or an I/O error.
    fn region_states(&self) -> Result<Vec<RegionLocalState>>;

    /// Every stored region state, ordered by region id, each with the
    /// region's stored apply state (`None` if it has none): what a store
    /// reads when it starts. The engines of this crate answer with two
    /// range scans (region states, apply states) joined by region id; the
    /// default reads [`region_states`](Self::region_states) and looks each
    /// apply state up, one point read per region.
    ///
    /// # Errors
    ///
    /// A stored state or key that cannot be decoded, or an I/O error.
    fn region_and_apply_states(&self) -> Result<Vec<(RegionLocalState, Option<RaftApplyState>)>> {
        self.region_states()?
            .into_iter()
            .map(|state| {
                let apply = self.get_apply_state(state.get_region().get_id())?;
                Ok((state, apply))
            })
            .collect()
    }

    /// Makes every earlier write durable.
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store.
    fn sync(&self) -> Result<()>;
}

/// Writes collected for one atomic [`KvEngine::write`].
///
/// Operations apply in order (a later put of the same key wins).
pub trait KvWriteBatch: Send {
    /// Sets a user key.
    fn put(&mut self, key: &[u8], value: &[u8]);
    /// Deletes a user key.
    fn delete(&mut self, key: &[u8]);
    /// Stores the region's apply state.
    fn put_apply_state(&mut self, region_id: u64, state: &RaftApplyState);
    /// Stores the region's region state.
    fn put_region_state(&mut self, region_id: u64, state: &RegionLocalState);
    /// Number of operations in the batch.
    fn count(&self) -> usize;
    /// Total bytes of keys and values in the batch.
    fn data_size(&self) -> usize;
    /// `true` if the batch holds no operation.
    fn is_empty(&self) -> bool;
    /// Sets an encoded (raw) key, written as given: no data prefix. For
    /// region snapshots, which copy a region's keys (data and per-region
    /// state, see [`keys`](crate::keys)) as they are stored.
    fn put_raw(&mut self, key: &[u8], value: &[u8]);
    /// Deletes an encoded (raw) key (see [`put_raw`](KvWriteBatch::put_raw)).
    fn delete_raw(&mut self, key: &[u8]);
    /// Deletes every encoded (raw) key in `[start, end)` that exists when
    /// the batch is written up to this point: stored before, or put
    /// earlier in the batch. For destroying a region (its data range and
    /// per-region state, see [`keys::region_ranges`](crate::keys::region_ranges)).
    /// An empty or inverted range deletes nothing.
    fn delete_range_raw(&mut self, start: &[u8], end: &[u8]);
    /// Removes every operation and save point.
    fn clear(&mut self);
    /// Marks the current end of the batch; save points nest.
    ///
    /// Apply sets one before each command so a failing command's writes can
    /// be dropped without touching the rest of the round.
    fn set_save_point(&mut self);
    /// Drops every operation added since the latest save point and removes
    /// that save point.
    ///
    /// # Errors
    ///
    /// [`Error::NoSavePoint`](crate::Error::NoSavePoint) if none is set.
    fn rollback_to_save_point(&mut self) -> Result<()>;
    /// Removes the latest save point, keeping the operations.
    ///
    /// # Errors
    ///
    /// [`Error::NoSavePoint`](crate::Error::NoSavePoint) if none is set.
    fn pop_save_point(&mut self) -> Result<()>;
}

/// What [`KvSnapshot::scan_raw`] calls with each stored pair (raw key,
/// value): `Ok(true)` to go on, `Ok(false)` to stop, an error to stop and
/// return it.
pub type RawVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// A consistent, read-only view of a [`KvEngine`] (user keys, as in
/// [`KvEngine::get`] and [`KvEngine::scan`]).
pub trait KvSnapshot: Send + Sync + 'static {
    /// The value of a user key as of the snapshot.
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Pairs with `start <= key < end` (empty `end` = unbounded) as of the
    /// snapshot, ascending, at most `limit`.
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// The value of an encoded (raw) key as of the snapshot, as stored (see
    /// [`keys`](crate::keys)).
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store.
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Calls `f` with every stored pair whose encoded key is in
    /// `[start, end)`, ascending, as of the snapshot, until `f` returns
    /// `Ok(false)` or an error. Streams: nothing but the current pair is
    /// held, so a region of any size can be copied in bounded memory.
    ///
    /// # Errors
    ///
    /// I/O errors from the underlying store, or the first error of `f`.
    fn scan_raw(&self, start: &[u8], end: &[u8], f: &mut RawVisitor<'_>) -> Result<()>;

    /// The region's apply state as of the snapshot, if any.
    ///
    /// # Errors
    ///
    /// A stored state that cannot be decoded, or an I/O error.
    fn get_apply_state(&self, region_id: u64) -> Result<Option<RaftApplyState>> {
        decode(self.get_raw(&crate::keys::apply_state_key(region_id))?)
    }

    /// The region's region state as of the snapshot, if any.
    ///
    /// # Errors
    ///
    /// A stored state that cannot be decoded, or an I/O error.
    fn get_region_state(&self, region_id: u64) -> Result<Option<RegionLocalState>> {
        decode(self.get_raw(&crate::keys::region_state_key(region_id))?)
    }
}

/// Joins the raw pairs of the region-state key range and of the
/// apply-state key range (see [`keys`](crate::keys)), both ascending, by
/// region id: every region state with its apply state, if stored.
/// Apply states of regions without a region state are skipped undecoded.
pub(crate) fn join_region_and_apply_states<K, V>(
    regions: impl Iterator<Item = Result<(K, V)>>,
    mut applies: impl Iterator<Item = Result<(K, V)>>,
) -> Result<Vec<(RegionLocalState, Option<RaftApplyState>)>>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    use crate::keys::{region_id_of_local_key, APPLY_STATE_KIND, REGION_STATE_KIND};
    let mut next_apply = move || -> Result<Option<(u64, V)>> {
        match applies.next() {
            None => Ok(None),
            Some(pair) => {
                let (k, v) = pair?;
                Ok(Some((
                    region_id_of_local_key(k.as_ref(), APPLY_STATE_KIND)?,
                    v,
                )))
            }
        }
    };
    let mut apply = next_apply()?;
    let mut out = Vec::new();
    for pair in regions {
        let (k, v) = pair?;
        let region_id = region_id_of_local_key(k.as_ref(), REGION_STATE_KIND)?;
        let state = RegionLocalState::parse_from_bytes(v.as_ref())?;
        while apply.as_ref().is_some_and(|(id, _)| *id < region_id) {
            apply = next_apply()?;
        }
        let apply_state = match &apply {
            Some((id, bytes)) if *id == region_id => {
                Some(RaftApplyState::parse_from_bytes(bytes.as_ref())?)
            }
            _ => None,
        };
        out.push((state, apply_state));
    }
    Ok(out)
}

fn decode<M: protobuf::Message>(bytes: Option<Vec<u8>>) -> Result<Option<M>> {
    bytes
        .map(|b| M::parse_from_bytes(&b).map_err(Into::into))
        .transpose()
}
