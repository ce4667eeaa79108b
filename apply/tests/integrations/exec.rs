//! Entry execution driven directly through `ApplyPoller` (no thread pool).

use std::sync::atomic::Ordering;

use apply::{ApplyMsg, Config, ExecResult, Registration};
use engine::{KvEngine, MemKvEngine};
use kvproto_lite::eraftpb::{ConfChangeType, Entry, EntryType};
use kvproto_lite::metapb::PeerRole;
use kvproto_lite::raft_serverpb::PeerState;

use crate::harness::*;

fn setup() -> (Driver<MemKvEngine>, kvproto_lite::metapb::Region) {
    let mut d = Driver::new(MemKvEngine::new(), Config::default());
    let r = region(1, b"b", b"y");
    d.register(registration(&r));
    (d, r)
}

#[test]
fn put_get_delete_read_through_the_log_in_one_round() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    let entries = vec![
        put_entry(&r, 1, 1, b"k", b"v1"),
        entry(2, 1, &cmd(&r, vec![get_req(b"k")])),
        entry(3, 1, &cmd(&r, vec![delete_req(b"k"), get_req(b"k")])),
        entry(
            4,
            1,
            &cmd(&r, vec![put_req(b"k", b"v2"), get_req(b"k"), get_req(b"m")]),
        ),
    ];
    let proposals = (1..=4).map(|i| resps.proposal(i, 1)).collect();
    d.apply(&r, 1, entries, proposals);
    let (res, keep) = d.round();
    assert!(!keep);
    let got = resps.take();
    assert_eq!(
        got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    for (_, resp) in &got {
        assert!(!resp.get_header().has_error(), "{resp:?}");
        assert_eq!(resp.get_header().get_current_term(), 1);
    }
    assert_eq!(got[1].1.get_responses()[0].get_get().get_value(), b"v1");
    assert!(got[2].1.get_responses()[1].get_get().get_not_found());
    assert_eq!(got[3].1.get_responses()[1].get_get().get_value(), b"v2");
    assert!(got[3].1.get_responses()[2].get_get().get_not_found());
    assert_eq!(d.kv.get(b"k").unwrap(), Some(b"v2".to_vec()));
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].apply_state.get_applied_index(), 4);
    assert_eq!(res[0].applied_term, 1);
    assert_eq!(persisted_applied(&d.kv, 1), 4);
}

#[test]
fn get_of_an_empty_value_is_found() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    d.apply(
        &r,
        1,
        vec![
            put_entry(&r, 1, 1, b"k", b""),
            entry(2, 1, &cmd(&r, vec![get_req(b"k")])),
        ],
        vec![resps.proposal(2, 1)],
    );
    d.round();
    let got = resps.take();
    let get = got[0].1.get_responses()[0].get_get();
    assert!(!get.get_not_found());
    assert!(get.get_value().is_empty());
}

#[test]
fn callbacks_run_in_log_order_only_after_the_round_is_written() {
    let (mut d, r) = setup();
    let kv = d.kv.clone();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut proposals = Vec::new();
    let mut entries = Vec::new();
    for i in 1..=5u64 {
        let key = format!("k{i}").into_bytes();
        entries.push(put_entry(&r, i, 1, &key, b"v"));
        let (kv, order) = (kv.clone(), order.clone());
        proposals.push(apply::Proposal::new(
            i,
            1,
            Box::new(move |resp| {
                assert!(!resp.get_header().has_error());
                // Durable before anyone hears about it: the whole round is.
                assert_eq!(kv.get(b"k5").unwrap(), Some(b"v".to_vec()));
                order.lock().unwrap().push(i);
            }),
        ));
    }
    d.apply(&r, 1, entries, proposals);
    let (res, _) = d.round();
    assert_eq!(*order.lock().unwrap(), vec![1, 2, 3, 4, 5]);
    assert_eq!(res.len(), 1);
}

#[test]
fn all_regions_of_a_round_share_one_write_and_one_notification() {
    let kv = TestKv::default();
    let mut d = Driver::new(kv.clone(), Config::default());
    let regions: Vec<_> = (1..=3)
        .map(|i| {
            region(
                i,
                format!("{i}").as_bytes(),
                format!("{}", i + 1).as_bytes(),
            )
        })
        .collect();
    for r in &regions {
        d.register(registration(r));
    }
    for r in &regions {
        let key = r.get_start_key().to_vec();
        d.apply(r, 1, vec![put_entry(r, 1, 1, &key, b"v")], vec![]);
    }
    d.poller_round_counting_notifications(|notifications, res| {
        assert_eq!(notifications, 1);
        assert_eq!(res.len(), 3);
    });
    assert_eq!(kv.writes.load(Ordering::SeqCst), 1);
    assert_eq!(kv.synced_writes.load(Ordering::SeqCst), 0);
}

