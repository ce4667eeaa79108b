//! `cluster-bench`: an in-process cluster of raft stores with many regions
//! under a write/read load, measured per core.
//!
//! ```text
//! cargo run --release -p benches --bin cluster-bench             # 3 stores, 1,000 regions, ~30 s
//! cargo run --release -p benches --bin cluster-bench -- --quick  # under 20 s
//! cargo run --release -p benches --bin cluster-bench -- --compare  # + group commit off
//! cargo run --release -p benches --bin cluster-bench -- --overload # + clients far above capacity
//! ```
//!
//! `--overload` adds a phase whose clients keep `--overload-factor` times
//! the window in flight against stores with a small memory quota
//! (`--memory-quota-mib` each): the stores refuse what exceeds the quota
//! with `ServerIsBusy` and the clients retry. A last phase runs the same
//! overload with the default quota (column `no quota`). The table compares them with the
//! normal phase of the same invocation: writes/s, the quota and the peak
//! RSS of each phase (the kernel's peak is reset at each phase's start).
//!
//! Each phase starts a fresh cluster (durable engines in a temporary
//! directory by default), waits for every region to elect a leader, then
//! client threads keep a window of asynchronous commands in flight, routed
//! to each region's leader (see `load.rs`). After a warm-up, throughput,
//! latency, process CPU time and the stores' raft-log counters are measured
//! over `--duration`. Afterwards every acknowledged write is read back from
//! every store's KV engine; a mismatch fails the run (exit code 1).
//!
//! Output: a live progress bar, a table per phase, optional JSON
//! (`--json`), an SVG plot (`--svg`) and, as the last line,
//! `writes/s: N`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use cluster::Cluster;
use engine::{KvEngine, RaftLogEngine};
use indicatif::{ProgressBar, ProgressStyle};
use raftstore::{CommandSink, Config, StoreStatsSnapshot};

mod disk;
mod plot;
mod report;

use benches::load::{self, Live, LoadSpec, Target};
use benches::sys;

/// mimalloc instead of glibc malloc: the stores allocate raft messages on
/// one thread and free them on another, which glibc's arenas handle poorly
/// (a quarter to a third of the CPU profile). A service embedding the stores
/// would choose its allocator the same way (TiKV links jemalloc).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use report::{PhaseReport, Report, Sample};

/// Which engines the stores use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineKind {
    /// raft-engine for raft logs + fjall for the state machine, fsynced.
    Durable,
    /// In-memory engines (no disk, no fsync): shows the CPU-only ceiling.
    Memory,
}

/// How the benchmark's reads are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReadModeArg {
    /// Through the raft log.
    Log,
    /// ReadIndex on the leader.
    ReadIndex,
    /// Leader lease (local reader).
    Lease,
    /// ReadIndex from any peer.
    Follower,
}

impl ReadModeArg {
    fn mode(self) -> kvproto_lite::raft_cmdpb::ReadMode {
        use kvproto_lite::raft_cmdpb::ReadMode;
        match self {
            ReadModeArg::Log => ReadMode::Log,
            ReadModeArg::ReadIndex => ReadMode::ReadIndex,
            ReadModeArg::Lease => ReadMode::Lease,
            ReadModeArg::Follower => ReadMode::Follower,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ReadModeArg::Log => "log",
            ReadModeArg::ReadIndex => "read-index",
            ReadModeArg::Lease => "lease",
            ReadModeArg::Follower => "follower",
        }
    }
}

