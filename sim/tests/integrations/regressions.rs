//! Seeds that found bugs in the production code. Each test names its seed
//! and the fix; the seed must keep passing.

use sim::{run_seed, Profile, SimConfig};

fn assert_seed_passes(seed: u64, profile: Profile) {
    let report = run_seed(SimConfig::from_seed(seed, profile), false);
    assert!(
        report.failure.is_none(),
        "seed {seed}: {}",
        report.failure.map(|f| f.to_string()).unwrap_or_default()
    );
}

/// Seeds 65, 89, 137 and 199 (quick): with `raft_election_jitter = false`
/// each peer had one election timeout for good. A region whose quickest
/// peer had a stale log never elected a leader again: that peer timed out
/// first in every term, was refused, and its higher term reset the others'
/// timers. Fixed in raftstore: the timeout is a function of (peer, term).
#[test]
fn seed_65_region_with_a_stale_quickest_peer_still_elects_a_leader() {
    for seed in [65, 89, 137, 199] {
        assert_seed_passes(seed, Profile::Quick);
    }
}
