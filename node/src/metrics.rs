//! The node's metrics: the Prometheus recorder (installed once per
//! process) and a sampler of what no library records itself.
//!
//! The libraries record through the `metrics` facade: `raftstore::metrics`
//! (poll rounds, Readies, log writes, fsyncs and their durations,
//! proposals, commit durations, refused commands, mailbox depth),
//! `apply::metrics` (apply rounds, entries, write durations) and
//! `server::metrics` (messages and bytes per store, drops, connection
//! failures, client requests, their durations and errors by kind). The
//! sampler adds, once a second:
//!
//! | name | kind | what |
//! |---|---|---|
//! | `raftstore_regions` | gauge, `role` = `leader` / `follower` | peers on this store by role (followers: every peer not leading, candidates included) |
//! | `node_uptime_seconds` | gauge | time since the node started |
//!
//! Snapshots are not counted: stores do not build them yet.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics::gauge;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use raftstore::StoreMeta;

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

/// Publishes the sampled gauges; [`Sampler::sample`] once a second.
pub struct Sampler {
    meta: Arc<StoreMeta>,
    regions: Box<dyn Fn() -> usize + Send + Sync>,
    started: Instant,
    handle: PrometheusHandle,
}

impl Sampler {
    /// A sampler of one store; `regions` counts its peers.
    pub fn new(
        meta: Arc<StoreMeta>,
        regions: Box<dyn Fn() -> usize + Send + Sync>,
        handle: PrometheusHandle,
    ) -> Sampler {
        Sampler {
            meta,
            regions,
            started: Instant::now(),
            handle,
        }
    }

    /// Publishes the current values and runs the recorder's upkeep.
    pub fn sample(&mut self) {
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
