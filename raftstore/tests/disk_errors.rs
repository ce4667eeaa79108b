//! A failed raft-log or KV write stops the store cleanly: no poller
//! panics, every pending command is answered with an error naming the
//! failure, nothing more is written, the other stores carry on, and a
//! restart with a healthy disk loses no acknowledged write.

mod common;

use common::{fast_config, put_request, WAIT};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cluster::{wait_until, Cluster, EngineFactory};
use engine::{Engines, KvEngine, MemKvEngine, MemRaftLogEngine, RaftLogEngine};
use kvproto_lite::eraftpb::Entry;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::RaftCmdResponse;
use kvproto_lite::raft_serverpb::{RaftApplyState, RaftLocalState, RegionLocalState};

fn injected() -> engine::Error {
    engine::Error::Io(std::io::Error::other("injected disk failure"))
}

/// An in-memory raft log whose writes fail while `fail` is set, and
/// panic (as raft-engine does when an fsync fails) while `panic` is set.
#[derive(Clone, Default)]
struct FailingLog {
    inner: MemRaftLogEngine,
    fail: Arc<AtomicBool>,
    panic: Arc<AtomicBool>,
}

impl RaftLogEngine for FailingLog {
    type LogBatch = <MemRaftLogEngine as RaftLogEngine>::LogBatch;

    fn log_batch(&self, capacity: usize) -> Self::LogBatch {
        self.inner.log_batch(capacity)
    }
    fn consume(&self, batch: &mut Self::LogBatch, sync: bool) -> engine::Result<usize> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(injected());
        }
        if self.panic.load(Ordering::SeqCst) {
            panic!("injected disk failure: fsync failed");
        }
        self.inner.consume(batch, sync)
    }
    fn get_raft_state(&self, region_id: u64) -> engine::Result<Option<RaftLocalState>> {
        self.inner.get_raft_state(region_id)
    }
    fn get_entry(&self, region_id: u64, index: u64) -> engine::Result<Option<Entry>> {
        self.inner.get_entry(region_id, index)
    }
    fn fetch_entries_to(
        &self,
        region_id: u64,
        low: u64,
        high: u64,
        max_size: Option<usize>,
        buf: &mut Vec<Entry>,
    ) -> engine::Result<usize> {
        self.inner
            .fetch_entries_to(region_id, low, high, max_size, buf)
    }
    fn first_index(&self, region_id: u64) -> Option<u64> {
        self.inner.first_index(region_id)
    }
    fn last_index(&self, region_id: u64) -> Option<u64> {
        self.inner.last_index(region_id)
    }
    fn compact_to(&self, region_id: u64, compact_to: u64) -> engine::Result<u64> {
        self.inner.compact_to(region_id, compact_to)
    }
    fn region_ids(&self) -> engine::Result<Vec<u64>> {
        self.inner.region_ids()
    }
    fn sync(&self) -> engine::Result<()> {
        self.inner.sync()
    }
}

/// An in-memory KV engine whose writes fail while `fail` is set.
#[derive(Clone, Default)]
struct FailingKv {
    inner: MemKvEngine,
    fail: Arc<AtomicBool>,
}

impl KvEngine for FailingKv {
    type WriteBatch = <MemKvEngine as KvEngine>::WriteBatch;
    type Snapshot = <MemKvEngine as KvEngine>::Snapshot;

    fn write_batch(&self) -> Self::WriteBatch {
        self.inner.write_batch()
    }
    fn write(&self, batch: &mut Self::WriteBatch, sync: bool) -> engine::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.write(batch, sync)
    }
    fn get(&self, key: &[u8]) -> engine::Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> engine::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(start, end, limit)
    }
    fn snapshot(&self) -> Self::Snapshot {
        self.inner.snapshot()
    }
    fn get_apply_state(&self, region_id: u64) -> engine::Result<Option<RaftApplyState>> {
        self.inner.get_apply_state(region_id)
    }
    fn get_region_state(&self, region_id: u64) -> engine::Result<Option<RegionLocalState>> {
        self.inner.get_region_state(region_id)
    }
    fn region_states(&self) -> engine::Result<Vec<RegionLocalState>> {
        self.inner.region_states()
    }
    fn sync(&self) -> engine::Result<()> {
        self.inner.sync()
    }
}

type Made = Arc<Mutex<HashMap<u64, Engines<FailingKv, FailingLog>>>>;

/// A started 3-store cluster of failing-on-demand engines, one region,
/// with `cfg`.
fn started_with(cfg: raftstore::Config) -> (Cluster<FailingKv, FailingLog>, Made) {
    let made: Made = Arc::default();
    let m = made.clone();
    let factory: EngineFactory<FailingKv, FailingLog> = Box::new(move |id| {
        let mut made = m.lock().unwrap();
        Ok(made
            .entry(id)
            .or_insert_with(|| Engines::new(FailingKv::default(), FailingLog::default()))
            .clone())
    });
    let mut cluster = Cluster::with_factory(3, 1, cfg, factory, None).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    (cluster, made)
}

fn put(region: &Region, store: u64, key: &str) -> kvproto_lite::raft_cmdpb::RaftCmdRequest {
    put_request(region, store, key.as_bytes(), key.as_bytes())
}

