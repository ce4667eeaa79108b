//! Measures the resident memory an idle region costs.
//!
//! Starts one store holding `N` single-voter regions (in-memory engines),
//! waits until every region has elected itself, lets them go idle, and
//! prints the growth of the process's resident set per region.
//!
//! ```text
//! cargo run --release -p raftstore --example idle_memory -- 100000
//! ```

use std::time::Duration;

use cluster::Cluster;
use raftstore::Config;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let cfg = Config {
        store_pool_size: 2,
        raft_base_tick_interval_ms: 200,
        ..Config::default()
    };
    let before = rss_bytes();
    let mut cluster = match Cluster::memory(1, n, cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot build cluster: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = cluster
        .start()
        .and_then(|_| cluster.wait_for_leaders(Duration::from_secs(600)))
    {
        eprintln!("cluster did not start: {e}");
        std::process::exit(1);
    }
    // Let apply results and ticks settle so buffers shrink back.
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_bytes();
    let per_region = after.saturating_sub(before) as f64 / n as f64;
    println!("regions: {n}");
    println!(
        "rss before: {:.1} MiB, after: {:.1} MiB",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    println!("bytes per idle region (whole store: raft + apply + engines): {per_region:.0}");
    cluster.shutdown();
}
