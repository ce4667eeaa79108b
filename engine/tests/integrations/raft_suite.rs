//! Conformance checks for every `RaftLogEngine`, written once and
//! instantiated per implementation by `raft_conformance!` in `main.rs`.

use engine::kvproto_lite::raft_serverpb::RaftLocalState;
use engine::{Error, RaftLogBatch, RaftLogEngine};
use protobuf::Message;
use raft::eraftpb::Entry;

use crate::harness::Harness;

pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("entry-{index:08}-{term:04}").into_bytes().into(),
        ..Default::default()
    }
}

pub fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

pub fn raft_state(last_index: u64, term: u64, commit: u64) -> RaftLocalState {
    let mut s = RaftLocalState::default();
    s.set_last_index(last_index);
    s.mut_hard_state().set_term(term);
    s.mut_hard_state().set_commit(commit);
    s
}

fn append<E: RaftLogEngine>(e: &E, region_id: u64, ents: Vec<Entry>, sync: bool) {
    let mut b = e.log_batch(1);
    b.append(region_id, ents).unwrap();
    e.consume(&mut b, sync).unwrap();
    assert!(b.is_empty());
}

fn fetch_all<E: RaftLogEngine>(e: &E, region_id: u64) -> Vec<Entry> {
    let (Some(first), Some(last)) = (e.first_index(region_id), e.last_index(region_id)) else {
        return Vec::new();
    };
    let mut buf = Vec::new();
    let n = e
        .fetch_entries_to(region_id, first, last + 1, None, &mut buf)
        .unwrap();
    assert_eq!(n, buf.len());
    buf
}

pub fn append_then_fetch_returns_the_entries<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    assert_eq!(e.first_index(1), None);
    assert_eq!(e.last_index(1), None);
    append(e, 1, entries(1..=10, 1), true);
    assert_eq!(e.first_index(1), Some(1));
    assert_eq!(e.last_index(1), Some(10));
    assert_eq!(fetch_all(e, 1), entries(1..=10, 1));
    assert_eq!(e.get_entry(1, 5).unwrap(), Some(entry(5, 1)));
    assert_eq!(e.get_entry(1, 11).unwrap(), None);
    assert_eq!(e.get_entry(2, 1).unwrap(), None);
    let mut buf = vec![entry(99, 9)];
    assert_eq!(e.fetch_entries_to(1, 3, 6, None, &mut buf).unwrap(), 3);
    assert_eq!(
        buf[1..],
        entries(3..=5, 1)[..],
        "fetch appends to the buffer"
    );
}

pub fn append_overwrites_the_conflicting_suffix<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    append(e, 1, entries(1..=10, 1), false);
    append(e, 1, entries(6..=8, 2), true);
    assert_eq!(e.last_index(1), Some(8));
    assert_eq!(e.get_entry(1, 9).unwrap(), None);
    let mut expected = entries(1..=5, 1);
    expected.extend(entries(6..=8, 2));
    assert_eq!(fetch_all(e, 1), expected);
    // Appending right after the last entry extends; at the first index replaces all.
    append(e, 1, entries(9..=9, 2), false);
    append(e, 1, entries(1..=2, 3), false);
    assert_eq!(fetch_all(e, 1), entries(1..=2, 3));
}

pub fn invalid_appends_are_rejected_and_write_nothing<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    append(e, 1, entries(1..=5, 1), true);

    let mut b = e.log_batch(2);
    b.append(2, entries(1..=3, 1)).unwrap();
    b.put_raft_state(2, &raft_state(3, 1, 0)).unwrap();
    b.append(1, entries(7..=7, 1)).unwrap();
    let err = e.consume(&mut b, true).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LogGap {
                region_id: 1,
                last_index: 5,
                first_new: 7
            }
        ),
        "{err}"
    );
    assert!(!b.is_empty(), "a rejected batch is left as it was");
    assert_eq!(
        e.last_index(2),
        None,
        "nothing of a rejected batch is written"
    );
    assert_eq!(e.get_raft_state(2).unwrap(), None);

    assert_eq!(e.compact_to(1, 3).unwrap(), 2);
    let mut b = e.log_batch(1);
    b.append(1, entries(2..=6, 2)).unwrap();
    let err = e.consume(&mut b, true).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OverwriteCompacted {
                region_id: 1,
                first_index: 3,
                first_new: 2
            }
        ),
        "{err}"
    );
    assert_eq!(fetch_all(e, 1), entries(3..=5, 1));

    // Appends earlier in the same batch count.
    let mut b = e.log_batch(2);
    b.append(1, entries(6..=6, 1)).unwrap();
    b.append(1, entries(7..=8, 1)).unwrap();
    e.consume(&mut b, true).unwrap();
    assert_eq!(e.last_index(1), Some(8));
}

