//! The key ranges of a store's regions, kept in memory so that checking a
//! snapshot against them costs a lookup instead of a scan of every region
//! state in the engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use kvproto_lite::metapb::Region;

/// A key range `[start, end)`; an empty `end` is unbounded.
type Range = (Vec<u8>, Vec<u8>);

fn overlaps(a: &Range, start: &[u8], end: &[u8]) -> bool {
    let a_ends_after_start = a.1.is_empty() || a.1.as_slice() > start;
    let b_ends_after_a_start = end.is_empty() || end > a.0.as_slice();
    a_ends_after_start && b_ends_after_a_start
}

#[derive(Default)]
struct Inner {
    /// Regions whose state on the store is `Normal`: id -> range.
    normal: HashMap<u64, Range>,
    /// The same, ordered by (start key, id).
    by_start: BTreeMap<(Vec<u8>, u64), ()>,
    /// Ranges promised to snapshots being applied, by region id.
    reserved: HashMap<u64, Range>,
}

impl Inner {
    fn remove_normal(&mut self, region_id: u64) {
        if let Some((start, _)) = self.normal.remove(&region_id) {
            self.by_start.remove(&(start, region_id));
        }
    }

    fn set_normal(&mut self, region_id: u64, start: &[u8], end: &[u8]) {
        self.remove_normal(region_id);
        self.normal
            .insert(region_id, (start.to_vec(), end.to_vec()));
        self.by_start.insert((start.to_vec(), region_id), ());
    }

    /// Another region (normal or reserved) whose range overlaps
    /// `[start, end)`.
    fn overlapping(&self, region_id: u64, start: &[u8], end: &[u8]) -> Option<u64> {
        let other = |id: &u64| *id != region_id;
        // Normal ranges do not overlap each other, so only the last one
        // starting before `start` can reach into the range from the left;
        // the others overlap exactly when they start inside it.
        let before = self
            .by_start
            .range(..(start.to_vec(), 0))
            .next_back()
            .map(|((_, id), _)| *id);
        let inside = self
            .by_start
            .range((start.to_vec(), 0)..)
            .take_while(|((s, _), _)| end.is_empty() || s.as_slice() < end)
            .map(|((_, id), _)| *id);
        before
            .into_iter()
            .chain(inside)
            .filter(other)
            .find(|id| self.normal.get(id).is_some_and(|r| overlaps(r, start, end)))
            .or_else(|| {
                self.reserved
                    .iter()
                    .find(|(id, r)| other(id) && overlaps(r, start, end))
                    .map(|(id, _)| *id)
            })
    }
}

/// One change of a region's state on the store, as written to the engine:
/// `Some(region)` for `Normal` (its current range), `None` when it stopped
/// holding data here (`Tombstone`).
pub type RangeUpdate = (u64, Option<Region>);

/// The key ranges of the regions a store holds, shared by its raft and
/// apply pollers.
///
/// It mirrors the region states in the store's KV engine: a region is in
/// it while its state there is `Normal`. Apply publishes the states it
/// wrote once its round's write succeeded, the raft side publishes a
/// snapshot's region once the snapshot is written, and the store fills it
/// from the engine when it starts. Until a write is published the previous
/// ranges stay, which only ever covers more keys than the engine's states:
/// a split narrows its region and adds the new one at once, and a removed
/// region leaves after its tombstone is written.
///
/// A snapshot may only go in where no other region holds keys: its peer
/// [reserves](Self::reserve) the snapshot's range before raft sees the
/// snapshot, which fails if another region (or another reservation)
/// overlaps, and keeps the reservation until the snapshot is written or
/// given up. So two snapshots racing on two pollers can never both take
/// the same keys.
///
/// # Examples
///
/// ```
/// use apply::RegionRanges;
/// use kvproto_lite::metapb::Region;
///
/// let region = |id: u64, start: &[u8], end: &[u8]| {
///     let mut r = Region::default();
///     r.set_id(id);
///     r.set_start_key(start.to_vec());
///     r.set_end_key(end.to_vec());
///     r
/// };
/// let ranges = std::sync::Arc::new(RegionRanges::default());
/// ranges.publish([(1, Some(region(1, b"", b"m"))), (2, Some(region(2, b"m", b"")))]);
/// // Region 3's snapshot for ["k", "p") overlaps both.
/// assert_eq!(ranges.reserve(&region(3, b"k", b"p")).unwrap_err(), 1);
/// // Region 2 is removed; region 3's snapshot for ["m", "p") may go in.
/// ranges.publish([(2, None)]);
/// let reservation = ranges.reserve(&region(3, b"m", b"p")).unwrap();
/// ranges.publish([(3, Some(region(3, b"m", b"p")))]);
/// drop(reservation);
/// assert_eq!(ranges.region_at(b"n"), Some(3));
/// ```
#[derive(Default)]
pub struct RegionRanges {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for RegionRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("RegionRanges")
            .field("regions", &inner.normal.len())
            .field("reserved", &inner.reserved.len())
            .finish()
    }
}

