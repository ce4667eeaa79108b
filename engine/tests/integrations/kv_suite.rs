//! Conformance checks for every `KvEngine`, written once and instantiated
//! per implementation by `kv_conformance!` in `main.rs`.

use engine::kvproto_lite::metapb::Region;
use engine::kvproto_lite::raft_serverpb::{PeerState, RaftApplyState, RegionLocalState};
use engine::{Error, KvEngine, KvSnapshot, KvWriteBatch};

use crate::harness::Harness;

pub fn apply_state(applied: u64, truncated: u64) -> RaftApplyState {
    let mut s = RaftApplyState::default();
    s.set_applied_index(applied);
    s.mut_truncated_state().set_index(truncated);
    s.mut_truncated_state().set_term(1);
    s
}

pub fn region_state(id: u64, start: &[u8], end: &[u8]) -> RegionLocalState {
    let mut region = Region::default();
    region.set_id(id);
    region.set_start_key(start.to_vec());
    region.set_end_key(end.to_vec());
    let mut s = RegionLocalState::default();
    s.set_state(PeerState::Normal);
    s.set_region(region);
    s
}

fn kv(k: &[u8], v: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (k.to_vec(), v.to_vec())
}

fn all<E: KvEngine>(e: &E) -> Vec<(Vec<u8>, Vec<u8>)> {
    e.scan(b"", b"", usize::MAX).unwrap()
}

pub fn put_get_delete_and_scan<H: Harness>()
where
    H::Engine: KvEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let mut wb = e.write_batch();
    for k in [&b"b"[..], b"a", b"c", b"", b"\x00", b"\xff\xff"] {
        wb.put(k, &[k, b"-v"].concat());
    }
    wb.put(b"d", b"");
    e.write(&mut wb, true).unwrap();
    assert!(wb.is_empty(), "write leaves the batch empty");
    assert_eq!(e.get(b"a").unwrap(), Some(b"a-v".to_vec()));
    assert_eq!(
        e.get(b"").unwrap(),
        Some(b"-v".to_vec()),
        "the empty key is a key"
    );
    assert_eq!(
        e.get(b"d").unwrap(),
        Some(Vec::new()),
        "an empty value is not absent"
    );
    assert_eq!(e.get(b"zz").unwrap(), None);

    assert_eq!(
        e.scan(b"a", b"c", 10).unwrap(),
        vec![kv(b"a", b"a-v"), kv(b"b", b"b-v")],
        "end is exclusive"
    );
    assert_eq!(
        e.scan(b"b", b"", 10).unwrap().len(),
        4,
        "empty end is unbounded"
    );
    assert_eq!(e.scan(b"", b"", 3).unwrap().len(), 3, "limit");
    assert_eq!(e.scan(b"", b"", 0).unwrap(), Vec::new());
    assert_eq!(
        e.scan(b"c", b"a", 10).unwrap(),
        Vec::new(),
        "inverted range is empty"
    );
    assert_eq!(all(e).first(), Some(&kv(b"", b"-v")));
    assert_eq!(all(e).last(), Some(&kv(b"\xff\xff", b"\xff\xff-v")));

    wb.delete(b"b");
    wb.delete(b"never-there");
    e.write(&mut wb, false).unwrap();
    assert_eq!(e.get(b"b").unwrap(), None);
    assert_eq!(all(e).len(), 6);
}

pub fn batch_applies_in_order_and_all_at_once<H: Harness>()
where
    H::Engine: KvEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let mut wb = e.write_batch();
    wb.put(b"k", b"1");
    wb.put(b"k", b"2");
    wb.put(b"gone", b"x");
    wb.delete(b"gone");
    wb.put(b"other", b"o");
    assert_eq!(wb.count(), 5);
    assert_eq!(
        wb.data_size(),
        [2 + 1, 2 + 1, 5 + 1, 5, 6 + 1].iter().sum::<usize>()
    );
    assert_eq!(
        e.get(b"k").unwrap(),
        None,
        "nothing is visible before write"
    );
    e.write(&mut wb, true).unwrap();
    assert_eq!(wb.count(), 0);
    assert_eq!(wb.data_size(), 0);
    assert_eq!(e.get(b"k").unwrap(), Some(b"2".to_vec()), "later put wins");
    assert_eq!(e.get(b"gone").unwrap(), None, "delete after put wins");
    assert_eq!(all(e), vec![kv(b"k", b"2"), kv(b"other", b"o")]);
    // An empty batch is a no-op.
    e.write(&mut wb, true).unwrap();
    e.write(&mut wb, false).unwrap();
    assert_eq!(all(e).len(), 2);
}