pub fn batch_rejects_non_contiguous_entries<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let mut b = e.log_batch(1);
    let err = b.append(1, vec![entry(1, 1), entry(3, 1)]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonContiguousEntries {
                region_id: 1,
                prev: 1,
                got: 3
            }
        ),
        "{err}"
    );
    assert!(b.append(1, vec![entry(2, 1), entry(1, 1)]).is_err());
    assert!(b.is_empty(), "a rejected append leaves the batch unchanged");
    b.append(1, Vec::new()).unwrap();
    assert!(b.is_empty(), "an empty append adds nothing");
    assert_eq!(e.consume(&mut b, true).unwrap(), 0);
}

pub fn fetch_stops_at_the_size_limit_but_returns_one_entry<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let ents = entries(1..=10, 1);
    let size = ents[0].compute_size() as usize;
    assert!(ents.iter().all(|x| x.compute_size() as usize == size));
    append(e, 1, ents.clone(), true);
    let fetch = |max: Option<usize>| {
        let mut buf = Vec::new();
        let n = e.fetch_entries_to(1, 2, 11, max, &mut buf).unwrap();
        assert_eq!(n, buf.len());
        buf
    };
    assert_eq!(fetch(Some(0)), ents[1..2], "at least one entry");
    assert_eq!(fetch(Some(size)), ents[1..2]);
    assert_eq!(fetch(Some(2 * size + size / 2)), ents[1..3]);
    assert_eq!(fetch(Some(3 * size)), ents[1..4], "the limit is inclusive");
    assert_eq!(fetch(Some(usize::MAX)), ents[1..]);
    assert_eq!(fetch(None), ents[1..]);
}

pub fn fetch_reports_compacted_and_unavailable_ranges<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let mut buf = Vec::new();
    assert!(matches!(
        e.fetch_entries_to(1, 1, 2, None, &mut buf),
        Err(Error::EntriesUnavailable)
    ));
    append(e, 1, entries(1..=10, 1), true);
    e.compact_to(1, 4).unwrap();
    assert!(matches!(
        e.fetch_entries_to(1, 3, 5, None, &mut buf),
        Err(Error::EntriesCompacted)
    ));
    assert!(matches!(
        e.fetch_entries_to(1, 5, 12, None, &mut buf),
        Err(Error::EntriesUnavailable)
    ));
    assert!(matches!(
        e.fetch_entries_to(1, 4, u64::MAX, None, &mut buf),
        Err(Error::EntriesUnavailable)
    ));
    assert!(buf.is_empty(), "nothing is pushed on error");
    assert_eq!(e.fetch_entries_to(1, 7, 7, None, &mut buf).unwrap(), 0);
    assert_eq!(e.fetch_entries_to(1, 9, 3, None, &mut buf).unwrap(), 0);
    assert_eq!(e.fetch_entries_to(1, 4, 11, None, &mut buf).unwrap(), 7);

    let err: raft::Error = e
        .fetch_entries_to(1, 1, 5, None, &mut buf)
        .unwrap_err()
        .into();
    assert_eq!(err, raft::Error::Store(raft::StorageError::Compacted));
    let err: raft::Error = e
        .fetch_entries_to(1, 5, 20, None, &mut buf)
        .unwrap_err()
        .into();
    assert_eq!(err, raft::Error::Store(raft::StorageError::Unavailable));
}

pub fn compact_removes_a_prefix_and_counts_it<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    assert_eq!(e.compact_to(1, 10).unwrap(), 0, "unknown region");
    append(e, 1, entries(1..=10, 1), true);
    assert_eq!(e.compact_to(1, 5).unwrap(), 4);
    assert_eq!(e.first_index(1), Some(5));
    assert_eq!(e.get_entry(1, 4).unwrap(), None);
    assert_eq!(e.compact_to(1, 3).unwrap(), 0, "already compacted");
    assert_eq!(e.compact_to(1, 5).unwrap(), 0);
    assert_eq!(fetch_all(e, 1), entries(5..=10, 1));
    assert_eq!(
        e.compact_to(1, 100).unwrap(),
        6,
        "only existing entries count"
    );
    assert_eq!(e.first_index(1), None);
    assert_eq!(e.last_index(1), None);
    // A region without entries accepts an append anywhere (after a snapshot).
    append(e, 1, entries(200..=201, 2), true);
    assert_eq!(fetch_all(e, 1), entries(200..=201, 2));
}

