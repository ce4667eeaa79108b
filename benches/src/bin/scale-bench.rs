//! `scale-bench`: what a store costs per region when it holds very many
//! regions and almost all of them are idle.
//!
//! ```text
//! cargo run --release -p benches --bin scale-bench                  # 100,000 regions x 3 stores
//! cargo run --release -p benches --bin scale-bench -- --quick       # 30,000 regions, under a minute
//! cargo run --release -p benches --bin scale-bench -- --regions 1000000 --engine memory
//! ```
//!
//! Three stores in one process (durable engines in a temporary directory
//! by default, `--engine memory` for in-memory ones) hold `--regions`
//! regions, each replicated on every store. In order, the bench:
//!
//! 1. bootstraps and starts the stores and waits until every region has a
//!    leader (`setup s`, with a progress bar);
//! 2. lets the regions go quiet: with hibernation on
//!    (`raftstore::Config::hibernate_regions`, the default), until every
//!    replica sleeps (or `--settle-secs` pass), and measures the resident memory
//!    the regions added (`bytes/replica`: RSS growth since before the
//!    cluster was made, over the number of region replicas: everything in,
//!    raft state, FSMs, mailboxes, engines' caches);
//! 3. measures the process CPU over `--idle-secs` with nothing to do
//!    (`idle cores`);
//! 4. writes once to `--wake-samples` sleeping regions, one at a time, and
//!    takes the p99 of write-to-acknowledgement (`wake ms`);
//! 5. sends one message to every peer of one store through its router
//!    (`broadcast_normal`) and times until every peer has handled it
//!    (`broadcast ms`: a command for no region, answered at once);
//! 6. runs cluster-bench's load on `--active-percent` of the regions for
//!    `--load-secs` and reads every acknowledged write back from every
//!    store (`load ...` lines);
//! 7. stops every store, reopens them from their engines and waits until
//!    every region has a leader again (`restart s`, progress bar; `restart
//!    stores started s` of it until every store had loaded its peers,
//!    `restart core-s` the process CPU it took; `restart raft rounds` and
//!    `restart raft log syncs` the raft poll rounds and raft log fsyncs of
//!    every store from its start until the figures are read).
//!
//! `--restart-only` runs steps 1, 2 and 7 only.
//!
//! The stores start at once (setup and restart), each loading its peers
//! on its own thread, as separate machines would; `--sequential-start`
//! starts them one after another instead (each store's regions campaign
//! while the next one loads), as this bench did before 2026-12-04.
//!
//! The report is one `name: value` line per figure, ending with
//! `setup s`, `bytes/replica`, `idle cores`, `wake ms`, `restart s`,
//! `broadcast ms` and `replicas`, in that order. A lost acknowledged
//! write fails the run (exit code 1).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::load::{self, Live, LoadSpec, Target};
use benches::sys;
use clap::{Parser, ValueEnum};
use cluster::Cluster;
use engine::{KvEngine, RaftLogEngine};
use indicatif::{ProgressBar, ProgressStyle};
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, Request};
use kvproto_lite::util;
use raftstore::{Callback, CommandSink, Config, PeerMsg, RaftCommand};

/// mimalloc, as in cluster-bench (what a service embedding the stores
/// would choose), so the memory figures are comparable.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Which engines the stores use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineKind {
    /// raft-engine for raft logs + fjall for the state machine, fsynced.
    Durable,
    /// In-memory engines.
    Memory,
}