/// A replicated multi-raft cluster in one process under load.
#[derive(Debug, Parser)]
#[command(name = "cluster-bench", version, about, long_about = None)]
struct Args {
    /// Stores (replicas of every region).
    #[arg(long, default_value_t = 3)]
    stores: usize,
    /// Regions (raft groups), split evenly over the key space. A list
    /// (`--regions 10,100,1000,10000`) runs one phase per count, each on a
    /// fresh cluster, and ends with a table of writes/s by region count as
    /// a ratio to the first count.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    regions: Vec<usize>,
    /// Put the whole load on this many regions, spread evenly over the key
    /// space; the others stay idle (so what idle regions cost shows
    /// directly). Default: every region.
    #[arg(long)]
    active_regions: Option<usize>,
    /// Client threads generating load.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Commands each client keeps in flight (total concurrency = clients x window).
    #[arg(long, default_value_t = 2048)]
    window: usize,
    /// Bytes per written value (at least 12: sequence number + key index).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(12..=1_048_576))]
    value_size: u64,
    /// Share of the in-flight slots that read (0..=1). Each client splits
    /// its window: round(ratio x window) slots only read, the others only
    /// write (at least one of each when 0 < ratio and the window is 2 or
    /// more), every slot closed-loop. So reads never wait behind a write,
    /// and reads/s is the read path's own throughput at that concurrency;
    /// the read/write mix of the completed operations follows from the two
    /// paths' latencies. A read slot reads a random key its client has
    /// already written (every read finds data) and checks the value is
    /// current (linearizable).
    #[arg(long, default_value_t = 0.0)]
    read_ratio: f64,
    /// How reads are served: `log` (proposed like writes), `read-index`
    /// (leader confirms leadership with one heartbeat round per batch),
    /// `lease` (leader lease, served off the raft thread), `follower`
    /// (ReadIndex asked by any peer). A list (`--read-mode
    /// log,read-index,lease,follower`) runs one phase per mode, each on a
    /// fresh cluster, and ends with reads/s per mode as a ratio to the
    /// first.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "log")]
    read_mode: Vec<ReadModeArg>,
    /// With `--read-mode lease`, send every read as a command of its own
    /// (served by the router's local reader when the lease holds) instead
    /// of serving the read slots ready in one turn of a client's loop with
    /// one `LocalReader::read_batch` call per store.
    #[arg(long)]
    unbatched_lease_reads: bool,
    /// Seconds of measured load per phase.
    #[arg(long, default_value_t = 25.0)]
    duration: f64,
    /// Seconds of unmeasured load before measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Distinct keys written (each owned by one client slot).
    #[arg(long, default_value_t = 200_000)]
    keys: usize,
    /// Storage engines.
    #[arg(long, value_enum, default_value_t = EngineKind::Durable)]
    engine: EngineKind,
    /// Keep the durable engines here (one sub-directory per phase, which
    /// must not exist yet) instead of a removed temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A short run (under 20 s): 4 s measured after 1 s warm-up, 50,000 keys.
    #[arg(long)]
    quick: bool,
    /// Also run the same load with group commit off (one raft-log write
    /// and fsync per region Ready) and print the ratio.
    #[arg(long)]
    compare: bool,
    /// Also run at half of the measured peak rate (open loop) to report
    /// latency at moderate load.
    #[arg(long)]
    half_load: bool,
    /// Limit the load to this many operations per second (all clients).
    #[arg(long)]
    rate: Option<f64>,
    /// Write a JSON report to this file, or to stdout with `--json` alone.
    #[arg(long, num_args = 0..=1, default_missing_value = "-", value_name = "PATH")]
    json: Option<String>,
    /// Where to write the SVG plot (throughput over time, latency
    /// distribution); `none` to skip.
    #[arg(long, default_value = "target/cluster-bench.svg")]
    svg: String,
    /// Raft poller threads per store (default: cores / stores, at least 1).
    #[arg(long)]
    store_pool_size: Option<usize>,
    /// Apply poller threads per store (default: cores / stores, at least 1).
    #[arg(long)]
    apply_pool_size: Option<usize>,
    /// Store I/O writer threads per store (`Config::store_io_pool_size`;
    /// 0 = raft log written inline by the raft pollers). Default: the
    /// config's.
    #[arg(long)]
    store_io: Option<usize>,
    /// raftstore::Config fields as JSON, e.g. '{"messages_per_round":256}'
    /// (applied before the pool-size flags).
    #[arg(long)]
    config: Option<String>,
    /// Seed of the clients' random choices.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Before the load, measure the data directory's disk: 4 KiB writes,
    /// each followed by fdatasync, for 1 s with one writer and 1 s with one
    /// writer per store (durable engines only). Tells whether the latency
    /// tail comes from the disk.
    #[arg(long)]
    probe_disk: bool,
    /// Also run a phase with `--overload-factor` times the window in flight
    /// (far above what the stores can serve) against stores limited to
    /// `--memory-quota-mib` each, and compare it with the normal phase.
    #[arg(long)]
    overload: bool,
    /// Window multiplier of the `--overload` phase.
    #[arg(long, default_value_t = 16)]
    overload_factor: usize,
    /// Memory quota of each store in the `--overload` phase, MiB.
    #[arg(long, default_value_t = 32)]
    memory_quota_mib: u64,
    /// Count the raft messages between stores by type (a pass-through
    /// transport filter; costs a little) and print the mix per write.
    #[arg(long)]
    message_mix: bool,
}