pub fn region_and_apply_states_pair_every_region_state_with_its_apply_state<H: Harness>()
where
    H::Engine: KvEngine,
{
    let h = H::fresh();
    let e = h.engine();
    assert!(e.region_and_apply_states().unwrap().is_empty());
    let mut wb = e.write_batch();
    // Apply states before, between and after the region states, one
    // region without an apply state, one apply state without a region
    // state, and data keys that look like local keys.
    wb.put_apply_state(1, &apply_state(3, 0));
    wb.put_region_state(2, &region_state(2, b"", b"m"));
    wb.put_apply_state(2, &apply_state(5, 2));
    wb.put_region_state(7, &region_state(7, b"m", b"t"));
    wb.put_region_state(300, &region_state(300, b"t", b""));
    wb.put_apply_state(300, &apply_state(9, 4));
    wb.put_apply_state(u64::MAX, &apply_state(1, 1));
    wb.put(&[0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 7], b"user");
    wb.put(&[0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 8], b"user");
    e.write(&mut wb, true).unwrap();
    let expected = vec![
        (region_state(2, b"", b"m"), Some(apply_state(5, 2))),
        (region_state(7, b"m", b"t"), None),
        (region_state(300, b"t", b""), Some(apply_state(9, 4))),
    ];
    assert_eq!(e.region_and_apply_states().unwrap(), expected);
    // The same as one point read per region.
    let looked_up: Vec<_> = e
        .region_states()
        .unwrap()
        .into_iter()
        .map(|s| {
            let a = e.get_apply_state(s.get_region().get_id()).unwrap();
            (s, a)
        })
        .collect();
    assert_eq!(looked_up, expected);
}

