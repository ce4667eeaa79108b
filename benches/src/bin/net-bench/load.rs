//! The client process's load: `clients x window` tasks on a tokio runtime,
//! each with one `Put` in flight at a time, sent over gRPC to the leader of
//! the key's region.
//!
//! Each task owns a disjoint set of keys, so writes to a key are strictly
//! sequential and its last acknowledged value is known exactly (what the
//! read-back from every node's engine checks). A refused write is retried
//! with the same value (so a retry after an unknown outcome is harmless):
//! `NotLeader` with a hint goes to the hinted store at once, anything else
//! after a short pause, trying the next replica. A write still unanswered
//! after `max_attempts` gives up and "poisons" its key, which is then
//! neither written again nor checked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kvproto_lite::grpc::KvClient;
use kvproto_lite::kvrpcpb::{Context, PutRequest};
use kvproto_lite::metapb::Region;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

/// The key of key index `k`: 8 big-endian bytes spread evenly over the key
/// space (so over the evenly split regions).
pub fn key_bytes(k: u64) -> [u8; 8] {
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes()
}

/// The value of the `seq`-th write of key index `k`: `seq`, `k`, then
/// zeroes up to `size` bytes.
pub fn value_bytes(k: u64, seq: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.max(16));
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&k.to_le_bytes());
    v.resize(size.max(16), 0);
    v
}

/// Where the writes go.
pub struct Target {
    /// Regions in key order.
    pub regions: Vec<Region>,
    /// The store believed to lead each region.
    pub leaders: Vec<AtomicU64>,
    /// Per store, one client (connection) per client group.
    pub clients: HashMap<u64, Vec<KvClient<Channel>>>,
}

impl Target {
    fn region_index(&self, key: &[u8]) -> usize {
        self.regions
            .partition_point(|r| r.get_start_key() <= key)
            .saturating_sub(1)
    }
}

/// Shared counters and switches.
#[derive(Default)]
pub struct Live {
    pub writes: AtomicU64,
    pub retries: AtomicU64,
    pub given_up: AtomicU64,
    pub measuring: AtomicBool,
    pub stop: AtomicBool,
}

/// What to generate.
#[derive(Clone)]
pub struct Spec {
    pub clients: usize,
    pub window: usize,
    pub keys: usize,
    pub value_size: usize,
    pub seed: u64,
    pub max_attempts: u32,
}

/// What one task did.
#[derive(Default)]
pub struct TaskResult {
    /// Last acknowledged write of every key the task wrote: key -> seq.
    pub acked: HashMap<u64, u64>,
    /// Keys whose last write gave up (outcome unknown).
    pub poisoned: Vec<u64>,
}

/// Runs one task until `live.stop`.
pub async fn task(
    id: usize,
    spec: Spec,
    target: Arc<Target>,
    live: Arc<Live>,
    hist: Arc<Mutex<Histogram<u64>>>,
) -> TaskResult {
    let tasks = (spec.clients * spec.window) as u64;
    let per_task = (spec.keys as u64).div_ceil(tasks).max(1);
    let group = id % spec.clients;
    let mut rng = StdRng::seed_from_u64(spec.seed ^ (id as u64).wrapping_mul(0x9E37_79B9));
    let mut result = TaskResult::default();
    let mut seq = 0u64;
    while !live.stop.load(Ordering::Relaxed) {
        let k = id as u64 + rng.gen_range(0..per_task) * tasks;
        if result.poisoned.contains(&k) {
            continue;
        }
        seq += 1;
        let key = key_bytes(k);
        let value = value_bytes(k, seq, spec.value_size);
        let started = Instant::now();
        let ri = target.region_index(&key);
        let region = &target.regions[ri];
        let mut acked = false;
        for attempt in 0..spec.max_attempts {
            let store = target.leaders[ri].load(Ordering::Relaxed);
            let Some(peer) = kvproto_lite::util::find_peer(region, store) else {
                break;
            };
            let Some(mut client) = target
                .clients
                .get(&store)
                .and_then(|c| c.get(group))
                .cloned()
            else {
                break;
            };
            let mut ctx = Context::default();
            ctx.set_region_id(region.get_id());
            ctx.set_region_epoch(region.get_region_epoch().clone());
            ctx.set_peer(peer.clone());
            let mut req = PutRequest::default();
            req.set_context(ctx);
            req.set_key(key.to_vec());
            req.set_value(value.clone());
            let hint = match client.put(req).await {
                Ok(resp) if !resp.get_ref().has_region_error() => {
                    acked = true;
                    break;
                }
                Ok(resp) => {
                    let err = resp.get_ref().get_region_error();
                    let nl = err.get_not_leader();
                    (err.has_not_leader() && nl.has_leader())
                        .then(|| nl.get_leader().get_store_id())
                }
                Err(_) => None,
            };
            live.retries.fetch_add(1, Ordering::Relaxed);
            match hint {
                Some(leader) => target.leaders[ri].store(leader, Ordering::Relaxed),
                None => {
                    // Try the next replica after a pause.
                    let peers = region.get_peers();
                    let next = peers[(attempt as usize + 1) % peers.len()].get_store_id();
                    target.leaders[ri].store(next, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        if acked {
            result.acked.insert(k, seq);
            if live.measuring.load(Ordering::Relaxed) {
                live.writes.fetch_add(1, Ordering::Relaxed);
                let us = started.elapsed().as_micros() as u64;
                if let Ok(mut h) = hist.lock() {
                    let _ = h.record(us.max(1));
                }
            }
        } else {
            live.given_up.fetch_add(1, Ordering::Relaxed);
            result.acked.remove(&k);
            result.poisoned.push(k);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_evenly_split_regions() {
        let n = 16u64;
        let step = u64::MAX / n;
        let mut per_region = vec![0u32; n as usize];
        for k in 0..16_000u64 {
            let v = u64::from_be_bytes(key_bytes(k));
            per_region[((v / step).min(n - 1)) as usize] += 1;
        }
        assert!(
            per_region.iter().all(|&c| (800..=1200).contains(&c)),
            "{per_region:?}"
        );
    }

    #[test]
    fn values_name_their_write() {
        let v = value_bytes(7, 3, 16);
        assert_eq!(v.len(), 16);
        assert_eq!(u64::from_le_bytes(v[..8].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(v[8..16].try_into().unwrap()), 7);
        assert_eq!(value_bytes(7, 3, 40).len(), 40);
    }
}