impl RegionRanges {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies region state changes written to the engine, in order, as
    /// one step (a split's two halves never show separately).
    pub fn publish(&self, updates: impl IntoIterator<Item = RangeUpdate>) {
        let mut inner = self.lock();
        for (region_id, region) in updates {
            match region {
                Some(r) => inner.set_normal(region_id, r.get_start_key(), r.get_end_key()),
                None => inner.remove_normal(region_id),
            }
        }
    }

    /// Reserves `region`'s range for a snapshot of it: refused with the id
    /// of another region that holds keys in it (or has reserved them). The
    /// region's own current range does not count. The reservation lasts
    /// until the returned guard is dropped.
    pub fn reserve(self: &Arc<Self>, region: &Region) -> Result<RangeReservation, u64> {
        let (start, end) = (region.get_start_key(), region.get_end_key());
        let mut inner = self.lock();
        if let Some(other) = inner.overlapping(region.get_id(), start, end) {
            return Err(other);
        }
        inner
            .reserved
            .insert(region.get_id(), (start.to_vec(), end.to_vec()));
        Ok(RangeReservation {
            ranges: Arc::clone(self),
            region_id: region.get_id(),
        })
    }

    /// Another region holding keys of `region`'s range, or a snapshot about
    /// to take some (its own current range does not count): the region's
    /// range is not free on this store.
    pub fn overlapping(&self, region: &Region) -> Option<u64> {
        self.lock().overlapping(
            region.get_id(),
            region.get_start_key(),
            region.get_end_key(),
        )
    }

    /// The region holding `key` (state `Normal`), if any.
    pub fn region_at(&self, key: &[u8]) -> Option<u64> {
        let inner = self.lock();
        inner
            .by_start
            .range(..=(key.to_vec(), u64::MAX))
            .next_back()
            .map(|((_, id), _)| *id)
            .filter(|id| {
                inner
                    .normal
                    .get(id)
                    .is_some_and(|(_, end)| end.is_empty() || key < end.as_slice())
            })
    }

    /// How many regions hold a range here.
    pub fn len(&self) -> usize {
        self.lock().normal.len()
    }

    /// Whether no region holds a range here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A snapshot's claim on its key range (see [`RegionRanges::reserve`]);
/// released when dropped.
pub struct RangeReservation {
    ranges: Arc<RegionRanges>,
    region_id: u64,
}

impl std::fmt::Debug for RangeReservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReservation")
            .field("region_id", &self.region_id)
            .finish()
    }
}