impl<K: KvEngine> Driver<K> {
    fn poller_round_counting_notifications(
        &mut self,
        check: impl FnOnce(usize, Vec<apply::ApplyRes>),
    ) {
        use batch_system::PollHandler;
        self.poller.begin(self.fsms.len());
        for fsm in self.fsms.iter_mut().flatten() {
            self.poller.handle_normal(fsm);
        }
        self.poller.end(&mut self.fsms);
        let mut n = 0;
        let mut all = Vec::new();
        while let Ok(res) = self.results.try_recv() {
            n += 1;
            all.extend(res);
        }
        check(n, all);
    }
}

#[test]
fn epoch_mismatch_is_refused_with_the_current_region() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    let mut stale = r.clone();
    stale.mut_region_epoch().set_version(0);
    d.apply(
        &r,
        1,
        vec![put_entry(&stale, 1, 1, b"k", b"v")],
        vec![resps.proposal(1, 1)],
    );
    let (res, _) = d.round();
    let got = resps.take();
    let err = got[0].1.get_header().get_error();
    assert!(err.has_epoch_not_match(), "{err:?}");
    assert_eq!(err.get_epoch_not_match().get_current_regions()[0], r);
    assert_eq!(d.kv.get(b"k").unwrap(), None);
    // The entry still counts as applied.
    assert_eq!(res[0].apply_state.get_applied_index(), 1);
}

#[test]
fn key_outside_region_is_refused_and_the_whole_command_rolled_back() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    let entries = vec![
        entry(
            1,
            1,
            &cmd(&r, vec![put_req(b"c", b"1"), put_req(b"z", b"2")]),
        ),
        entry(2, 1, &cmd(&r, vec![get_req(b"a")])),
        entry(3, 1, &cmd(&r, vec![get_req(b"c")])),
    ];
    d.apply(
        &r,
        1,
        entries,
        (1..=3).map(|i| resps.proposal(i, 1)).collect(),
    );
    d.round();
    let got = resps.take();
    let e1 = got[0].1.get_header().get_error();
    assert_eq!(e1.get_key_not_in_region().get_key(), b"z");
    assert_eq!(e1.get_key_not_in_region().get_region_id(), 1);
    assert_eq!(e1.get_key_not_in_region().get_start_key(), b"b");
    assert_eq!(e1.get_key_not_in_region().get_end_key(), b"y");
    assert!(got[1].1.get_header().get_error().has_key_not_in_region());
    // The first put of the failed command was rolled back, also for reads
    // later in the same round.
    assert!(got[2].1.get_responses()[0].get_get().get_not_found());
    assert_eq!(d.kv.get(b"c").unwrap(), None);
    assert_eq!(d.fsm(1).apply_state().get_applied_index(), 3);
}

#[test]
fn superseded_proposal_gets_stale_command_and_the_entry_still_applies() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    // Proposed at (2, term 1) but a new leader committed (2, term 2).
    let entries = vec![
        put_entry(&r, 1, 1, b"k", b"a"),
        put_entry(&r, 2, 2, b"k", b"b"),
    ];
    d.apply(
        &r,
        2,
        entries,
        vec![resps.proposal(1, 1), resps.proposal(2, 1)],
    );
    let (res, _) = d.round();
    let got = resps.take();
    assert!(!got[0].1.get_header().has_error());
    assert!(got[1].1.get_header().get_error().has_stale_command());
    assert_eq!(got[1].1.get_header().get_current_term(), 2);
    assert_eq!(d.kv.get(b"k").unwrap(), Some(b"b".to_vec()));
    assert_eq!(res[0].applied_term, 2);
}

#[test]
fn proposal_skipped_by_a_later_entry_is_stale() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    d.apply(&r, 1, vec![put_entry(&r, 1, 1, b"k", b"a")], vec![]);
    d.round();
    // A proposal for an index that is already applied can never match.
    d.apply(&r, 1, vec![], vec![resps.proposal(1, 1)]);
    d.round();
    assert!(resps.take()[0]
        .1
        .get_header()
        .get_error()
        .has_stale_command());
}

