//! Malformed raft messages on the wire: every store must drop them
//! (`raftstore::validate`) and the cluster must stay correct, with the
//! corrupted messages acting as lost ones.

use sim::{run_seed, Profile, SimConfig};

#[test]
fn corrupted_messages_are_dropped_and_every_check_still_passes() {
    let (mut corrupted, mut rejected) = (0, 0);
    for seed in 0..20 {
        let mut cfg = SimConfig::from_seed(seed, Profile::Quick);
        cfg.messages.corrupt = 0.05;
        let report = run_seed(cfg, false);
        assert!(
            report.failure.is_none(),
            "seed {seed} with 5% corrupted messages: {}",
            report.failure.map(|f| f.to_string()).unwrap_or_default()
        );
        corrupted += report.stats.messages_corrupted;
        rejected += report.stats.rejected_messages;
    }
    assert!(corrupted > 0, "no message was corrupted");
    // Corrupted messages may be lost or reach a stopped store; those
    // delivered are all dropped by validation.
    assert!(rejected > 0, "no store dropped a corrupted message");
    assert!(
        rejected <= 2 * corrupted,
        "{rejected} rejected, more than the {corrupted} corrupted messages (and their duplicates)"
    );
}

#[test]
fn a_run_without_corruption_drops_no_message() {
    for seed in 0..5 {
        let report = run_seed(SimConfig::from_seed(seed, Profile::Quick), false);
        assert_eq!(
            report.stats.rejected_messages, 0,
            "seed {seed}: a store dropped a message no peer corrupted"
        );
    }
}