/// Raft messages seen by the transport, by type (`--message-mix`).
#[derive(Default)]
struct MessageMix {
    counts: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl MessageMix {
    fn count(&self, m: &kvproto_lite::eraftpb::Message) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry(format!("{:?}", m.get_msg_type())).or_default() += 1;
        if !m.get_entries().is_empty() {
            *c.entry(format!("{:?} entries", m.get_msg_type()))
                .or_default() += m.get_entries().len() as u64;
        }
    }

    fn take(&self) -> std::collections::BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One phase to run: a name, a region count, a store config and a rate
/// limit.
struct PhasePlan {
    name: String,
    regions: usize,
    cfg: Config,
    rate: Option<f64>,
    read_mode: ReadModeArg,
    /// Commands each client keeps in flight.
    window: usize,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.quick {
        args.duration = 4.0;
        args.warmup = 1.0;
        args.keys = args.keys.min(50_000);
    }
    match run(&args) {
        Ok(report) => {
            let failed = report
                .phases
                .iter()
                .any(|p| !p.verify_errors.is_empty() || p.read_mismatches > 0);
            let writes = report.phases.first().map_or(0.0, |p| p.writes_per_sec);
            if failed {
                eprintln!("cluster-bench: FAILED: acknowledged writes were lost or read wrong (see above)");
            }
            println!("writes/s: {writes:.0}");
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("cluster-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn base_config(args: &Args) -> Result<Config, String> {
    let mut cfg = match &args.config {
        Some(json) => serde_json::from_str::<Config>(json).map_err(|e| format!("--config: {e}"))?,
        None => Config::default(),
    };
    // All stores share this process's cores: by default give each store
    // an equal share, at least one raft and one apply thread (on 2 cores
    // and 3 stores: 1 + 1 per store; 2 + 2 measured 20-25% more CPU per
    // write from oversubscription).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = (cpus / args.stores.max(1)).max(1);
    let explicit = |field: &str| {
        args.config
            .as_deref()
            .is_some_and(|c| c.contains(&format!("\"{field}\"")))
    };
    if let Some(n) = args.store_pool_size {
        cfg.store_pool_size = n;
    } else if !explicit("store_pool_size") {
        cfg.store_pool_size = share;
    }
    if let Some(n) = args.apply_pool_size {
        cfg.apply.pool_size = n;
    } else if !explicit("pool_size") {
        cfg.apply.pool_size = share;
    }
    if let Some(n) = args.store_io {
        cfg.store_io_pool_size = n;
    }
    cfg.validate().map_err(|e| format!("config: {e}"))?;
    Ok(cfg)
}

fn run(args: &Args) -> Result<Report, String> {
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err("--read-ratio must be within 0..=1".to_owned());
    }
    if args.stores == 0
        || args.regions.is_empty()
        || args.regions.contains(&0)
        || args.clients == 0
        || args.window == 0
        || args.active_regions == Some(0)
    {
        return Err(
            "--stores, --regions, --active-regions, --clients and --window must be positive"
                .to_owned(),
        );
    }
    let by_regions = args.regions.len() > 1;
    let by_read_mode = args.read_mode.len() > 1;
    if args.read_mode.is_empty() {
        return Err("--read-mode needs at least one mode".to_owned());
    }
    if by_read_mode && (by_regions || args.compare || args.half_load) {
        return Err(
            "a list of --read-mode runs with one region count, without --compare / --half-load"
                .to_owned(),
        );
    }
    if by_regions && (args.compare || args.half_load || args.overload) {
        return Err(
            "--compare, --half-load and --overload run with one region count; give --regions one value"
                .to_owned(),
        );
    }
    if args.overload && (args.overload_factor == 0 || args.memory_quota_mib == 0) {
        return Err("--overload-factor and --memory-quota-mib must be positive".to_owned());
    }
    let cfg = base_config(args)?;
    let mut report = Report::new(
        format!("{:?}", args.engine).to_lowercase(),
        args.stores,
        (args.regions.clone(), args.active_regions),
        args.clients,
        args.window,
        args.value_size as usize,
        args.read_ratio,
        cfg.clone(),
    );
    let counts: Vec<String> = args.regions.iter().map(|n| n.to_string()).collect();
    let active = args
        .active_regions
        .map_or(String::new(), |n| format!(" ({n} of them active)"));
    println!(
        "cluster-bench: {} stores, {} regions{active}, {} engines, {} clients x {} in flight, {}-byte values, {:.0}% reads, {:.0} s (+{:.0} s warm-up) per phase",
        args.stores,
        counts.join(","),
        report.engine,
        args.clients,
        args.window,
        args.value_size,
        args.read_ratio * 100.0,
        args.duration,
        args.warmup
    );
    println!(
        "  per store: {} raft + {} apply threads, sync_log {}, {} cores, {} allocator",
        cfg.store_pool_size,
        cfg.apply.pool_size,
        cfg.sync_log,
        report.cpus,
        if cfg!(feature = "system-alloc") {
            "system"
        } else {
            "mimalloc"
        }
    );
    if args.probe_disk && args.engine == EngineKind::Durable {
        let dir = match &args.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
                d.clone()
            }
            None => std::env::temp_dir(),
        };
        for writers in [1, args.stores] {
            let p = disk::probe(&dir, writers, Duration::from_secs(1))
                .map_err(|e| format!("--probe-disk in {}: {e}", dir.display()))?;
            println!("  disk ({}): {}", dir.display(), p.line());
            report.disk_probe.push(p);
        }
    }
    let read_mode = args.read_mode[0];
    if by_regions {
        for (index, &regions) in args.regions.iter().enumerate() {
            let plan = PhasePlan {
                name: format!("{regions} regions"),
                regions,
                cfg: cfg.clone(),
                rate: args.rate,
                read_mode,
                window: args.window,
            };
            report.phases.push(run_phase(args, &plan, index)?);
        }
        return finish_report(args, report);
    }
    if by_read_mode {
        for (index, &mode) in args.read_mode.iter().enumerate() {
            let plan = PhasePlan {
                name: format!("reads: {}", mode.name()),
                regions: args.regions[0],
                cfg: cfg.clone(),
                rate: args.rate,
                read_mode: mode,
                window: args.window,
            };
            report.phases.push(run_phase(args, &plan, index)?);
        }
        let base = report.phases[0].reads_per_sec.max(f64::MIN_POSITIVE);
        println!(
            "reads/s by read mode (ratio to {}):",
            args.read_mode[0].name()
        );
        for (mode, phase) in args.read_mode.iter().zip(&report.phases) {
            println!(
                "  {:>10}: {:>12.0} reads/s  {:>6.2}x   ({:.0} writes/s)",
                mode.name(),
                phase.reads_per_sec,
                phase.reads_per_sec / base,
                phase.writes_per_sec
            );
        }
        return finish_report(args, report);
    }
    let regions = args.regions[0];
    let main_phase = PhasePlan {
        name: "group commit".to_owned(),
        regions,
        cfg: cfg.clone(),
        rate: args.rate,
        read_mode,
        window: args.window,
    };
    let first = run_phase(args, &main_phase, 0)?;
    let peak_ops = first.writes_per_sec + first.reads_per_sec;
    report.phases.push(first);
    let mut index = 1;
    if args.half_load {
        let plan = PhasePlan {
            name: "half load".to_owned(),
            regions,
            cfg: cfg.clone(),
            rate: Some((peak_ops / 2.0).max(1.0)),
            read_mode,
            window: args.window,
        };
        report.phases.push(run_phase(args, &plan, index)?);
        index += 1;
    }
    if args.compare {
        let mut off = cfg.clone();
        off.group_commit = false;
        let plan = PhasePlan {
            name: "no group commit".to_owned(),
            regions,
            cfg: off,
            rate: args.rate,
            read_mode,
            window: args.window,
        };
        report.phases.push(run_phase(args, &plan, index)?);
        index += 1;
    }
    if args.overload {
        let mut limited = cfg.clone();
        limited.memory_quota = args.memory_quota_mib << 20;
        let plan = PhasePlan {
            name: "overload".to_owned(),
            regions,
            cfg: limited,
            rate: None,
            read_mode,
            window: args.window * args.overload_factor,
        };
        report.phases.push(run_phase(args, &plan, index)?);
        // The same overload with the default quota (a quarter of memory
        // per store): what the small quota saves.
        let plan = PhasePlan {
            name: "no quota".to_owned(),
            regions,
            cfg: cfg.clone(),
            rate: None,
            read_mode,
            window: args.window * args.overload_factor,
        };
        report.phases.push(run_phase(args, &plan, index + 1)?);
    }
    finish_report(args, report)
}

/// Prints the table, writes the plot and the JSON.
fn finish_report(args: &Args, mut report: Report) -> Result<Report, String> {
    report.peak_rss_mib = report
        .phases
        .iter()
        .filter_map(|p| p.memory.peak_rss_mib)
        .reduce(f64::max)
        .or_else(|| sys::peak_rss_kib().map(|k| k as f64 / 1024.0));
    report.print_table();
    if args.svg != "none" {
        let path = Path::new(&args.svg);
        match plot::write_svg(path, &report) {
            Ok(()) => println!("plot: {}", path.display()),
            Err(e) => eprintln!("cluster-bench: plot not written: {e}"),
        }
    }
    if let Some(dest) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| format!("json: {e}"))?;
        if dest == "-" {
            println!("{json}");
        } else {
            std::fs::write(dest, json + "\n").map_err(|e| format!("write {dest}: {e}"))?;
            println!("json: {dest}");
        }
    }
    Ok(report)
}

