//! `--probe-disk`: how fast the disk under the engines makes small writes
//! durable, alone and with one writer per store at once.
//!
//! Every poll round of a store that persisted a Ready ends in one
//! `fdatasync` of its raft log, and a client write waits for at least two
//! of them (leader and a follower). When the benchmark's latency tail is
//! much longer than its rounds, this probe tells whether the disk is the
//! reason: some virtual disks throttle flushes and hold every writer for
//! milliseconds once a budget per time window is spent.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Writes taking longer than this count as stalls.
pub const STALL: Duration = Duration::from_millis(5);

/// What one probe measured.
#[derive(Debug, Clone, Serialize)]
pub struct FsyncProbe {
    /// Threads writing and syncing their own file at the same time.
    pub writers: usize,
    /// Durable writes per second, all writers together.
    pub syncs_per_sec: f64,
    /// Median write + `fdatasync` time, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Longest, milliseconds.
    pub max_ms: f64,
    /// Writes that took longer than [`STALL`].
    pub stalls: u64,
}

/// Runs `writers` threads for `duration`, each appending 4 KiB blocks to
/// its own new file in `dir` and calling `fdatasync` after every block, as
/// fast as the disk allows. The files are removed afterwards.
///
/// # Errors
///
/// Any I/O error (creating, writing or syncing a file).
pub fn probe(dir: &Path, writers: usize, duration: Duration) -> std::io::Result<FsyncProbe> {
    let writers = writers.max(1);
    let started = Instant::now();
    let results: Vec<std::io::Result<Vec<Duration>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|i| {
                let path = dir.join(format!(
                    "cluster-bench-fsync-probe-{}-{i}",
                    std::process::id()
                ));
                s.spawn(move || {
                    let out = write_and_sync(&path, duration);
                    let _ = std::fs::remove_file(&path);
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("probe thread panicked")))
            })
            .collect()
    });
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    all.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| {
        let i = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len().max(1)) - 1;
        all.get(i).copied().map_or(0.0, ms)
    };
    Ok(FsyncProbe {
        writers,
        syncs_per_sec: all.len() as f64 / wall,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: all.last().copied().map_or(0.0, ms),
        stalls: all.iter().filter(|&&d| d > STALL).count() as u64,
    })
}

fn write_and_sync(path: &Path, duration: Duration) -> std::io::Result<Vec<Duration>> {
    let mut file = OpenOptions::new().create_new(true).write(true).open(path)?;
    let block = [0x5a_u8; 4096];
    let mut times = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(t.elapsed());
    }
    Ok(times)
}

impl FsyncProbe {
    /// One line for the report.
    pub fn line(&self) -> String {
        format!(
            "{} writer{}: {:.0} fsyncs/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {} stalls > {} ms",
            self.writers,
            if self.writers == 1 { "" } else { "s" },
            self.syncs_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.stalls,
            STALL.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = probe(dir.path(), 2, Duration::from_millis(50)).unwrap();
        assert_eq!(p.writers, 2);
        assert!(p.syncs_per_sec > 0.0);
        assert!(p.p50_ms <= p.p99_ms && p.p99_ms <= p.max_ms);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn probe_in_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(probe(&missing, 1, Duration::from_millis(10)).is_err());
    }
}