/// Many regions in one process, mostly idle: setup, memory, idle CPU,
/// wake-up latency, broadcast and restart.
#[derive(Debug, Parser)]
#[command(name = "scale-bench", version, about, long_about = None)]
struct Args {
    /// Regions (each replicated on every store).
    #[arg(long, default_value_t = 100_000)]
    regions: usize,
    /// Stores in the process.
    #[arg(long, default_value_t = 3)]
    stores: usize,
    /// Storage engines.
    #[arg(long, value_enum, default_value_t = EngineKind::Durable)]
    engine: EngineKind,
    /// A short run (under a minute): 30,000 regions unless `--regions` is
    /// given, 5 s idle window, 100 wake samples, 3 s of load.
    #[arg(long)]
    quick: bool,
    /// Seconds of idle CPU measurement.
    #[arg(long, default_value_t = 10.0)]
    idle_secs: f64,
    /// Longest wait for the regions to go quiet before measuring memory
    /// and idle CPU (with hibernation on, until every replica sleeps).
    #[arg(long, default_value_t = 30.0)]
    settle_secs: f64,
    /// Sleeping regions written to, one at a time, for `wake ms`.
    #[arg(long, default_value_t = 200)]
    wake_samples: usize,
    /// Percentage of regions that get cluster-bench's load.
    #[arg(long, default_value_t = 1.0)]
    active_percent: f64,
    /// Seconds of load (after one second of warm-up).
    #[arg(long, default_value_t = 5.0)]
    load_secs: f64,
    /// Client threads of the load.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Commands each client keeps in flight.
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// raftstore::Config fields as JSON, e.g. '{"hibernate_regions":false}'.
    #[arg(long)]
    config: Option<String>,
    /// Only set up, settle, stop and restart (no idle, wake, broadcast or
    /// load phase): for working on the restart. The skipped figures print
    /// as `skipped`.
    #[arg(long)]
    restart_only: bool,
    /// Start the stores one after another, each loading its peers once
    /// the one before it runs (the bench's behaviour before 2026-12-04).
    /// By default they start at once, each on its own thread, as separate
    /// machines restart independently.
    #[arg(long)]
    sequential_start: bool,
    /// Longest wait for every region to have a leader (setup, restart).
    #[arg(long, default_value_t = 600.0)]
    leader_timeout_secs: f64,
}

/// Every figure of a run, in the order they are printed.
#[derive(Default)]
struct Figures {
    lines: Vec<(String, String)>,
}

impl Figures {
    fn push(&mut self, name: &str, value: impl std::fmt::Display) {
        self.lines.push((name.to_owned(), value.to_string()));
    }

