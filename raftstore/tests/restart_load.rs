//! What a store loads from its engines when it starts: a peer for every
//! live region it holds, each from its own persisted state, however many
//! regions there are (a large store loads them on several threads) and
//! whatever state a crash left a region in.
//!
//! The store is driven by hand (`spawn_manual`) and talks to nobody: the
//! tests look at what each peer reports after one poll (applied, commit
//! and last index, term) and at what the start repaired in the engines.

mod common;

use common::Alone;
use engine::{
    Engines, KvEngine, KvWriteBatch, MemKvEngine, MemRaftLogEngine, RaftLogBatch, RaftLogEngine,
};
use kvproto_lite::eraftpb::Entry;
use kvproto_lite::metapb::{self, Region};
use kvproto_lite::raft_serverpb::{
    PeerState, RaftApplyState, RaftLocalState, RaftMessage, RegionLocalState,
};
use raftstore::{
    bootstrap_store, create_raft_batch_system, even_split_keys, initial_regions, Config,
    ManualPollers, RaftBatchSystem, Transport, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM,
};

/// Regions bootstrapped on the store: enough for the store to load its
/// peers on several threads (one per 4,096 peers, on a machine with more
/// than one core).
const REGIONS: u64 = 10_000;

type Mem = Engines<MemKvEngine, MemRaftLogEngine>;

fn raft_state(term: u64, vote: u64, commit: u64, last: u64) -> RaftLocalState {
    let mut s = RaftLocalState::default();
    s.mut_hard_state().set_term(term);
    s.mut_hard_state().set_vote(vote);
    s.mut_hard_state().set_commit(commit);
    s.set_last_index(last);
    s
}

