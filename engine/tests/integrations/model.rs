//! Model checks: random operation sequences run against an engine and a
//! simple BTreeMap model must agree after every step, errors included.

use std::collections::BTreeMap;

use engine::kvproto_lite::raft_serverpb::RaftLocalState;
use engine::{KvEngine, KvSnapshot, KvWriteBatch, RaftLogBatch, RaftLogEngine};
use proptest::prelude::*;
use raft::eraftpb::Entry;

use crate::harness::Harness;
use crate::kv_suite::apply_state;
use crate::raft_suite::raft_state;

// ---------------------------------------------------------------- raft log

const RAFT_REGIONS: u64 = 3;

#[derive(Clone, Debug)]
pub enum LogItem {
    /// Append `len` entries starting `back` entries before the end of the
    /// region's log (or one past the end + 1 if `gap`).
    Append {
        region: u64,
        back: u64,
        gap: bool,
        len: u64,
        term: u64,
    },
    State {
        region: u64,
        commit: u64,
    },
    Clean {
        region: u64,
    },
}

#[derive(Clone, Debug)]
pub enum LogOp {
    Batch { items: Vec<LogItem>, sync: bool },
    Compact { region: u64, ahead: u64 },
    Sync,
    Restart,
}

fn log_item() -> impl Strategy<Value = LogItem> {
    let region = 1..=RAFT_REGIONS;
    prop_oneof![
        6 => (region.clone(), 0..4u64, prop::bool::weighted(0.1), 1..5u64, 1..4u64)
            .prop_map(|(region, back, gap, len, term)| LogItem::Append { region, back, gap, len, term }),
        2 => (region.clone(), 0..50u64).prop_map(|(region, commit)| LogItem::State { region, commit }),
        1 => region.prop_map(|region| LogItem::Clean { region }),
    ]
}

fn log_op() -> impl Strategy<Value = LogOp> {
    prop_oneof![
        8 => (prop::collection::vec(log_item(), 1..5), any::<bool>())
            .prop_map(|(items, sync)| LogOp::Batch { items, sync }),
        2 => (1..=RAFT_REGIONS, 0..6u64).prop_map(|(region, ahead)| LogOp::Compact { region, ahead }),
        1 => Just(LogOp::Sync),
        1 => Just(LogOp::Restart),
    ]
}

#[derive(Clone, Debug, Default, PartialEq)]
struct ModelRegion {
    first: u64,
    entries: Vec<Entry>,
    state: Option<RaftLocalState>,
}

impl ModelRegion {
    fn last(&self) -> Option<u64> {
        (!self.entries.is_empty()).then(|| self.first + self.entries.len() as u64 - 1)
    }
}

#[derive(Clone, Debug, Default)]
struct LogModel {
    live: BTreeMap<u64, ModelRegion>,
    durable: BTreeMap<u64, ModelRegion>,
}

fn model_entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: vec![index as u8; (index % 7) as usize * 20].into(),
        ..Default::default()
    }
}

/// Applies `items` to a copy of `regions`; `None` if the batch is invalid
/// (then nothing must change). Also returns the concrete appends.
#[allow(clippy::type_complexity)]
fn apply_items(
    regions: &BTreeMap<u64, ModelRegion>,
    items: &[LogItem],
) -> (Option<BTreeMap<u64, ModelRegion>>, Vec<(u64, Vec<Entry>)>) {
    let mut next = regions.clone();
    let mut appends = Vec::new();
    let mut valid = true;
    for item in items {
        match *item {
            LogItem::Append {
                region,
                back,
                gap,
                len,
                term,
            } => {
                let r = next.entry(region).or_default();
                let start = match r.last() {
                    Some(last) if gap => last + 2,
                    Some(last) => (last + 1).saturating_sub(back).max(1),
                    None => 1 + back * 10,
                };
                let ents: Vec<Entry> = (start..start + len).map(|i| model_entry(i, term)).collect();
                match r.last() {
                    Some(last) if start > last + 1 || start < r.first => valid = false,
                    Some(_) => {
                        r.entries.truncate((start - r.first) as usize);
                        r.entries.extend(ents.iter().cloned());
                    }
                    None => {
                        r.first = start;
                        r.entries = ents.clone();
                    }
                }
                appends.push((region, ents));
            }
            LogItem::State { region, commit } => {
                next.entry(region).or_default().state = Some(raft_state(commit + 1, 1, commit));
            }
            LogItem::Clean { region } => {
                next.remove(&region);
            }
        }
    }
    (valid.then_some(next), appends)
}