#[test]
fn undecodable_entry_gets_an_error_and_counts_as_applied() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    let garbage = raw_entry(1, 1, vec![0xff, 0xff, 0xff, 0x01]);
    let mut bad_cc = raw_entry(2, 1, vec![0x0a, 0x40]);
    bad_cc.set_entry_type(EntryType::EntryConfChange);
    d.apply(
        &r,
        1,
        vec![garbage, bad_cc, put_entry(&r, 3, 1, b"k", b"v")],
        (1..=3).map(|i| resps.proposal(i, 1)).collect(),
    );
    let (res, _) = d.round();
    let got = resps.take();
    assert!(got[0]
        .1
        .get_header()
        .get_error()
        .get_message()
        .contains("undecodable"));
    assert!(got[1]
        .1
        .get_header()
        .get_error()
        .get_message()
        .contains("undecodable"));
    assert!(!got[2].1.get_header().has_error());
    assert_eq!(res[0].apply_state.get_applied_index(), 3);
    assert!(res[0].exec_results.is_empty());
}

#[test]
fn noop_and_empty_conf_change_entries_advance_the_applied_index() {
    let (mut d, r) = setup();
    let mut cc = Entry::default();
    cc.set_entry_type(EntryType::EntryConfChange);
    cc.set_index(2);
    cc.set_term(3);
    let mut cc2 = Entry::default();
    cc2.set_entry_type(EntryType::EntryConfChangeV2);
    cc2.set_index(3);
    cc2.set_term(3);
    d.apply(&r, 3, vec![raw_entry(1, 3, vec![]), cc, cc2], vec![]);
    let (res, _) = d.round();
    assert_eq!(res[0].apply_state.get_applied_index(), 3);
    assert_eq!(res[0].applied_term, 3);
    assert_eq!(persisted_applied(&d.kv, 1), 3);
}

#[test]
fn redelivered_entries_are_never_applied_twice() {
    let (mut d, r) = setup();
    d.apply(
        &r,
        1,
        vec![
            put_entry(&r, 1, 1, b"k", b"1"),
            put_entry(&r, 2, 1, b"k", b"2"),
        ],
        vec![],
    );
    d.round();
    // Redelivery of 1..=3: 1 and 2 must not run again (k would become "1").
    d.apply(
        &r,
        1,
        vec![
            put_entry(&r, 1, 1, b"k", b"1"),
            put_entry(&r, 2, 1, b"k", b"2"),
            put_entry(&r, 3, 1, b"j", b"3"),
        ],
        vec![],
    );
    let (res, _) = d.round();
    assert_eq!(d.kv.get(b"k").unwrap(), Some(b"2".to_vec()));
    assert_eq!(d.kv.get(b"j").unwrap(), Some(b"3".to_vec()));
    assert_eq!(res[0].apply_state.get_applied_index(), 3);
}

#[test]
fn entries_after_a_gap_are_dropped_not_applied() {
    let (mut d, r) = setup();
    d.apply(&r, 1, vec![put_entry(&r, 2, 1, b"k", b"v")], vec![]);
    let (res, _) = d.round();
    assert!(res.is_empty());
    assert_eq!(d.kv.get(b"k").unwrap(), None);
    assert_eq!(d.fsm(1).apply_state().get_applied_index(), 0);
}

#[test]
fn consecutive_apply_messages_are_merged_into_one_round() {
    let (mut d, r) = setup();
    for i in 1..=4u64 {
        d.apply(
            &r,
            1,
            vec![put_entry(&r, i, 1, b"k", format!("{i}").as_bytes())],
            vec![],
        );
    }
    let (res, keep) = d.round();
    assert!(!keep);
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].apply_state.get_applied_index(), 4);
}

#[test]
fn a_big_region_yields_after_its_budget_and_finishes_later() {
    let cfg = Config {
        max_entries_per_round: 3,
        ..Config::default()
    };
    let mut d = Driver::new(MemKvEngine::new(), cfg);
    let big = region(1, b"a", b"m");
    let small = region(2, b"m", b"");
    d.register(registration(&big));
    d.register(registration(&small));
    d.apply(
        &big,
        1,
        (1..=10)
            .map(|i| put_entry(&big, i, 1, b"b", b"v"))
            .collect(),
        vec![],
    );
    d.apply(&small, 1, vec![put_entry(&small, 1, 1, b"n", b"v")], vec![]);
    let (res, keep) = d.round();
    assert!(keep, "the big region asks for another round");
    let applied: Vec<_> = res
        .iter()
        .map(|r| (r.region_id, r.apply_state.get_applied_index()))
        .collect();
    assert_eq!(applied, vec![(1, 3), (2, 1)]);
    let rest = d.run();
    assert_eq!(rest.last().unwrap().apply_state.get_applied_index(), 10);
    assert_eq!(persisted_applied(&d.kv, 1), 10);
}

