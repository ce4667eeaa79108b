//! Building a region snapshot from a consistent view of the KV engine, and
//! writing a received one into the engine.
//!
//! The data is a stream of records `[key len: u32 LE][key][value len: u32
//! LE][value]` of *raw* keys (as stored, see [`engine::keys`]): the region's
//! user data and every key of its further per-region state
//! ([`engine::keys::region_extra_ranges`]). The stream is cut into chunks of
//! at most the configured chunk size (a record may span chunks) and
//! checksummed with CRC32.

use engine::{keys, KvEngine, KvSnapshot, KvWriteBatch};
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_serverpb::{PeerState, RaftApplyState, RegionLocalState};

use super::meta::{SnapKey, SnapshotMeta};
use crate::error::{Error, Result};

/// A generated snapshot: its meta and its data in chunks.
#[derive(Debug)]
pub struct GeneratedSnapshot {
    /// What the snapshot is.
    pub meta: SnapshotMeta,
    /// The data, cut into bounded chunks.
    pub chunks: Vec<Vec<u8>>,
}

/// The raw key ranges a region snapshot carries: the region's data range
/// first, then its further per-region state.
pub fn region_ranges(region: &Region) -> Vec<(Vec<u8>, Vec<u8>)> {
    keys::region_ranges(region)
}

/// The term of the entry at the applied index of `state`.
///
/// # Errors
///
/// [`Error::Snapshot`] when the state does not say.
pub fn applied_term(state: &RaftApplyState) -> Result<u64> {
    let applied = state.get_applied_index();
    if applied == state.get_truncated_state().get_index() {
        Ok(state.get_truncated_state().get_term())
    } else if applied == state.get_commit_index() {
        Ok(state.get_commit_term())
    } else {
        Err(Error::Snapshot(format!(
            "apply state does not name the term of applied index {applied}"
        )))
    }
}

