//! Random command sequences (with garbage entries, duplicates, redelivery,
//! small budgets and failed writes) against a `BTreeMap` model.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use apply::Config;
use engine::KvEngine;
use kvproto_lite::eraftpb::Entry;
use kvproto_lite::metapb::Region;
use proptest::prelude::*;

use crate::harness::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Get(u8),
    /// A put and a get of another key in one command.
    PutGet(u8, u8, u8),
    /// A put followed by a key outside the region: the whole command fails.
    PutOutside(u8, u8),
    Garbage(Vec<u8>),
    Noop,
}

fn key(k: u8) -> Vec<u8> {
    vec![b'k', b'a' + (k % 8)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => any::<u8>().prop_map(Op::Delete),
        3 => any::<u8>().prop_map(Op::Get),
        1 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, v, b)| Op::PutGet(a, v, b)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::PutOutside(k, v)),
        1 => proptest::collection::vec(any::<u8>(), 1..12).prop_map(Op::Garbage),
        1 => Just(Op::Noop),
    ]
}

fn to_entry(r: &Region, index: u64, op: &Op) -> Entry {
    match op {
        Op::Put(k, v) => put_entry(r, index, 1, &key(*k), &[*v]),
        Op::Delete(k) => entry(index, 1, &cmd(r, vec![delete_req(&key(*k))])),
        Op::Get(k) => entry(index, 1, &cmd(r, vec![get_req(&key(*k))])),
        Op::PutGet(a, v, b) => entry(
            index,
            1,
            &cmd(r, vec![put_req(&key(*a), &[*v]), get_req(&key(*b))]),
        ),
        Op::PutOutside(k, v) => entry(
            index,
            1,
            &cmd(r, vec![put_req(&key(*k), &[*v]), put_req(b"zz", b"x")]),
        ),
        Op::Garbage(data) => raw_entry(index, 1, data.clone()),
        Op::Noop => raw_entry(index, 1, vec![]),
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// Per op, the values its gets return (`None` = not found).
type Gets = Vec<Vec<Option<Vec<u8>>>>;

/// Expected get results of each op, applied to the model in order.
fn run_model(ops: &[Op]) -> (Model, Gets) {
    let mut m = BTreeMap::new();
    let mut gets = Vec::new();
    for op in ops {
        let mut g = Vec::new();
        match op {
            Op::Put(k, v) => {
                m.insert(key(*k), vec![*v]);
            }
            Op::Delete(k) => {
                m.remove(&key(*k));
            }
            Op::Get(k) => g.push(m.get(&key(*k)).cloned()),
            Op::PutGet(a, v, b) => {
                m.insert(key(*a), vec![*v]);
                g.push(m.get(&key(*b)).cloned());
            }
            Op::PutOutside(..) | Op::Garbage(_) | Op::Noop => {}
        }
        gets.push(g);
    }
    (m, gets)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_match_a_btreemap_model(
        ops in proptest::collection::vec(op(), 1..60),
        chunk in 1usize..8,
        redeliver_every in 1usize..5,
        budget in 1usize..6,
        fail_round in proptest::option::of(0usize..6),
    ) {
        let kv = TestKv::default();
        let cfg = Config { max_entries_per_round: budget, ..Config::default() };
        let mut d = Driver::new(kv.clone(), cfg);
        let r = region(1, b"k", b"l");
        d.register(registration(&r));
        let resps = Responses::default();
        let entries: Vec<Entry> = ops.iter().enumerate().map(|(i, op)| to_entry(&r, i as u64 + 1, op)).collect();
        let mut sent = 0usize;
        let mut round = 0usize;
        while sent < entries.len() {
            let end = (sent + chunk).min(entries.len());
            // Redeliver some already-sent entries ahead of the new ones.
            let start = if round % redeliver_every == 0 { sent.saturating_sub(chunk) } else { sent };
            let batch = entries[start..end].to_vec();
            let proposals = (sent..end).map(|i| resps.proposal(i as u64 + 1, 1)).collect();
            d.apply(&r, 1, batch, proposals);
            sent = end;
            kv.fail.store(fail_round == Some(round), Ordering::SeqCst);
            d.round();
            kv.fail.store(false, Ordering::SeqCst);
            round += 1;
        }
        d.run();

        // A failed write stops the apply system: what was written before
        // it is the model of the ops applied before it, nothing after.
        let applied = kv.get_apply_state(1).unwrap().map_or(0, |s| s.get_applied_index()) as usize;
        let failed = d.poller_router().disk_failure().is_failed();
        prop_assert_eq!(failed, applied < ops.len());
        let (model, gets) = run_model(&ops[..applied]);
        let stored: BTreeMap<_, _> = kv.scan(b"", b"", usize::MAX).unwrap().into_iter().collect();
        prop_assert_eq!(&stored, &model);

        let got = resps.take();
        prop_assert_eq!(got.len(), ops.len(), "every proposal answered exactly once");
        for (index, resp) in got {
            let i = index as usize - 1;
            let header = resp.get_header();
            if i >= applied {
                prop_assert!(
                    header.get_error().get_message().contains("failed disk write"),
                    "op {} after the failure: {:?}", index, header
                );
                continue;
            }
            match &ops[i] {
                Op::Garbage(_) if header.has_error() => continue,
                // An empty entry with a proposal is what raft leaves of a
                // conf change it dropped: never answered OK.
                Op::Noop => {
                    prop_assert!(header.get_error().get_message().contains("dropped by raft"));
                    continue;
                }
                Op::PutOutside(..) => {
                    prop_assert!(header.get_error().has_key_not_in_region());
                    continue;
                }
                _ => prop_assert!(!header.has_error(), "op {:?}: {:?}", ops[i], header),
            }
            let got_gets: Vec<Option<Vec<u8>>> = resp
                .get_responses()
                .iter()
                .filter(|r| r.has_get())
                .map(|r| if r.get_get().get_not_found() { None } else { Some(r.get_get().get_value().to_vec()) })
                .collect();
            prop_assert_eq!(&got_gets, &gets[i], "op {} {:?}", index, ops[i]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A crash (unsynced writes lost) after a random round, a restart from
    /// what the engine kept and a redelivery of the whole log: the result is
    /// the model, and entries the engine had applied are never run again.
    #[test]
    fn crash_and_redelivery_match_the_model(
        ops in proptest::collection::vec(op(), 1..40),
        chunk in 1usize..8,
        crash_after in 0usize..8,
        sync_write in any::<bool>(),
    ) {
        let kv = TestKv::default();
        let r = region(1, b"k", b"l");
        let mut wb = kv.write_batch();
        let mut st = kvproto_lite::raft_serverpb::RegionLocalState::default();
        st.set_region(r.clone());
        engine::KvWriteBatch::put_region_state(&mut wb, 1, &st);
        kv.write(&mut wb, true).unwrap();
        let entries: Vec<Entry> = ops.iter().enumerate().map(|(i, op)| to_entry(&r, i as u64 + 1, op)).collect();
        {
            let cfg = Config { sync_write, ..Config::default() };
            let mut d = Driver::new(kv.clone(), cfg);
            d.register(registration_from_engine(&kv, 1, 11));
            for (round, batch) in entries.chunks(chunk).enumerate() {
                if round == crash_after {
                    break;
                }
                d.apply(&r, 1, batch.to_vec(), vec![]);
                d.round();
            }
            kv.inner.crash();
        }
        let persisted = kv.get_apply_state(1).unwrap().map(|s| s.get_applied_index()).unwrap_or(0);
        if sync_write {
            let expected = (crash_after * chunk).min(ops.len()) as u64;
            prop_assert_eq!(persisted, expected, "synced rounds survive the crash");
        }
        let mut d = Driver::new(kv.clone(), Config::default());
        d.register(registration_from_engine(&kv, 1, 11));
        let resps = Responses::default();
        // Entries at or below the persisted index are poisoned: running one
        // again would show in the data.
        let redelivered = ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let index = i as u64 + 1;
                if index <= persisted {
                    put_entry(&r, index, 1, &key(0), b"poison")
                } else {
                    to_entry(&r, index, op)
                }
            })
            .collect();
        let proposals = (1..=ops.len() as u64).map(|i| resps.proposal(i, 1)).collect();
        d.apply(&r, 1, redelivered, proposals);
        d.run();
        let (model, gets) = run_model(&ops);
        let stored: BTreeMap<_, _> = kv.scan(b"", b"", usize::MAX).unwrap().into_iter().collect();
        prop_assert_eq!(&stored, &model);
        prop_assert_eq!(persisted_applied(&kv, 1), ops.len() as u64);
        for (index, resp) in resps.take() {
            let i = index as usize - 1;
            if index <= persisted {
                prop_assert!(resp.get_header().get_error().has_stale_command());
            } else if let Op::Get(_) | Op::PutGet(..) = ops[i] {
                let got: Vec<Option<Vec<u8>>> = resp
                    .get_responses()
                    .iter()
                    .filter(|r| r.has_get())
                    .map(|r| if r.get_get().get_not_found() { None } else { Some(r.get_get().get_value().to_vec()) })
                    .collect();
                prop_assert_eq!(&got, &gets[i]);
            }
        }
    }
}
