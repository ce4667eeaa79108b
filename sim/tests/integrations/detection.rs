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