/// Writes `count` keys through the region's current leader (retrying
/// elsewhere while a leader is elected) and returns them.
fn acked_writes(
    cluster: &Cluster<FailingKv, FailingLog>,
    prefix: &str,
    count: usize,
) -> Vec<String> {
    let region = cluster.regions()[0].clone();
    let mut keys = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}{i:03}");
        let ok = wait_until(WAIT, || {
            let Some(leader) = cluster.leader_store(region.get_id()) else {
                return false;
            };
            cluster
                .call(leader, put(&region, leader, &key), WAIT)
                .is_ok_and(|r| !r.get_header().has_error())
        });
        assert!(ok, "{key} was never acknowledged");
        keys.push(key);
    }
    keys
}

fn is_disk_failure_error(resp: &RaftCmdResponse) -> bool {
    let err = resp.get_header().get_error();
    resp.get_header().has_error()
        && err.get_message().contains("failed disk write")
        && err.get_message().contains("injected disk failure")
}

/// Which write of the leader fails.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    RaftLog,
    RaftLogPanic,
    Kv,
}

/// Fails the leader's raft log (or KV engine), sends it commands, and
/// checks the stop, the other stores and the restart.
fn failed_write_stops_the_store(fault: Fault) {
    failed_write_stops_the_store_with(fault, fast_config());
}

fn failed_write_stops_the_store_with(fault: Fault, cfg: raftstore::Config) {
    let (mut cluster, made) = started_with(cfg);
    let region = cluster.regions()[0].clone();
    let before = acked_writes(&cluster, "before", 5);
    let victim = cluster.leader_store(region.get_id()).unwrap();
    let switch = {
        let made = made.lock().unwrap();
        let e = &made[&victim];
        match fault {
            Fault::RaftLog => e.raft.fail.clone(),
            Fault::RaftLogPanic => e.raft.panic.clone(),
            Fault::Kv => e.kv.fail.clone(),
        }
    };
    switch.store(true, Ordering::SeqCst);

    // Every command sent to the failed store is answered, with an error
    // naming the failure; none succeeds.
    let pending: Vec<_> = (0..20)
        .map(|i| {
            cluster
                .send_command(victim, put(&region, victim, &format!("during{i:03}")))
                .unwrap()
        })
        .collect();
    for rx in &pending {
        let resp = rx.recv_timeout(WAIT).unwrap();
        assert!(is_disk_failure_error(&resp), "{resp:?}");
    }
    let reason = cluster
        .disk_failure(victim)
        .expect("the store records why it stopped");
    let expected = match fault {
        Fault::RaftLog => "raft log write failed",
        Fault::RaftLogPanic => "raft log engine panicked",
        Fault::Kv => "kv engine write failed",
    };
    assert!(
        reason.contains(expected) && reason.contains("injected disk failure"),
        "{reason}"
    );

    // Stopped, not dead: later commands get the same clear error.
    let later = cluster
        .call(victim, put(&region, victim, "later"), WAIT)
        .unwrap();
    assert!(is_disk_failure_error(&later), "{later:?}");

    // Nothing more is written to the failed store's disk (the disk works
    // again, but the store stays stopped), while the others elect a
    // leader and keep serving.
    switch.store(false, Ordering::SeqCst);
    let victim_engines = made.lock().unwrap()[&victim].clone();
    let frozen_last = victim_engines.raft.inner.last_index(region.get_id());
    let after = acked_writes(&cluster, "after", 5);
    assert_ne!(cluster.leader_store(region.get_id()), Some(victim));
    assert_eq!(
        victim_engines.raft.inner.last_index(region.get_id()),
        frozen_last,
        "a stopped store writes no raft log"
    );
    assert!(cluster.disk_failure(victim).is_some());

    // A restart with a healthy disk recovers from what is durable and
    // catches up: no acknowledged write is lost anywhere.
    cluster.stop_store(victim);
    cluster.start_store(victim).unwrap();
    assert!(cluster.disk_failure(victim).is_none());
    for key in before.iter().chain(after.iter()) {
        for store in cluster.store_ids() {
            cluster
                .wait_for_kv(*store, key.as_bytes(), Some(key.as_bytes()), WAIT)
                .unwrap();
        }
    }
    cluster.shutdown();
}

#[test]
fn raft_log_write_failure_stops_the_store_answers_every_command_and_loses_nothing() {
    failed_write_stops_the_store(Fault::RaftLog);
}

#[test]
fn a_failed_store_writer_write_stops_the_store_answers_every_command_and_loses_nothing() {
    let cfg = raftstore::Config {
        store_io_pool_size: 1,
        ..fast_config()
    };
    failed_write_stops_the_store_with(Fault::RaftLog, cfg.clone());
    failed_write_stops_the_store_with(Fault::RaftLogPanic, cfg);
}

#[test]
fn a_panicking_raft_log_engine_stops_the_store_like_a_failed_write() {
    failed_write_stops_the_store(Fault::RaftLogPanic);
}

#[test]
fn kv_write_failure_stops_the_store_answers_every_command_and_loses_nothing() {
    failed_write_stops_the_store(Fault::Kv);
}
