//! raft-engine keeps a per-thread cache of the last entry block, keyed by
//! file position only; engines read on one thread must still each see their
//! own entries.

use engine::{RaftEngineLogEngine, RaftLogBatch, RaftLogEngine};
use raft::eraftpb::Entry;

fn filled(index: u64, byte: u8) -> Entry {
    Entry {
        index,
        term: 1,
        data: vec![byte; 64].into(),
        ..Default::default()
    }
}

#[test]
fn engines_read_on_one_thread_never_see_each_others_entries() {
    // A fresh thread, so the test does not depend on what ran before on it.
    std::thread::spawn(|| {
        let tmp = tempfile::tempdir().unwrap();
        let engines: Vec<(u8, RaftEngineLogEngine)> = [b'a', b'b', b'c']
            .into_iter()
            .map(|byte| {
                let e = RaftEngineLogEngine::open(
                    tmp.path().join([byte as char].iter().collect::<String>()),
                )
                .unwrap();
                // Identical layout in every engine: same file seq, offsets and lengths.
                let mut batch = e.log_batch(1);
                batch
                    .append(1, (1..=3).map(|i| filled(i, byte)).collect())
                    .unwrap();
                e.consume(&mut batch, true).unwrap();
                (byte, e)
            })
            .collect();
        for _ in 0..3 {
            for (byte, e) in &engines {
                assert_eq!(e.get_entry(1, 2).unwrap(), Some(filled(2, *byte)));
                let mut buf = Vec::new();
                e.fetch_entries_to(1, 1, 4, None, &mut buf).unwrap();
                assert_eq!(buf, (1..=3).map(|i| filled(i, *byte)).collect::<Vec<_>>());
            }
        }
        // Dropping an engine whose reads went through its reader thread
        // releases the directory at once.
        let (_, b) = engines.into_iter().nth(1).unwrap();
        let dir = b.path().to_path_buf();
        drop(b);
        let b = RaftEngineLogEngine::open_existing(&dir).unwrap();
        assert_eq!(b.get_entry(1, 3).unwrap(), Some(filled(3, b'b')));
    })
    .join()
    .unwrap();
}