#[test]
fn byte_budget_applies_at_least_one_entry_per_round() {
    let cfg = Config {
        max_bytes_per_round: 1,
        ..Config::default()
    };
    let mut d = Driver::new(MemKvEngine::new(), cfg);
    let r = region(1, b"", b"");
    d.register(registration(&r));
    d.apply(
        &r,
        1,
        (1..=3).map(|i| put_entry(&r, i, 1, b"k", b"v")).collect(),
        vec![],
    );
    let (res, keep) = d.round();
    assert!(keep);
    assert_eq!(res[0].apply_state.get_applied_index(), 1);
    d.run();
    assert_eq!(d.fsm(1).apply_state().get_applied_index(), 3);
}

#[test]
fn compact_log_updates_the_truncated_state_and_forces_a_sync() {
    let kv = TestKv::default();
    let mut d = Driver::new(kv.clone(), Config::default());
    let r = region(1, b"", b"");
    d.register(registration(&r));
    let resps = Responses::default();
    let mut entries: Vec<_> = (1..=3).map(|i| put_entry(&r, i, 2, b"k", b"v")).collect();
    entries.push(entry(4, 2, &admin_cmd(&r, compact_log(3, 2))));
    // Compacting to where the log already is: nothing to do, still OK.
    entries.push(entry(5, 2, &admin_cmd(&r, compact_log(2, 2))));
    entries.push(entry(6, 2, &admin_cmd(&r, compact_log(9, 2))));
    d.apply(
        &r,
        2,
        entries,
        vec![
            resps.proposal(4, 2),
            resps.proposal(5, 2),
            resps.proposal(6, 2),
        ],
    );
    let (res, _) = d.round();
    let got = resps.take();
    assert!(!got[0].1.get_header().has_error());
    assert!(got[0].1.get_admin_response().has_compact_log());
    assert!(!got[1].1.get_header().has_error());
    assert!(
        got[2].1.get_header().has_error(),
        "cannot compact past the entry itself"
    );
    assert_eq!(res[0].exec_results.len(), 1);
    match &res[0].exec_results[0] {
        ExecResult::CompactLog { state, first_index } => {
            assert_eq!((state.get_index(), state.get_term()), (3, 2));
            assert_eq!(*first_index, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    let stored = kv.get_apply_state(1).unwrap().unwrap();
    assert_eq!(stored.get_truncated_state().get_index(), 3);
    assert_eq!(stored.get_applied_index(), 6);
    assert_eq!(kv.synced_writes.load(Ordering::SeqCst), 1);
}

#[test]
fn change_peer_updates_peers_and_conf_ver_and_returns_the_conf_change() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    let (e1, cc1) = conf_change_entry(1, 1, &r, ConfChangeType::AddLearnerNode, learner(14, 4));
    let mut r2 = r.clone();
    r2.mut_region_epoch().set_conf_ver(2);
    let (e2, _) = conf_change_entry(2, 1, &r2, ConfChangeType::AddNode, peer(14, 4));
    let mut r3 = r.clone();
    r3.mut_region_epoch().set_conf_ver(3);
    let (e3, cc3) = conf_change_entry(3, 1, &r3, ConfChangeType::RemoveNode, peer(12, 2));
    // Stale conf_ver: refused, no result.
    let (e4, _) = conf_change_entry(4, 1, &r, ConfChangeType::RemoveNode, peer(13, 3));
    d.apply(
        &r,
        1,
        vec![e1, e2, e3, e4],
        (1..=4).map(|i| resps.proposal(i, 1)).collect(),
    );
    let (res, _) = d.round();
    let got = resps.take();
    for (i, resp) in got.iter().take(3) {
        assert!(!resp.get_header().has_error(), "entry {i}: {resp:?}");
    }
    assert!(got[3].1.get_header().get_error().has_epoch_not_match());
    let results = &res[0].exec_results;
    assert_eq!(results.len(), 3);
    match (&results[0], &results[2]) {
        (
            ExecResult::ChangePeer { cc: a, region: ra },
            ExecResult::ChangePeer { cc: c, region: rc },
        ) => {
            assert_eq!(a, &apply::membership::v1_to_v2(cc1.clone()));
            assert_eq!(ra.get_region_epoch().get_conf_ver(), 2);
            assert_eq!(ra.get_peers()[3].get_role(), PeerRole::Learner);
            assert_eq!(c, &apply::membership::v1_to_v2(cc3.clone()));
            assert_eq!(rc.get_region_epoch().get_conf_ver(), 4);
            let ids: Vec<_> = rc
                .get_peers()
                .iter()
                .map(|p| (p.get_id(), p.get_role()))
                .collect();
            assert_eq!(
                ids,
                vec![
                    (11, PeerRole::Voter),
                    (13, PeerRole::Voter),
                    (14, PeerRole::Voter)
                ]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let stored = d.kv.get_region_state(1).unwrap().unwrap();
    assert_eq!(stored.get_region().get_region_epoch().get_conf_ver(), 4);
    assert_eq!(stored.get_state(), PeerState::Normal);
    assert_eq!(d.fsm(1).region().get_peers().len(), 3);
}

#[test]
fn invalid_conf_changes_are_refused_without_a_result() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    // Adding an existing voter, removing a non-member, a second peer on a store.
    let (e1, _) = conf_change_entry(1, 1, &r, ConfChangeType::AddNode, peer(11, 1));
    let (e2, _) = conf_change_entry(2, 1, &r, ConfChangeType::RemoveNode, peer(99, 9));
    let (e3, _) = conf_change_entry(3, 1, &r, ConfChangeType::AddNode, peer(15, 2));
    // ChangePeer proposed as a normal entry.
    let (e4, _) = conf_change_entry(4, 1, &r, ConfChangeType::AddNode, peer(16, 6));
    let e4 = raw_entry(4, 1, e4.get_context().to_vec());
    d.apply(
        &r,
        1,
        vec![e1, e2, e3, e4],
        (1..=4).map(|i| resps.proposal(i, 1)).collect(),
    );
    let (res, _) = d.round();
    for (i, resp) in resps.take() {
        assert!(resp.get_header().has_error(), "entry {i} must fail");
    }
    assert!(res[0].exec_results.is_empty());
    assert_eq!(res[0].apply_state.get_applied_index(), 4);
    assert_eq!(d.fsm(1).region(), &r);
}

#[test]
fn removing_this_peer_tombstones_it_and_stops_applying() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    let (e1, _) = conf_change_entry(1, 1, &r, ConfChangeType::RemoveNode, peer(11, 1));
    d.apply(
        &r,
        1,
        vec![e1, put_entry(&r, 2, 1, b"k", b"v")],
        vec![resps.proposal(1, 1), resps.proposal(2, 1)],
    );
    let (res, _) = d.round();
    assert_eq!(res[0].apply_state.get_applied_index(), 1);
    assert_eq!(d.kv.get(b"k").unwrap(), None);
    assert_eq!(
        d.kv.get_region_state(1).unwrap().unwrap().get_state(),
        PeerState::Tombstone
    );
    let got = resps.take();
    assert!(!got[0].1.get_header().has_error());
    // Later proposals are answered when the FSM is destroyed.
    d.send(1, ApplyMsg::Destroy { region_id: 1 });
    let (res, _) = d.round();
    assert!(res[0].destroyed);
    let err = resps.take()[0].1.get_header().get_error().clone();
    assert!(
        err.get_message().contains("outcome unknown") && !err.has_region_not_found(),
        "{err:?}"
    );
}

#[test]
fn split_creates_the_right_region_in_the_same_batch() {
    let kv = TestKv::default();
    let mut d = Driver::new(kv.clone(), Config::default());
    let r = region(1, b"b", b"y");
    d.register(registration(&r));
    let resps = Responses::default();
    let entries = vec![
        entry(1, 1, &admin_cmd(&r, split(b"m", 2, vec![21, 22, 23]))),
        // Proposed before the split: its epoch is stale now.
        put_entry(&r, 2, 1, b"c", b"v"),
    ];
    d.apply(
        &r,
        1,
        entries,
        vec![resps.proposal(1, 1), resps.proposal(2, 1)],
    );
    let (res, _) = d.round();
    let got = resps.take();
    assert!(!got[0].1.get_header().has_error(), "{:?}", got[0].1);
    assert!(got[1].1.get_header().get_error().has_epoch_not_match());
    let (left, right) = match &res[0].exec_results[..] {
        [ExecResult::Split { left, right }] => (left.clone(), right.clone()),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        (left.get_id(), left.get_start_key(), left.get_end_key()),
        (1, &b"b"[..], &b"m"[..])
    );
    assert_eq!(
        (right.get_id(), right.get_start_key(), right.get_end_key()),
        (2, &b"m"[..], &b"y"[..])
    );
    assert_eq!(left.get_region_epoch().get_version(), 2);
    assert_eq!(right.get_region_epoch().get_version(), 2);
    assert_eq!(right.get_region_epoch().get_conf_ver(), 1);
    let right_peers: Vec<_> = right
        .get_peers()
        .iter()
        .map(|p| (p.get_id(), p.get_store_id()))
        .collect();
    assert_eq!(right_peers, vec![(21, 1), (22, 2), (23, 3)]);
    assert_eq!(
        got[0].1.get_admin_response().get_split().get_right(),
        &right
    );
    assert_eq!(kv.get_region_state(1).unwrap().unwrap().get_region(), &left);
    assert_eq!(
        kv.get_region_state(2).unwrap().unwrap().get_region(),
        &right
    );
    assert_eq!(
        kv.get_apply_state(2).unwrap().unwrap(),
        apply::initial_apply_state()
    );
    assert_eq!(
        kv.writes.load(Ordering::SeqCst),
        1,
        "one batch for everything"
    );
    assert_eq!(
        kv.synced_writes.load(Ordering::SeqCst),
        1,
        "admin rounds are synced"
    );
    assert_eq!(d.fsm(1).region(), &left);
}

#[test]
fn invalid_splits_are_refused() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    let mut stale = r.clone();
    stale.mut_region_epoch().set_version(0);
    let entries = vec![
        entry(1, 1, &admin_cmd(&r, split(b"z", 2, vec![21, 22, 23]))),
        entry(2, 1, &admin_cmd(&r, split(b"b", 2, vec![21, 22, 23]))),
        entry(3, 1, &admin_cmd(&r, split(b"m", 2, vec![21]))),
        entry(4, 1, &admin_cmd(&r, split(b"m", 1, vec![21, 22, 23]))),
        entry(5, 1, &admin_cmd(&stale, split(b"m", 2, vec![21, 22, 23]))),
    ];
    d.apply(
        &r,
        1,
        entries,
        (1..=5).map(|i| resps.proposal(i, 1)).collect(),
    );
    let (res, _) = d.round();
    let got = resps.take();
    assert!(got[0].1.get_header().get_error().has_key_not_in_region());
    assert!(got[1].1.get_header().get_error().has_key_not_in_region());
    assert!(got[2].1.get_header().has_error());
    assert!(got[3].1.get_header().has_error());
    assert!(got[4].1.get_header().get_error().has_epoch_not_match());
    assert!(res[0].exec_results.is_empty());
    assert_eq!(d.kv.get_region_state(2).unwrap(), None);
}

#[test]
fn split_keeps_an_existing_target_region() {
    let (mut d, r) = setup();
    // Region 2 exists already (created by a message from its leader).
    let mut wb = d.kv.write_batch();
    let existing = region(2, b"m", b"y");
    let mut st = kvproto_lite::raft_serverpb::RegionLocalState::default();
    st.set_region(existing.clone());
    engine::KvWriteBatch::put_region_state(&mut wb, 2, &st);
    let mut applied = apply::initial_apply_state();
    applied.set_applied_index(42);
    engine::KvWriteBatch::put_apply_state(&mut wb, 2, &applied);
    d.kv.write(&mut wb, true).unwrap();
    d.apply(
        &r,
        1,
        vec![entry(
            1,
            1,
            &admin_cmd(&r, split(b"m", 2, vec![21, 22, 23])),
        )],
        vec![],
    );
    let (res, _) = d.round();
    assert!(matches!(
        res[0].exec_results[..],
        [ExecResult::Split { .. }]
    ));
    assert_eq!(
        d.kv.get_region_state(2).unwrap().unwrap().get_region(),
        &existing
    );
    assert_eq!(persisted_applied(&d.kv, 2), 42);
}

#[test]
fn wrong_region_id_and_mixed_commands_are_refused() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    let other = region(7, b"b", b"y");
    let mut mixed = admin_cmd(&r, compact_log(1, 1));
    mixed.mut_requests().push(put_req(b"k", b"v"));
    let mut empty_body = cmd(&r, vec![]);
    let mut req = put_req(b"k", b"v");
    req.clear_put();
    empty_body.mut_requests().push(req);
    d.apply(
        &r,
        1,
        vec![
            put_entry(&other, 1, 1, b"k", b"v"),
            entry(2, 1, &mixed),
            entry(3, 1, &empty_body),
        ],
        (1..=3).map(|i| resps.proposal(i, 1)).collect(),
    );
    d.round();
    let got = resps.take();
    assert!(got[0].1.get_header().get_error().has_region_not_found());
    assert!(got[1].1.get_header().has_error());
    assert!(got[2].1.get_header().has_error());
    assert_eq!(d.kv.get(b"k").unwrap(), None);
}

#[test]
fn failed_write_stops_the_store_answers_every_command_and_writes_nothing_more() {
    let kv = TestKv::default();
    let mut d = Driver::new(kv.clone(), Config::default());
    let r = region(1, b"", b"");
    d.register(registration(&r));
    let resps = Responses::default();
    d.apply(&r, 1, vec![put_entry(&r, 1, 1, b"k", b"1")], vec![]);
    d.round();
    kv.fail.store(true, Ordering::SeqCst);
    d.apply(
        &r,
        1,
        vec![
            put_entry(&r, 2, 1, b"k", b"2"),
            entry(3, 1, &admin_cmd(&r, split(b"m", 2, vec![21, 22, 23]))),
        ],
        vec![resps.proposal(2, 1), resps.proposal(3, 1)],
    );
    let (res, _) = d.round();
    assert!(res.is_empty(), "no progress reported");
    let got = resps.take();
    assert_eq!(got.len(), 2);
    for (_, resp) in &got {
        let err = resp.get_header().get_error();
        assert!(
            err.get_message().contains("failed disk write")
                && err.get_message().contains("injected write failure")
                && err.get_message().contains("outcome unknown"),
            "{err:?}"
        );
    }
    let reason = d.poller_router().disk_failure().reason().map(str::to_owned);
    assert!(reason.is_some_and(|r| r.contains("injected write failure")));
    // In-memory state is what is durable; nothing stays queued.
    assert_eq!(d.fsm(1).apply_state().get_applied_index(), 1);
    assert_eq!(d.fsm(1).region(), &r);
    assert_eq!(d.fsm(1).pending_entries(), 0);
    // The disk recovers, but the store stays stopped: later entries are
    // answered with the same error and nothing is written.
    kv.fail.store(false, Ordering::SeqCst);
    let writes = kv.writes.load(Ordering::SeqCst);
    d.apply(
        &r,
        1,
        vec![put_entry(&r, 4, 1, b"k", b"4")],
        vec![resps.proposal(4, 1)],
    );
    let res = d.run();
    assert!(res.is_empty());
    let got = resps.take();
    assert_eq!(got.len(), 1);
    assert!(got[0]
        .1
        .get_header()
        .get_error()
        .get_message()
        .contains("failed disk write"));
    assert_eq!(
        kv.writes.load(Ordering::SeqCst),
        writes,
        "nothing written after the failure"
    );
    assert_eq!(kv.get(b"k").unwrap(), Some(b"1".to_vec()));
    assert_eq!(persisted_applied(&kv, 1), 1);
    assert!(kv.get_region_state(2).unwrap().is_none());
}

#[test]
fn destroy_answers_pending_proposals_and_reports_once() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    // Proposal for an entry that will never be applied here.
    d.apply(
        &r,
        1,
        vec![put_entry(&r, 1, 1, b"k", b"v")],
        vec![resps.proposal(1, 1), resps.proposal(2, 1)],
    );
    d.send(1, ApplyMsg::Destroy { region_id: 1 });
    let (res, _) = d.round();
    let got = resps.take();
    assert!(
        !got[0].1.get_header().has_error(),
        "entries before the destroy apply"
    );
    let err = got[1].1.get_header().get_error();
    assert!(
        err.get_message().contains("outcome unknown") && !err.has_region_not_found(),
        "{err:?}"
    );
    assert_eq!(res.len(), 1);
    assert!(res[0].destroyed);
    assert_eq!(res[0].apply_state.get_applied_index(), 1);
    assert!(d.fsms.is_empty(), "stopped FSMs leave the batch");
}

