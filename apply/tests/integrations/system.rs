//! The apply system through its real thread pool.

use std::sync::mpsc;
use std::time::Duration;

use apply::{Apply, ApplyMsg, ApplyRes, Config, Proposal};
use engine::{FjallKvEngine, KvEngine, MemKvEngine};
use kvproto_lite::raft_cmdpb::RaftCmdResponse;

use crate::harness::*;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Schedules, for `region_id`, an `Apply` with no entries and one proposal
/// (index 1, term 1), and waits for that proposal's answer.
fn lone_proposal_answer(router: &apply::ApplyRouter, region_id: u64) -> RaftCmdResponse {
    let (cb_tx, cb_rx) = mpsc::channel();
    let p = Proposal::new(
        1,
        1,
        Box::new(move |resp: RaftCmdResponse| cb_tx.send(resp).unwrap()),
    );
    router.schedule_task(
        region_id,
        ApplyMsg::apply(Apply {
            region_id,
            term: 1,
            entries: vec![],
            proposals: vec![p],
        }),
    );
    cb_rx.recv_timeout(TIMEOUT).unwrap()
}

#[test]
fn registration_through_the_router_creates_the_fsm_and_applies_in_order() {
    let (router, mut system) = apply::create_apply_batch_system(&Config::default());
    let kv = MemKvEngine::new();
    let (tx, res_rx) = mpsc::channel::<Vec<ApplyRes>>();
    system
        .spawn("apply-test".to_owned(), kv.clone(), tx)
        .unwrap();
    let r = region(1, b"", b"");
    router.schedule_task(1, ApplyMsg::registration(registration(&r)));
    let (cb_tx, cb_rx) = mpsc::channel();
    // Sent right after the registration: may reach the control FSM first,
    // and must still be applied, in order.
    for i in 1..=20u64 {
        let cb_tx = cb_tx.clone();
        let p = Proposal::new(
            i,
            1,
            Box::new(move |resp: RaftCmdResponse| cb_tx.send((i, resp)).unwrap()),
        );
        let apply = Apply {
            region_id: 1,
            term: 1,
            entries: vec![put_entry(&r, i, 1, b"k", format!("{i}").as_bytes())],
            proposals: vec![p],
        };
        router.schedule_task(1, ApplyMsg::apply(apply));
    }
    for i in 1..=20u64 {
        let (got, resp) = cb_rx.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(got, i);
        assert!(!resp.get_header().has_error());
    }
    let mut last = 0;
    while last < 20 {
        for res in res_rx.recv_timeout(TIMEOUT).unwrap() {
            assert!(res.apply_state.get_applied_index() > last);
            last = res.apply_state.get_applied_index();
        }
    }
    assert_eq!(kv.get(b"k").unwrap(), Some(b"20".to_vec()));
    assert_eq!(router.alive_cnt(), 1);
    system.shutdown();
}

#[test]
/// Proposals only travel with committed entries, so a proposal that reaches
/// no apply FSM may still take effect elsewhere: its outcome is unknown.
fn message_for_an_unknown_region_answers_outcome_unknown() {
    let (router, mut system) = apply::create_apply_batch_system(&Config::default());
    let (tx, _res_rx) = mpsc::channel::<Vec<ApplyRes>>();
    system
        .spawn("apply-test".to_owned(), MemKvEngine::new(), tx)
        .unwrap();
    let resp = lone_proposal_answer(&router, 9);
    let err = resp.get_header().get_error();
    assert!(
        err.get_message().contains("region 9") && err.get_message().contains("outcome unknown"),
        "{err:?}"
    );
    assert!(!err.has_region_not_found());
    system.shutdown();
}

#[test]
fn after_shutdown_messages_are_answered_not_lost() {
    let (router, mut system) = apply::create_apply_batch_system(&Config::default());
    let (tx, _res_rx) = mpsc::channel::<Vec<ApplyRes>>();
    system
        .spawn("apply-test".to_owned(), MemKvEngine::new(), tx.clone())
        .unwrap();
    assert!(system
        .spawn("again".to_owned(), MemKvEngine::new(), tx)
        .is_err());
    system.shutdown();
    let resp = lone_proposal_answer(&router, 1);
    let err = resp.get_header().get_error();
    assert!(
        err.get_message().contains("outcome unknown") && !err.has_region_not_found(),
        "{err:?}"
    );
}

#[test]
fn destroyed_region_can_be_registered_again() {
    let (router, mut system) = apply::create_apply_batch_system(&Config::default());
    let kv = MemKvEngine::new();
    let (tx, res_rx) = mpsc::channel::<Vec<ApplyRes>>();
    system
        .spawn("apply-test".to_owned(), kv.clone(), tx)
        .unwrap();
    let r = region(1, b"", b"");
    router.schedule_task(1, ApplyMsg::registration(registration(&r)));
    router.schedule_task(
        1,
        ApplyMsg::apply(Apply::new(1, 1, vec![put_entry(&r, 1, 1, b"a", b"1")])),
    );
    router.schedule_task(1, ApplyMsg::Destroy { region_id: 1 });
    router.schedule_task(1, ApplyMsg::registration(registration(&r)));
    router.schedule_task(
        1,
        ApplyMsg::apply(Apply::new(1, 1, vec![put_entry(&r, 1, 1, b"b", b"2")])),
    );
    let mut destroyed = false;
    let mut applied_after = false;
    while !(destroyed && applied_after) {
        for res in res_rx.recv_timeout(TIMEOUT).unwrap() {
            if res.destroyed {
                destroyed = true;
            } else if destroyed && res.apply_state.get_applied_index() == 1 {
                applied_after = true;
            }
        }
    }
    assert_eq!(kv.get(b"b").unwrap(), Some(b"2".to_vec()));
    system.shutdown();
}

