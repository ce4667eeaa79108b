//! raft-engine specifics: purging old log files after compaction reports
//! lagging regions, reclaims files and keeps every live entry, also across a
//! reopen.

use engine::raft_engine::ReadableSize;
use engine::{RaftEngineLogEngine, RaftLogBatch, RaftLogEngine};

use crate::raft_suite::entries;

const REGIONS: u64 = 10;
const ROUNDS: u64 = 400;
const KEEP: u64 = 10;

fn log_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "raftlog")
        })
        .count()
}

fn check(e: &RaftEngineLogEngine, region: u64, first: u64) {
    assert_eq!(e.first_index(region), Some(first));
    let mut buf = Vec::new();
    e.fetch_entries_to(region, first, ROUNDS + 1, None, &mut buf)
        .unwrap();
    assert_eq!(buf, entries(first..=ROUNDS, 1));
}

#[test]
fn purge_reports_lagging_regions_then_reclaims_files_keeping_live_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = RaftEngineLogEngine::default_config(tmp.path()).unwrap();
    cfg.target_file_size = ReadableSize::kb(8);
    cfg.purge_threshold = ReadableSize::kb(32);
    let e = RaftEngineLogEngine::open_with_config(cfg.clone()).unwrap();
    for round in 1..=ROUNDS {
        let mut b = e.log_batch(REGIONS as usize);
        for region in 1..=REGIONS {
            b.append(region, entries(round..=round, 1)).unwrap();
        }
        e.consume(&mut b, round % 10 == 0).unwrap();
    }
    let first_kept = ROUNDS - KEEP + 1;
    for region in 2..=REGIONS {
        assert_eq!(e.compact_to(region, first_kept).unwrap(), ROUNDS - KEEP);
    }
    // Region 1 still holds its whole log in the oldest files.
    assert_eq!(e.purge_expired_files().unwrap(), vec![1]);
    check(&e, 1, 1);

    let before = log_files(tmp.path());
    e.compact_to(1, first_kept).unwrap();
    assert!(e.purge_expired_files().unwrap().is_empty());
    let after = log_files(tmp.path());
    assert!(
        after < before,
        "purge reclaimed nothing: {before} -> {after} files"
    );
    for region in 1..=REGIONS {
        check(&e, region, first_kept);
    }
    drop(e);
    let e = RaftEngineLogEngine::open_with_config(cfg).unwrap();
    for region in 1..=REGIONS {
        check(&e, region, first_kept);
    }
}