#[test]
fn re_registration_resets_state_and_answers_pending_proposals() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    d.apply(
        &r,
        1,
        vec![put_entry(&r, 1, 1, b"k", b"v")],
        vec![resps.proposal(3, 1)],
    );
    let mut snap_state = kvproto_lite::raft_serverpb::RaftApplyState::default();
    snap_state.set_applied_index(10);
    snap_state.mut_truncated_state().set_index(10);
    snap_state.mut_truncated_state().set_term(2);
    d.send(
        1,
        ApplyMsg::registration(Registration {
            peer_id: 11,
            region: r.clone(),
            apply_state: snap_state.clone(),
            applied_term: 2,
        }),
    );
    d.apply(&r, 2, vec![put_entry(&r, 11, 2, b"k", b"w")], vec![]);
    let (res, _) = d.round();
    assert!(resps.take()[0]
        .1
        .get_header()
        .get_error()
        .has_stale_command());
    assert_eq!(res.last().unwrap().apply_state.get_applied_index(), 11);
    assert_eq!(d.kv.get(b"k").unwrap(), Some(b"w".to_vec()));
    assert_eq!(persisted_applied(&d.kv, 1), 11);
}

#[test]
fn a_proposal_carrying_its_request_is_applied_without_decoding_the_entry() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    let request = cmd(&r, vec![put_req(b"k", b"from the proposer")]);
    // The entry's bytes do not decode: only the proposer's copy can have
    // been applied (a proposer guarantees they are the same command).
    d.apply(
        &r,
        1,
        vec![raw_entry(1, 1, vec![0xff, 0xff, 0xff])],
        vec![resps.proposal(1, 1).with_request(Box::new(request))],
    );
    d.round();
    let got = resps.take();
    assert!(!got[0].1.get_header().has_error(), "{:?}", got[0].1);
    assert_eq!(d.kv.get(b"k").unwrap(), Some(b"from the proposer".to_vec()));
}