pub fn one_batch_writes_many_regions_atomically<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let mut b = e.log_batch(200);
    for region in 1..=100u64 {
        b.append(region, entries(1..=3, region)).unwrap();
        b.put_raft_state(region, &raft_state(3, region, 2)).unwrap();
    }
    assert!(!b.is_empty());
    assert!(b.approximate_size() > 100 * 3 * 10);
    let written = e.consume(&mut b, true).unwrap();
    assert!(written > 0);
    assert!(b.is_empty());
    for region in 1..=100u64 {
        assert_eq!(fetch_all(e, region), entries(1..=3, region));
        assert_eq!(
            e.get_raft_state(region).unwrap(),
            Some(raft_state(3, region, 2))
        );
    }
    assert_eq!(e.region_ids().unwrap(), (1..=100).collect::<Vec<_>>());
    // The batch is reusable.
    b.append(7, entries(4..=4, 7)).unwrap();
    e.consume(&mut b, true).unwrap();
    assert_eq!(e.last_index(7), Some(4));
}

pub fn raft_state_is_replaced_and_listed<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    assert_eq!(e.get_raft_state(5).unwrap(), None);
    assert!(e.region_ids().unwrap().is_empty());
    let mut b = e.log_batch(2);
    b.put_raft_state(5, &raft_state(0, 1, 0)).unwrap();
    b.put_raft_state(5, &raft_state(0, 2, 0)).unwrap();
    b.append(6, entries(1..=1, 1)).unwrap();
    e.consume(&mut b, false).unwrap();
    assert_eq!(
        e.get_raft_state(5).unwrap(),
        Some(raft_state(0, 2, 0)),
        "the later state wins"
    );
    assert_eq!(
        e.region_ids().unwrap(),
        vec![5],
        "only regions with a raft state are listed"
    );
}

pub fn clean_removes_log_and_state_and_allows_a_restart<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let mut b = e.log_batch(4);
    for region in [1, 2] {
        b.append(region, entries(1..=5, 1)).unwrap();
        b.put_raft_state(region, &raft_state(5, 1, 5)).unwrap();
    }
    e.consume(&mut b, true).unwrap();
    b.clean(1).unwrap();
    e.consume(&mut b, true).unwrap();
    assert_eq!(e.first_index(1), None);
    assert_eq!(e.get_raft_state(1).unwrap(), None);
    assert_eq!(e.region_ids().unwrap(), vec![2]);
    assert_eq!(
        fetch_all(e, 2),
        entries(1..=5, 1),
        "other regions are untouched"
    );

    // Clean + append in one batch restarts the log (as after a snapshot).
    b.clean(2).unwrap();
    b.append(2, entries(50..=51, 3)).unwrap();
    b.put_raft_state(2, &raft_state(51, 3, 49)).unwrap();
    e.consume(&mut b, true).unwrap();
    assert_eq!(fetch_all(e, 2), entries(50..=51, 3));
    assert_eq!(e.get_raft_state(2).unwrap(), Some(raft_state(51, 3, 49)));
}

pub fn empty_batches_and_sync_succeed<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let mut b = e.log_batch(0);
    assert!(b.is_empty());
    assert_eq!(e.consume(&mut b, false).unwrap(), 0);
    assert_eq!(e.consume(&mut b, true).unwrap(), 0);
    e.sync().unwrap();
    assert!(
        e.region_ids().unwrap().is_empty(),
        "sync leaves no visible trace"
    );
}

pub fn restart_keeps_synced_writes<H: Harness>()
where
    H::Engine: RaftLogEngine,
{
    let mut h = H::fresh();
    let mut b = h.engine().log_batch(4);
    for region in 1..=3 {
        b.append(region, entries(1..=20, 1)).unwrap();
        b.put_raft_state(region, &raft_state(20, 1, 10)).unwrap();
    }
    h.engine().consume(&mut b, true).unwrap();
    h.engine().compact_to(2, 11).unwrap();
    b.clean(3).unwrap();
    h.engine().consume(&mut b, false).unwrap();
    h.engine().sync().unwrap();
    drop(b);
    h.restart();
    let e = h.engine();
    assert_eq!(fetch_all(e, 1), entries(1..=20, 1));
    assert_eq!(e.get_raft_state(1).unwrap(), Some(raft_state(20, 1, 10)));
    assert_eq!(
        fetch_all(e, 2),
        entries(11..=20, 1),
        "synced compaction is kept"
    );
    assert_eq!(e.first_index(3), None, "synced clean is kept");
    assert_eq!(e.region_ids().unwrap(), vec![1, 2]);
    // The reopened engine keeps working.
    append(e, 1, entries(21..=21, 1), true);
    assert_eq!(e.last_index(1), Some(21));
}