fn apply_state(applied: u64, truncated: u64, truncated_term: u64) -> RaftApplyState {
    let mut s = RaftApplyState::default();
    s.set_applied_index(applied);
    s.mut_truncated_state().set_index(truncated);
    s.mut_truncated_state().set_term(truncated_term);
    s
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

/// A region `id` covering `[start, end)` with voters on stores 1-3 (peer
/// ids `id * 10 + store`), or only on stores 2 and 3.
fn region(id: u64, start: &[u8], end: &[u8], on_store_1: bool) -> Region {
    let mut r = Region::default();
    r.set_id(id);
    r.set_start_key(start.to_vec());
    r.set_end_key(end.to_vec());
    r.mut_region_epoch().set_conf_ver(1);
    r.mut_region_epoch().set_version(1);
    for store in [1, 2, 3] {
        if store == 1 && !on_store_1 {
            continue;
        }
        let mut p = metapb::Peer::default();
        p.set_id(id * 10 + store);
        p.set_store_id(store);
        r.mut_peers().push(p);
    }
    r
}

fn put_region(engines: &Mem, region: &Region, state: PeerState, apply: Option<RaftApplyState>) {
    let mut s = RegionLocalState::default();
    s.set_state(state);
    s.set_region(region.clone());
    let mut wb = engines.kv.write_batch();
    wb.put_region_state(region.get_id(), &s);
    if let Some(a) = apply {
        wb.put_apply_state(region.get_id(), &a);
    }
    engines.kv.write(&mut wb, true).unwrap();
}

fn put_raft(engines: &Mem, region_id: u64, state: &RaftLocalState, entries: Vec<Entry>) {
    let mut lb = engines.raft.log_batch(1);
    lb.append(region_id, entries).unwrap();
    lb.put_raft_state(region_id, state).unwrap();
    engines.raft.consume(&mut lb, true).unwrap();
}

fn start(
    engines: &Mem,
) -> (
    RaftBatchSystem<MemKvEngine, MemRaftLogEngine>,
    ManualPollers<MemKvEngine, MemRaftLogEngine, Alone>,
) {
    let cfg = Config {
        hibernate_regions: false,
        ..Config::default()
    };
    let (_router, mut system) = create_raft_batch_system(&cfg);
    let mut store = metapb::Store::default();
    store.set_id(1);
    let mut pollers = system
        .spawn_manual(store, engines.clone(), Alone, &raftstore::discard_logger())
        .unwrap();
    // Every peer handles its Start (and publishes its progress).
    for _ in 0..10_000 {
        if pollers.raft.poll_once() + pollers.apply.poll_once() == 0 {
            break;
        }
    }
    (system, pollers)
}

/// (applied, commit, last, term) of the store's peer of `region_id`.
fn progress(
    system: &RaftBatchSystem<MemKvEngine, MemRaftLogEngine>,
    region_id: u64,
) -> (u64, u64, u64, u64) {
    let p = system
        .region_progress(region_id)
        .unwrap_or_else(|| panic!("region {region_id} has no peer"));
    (p.applied_index, p.commit_index, p.last_index, p.term)
}

#[test]
fn a_restarted_store_loads_every_region_with_its_persisted_state() {
    let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
    let regions = initial_regions(&[1, 2, 3], &even_split_keys(REGIONS as usize)).unwrap();
    bootstrap_store(&engines, 1, &regions).unwrap();
    // As after an earlier run: every region at its own term, some with a
    // vote, a log and applied entries.
    let expected = |id: u64| {
        let term = RAFT_INIT_LOG_TERM + id % 17;
        let last = RAFT_INIT_LOG_INDEX + id % 5;
        let applied = RAFT_INIT_LOG_INDEX + id % 3;
        (applied.min(last), last, term)
    };
    let mut lb = engines.raft.log_batch(regions.len());
    let mut wb = engines.kv.write_batch();
    for r in &regions {
        let id = r.get_id();
        let (applied, last, term) = expected(id);
        let entries: Vec<Entry> = (RAFT_INIT_LOG_INDEX + 1..=last)
            .map(|i| entry(i, term))
            .collect();
        lb.append(id, entries).unwrap();
        lb.put_raft_state(id, &raft_state(term, id * 10 + id % 3 + 1, applied, last))
            .unwrap();
        wb.put_apply_state(
            id,
            &apply_state(applied, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM),
        );
    }
    engines.raft.consume(&mut lb, true).unwrap();
    engines.kv.write(&mut wb, true).unwrap();

    let (system, _pollers) = start(&engines);
    for r in &regions {
        let id = r.get_id();
        let (applied, last, term) = expected(id);
        assert_eq!(
            progress(&system, id),
            (applied, applied, last, term),
            "region {id}"
        );
    }
}

#[test]
fn regions_in_unusual_states_load_as_before() {
    let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
    let regions = initial_regions(&[1, 2, 3], &even_split_keys(REGIONS as usize)).unwrap();
    bootstrap_store(&engines, 1, &regions).unwrap();
    // Extra regions past the end of the key space's ids, each in one state.
    let id = |n: u64| REGIONS + n;
    let key = |n: u64| vec![0xff, n as u8];

    // A destroyed peer whose raft log a crash left behind: no peer, the
    // log is cleaned.
    put_region(
        &engines,
        &region(id(1), &key(1), &key(2), true),
        PeerState::Tombstone,
        None,
    );
    put_raft(&engines, id(1), &raft_state(7, 0, 9, 9), vec![entry(9, 7)]);

    // An uninitialized peer (created by a message, no region state yet):
    // no peer, its raft state (term and vote) kept.
    put_raft(
        &engines,
        id(2),
        &raft_state(8, id(2) * 10 + 2, 0, 0),
        vec![],
    );

    // A region created by a split whose raft state a crash lost: loaded
    // with the split's initial state.
    put_region(
        &engines,
        &region(id(3), &key(3), &key(4), true),
        PeerState::Normal,
        Some(apply_state(
            RAFT_INIT_LOG_INDEX,
            RAFT_INIT_LOG_INDEX,
            RAFT_INIT_LOG_TERM,
        )),
    );

    // The same, over the raft state of an uninitialized peer that voted
    // in term 9: the term and vote are kept.
    put_region(
        &engines,
        &region(id(4), &key(4), &key(5), true),
        PeerState::Normal,
        Some(apply_state(
            RAFT_INIT_LOG_INDEX,
            RAFT_INIT_LOG_INDEX,
            RAFT_INIT_LOG_TERM,
        )),
    );
    put_raft(
        &engines,
        id(4),
        &raft_state(9, id(4) * 10 + 3, 0, 0),
        vec![],
    );

    // A snapshot applied to the KV engine whose raft state a crash lost:
    // the log restarts at the snapshot (index 20, term 6).
    put_region(
        &engines,
        &region(id(5), &key(5), &key(6), true),
        PeerState::Normal,
        Some(apply_state(20, 20, 6)),
    );
    put_raft(&engines, id(5), &raft_state(5, 0, 5, 5), vec![]);

    // A log that holds the truncated index at another term (a stale log
    // under a snapshot): restarted at the snapshot (index 11, term 4).
    put_region(
        &engines,
        &region(id(6), &key(6), &key(7), true),
        PeerState::Normal,
        Some(apply_state(11, 11, 4)),
    );
    put_raft(
        &engines,
        id(6),
        &raft_state(3, 0, 10, 12),
        vec![entry(10, 3), entry(11, 3), entry(12, 3)],
    );

    // A log that holds the truncated index at its term (compaction not
    // synced yet): loaded as it is.
    put_region(
        &engines,
        &region(id(7), &key(7), &key(8), true),
        PeerState::Normal,
        Some(apply_state(11, 11, 4)),
    );
    put_raft(
        &engines,
        id(7),
        &raft_state(4, 0, 12, 12),
        vec![entry(10, 4), entry(11, 4), entry(12, 4)],
    );

    // A region state in the (unused) Applying state: no peer, as before.
    put_region(
        &engines,
        &region(id(8), &key(8), &key(9), true),
        PeerState::Applying,
        Some(apply_state(5, 5, 5)),
    );
    put_raft(&engines, id(8), &raft_state(5, 0, 5, 5), vec![]);

    // A region with no peer on this store: no peer.
    put_region(
        &engines,
        &region(id(9), &key(9), &key(10), false),
        PeerState::Normal,
        Some(apply_state(5, 5, 5)),
    );

    let (system, _pollers) = start(&engines);

    assert!(system.leader_info(id(1)).is_none());
    assert_eq!(engines.raft.get_raft_state(id(1)).unwrap(), None);
    assert_eq!(engines.raft.last_index(id(1)), None);

    assert!(system.leader_info(id(2)).is_none());
    assert_eq!(
        engines.raft.get_raft_state(id(2)).unwrap(),
        Some(raft_state(8, id(2) * 10 + 2, 0, 0))
    );

    let init = RAFT_INIT_LOG_INDEX;
    assert_eq!(
        progress(&system, id(3)),
        (init, init, init, RAFT_INIT_LOG_TERM)
    );
    assert_eq!(
        engines.raft.get_raft_state(id(3)).unwrap(),
        Some(raft_state(RAFT_INIT_LOG_TERM, 0, init, init))
    );

    assert_eq!(progress(&system, id(4)), (init, init, init, 9));
    assert_eq!(
        engines.raft.get_raft_state(id(4)).unwrap(),
        Some(raft_state(9, id(4) * 10 + 3, init, init))
    );

    assert_eq!(progress(&system, id(5)), (20, 20, 20, 6));
    assert_eq!(
        engines.raft.get_raft_state(id(5)).unwrap(),
        Some(raft_state(6, 0, 20, 20))
    );

    assert_eq!(progress(&system, id(6)), (11, 11, 11, 4));
    assert_eq!(
        engines.raft.get_raft_state(id(6)).unwrap(),
        Some(raft_state(4, 0, 11, 11))
    );
    assert_eq!(
        engines.raft.last_index(id(6)),
        None,
        "the stale log is gone"
    );

    // (Entry 12 is committed: the poll applies it.)
    assert_eq!(progress(&system, id(7)), (12, 12, 12, 4));
    assert_eq!(engines.raft.last_index(id(7)), Some(12));

    assert!(system.leader_info(id(8)).is_none());
    assert!(system.leader_info(id(9)).is_none());

    // And the ordinary regions around them.
    for r in [1, REGIONS / 2, REGIONS] {
        assert_eq!(progress(&system, r), (init, init, init, RAFT_INIT_LOG_TERM));
    }
}

/// Records the raft messages the store sends (to nobody).
#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<RaftMessage>>>);

impl Transport for Recorder {
    fn send(&mut self, msg: RaftMessage) -> raftstore::Result<()> {
        self.0.lock().unwrap().push(msg);
        Ok(())
    }
    fn flush(&mut self) {}
}

impl Recorder {
    /// Regions that have asked for a pre-vote so far.
    fn campaigned(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|m| {
                m.get_message().get_msg_type()
                    == kvproto_lite::eraftpb::MessageType::MsgRequestPreVote
            })
            .map(|m| m.get_region_id())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// After a start, a follower that voted for another peer in its term
/// waits one election timeout more than raft would before it campaigns
/// (its region's first campaigner gets that long to be heard); the peer
/// that voted for itself campaigns at once, and one that never voted
/// waits raft's own timeout.
#[test]
fn a_follower_that_voted_for_another_waits_one_more_election_timeout() {
    let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
    let regions = initial_regions(&[1, 2, 3], &even_split_keys(3)).unwrap();
    bootstrap_store(&engines, 1, &regions).unwrap();
    let my_peer = |r: &Region| {
        r.get_peers()
            .iter()
            .find(|p| p.get_store_id() == 1)
            .unwrap()
            .get_id()
    };
    let other_peer = |r: &Region| {
        r.get_peers()
            .iter()
            .find(|p| p.get_store_id() == 2)
            .unwrap()
            .get_id()
    };
    let init = RAFT_INIT_LOG_INDEX;
    // Region 1 voted for this store's peer, region 2 for another, region 3
    // for nobody, all in term 6.
    put_raft(
        &engines,
        1,
        &raft_state(6, my_peer(&regions[0]), init, init),
        vec![],
    );
    put_raft(
        &engines,
        2,
        &raft_state(6, other_peer(&regions[1]), init, init),
        vec![],
    );
    put_raft(&engines, 3, &raft_state(6, 0, init, init), vec![]);

    let cfg = Config {
        hibernate_regions: false,
        ..Config::default()
    };
    let election = cfg.raft_election_timeout_ticks;
    let (router, mut system) = create_raft_batch_system(&cfg);
    let mut store = metapb::Store::default();
    store.set_id(1);
    let sent = Recorder::default();
    let mut pollers = system
        .spawn_manual(
            store,
            engines.clone(),
            sent.clone(),
            &raftstore::discard_logger(),
        )
        .unwrap();
    let mut poll = || {
        for _ in 0..100 {
            if pollers.raft.poll_once() + pollers.apply.poll_once() == 0 {
                return;
            }
        }
    };
    poll();
    assert_eq!(sent.campaigned(), vec![1], "the self-voter at once");
    let mut tick = |n: usize| {
        for _ in 0..n {
            for id in [1, 2, 3] {
                router.force_send(id, raftstore::PeerMsg::Tick).unwrap();
            }
            poll();
        }
    };
    // raft's randomized timeout is below two election timeouts.
    tick(2 * election - 1);
    assert_eq!(sent.campaigned(), vec![1, 3], "the one that never voted");
    // Plus the grace.
    tick(election + 1);
    assert_eq!(sent.campaigned(), vec![1, 2, 3]);
    drop(system);
}
