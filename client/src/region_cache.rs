//! `RegionCache`: the regions a client believes in, in key order.

use kvproto_lite::metapb::Region;
use kvproto_lite::util;

/// The key ranges and epochs of the regions a client knows, sorted by
/// start key and never overlapping.
///
/// It starts from a region list (what bootstrap or a placement service
/// says) and learns from the stores' answers: an `EpochNotMatch` carries
/// the region's current metadata and, after a split, its new siblings.
///
/// # Examples
///
/// ```
/// use client::RegionCache;
/// use kvproto_lite::metapb::Region;
///
/// fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> Region {
///     let mut r = Region::default();
///     r.set_id(id);
///     r.set_start_key(start.to_vec());
///     r.set_end_key(end.to_vec());
///     r.mut_region_epoch().set_version(version);
///     r.mut_peers().push(Default::default());
///     r
/// }
///
/// let mut cache = RegionCache::new(vec![region(1, b"", b"", 1)]);
/// // Region 1 split at "m": the store reports both halves.
/// assert!(cache.update(region(1, b"", b"m", 2)));
/// assert!(cache.update(region(2, b"m", b"", 2)));
/// assert_eq!(cache.locate(b"x").map(|r| r.get_id()), Some(2));
/// // A late answer with the old layout is ignored.
/// assert!(!cache.update(region(1, b"", b"", 1)));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RegionCache {
    regions: Vec<Region>,
}

impl RegionCache {
    /// A cache holding `regions` (in any order; they must not overlap).
    pub fn new(mut regions: Vec<Region>) -> RegionCache {
        regions.sort_by(|a, b| a.get_start_key().cmp(b.get_start_key()));
        RegionCache { regions }
    }

    /// The region believed to hold `key`.
    pub fn locate(&self, key: &[u8]) -> Option<&Region> {
        let idx = self.regions.partition_point(|r| r.get_start_key() <= key);
        let region = self.regions.get(idx.checked_sub(1)?)?;
        util::is_key_in_region(key, region).then_some(region)
    }

