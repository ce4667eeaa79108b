//! The node's metrics: the Prometheus recorder (installed once per
//! process) and a sampler that publishes the raft store's counters.
//!
//! Libraries record through the `metrics` facade (the server crate:
//! messages and bytes per store, drops, connection failures, KV requests
//! and their durations, errors by kind). The raft store keeps its own
//! counters ([`raftstore::StoreStats`]); the sampler publishes them every
//! second:
//!
//! | name | kind | what |
//! |---|---|---|
//! | `raftstore_log_writes_total` | counter | raft log batches written |
//! | `raftstore_log_syncs_total` | counter | raft log fsyncs |
//! | `raftstore_readies_total` | counter | peer Readies persisted (Readies per fsync = the ratio of the two rates) |
//! | `raftstore_committed_entries_total` | counter | committed entries handed to apply |
//! | `raftstore_poll_rounds_total` | counter | raft poll rounds |
//! | `raftstore_log_write_duration_seconds` | histogram | raft log write + fsync, at the power-of-two microsecond resolution of the store's own histogram |
//! | `raftstore_regions` | gauge, `role` = `leader` / `follower` | peers on this store by role (followers: every peer not leading, candidates included) |
//! | `node_uptime_seconds` | gauge | time since the node started |

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use raftstore::{HistogramSnapshot, StoreMeta, StoreStats};

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Bucket bounds (seconds) of every `*_seconds` histogram.
const SECONDS_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Installs the Prometheus recorder as the process's `metrics` recorder
/// (the first call; later calls return the same handle).
///
/// # Errors
///
/// Another recorder was installed before.
pub fn install() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
            server::metrics::describe();
            Ok(handle)
        })
        .clone()
}

/// Publishes a store's counters; [`Sampler::sample`] once a second.
pub struct Sampler {
    stats: Arc<StoreStats>,
    meta: Arc<StoreMeta>,
    regions: Box<dyn Fn() -> usize + Send + Sync>,
    started: Instant,
    last_log_writes: HistogramSnapshot,
    handle: PrometheusHandle,
}

impl Sampler {
    /// A sampler of one store; `regions` counts its peers.
    pub fn new(
        stats: Arc<StoreStats>,
        meta: Arc<StoreMeta>,
        regions: Box<dyn Fn() -> usize + Send + Sync>,
        handle: PrometheusHandle,
    ) -> Sampler {
        Sampler {
            stats,
            meta,
            regions,
            started: Instant::now(),
            last_log_writes: HistogramSnapshot::default(),
            handle,
        }
    }

    /// Publishes the current values and runs the recorder's upkeep.
    pub fn sample(&mut self) {
        let s = self.stats.snapshot();
        counter!("raftstore_log_writes_total").absolute(s.log_writes);
        counter!("raftstore_log_syncs_total").absolute(s.log_syncs);
        counter!("raftstore_readies_total").absolute(s.readies);
        counter!("raftstore_committed_entries_total").absolute(s.committed_entries);
        counter!("raftstore_poll_rounds_total").absolute(s.rounds);
        let new = s.log_write_duration.since(&self.last_log_writes);
        let h = histogram!("raftstore_log_write_duration_seconds");
        for (i, &n) in new.buckets.iter().enumerate() {
            if n > 0 {
                // Bucket i holds [2^i, 2^(i+1)) µs: record its middle.
                let micros = (1u64 << i) as f64 * 1.5;
                h.record_many(micros / 1e6, n as usize);
            }
        }
        self.last_log_writes = s.log_write_duration;
        let peers = (self.regions)();
        let leaders = self.meta.leader_regions().len();
        gauge!("raftstore_regions", "role" => "leader").set(leaders as f64);
        gauge!("raftstore_regions", "role" => "follower").set(peers.saturating_sub(leaders) as f64);
        gauge!("node_uptime_seconds").set(self.started.elapsed().as_secs_f64());
        self.handle.run_upkeep();
    }

    /// How often to sample.
    pub const INTERVAL: Duration = Duration::from_secs(1);
}
