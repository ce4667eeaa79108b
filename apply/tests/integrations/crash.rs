//! Crashes between the round's write and its callbacks: after a restart
//! from what the engine holds and a redelivery of the whole log, nothing is
//! applied twice and nothing is lost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use apply::{Config, Proposal};
use engine::{FjallKvEngine, KvEngine, KvWriteBatch, MemKvEngine};
use kvproto_lite::eraftpb::Entry;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_serverpb::{PeerState, RegionLocalState};

use crate::harness::*;

const LOG_LEN: u64 = 30;

/// Entry `i` of the test log; `poison` replaces every value (used for
/// entries that must never run again).
fn log_entry(r: &Region, i: u64, poison: bool) -> Entry {
    let value = if poison {
        "poison".to_owned()
    } else {
        format!("v{i}")
    };
    match i {
        12 => raw_entry(i, 1, vec![]),
        17 => raw_entry(i, 1, vec![0xff, 0x07]),
        _ if i % 5 == 0 => entry(
            i,
            1,
            &cmd(r, vec![get_req(format!("k{}", i % 7).as_bytes())]),
        ),
        _ => put_entry(r, i, 1, format!("k{}", i % 7).as_bytes(), value.as_bytes()),
    }
}

fn model() -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    for i in 1..=LOG_LEN {
        if i != 12 && i != 17 && i % 5 != 0 {
            m.insert(
                format!("k{}", i % 7).into_bytes(),
                format!("v{i}").into_bytes(),
            );
        }
    }
    m
}

fn bootstrap<K: KvEngine>(kv: &K, r: &Region) {
    let mut wb = kv.write_batch();
    let mut st = RegionLocalState::default();
    st.set_state(PeerState::Normal);
    st.set_region(r.clone());
    wb.put_region_state(r.get_id(), &st);
    kv.write(&mut wb, true).unwrap();
}

/// Applies entries 1..=20 in two rounds; the last callback of the second
/// round calls `crash`. Then the driver is dropped without anything else.
fn run_until_crash<K: KvEngine>(
    kv: K,
    r: &Region,
    sync: bool,
    crash: impl FnOnce() + Send + 'static,
) {
    let cfg = Config {
        sync_write: sync,
        ..Config::default()
    };
    let mut d = Driver::new(kv.clone(), cfg);
    d.register(registration_from_engine(&kv, r.get_id(), 11));
    d.apply(
        r,
        1,
        (1..=10).map(|i| log_entry(r, i, false)).collect(),
        vec![],
    );
    d.round();
    let crash = Mutex::new(Some(crash));
    let cb = Proposal::new(
        20,
        1,
        Box::new(move |_| {
            if let Some(f) = crash.lock().unwrap().take() {
                f();
            }
        }),
    );
    d.apply(
        r,
        1,
        (11..=20).map(|i| log_entry(r, i, false)).collect(),
        vec![cb],
    );
    d.round();
    // Dropped here: no shutdown, no further rounds.
}

/// Restarts from the engine and redelivers the whole log; entries the
/// engine says are applied are poisoned, so running one again would show.
fn restart_and_check<K: KvEngine>(kv: K, r: &Region) -> u64 {
    let persisted = kv
        .get_apply_state(r.get_id())
        .unwrap()
        .map(|s| s.get_applied_index())
        .unwrap_or(0);
    let mut d = Driver::new(kv.clone(), Config::default());
    d.register(registration_from_engine(&kv, r.get_id(), 11));
    let resps = Responses::default();
    let entries = (1..=LOG_LEN)
        .map(|i| log_entry(r, i, i <= persisted))
        .collect();
    let proposals = (1..=LOG_LEN).map(|i| resps.proposal(i, 1)).collect();
    d.apply(r, 1, entries, proposals);
    d.run();
    for (i, resp) in resps.take() {
        let err = resp.get_header().get_error();
        if i <= persisted {
            assert!(
                err.has_stale_command(),
                "entry {i} was applied before the crash: {err:?}"
            );
        } else if i == 12 {
            // An empty entry with a proposal: a conf change raft dropped.
            assert!(err.get_message().contains("dropped by raft"), "{err:?}");
        } else if i != 17 {
            assert!(!resp.get_header().has_error(), "entry {i}: {err:?}");
        }
    }
    let all: BTreeMap<_, _> = kv.scan(b"", b"", usize::MAX).unwrap().into_iter().collect();
    assert_eq!(all, model());
    assert_eq!(
        kv.get_apply_state(r.get_id())
            .unwrap()
            .unwrap()
            .get_applied_index(),
        LOG_LEN
    );
    persisted
}

