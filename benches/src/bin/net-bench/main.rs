//! `net-bench`: three `node` processes and a client process on loopback,
//! compared in the same run with the in-process `cluster-bench` at the same
//! settings.
//!
//! ```text
//! cargo build --release -p node -p benches --bins
//! target/release/net-bench            # 1,000 regions, 2 x 2048 writes in flight, 25 s
//! target/release/net-bench --quick    # 4 s measured
//! ```
//!
//! First `cluster-bench` runs as a child process with the same stores,
//! regions, clients, window, value size, keys and durations (its JSON
//! report is read back). Then three `node` processes start on free
//! loopback ports with durable engines in a temporary directory, one raft
//! and one apply thread each (as cluster-bench gives each store on 2
//! cores) and `--grpc-threads` tokio workers; this process keeps
//! `clients x window` writes in flight through the shipped remote client
//! (`client::grpc::AsyncClient`, which batches the commands to each node
//! into `Kv.BatchCommands` calls). Measured over `--duration` after `--warmup`: acked
//! writes/s, latency percentiles, and CPU time summed over all four
//! processes (from `/proc`), per write. Afterwards the nodes stop
//! gracefully and every acknowledged write is looked up in every node's
//! engine; a mismatch fails the run.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use engine::{FjallKvEngine, KvEngine};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

mod load;
mod nodes;

/// mimalloc, as in cluster-bench and the node binary, so that the two sides
/// differ only in what crosses the network.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A three-node cluster of `node` processes under a gRPC write load,
/// against the in-process cluster-bench.
#[derive(Debug, Parser)]
#[command(name = "net-bench", version, about, long_about = None)]
struct Args {
    /// Regions (raft groups), split evenly over the key space.
    #[arg(long, default_value_t = 1000)]
    regions: usize,
    /// Client groups: tokio worker threads of the client process, and
    /// connections per node.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Writes each client group keeps in flight.
    #[arg(long, default_value_t = 2048)]
    window: usize,
    /// Bytes per written value (at least 16).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    value_size: u64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 25.0)]
    duration: f64,
    /// Seconds of unmeasured load first.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Distinct keys written.
    #[arg(long, default_value_t = 200_000)]
    keys: usize,
    /// 4 s measured after 1 s warm-up, 50,000 keys.
    #[arg(long)]
    quick: bool,
    /// tokio worker threads of each node (gRPC server and connections).
    #[arg(long, default_value_t = 1)]
    grpc_threads: usize,
    /// Skip the in-process cluster-bench run.
    #[arg(long)]
    no_compare: bool,
    /// The `node` binary (default: beside this one).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// The `cluster-bench` binary (default: beside this one).
    #[arg(long)]
    cluster_bench_bin: Option<PathBuf>,
    /// Keep the nodes' data here (must not exist) instead of a temporary
    /// directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Write a JSON report to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seed of the clients' random choices.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

const STORES: u64 = 3;

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.quick {
        args.duration = 4.0;
        args.warmup = 1.0;
        args.keys = args.keys.min(50_000);
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("net-bench: FAILED: acknowledged writes missing (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("net-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A binary in the same directory as this one.
fn sibling(name: &str, given: &Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let p = me.with_file_name(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found: build it first (cargo build --release -p node -p benches --bins) or pass --{name}-bin",
            p.display()
        ))
    }
}

/// One side's numbers.
#[derive(Default, Clone)]
struct Side {
    writes_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    core_us_per_write: f64,
    store_core_us_per_write: f64,
    client_core_us_per_write: f64,
    cores_busy: f64,
    fsyncs_per_sec: f64,
    readies_per_fsync: f64,
    raft_messages_per_write: f64,
    messages_per_batch: Option<f64>,
    commands_per_call: Option<f64>,
    retries: Option<u64>,
    verified: String,
}

fn run(args: &Args) -> Result<bool, String> {
    if args.clients == 0 || args.window == 0 || args.regions == 0 {
        return Err("--clients, --window and --regions must be positive".to_owned());
    }
    let node_bin = sibling("node", &args.node_bin)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "net-bench: {STORES} node processes + 1 client process on loopback, {} regions, durable engines, \
         {} clients x {} in flight, {}-byte values, {:.0} s (+{:.0} s warm-up); {cpus} cores",
        args.regions, args.clients, args.window, args.value_size, args.duration, args.warmup
    );
    let in_process = if args.no_compare {
        None
    } else {
        Some(run_cluster_bench(args)?)
    };
    let (network, ok) = run_network(args, &node_bin)?;
    print_table(in_process.as_ref(), &network);
    if let Some(path) = &args.json {
        let side = |s: &Side| {
            json!({
                "writes_per_sec": s.writes_per_sec, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
                "p999_ms": s.p999_ms, "core_us_per_write": s.core_us_per_write,
                "store_core_us_per_write": s.store_core_us_per_write,
                "client_core_us_per_write": s.client_core_us_per_write,
                "cores_busy": s.cores_busy, "fsyncs_per_sec": s.fsyncs_per_sec,
                "readies_per_fsync": s.readies_per_fsync,
                "raft_messages_per_write": s.raft_messages_per_write,
                "messages_per_batch": s.messages_per_batch,
                "commands_per_call": s.commands_per_call, "retries": s.retries,
                "verified": s.verified,
            })
        };
        let report = json!({
            "regions": args.regions, "clients": args.clients, "window": args.window,
            "value_size": args.value_size, "duration": args.duration, "cpus": cpus,
            "in_process": in_process.as_ref().map(side), "network": side(&network),
        });
        std::fs::write(path, format!("{report:#}\n"))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        println!("json: {}", path.display());
    }
    println!("network writes/s: {:.0}", network.writes_per_sec);
    Ok(ok)
}

