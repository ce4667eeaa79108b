//! What one simulated run looks like, derived entirely from its seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How long and how hard a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Short runs for `cargo test` (hundreds of seeds in seconds).
    Quick,
    /// Longer runs with more operations, for the `sim` binary.
    Full,
}

/// Message-level faults: applied to every message independently.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageFaults {
    /// Probability a message is lost.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Smallest delivery latency (simulated time units).
    pub min_latency: u64,
    /// Largest normal delivery latency; messages with different latencies
    /// overtake each other (reordering).
    pub max_latency: u64,
    /// Probability a message is held back much longer (up to
    /// `long_delay_max` extra units): a badly reordered, stale message.
    pub long_delay: f64,
    /// Largest extra delay of a long-delayed message.
    pub long_delay_max: u64,
    /// Probability a raft message is corrupted in a way every store must
    /// detect and drop (`raftstore::validate`): 0 in every seed's own
    /// configuration, set by `sim --corrupt P`.
    pub corrupt: f64,
    /// Probability a store-level leader check or its answer
    /// (`raftstore::leader_check`) is held back by up to `long_delay_max`
    /// extra units: an answer that arrives after the term it confirms
    /// ended, a question answered after the asked peer moved on.
    pub leader_check_delay: f64,
    /// Unsafe, off in every seed's own configuration: the network turns
    /// every leader check answer into a yes (a store that confirms any
    /// leader), set by `sim --unsafe-leader-check-yes` to watch the
    /// checker catch a deposed leader's ReadIndex reads.
    pub forge_leader_check_yes: bool,
}

/// Which timed faults the nemesis may inject.
#[derive(Debug, Clone, PartialEq)]
pub struct NemesisConfig {
    /// Symmetric partitions of the stores into two sides.
    pub partitions: bool,
    /// One-way message loss between two stores.
    pub one_way: bool,
    /// Cutting the leader of a region off from everyone.
    pub leader_isolation: bool,
    /// Crashing a store (losing unsynced writes) and restarting it later.
    pub crashes: bool,
    /// Pausing a store's raft poller, apply poller or both for a while (a
    /// slow disk or a stalled thread): its mailboxes fill up, and apply can
    /// fall far behind commit (then a crash finds committed, unapplied
    /// commands).
    pub pauses: bool,
    /// Asking a region's leader to transfer leadership to another peer
    /// (the `TransferLeader` admin command).
    pub transfers: bool,
    /// Splitting a region at one of the clients' keys (the `Split` admin
    /// command); clients learn the new layout from `EpochNotMatch`.
    pub splits: bool,
    /// Planned restarts: a store is asked to hand its leaderships to other
    /// stores (`RaftRouter::evict_leaders`, the first step of
    /// `RaftBatchSystem::shutdown_gracefully`), keeps running for a while
    /// (its peers stop campaigning), is stopped and restarted later.
    pub planned_restarts: bool,
    /// Crashing or isolating the store of a region's leader while that
    /// region hibernates (only with `store.hibernate_regions`): the
    /// followers must notice through their liveness checks (the simulated
    /// network reports no store unreachable) and elect a new leader.
    pub sleeping_leaders: bool,
    /// Membership changes of a region's existing peers: a follower demoted
    /// to a learner, a learner promoted back, and joint changes doing
    /// both at once (`ChangePeer` / `ChangePeerV2`).
    pub membership: bool,
    /// Crashing a store in the middle of snapshot work: while it generates
    /// or sends one (as a leader), or receives or has just applied one.
    /// Snapshots happen because a small `raft_log_gc_count_limit` makes
    /// leaders compact their logs past lagging (crashed, partitioned)
    /// followers.
    pub snapshot_crashes: bool,
    /// Cutting the store of a region's leader off from region (raft)
    /// messages while store-level leader checks still pass
    /// ([`NetFault::RegionPartition`](crate::network::NetFault)): the
    /// others elect a new leader, and the old one's checks must be
    /// refused (only with `store.read_index_leader_check`).
    pub leader_check_isolation: bool,
    /// Smallest gap between two nemesis actions.
    pub min_interval: u64,
    /// Largest gap between two nemesis actions.
    pub max_interval: u64,
    /// Smallest time a fault lasts before it heals / the store restarts.
    pub min_duration: u64,
    /// Largest time a fault lasts.
    pub max_duration: u64,
}

