//! Integration tests of multi-region stores in one process.

use std::time::Duration;

use raftstore::{Cluster, Config};

const WAIT: Duration = Duration::from_secs(30);

fn fast_config() -> Config {
    Config {
        raft_base_tick_interval_ms: 10,
        ..Config::default()
    }
}

#[test]
fn every_region_elects_a_leader_on_three_stores() {
    let mut cluster = Cluster::memory(3, 8, fast_config()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(WAIT).unwrap();
    cluster.shutdown();
}

#[test]
fn writes_replicate_to_every_store() {
    let mut cluster = Cluster::memory(3, 4, fast_config()).unwrap();
    cluster.start().unwrap();
    let mut client = cluster.client();
    for i in 0u64..50 {
        let key = (i * (u64::MAX / 50)).to_be_bytes();
        client.put(&key, format!("v{i}").as_bytes()).unwrap();
    }
    for i in 0u64..50 {
        let key = (i * (u64::MAX / 50)).to_be_bytes();
        for store in [1, 2, 3] {
            cluster
                .wait_for_kv(store, &key, Some(format!("v{i}").as_bytes()), WAIT)
                .unwrap();
        }
        assert_eq!(
            client.get(&key).unwrap(),
            Some(format!("v{i}").into_bytes())
        );
    }
    cluster.shutdown();
}