/// `regions` regions fed by 3 threads, `per_region` entries each in
/// messages of 5; every callback must arrive and every region finish.
fn many_regions<K: KvEngine>(kv: K, regions: u64, per_region: u64) {
    let cfg = Config {
        max_entries_per_round: 8,
        ..Config::default()
    };
    let (router, mut system) = apply::create_apply_batch_system(&cfg);
    let (tx, _res_rx) = mpsc::channel::<Vec<ApplyRes>>();
    system
        .spawn("apply-many".to_owned(), kv.clone(), tx)
        .unwrap();
    let all: Vec<_> = (1..=regions)
        .map(|id| {
            region(
                id,
                format!("r{id:05}").as_bytes(),
                format!("r{:05}", id + 1).as_bytes(),
            )
        })
        .collect();
    for r in &all {
        router.schedule_task(r.get_id(), ApplyMsg::registration(registration(r)));
    }
    let (cb_tx, cb_rx) = mpsc::channel::<(u64, u64, bool)>();
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (router, all, cb_tx) = (router.clone(), &all, cb_tx.clone());
            s.spawn(move || {
                for r in all.iter().filter(|r| r.get_id() % 3 == t) {
                    for chunk in (1..=per_region).collect::<Vec<_>>().chunks(5) {
                        let mut entries = Vec::new();
                        let mut proposals = Vec::new();
                        for &i in chunk {
                            let key = format!("r{:05}-{i:03}", r.get_id());
                            entries.push(put_entry(r, i, 1, key.as_bytes(), b"v"));
                            let (cb_tx, id) = (cb_tx.clone(), r.get_id());
                            proposals.push(Proposal::new(
                                i,
                                1,
                                Box::new(move |resp: RaftCmdResponse| {
                                    let _ = cb_tx.send((id, i, !resp.get_header().has_error()));
                                }),
                            ));
                        }
                        router.schedule_task(
                            r.get_id(),
                            ApplyMsg::apply(Apply {
                                region_id: r.get_id(),
                                term: 1,
                                entries,
                                proposals,
                            }),
                        );
                    }
                }
            });
        }
    });
    let mut next = vec![1u64; regions as usize + 1];
    for _ in 0..regions * per_region {
        let (id, i, ok) = cb_rx.recv_timeout(TIMEOUT).expect("every callback arrives");
        assert!(ok, "region {id} entry {i}");
        assert_eq!(
            next[id as usize], i,
            "callbacks of a region arrive in log order"
        );
        next[id as usize] += 1;
    }
    system.shutdown();
    for r in &all {
        let state = kv.get_apply_state(r.get_id()).unwrap().unwrap();
        assert_eq!(state.get_applied_index(), per_region);
        let keys = kv
            .scan(r.get_start_key(), r.get_end_key(), usize::MAX)
            .unwrap();
        assert_eq!(keys.len() as u64, per_region);
    }
}

#[test]
fn many_regions_apply_concurrently_on_the_memory_engine() {
    many_regions(MemKvEngine::new(), 300, 20);
}

#[test]
fn many_regions_apply_concurrently_on_the_fjall_engine() {
    let dir = tempfile::tempdir().unwrap();
    many_regions(FjallKvEngine::open(dir.path()).unwrap(), 100, 20);
}

#[test]
fn manual_poller_drives_the_routed_system_on_the_test_thread() {
    let cfg = Config {
        max_entries_per_round: 2,
        ..Config::default()
    };
    let (router, system) = apply::create_apply_batch_system(&cfg);
    let kv = MemKvEngine::new();
    let (tx, res_rx) = mpsc::channel::<Vec<ApplyRes>>();
    let mut poller = system.manual_poller(kv.clone(), tx).unwrap();
    let r = region(1, b"", b"");
    router.schedule_task(1, ApplyMsg::registration(registration(&r)));
    let resps = Responses::default();
    let entries = (1..=5)
        .map(|i| put_entry(&r, i, 1, b"k", format!("{i}").as_bytes()))
        .collect();
    let proposals = (1..=5).map(|i| resps.proposal(i, 1)).collect();
    router.schedule_task(
        1,
        ApplyMsg::apply(Apply {
            region_id: 1,
            term: 1,
            entries,
            proposals,
        }),
    );
    let mut rounds = 0;
    while poller.poll_once() > 0 {
        rounds += 1;
        assert!(rounds < 100, "manual poller must go idle");
    }
    // Budget of 2 entries per round: three rounds for five entries.
    assert_eq!(rounds, 3);
    let order: Vec<_> = resps.take().into_iter().map(|(i, _)| i).collect();
    assert_eq!(order, vec![1, 2, 3, 4, 5]);
    let reported: Vec<u64> = res_rx
        .try_iter()
        .flatten()
        .map(|r| r.apply_state.get_applied_index())
        .collect();
    assert_eq!(reported, vec![2, 4, 5]);
    assert_eq!(kv.get(b"k").unwrap(), Some(b"5".to_vec()));
}