fn check_log<E: RaftLogEngine>(e: &E, model: &LogModel) {
    let empty = ModelRegion::default();
    for region in 1..=RAFT_REGIONS {
        let m = model.live.get(&region).unwrap_or(&empty);
        let last = m.last();
        assert_eq!(e.last_index(region), last, "last index of region {region}");
        assert_eq!(
            e.first_index(region),
            last.map(|_| m.first),
            "first index of region {region}"
        );
        assert_eq!(
            e.get_raft_state(region).unwrap(),
            m.state,
            "state of region {region}"
        );
        if let Some(last) = last {
            let mut buf = Vec::new();
            e.fetch_entries_to(region, m.first, last + 1, None, &mut buf)
                .unwrap();
            assert_eq!(buf, m.entries, "entries of region {region}");
            assert_eq!(e.get_entry(region, last + 1).unwrap(), None);
        }
    }
    let ids: Vec<u64> = model
        .live
        .iter()
        .filter(|(_, r)| r.state.is_some())
        .map(|(&id, _)| id)
        .collect();
    assert_eq!(e.region_ids().unwrap(), ids);
}

pub fn raft_log_matches_model<H: Harness>(ops: Vec<LogOp>)
where
    H::Engine: RaftLogEngine,
{
    let mut h = H::fresh();
    let mut model = LogModel::default();
    for op in ops {
        match op {
            LogOp::Batch { items, sync } => {
                let (next, appends) = apply_items(&model.live, &items);
                let e = h.engine();
                let mut b = e.log_batch(items.len());
                let mut appends = appends.into_iter();
                for item in &items {
                    match *item {
                        LogItem::Append { .. } => {
                            let (region, ents) = appends.next().unwrap();
                            b.append(region, ents).unwrap();
                        }
                        LogItem::State { region, commit } => b
                            .put_raft_state(region, &raft_state(commit + 1, 1, commit))
                            .unwrap(),
                        LogItem::Clean { region } => b.clean(region).unwrap(),
                    }
                }
                let res = e.consume(&mut b, sync);
                match next {
                    Some(next) => {
                        res.unwrap();
                        model.live = next;
                        if sync {
                            model.durable = model.live.clone();
                        }
                    }
                    None => assert!(res.is_err(), "invalid batch accepted: {items:?}"),
                }
            }
            LogOp::Compact { region, ahead } => {
                let m = model.live.entry(region).or_default();
                let to = m.first + ahead;
                let expected = match m.last() {
                    Some(last) => to.min(last + 1).saturating_sub(m.first),
                    None => 0,
                };
                if expected > 0 {
                    m.entries.drain(..expected as usize);
                    m.first += expected;
                }
                if m == &ModelRegion::default() {
                    model.live.remove(&region);
                }
                assert_eq!(h.engine().compact_to(region, to).unwrap(), expected);
            }
            LogOp::Sync => {
                h.engine().sync().unwrap();
                model.durable = model.live.clone();
            }
            LogOp::Restart => {
                h.restart();
                if H::RESTART_LOSES_UNSYNCED {
                    model.live = model.durable.clone();
                }
            }
        }
        check_log(h.engine(), &model);
    }
}

// ---------------------------------------------------------------------- kv

#[derive(Clone, Debug)]
pub enum KvOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    ApplyState(u64, u64),
    SetSavePoint,
    Rollback,
    PopSavePoint,
    Write(bool),
    Scan(Vec<u8>, Vec<u8>, usize),
    /// Take a snapshot, write `Put`s, check the snapshot still shows the old data.
    SnapshotThenWrite(Vec<u8>, Vec<u8>),
    Sync,
    Restart,
}

fn small_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![0u8, 1, 2, b'a', b'y', b'z', b'{', 0xff]),
        0..3,
    )
}