/// A whole simulated run. [`SimConfig::from_seed`] draws every choice from
/// the seed, so the seed alone reproduces the run.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The seed of everything random in the run.
    pub seed: u64,
    /// Number of stores (each holds a replica of every region).
    pub stores: u64,
    /// Number of regions (the key space split evenly).
    pub regions: usize,
    /// Number of distinct keys the clients use (spread over the regions).
    pub keys: usize,
    /// Number of concurrent clients (each with one operation in flight).
    pub clients: usize,
    /// Simulated time units between two ticks of a store.
    pub tick_interval: u64,
    /// Per-store clock skew: store `i + 1` ticks every `tick_interval +
    /// tick_skew[i]` units (empty = no skew), so some stores' timers run
    /// faster than others'.
    pub tick_skew: Vec<i64>,
    /// Simulated time during which clients issue operations and the
    /// nemesis injects faults.
    pub workload_time: u64,
    /// Quiet time after the workload (faults healed, stores restarted)
    /// before the final reads.
    pub settle_time: u64,
    /// How long a client waits for one attempt before the operation's
    /// outcome becomes unknown.
    pub attempt_timeout: u64,
    /// How long a client keeps retrying an operation whose attempts were
    /// all refused, before it counts as failed.
    pub op_deadline: u64,
    /// Largest pause of a client between two operations.
    pub max_think_time: u64,
    /// Message faults.
    pub messages: MessageFaults,
    /// Timed faults.
    pub nemesis: NemesisConfig,
    /// The raftstore configuration of every store.
    pub store: raftstore::Config,
    /// Tell the other stores when a store crashes (`report_unreachable`)
    /// and when it restarts (`report_reachable`), as a connection-level
    /// transport would; without it hibernated followers only learn of a
    /// dead leader through their liveness checks. Only drawn with
    /// hibernation on.
    pub report_reachability: bool,
    /// Writes carry a client session (exactly-once retries). Off only to
    /// show what the checker finds without them.
    pub sessions: bool,
    /// Every store runs two raft pollers and two apply pollers instead of
    /// one of each, and the simulation interleaves their rounds step by
    /// step (`ManualPoller::begin_round`, `handle_next`, `finish_round`):
    /// one poller holds FSMs while the other takes and handles others, and
    /// deliveries, ticks and crashes happen in between, as with poller
    /// threads. Drawn for a quarter of the seeds.
    pub two_pollers: bool,
    /// The read modes a client's Get draws from (empty = through the log).
    pub read_modes: Vec<kvproto_lite::raft_cmdpb::ReadMode>,
}