impl Drop for RangeReservation {
    fn drop(&mut self) {
        self.ranges.lock().reserved.remove(&self.region_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
        let mut r = Region::default();
        r.set_id(id);
        r.set_start_key(start.to_vec());
        r.set_end_key(end.to_vec());
        r
    }

    #[test]
    fn a_split_narrows_one_region_and_adds_the_other_in_one_step() {
        let ranges = Arc::new(RegionRanges::default());
        ranges.publish([(1, Some(region(1, b"", b"")))]);
        ranges.publish([
            (1, Some(region(1, b"", b"m"))),
            (2, Some(region(2, b"m", b""))),
        ]);
        assert_eq!(ranges.region_at(b"a"), Some(1));
        assert_eq!(ranges.region_at(b"m"), Some(2));
        assert_eq!(ranges.len(), 2);
        // A snapshot of region 2 itself (say, newer) is not refused by its
        // own range; one of region 3 over the same keys is.
        drop(ranges.reserve(&region(2, b"m", b"")).unwrap());
        assert_eq!(ranges.reserve(&region(3, b"x", b"")).unwrap_err(), 2);
    }

    /// Simulation seeds 497/709: this store's peer of region 3 still owns
    /// [a, "") because it has not applied the split that created region
    /// 1000 = [m, ""); a snapshot of region 1000 must wait until it has.
    #[test]
    fn a_snapshot_overlapping_a_region_that_has_not_split_yet_waits() {
        let ranges = Arc::new(RegionRanges::default());
        ranges.publish([(3, Some(region(3, b"a", b""))), (4, None)]);
        assert_eq!(ranges.reserve(&region(1000, b"m", b"")).unwrap_err(), 3);
        // The region itself does not count, nor does a removed one.
        drop(ranges.reserve(&region(3, b"a", b"")).unwrap());
        drop(ranges.reserve(&region(1001, b"", b"a")).unwrap());
        // Region 3 applies the split (the new region's state is written by
        // the split too, here as its own snapshot will).
        ranges.publish([(3, Some(region(3, b"a", b"m")))]);
        drop(ranges.reserve(&region(1000, b"m", b"")).unwrap());
    }

    #[test]
    fn a_reservation_blocks_overlapping_snapshots_until_it_is_dropped() {
        let ranges = Arc::new(RegionRanges::default());
        let a = ranges.reserve(&region(1, b"a", b"c")).unwrap();
        assert_eq!(ranges.reserve(&region(2, b"b", b"d")).unwrap_err(), 1);
        // Adjacent is fine: ranges are half-open.
        drop(ranges.reserve(&region(3, b"c", b"d")).unwrap());
        drop(a);
        drop(ranges.reserve(&region(2, b"b", b"d")).unwrap());
        assert!(ranges.is_empty());
    }

    #[test]
    fn a_removed_region_no_longer_blocks_its_range() {
        let ranges = Arc::new(RegionRanges::default());
        ranges.publish([(1, Some(region(1, b"a", b"z")))]);
        assert_eq!(ranges.reserve(&region(2, b"b", b"c")).unwrap_err(), 1);
        ranges.publish([(1, None)]);
        drop(ranges.reserve(&region(2, b"b", b"c")).unwrap());
        assert_eq!(ranges.region_at(b"b"), None);
    }

    /// Non-overlapping ranges from sorted distinct split points.
    fn layout() -> impl Strategy<Value = Vec<Region>> {
        proptest::collection::btree_set(any::<u8>(), 0..8).prop_map(|points| {
            let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
            keys.extend(points.into_iter().map(|p| vec![p]));
            keys.push(Vec::new());
            keys.windows(2)
                .enumerate()
                .filter(|(i, _)| i % 2 == 0) // leave gaps
                .map(|(i, w)| region(i as u64 + 1, &w[0], &w[1]))
                .collect()
        })
    }

    proptest! {
        /// The lookup agrees with checking every region.
        #[test]
        fn overlap_lookup_matches_a_full_scan(
            regions in layout(),
            start in proptest::collection::vec(any::<u8>(), 0..2),
            len in 0u8..4,
        ) {
            let ranges = Arc::new(RegionRanges::default());
            ranges.publish(regions.iter().map(|r| (r.get_id(), Some(r.clone()))));
            let end = if len == 0 {
                Vec::new()
            } else {
                let mut e = start.clone();
                e.push(len);
                e
            };
            let probe = region(1000, &start, &end);
            let scan = regions.iter().find(|r| {
                overlaps(&(r.get_start_key().to_vec(), r.get_end_key().to_vec()), &start, &end)
            });
            match ranges.reserve(&probe) {
                Ok(_) => prop_assert!(scan.is_none(), "missed {:?}", scan),
                Err(id) => prop_assert!(scan.is_some_and(|r| r.get_id() == id)),
            }
        }
    }
}