/// Runs cluster-bench with the same settings and reads its JSON report.
fn run_cluster_bench(args: &Args) -> Result<Side, String> {
    let bin = sibling("cluster-bench", &args.cluster_bench_bin)?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let json_path = dir.path().join("cluster-bench.json");
    println!("in-process: {} ...", bin.display());
    let out = Command::new(&bin)
        .args(["--stores", &STORES.to_string()])
        .args(["--regions", &args.regions.to_string()])
        .args(["--clients", &args.clients.to_string()])
        .args(["--window", &args.window.to_string()])
        .args(["--value-size", &args.value_size.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--keys", &args.keys.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--svg", "none", "--json"])
        .arg(&json_path)
        .output()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "cluster-bench failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text =
        std::fs::read_to_string(&json_path).map_err(|e| format!("read cluster-bench JSON: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("cluster-bench JSON: {e}"))?;
    let p = &v["phases"][0];
    let f = |x: &Value| x.as_f64().unwrap_or(0.0);
    let ms = |x: &Value| f(x) / 1000.0;
    let writes = f(&p["writes"]).max(1.0);
    let checked = p["checked_reads"].as_u64().unwrap_or(0);
    let failed = p["verify_failures"].as_u64().unwrap_or(0);
    Ok(Side {
        writes_per_sec: f(&p["writes_per_sec"]),
        p50_ms: ms(&p["write_latency"]["p50_us"]),
        p99_ms: ms(&p["write_latency"]["p99_us"]),
        p999_ms: ms(&p["write_latency"]["p999_us"]),
        core_us_per_write: f(&p["core_us_per_write"]),
        store_core_us_per_write: f(&p["store_core_us_per_write"]),
        client_core_us_per_write: f(&p["client_cpu_secs"]) * 1e6 / writes,
        cores_busy: f(&p["cores_used"]),
        fsyncs_per_sec: f(&p["fsyncs_per_sec"]),
        readies_per_fsync: f(&p["readies_per_fsync"]),
        raft_messages_per_write: f(&p["raft_messages_per_write"]),
        messages_per_batch: None,
        commands_per_call: None,
        retries: p["retries"].as_u64(),
        verified: format!("{}/{}", checked - failed.min(checked), checked),
    })
}

/// Sums of the nodes' counters at one moment.
#[derive(Default, Clone, Copy)]
struct NodeCounters {
    syncs: f64,
    readies: f64,
    messages: f64,
    batches: f64,
    commands: f64,
    calls: f64,
}

fn counters(nodes: &[nodes::NodeProc]) -> NodeCounters {
    let mut c = NodeCounters::default();
    for n in nodes {
        c.syncs += n.metric("raftstore_log_syncs_total");
        c.readies += n.metric("raftstore_readies_total");
        c.messages += n.metric("raft_messages_sent_total");
        c.batches += n.metric("raft_message_batches_sent_total");
        c.commands += n.metric("kv_batched_commands_total");
        c.calls += n.metric_with("kv_requests_total", "method=\"batch_commands\"");
    }
    c
}

fn run_network(args: &Args, node_bin: &Path) -> Result<(Side, bool), String> {
    let tmp;
    let dir = match &args.data_dir {
        Some(d) => {
            if d.exists() {
                return Err(format!("{} exists: give a fresh --data-dir", d.display()));
            }
            std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
            tmp.path().to_path_buf()
        }
    };
    let settings = nodes::NodeSettings {
        regions: args.regions,
        store_pool_size: 1,
        apply_pool_size: 1,
        grpc_threads: args.grpc_threads,
    };
    println!("network: {} x3 ...", node_bin.display());
    let setup = Instant::now();
    let mut procs = nodes::start(node_bin, &dir, STORES, &settings)?;
    nodes::wait_ready(&mut procs, args.regions, Duration::from_secs(120))?;
    let setup = setup.elapsed();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.clients)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let endpoints: Vec<String> = procs.iter().map(|n| n.grpc.clone()).collect();
    let client = rt
        .block_on(client::grpc::AsyncClient::connect(
            &endpoints,
            client::ClientOptions::default(),
            client::grpc::GrpcOptions::default(),
        ))
        .map_err(|e| e.to_string())?;
    let spec = load::Spec {
        clients: args.clients,
        window: args.window,
        keys: args.keys,
        value_size: args.value_size as usize,
        seed: args.seed,
    };
    let live = Arc::new(load::Live::default());
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
    ));
    let tasks: Vec<_> = (0..args.clients * args.window)
        .map(|id| {
            rt.spawn(load::task(
                id,
                spec.clone(),
                client.clone(),
                live.clone(),
                hist.clone(),
            ))
        })
        .collect();

    let cpu_all = |procs: &[nodes::NodeProc]| {
        let nodes: Duration = procs.iter().map(|n| n.cpu()).sum();
        (nodes, nodes::process_cpu(std::process::id()))
    };
    std::thread::sleep(Duration::from_secs_f64(args.warmup.max(0.0)));
    live.measuring.store(true, Ordering::Relaxed);
    let (t0, cpu0, c0) = (Instant::now(), cpu_all(&procs), counters(&procs));
    let end = t0 + Duration::from_secs_f64(args.duration.max(0.1));
    let mut last = (t0, 0u64);
    while Instant::now() < end {
        std::thread::sleep(
            Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())),
        );
        let (now, w) = (Instant::now(), live.writes.load(Ordering::Relaxed));
        eprint!(
            "\r  {:>5.1} s  {:>9.0} writes/s  given up {}   ",
            (now - t0).as_secs_f64(),
            (w - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9),
            live.given_up.load(Ordering::Relaxed)
        );
        last = (now, w);
    }
    live.measuring.store(false, Ordering::Relaxed);
    let (t1, cpu1, c1) = (Instant::now(), cpu_all(&procs), counters(&procs));
    eprintln!();
    live.stop.store(true, Ordering::Relaxed);
    let results: Vec<load::TaskResult> = rt.block_on(async {
        let mut out = Vec::new();
        for t in tasks {
            if let Ok(r) = t.await {
                out.push(r);
            }
        }
        out
    });
    drop(client);
    rt.shutdown_timeout(Duration::from_secs(2));

    let wall = (t1 - t0).as_secs_f64();
    let writes = live.writes.load(Ordering::Relaxed);
    let node_cpu = (cpu1.0 - cpu0.0).as_secs_f64();
    let client_cpu = (cpu1.1 - cpu0.1).as_secs_f64();
    let per_write = |secs: f64| secs * 1e6 / (writes.max(1) as f64);
    let h = hist
        .lock()
        .map_err(|_| "histogram lock poisoned".to_owned())?;
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    let syncs = c1.syncs - c0.syncs;
    let mut side = Side {
        writes_per_sec: writes as f64 / wall,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        core_us_per_write: per_write(node_cpu + client_cpu),
        store_core_us_per_write: per_write(node_cpu),
        client_core_us_per_write: per_write(client_cpu),
        cores_busy: (node_cpu + client_cpu) / wall,
        fsyncs_per_sec: syncs / wall,
        readies_per_fsync: (c1.readies - c0.readies) / syncs.max(1.0),
        raft_messages_per_write: (c1.messages - c0.messages) / writes.max(1) as f64,
        messages_per_batch: Some((c1.messages - c0.messages) / (c1.batches - c0.batches).max(1.0)),
        commands_per_call: Some((c1.commands - c0.commands) / (c1.calls - c0.calls).max(1.0)),
        retries: None,
        verified: String::new(),
    };
    drop(h);

    // Once every node has applied the same log, stop them and look every
    // acknowledged write up in every engine.
    let converged = nodes::wait_applied(&procs, Duration::from_secs(120))?;
    for n in procs.iter_mut() {
        n.stop(Duration::from_secs(30))?;
    }
    let check = Instant::now();
    let mut checked = 0u64;
    let mut missing = Vec::new();
    for n in &procs {
        let kv = FjallKvEngine::open_existing(n.data_dir.join("kv")).map_err(|e| e.to_string())?;
        for r in &results {
            for (&k, &seq) in &r.acked {
                checked += 1;
                let want = load::value_bytes(k, seq, args.value_size as usize);
                let got = kv.get(&load::key_bytes(k)).map_err(|e| e.to_string())?;
                if got.as_deref() != Some(&want[..]) {
                    missing.push(format!(
                        "node {}: key index {k}: expected write #{seq}, found {got:?}",
                        n.id
                    ));
                }
            }
        }
    }
    side.verified = format!("{}/{checked}", checked - missing.len() as u64);
    println!(
        "network: {:.0} writes/s; setup {:.1} s; followers caught up in {:.1} s; verified {} acknowledged writes x {STORES} nodes in {:.1} s: {}",
        side.writes_per_sec,
        setup.as_secs_f64(),
        converged.as_secs_f64(),
        checked / STORES,
        check.elapsed().as_secs_f64(),
        if missing.is_empty() { "all match".to_owned() } else { format!("{} MISMATCHES", missing.len()) }
    );
    for m in missing.iter().take(10) {
        eprintln!("  {m}");
    }
    let given_up = live.given_up.load(Ordering::Relaxed);
    if given_up > 0 {
        println!("  {given_up} writes the client gave up on (their keys are not checked)");
    }
    Ok((side, missing.is_empty()))
}