impl SimConfig {
    /// The run for `seed` in `profile`.
    pub fn from_seed(seed: u64, profile: Profile) -> SimConfig {
        // A separate stream from the run's own RNG, so adding a knob here
        // does not shift every later random choice of the run.
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c0f1_9000_0001);
        let (workload_time, settle_time) = match profile {
            Profile::Quick => (1_000, 500),
            Profile::Full => (5_000, 800),
        };
        let quiet = rng.gen_bool(0.1);
        let messages = if quiet {
            MessageFaults {
                drop: 0.0,
                duplicate: 0.0,
                min_latency: 1,
                max_latency: 3,
                long_delay: 0.0,
                long_delay_max: 0,
                corrupt: 0.0,
                leader_check_delay: 0.0,
                forge_leader_check_yes: false,
            }
        } else {
            MessageFaults {
                drop: pick(&mut rng, &[0.0, 0.01, 0.05, 0.15]),
                duplicate: pick(&mut rng, &[0.0, 0.01, 0.05]),
                min_latency: 1,
                max_latency: pick(&mut rng, &[2, 5, 15, 40]),
                long_delay: pick(&mut rng, &[0.0, 0.005, 0.02]),
                long_delay_max: 400,
                corrupt: 0.0,
                leader_check_delay: 0.0,
                forge_leader_check_yes: false,
            }
        };
        let nemesis = NemesisConfig {
            partitions: rng.gen_bool(0.7),
            one_way: rng.gen_bool(0.5),
            leader_isolation: rng.gen_bool(0.6),
            crashes: rng.gen_bool(0.7),
            pauses: rng.gen_bool(0.5),
            // Drawn last (below), so that adding it kept every other choice.
            transfers: false,
            splits: false,
            planned_restarts: false,
            sleeping_leaders: false,
            membership: false,
            snapshot_crashes: false,
            leader_check_isolation: false,
            min_interval: 50,
            max_interval: pick(&mut rng, &[200, 400, 800]),
            min_duration: 20,
            max_duration: pick(&mut rng, &[150, 400, 900]),
        };
        let mut store = raftstore::Config {
            store_pool_size: 1,
            raft_election_jitter: false,
            raft_election_timeout_ticks: 10,
            raft_heartbeat_ticks: 2,
            ..raftstore::Config::default()
        };
        store.messages_per_round = pick(&mut rng, &[1, 2, 16, 4096]);
        store.store_max_batch_size = pick(&mut rng, &[1, 2, 256]);
        store.group_commit = rng.gen_bool(0.85);
        store.raft_log_gc_threshold = pick(&mut rng, &[4, 16, 512]);
        store.raft_log_gc_tick_interval = pick(&mut rng, &[3, 10, 30]);
        store.raft_max_inflight_msgs = pick(&mut rng, &[2, 256]);
        store.pre_vote = rng.gen_bool(0.8);
        store.apply.pool_size = 1;
        store.apply.max_batch_size = pick(&mut rng, &[1, 2, 256]);
        store.apply.max_entries_per_round = pick(&mut rng, &[1, 3, 256]);
        store.apply.messages_per_round = pick(&mut rng, &[1, 4, 1024]);
        store.apply.sync_write = rng.gen_bool(0.2);
        let mut nemesis = nemesis;
        let regions = pick(&mut rng, &[3, 4, 5]);
        let keys = pick(&mut rng, &[6, 10, 16]);
        let clients = pick(&mut rng, &[2, 3, 5]);
        let attempt_timeout = pick(&mut rng, &[150, 300, 600]);
        let max_think_time = pick(&mut rng, &[5, 20, 60]);
        nemesis.transfers = rng.gen_bool(0.5);
        // Drawn last as well (see `transfers`).
        let tick_skew = if rng.gen_bool(0.3) {
            (0..3).map(|_| rng.gen_range(-1i64..=1)).collect()
        } else {
            Vec::new()
        };
        nemesis.splits = rng.gen_bool(0.5);
        // Drawn last as well (see `transfers`).
        nemesis.planned_restarts = rng.gen_bool(0.5);
        // Drawn last as well: hibernation on in most runs, off in a share
        // (so the always-ticking path stays covered), with liveness checks
        // from a few ticks to a large share of the run.
        store.hibernate_regions = rng.gen_bool(0.8);
        store.hibernate_check_leader_ticks = pick(&mut rng, &[5, 20, 60]);
        nemesis.sleeping_leaders = store.hibernate_regions && rng.gen_bool(0.6);
        let report_reachability = store.hibernate_regions && rng.gen_bool(0.5);
        // Drawn last as well: log GC past lagging followers (by entry
        // count) in most runs, so they catch up by snapshot, and snapshot
        // data in chunks small enough that transfers take many steps.
        store.raft_log_gc_count_limit = pick(&mut rng, &[8, 24, 64, 20_000]);
        store.snap_chunk_size = pick(&mut rng, &[64, 512, 1 << 20]);
        nemesis.snapshot_crashes = nemesis.crashes && rng.gen_bool(0.6);
        // Drawn last as well (see `transfers`).
        nemesis.membership = rng.gen_bool(0.5);
        // Drawn last as well (see `transfers`): a quarter of the seeds run
        // every store with two raft pollers and two apply pollers whose
        // rounds interleave.
        let two_pollers = rng.gen_bool(0.25);
        // Drawn last as well: a third of the seeds run every store with
        // store I/O writers (raft log writes off the raft pollers, each
        // writer stepped by the simulation as its own event), one or two
        // per store; the others write inline.
        store.store_io_pool_size = if rng.gen_bool(1.0 / 3.0) {
            pick(&mut rng, &[1, 2])
        } else {
            0
        };
        // Each store's lease clock runs at its tick rate (see
        // `tick_skew`): up to 10% apart, which this bound covers (a slow
        // leader's lease of 700 ms lasts at most 77 units; a fast follower
        // waits at least 9 ticks of 9 units before it votes).
        store.raft_lease_max_drift_ms = 200;
        // Drawn last as well: ReadIndex reads confirmed by store-level
        // leader checks in most seeds (raft's heartbeat round in the
        // others), and leader checks held back across term changes in a
        // share of the noisy ones.
        store.read_index_leader_check = rng.gen_bool(0.8);
        nemesis.leader_check_isolation = store.read_index_leader_check && rng.gen_bool(0.5);
        let mut messages = messages;
        if !quiet {
            messages.leader_check_delay = pick(&mut rng, &[0.0, 0.05, 0.3]);
        }
        SimConfig {
            seed,
            stores: 3,
            regions,
            keys,
            clients,
            tick_interval: 10,
            tick_skew,
            workload_time,
            settle_time,
            attempt_timeout,
            op_deadline: 1_000,
            max_think_time,
            messages,
            nemesis,
            store,
            report_reachability,
            sessions: true,
            two_pollers,
            read_modes: vec![
                kvproto_lite::raft_cmdpb::ReadMode::Log,
                kvproto_lite::raft_cmdpb::ReadMode::ReadIndex,
                kvproto_lite::raft_cmdpb::ReadMode::Lease,
                kvproto_lite::raft_cmdpb::ReadMode::Follower,
            ],
        }
    }

    /// Checks the values a run depends on.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) naming the problem.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::Error::Config(m.to_owned()));
        if self.stores == 0 || self.regions == 0 || self.keys == 0 || self.clients == 0 {
            return bad("stores, regions, keys and clients must be positive");
        }
        if self.tick_interval == 0 || self.attempt_timeout == 0 {
            return bad("tick_interval and attempt_timeout must be positive");
        }
        if self
            .tick_skew
            .iter()
            .any(|&s| self.tick_interval as i64 + s < 1)
        {
            return bad("tick_interval + tick_skew must be at least 1 for every store");
        }
        if self.messages.min_latency == 0 || self.messages.min_latency > self.messages.max_latency {
            return bad("latencies must satisfy 1 <= min_latency <= max_latency");
        }
        if self.nemesis.min_interval == 0
            || self.nemesis.min_interval > self.nemesis.max_interval
            || self.nemesis.min_duration == 0
            || self.nemesis.min_duration > self.nemesis.max_duration
        {
            return bad("nemesis intervals and durations must be positive ranges");
        }
        for p in [
            self.messages.drop,
            self.messages.duplicate,
            self.messages.long_delay,
            self.messages.corrupt,
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad("probabilities must be within [0, 1]");
            }
        }
        self.store
            .validate()
            .map_err(|e| crate::Error::Config(e.to_string()))
    }
}