pub fn states_live_beside_data_but_never_in_scans<H: Harness>()
where
    H::Engine: KvEngine,
{
    let h = H::fresh();
    let e = h.engine();
    assert_eq!(e.get_apply_state(1).unwrap(), None);
    assert_eq!(e.get_region_state(1).unwrap(), None);
    assert!(e.region_states().unwrap().is_empty());

    let mut wb = e.write_batch();
    wb.put(b"a", b"1");
    wb.put_apply_state(1, &apply_state(5, 0));
    wb.put_region_state(1, &region_state(1, b"", b"m"));
    wb.put_region_state(u64::MAX, &region_state(u64::MAX, b"m", b""));
    wb.put_region_state(300, &region_state(300, b"x", b"y"));
    wb.put_apply_state(300, &apply_state(7, 3));
    e.write(&mut wb, true).unwrap();

    assert_eq!(e.get_apply_state(1).unwrap(), Some(apply_state(5, 0)));
    assert_eq!(e.get_apply_state(300).unwrap(), Some(apply_state(7, 3)));
    assert_eq!(
        e.get_region_state(1).unwrap(),
        Some(region_state(1, b"", b"m"))
    );
    assert_eq!(
        e.region_states().unwrap(),
        vec![
            region_state(1, b"", b"m"),
            region_state(300, b"x", b"y"),
            region_state(u64::MAX, b"m", b"")
        ],
        "ordered by region id"
    );
    assert_eq!(
        all(e),
        vec![kv(b"a", b"1")],
        "metadata never shows up in data scans"
    );
    // Data keys that look like metadata keys stay data.
    wb.put(&[0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 1], b"user");
    e.write(&mut wb, true).unwrap();
    assert_eq!(e.get_apply_state(1).unwrap(), Some(apply_state(5, 0)));
    assert_eq!(all(e).len(), 2);

    // Data and apply state move together.
    wb.put(b"a", b"2");
    wb.put_apply_state(1, &apply_state(6, 0));
    assert_eq!(e.get_apply_state(1).unwrap(), Some(apply_state(5, 0)));
    e.write(&mut wb, true).unwrap();
    assert_eq!(e.get(b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(e.get_apply_state(1).unwrap(), Some(apply_state(6, 0)));
}

pub fn save_points_roll_back_one_command<H: Harness>()
where
    H::Engine: KvEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let mut wb = e.write_batch();
    assert!(matches!(
        wb.rollback_to_save_point(),
        Err(Error::NoSavePoint)
    ));
    assert!(matches!(wb.pop_save_point(), Err(Error::NoSavePoint)));

    wb.put(b"cmd1", b"ok");
    wb.set_save_point();
    wb.put(b"cmd2", b"failed");
    wb.put_apply_state(1, &apply_state(2, 0));
    wb.rollback_to_save_point().unwrap();
    wb.set_save_point();
    wb.put(b"cmd3", b"ok");
    wb.set_save_point();
    wb.delete(b"cmd1");
    wb.rollback_to_save_point().unwrap();
    wb.pop_save_point().unwrap();
    assert!(
        wb.rollback_to_save_point().is_err(),
        "every save point is used up"
    );
    assert_eq!(wb.count(), 2);
    e.write(&mut wb, true).unwrap();
    assert_eq!(all(e), vec![kv(b"cmd1", b"ok"), kv(b"cmd3", b"ok")]);
    assert_eq!(e.get_apply_state(1).unwrap(), None);

    wb.set_save_point();
    wb.put(b"x", b"1");
    wb.clear();
    assert!(wb.is_empty());
    assert!(wb.pop_save_point().is_err(), "clear drops save points");
}

pub fn snapshots_do_not_see_later_writes<H: Harness>()
where
    H::Engine: KvEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let mut wb = e.write_batch();
    wb.put(b"a", b"1");
    wb.put(b"b", b"1");
    e.write(&mut wb, true).unwrap();
    let snap = e.snapshot();
    wb.put(b"a", b"2");
    wb.delete(b"b");
    wb.put(b"c", b"2");
    e.write(&mut wb, false).unwrap();

    assert_eq!(snap.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(snap.get(b"b").unwrap(), Some(b"1".to_vec()));
    assert_eq!(snap.get(b"c").unwrap(), None);
    assert_eq!(
        snap.scan(b"", b"", 10).unwrap(),
        vec![kv(b"a", b"1"), kv(b"b", b"1")]
    );
    assert_eq!(snap.scan(b"b", b"", 10).unwrap(), vec![kv(b"b", b"1")]);
    assert_eq!(snap.scan(b"a", b"b", 0).unwrap(), Vec::new());
    assert_eq!(all(e), vec![kv(b"a", b"2"), kv(b"c", b"2")]);

    // Snapshots can move to other threads.
    let handle = std::thread::spawn(move || snap.get(b"a").unwrap());
    assert_eq!(handle.join().unwrap(), Some(b"1".to_vec()));
}

pub fn clones_share_one_store<H: Harness>()
where
    H::Engine: KvEngine,
{
    let h = H::fresh();
    let e = h.engine().clone();
    let writer = e.clone();
    let t = std::thread::spawn(move || {
        let mut wb = writer.write_batch();
        for i in 0..100u32 {
            wb.put(&i.to_be_bytes(), b"v");
        }
        writer.write(&mut wb, true).unwrap();
    });
    t.join().unwrap();
    assert_eq!(e.scan(b"", b"", usize::MAX).unwrap().len(), 100);
}

pub fn restart_keeps_synced_writes<H: Harness>()
where
    H::Engine: KvEngine,
{
    let mut h = H::fresh();
    let mut wb = h.engine().write_batch();
    for i in 0..500u32 {
        wb.put(format!("key-{i:04}").as_bytes(), &[b'v'; 100]);
    }
    wb.put_apply_state(1, &apply_state(500, 0));
    wb.put_region_state(1, &region_state(1, b"", b""));
    h.engine().write(&mut wb, true).unwrap();
    wb.delete(b"key-0000");
    h.engine().write(&mut wb, false).unwrap();
    h.engine().sync().unwrap();
    drop(wb);
    h.restart();
    let e = h.engine();
    assert_eq!(all(e).len(), 499);
    assert_eq!(e.get(b"key-0001").unwrap(), Some(vec![b'v'; 100]));
    assert_eq!(e.get_apply_state(1).unwrap(), Some(apply_state(500, 0)));
    assert_eq!(e.region_states().unwrap(), vec![region_state(1, b"", b"")]);
    let mut wb = e.write_batch();
    wb.put(b"after", b"restart");
    e.write(&mut wb, true).unwrap();
    assert_eq!(e.get(b"after").unwrap(), Some(b"restart".to_vec()));
}

fn raw_pairs<S: KvSnapshot>(s: &S, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    s.scan_raw(start, end, &mut |k, v| {
        out.push(kv(k, v));
        Ok(true)
    })
    .unwrap();
    out
}

pub fn snapshot_raw_scan_sees_a_regions_keys_as_of_the_snapshot<H: Harness>()
where
    H::Engine: KvEngine,
{
    let h = H::fresh();
    let e = h.engine();
    let mut wb = e.write_batch();
    for k in [&b"a"[..], b"b", b"c", b"m"] {
        wb.put(k, k);
    }
    wb.put_apply_state(3, &apply_state(9, 6));
    wb.put_region_state(3, &region_state(3, b"b", b"m"));
    let mut extra = vec![0x01, engine::keys::REGION_EXTRA_KIND_MIN];
    extra.extend_from_slice(&3u64.to_be_bytes());
    extra.extend_from_slice(b"session-1");
    wb.put_raw(&extra, b"s1");
    e.write(&mut wb, true).unwrap();

    let snap = e.snapshot();
    // Later writes (raw and user-keyed) are invisible through the snapshot.
    wb.put(b"bb", b"late");
    wb.delete_raw(&extra);
    wb.put_apply_state(3, &apply_state(12, 6));
    e.write(&mut wb, true).unwrap();

    let (start, end) = engine::keys::region_data_range(b"b", b"m");
    assert_eq!(
        raw_pairs(&snap, &start, &end),
        vec![kv(b"zb", b"b"), kv(b"zc", b"c")]
    );
    let mut extras = Vec::new();
    for (s, en) in engine::keys::region_extra_ranges(3) {
        extras.extend(raw_pairs(&snap, &s, &en));
    }
    assert_eq!(extras, vec![(extra.clone(), b"s1".to_vec())]);
    assert_eq!(snap.get_apply_state(3).unwrap(), Some(apply_state(9, 6)));
    assert_eq!(
        snap.get_region_state(3).unwrap(),
        Some(region_state(3, b"b", b"m"))
    );
    assert_eq!(snap.get_raw(b"zb").unwrap(), Some(b"b".to_vec()));
    assert_eq!(snap.get_apply_state(4).unwrap(), None);
    // The live engine has the later state.
    assert_eq!(e.get_apply_state(3).unwrap(), Some(apply_state(12, 6)));
    assert_eq!(e.get(b"bb").unwrap(), Some(b"late".to_vec()));
    let now = e.snapshot();
    assert!(raw_pairs(&now, &extra, &[extra.clone(), vec![0]].concat()).is_empty());

    // The callback can stop the scan early; an empty range yields nothing.
    let mut seen = 0;
    snap.scan_raw(&start, &end, &mut |_, _| {
        seen += 1;
        Ok(false)
    })
    .unwrap();
    assert_eq!(seen, 1);
    assert!(raw_pairs(&snap, &end, &start).is_empty());
    // An error of the callback ends the scan and is returned.
    let res = snap.scan_raw(&start, &end, &mut |_, _| {
        Err(Error::Corruption("stop".into()))
    });
    assert!(matches!(res, Err(Error::Corruption(_))));
}

pub fn a_range_delete_removes_stored_keys_and_earlier_puts_of_the_batch<H: Harness>()
where
    H::Engine: KvEngine,
{
    let mut h = H::fresh();
    {
        let e = h.engine();
        let mut wb = e.write_batch();
        for k in [&b"a"[..], b"b", b"c", b"d"] {
            wb.put(k, b"old");
        }
        e.write(&mut wb, true).unwrap();
        // In one batch: a put inside the range before the range delete, a
        // put inside it after, and one outside.
        wb.put(b"bb", b"earlier");
        wb.put(b"d", b"kept");
        let (start, end) = engine::keys::region_data_range(b"b", b"d");
        wb.delete_range_raw(&start, &end);
        wb.put(b"c", b"later");
        e.write(&mut wb, true).unwrap();
    }
    h.restart();
    let e = h.engine();
    let all: Vec<(Vec<u8>, Vec<u8>)> = e.scan(b"", b"", usize::MAX).unwrap();
    assert_eq!(
        all,
        vec![
            (b"a".to_vec(), b"old".to_vec()),
            (b"c".to_vec(), b"later".to_vec()),
            (b"d".to_vec(), b"kept".to_vec()),
        ]
    );
    // An empty or inverted range deletes nothing.
    let mut wb = e.write_batch();
    wb.delete_range_raw(b"zz", b"za");
    e.write(&mut wb, true).unwrap();
    assert_eq!(e.scan(b"", b"", usize::MAX).unwrap().len(), 3);
}

pub fn raw_puts_and_deletes_are_stored_as_given<H: Harness>()
where
    H::Engine: KvEngine,
{
    let mut h = H::fresh();
    {
        let e = h.engine();
        let mut wb = e.write_batch();
        wb.put_raw(b"zraw", b"1");
        wb.put_raw(b"zgone", b"2");
        e.write(&mut wb, true).unwrap();
        wb.delete_raw(b"zgone");
        e.write(&mut wb, true).unwrap();
        assert_eq!(
            e.get(b"raw").unwrap(),
            Some(b"1".to_vec()),
            "a raw data key is a user key"
        );
        assert_eq!(e.get(b"gone").unwrap(), None);
    }
    h.restart();
    assert_eq!(h.engine().get(b"raw").unwrap(), Some(b"1".to_vec()));
    assert_eq!(h.engine().get(b"gone").unwrap(), None);
}