    /// Every known region, in key order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Learns a region's current metadata. Returns whether it was taken.
    ///
    /// Ignored (returns `false`): a region without peers (an uninitialized
    /// peer's view, which says nothing about the layout), and a region
    /// whose epoch is older than the cached entry with the same id (a late
    /// answer must not bring an old layout back). Otherwise cached regions
    /// it overlaps keep only the parts of their range it does not cover: a
    /// key there is still routed to the old region id, whose store answers
    /// with the current layout (for example the other half of a split not
    /// reported yet).
    pub fn update(&mut self, region: Region) -> bool {
        if region.get_peers().is_empty() {
            return false;
        }
        let newer_known = self.regions.iter().any(|r| {
            r.get_id() == region.get_id()
                && util::is_epoch_stale(region.get_region_epoch(), r.get_region_epoch())
        });
        if newer_known {
            return false;
        }
        let (start, end) = (region.get_start_key(), region.get_end_key());
        let mut kept = Vec::with_capacity(self.regions.len() + 2);
        for r in self.regions.drain(..) {
            let overlaps = (end.is_empty() || r.get_start_key() < end)
                && (r.get_end_key().is_empty() || start < r.get_end_key());
            if !overlaps {
                kept.push(r);
                continue;
            }
            if r.get_start_key() < start {
                let mut left = r.clone();
                left.set_end_key(start.to_vec());
                kept.push(left);
            }
            if !end.is_empty() && (r.get_end_key().is_empty() || end < r.get_end_key()) {
                let mut right = r;
                right.set_start_key(end.to_vec());
                kept.push(right);
            }
        }
        kept.push(region);
        kept.sort_by(|a, b| a.get_start_key().cmp(b.get_start_key()));
        self.regions = kept;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvproto_lite::metapb::Peer;
    use proptest::prelude::*;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> Region {
        let mut r = Region::default();
        r.set_id(id);
        r.set_start_key(start.to_vec());
        r.set_end_key(end.to_vec());
        r.mut_region_epoch().set_version(version);
        r.mut_peers().push(Peer::default());
        r
    }

    #[test]
    fn lookup_follows_key_ranges() {
        let c = RegionCache::new(vec![region(2, b"m", b"", 1), region(1, b"", b"m", 1)]);
        assert_eq!(c.locate(b"a").unwrap().get_id(), 1);
        assert_eq!(c.locate(b"m").unwrap().get_id(), 2);
        assert_eq!(c.locate(b"zzz").unwrap().get_id(), 2);
        assert!(RegionCache::new(vec![region(1, b"b", b"c", 1)])
            .locate(b"a")
            .is_none());
    }

    #[test]
    fn learning_half_of_a_split_keeps_the_other_half_routable() {
        let mut c = RegionCache::new(vec![region(1, b"", b"", 1)]);
        assert!(c.update(region(1, b"", b"h", 2)));
        assert_eq!(c.locate(b"a").unwrap().get_region_epoch().get_version(), 2);
        // Still routed to region 1 (old epoch) until the store says more.
        let rest = c.locate(b"z").unwrap();
        assert_eq!(
            (rest.get_id(), rest.get_region_epoch().get_version()),
            (1, 1)
        );
        assert!(c.update(region(100, b"h", b"", 2)));
        assert_eq!(c.locate(b"z").unwrap().get_id(), 100);
        assert_eq!(c.regions().len(), 2);
    }

    #[test]
    fn a_new_region_in_the_middle_splits_the_cached_one() {
        let mut c = RegionCache::new(vec![region(1, b"", b"", 1)]);
        assert!(c.update(region(5, b"c", b"f", 1)));
        let ids: Vec<u64> = c.regions().iter().map(|r| r.get_id()).collect();
        assert_eq!(ids, vec![1, 5, 1]);
        assert_eq!(c.locate(b"d").unwrap().get_id(), 5);
        assert_eq!(c.locate(b"g").unwrap().get_start_key(), b"f");
    }

    #[test]
    fn stale_and_peerless_regions_are_ignored() {
        let mut c = RegionCache::new(vec![region(1, b"", b"m", 3), region(2, b"m", b"", 3)]);
        // An answer older than what is cached for region 1.
        assert!(!c.update(region(1, b"", b"", 2)));
        let mut uninitialized = region(7, b"a", b"z", 9);
        uninitialized.clear_peers();
        assert!(!c.update(uninitialized));
        let ids: Vec<u64> = c.regions().iter().map(|r| r.get_id()).collect();
        assert_eq!(ids, vec![1, 2]);
    }

    fn key(b: u8) -> Vec<u8> {
        if b == 0 {
            Vec::new()
        } else {
            vec![b]
        }
    }

    proptest! {
        /// Whatever is learned, in whatever order, the cache stays sorted
        /// and non-overlapping, the binary-search lookup agrees with a scan,
        /// and the latest region taken covers its whole range.
        #[test]
        fn updates_keep_the_cache_a_partition(
            updates in proptest::collection::vec((1u64..6, 0u8..8, 0u8..8, 1u64..5), 0..20),
        ) {
            let mut c = RegionCache::new(vec![region(1, b"", b"", 1)]);
            for (id, a, b, version) in updates {
                let (lo, hi) = (a.min(b), a.max(b));
                let start = key(lo);
                let end = if hi == lo { Vec::new() } else { key(hi) };
                let r = region(id, &start, &end, version);
                if c.update(r.clone()) {
                    for k in lo..8 {
                        let k = vec![k];
                        if util::is_key_in_region(&k, &r) {
                            prop_assert_eq!(c.locate(&k).map(|x| x.get_id()), Some(id));
                        }
                    }
                }
                let rs = c.regions();
                for w in rs.windows(2) {
                    prop_assert!(!w[0].get_end_key().is_empty());
                    prop_assert!(w[0].get_end_key() <= w[1].get_start_key());
                    prop_assert!(w[0].get_start_key() < w[1].get_start_key());
                }
                for k in 0u8..10 {
                    let k = vec![k];
                    let scanned = rs.iter().find(|r| util::is_key_in_region(&k, r));
                    prop_assert_eq!(c.locate(&k).map(|r| r.get_id()), scanned.map(|r| r.get_id()));
                }
            }
        }
    }
}
