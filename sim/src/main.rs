//! `sim`: runs many seeds of the deterministic cluster simulation and
//! reports any seed whose history is not linearizable (or that fails
//! another check), with the command that replays it.
//!
//! ```text
//! cargo run --release -p sim -- --seeds 10000           # seeds 0..10000
//! cargo run --release -p sim -- --seed 1234 --verbose   # replay one seed
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use sim::{run_seed, Profile, RunReport, SimConfig};

/// Deterministic simulation of a three-store multi-raft cluster with fault
/// injection and a linearizability check.
#[derive(Parser, Debug, Clone)]
#[command(name = "sim")]
struct Args {
    /// Run this many seeds, starting at --start.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of a --seeds run.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Run only this seed (replay).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the simulation's events, raftstore's log and the history.
    #[arg(long)]
    verbose: bool,
    /// Use the short runs of the test suite instead of the full ones.
    #[arg(long)]
    quick: bool,
    /// Worker threads (each runs whole seeds; runs stay deterministic).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Turn raft-rs `batch_append` back on (known unsafe with raft 0.7,
    /// see `raftstore::Config::raft_batch_append`) to watch the simulation
    /// catch it.
    #[arg(long)]
    unsafe_batch_append: bool,
    /// Turn off the raft log fsync (`raftstore::Config::sync_log`): a crash
    /// then loses acknowledged raft entries, which the checks must catch.
    #[arg(long)]
    unsafe_no_sync_log: bool,
    /// Region hibernation: as each seed draws it (`seed`, on in most
    /// seeds), or forced `on` or `off` in every seed.
    #[arg(long, value_enum, default_value_t = Hibernation::Seed)]
    hibernation: Hibernation,
    /// Corrupt this share of raft messages (0..1) in ways every store must
    /// detect and drop (malformed input, `raftstore::validate`); the
    /// summary counts corrupted and dropped messages.
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    /// Writes carry no client session: the client's retries after timeouts
    /// and unknown outcomes may apply twice, which the checker must catch.
    #[arg(long)]
    unsafe_no_sessions: bool,
    /// Run store 1's clock (ticks and lease) at a tenth of the others'
    /// speed with no drift allowance, read with leases only, and move and
    /// isolate leaders: a deposed leader's stale lease reads must be
    /// caught (see `sim::skew_clocks_beyond_the_lease_bound`).
    #[arg(long)]
    unsafe_lease_skew: bool,
    /// Forge every leader check answer into a yes (a store confirming any
    /// leader), with ReadIndex reads only: a deposed leader's reads must
    /// be caught as stale.
    #[arg(long)]
    unsafe_leader_check_yes: bool,
    /// Pollers per store: as each seed draws it (`seed`: two raft and two
    /// apply pollers with interleaved rounds in a quarter of the seeds),
    /// or forced to `one` or `two` of each in every seed.
    #[arg(long, value_enum, default_value_t = Pollers::Seed)]
    pollers: Pollers,
    /// Raft log writes: as each seed draws it (`seed`: store I/O writers
    /// in a third of the seeds), or forced `inline` (on the raft pollers)
    /// or `async` (one store I/O writer per store) in every seed.
    #[arg(long, value_enum, default_value_t = Io::Seed)]
    io: Io,
    /// The read modes Gets draw from (default: all four).
    #[arg(long, value_enum, default_value_t = Reads::All)]
    reads: Reads,
}

/// Which read modes the clients use.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Reads {
    /// Log, ReadIndex, Lease and Follower, drawn per read.
    All,
    /// Through the raft log only.
    Log,
    /// ReadIndex on the leader only.
    ReadIndex,
    /// Leader lease only.
    Lease,
    /// ReadIndex from any peer only.
    Follower,
}

/// How many pollers of each kind the stores run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Pollers {
    /// As the seed draws it.
    Seed,
    /// One raft and one apply poller in every seed.
    One,
    /// Two of each, rounds interleaved, in every seed.
    Two,
}

/// Where the stores write their raft logs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Io {
    /// As the seed draws it.
    Seed,
    /// On the raft pollers, in every seed (`store_io_pool_size = 0`).
    Inline,
    /// One store I/O writer per store in every seed.
    Async,
}