fn run_phase(args: &Args, plan: &PhasePlan, index: usize) -> Result<PhaseReport, String> {
    // Each phase's peak RSS is its own (the previous phase's cluster is
    // gone; its freed memory may stay resident, which only raises this
    // phase's figures).
    sys::reset_peak_rss();
    let fail = |e: cluster::Error| format!("phase '{}': {e}", plan.name);
    match args.engine {
        EngineKind::Memory => {
            let cluster =
                Cluster::memory(args.stores, plan.regions, plan.cfg.clone()).map_err(fail)?;
            drive(args, plan, cluster)
        }
        EngineKind::Durable => {
            let cluster = match &args.data_dir {
                Some(dir) => {
                    let sub = dir.join(format!("phase-{index}"));
                    if sub.exists() {
                        return Err(format!(
                            "{} already exists: give a fresh --data-dir",
                            sub.display()
                        ));
                    }
                    std::fs::create_dir_all(&sub)
                        .map_err(|e| format!("create {}: {e}", sub.display()))?;
                    Cluster::durable_in(&sub, args.stores, plan.regions, plan.cfg.clone())
                }
                None => Cluster::durable(args.stores, plan.regions, plan.cfg.clone()),
            }
            .map_err(fail)?;
            drive(args, plan, cluster)
        }
    }
}