    fn print(&self) {
        for (name, value) in &self.lines {
            println!("{name}: {value}");
        }
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.quick {
        if !std::env::args().any(|a| a == "--regions" || a.starts_with("--regions=")) {
            args.regions = 30_000;
        }
        args.idle_secs = args.idle_secs.min(5.0);
        args.wake_samples = args.wake_samples.min(100);
        args.load_secs = args.load_secs.min(3.0);
        args.settle_secs = args.settle_secs.min(15.0);
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("scale-bench: FAILED: acknowledged writes were lost (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("scale-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(args: &Args) -> Result<Config, String> {
    let mut cfg = match &args.config {
        Some(json) => serde_json::from_str::<Config>(json).map_err(|e| format!("--config: {e}"))?,
        None => Config::default(),
    };
    let explicit = |field: &str| {
        args.config
            .as_deref()
            .is_some_and(|c| c.contains(&format!("\"{field}\"")))
    };
    // The stores share the process's cores, as in cluster-bench.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = (cpus / args.stores.max(1)).max(1);
    if !explicit("store_pool_size") {
        cfg.store_pool_size = share;
    }
    if !explicit("pool_size") {
        cfg.apply.pool_size = share;
    }
    cfg.validate().map_err(|e| format!("config: {e}"))?;
    Ok(cfg)
}

fn run(args: &Args) -> Result<bool, String> {
    if args.regions == 0 || args.stores == 0 || args.clients == 0 || args.window == 0 {
        return Err("--regions, --stores, --clients and --window must be positive".to_owned());
    }
    if !(0.0..=100.0).contains(&args.active_percent) {
        return Err("--active-percent must be within 0..=100".to_owned());
    }
    let cfg = config(args)?;
    println!(
        "scale-bench: {} stores x {} regions = {} replicas, {:?} engines, {} raft + {} apply threads per store, stores started {}",
        args.stores,
        args.regions,
        args.stores * args.regions,
        args.engine,
        cfg.store_pool_size,
        cfg.apply.pool_size,
        if args.sequential_start {
            "one after another"
        } else {
            "at once"
        }
    );
    let rss_before = sys::rss_kib().unwrap_or(0);
    match args.engine {
        EngineKind::Memory => {
            let c = Cluster::memory(args.stores, args.regions, cfg).map_err(|e| e.to_string())?;
            measure(args, c, rss_before)
        }
        EngineKind::Durable => {
            let c = Cluster::durable(args.stores, args.regions, cfg).map_err(|e| e.to_string())?;
            measure(args, c, rss_before)
        }
    }
}

/// Whether the stores of this run hibernate idle regions.
fn cfg_hibernates(args: &Args) -> Result<bool, String> {
    Ok(config(args)?.hibernate_regions)
}

fn bar(len: u64, prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_owned());
    pb
}

/// How long [`start_all`] took.
struct Started {
    /// Until every store was running (peers loaded from the engines).
    stores: Duration,
    /// Until every region had a leader.
    led: Duration,
}

/// Starts every store (bootstrapping on the first start) and waits until
/// every region has a leader, with a progress bar; returns the time taken.
fn start_all<EK: KvEngine, ER: RaftLogEngine>(
    args: &Args,
    cluster: &mut Cluster<EK, ER>,
    prefix: &str,
) -> Result<Started, String> {
    let started = Instant::now();
    let pb = bar(cluster.regions().len() as u64, prefix);
    if args.sequential_start {
        for id in cluster.store_ids().to_vec() {
            pb.set_message(format!("starting store {id}"));
            cluster
                .start_store(id)
                .map_err(|e| format!("start store {id}: {e}"))?;
        }
    } else {
        pb.set_message("starting the stores".to_owned());
        let ids = cluster.store_ids().to_vec();
        cluster
            .start_stores(&ids)
            .map_err(|e| format!("start stores {ids:?}: {e}"))?;
    }
    let stores = started.elapsed();
    pb.set_message("electing leaders".to_owned());
    let ids: Vec<u64> = cluster.regions().iter().map(|r| r.get_id()).collect();
    let deadline = started + Duration::from_secs_f64(args.leader_timeout_secs);
    // Regions known to have a leader are not looked at again, and none is
    // looked at before the stores lead as many regions as there are (a
    // count each store keeps without a lock): looking up every region's
    // leader every 100 ms takes the lock the peers publish leadership
    // under, and took about 8% of the process CPU of a 30,000-region
    // restart (perf).
    let mut missing = ids;
    let total = cluster.regions().len();
    loop {
        let led: usize = cluster
            .store_ids()
            .iter()
            .filter_map(|id| cluster.store_meta(*id))
            .map(|m| m.leader_count())
            .sum();
        if led >= total {
            missing.retain(|id| cluster.leader_store(*id).is_none());
            pb.set_position((total - missing.len()) as u64);
        } else {
            pb.set_position(led as u64);
        }
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            pb.abandon();
            return Err(format!(
                "{}: {} regions still without a leader after {:.0} s",
                prefix,
                missing.len(),
                args.leader_timeout_secs
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pb.finish_and_clear();
    Ok(Started {
        stores,
        led: started.elapsed(),
    })
}

fn measure<EK: KvEngine, ER: RaftLogEngine>(
    args: &Args,
    mut cluster: Cluster<EK, ER>,
    rss_before: u64,
) -> Result<bool, String> {
    let mut figures = Figures::default();
    let hibernate = cfg_hibernates(args)?;
    let replicas = (args.regions * args.stores) as u64;

    // 1. Setup.
    let msgs_before_setup = cluster.transport().stats().delivered;
    let cpu_before_setup = sys::process_cpu();
    let setup = start_all(args, &mut cluster, "setup")?;
    figures.push(
        "setup raft messages per region",
        format!(
            "{:.1}",
            (cluster.transport().stats().delivered - msgs_before_setup) as f64
                / args.regions as f64
        ),
    );
    figures.push(
        "setup core-s",
        format!(
            "{:.1}",
            sys::process_cpu()
                .saturating_sub(cpu_before_setup)
                .as_secs_f64()
        ),
    );

    // 2. Quiet, then memory.
    let (settled, awake) = settle(args, &cluster, hibernate);
    figures.push("hibernate regions", hibernate);
    figures.push("settle s", format!("{:.1}", settled.as_secs_f64()));
    figures.push("awake replicas", awake);
    let rss_idle = sys::rss_kib().unwrap_or(0);
    let bytes_per_replica = rss_idle.saturating_sub(rss_before) * 1024 / replicas.max(1);
    figures.push("rss MiB", rss_idle / 1024);

    // 3.-6. Idle CPU, wake-up latency, broadcast, load (skipped with
    // `--restart-only`).
    let mut load_ok = true;
    let mut idle_cores = None;
    let mut wake = None;
    let mut broadcast_time = None;
    if !args.restart_only {
        // 3. Idle CPU and messages.
        let cpu0 = sys::process_cpu();
        let msgs0 = cluster.transport().stats().delivered;
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(args.idle_secs.max(0.1)));
        let idle_wall = t0.elapsed().as_secs_f64();
        idle_cores = Some(sys::process_cpu().saturating_sub(cpu0).as_secs_f64() / idle_wall);
        let idle_msgs = (cluster.transport().stats().delivered - msgs0) as f64 / idle_wall;
        figures.push("idle raft messages/s", format!("{idle_msgs:.0}"));

        // 4. Wake-up latency: one write at a time to regions spread evenly.
        let samples = wake_latencies(args, &cluster)?;
        figures.push(
            "wake p50 ms",
            format!("{:.2}", percentile(&samples, 0.5).as_secs_f64() * 1e3),
        );
        figures.push(
            "wake max ms",
            format!("{:.2}", percentile(&samples, 1.0).as_secs_f64() * 1e3),
        );
        wake = Some(samples);

        // 5. Broadcast to every peer of the first store.
        broadcast_time = Some(broadcast(&cluster)?);
        figures.push("awake replicas after broadcast", awake_replicas(&cluster));

        // 6. Load on a few regions.
        load_ok = run_load(args, &cluster, &mut figures)?;
    }

    // 7. Restart.
    let stop_started = Instant::now();
    cluster.shutdown();
    figures.push(
        "stop s",
        format!("{:.2}", stop_started.elapsed().as_secs_f64()),
    );
    let msgs_before_restart = cluster.transport().stats().delivered;
    let cpu_before_restart = sys::process_cpu();
    eprintln!("scale-bench: restarting the stores");
    let restart = start_all(args, &mut cluster, "restart")?;
    let restart_cpu = sys::process_cpu().saturating_sub(cpu_before_restart);
    figures.push(
        "restart raft messages per region",
        format!(
            "{:.1}",
            (cluster.transport().stats().delivered - msgs_before_restart) as f64
                / args.regions as f64
        ),
    );
    figures.push(
        "restart core-s",
        format!("{:.1}", restart_cpu.as_secs_f64()),
    );
    figures.push(
        "restart stores started s",
        format!("{:.2}", restart.stores.as_secs_f64()),
    );
    let (mut rounds, mut syncs) = (0, 0);
    for id in cluster.store_ids() {
        if let Some(s) = cluster.stats(*id) {
            let s = s.snapshot();
            rounds += s.rounds;
            syncs += s.log_syncs;
        }
    }
    figures.push("restart raft rounds", rounds);
    figures.push("restart raft log syncs", syncs);
    cluster.shutdown();

    figures.push("setup s", format!("{:.2}", setup.led.as_secs_f64()));
    figures.push("bytes/replica", bytes_per_replica);
    let skipped = || "skipped (--restart-only)".to_owned();
    figures.push(
        "idle cores",
        idle_cores.map_or_else(skipped, |c| format!("{c:.3}")),
    );
    figures.push(
        "wake ms",
        wake.as_deref().map_or_else(skipped, |w| {
            format!("{:.2}", percentile(w, 0.99).as_secs_f64() * 1e3)
        }),
    );
    figures.push("restart s", format!("{:.2}", restart.led.as_secs_f64()));
    figures.push(
        "broadcast ms",
        broadcast_time.map_or_else(skipped, |b| format!("{:.2}", b.as_secs_f64() * 1e3)),
    );
    figures.push("replicas", replicas);
    figures.print();
    Ok(load_ok)
}

/// Region replicas still awake (ticked) over all running stores.
fn awake_replicas<EK: KvEngine, ER: RaftLogEngine>(cluster: &Cluster<EK, ER>) -> usize {
    cluster
        .store_ids()
        .iter()
        .filter_map(|id| cluster.awake_regions(*id))
        .map(|a| a.len())
        .sum()
}

/// Waits until the regions are quiet: with hibernation on, until no
/// replica is awake; otherwise until no raft message crossed between the
/// stores for a whole second; `--settle-secs` at most either way. Returns
/// the time waited and the replicas still awake.
fn settle<EK: KvEngine, ER: RaftLogEngine>(
    args: &Args,
    cluster: &Cluster<EK, ER>,
    hibernate: bool,
) -> (Duration, usize) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.settle_secs.max(0.0));
    let pb = bar(
        (cluster.regions().len() * cluster.store_ids().len()) as u64,
        "settle",
    );
    pb.set_message("replicas asleep".to_owned());
    let total = cluster.regions().len() * cluster.store_ids().len();
    let mut last = cluster.transport().stats().delivered;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(if hibernate { 100 } else { 1000 }));
        let awake = awake_replicas(cluster);
        pb.set_position(total.saturating_sub(awake) as u64);
        if hibernate {
            if awake == 0 {
                break;
            }
        } else {
            let now = cluster.transport().stats().delivered;
            if now == last {
                break;
            }
            last = now;
        }
    }
    pb.finish_and_clear();
    (started.elapsed(), awake_replicas(cluster))
}

/// The `q` quantile of `samples` (sorted in place).
fn percentile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Writes one key to each of `--wake-samples` regions (spread evenly over
/// the key space), one at a time, at the region's leader; returns each
/// write's time to acknowledgement.
fn wake_latencies<EK: KvEngine, ER: RaftLogEngine>(
    args: &Args,
    cluster: &Cluster<EK, ER>,
) -> Result<Vec<Duration>, String> {
    let regions = cluster.regions().to_vec();
    let picks = load::active_regions(regions.len(), args.wake_samples);
    let mut out = Vec::with_capacity(picks.len());
    for i in picks {
        let region = &regions[i];
        let store = cluster
            .leader_store(region.get_id())
            .ok_or_else(|| format!("region {} has no leader", region.get_id()))?;
        let peer = util::find_peer(region, store)
            .ok_or_else(|| format!("region {} has no peer on store {store}", region.get_id()))?
            .clone();
        let mut cmd = util::new_cmd_request(region, peer);
        let mut put = Request::default();
        put.set_cmd_type(CmdType::Put);
        // The start key followed by zeros: inside the region (the first
        // region starts at the empty key), and not one of the load's keys.
        let mut key = region.get_start_key().to_vec();
        key.extend_from_slice(&[0u8; 9]);
        put.mut_put().set_key(key);
        put.mut_put().set_value(b"1".to_vec());
        cmd.mut_requests().push(put);
        let started = Instant::now();
        let resp = cluster
            .call(store, cmd, Duration::from_secs(30))
            .map_err(|e| format!("wake write to region {}: {e}", region.get_id()))?;
        if resp.get_header().has_error() {
            return Err(format!(
                "wake write to region {}: {:?}",
                region.get_id(),
                resp.get_header().get_error()
            ));
        }
        out.push(started.elapsed());
    }
    Ok(out)
}

/// Sends one command to every peer of the first store through the
/// router's broadcast and waits until every peer has answered it (a
/// command for region 0, which no peer has, is refused at once).
fn broadcast<EK: KvEngine, ER: RaftLogEngine>(
    cluster: &Cluster<EK, ER>,
) -> Result<Duration, String> {
    let store = cluster.store_ids()[0];
    let router = cluster
        .router(store)
        .ok_or_else(|| format!("store {store} is not running"))?;
    let expected = cluster.regions().len();
    let answered = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let sent = AtomicU64::new(0);
    router.broadcast_normal(|| {
        sent.fetch_add(1, Ordering::Relaxed);
        let answered = answered.clone();
        let mut request = RaftCmdRequest::default();
        request.mut_header().set_region_id(0);
        PeerMsg::RaftCommand(Box::new(RaftCommand {
            request,
            callback: Callback::new(move |_| {
                answered.fetch_add(1, Ordering::Release);
            }),
        }))
    });
    let sent = sent.load(Ordering::Relaxed) as usize;
    if sent < expected {
        return Err(format!(
            "broadcast reached {sent} peers, the store has {expected} regions"
        ));
    }
    let deadline = started + Duration::from_secs(120);
    while answered.load(Ordering::Acquire) < sent {
        if Instant::now() >= deadline {
            return Err(format!(
                "broadcast: {} of {sent} peers answered within 120 s",
                answered.load(Ordering::Acquire)
            ));
        }
        std::thread::yield_now();
    }
    Ok(started.elapsed())
}

/// cluster-bench's load on `--active-percent` of the regions; adds the
/// `load ...` figures and returns whether every acknowledged write was
/// read back from every store.
fn run_load<EK: KvEngine, ER: RaftLogEngine>(
    args: &Args,
    cluster: &Cluster<EK, ER>,
    figures: &mut Figures,
) -> Result<bool, String> {
    let regions = cluster.regions().to_vec();
    let store_ids = cluster.store_ids().to_vec();
    let active_n = ((regions.len() as f64 * args.active_percent / 100.0).round() as usize).max(1);
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
    let target = Arc::new(Target {
        sinks,
        regions: regions.clone(),
        leaders,
        active: load::active_regions(regions.len(), active_n),
        readers: std::collections::HashMap::new(),
    });
    let spec = LoadSpec {
        clients: args.clients,
        window: args.window,
        value_size: 16,
        read_ratio: 0.0,
        read_mode: kvproto_lite::raft_cmdpb::ReadMode::Log,
        keys: 50_000,
        rate: None,
        seed: 42,
        drain_timeout: Duration::from_secs(30),
        max_attempts: 50,
        batch_lease_reads: false,
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
    std::thread::sleep(Duration::from_secs(1));
    live.measuring.store(true, Ordering::Relaxed);
    let (t0, cpu0) = (Instant::now(), sys::process_cpu());
    std::thread::sleep(Duration::from_secs_f64(args.load_secs.max(0.1)));
    live.measuring.store(false, Ordering::Relaxed);
    let (wall, cpu) = (
        t0.elapsed().as_secs_f64(),
        sys::process_cpu().saturating_sub(cpu0).as_secs_f64(),
    );
    live.stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for h in handles {
        results.push(
            h.join()
                .map_err(|_| "a client thread panicked".to_owned())?,
        );
    }
    let writes: u64 = results.iter().map(|r| r.writes).sum();
    let mut hist = None::<hdrhistogram::Histogram<u64>>;
    for r in &results {
        match &mut hist {
            Some(h) => h
                .add(&r.write_hist)
                .map_err(|e| format!("latency histogram: {e}"))?,
            None => hist = Some(r.write_hist.clone()),
        }
    }
    let p99_ms = hist
        .as_ref()
        .filter(|h| !h.is_empty())
        .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0);
    let verified = load::verify_acked(cluster, &target, &results, 16, Duration::from_secs(60));
    for e in &verified.examples {
        eprintln!("  {e}");
    }
    figures.push("load active regions", active_n);
    figures.push("load writes/s", format!("{:.0}", writes as f64 / wall));
    figures.push("load write p99 ms", format!("{p99_ms:.2}"));
    figures.push(
        "load core-µs per write",
        format!("{:.1}", cpu * 1e6 / writes.max(1) as f64),
    );
    figures.push(
        "load verified",
        format!(
            "{}/{}",
            verified.checked - verified.failures,
            verified.checked
        ),
    );
    Ok(verified.failures == 0)
}