/// Whether the stores hibernate idle regions.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Hibernation {
    /// As the seed draws it.
    Seed,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl Hibernation {
    fn apply(self, cfg: &mut SimConfig) {
        match self {
            Hibernation::Seed => {}
            Hibernation::On => cfg.store.hibernate_regions = true,
            Hibernation::Off => {
                cfg.store.hibernate_regions = false;
                cfg.nemesis.sleeping_leaders = false;
                cfg.report_reachability = false;
            }
        }
    }
}

fn config(seed: u64, profile: Profile, args: &Args) -> SimConfig {
    let mut cfg = SimConfig::from_seed(seed, profile);
    if args.unsafe_batch_append {
        cfg.store.raft_batch_append = true;
    }
    if args.unsafe_no_sync_log {
        cfg.store.sync_log = false;
    }
    args.hibernation.apply(&mut cfg);
    cfg.messages.corrupt = args.corrupt;
    use kvproto_lite::raft_cmdpb::ReadMode;
    match args.reads {
        Reads::All => {}
        Reads::Log => cfg.read_modes = vec![ReadMode::Log],
        Reads::ReadIndex => cfg.read_modes = vec![ReadMode::ReadIndex],
        Reads::Lease => cfg.read_modes = vec![ReadMode::Lease],
        Reads::Follower => cfg.read_modes = vec![ReadMode::Follower],
    }
    if args.unsafe_no_sessions {
        cfg.sessions = false;
    }
    match args.pollers {
        Pollers::Seed => {}
        Pollers::One => cfg.two_pollers = false,
        Pollers::Two => cfg.two_pollers = true,
    }
    match args.io {
        Io::Seed => {}
        Io::Inline => cfg.store.store_io_pool_size = 0,
        Io::Async => cfg.store.store_io_pool_size = 1,
    }
    if args.unsafe_lease_skew {
        sim::skew_clocks_beyond_the_lease_bound(&mut cfg);
    }
    if args.unsafe_leader_check_yes {
        sim::forge_leader_check_answers(&mut cfg);
    }
    cfg
}

fn print_failure(report: &RunReport, profile: Profile) {
    let Some(failure) = &report.failure else {
        return;
    };
    let quick = if profile == Profile::Quick {
        " --quick"
    } else {
        ""
    };
    eprintln!("\nSEED {} FAILED: {failure}", report.seed);
    eprintln!(
        "replay: cargo run --release -p sim -- --seed {}{quick} --verbose",
        report.seed
    );
}