/// Makes `cfg` unsafe on purpose, to show the checker catching stale lease
/// reads. Store 1's clock runs at a tenth of the others' speed (its ticks
/// every 100 units, theirs every 10), far beyond a drift bound of 0, and
/// every read is a lease read. Leadership transfers and leader isolation
/// are on, so store 1 leads now and then and gets cut off while leading: it
/// then believes its lease (900 ms of its clock) for 900 units and keeps
/// leading until its check-quorum, up to 1,000 units, while the others
/// elect a new leader after 100 to 200 and take writes there.
pub fn skew_clocks_beyond_the_lease_bound(cfg: &mut SimConfig) {
    cfg.tick_skew = vec![90, 0, 0];
    cfg.store.raft_lease_max_drift_ms = 0;
    cfg.nemesis.transfers = true;
    cfg.nemesis.leader_isolation = true;
    // Lease reads never use leader checks: keep the nemesis choices of
    // the runs this was tuned on (before leader checks existed).
    cfg.nemesis.leader_check_isolation = false;
    cfg.read_modes = vec![kvproto_lite::raft_cmdpb::ReadMode::Lease];
}

/// Makes `cfg` unsafe in the way `sim --unsafe-leader-check-yes` does:
/// the network turns every leader check answer into a yes (a store that
/// confirms any leader in any term), every read is a ReadIndex read
/// confirmed by leader checks, and the nemesis cuts leaders off from raft
/// messages while their checks pass, so a deposed leader keeps serving
/// reads after the others elected a new leader that took writes.
pub fn forge_leader_check_answers(cfg: &mut SimConfig) {
    cfg.messages.forge_leader_check_yes = true;
    cfg.store.read_index_leader_check = true;
    cfg.nemesis.leader_check_isolation = true;
    cfg.read_modes = vec![kvproto_lite::raft_cmdpb::ReadMode::ReadIndex];
}

fn pick<T: Copy>(rng: &mut StdRng, choices: &[T]) -> T {
    choices[rng.gen_range(0..choices.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_from_seeds_are_valid_and_reproducible() {
        for seed in 0..200 {
            let a = SimConfig::from_seed(seed, Profile::Quick);
            a.validate().unwrap();
            assert_eq!(a, SimConfig::from_seed(seed, Profile::Quick));
            SimConfig::from_seed(seed, Profile::Full)
                .validate()
                .unwrap();
        }
    }
}
