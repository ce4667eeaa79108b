//! Opening durable engines on bad directories gives clear errors, never a
//! panic.

use std::path::Path;

use engine::{
    Error, FjallKvEngine, KvEngine, KvWriteBatch, RaftEngineLogEngine, RaftLogBatch, RaftLogEngine,
};

use crate::raft_suite::entries;

fn assert_open_error(err: &Error, path: &Path) {
    match err {
        Error::Open { path: p, .. } => assert_eq!(p, path),
        other => panic!("expected Error::Open, got {other}"),
    }
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn open_existing_reports_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = RaftEngineLogEngine::open_existing(&missing).unwrap_err();
    assert!(
        matches!(err, Error::DirectoryNotFound { ref path, .. } if *path == missing),
        "{err}"
    );
    let err = FjallKvEngine::open_existing(&missing).unwrap_err();
    assert!(
        matches!(err, Error::DirectoryNotFound { ref path, .. } if *path == missing),
        "{err}"
    );
    assert!(!missing.exists(), "open_existing creates nothing");
}

#[test]
fn open_creates_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    RaftEngineLogEngine::open(tmp.path().join("a/raft")).unwrap();
    FjallKvEngine::open(tmp.path().join("a/kv")).unwrap();
}

#[test]
fn a_file_in_place_of_the_directory_is_an_open_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"not a dir").unwrap();
    assert_open_error(&RaftEngineLogEngine::open(&file).unwrap_err(), &file);
    assert_open_error(&FjallKvEngine::open(&file).unwrap_err(), &file);
}

#[test]
fn a_second_open_of_the_same_directory_is_an_open_error() {
    let tmp = tempfile::tempdir().unwrap();
    let raft = RaftEngineLogEngine::open(tmp.path().join("raft")).unwrap();
    assert_open_error(
        &RaftEngineLogEngine::open(raft.path()).unwrap_err(),
        raft.path(),
    );
    let kv = FjallKvEngine::open(tmp.path().join("kv")).unwrap();
    assert_open_error(&FjallKvEngine::open(kv.path()).unwrap_err(), kv.path());
}

/// Overwrites 64 bytes in the middle of every regular file under `dir`
/// with garbage, keeping the tail intact (a torn tail is tolerated).
fn corrupt_files(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            n += corrupt_files(&path);
        } else {
            let mut bytes = std::fs::read(&path).unwrap();
            if bytes.len() > 16 && !path.ends_with("LOCK") && !path.ends_with("lock") {
                let mid = bytes.len() / 3;
                let end = (mid + 64).min(bytes.len() - 8);
                for b in &mut bytes[mid..end] {
                    *b ^= 0x5a;
                }
                std::fs::write(&path, bytes).unwrap();
                n += 1;
            }
        }
    }
    n
}

#[test]
fn corrupted_raft_engine_files_are_an_open_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    {
        let e = RaftEngineLogEngine::open(&dir).unwrap();
        for round in 0..20u64 {
            let mut b = e.log_batch(10);
            for region in 1..=10 {
                b.append(region, entries(round * 5 + 1..=round * 5 + 5, 1))
                    .unwrap();
            }
            e.consume(&mut b, true).unwrap();
        }
    }
    assert!(corrupt_files(&dir) > 0);
    // raft-engine checks batch headers and indexes when it opens, and entry
    // checksums when it reads them: either step may report the damage.
    match RaftEngineLogEngine::open(&dir) {
        Err(err) => assert_open_error(&err, &dir),
        Ok(e) => {
            let mut read_errors = 0;
            for region in 1..=10 {
                if let (Some(first), Some(last)) = (e.first_index(region), e.last_index(region)) {
                    let mut buf = Vec::new();
                    match e.fetch_entries_to(region, first, last + 1, None, &mut buf) {
                        Ok(_) => assert_eq!(buf, entries(first..=last, 1)),
                        Err(err) => {
                            assert!(err.to_string().contains("Checksum"), "{err}");
                            read_errors += 1;
                        }
                    }
                }
            }
            assert!(read_errors > 0, "the damage went unnoticed");
        }
    }
}

/// A garbage *last* file alone looks like a torn first write and is
/// dropped by raft-engine's tail-corruption tolerance; earlier files are not.
#[test]
fn garbage_raft_engine_log_files_before_the_tail_are_an_open_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    std::fs::create_dir(&dir).unwrap();
    for seq in 1..=2 {
        std::fs::write(dir.join(format!("{seq:016}.raftlog")), vec![0xab; 4096]).unwrap();
    }
    assert_open_error(&RaftEngineLogEngine::open(&dir).unwrap_err(), &dir);
}

#[test]
fn corrupted_fjall_files_are_an_open_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kv");
    {
        let e = FjallKvEngine::open(&dir).unwrap();
        for round in 0..20u32 {
            let mut wb = e.write_batch();
            for i in 0..50u32 {
                wb.put(format!("{round}-{i}").as_bytes(), &[7; 64]);
            }
            e.write(&mut wb, true).unwrap();
        }
    }
    assert!(corrupt_files(&dir) > 0);
    match FjallKvEngine::open(&dir) {
        Err(err) => assert_open_error(&err, &dir),
        Ok(e) => {
            // Whatever survived reads back without panicking.
            for (_, v) in e.scan(b"", b"", usize::MAX).unwrap() {
                assert_eq!(v, vec![7; 64]);
            }
        }
    }
}