fn main() -> ExitCode {
    let args = Args::parse();
    let profile = if args.quick {
        Profile::Quick
    } else {
        Profile::Full
    };
    if let Some(seed) = args.seed {
        let report = run_seed(config(seed, profile, &args), args.verbose);
        if args.verbose {
            eprintln!("config: {:#?}", config(seed, profile, &args));
            for op in &report.history {
                eprintln!("{op}");
            }
        }
        println!(
            "seed {seed}: {} | digest {:016x} | time {} | {:?}",
            match &report.failure {
                None => "ok".to_owned(),
                Some(f) => format!("FAILED: {f}"),
            },
            report.digest,
            report.end_time,
            report.stats
        );
        print_failure(&report, profile);
        return if report.failure.is_none() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(args.start));
    let end = args.start.saturating_add(args.seeds);
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<u64>::new()));
    let ops = Arc::new(AtomicU64::new(0));
    let unknown = Arc::new(AtomicU64::new(0));
    let crashes = Arc::new(AtomicU64::new(0));
    // Planned restarts, leaderships handed off, leaderships not handed off.
    let planned = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let hibernations = Arc::new(AtomicU64::new(0));
    let wakes = Arc::new(AtomicU64::new(0));
    let hibernating_seeds = Arc::new(AtomicU64::new(0));
    let sleeping_faults = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let corrupted = Arc::new(AtomicU64::new(0));
    // Membership changes sent, applied.
    let membership = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    // Snapshots applied, transfers failed, crashes during snapshot work.
    let snapshots = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let lease = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    // Leader checks: batches sent, confirmed, refused, timed out; answers
    // no; messages delayed by the fault.
    let checks: Arc<[AtomicU64; 6]> = Arc::new(Default::default());
    // Gets by read mode: log, read index, lease, follower.
    let gets: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    // Seeds with two pollers of each kind, overlapping rounds, crashes
    // while a poller held FSMs.
    let interleaved = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    // Seeds with store I/O writers, write tasks written, crashes with
    // write tasks not written.
    let io = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let workers: Vec<_> = (0..args.jobs.max(1))
        .map(|_| {
            let (next, done, failures) = (next.clone(), done.clone(), failures.clone());
            let (ops, unknown, crashes) = (ops.clone(), unknown.clone(), crashes.clone());
            let planned = planned.clone();
            let (hibernations, wakes) = (hibernations.clone(), wakes.clone());
            let hibernating_seeds = hibernating_seeds.clone();
            let sleeping_faults = sleeping_faults.clone();
            let rejected = rejected.clone();
            let corrupted = corrupted.clone();
            let membership = membership.clone();
            let snapshots = snapshots.clone();
            let lease = lease.clone();
            let checks = checks.clone();
            let gets = gets.clone();
            let interleaved = interleaved.clone();
            let io = io.clone();
            let total = args.seeds;
            let args = args.clone();
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed >= end {
                    break;
                }
                let cfg = config(seed, profile, &args);
                if cfg.store.hibernate_regions {
                    hibernating_seeds.fetch_add(1, Ordering::Relaxed);
                }
                if cfg.two_pollers {
                    interleaved[0].fetch_add(1, Ordering::Relaxed);
                }
                if cfg.store.store_io_pool_size > 0 {
                    io[0].fetch_add(1, Ordering::Relaxed);
                }
                let report = run_seed(cfg, false);
                io[1].fetch_add(report.stats.async_writes, Ordering::Relaxed);
                io[2].fetch_add(
                    report.stats.crashes_with_writes_in_flight,
                    Ordering::Relaxed,
                );
                interleaved[1].fetch_add(report.stats.overlapping_rounds, Ordering::Relaxed);
                interleaved[2].fetch_add(report.stats.crashes_mid_round, Ordering::Relaxed);
                hibernations.fetch_add(report.stats.hibernations, Ordering::Relaxed);
                wakes.fetch_add(report.stats.wakes, Ordering::Relaxed);
                sleeping_faults.fetch_add(report.stats.sleeping_leader_faults, Ordering::Relaxed);
                rejected.fetch_add(report.stats.rejected_messages, Ordering::Relaxed);
                lease[0].fetch_add(report.stats.lease_reads_local, Ordering::Relaxed);
                lease[1].fetch_add(report.stats.lease_fallbacks, Ordering::Relaxed);
                let s = &report.stats;
                for (c, v) in
                    gets.iter()
                        .zip([s.gets_log, s.gets_read_index, s.gets_lease, s.gets_follower])
                {
                    c.fetch_add(v, Ordering::Relaxed);
                }
                for (c, v) in checks.iter().zip([
                    s.leader_check_batches,
                    s.leader_check_confirmed,
                    s.leader_check_refused,
                    s.leader_check_timed_out,
                    s.leader_check_answers_no,
                    s.leader_checks_delayed,
                ]) {
                    c.fetch_add(v, Ordering::Relaxed);
                }
                corrupted.fetch_add(report.stats.messages_corrupted, Ordering::Relaxed);
                membership[0].fetch_add(report.stats.conf_changes, Ordering::Relaxed);
                membership[1].fetch_add(report.stats.conf_changes_applied, Ordering::Relaxed);
                snapshots[0].fetch_add(report.stats.snapshots_applied, Ordering::Relaxed);
                snapshots[1].fetch_add(report.stats.snapshot_transfers_failed, Ordering::Relaxed);
                snapshots[2].fetch_add(report.stats.snapshot_crashes, Ordering::Relaxed);
                ops.fetch_add(
                    report.stats.ops_ok + report.stats.ops_failed + report.stats.ops_unknown,
                    Ordering::Relaxed,
                );
                unknown.fetch_add(report.stats.ops_unknown, Ordering::Relaxed);
                crashes.fetch_add(report.stats.crashes, Ordering::Relaxed);
                planned[0].fetch_add(report.stats.planned_restarts, Ordering::Relaxed);
                planned[1].fetch_add(report.stats.handed_off, Ordering::Relaxed);
                planned[2].fetch_add(report.stats.not_handed_off, Ordering::Relaxed);
                if report.failure.is_some() {
                    print_failure(&report, profile);
                    failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(seed);
                }
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                if n % 100 == 0 || n as u64 == total {
                    let failed = failures.lock().unwrap_or_else(|e| e.into_inner()).len();
                    eprintln!(
                        "{n}/{total} seeds, {failed} failed, {:.0}s",
                        started.elapsed().as_secs_f64()
                    );
                }
            })
        })
        .collect();
    for w in workers {
        if w.join().is_err() {
            eprintln!("a worker thread panicked");
            return ExitCode::FAILURE;
        }
    }
    let mut failed = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    failed.sort_unstable();
    println!(
        "seeds {}..{}: {} run, {} failed {:?}; {} operations ({} unknown), {} store crashes \
         ({} of them planned restarts: {} leaderships handed off, {} not), {} snapshots applied \
         ({} transfers failed, {} crashes during snapshot work); {:.1}s",
        args.start,
        end,
        done.load(Ordering::SeqCst),
        failed.len(),
        failed,
        ops.load(Ordering::Relaxed),
        unknown.load(Ordering::Relaxed),
        crashes.load(Ordering::Relaxed),
        planned[0].load(Ordering::Relaxed),
        planned[1].load(Ordering::Relaxed),
        planned[2].load(Ordering::Relaxed),
        snapshots[0].load(Ordering::Relaxed),
        snapshots[1].load(Ordering::Relaxed),
        snapshots[2].load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    println!(
        "hibernation: on in {} of {} seeds; region replicas hibernated {} times, woken {} times; {} leaders crashed or isolated while their region slept",
        hibernating_seeds.load(Ordering::Relaxed),
        done.load(Ordering::SeqCst),
        hibernations.load(Ordering::Relaxed),
        wakes.load(Ordering::Relaxed),
        sleeping_faults.load(Ordering::Relaxed)
    );
    println!(
        "untrusted input: {} raft messages corrupted, {} dropped by validation",
        corrupted.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed)
    );
    println!(
        "membership: {} conf changes proposed, {} applied",
        membership[0].load(Ordering::Relaxed),
        membership[1].load(Ordering::Relaxed)
    );
    println!(
        "lease reads: {} served by local readers, {} handed on to the raft thread",
        lease[0].load(Ordering::Relaxed),
        lease[1].load(Ordering::Relaxed)
    );
    println!(
        "gets by read mode: {} log (final reads included), {} read index, {} lease, {} follower",
        gets[0].load(Ordering::Relaxed),
        gets[1].load(Ordering::Relaxed),
        gets[2].load(Ordering::Relaxed),
        gets[3].load(Ordering::Relaxed)
    );
    println!(
        "leader checks: {} ReadIndex batches sent, {} confirmed, {} refused, {} timed out \
         (fell back to raft's read index); {} region answers no; {} check messages delayed",
        checks[0].load(Ordering::Relaxed),
        checks[1].load(Ordering::Relaxed),
        checks[2].load(Ordering::Relaxed),
        checks[3].load(Ordering::Relaxed),
        checks[4].load(Ordering::Relaxed),
        checks[5].load(Ordering::Relaxed)
    );
    println!(
        "pollers: two raft and two apply pollers per store in {} of {} seeds; {} overlapping \
         rounds, {} store crashes while a poller held FSMs",
        interleaved[0].load(Ordering::Relaxed),
        done.load(Ordering::SeqCst),
        interleaved[1].load(Ordering::Relaxed),
        interleaved[2].load(Ordering::Relaxed)
    );
    println!(
        "io writers: seeds {} of {}, async writes {}, crashes with writes in flight {}",
        io[0].load(Ordering::Relaxed),
        done.load(Ordering::SeqCst),
        io[1].load(Ordering::Relaxed),
        io[2].load(Ordering::Relaxed)
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
