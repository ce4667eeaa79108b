//! Exactly-once writes and conditional commands through a running cluster.

use std::time::Duration;

use client::put_request;
use cluster::Cluster;
use raftstore::Config;

const TIMEOUT: Duration = Duration::from_secs(30);

fn started() -> Cluster<engine::MemKvEngine, engine::MemRaftLogEngine> {
    let mut cluster = Cluster::memory(3, 1, Config::default()).unwrap();
    cluster.start().unwrap();
    cluster.wait_for_leaders(TIMEOUT).unwrap();
    cluster
}

#[test]
fn a_session_write_sent_twice_applies_once_and_both_answers_agree() {
    let cluster = started();
    let region = cluster.regions()[0].clone();
    let leader = cluster.leader_store(region.get_id()).unwrap();
    let peer = kvproto_lite::util::find_peer(&region, leader)
        .unwrap()
        .clone();
    let command = |value: &[u8], sequence: u64| {
        let mut cmd = kvproto_lite::util::new_cmd_request(&region, peer.clone());
        cmd.mut_header().set_client_id(77);
        cmd.mut_header().set_sequence(sequence);
        cmd.mut_requests()
            .push(put_request(b"k".to_vec(), value.to_vec()));
        cmd
    };
    let first = cluster.call(leader, command(b"v1", 1), TIMEOUT).unwrap();
    assert!(!first.get_header().has_error(), "{first:?}");
    let mut other = cluster.client();
    other.put(b"k", b"v2").unwrap();
    // The first write's answer was "lost" and the client retries it.
    let retry = cluster.call(leader, command(b"v1", 1), TIMEOUT).unwrap();
    assert!(!retry.get_header().has_error(), "{retry:?}");
    assert_eq!(retry.get_responses(), first.get_responses());
    assert_eq!(other.get(b"k").unwrap(), Some(b"v2".to_vec()));
    let stale = cluster.call(leader, command(b"v0", 0), TIMEOUT).unwrap();
    assert!(
        stale.get_header().get_error().has_invalid_request(),
        "{stale:?}"
    );
}

#[test]
fn compare_and_swap_and_delete_if_equal_through_the_client() {
    let cluster = started();
    let mut c = cluster.client();
    let first = c.compare_and_swap(b"lock", None, b"owner-1").unwrap();
    assert!(first.succeeded);
    let second = c.compare_and_swap(b"lock", None, b"owner-2").unwrap();
    assert!(!second.succeeded);
    assert_eq!(second.previous.as_deref(), Some(&b"owner-1"[..]));
    assert!(!c.delete_if_equal(b"lock", b"owner-2").unwrap().succeeded);
    assert!(c.delete_if_equal(b"lock", b"owner-1").unwrap().succeeded);
    assert_eq!(c.get(b"lock").unwrap(), None);
}
