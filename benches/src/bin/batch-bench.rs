//! Compares the batch system with one tokio task per actor on the same
//! workload: 10,000 actors, one producer sending round-robin, 2 threads.
//!
//! Usage: `batch-bench [--quick] [--actors N] [--messages N] [--reps N]
//! [--pool N] [--sync-us N] [--no-group-commit] [--only batch|tokio]`.
//!
//! First (unless `--no-group-commit`) a short group-commit variant: a
//! simulated 5 µs sync per poll round (batch system) or per task wake
//! (tokio). Then the main comparison, plain delivery (or with `--sync-us`
//! per round / wake). Prints each run, the median msgs/s of each runtime,
//! the producer thread's CPU time per message while it sent (what a send
//! costs the sender: on a machine whose cores are busy with other work,
//! elapsed-time rates swing by 2x from one run to the next, this much
//! less), and as its last line `ratio: X.XX` (batch system / baseline) for the
//! main comparison. `--only` runs one side of the main workload, for
//! profiling. `--quick` finishes in well under 30 s.
//!
//! Both runtimes run on mimalloc (`--features system-alloc`: glibc malloc).

use std::process::ExitCode;
use std::time::Duration;

use benches::{run_batch_system, run_tokio_baseline, Workload};

/// mimalloc for both runtimes, as in `cluster-bench` and the node binary:
/// mailboxes and the scheduler queue allocate on the producer and free on
/// a poller (tokio's channel recycles its blocks instead), and glibc's
/// arenas make that cross-thread free contend on an arena lock. Build with
/// `--features system-alloc` to measure with glibc malloc.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    workload: Workload,
    reps: usize,
    /// Run only one side (for profiling); the ratio line is then omitted.
    only: Option<String>,
    /// Also run the group-commit variant first.
    group_commit: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut workload = Workload {
        actors: 10_000,
        messages: 20_000_000,
        pool_size: 2,
        max_batch_size: 256,
        sync_cost: Duration::ZERO,
    };
    let mut reps = 7;
    let mut only = None;
    let mut group_commit = true;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match arg.as_str() {
            "--quick" => {
                workload.messages = 4_000_000;
                reps = 3;
            }
            "--actors" => workload.actors = value("--actors")?.max(1) as usize,
            "--messages" => workload.messages = value("--messages")?,
            "--reps" => reps = value("--reps")?.max(1) as usize,
            "--pool" => workload.pool_size = value("--pool")?.max(1) as usize,
            "--sync-us" => workload.sync_cost = Duration::from_micros(value("--sync-us")?),
            "--no-group-commit" => group_commit = false,
            "--only" => only = Some(it.next().ok_or("--only needs batch or tokio")?),
            "--bench" => {} // passed by `cargo bench`; ignored
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        workload,
        reps,
        only,
        group_commit,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("batch-bench: {e}");
            eprintln!("usage: batch-bench [--quick] [--actors N] [--messages N] [--reps N] [--pool N] [--sync-us N] [--no-group-commit] [--only batch|tokio]");
            return ExitCode::from(2);
        }
    };
    let w = args.workload;
    if let Some(side) = args.only.as_deref() {
        for rep in 0..args.reps {
            let r = match side {
                "batch" => run_batch_system(&w),
                "tokio" => run_tokio_baseline(&w),
                other => {
                    eprintln!("batch-bench: --only {other}: expected batch or tokio");
                    return ExitCode::from(2);
                }
            };
            println!(
                "rep {rep}: {side} {:.2}M msgs/s, producer {:.0} ns/msg on CPU",
                r.msgs_per_sec() / 1e6,
                r.producer_ns_per_msg()
            );
        }
        return ExitCode::SUCCESS;
    }
    if args.group_commit {
        // Secondary: the same delivery plus a simulated 5 µs sync per group
        // commit (per poll round / per task wake), fewer messages.
        let gc = Workload {
            messages: (w.messages / 20).max(1),
            sync_cost: Duration::from_micros(5),
            ..w
        };
        println!(
            "group commit: {} actors, {} messages, 5 us simulated sync per round (batch) / per task wake (tokio)",
            gc.actors, gc.messages
        );
        let (b, t, _) = compare(&gc, args.reps.min(3));
        println!(
            "group commit: batch-system {:.0} msgs/s, tokio baseline {:.0} msgs/s, ratio {:.2}",
            b,
            t,
            b / t.max(1.0)
        );
    }
    println!(
        "workload: {} actors, {} messages round-robin from 1 producer, {} threads, {} reps{}",
        w.actors,
        w.messages,
        w.pool_size,
        args.reps,
        if w.sync_cost.is_zero() {
            String::new()
        } else {
            format!(", {} us simulated sync", w.sync_cost.as_micros())
        }
    );
    let (b, t, (bp, tp)) = compare(&w, args.reps);
    println!("batch-system: {:.0} msgs/s (median)", b);
    println!("tokio baseline: {:.0} msgs/s (median)", t);
    println!(
        "producer CPU per message (median): batch-system {:.0} ns, tokio baseline {:.0} ns",
        bp, tp
    );
    println!("ratio: {:.2}", b / t.max(1.0));
    ExitCode::SUCCESS
}

/// Runs both sides `reps` times, alternating so slow phases of a noisy
/// machine hit both; returns the median msgs/s of each, and the median
/// producer CPU nanoseconds per message of each.
fn compare(w: &Workload, reps: usize) -> (f64, f64, (f64, f64)) {
    let (mut batch, mut tokio) = (Vec::new(), Vec::new());
    let (mut batch_cpu, mut tokio_cpu) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let b = run_batch_system(w);
        let t = run_tokio_baseline(w);
        let per_sync = |r: &benches::RunStats| {
            if w.sync_cost.is_zero() {
                String::new()
            } else {
                format!(", {:.1} msgs/sync", r.msgs_per_sync())
            }
        };
        println!(
            "  rep {rep}: batch-system {:>7.2}M msgs/s ({:.3} s{}, producer {:.0} ns/msg), tokio baseline {:>7.2}M msgs/s ({:.3} s{}, producer {:.0} ns/msg)",
            b.msgs_per_sec() / 1e6,
            b.elapsed.as_secs_f64(),
            per_sync(&b),
            b.producer_ns_per_msg(),
            t.msgs_per_sec() / 1e6,
            t.elapsed.as_secs_f64(),
            per_sync(&t),
            t.producer_ns_per_msg()
        );
        batch.push(b.msgs_per_sec());
        tokio.push(t.msgs_per_sec());
        batch_cpu.push(b.producer_ns_per_msg());
        tokio_cpu.push(t.producer_ns_per_msg());
    }
    (
        median(batch),
        median(tokio),
        (median(batch_cpu), median(tokio_cpu)),
    )
}