/// Builds a snapshot of `region_id` from `view`: region state, apply state
/// and data all as of that one view, so they agree.
///
/// # Errors
///
/// The region has no (or a non-`Normal`) region state or no apply state in
/// the view, or the engine fails.
pub fn generate<S: KvSnapshot>(
    view: &S,
    region_id: u64,
    chunk_size: usize,
) -> Result<GeneratedSnapshot> {
    fail::fail_point!("snapshot_generate", |_| Err(Error::Snapshot(
        "fail point snapshot_generate".into()
    )));
    let region_state = view
        .get_region_state(region_id)?
        .ok_or_else(|| Error::Snapshot(format!("region {region_id} has no region state")))?;
    if region_state.get_state() != PeerState::Normal {
        return Err(Error::Snapshot(format!(
            "region {region_id} is {:?}, not Normal",
            region_state.get_state()
        )));
    }
    let apply_state = view
        .get_apply_state(region_id)?
        .ok_or_else(|| Error::Snapshot(format!("region {region_id} has no apply state")))?;
    let region = region_state.get_region().clone();
    let key = SnapKey {
        region_id,
        term: applied_term(&apply_state)?,
        index: apply_state.get_applied_index(),
    };
    let chunk_size = chunk_size.max(1);
    let mut chunks = Vec::new();
    let mut cur = Vec::with_capacity(chunk_size.min(1 << 20));
    let mut hasher = crc32fast::Hasher::new();
    let mut data_size = 0u64;
    let mut pairs = 0u64;
    for (start, end) in region_ranges(&region) {
        view.scan_raw(&start, &end, &mut |k, v| {
            let (klen, vlen) = match (u32::try_from(k.len()), u32::try_from(v.len())) {
                (Ok(a), Ok(b)) => (a, b),
                _ => return Err(engine::Error::Corruption("key or value over 4 GiB".into())),
            };
            let before = cur.len();
            cur.extend_from_slice(&klen.to_le_bytes());
            cur.extend_from_slice(k);
            cur.extend_from_slice(&vlen.to_le_bytes());
            cur.extend_from_slice(v);
            hasher.update(&cur[before..]);
            data_size += (cur.len() - before) as u64;
            pairs += 1;
            while cur.len() >= chunk_size {
                let rest = cur.split_off(chunk_size);
                chunks.push(std::mem::replace(&mut cur, rest));
            }
            Ok(true)
        })?;
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    Ok(GeneratedSnapshot {
        meta: SnapshotMeta {
            key,
            region,
            apply_state,
            data_size,
            pairs,
            checksum: hasher.finalize(),
        },
        chunks,
    })
}

/// Checks received data against its meta: size and checksum.
///
/// # Errors
///
/// [`Error::Snapshot`] on a mismatch.
pub fn verify(meta: &SnapshotMeta, data: &[u8]) -> Result<()> {
    if data.len() as u64 != meta.data_size {
        return Err(Error::Snapshot(format!(
            "snapshot {} has {} bytes, its meta says {}",
            meta.key,
            data.len(),
            meta.data_size
        )));
    }
    let checksum = crc32fast::hash(data);
    if checksum != meta.checksum {
        return Err(Error::Snapshot(format!(
            "snapshot {} checksum {checksum:#010x} is not {:#010x}",
            meta.key, meta.checksum
        )));
    }
    Ok(())
}

/// Checks received data completely before its snapshot is accepted: size,
/// checksum, every record well-formed and inside the region's ranges, and
/// the announced number of pairs. After this, writing it can only fail in
/// the engine.
///
/// # Errors
///
/// [`Error::Snapshot`] naming the first problem.
pub fn check(meta: &SnapshotMeta, data: &[u8]) -> Result<()> {
    verify(meta, data)?;
    let ranges = region_ranges(&meta.region);
    let pairs = for_each_record(data, |k, _| {
        if ranges
            .iter()
            .any(|(s, e)| s.as_slice() <= k && k < e.as_slice())
        {
            Ok(())
        } else {
            Err(Error::Snapshot(format!(
                "snapshot {} holds key {k:?} outside its region",
                meta.key
            )))
        }
    })?;
    if pairs != meta.pairs {
        return Err(Error::Snapshot(format!(
            "snapshot {} has {pairs} pairs, its meta says {}",
            meta.key, meta.pairs
        )));
    }
    Ok(())
}

/// Decodes the records of verified data, calling `f` for each pair.
fn for_each_record<F: FnMut(&[u8], &[u8]) -> Result<()>>(data: &[u8], mut f: F) -> Result<u64> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if rest.len() < n {
            return Err(Error::Snapshot("truncated snapshot record".into()));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn len(rest: &mut &[u8]) -> Result<usize> {
        let mut b = [0; 4];
        b.copy_from_slice(take(rest, 4)?);
        usize::try_from(u32::from_le_bytes(b))
            .map_err(|_| Error::Snapshot("record length overflows".into()))
    }
    let mut rest = data;
    let mut pairs = 0;
    while !rest.is_empty() {
        let klen = len(&mut rest)?;
        let k = take(&mut rest, klen)?;
        let vlen = len(&mut rest)?;
        let v = take(&mut rest, vlen)?;
        f(k, v)?;
        pairs += 1;
    }
    Ok(pairs)
}

/// The apply state a peer has right after applying a snapshot taken at
/// `key`: the sender's state, with everything up to the snapshot position
/// applied and compacted.
pub fn restored_apply_state(meta: &SnapshotMeta) -> RaftApplyState {
    let mut state = meta.apply_state.clone();
    state.set_applied_index(meta.key.index);
    state.set_commit_index(meta.key.index);
    state.set_commit_term(meta.key.term);
    let t = state.mut_truncated_state();
    t.set_index(meta.key.index);
    t.set_term(meta.key.term);
    state
}

/// Writes a verified snapshot into `kv` in **one** synced write batch: every
/// key of the region's ranges (and of `previous`, the peer's region before
/// the snapshot, if it had one) that the engine holds now is deleted, the
/// snapshot's pairs are put, and the restored apply state and the region
/// state (`Normal`, the snapshot's region) are stored. A crash leaves the
/// engine entirely before or entirely after it.
///
/// # Errors
///
/// A checksum or size mismatch, a record outside the region's ranges
/// (nothing is written then), or an engine error.
pub fn write_to_kv<E: KvEngine>(
    kv: &E,
    meta: &SnapshotMeta,
    data: &[u8],
    previous: Option<&Region>,
) -> Result<()> {
    check(meta, data)?;
    let region_id = meta.key.region_id;
    let ranges = region_ranges(&meta.region);
    let mut wb = kv.write_batch();
    let view = kv.snapshot();
    // The peer's range before the snapshot may be wider (the snapshot comes
    // after a split this store never applied): what lies outside the new
    // range belongs to no peer of this store (no other region could take a
    // snapshot overlapping it), so it goes too.
    let mut cleared = ranges.clone();
    if let Some(prev) = previous {
        cleared.push(keys::region_data_range(
            prev.get_start_key(),
            prev.get_end_key(),
        ));
    }
    for (start, end) in &cleared {
        view.scan_raw(start, end, &mut |k, _| {
            wb.delete_raw(k);
            Ok(true)
        })?;
    }
    let inside = |k: &[u8]| {
        ranges
            .iter()
            .any(|(s, e)| s.as_slice() <= k && k < e.as_slice())
    };
    let pairs = for_each_record(data, |k, v| {
        if !inside(k) {
            return Err(Error::Snapshot(format!(
                "snapshot {} holds key {k:?} outside region {region_id}",
                meta.key
            )));
        }
        wb.put_raw(k, v);
        Ok(())
    })?;
    if pairs != meta.pairs {
        return Err(Error::Snapshot(format!(
            "snapshot {} has {pairs} pairs, its meta says {}",
            meta.key, meta.pairs
        )));
    }
    wb.put_apply_state(region_id, &restored_apply_state(meta));
    let mut region_state = RegionLocalState::default();
    region_state.set_state(PeerState::Normal);
    region_state.set_region(meta.region.clone());
    wb.put_region_state(region_id, &region_state);
    kv.write(&mut wb, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::MemKvEngine;

    fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
        let mut r = Region::default();
        r.set_id(id);
        r.set_start_key(start.to_vec());
        r.set_end_key(end.to_vec());
        r
    }

    fn seed(kv: &MemKvEngine, r: &Region, applied: u64, keys: &[&[u8]]) {
        let mut wb = kv.write_batch();
        for k in keys {
            wb.put(k, &[*k, b"-v"].concat());
        }
        let mut state = RaftApplyState::default();
        state.set_applied_index(applied);
        state.set_commit_index(applied);
        state.set_commit_term(4);
        state.mut_truncated_state().set_index(5);
        state.mut_truncated_state().set_term(5);
        wb.put_apply_state(r.get_id(), &state);
        let mut rs = RegionLocalState::default();
        rs.set_region(r.clone());
        wb.put_region_state(r.get_id(), &rs);
        let mut extra = vec![keys::LOCAL_PREFIX, keys::REGION_EXTRA_KIND_MIN];
        extra.extend_from_slice(&r.get_id().to_be_bytes());
        extra.extend_from_slice(b"client");
        wb.put_raw(&extra, b"session");
        kv.write(&mut wb, true).unwrap();
    }

    fn extra_key(region_id: u64) -> Vec<u8> {
        let mut extra = vec![keys::LOCAL_PREFIX, keys::REGION_EXTRA_KIND_MIN];
        extra.extend_from_slice(&region_id.to_be_bytes());
        extra.extend_from_slice(b"client");
        extra
    }

    #[test]
    fn a_snapshot_moves_a_regions_data_and_state_and_nothing_else() {
        let src = MemKvEngine::new();
        let r = region(2, b"b", b"m");
        seed(&src, &r, 30, &[b"a", b"b", b"c", b"m"]);
        let g = generate(&src.snapshot(), 2, 7).unwrap();
        assert_eq!(
            g.meta.key,
            SnapKey {
                region_id: 2,
                term: 4,
                index: 30
            }
        );
        assert!(g.chunks.iter().all(|c| c.len() <= 7) && g.chunks.len() > 2);
        assert_eq!(g.meta.pairs, 3, "b, c and the session key");

        // The receiver has stale data of the range and a neighbour's key.
        let dst = MemKvEngine::new();
        let mut wb = dst.write_batch();
        wb.put(b"bb", b"stale");
        wb.put(b"z", b"neighbour");
        dst.write(&mut wb, true).unwrap();
        let data = g.chunks.concat();
        write_to_kv(&dst, &g.meta, &data, None).unwrap();
        assert_eq!(
            dst.get(b"bb").unwrap(),
            None,
            "old data of the range is deleted"
        );
        assert_eq!(dst.get(b"z").unwrap(), Some(b"neighbour".to_vec()));
        assert_eq!(dst.get(b"b").unwrap(), Some(b"b-v".to_vec()));
        assert_eq!(dst.get(b"a").unwrap(), None);
        assert_eq!(
            dst.snapshot().get_raw(&extra_key(2)).unwrap(),
            Some(b"session".to_vec()),
            "per-region state travels"
        );
        let state = dst.get_apply_state(2).unwrap().unwrap();
        assert_eq!(state.get_applied_index(), 30);
        assert_eq!(state.get_truncated_state().get_index(), 30);
        assert_eq!(state.get_truncated_state().get_term(), 4);
        assert_eq!(dst.get_region_state(2).unwrap().unwrap().get_region(), &r);
    }

    #[test]
    fn damaged_data_is_refused_and_writes_nothing() {
        let src = MemKvEngine::new();
        let r = region(2, b"", b"");
        seed(&src, &r, 30, &[b"a", b"b"]);
        let g = generate(&src.snapshot(), 2, 1 << 20).unwrap();
        let data = g.chunks.concat();
        let dst = MemKvEngine::new();
        let mut flipped = data.clone();
        flipped[6] ^= 1;
        assert!(write_to_kv(&dst, &g.meta, &flipped, None).is_err());
        assert!(write_to_kv(&dst, &g.meta, &data[..data.len() - 1], None).is_err());
        // A record outside the region, with a matching checksum.
        let mut narrow = g.meta.clone();
        narrow.region = region(2, b"b", b"");
        assert!(write_to_kv(&dst, &narrow, &data, None).is_err());
        assert_eq!(dst.get_apply_state(2).unwrap(), None);
        assert_eq!(dst.get(b"b").unwrap(), None);
    }

    #[test]
    fn a_region_without_state_cannot_be_snapshotted() {
        let kv = MemKvEngine::new();
        assert!(generate(&kv.snapshot(), 9, 1024).is_err());
    }
}
