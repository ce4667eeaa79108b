//! Compares the batch system with one tokio task per actor on the same
//! workload: 10,000 actors, one producer sending round-robin, 2 threads.
//!
//! Usage: `batch-bench [--quick] [--actors N] [--messages N] [--reps N]`.
//! Prints each run, the median msgs/s of each runtime, and as its last
//! line `ratio: X.XX` (batch system / baseline). `--quick` finishes in
//! well under 30 s.

use std::process::ExitCode;

use benches::{run_batch_system, run_tokio_baseline, Workload};

struct Args {
    workload: Workload,
    reps: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut workload = Workload {
        actors: 10_000,
        messages: 10_000_000,
        pool_size: 2,
        max_batch_size: 256,
    };
    let mut reps = 5;
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
                workload.messages = 2_000_000;
                reps = 3;
            }
            "--actors" => workload.actors = value("--actors")?.max(1) as usize,
            "--messages" => workload.messages = value("--messages")?,
            "--reps" => reps = value("--reps")?.max(1) as usize,
            "--pool" => workload.pool_size = value("--pool")?.max(1) as usize,
            "--bench" => {} // passed by `cargo bench`; ignored
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args { workload, reps })
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
            eprintln!("usage: batch-bench [--quick] [--actors N] [--messages N] [--reps N] [--pool N]");
            return ExitCode::from(2);
        }
    };
    let w = args.workload;
    println!(
        "workload: {} actors, {} messages round-robin from 1 producer, {} threads, {} reps",
        w.actors, w.messages, w.pool_size, args.reps
    );
    let (mut batch, mut tokio) = (Vec::new(), Vec::new());
    for rep in 0..args.reps {
        // Alternate so slow phases of a noisy machine hit both.
        let b = run_batch_system(&w);
        let t = run_tokio_baseline(&w);
        println!(
            "rep {rep}: batch-system {:>7.2}M msgs/s ({:.3} s), tokio baseline {:>7.2}M msgs/s ({:.3} s)",
            b.msgs_per_sec() / 1e6,
            b.elapsed.as_secs_f64(),
            t.msgs_per_sec() / 1e6,
            t.elapsed.as_secs_f64()
        );
        batch.push(b.msgs_per_sec());
        tokio.push(t.msgs_per_sec());
    }
    let (b, t) = (median(batch), median(tokio));
    println!("batch-system: {:.0} msgs/s (median)", b);
    println!("tokio baseline: {:.0} msgs/s (median)", t);
    println!("ratio: {:.2}", b / t.max(1.0));
    ExitCode::SUCCESS
}