/// The local readers' counters added over all stores.
fn lease_sum<EK: KvEngine, ER: RaftLogEngine>(cluster: &Cluster<EK, ER>) -> report::LeaseReads {
    let mut sum = report::LeaseReads::default();
    for id in cluster.store_ids() {
        if let Some(r) = cluster.local_reader(*id) {
            sum.local += r.served();
            sum.fallbacks += r.fallbacks();
            sum.raft_thread += r.raft_thread_lease_reads();
            sum.publishes += r.publishes();
        }
    }
    sum
}

/// The leader checks' counters added over all stores.
fn checks_sum<EK: KvEngine, ER: RaftLogEngine>(cluster: &Cluster<EK, ER>) -> report::LeaderChecks {
    let mut sum = report::LeaderChecks::default();
    for id in cluster.store_ids() {
        if let Some(meta) = cluster.store_meta(*id) {
            let s = meta.leader_checks().stats();
            sum.batches += s.batches_sent;
            sum.confirmed += s.batches_confirmed;
            sum.fell_back += s.batches_refused + s.batches_timed_out;
            sum.messages += s.messages_sent;
        }
    }
    sum
}

fn stats_sum<EK: KvEngine, ER: RaftLogEngine>(cluster: &Cluster<EK, ER>) -> StoreStatsSnapshot {
    let mut sum = StoreStatsSnapshot::default();
    for id in cluster.store_ids() {
        if let Some(s) = cluster.stats(*id) {
            sum.add(&s.snapshot());
        }
    }
    sum
}

