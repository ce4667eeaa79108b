//! The client process's load: `clients x window` tasks on a tokio runtime,
//! each with one `put` of the shipped remote client
//! (`client::grpc::AsyncClient`, shared by all tasks) in flight at a time.
//! The client routes each write to its region's leader and retries as
//! every user of it would; its backend batches the writes in flight to one
//! node into `Kv.BatchCommands` calls.
//!
//! Each task owns a disjoint set of keys, so writes to a key are strictly
//! sequential and its last acknowledged value is known exactly (what the
//! read-back from every node's engine checks). A write the client gives up
//! on (outcome unknown) "poisons" its key, which is then neither written
//! again nor checked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use client::grpc::AsyncClient;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

/// Shared counters and switches.
#[derive(Default)]
pub struct Live {
    pub writes: AtomicU64,
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
    client: AsyncClient,
    live: Arc<Live>,
    hist: Arc<Mutex<Histogram<u64>>>,
) -> TaskResult {
    let tasks = (spec.clients * spec.window) as u64;
    let per_task = (spec.keys as u64).div_ceil(tasks).max(1);
    let mut rng = StdRng::seed_from_u64(spec.seed ^ (id as u64).wrapping_mul(0x9E37_79B9));
    let mut result = TaskResult::default();
    let mut seq = 0u64;
    while !live.stop.load(Ordering::Relaxed) {
        let k = id as u64 + rng.gen_range(0..per_task) * tasks;
        if result.poisoned.contains(&k) {
            continue;
        }
        seq += 1;
        let value = value_bytes(k, seq, spec.value_size);
        let started = Instant::now();
        match client.put(&key_bytes(k), &value).await {
            Ok(()) => {
                result.acked.insert(k, seq);
                if live.measuring.load(Ordering::Relaxed) {
                    live.writes.fetch_add(1, Ordering::Relaxed);
                    let us = started.elapsed().as_micros() as u64;
                    if let Ok(mut h) = hist.lock() {
                        let _ = h.record(us.max(1));
                    }
                }
            }
            Err(_) => {
                live.given_up.fetch_add(1, Ordering::Relaxed);
                result.acked.remove(&k);
                result.poisoned.push(k);
            }
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
