//! `LeaderCache`: the store believed to lead each region.

use std::collections::HashMap;

/// The store a client believes leads each region, learned from successful
/// answers and from `NotLeader` hints (see [`learn`](crate::learn) for
/// when an entry is set or forgotten).
#[derive(Debug, Clone, Default)]
pub struct LeaderCache {
    stores: HashMap<u64, u64>,
}

impl LeaderCache {
    /// An empty cache: every region's leader unknown.
    pub fn new() -> LeaderCache {
        LeaderCache::default()
    }

    /// The store believed to lead `region_id`.
    pub fn get(&self, region_id: u64) -> Option<u64> {
        self.stores.get(&region_id).copied()
    }

    /// Believes `store_id` leads `region_id`.
    pub fn set(&mut self, region_id: u64, store_id: u64) {
        self.stores.insert(region_id, store_id);
    }

    /// Forgets the leader of `region_id`.
    pub fn forget(&mut self, region_id: u64) {
        self.stores.remove(&region_id);
    }
}
