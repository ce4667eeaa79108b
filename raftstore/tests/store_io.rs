//! Store I/O writers (`Config::store_io_pool_size > 0`): raft log writes
//! off the raft pollers.
//!
//! Most tests drive one store by hand (`spawn_manual`): the raft poller,
//! the apply poller and the store writer run only when a test says so, so
//! "a write is in flight" is a state the test holds on purpose, not a
//! race. The cluster tests at the end run threads.

mod common;

use common::{assert_ok, fast_config, gc_config, key, put_request, value, Alone, WAIT};

use std::time::Duration;

use cluster::{wait_until, Cluster, PartitionFilter};
use engine::{Engines, KvEngine, MemKvEngine, MemRaftLogEngine, RaftLogEngine};
use kvproto_lite::metapb::{self, Region};
use kvproto_lite::raft_cmdpb::RaftCmdResponse;
use raftstore::{
    bootstrap_store, create_raft_batch_system, initial_regions, CommandSink, Config, ManualPollers,
    PeerMsg, RaftBatchSystem, RaftRouter,
};

type Mem = Engines<MemKvEngine, MemRaftLogEngine>;

/// One store with one single-voter region, driven by hand.
struct ManualStore {
    pollers: ManualPollers<MemKvEngine, MemRaftLogEngine, Alone>,
    system: RaftBatchSystem<MemKvEngine, MemRaftLogEngine>,
    router: RaftRouter<MemRaftLogEngine>,
}

fn async_config() -> Config {
    Config {
        store_io_pool_size: 1,
        hibernate_regions: false,
        ..Config::default()
    }
}

fn bootstrap() -> (Mem, Region) {
    let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
    let regions = initial_regions(&[1], &[]).unwrap();
    bootstrap_store(&engines, 1, &regions).unwrap();
    (engines, regions[0].clone())
}

impl ManualStore {
    fn start(engines: &Mem) -> ManualStore {
        let (router, mut system) = create_raft_batch_system(&async_config());
        let mut store = metapb::Store::default();
        store.set_id(1);
        let pollers = system
            .spawn_manual(store, engines.clone(), Alone, &raftstore::discard_logger())
            .unwrap();
        assert_eq!(pollers.writers.len(), 1, "one store writer");
        ManualStore {
            pollers,
            system,
            router,
        }
    }

    /// Polls the raft and apply pollers until neither has anything to do;
    /// the store writer does not run.
    fn poll(&mut self) {
        for _ in 0..1_000 {
            let n = self.pollers.raft.poll_once() + self.pollers.apply.poll_once();
            if n == 0 {
                return;
            }
        }
        panic!("the store never became idle");
    }

    /// Write tasks waiting in the store writer.
    fn pending_writes(&self) -> usize {
        self.pollers.writers[0].pending()
    }

    /// Lets the store writer write what it holds, then polls.
    fn write_and_poll(&mut self) -> usize {
        let n = self.pollers.writers[0].write_once();
        self.poll();
        n
    }

    /// Polls and writes until the region's peer leads.
    fn until_leader(&mut self, region_id: u64) {
        for _ in 0..100 {
            self.poll();
            if self
                .system
                .leader_info(region_id)
                .is_some_and(|i| i.is_leader)
            {
                return;
            }
            self.write_and_poll();
        }
        panic!("region {region_id} never elected its single voter");
    }

    /// Polls and writes until the response arrives.
    fn until_answered(&mut self, rx: &raftstore::Receiver<RaftCmdResponse>) -> RaftCmdResponse {
        for _ in 0..100 {
            self.poll();
            if let Ok(resp) = rx.try_recv() {
                return resp;
            }
            self.write_and_poll();
        }
        panic!("no response");
    }

    /// A crash: the pollers, the writer (with what it holds) and the
    /// system are dropped; unsynced engine writes are lost.
    fn crash(self, engines: &Mem) {
        let ManualStore {
            pollers, system, ..
        } = self;
        drop(pollers);
        drop(system);
        engines.raft.crash();
        engines.kv.crash();
    }
}

