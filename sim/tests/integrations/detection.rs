//! The checks catch real bugs: with a known-unsafe setting the simulation
//! must fail (so a passing run means something).

use sim::{run_seed, Failure, Profile, SimConfig};

fn without_fsync(seed: u64) -> Option<Failure> {
    let mut cfg = SimConfig::from_seed(seed, Profile::Quick);
    cfg.store.sync_log = false;
    run_seed(cfg, false).failure
}

/// Without the raft log fsync, a crash loses entries the store already
/// acknowledged: acknowledged writes vanish, replicas diverge, raft panics
/// on a log shorter than its commit index. Most seeds catch it, and some
/// show it as a linearizability violation (a lost or stale write seen by a
/// client), which is what the checker is for.
#[test]
fn acknowledging_without_fsync_is_caught() {
    let failed = (0..15)
        .filter(|&seed| without_fsync(seed).is_some())
        .count();
    assert!(
        failed >= 3,
        "only {failed} of 15 seeds caught the missing fsync"
    );
    let violation = (0..300).find_map(|seed| match without_fsync(seed) {
        Some(Failure::NotLinearizable(v)) => Some((seed, v)),
        _ => None,
    });
    let (seed, v) =
        violation.expect("no seed showed the lost writes as a linearizability violation");
    assert!(!v.ops.is_empty(), "seed {seed}: {v}");
}

/// A seed whose history shows a retried write applied twice when writes
/// carry no session (found by `sim --unsafe-no-sessions`).
const DUPLICATE_SEED: u64 = 923;

fn run(cfg: SimConfig) -> Option<Failure> {
    run_seed(cfg, false).failure
}

/// The shipped client retries a write after a timeout or an unknown
/// outcome. Without sessions the store may apply both attempts; the
/// checker sees a write take effect again after later writes and reads.
/// With sessions (the default) the same seed passes.
#[test]
fn retried_writes_without_sessions_apply_twice_and_are_caught() {
    // The seed was found with one poller per store writing its raft log
    // inline; it draws two pollers and store I/O writers since those
    // modes exist, which changes its run.
    let one_poller = || {
        let mut cfg = SimConfig::from_seed(DUPLICATE_SEED, Profile::Full);
        cfg.two_pollers = false;
        cfg.store.store_io_pool_size = 0;
        cfg
    };
    let mut cfg = one_poller();
    cfg.sessions = false;
    match run(cfg) {
        Some(Failure::NotLinearizable(v)) => assert!(!v.ops.is_empty(), "{v}"),
        other => panic!("seed {DUPLICATE_SEED} without sessions: {other:?}"),
    }
    let safe = one_poller();
    assert!(safe.sessions);
    assert_eq!(run(safe), None);
}

/// A seed whose history shows a stale lease read when store 1's clock runs
/// far beyond the lease's drift bound (found by `sim --unsafe-lease-skew`).
const STALE_LEASE_SEED: u64 = 38;

/// A leader whose clock runs slow keeps believing its lease after the
/// others elected a new leader that took writes: its lease reads are stale
/// and the checker says so. The same seed, skew and faults with ReadIndex
/// reads instead (no clock involved) pass.
#[test]
fn a_lease_beyond_the_clock_drift_bound_serves_stale_reads_and_is_caught() {
    let mut cfg = SimConfig::from_seed(STALE_LEASE_SEED, Profile::Full);
    sim::skew_clocks_beyond_the_lease_bound(&mut cfg);
    match run(cfg.clone()) {
        Some(Failure::NotLinearizable(v)) => assert!(!v.ops.is_empty(), "{v}"),
        other => panic!("seed {STALE_LEASE_SEED} with skewed leases: {other:?}"),
    }
    cfg.read_modes = vec![kvproto_lite::raft_cmdpb::ReadMode::ReadIndex];
    assert_eq!(run(cfg), None);
}

/// A seed whose history shows a stale ReadIndex read when every leader
/// check answer is forged into a yes (found by `sim
/// --unsafe-leader-check-yes`).
const FORGED_CHECK_SEED: u64 = 184;

/// A leader cut off from raft messages keeps leading until its
/// check-quorum while the others elect a new leader that takes writes;
/// its leader checks still reach them. With the answers forged into yes
/// it serves ReadIndex reads that miss those writes, and the checker says
/// so. The same seed with honest answers passes: the others answer no (or
/// not at all), and the old leader serves nothing stale.
#[test]
fn a_leader_check_answered_yes_regardless_of_term_serves_stale_reads_and_is_caught() {
    let mut cfg = SimConfig::from_seed(FORGED_CHECK_SEED, Profile::Full);
    sim::forge_leader_check_answers(&mut cfg);
    match run(cfg.clone()) {
        Some(Failure::NotLinearizable(v)) => assert!(!v.ops.is_empty(), "{v}"),
        other => panic!("seed {FORGED_CHECK_SEED} with forged answers: {other:?}"),
    }
    cfg.messages.forge_leader_check_yes = false;
    assert_eq!(run(cfg), None);
}