fn kv_op() -> impl Strategy<Value = KvOp> {
    prop_oneof![
        8 => (small_key(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(k, v)| KvOp::Put(k, v)),
        3 => small_key().prop_map(KvOp::Delete),
        2 => (1..4u64, 0..100u64).prop_map(|(r, i)| KvOp::ApplyState(r, i)),
        2 => Just(KvOp::SetSavePoint),
        2 => Just(KvOp::Rollback),
        1 => Just(KvOp::PopSavePoint),
        4 => any::<bool>().prop_map(KvOp::Write),
        2 => (small_key(), small_key(), 0..6usize).prop_map(|(s, e, l)| KvOp::Scan(s, e, l)),
        1 => (small_key(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(k, v)| KvOp::SnapshotThenWrite(k, v)),
        1 => Just(KvOp::Sync),
        1 => Just(KvOp::Restart),
    ]
}

#[derive(Clone, Debug, Default, PartialEq)]
struct KvState {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    applied: BTreeMap<u64, u64>,
}

#[derive(Clone, Debug)]
enum BatchOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Apply(u64, u64),
}

impl KvState {
    fn apply(&mut self, ops: &[BatchOp]) {
        for op in ops {
            match op {
                BatchOp::Put(k, v) => {
                    self.data.insert(k.clone(), v.clone());
                }
                BatchOp::Delete(k) => {
                    self.data.remove(k);
                }
                BatchOp::Apply(r, i) => {
                    self.applied.insert(*r, *i);
                }
            }
        }
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.data
            .iter()
            .filter(|(k, _)| k.as_slice() >= start && (end.is_empty() || k.as_slice() < end))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn check_kv<E: KvEngine>(e: &E, model: &KvState) {
    assert_eq!(
        e.scan(b"", b"", usize::MAX).unwrap(),
        model.scan(b"", b"", usize::MAX)
    );
    for region in 1..4 {
        let got = e
            .get_apply_state(region)
            .unwrap()
            .map(|s| s.get_applied_index());
        assert_eq!(
            got,
            model.applied.get(&region).copied(),
            "apply state of region {region}"
        );
    }
}

pub fn kv_matches_model<H: Harness>(ops: Vec<KvOp>)
where
    H::Engine: KvEngine,
{
    let mut h = H::fresh();
    let mut live = KvState::default();
    let mut durable = KvState::default();
    let mut batch: Vec<BatchOp> = Vec::new();
    let mut save_points: Vec<usize> = Vec::new();
    let mut wb = h.engine().write_batch();
    for op in ops {
        match op {
            KvOp::Put(k, v) => {
                wb.put(&k, &v);
                batch.push(BatchOp::Put(k, v));
            }
            KvOp::Delete(k) => {
                wb.delete(&k);
                batch.push(BatchOp::Delete(k));
            }
            KvOp::ApplyState(r, i) => {
                wb.put_apply_state(r, &apply_state(i, 0));
                batch.push(BatchOp::Apply(r, i));
            }
            KvOp::SetSavePoint => {
                wb.set_save_point();
                save_points.push(batch.len());
            }
            KvOp::Rollback => match save_points.pop() {
                Some(len) => {
                    wb.rollback_to_save_point().unwrap();
                    batch.truncate(len);
                }
                None => assert!(wb.rollback_to_save_point().is_err()),
            },
            KvOp::PopSavePoint => match save_points.pop() {
                Some(_) => wb.pop_save_point().unwrap(),
                None => assert!(wb.pop_save_point().is_err()),
            },
            KvOp::Write(sync) => {
                h.engine().write(&mut wb, sync).unwrap();
                live.apply(&batch);
                batch.clear();
                save_points.clear();
                if sync {
                    durable = live.clone();
                }
            }
            KvOp::Scan(start, end, limit) => {
                assert_eq!(
                    h.engine().scan(&start, &end, limit).unwrap(),
                    live.scan(&start, &end, limit)
                );
            }
            KvOp::SnapshotThenWrite(k, v) => {
                let snap = h.engine().snapshot();
                let mut other = h.engine().write_batch();
                other.put(&k, &v);
                other.delete(b"a");
                h.engine().write(&mut other, false).unwrap();
                assert_eq!(
                    snap.scan(b"", b"", usize::MAX).unwrap(),
                    live.scan(b"", b"", usize::MAX)
                );
                assert_eq!(snap.get(&k).unwrap(), live.data.get(&k).cloned());
                live.apply(&[BatchOp::Put(k, v), BatchOp::Delete(b"a".to_vec())]);
            }
            KvOp::Sync => {
                h.engine().sync().unwrap();
                durable = live.clone();
            }
            KvOp::Restart => {
                h.restart();
                if H::RESTART_LOSES_UNSYNCED {
                    live = durable.clone();
                }
            }
        }
        assert_eq!(wb.count(), batch.len());
        check_kv(h.engine(), &live);
    }
}

pub fn log_ops(max: usize) -> impl Strategy<Value = Vec<LogOp>> {
    prop::collection::vec(log_op(), 1..max)
}

pub fn kv_ops(max: usize) -> impl Strategy<Value = Vec<KvOp>> {
    prop::collection::vec(kv_op(), 1..max)
}
