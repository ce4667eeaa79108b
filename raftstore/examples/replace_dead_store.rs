//! Replacing a store that died for good: a fourth store takes over every
//! replica of the dead one, and nothing acknowledged is lost.
//!
//! The story, step by step (each step is a section of `run`):
//!
//! 1. three stores with durable engines (fjall + raft-engine) and eight
//!    regions, a voter of each on every store; write through a client;
//! 2. store 3 dies (its process is gone and never comes back);
//! 3. writes go on with two of three voters; the leaders compact their
//!    raft logs past what store 3 had, by the log GC thresholds, instead of
//!    keeping the log for a store that will never ask for it;
//! 4. a fourth, empty store joins; every region moves its replica from
//!    store 3 to store 4 with [`client::Membership::move_replica`]: a
//!    learner on store 4 (filled by a snapshot, since the log it would need
//!    is gone), one joint change promoting it and demoting the dead peer,
//!    then the dead peer's removal;
//! 5. every acknowledged write is read back from stores 1, 2 and 4.
//!
//! ```text
//! cargo run -p raftstore --example replace_dead_store
//! ```
//!
//! The integration test `tests/example.rs` runs this file's `run` (with
//! fewer writes).

use std::time::Duration;

use client::{ClientOptions, Membership};
use cluster::{wait_until, Cluster};
use engine::KvEngine;
use raftstore::Config;

/// How long any step may take before the example gives up.
const DEADLINE: Duration = Duration::from_secs(60);

type Error = Box<dyn std::error::Error>;

fn key(i: usize) -> Vec<u8> {
    // Spread over the whole key space, so every region gets writes.
    let spread = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = spread.to_be_bytes().to_vec();
    k.extend_from_slice(format!("-{i}").as_bytes());
    k
}

/// The first raft log index each region still holds on `store_id`.
fn first_indexes<EK: KvEngine, ER: engine::RaftLogEngine>(
    cluster: &Cluster<EK, ER>,
    store_id: u64,
) -> Result<Vec<u64>, Error> {
    let engines = cluster.engines(store_id).ok_or("store not running")?;
    let mut v = Vec::new();
    for region in cluster.regions() {
        let state = engines
            .kv
            .get_apply_state(region.get_id())?
            .ok_or("no apply state")?;
        v.push(state.get_truncated_state().get_index() + 1);
    }
    Ok(v)
}

/// Runs the whole story with `writes` writes before and after the death.
pub fn run(writes: usize) -> Result<(), Error> {
    // 1. Three stores, eight regions.
    let cfg = Config {
        raft_base_tick_interval_ms: 10,
        // Compact often, and past followers that lag by more than 8
        // entries: they catch up by snapshot.
        raft_log_gc_tick_interval: 5,
        raft_log_gc_threshold: 4,
        raft_log_gc_count_limit: 8,
        ..Config::default()
    };
    let mut cluster = Cluster::durable(3, 8, cfg)?;
    cluster.start()?;
    cluster.wait_for_leaders(DEADLINE)?;
    let mut client = cluster.client_with(ClientOptions::default());
    for i in 0..writes {
        client.put(&key(i), format!("v{i}").as_bytes())?;
    }
    println!("1. wrote {writes} keys through 3 stores");

    // 2. Store 3 dies for good. What it had applied is all it will ever
    // have: note where its raft logs ended.
    let dead_first = first_indexes(&cluster, 3)?;
    cluster.stop_store(3);
    println!("2. store 3 is gone");

    // 3. Writes go on; the leaders compact past store 3.
    for i in writes..2 * writes {
        client.put(&key(i), format!("v{i}").as_bytes())?;
    }
    let compacted = wait_until(DEADLINE, || {
        first_indexes(&cluster, 1)
            .map(|now| now.iter().zip(&dead_first).all(|(n, d)| n > d))
            .unwrap_or(false)
    });
    if !compacted {
        return Err("the raft logs were not compacted while store 3 was dead".into());
    }
    println!(
        "3. wrote {writes} more keys; raft logs compacted past store 3 (first index {:?} -> {:?})",
        dead_first,
        first_indexes(&cluster, 1)?
    );

    // 4. A new store takes over every replica of store 3.
    let new_store = cluster.add_store()?;
    let backend = cluster.backend();
    let membership = Membership::new(&backend, Duration::from_secs(2), DEADLINE);
    for region in cluster.regions().to_vec() {
        let new_peer_id = 1_000_000 + region.get_id();
        let moved = membership.move_replica(&region, 3, new_store, new_peer_id)?;
        let stores: Vec<u64> = moved.get_peers().iter().map(|p| p.get_store_id()).collect();
        println!(
            "4. region {}: replica moved from store 3 to store {new_store}; stores {stores:?}, conf_ver {}",
            region.get_id(),
            moved.get_region_epoch().get_conf_ver()
        );
    }

    // 5. Every acknowledged write is on stores 1, 2 and the new one.
    for store in [1, 2, new_store] {
        for i in 0..2 * writes {
            cluster.wait_for_kv(store, &key(i), Some(format!("v{i}").as_bytes()), DEADLINE)?;
        }
    }
    println!(
        "5. all {} writes are on stores 1, 2 and {new_store}",
        2 * writes
    );
    cluster.shutdown();
    Ok(())
}

#[allow(dead_code)] // the integration test calls `run`, not `main`
fn main() -> Result<(), Error> {
    run(1_000)
}
