//! The checks catch real bugs: with a known-unsafe setting the simulation
//! must fail (so a passing run means something).

use sim::{run_seed, Failure, Profile, SimConfig};

/// Without the raft log fsync, a crash loses entries the store already
/// acknowledged: acknowledged writes vanish and replicas diverge. Seed 76
/// shows it as a linearizability violation; across a few seeds the other
/// checks fire too.
#[test]
fn acknowledging_without_fsync_is_caught() {
    let mut cfg = SimConfig::from_seed(76, Profile::Quick);
    cfg.store.sync_log = false;
    let report = run_seed(cfg, false);
    assert!(
        matches!(report.failure, Some(Failure::NotLinearizable(_))),
        "seed 76 without fsync: {:?}",
        report.failure.map(|f| f.to_string())
    );
    let failed = (0..15)
        .filter(|&seed| {
            let mut cfg = SimConfig::from_seed(seed, Profile::Quick);
            cfg.store.sync_log = false;
            run_seed(cfg, false).failure.is_some()
        })
        .count();
    assert!(
        failed >= 3,
        "only {failed} of 15 seeds caught the missing fsync"
    );
}
