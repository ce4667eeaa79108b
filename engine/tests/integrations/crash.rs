//! Crash checks: every write acknowledged as synced survives, and every
//! batch is all-or-nothing.
//!
//! The workload (`raft_round`, `kv_round`) and the check (`verify_*`) are
//! shared. Memory engines run it in-process and call `crash()`; the check is
//! then exact (unsynced writes must be gone). Durable engines run it in a
//! child process (this test binary, re-run on an `#[ignore]`d entry test)
//! that is killed with SIGKILL in the middle of its write loop, so nothing is
//! closed or flushed; the parent reopens the directory and checks.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use engine::{
    FjallKvEngine, KvEngine, KvWriteBatch, MemKvEngine, MemRaftLogEngine, RaftEngineLogEngine,
    RaftLogBatch, RaftLogEngine,
};

use crate::kv_suite::apply_state;
use crate::raft_suite::{entry, raft_state};

/// Regions written in every round.
const REGIONS: u64 = 8;
/// Rounds with an even number are synced.
fn is_synced(round: u64) -> bool {
    round % 2 == 0
}

/// Round `i` (from 1): entry `i` and raft state `last_index = i` for every
/// region, in one batch.
pub fn raft_round<E: RaftLogEngine>(e: &E, i: u64) {
    let mut b = e.log_batch(2 * REGIONS as usize);
    for region in 1..=REGIONS {
        b.append(region, vec![entry(i, 1)]).unwrap();
        b.put_raft_state(region, &raft_state(i, 1, i.saturating_sub(1)))
            .unwrap();
    }
    e.consume(&mut b, is_synced(i)).unwrap();
}

/// Checks the log after a crash: at least `acked` rounds (exactly, if
/// `exact`), and every region at the same round with a matching state.
pub fn verify_raft<E: RaftLogEngine>(e: &E, acked: u64, exact: bool) {
    let last = e.last_index(1).unwrap_or(0);
    assert!(
        last >= acked,
        "synced round {acked} lost: last index {last}"
    );
    if exact {
        assert_eq!(last, acked, "unsynced rounds must be lost");
    }
    assert_eq!(e.region_ids().unwrap(), (1..=REGIONS).collect::<Vec<_>>());
    for region in 1..=REGIONS {
        assert_eq!(e.first_index(region), Some(1));
        assert_eq!(e.last_index(region), Some(last), "batch {last} is torn");
        let state = e.get_raft_state(region).unwrap().unwrap();
        assert_eq!(state.get_last_index(), last, "state and entries disagree");
        let mut buf = Vec::new();
        e.fetch_entries_to(region, 1, last + 1, None, &mut buf)
            .unwrap();
        assert_eq!(buf, (1..=last).map(|i| entry(i, 1)).collect::<Vec<_>>());
    }
}

fn kv_key(region: u64, i: u64) -> Vec<u8> {
    format!("r{region:03}-{i:08}").into_bytes()
}

/// Round `i` (from 1): one key per region plus its apply state `applied = i`.
pub fn kv_round<E: KvEngine>(e: &E, i: u64) {
    let mut wb = e.write_batch();
    for region in 1..=REGIONS {
        wb.put(&kv_key(region, i), &i.to_be_bytes());
        wb.put_apply_state(region, &apply_state(i, 0));
    }
    e.write(&mut wb, is_synced(i)).unwrap();
}

/// Checks data and apply states after a crash: data and applied index agree
/// for every region, at least `acked` rounds (exactly, if `exact`).
pub fn verify_kv<E: KvEngine>(e: &E, acked: u64, exact: bool) {
    let applied = e
        .get_apply_state(1)
        .unwrap()
        .map_or(0, |s| s.get_applied_index());
    assert!(
        applied >= acked,
        "synced round {acked} lost: applied {applied}"
    );
    if exact {
        assert_eq!(applied, acked, "unsynced rounds must be lost");
    }
    for region in 1..=REGIONS {
        let state = e.get_apply_state(region).unwrap();
        assert_eq!(
            state.map_or(0, |s| s.get_applied_index()),
            applied,
            "batch {applied} is torn"
        );
        let start = kv_key(region, 0);
        let end = kv_key(region + 1, 0);
        let data = e.scan(&start, &end, usize::MAX).unwrap();
        let expected: Vec<_> = (1..=applied)
            .map(|i| (kv_key(region, i), i.to_be_bytes().to_vec()))
            .collect();
        assert_eq!(
            data, expected,
            "data and apply state disagree in region {region}"
        );
    }
}