#[test]
fn a_write_is_acknowledged_only_after_its_store_writer_made_it_durable() {
    let (engines, region) = bootstrap();
    let mut store = ManualStore::start(&engines);
    store.until_leader(region.get_id());
    let before = engines.raft.last_index(region.get_id()).unwrap_or(0);

    let rx = store.router.submit(put_request(&region, 1, b"k1", b"v1"));
    store.poll();
    // Proposed and staged for the writer, which has not run: nothing is
    // in the log, nothing committed, nothing answered.
    assert!(store.pending_writes() > 0, "the append waits in the writer");
    assert_eq!(
        engines.raft.last_index(region.get_id()).unwrap_or(0),
        before
    );
    assert!(rx.try_recv().is_err(), "answered before the log write");
    assert_eq!(engines.kv.get(b"k1").unwrap(), None);

    assert!(store.write_and_poll() > 0);
    let resp = store.until_answered(&rx);
    assert_ok(&resp);
    assert!(engines.raft.last_index(region.get_id()).unwrap_or(0) > before);
    assert_eq!(engines.kv.get(b"k1").unwrap(), Some(b"v1".to_vec()));
    assert!(
        store
            .system
            .stats()
            .async_writes
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[test]
fn a_crash_with_writes_in_flight_loses_only_unacknowledged_writes() {
    let (engines, region) = bootstrap();
    let mut store = ManualStore::start(&engines);
    store.until_leader(region.get_id());
    let acked = store.router.submit(put_request(&region, 1, b"acked", b"1"));
    assert_ok(&store.until_answered(&acked));

    let in_flight = store
        .router
        .submit(put_request(&region, 1, b"in-flight", b"2"));
    store.poll();
    assert!(store.pending_writes() > 0);
    let durable_state = engines.raft.get_raft_state(region.get_id()).unwrap();
    store.crash(&engines);
    // The command was never acknowledged: its callback reports an unknown
    // outcome when the store drops it.
    let resp = in_flight
        .recv_timeout(Duration::from_secs(5))
        .expect("a dropped command is answered");
    assert!(resp.get_header().has_error());
    // The restart reads only what was written.
    assert_eq!(
        engines.raft.get_raft_state(region.get_id()).unwrap(),
        durable_state
    );

    // The KV engine's unsynced writes were lost too; the restarted store
    // applies its log again. Once a later write is applied, everything
    // before it in the log is.
    let mut store = ManualStore::start(&engines);
    store.until_leader(region.get_id());
    let again = store.router.submit(put_request(&region, 1, b"after", b"3"));
    assert_ok(&store.until_answered(&again));
    assert_eq!(engines.kv.get(b"after").unwrap(), Some(b"3".to_vec()));
    assert_eq!(engines.kv.get(b"acked").unwrap(), Some(b"1".to_vec()));
    assert_eq!(engines.kv.get(b"in-flight").unwrap(), None);
}

#[test]
fn a_persistence_report_for_another_peer_id_is_ignored() {
    let (engines, region) = bootstrap();
    let mut store = ManualStore::start(&engines);
    store.until_leader(region.get_id());
    let rx = store.router.submit(put_request(&region, 1, b"k", b"v"));
    store.poll();
    assert!(store.pending_writes() > 0);
    // A report meant for an earlier peer of the region (destroyed and
    // created again) must not make raft believe this peer's entries are
    // durable.
    let me = kvproto_lite::util::find_peer(&region, 1).unwrap().get_id();
    for (peer_id, ready_number) in [(me + 1000, 1_000_000), (me, 1_000_000)] {
        store
            .router
            .force_send(
                region.get_id(),
                PeerMsg::Persisted {
                    peer_id,
                    ready_number,
                },
            )
            .unwrap();
        store.poll();
        assert!(rx.try_recv().is_err(), "acknowledged before the log write");
        assert_eq!(engines.kv.get(b"k").unwrap(), None);
    }
    assert_ok(&store.until_answered(&rx));
}

#[test]
fn a_peer_destroyed_with_a_write_in_flight_waits_for_it_before_its_log_is_cleaned() {
    let (engines, region) = bootstrap();
    let region_id = region.get_id();
    let mut store = ManualStore::start(&engines);
    store.until_leader(region_id);
    let rx = store.router.submit(put_request(&region, 1, b"k", b"v"));
    store.poll();
    assert!(store.pending_writes() > 0);
    store
        .router
        .force_send(region_id, PeerMsg::Destroy)
        .unwrap();
    store.poll();
    assert!(
        store.router.mailbox(region_id).is_some(),
        "destroyed while its write was in flight"
    );
    // The write lands; then the peer is destroyed, apply writes the
    // tombstone and the store cleans the log: nothing of it is left.
    store.write_and_poll();
    for _ in 0..10 {
        store.write_and_poll();
    }
    assert!(store.router.mailbox(region_id).is_none(), "not destroyed");
    assert_eq!(engines.raft.get_raft_state(region_id).unwrap(), None);
    assert_eq!(engines.raft.last_index(region_id), None);
    let resp = rx.recv_timeout(WAIT).expect("the command is answered");
    assert!(resp.get_header().has_error());
}

/// A key inside region `i` (0-based) of a cluster with `n` regions.
fn key_in(i: u64, n: u64, suffix: u64) -> Vec<u8> {
    let mut k = (i * (u64::MAX / n) + 1).to_be_bytes().to_vec();
    k.extend_from_slice(&suffix.to_be_bytes());
    k
}

#[test]
fn a_cluster_with_store_writers_replicates_and_survives_a_restart() {
    let cfg = Config {
        store_io_pool_size: 2,
        ..fast_config()
    };
    let mut cluster = Cluster::memory(3, 4, cfg).unwrap();
    cluster.start().unwrap();
    let mut client = cluster.client();
    for i in 0u64..40 {
        client
            .put(&key_in(i % 4, 4, i), format!("v{i}").as_bytes())
            .unwrap();
    }
    let leader = cluster.leader_store(1).unwrap();
    cluster.stop_store(leader);
    cluster.start_store(leader).unwrap();
    for i in 0u64..40 {
        let key = key_in(i % 4, 4, i);
        for store in [1, 2, 3] {
            cluster
                .wait_for_kv(store, &key, Some(format!("v{i}").as_bytes()), WAIT)
                .unwrap();
        }
    }
    let written: u64 = [1, 2, 3]
        .iter()
        .filter_map(|&s| cluster.stats(s))
        .map(|s| s.async_writes.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert!(written > 0, "no write went through a store writer");
    cluster.shutdown();
}

#[test]
fn a_follower_behind_compacted_logs_catches_up_by_snapshot_with_store_writers() {
    let cfg = Config {
        store_io_pool_size: 1,
        ..gc_config()
    };
    let mut cluster = Cluster::memory(3, 1, cfg).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    let leader = cluster.leader_store(1).unwrap();
    let lagging = [1, 2, 3].into_iter().find(|&s| s != leader).unwrap();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&s| s != lagging).collect();
    cluster
        .transport()
        .add_filter(PartitionFilter::new(vec![vec![lagging], others]));
    let mut client = cluster.client();
    for i in 0..120 {
        client.put(&key(i), &value(i)).unwrap();
    }
    assert!(
        wait_until(WAIT, || common::truncated_index(&cluster, leader, 1) > 30),
        "the leader never compacted its log"
    );
    cluster.transport().clear_filters();
    for i in [0, 60, 119] {
        cluster
            .wait_for_kv(lagging, &key(i), Some(&value(i)), WAIT)
            .unwrap();
    }
    let applied = cluster
        .stats(lagging)
        .unwrap()
        .snapshots
        .applied
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(applied > 0, "caught up without a snapshot");
    cluster.shutdown();
}