fn drive<EK: KvEngine, ER: RaftLogEngine>(
    args: &Args,
    plan: &PhasePlan,
    mut cluster: Cluster<EK, ER>,
) -> Result<PhaseReport, String> {
    let started = Instant::now();
    cluster.start().map_err(|e| format!("start: {e}"))?;
    cluster
        .wait_for_leaders(Duration::from_secs(120))
        .map_err(|e| format!("leaders: {e}"))?;
    let setup = started.elapsed();
    let rss_before_load = sys::rss_kib();
    let mix = Arc::new(MessageMix::default());
    if args.message_mix {
        let m = mix.clone();
        cluster
            .transport()
            .add_filter(cluster::PredicateFilter::new(
                cluster::FilterAction::Pass,
                move |_, _, msg| {
                    m.count(msg.get_message());
                    false
                },
            ));
    }
    let regions = cluster.regions().to_vec();
    let store_ids = cluster.store_ids().to_vec();
    let leaders = regions
        .iter()
        .map(|r| cluster.leader_store(r.get_id()).unwrap_or(store_ids[0]))
        .collect();
    let sinks = store_ids
        .iter()
        .filter_map(|id| {
            cluster
                .router(*id)
                .map(|r| (*id, Arc::new(r) as Arc<dyn CommandSink>))
        })
        .collect();
    let active = load::active_regions(regions.len(), args.active_regions.unwrap_or(regions.len()));
    let active_count = active.len();
    let target = Arc::new(Target {
        sinks,
        regions: regions.clone(),
        leaders,
        active,
        readers: store_ids
            .iter()
            .filter_map(|id| cluster.local_reader(*id).map(|r| (*id, r)))
            .collect(),
    });
    let spec = LoadSpec {
        clients: args.clients,
        window: plan.window,
        value_size: args.value_size as usize,
        read_ratio: args.read_ratio,
        read_mode: plan.read_mode.mode(),
        keys: args.keys,
        rate: plan.rate,
        seed: args.seed,
        drain_timeout: Duration::from_secs(30),
        max_attempts: 50,
        batch_lease_reads: !args.unbatched_lease_reads,
    };
    let live = Arc::new(Live::default());
    let handles: Vec<_> = (0..args.clients)
        .map(|id| {
            let (spec, target, live) = (spec.clone(), target.clone(), live.clone());
            std::thread::Builder::new()
                .name(format!("bench-client-{id}"))
                .spawn(move || load::run_client(id, spec, target, live))
                .map_err(|e| format!("spawn client: {e}"))
        })
        .collect::<Result<_, _>>()?;

    // Warm-up, then the measured window, sampling once per second.
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let pb = ProgressBar::new((warmup + duration).as_millis() as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30}] {elapsed:>3} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(plan.name.clone());
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut last = (t0, 0u64, 0u64);
    let mut measure_start: Option<(Instant, Duration, StoreStatsSnapshot)> = None;
    let mut lease_start = report::LeaseReads::default();
    let mut checks_start = report::LeaderChecks::default();
    let mut msgs_start = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = Instant::now();
        let elapsed = now - t0;
        if measure_start.is_none() && elapsed >= warmup {
            live.measuring.store(true, Ordering::Relaxed);
            measure_start = Some((now, sys::process_cpu(), stats_sum(&cluster)));
            lease_start = lease_sum(&cluster);
            checks_start = checks_sum(&cluster);
            msgs_start = cluster.transport().stats().delivered;
        }
        let (w, r) = (
            live.writes.load(Ordering::Relaxed),
            live.reads.load(Ordering::Relaxed),
        );
        let dt = (now - last.0).as_secs_f64();
        if dt >= 1.0 {
            let sample = Sample {
                t: elapsed.as_secs_f64(),
                writes_per_sec: (w - last.1) as f64 / dt,
                reads_per_sec: (r - last.2) as f64 / dt,
            };
            pb.set_message(format!(
                "{:>9.0} writes/s {:>9.0} reads/s  errors {}",
                sample.writes_per_sec,
                sample.reads_per_sec,
                live.errors.load(Ordering::Relaxed)
            ));
            samples.push(sample);
            last = (now, w, r);
        }
        pb.set_position(elapsed.as_millis() as u64);
        if elapsed >= warmup + duration {
            break;
        }
    }
    live.measuring.store(false, Ordering::Relaxed);
    let end = (Instant::now(), sys::process_cpu(), stats_sum(&cluster));
    let lease_end = lease_sum(&cluster);
    let checks_end = checks_sum(&cluster);
    let msgs = cluster.transport().stats().delivered - msgs_start;
    live.stop.store(true, Ordering::Relaxed);
    let mix_counts = mix.take();
    pb.finish_and_clear();
    let (m_start, cpu_start, stats_start) =
        measure_start.ok_or_else(|| "measurement never started".to_owned())?;
    let wall = (end.0 - m_start).as_secs_f64();
    let cpu = end.1.saturating_sub(cpu_start).as_secs_f64();
    let stats = end.2.since(&stats_start);

    let mut results = Vec::new();
    for h in handles {
        results.push(
            h.join()
                .map_err(|_| "a client thread panicked".to_owned())?,
        );
    }
    let peak_rss = sys::peak_rss_kib();
    let mut memory = report::MemoryFigures {
        rss_before_load_mib: rss_before_load.map(|k| k as f64 / 1024.0),
        peak_rss_mib: peak_rss.map(|k| k as f64 / 1024.0),
        ..Default::default()
    };
    for id in &store_ids {
        if let Some(s) = cluster.stats(*id) {
            memory.quota_mib += s.memory.capacity() as f64 / (1 << 20) as f64;
            memory.quota_peak_mib += s.memory.peak() as f64 / (1 << 20) as f64;
            memory.quota_refusals += s.memory.refused();
        }
    }
    let mut phase = PhaseReport::new(
        &plan.name,
        (regions.len(), active_count),
        plan.rate,
        setup.as_secs_f64(),
        wall,
        cpu,
        stats,
        samples,
    );
    for r in &results {
        phase.add_client(r);
    }
    phase.memory = memory;
    phase.lease_reads = report::LeaseReads {
        local: lease_end.local.saturating_sub(lease_start.local),
        fallbacks: lease_end.fallbacks.saturating_sub(lease_start.fallbacks),
        raft_thread: lease_end
            .raft_thread
            .saturating_sub(lease_start.raft_thread),
        publishes: lease_end.publishes.saturating_sub(lease_start.publishes),
    };
    phase.leader_checks = report::LeaderChecks {
        batches: checks_end.batches.saturating_sub(checks_start.batches),
        confirmed: checks_end.confirmed.saturating_sub(checks_start.confirmed),
        fell_back: checks_end.fell_back.saturating_sub(checks_start.fell_back),
        messages: checks_end.messages.saturating_sub(checks_start.messages),
    };
    phase.raft_messages = msgs;
    phase.message_mix = mix_counts;
    phase.finish(store_ids.len());

    // Read every acknowledged write back from every store.
    let verified = load::verify_acked(
        &cluster,
        &target,
        &results,
        args.value_size as usize,
        Duration::from_secs(60),
    );
    phase.checked_reads = verified.checked;
    phase.verify_errors = verified.examples;
    phase.verify_failures = verified.failures;
    phase.verify_secs = verified.secs;
    println!(
        "{:>16}: {:.0} writes/s, {:.0} reads/s; verified {} acknowledged writes x {} stores in {:.1} s: {}",
        plan.name,
        phase.writes_per_sec,
        phase.reads_per_sec,
        phase.checked_reads / store_ids.len().max(1) as u64,
        store_ids.len(),
        phase.verify_secs,
        if phase.verify_failures == 0 && phase.read_mismatches == 0 {
            "all match".to_owned()
        } else {
            format!("{} MISMATCHES", phase.verify_failures + phase.read_mismatches)
        }
    );
    for e in phase
        .verify_errors
        .iter()
        .chain(phase.read_mismatch_examples.iter())
    {
        eprintln!("  {e}");
    }
    cluster.shutdown();
    Ok(phase)
}