fn print_table(a: Option<&Side>, b: &Side) {
    println!();
    println!(
        "{:<28}{:>14}{:>14}{:>10}",
        "", "in-process", "network", "ratio"
    );
    println!("{}", "-".repeat(66));
    let row = |name: &str, f: &dyn Fn(&Side) -> f64, digits: usize| {
        let fmt = |v: f64| format!("{v:.digits$}");
        match a {
            Some(a) => {
                let (x, y) = (f(a), f(b));
                let ratio = if x.abs() > 1e-12 {
                    format!("{:.2}", y / x)
                } else {
                    "-".to_owned()
                };
                println!("{name:<28}{:>14}{:>14}{ratio:>10}", fmt(x), fmt(y));
            }
            None => println!("{name:<28}{:>14}{:>14}{:>10}", "-", fmt(f(b)), "-"),
        }
    };
    row("acked writes/s", &|s| s.writes_per_sec, 0);
    row("write p50 (ms)", &|s| s.p50_ms, 2);
    row("write p99 (ms)", &|s| s.p99_ms, 2);
    row("write p999 (ms)", &|s| s.p999_ms, 2);
    row("CPU core-µs / write", &|s| s.core_us_per_write, 1);
    row(
        "  of which stores / nodes",
        &|s| s.store_core_us_per_write,
        1,
    );
    row("  of which client", &|s| s.client_core_us_per_write, 1);
    row("cores busy", &|s| s.cores_busy, 2);
    row("raft log fsyncs/s", &|s| s.fsyncs_per_sec, 0);
    row("Readies / fsync", &|s| s.readies_per_fsync, 1);
    row("raft messages / write", &|s| s.raft_messages_per_write, 2);
    println!(
        "{:<28}{:>14}{:>14}",
        "raft messages / batch",
        "-",
        b.messages_per_batch
            .map_or("-".to_owned(), |m| format!("{m:.1}"))
    );
    println!(
        "{:<28}{:>14}{:>14}",
        "client commands / gRPC call",
        "-",
        b.commands_per_call
            .map_or("-".to_owned(), |m| format!("{m:.1}"))
    );
    let retries = |s: &Side| s.retries.map_or("-".to_owned(), |r| r.to_string());
    println!(
        "{:<28}{:>14}{:>14}",
        "retries",
        a.map_or("-".to_owned(), retries),
        retries(b)
    );
    println!(
        "{:<28}{:>14}{:>14}",
        "verified (store x key)",
        a.map_or("-".to_owned(), |a| a.verified.clone()),
        b.verified
    );
}