#[test]
fn memory_engine_crash_after_synced_write_keeps_every_acknowledged_entry() {
    let kv = MemKvEngine::new();
    let r = region(1, b"", b"");
    bootstrap(&kv, &r);
    let crashing = kv.clone();
    run_until_crash(kv.clone(), &r, true, move || crashing.crash());
    let persisted = restart_and_check(kv, &r);
    assert_eq!(persisted, 20);
}

#[test]
fn memory_engine_crash_after_unsynced_write_reapplies_from_the_log_once() {
    let kv = MemKvEngine::new();
    let r = region(1, b"", b"");
    bootstrap(&kv, &r);
    let crashing = kv.clone();
    run_until_crash(kv.clone(), &r, false, move || crashing.crash());
    // Unsynced rounds are gone together with their applied index.
    let persisted = restart_and_check(kv, &r);
    assert_eq!(persisted, 0);
}

#[test]
fn fjall_engine_dropped_after_write_reopens_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let r = region(1, b"", b"");
    {
        let kv = FjallKvEngine::open(dir.path()).unwrap();
        bootstrap(&kv, &r);
        let seen = Arc::new(Mutex::new(false));
        let s = seen.clone();
        run_until_crash(kv, &r, true, move || *s.lock().unwrap() = true);
        assert!(*seen.lock().unwrap());
    }
    let persisted = restart_and_check(FjallKvEngine::open(dir.path()).unwrap(), &r);
    assert_eq!(persisted, 20);
    // And once more: a second restart finds everything applied.
    let kv = FjallKvEngine::open(dir.path()).unwrap();
    assert_eq!(persisted_applied(&kv, 1), LOG_LEN);
}

/// Regression (simulation seed 3329): an apply FSM dropped at a crash with
/// committed entries still queued answered their proposals `RegionNotFound`,
/// which tells a client the command certainly did not run; the entries were
/// applied after the restart. The answer must be an untyped error
/// ("outcome unknown").
#[test]
fn dropping_an_fsm_with_queued_committed_entries_answers_outcome_unknown() {
    let kv = MemKvEngine::new();
    let cfg = Config {
        max_entries_per_round: 1,
        ..Config::default()
    };
    let mut d = Driver::new(kv, cfg);
    let r = region(1, b"", b"");
    d.register(registration(&r));
    let resps = Responses::default();
    d.apply(
        &r,
        1,
        vec![
            put_entry(&r, 1, 1, b"a", b"1"),
            put_entry(&r, 2, 1, b"b", b"2"),
        ],
        vec![resps.proposal(1, 1), resps.proposal(2, 1)],
    );
    // One entry per round: entry 2 and its proposal stay queued.
    let (_, keep) = d.round();
    assert!(keep);
    let got = resps.take();
    assert_eq!(got.len(), 1);
    assert!(!got[0].1.get_header().has_error());
    // Crash: the FSM goes away without applying entry 2.
    d.fsms.clear();
    let got = resps.take();
    assert_eq!(got.len(), 1, "the queued proposal is answered");
    let err = got[0].1.get_header().get_error();
    assert!(got[0].1.get_header().has_error());
    assert!(
        !err.has_region_not_found()
            && !err.has_not_leader()
            && !err.has_stale_command()
            && !err.has_epoch_not_match()
            && !err.has_server_is_busy(),
        "a typed error claims the command did not run: {err:?}"
    );
    assert!(err.get_message().contains("outcome unknown"), "{err:?}");
}