#[test]
fn a_superseded_proposal_request_is_never_applied() {
    let (mut d, r) = setup();
    let resps = Responses::default();
    // Proposed at (1, term 1); the log holds another command at index 1,
    // from term 2: that one is applied, the proposal answered stale.
    let mine = cmd(&r, vec![put_req(b"k", b"superseded")]);
    d.apply(
        &r,
        2,
        vec![put_entry(&r, 1, 2, b"k", b"winner")],
        vec![resps.proposal(1, 1).with_request(Box::new(mine))],
    );
    d.round();
    let got = resps.take();
    assert!(got[0].1.get_header().get_error().has_stale_command());
    assert_eq!(d.kv.get(b"k").unwrap(), Some(b"winner".to_vec()));
}

#[test]
fn the_store_region_ranges_follow_what_apply_wrote() {
    let kv = TestKv::default();
    let mut d = Driver::new(kv.clone(), Config::default());
    let ranges = std::sync::Arc::new(apply::RegionRanges::default());
    d.poller.set_region_ranges(ranges.clone());
    let r = region(1, b"b", b"y");
    ranges.publish([(1, Some(r.clone()))]);
    d.register(registration(&r));
    // A refused split (no new peer ids) changes nothing.
    d.apply(
        &r,
        1,
        vec![entry(1, 1, &admin_cmd(&r, split(b"m", 2, vec![])))],
        vec![],
    );
    d.round();
    assert_eq!(
        (ranges.region_at(b"c"), ranges.region_at(b"n")),
        (Some(1), Some(1))
    );
    // A split: both halves appear once the round is written.
    d.apply(
        &r,
        1,
        vec![entry(
            2,
            1,
            &admin_cmd(&r, split(b"m", 2, vec![21, 22, 23])),
        )],
        vec![],
    );
    d.round();
    assert_eq!(
        (ranges.region_at(b"c"), ranges.region_at(b"n")),
        (Some(1), Some(2))
    );
    assert_eq!(ranges.len(), 2);
    // Destroying region 1's peer here leaves only region 2.
    d.send(1, ApplyMsg::Destroy { region_id: 1 });
    d.round();
    assert_eq!(
        (ranges.region_at(b"c"), ranges.region_at(b"n")),
        (None, Some(2))
    );
}
