//! Bootstrapping stores: the initial regions of a cluster and the state each
//! store writes for its peers before its first start.

use engine::{Engines, KvEngine, KvWriteBatch, RaftLogBatch, RaftLogEngine};
use kvproto_lite::metapb::{Peer, PeerRole, Region};
use kvproto_lite::raft_serverpb::{PeerState, RegionLocalState};

use crate::error::{Error, Result};
use crate::storage::{initial_apply_state, initial_raft_state};

/// `n - 1` split keys that cut the space of 8-byte big-endian keys into `n`
/// equal ranges (useful when keys are random `u64`s in big-endian bytes).
///
/// # Examples
///
/// ```
/// let keys = raftstore::even_split_keys(4);
/// assert_eq!(keys.len(), 3);
/// assert!(keys.windows(2).all(|w| w[0] < w[1]));
/// ```
pub fn even_split_keys(n: usize) -> Vec<Vec<u8>> {
    if n <= 1 {
        return Vec::new();
    }
    let step = u64::MAX / n as u64;
    (1..n as u64)
        .map(|i| (i * step).to_be_bytes().to_vec())
        .collect()
}

/// The initial regions of a cluster: `split_keys.len() + 1` regions covering
/// the whole key space in order, each with one voter on every store of
/// `store_ids`. Region ids start at 1; peer ids are unique across the
/// cluster and follow the region ids.
///
/// # Errors
///
/// [`Error::Bootstrap`] if `store_ids` is empty or has duplicates, or if the
/// split keys are not strictly increasing and non-empty.
///
/// # Examples
///
/// ```
/// let regions = raftstore::initial_regions(&[1, 2, 3], &raftstore::even_split_keys(2)).unwrap();
/// assert_eq!(regions.len(), 2);
/// assert_eq!(regions[0].get_end_key(), regions[1].get_start_key());
/// assert_eq!(regions[1].get_peers().len(), 3);
/// ```
pub fn initial_regions(store_ids: &[u64], split_keys: &[Vec<u8>]) -> Result<Vec<Region>> {
    if store_ids.is_empty() {
        return Err(Error::Bootstrap("no stores".to_owned()));
    }
    let mut sorted = store_ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != store_ids.len() || sorted.contains(&0) {
        return Err(Error::Bootstrap(format!(
            "store ids must be distinct and non-zero: {store_ids:?}"
        )));
    }
    if split_keys.iter().any(|k| k.is_empty()) || split_keys.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::Bootstrap(
            "split keys must be non-empty and strictly increasing".to_owned(),
        ));
    }
    let n = split_keys.len() as u64 + 1;
    let mut next_peer_id = n + 1;
    let mut regions = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let mut region = Region::default();
        region.set_id(i as u64 + 1);
        if i > 0 {
            region.set_start_key(split_keys[i - 1].clone());
        }
        if i < split_keys.len() {
            region.set_end_key(split_keys[i].clone());
        }
        region.mut_region_epoch().set_conf_ver(1);
        region.mut_region_epoch().set_version(1);
        for &store_id in store_ids {
            let mut peer = Peer::default();
            peer.set_id(next_peer_id);
            peer.set_store_id(store_id);
            peer.set_role(PeerRole::Voter);
            next_peer_id += 1;
            region.mut_peers().push(peer);
        }
        regions.push(region);
    }
    Ok(regions)
}

/// Whether the store's engines already hold regions.
///
/// # Errors
///
/// An engine error.
pub fn is_bootstrapped<EK: KvEngine, ER: RaftLogEngine>(engines: &Engines<EK, ER>) -> Result<bool> {
    Ok(!engines.kv.region_states()?.is_empty())
}

/// Writes the initial state of every region in `regions` that has a peer on
/// `store_id`: region metadata and apply state in the KV engine, raft state
/// in the raft log engine, both synced. Returns how many regions were
/// written.
///
/// # Errors
///
/// [`Error::Bootstrap`] if the engines already hold regions (restart instead
/// of bootstrapping twice), or an engine error.
pub fn bootstrap_store<EK: KvEngine, ER: RaftLogEngine>(
    engines: &Engines<EK, ER>,
    store_id: u64,
    regions: &[Region],
) -> Result<usize> {
    if is_bootstrapped(engines)? {
        return Err(Error::Bootstrap(format!(
            "store {store_id} is already bootstrapped"
        )));
    }
    let mut wb = engines.kv.write_batch();
    let mut lb = engines.raft.log_batch(regions.len() * 64);
    let mut count = 0;
    for region in regions {
        if !region
            .get_peers()
            .iter()
            .any(|p| p.get_store_id() == store_id)
        {
            continue;
        }
        let mut state = RegionLocalState::default();
        state.set_state(PeerState::Normal);
        state.set_region(region.clone());
        wb.put_region_state(region.get_id(), &state);
        wb.put_apply_state(region.get_id(), &initial_apply_state());
        lb.put_raft_state(region.get_id(), &initial_raft_state())?;
        count += 1;
    }
    // Raft state first: a KV region state without raft state would make the
    // store refuse to start, the other way round is simply not bootstrapped.
    engines.raft.consume(&mut lb, true)?;
    engines.kv.write(&mut wb, true)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{MemKvEngine, MemRaftLogEngine};

    #[test]
    fn regions_cover_the_key_space_with_unique_peer_ids() {
        let regions = initial_regions(&[1, 2, 3], &even_split_keys(10)).unwrap();
        assert_eq!(regions.len(), 10);
        assert!(regions[0].get_start_key().is_empty());
        assert!(regions[9].get_end_key().is_empty());
        for w in regions.windows(2) {
            assert_eq!(w[0].get_end_key(), w[1].get_start_key());
        }
        let mut ids: Vec<u64> = regions
            .iter()
            .flat_map(|r| r.get_peers().iter().map(|p| p.get_id()))
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn bad_layouts_are_rejected() {
        assert!(initial_regions(&[], &[]).is_err());
        assert!(initial_regions(&[1, 1], &[]).is_err());
        assert!(initial_regions(&[0], &[]).is_err());
        assert!(initial_regions(&[1], &[b"b".to_vec(), b"a".to_vec()]).is_err());
        assert!(initial_regions(&[1], &[Vec::new()]).is_err());
    }

    #[test]
    fn bootstrapping_twice_is_refused() {
        let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
        let regions = initial_regions(&[1, 2], &even_split_keys(3)).unwrap();
        assert_eq!(bootstrap_store(&engines, 1, &regions).unwrap(), 3);
        assert!(is_bootstrapped(&engines).unwrap());
        assert!(matches!(
            bootstrap_store(&engines, 1, &regions),
            Err(Error::Bootstrap(_))
        ));
        assert_eq!(engines.kv.region_states().unwrap().len(), 3);
    }
}