#[test]
fn mem_raft_crash_loses_exactly_the_unsynced_rounds() {
    let e = MemRaftLogEngine::new();
    for i in 1..=9 {
        raft_round(&e, i);
    }
    e.compact_to(1, 3).unwrap(); // unsynced: undone by the crash
    e.crash();
    verify_raft(&e, 8, true);
    // Writing after a crash works and a later sync makes earlier writes durable.
    raft_round(&e, 9);
    e.sync().unwrap();
    e.crash();
    verify_raft(&e, 9, true);
}

#[test]
fn mem_kv_crash_loses_exactly_the_unsynced_rounds() {
    let e = MemKvEngine::new();
    for i in 1..=9 {
        kv_round(&e, i);
    }
    let snap = e.snapshot();
    e.crash();
    verify_kv(&e, 8, true);
    assert_eq!(
        engine::KvSnapshot::scan(&snap, b"", b"", usize::MAX)
            .unwrap()
            .len(),
        9 * REGIONS as usize,
        "a crash does not change existing snapshots"
    );
    kv_round(&e, 9);
    e.sync().unwrap();
    e.crash();
    verify_kv(&e, 9, true);
}

const CHILD_ENV: &str = "ENGINE_CRASH_CHILD";
const ACKS_BEFORE_KILL: u64 = 40;

/// Runs the write loop of `kind` in a child process on `dir`, kills it with
/// SIGKILL once `ACKS_BEFORE_KILL` synced rounds were acknowledged, and
/// returns the last acknowledged round.
fn run_child_and_kill(kind: &str, dir: &std::path::Path) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash::crash_child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{kind}:{}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            acked = n.trim().parse().unwrap();
            if acked >= ACKS_BEFORE_KILL {
                break;
            }
        }
        assert!(Instant::now() < deadline, "child made no progress");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        acked >= ACKS_BEFORE_KILL,
        "child ended early after {acked} acks"
    );
    acked
}

/// The child side of the durable crash tests; run only by them.
#[test]
#[ignore = "run in a child process by the durable crash tests"]
fn crash_child_entry() {
    let spec = std::env::var(CHILD_ENV).expect("only run by the crash tests");
    let (kind, dir) = spec.split_once(':').unwrap();
    let ack = |i: u64| {
        if is_synced(i) {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "ack {i}").unwrap();
            out.flush().unwrap();
        }
    };
    // Bounded so an orphaned child ends by itself.
    match kind {
        "raft" => {
            let e = RaftEngineLogEngine::open(dir).unwrap();
            for i in 1..=100_000 {
                raft_round(&e, i);
                ack(i);
            }
        }
        "kv" => {
            let e = FjallKvEngine::open(dir).unwrap();
            for i in 1..=100_000 {
                kv_round(&e, i);
                ack(i);
            }
        }
        other => panic!("unknown child kind {other}"),
    }
}

#[test]
fn raft_engine_killed_mid_write_keeps_every_synced_round() {
    let dir = tempfile::tempdir().unwrap();
    let acked = run_child_and_kill("raft", dir.path());
    let e = RaftEngineLogEngine::open_existing(dir.path()).unwrap();
    verify_raft(&e, acked, false);
    // The recovered engine accepts the next round.
    let next = e.last_index(1).unwrap() + 1;
    raft_round(&e, next);
    verify_raft(&e, next, false);
}

#[test]
fn fjall_killed_mid_write_keeps_every_synced_round() {
    let dir = tempfile::tempdir().unwrap();
    let acked = run_child_and_kill("kv", dir.path());
    let e = FjallKvEngine::open_existing(dir.path()).unwrap();
    verify_kv(&e, acked, false);
    let next = e.get_apply_state(1).unwrap().unwrap().get_applied_index() + 1;
    kv_round(&e, next);
    verify_kv(&e, next, false);
}
