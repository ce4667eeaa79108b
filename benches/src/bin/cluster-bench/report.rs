//! What a run measured: per-phase numbers, the table and the JSON document.

use hdrhistogram::Histogram;
use raftstore::{Config, StoreStatsSnapshot};
use serde::Serialize;

use benches::load::ClientResult;

/// Dragonboat's published figure: about 9 million writes/s on three servers
/// with 22 cores each (66 cores x 1 s / 9M writes), in core-microseconds
/// per write.
pub const DRAGONBOAT_CORE_US_PER_WRITE: f64 = 7.3;

/// Throughput over one second of a phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the load started (warm-up included).
    pub t: f64,
    /// Acknowledged writes per second in that second.
    pub writes_per_sec: f64,
    /// Reads per second in that second.
    pub reads_per_sec: f64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Operations recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
    /// (percentile, latency µs) points for plotting.
    pub curve: Vec<(f64, u64)>,
}

impl Latency {
    fn from_hist(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let curve = [
            0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
        ]
        .iter()
        .map(|&p| (p, h.value_at_percentile(p)))
        .collect();
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            curve,
        }
    }
}

/// What the stores' local readers did with lease-mode reads while
/// measuring (added over all stores).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LeaseReads {
    /// Answered on the caller's thread (the lease held).
    pub local: u64,
    /// Handed on to the raft thread (no delegate, lease expired, ...).
    pub fallbacks: u64,
    /// Of the fallbacks, answered by the peer under its lease at once (the
    /// others became ReadIndex reads).
    pub raft_thread: u64,
    /// Read delegates published (each empties the reading threads' copies).
    pub publishes: u64,
}

/// ReadIndex batches confirmed by store-level leader checks while
/// measuring (added over all stores, see `raftstore::leader_check`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LeaderChecks {
    /// Batches sent through a leader check.
    pub batches: u64,
    /// Of those, confirmed by a quorum.
    pub confirmed: u64,
    /// Fell back to raft's read index (refused or timed out).
    pub fell_back: u64,
    /// Check messages sent (one per store pair and poll round).
    pub messages: u64,
}

/// A phase's memory: the stores' quotas and the process's resident set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryFigures {
    /// The memory quotas of all stores, added up (MiB).
    pub quota_mib: f64,
    /// The stores' peaks of accounted bytes, added up (MiB; an upper
    /// bound of the peak of their sum).
    pub quota_peak_mib: f64,
    /// Commands refused because a store was over its quota.
    pub quota_refusals: u64,
    /// Resident set after the stores started, before the load (MiB).
    pub rss_before_load_mib: Option<f64>,
    /// Peak resident set from the phase's start to the end of its load
    /// (MiB).
    pub peak_rss_mib: Option<f64>,
}

/// One phase: a fresh cluster under one load.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// "group commit", "no group commit", "half load", or "N regions" in a
    /// run over several region counts.
    pub name: String,
    /// Regions of this phase's cluster.
    pub regions: usize,
    /// Regions that got load (the others stayed idle).
    pub active_regions: usize,
    /// Open-loop rate limit, if any (operations/s).
    pub rate_limit: Option<f64>,
    /// Seconds to start the stores and elect every leader.
    pub setup_secs: f64,
    /// Measured wall-clock seconds.
    pub wall_secs: f64,
    /// Process CPU seconds (all threads) while measuring.
    pub cpu_secs: f64,
    /// CPU seconds of the load-generating client threads while measuring.
    pub client_cpu_secs: f64,
    /// Writes acknowledged while measuring.
    pub writes: u64,
    /// Reads answered while measuring.
    pub reads: u64,
    /// Acknowledged writes per second.
    pub writes_per_sec: f64,
    /// Reads per second.
    pub reads_per_sec: f64,
    /// Write latency.
    pub write_latency: Latency,
    /// Read latency.
    pub read_latency: Latency,
    /// Process core-microseconds per acknowledged write.
    pub core_us_per_write: f64,
    /// The same without the client threads (the stores' own cost).
    pub store_core_us_per_write: f64,
    /// Cores busy on average (CPU seconds / wall seconds).
    pub cores_used: f64,
    /// Raft-log counters of all stores while measuring.
    pub log_writes: u64,
    /// Raft-log fsyncs of all stores while measuring.
    pub log_syncs: u64,
    /// Peer Readies persisted by all stores while measuring.
    pub readies: u64,
    /// Raft-log fsyncs per second (all stores).
    pub fsyncs_per_sec: f64,
    /// Raft-log write (fsync included) durations, milliseconds: median,
    /// 99th percentile and maximum, each the upper bound of a power-of-two
    /// bucket (see `raftstore::DurationHistogram`); `None` without writes.
    pub log_write_ms: Option<[f64; 3]>,
    /// Where a write spends its time on its leader's store, milliseconds,
    /// `[p50, p99]` per stage (see `raftstore::WriteStages`): waiting to
    /// be proposed, proposed until committed (the leader's log write and a
    /// quorum's), committed until answered (apply and the callback).
    /// `None` for a stage with no sample.
    pub stage_propose_wait_ms: Option<[f64; 2]>,
    /// See `stage_propose_wait_ms`.
    pub stage_commit_ms: Option<[f64; 2]>,
    /// See `stage_propose_wait_ms`.
    pub stage_apply_ms: Option<[f64; 2]>,
    /// Peer Readies per fsync (group commit makes this large).
    pub readies_per_fsync: f64,
    /// Replicated writes per fsync: acknowledged writes x replicas / fsyncs.
    pub writes_per_fsync: f64,
    /// Raft messages delivered between stores while measuring.
    pub raft_messages: u64,
    /// Raft messages per acknowledged write (batching makes this small).
    pub raft_messages_per_write: f64,
    /// Raft messages by type over the whole phase (`--message-mix` only).
    pub message_mix: std::collections::BTreeMap<String, u64>,
    /// Commands retried after a refusal (NotLeader, busy, ...).
    pub retries: u64,
    /// Commands given up after too many refusals (not applied).
    pub given_up: u64,
    /// Keys not checked because their last write's outcome is unknown.
    pub poisoned_keys: u64,
    /// Reads that did not return the last acknowledged write.
    pub read_mismatches: u64,
    /// A few of them.
    pub read_mismatch_examples: Vec<String>,
    /// Store x key reads done by the final check.
    pub checked_reads: u64,
    /// Reads of the final check that did not match.
    pub verify_failures: u64,
    /// A few of them.
    pub verify_errors: Vec<String>,
    /// Seconds the final check took.
    pub verify_secs: f64,
    /// Lease-mode reads while measuring, all stores (see
    /// [`LeaseReads`]).
    pub lease_reads: LeaseReads,
    /// ReadIndex batches confirmed by leader checks while measuring.
    pub leader_checks: LeaderChecks,
    /// Throughput per second over the phase.
    pub timeline: Vec<Sample>,
    /// The memory quota and the process's resident memory.
    #[serde(flatten)]
    pub memory: MemoryFigures,
    #[serde(skip)]
    write_hist: Option<Histogram<u64>>,
    #[serde(skip)]
    read_hist: Option<Histogram<u64>>,
}

impl PhaseReport {
    /// A phase report before the clients' results are added.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        (regions, active_regions): (usize, usize),
        rate_limit: Option<f64>,
        setup_secs: f64,
        wall_secs: f64,
        cpu_secs: f64,
        stats: StoreStatsSnapshot,
        timeline: Vec<Sample>,
    ) -> PhaseReport {
        PhaseReport {
            name: name.to_owned(),
            regions,
            active_regions,
            rate_limit,
            setup_secs,
            wall_secs,
            cpu_secs,
            client_cpu_secs: 0.0,
            writes: 0,
            reads: 0,
            writes_per_sec: 0.0,
            reads_per_sec: 0.0,
            write_latency: Latency::default(),
            read_latency: Latency::default(),
            core_us_per_write: 0.0,
            store_core_us_per_write: 0.0,
            cores_used: 0.0,
            log_writes: stats.log_writes,
            log_syncs: stats.log_syncs,
            readies: stats.readies,
            fsyncs_per_sec: 0.0,
            log_write_ms: log_write_ms(&stats),
            stage_propose_wait_ms: p50_p99_ms(&stats.propose_wait),
            stage_commit_ms: p50_p99_ms(&stats.commit),
            stage_apply_ms: p50_p99_ms(&stats.apply),
            readies_per_fsync: 0.0,
            writes_per_fsync: 0.0,
            raft_messages: 0,
            raft_messages_per_write: 0.0,
            message_mix: Default::default(),
            retries: 0,
            given_up: 0,
            poisoned_keys: 0,
            read_mismatches: 0,
            read_mismatch_examples: Vec::new(),
            checked_reads: 0,
            verify_failures: 0,
            verify_errors: Vec::new(),
            verify_secs: 0.0,
            lease_reads: LeaseReads::default(),
            leader_checks: LeaderChecks::default(),
            timeline,
            memory: MemoryFigures::default(),
            write_hist: None,
            read_hist: None,
        }
    }

    /// Adds one client's results.
    pub fn add_client(&mut self, r: &ClientResult) {
        self.writes += r.writes;
        self.reads += r.reads;
        self.client_cpu_secs += r.cpu.as_secs_f64();
        self.retries += r.retries;
        self.given_up += r.given_up;
        self.poisoned_keys += r.poisoned;
        self.read_mismatches += r.read_mismatches.len() as u64;
        self.read_mismatch_examples
            .extend(r.read_mismatches.iter().take(4).cloned());
        merge(&mut self.write_hist, &r.write_hist);
        merge(&mut self.read_hist, &r.read_hist);
    }

    /// Derives rates and percentiles once every client is added.
    pub fn finish(&mut self, replicas: usize) {
        let wall = self.wall_secs.max(1e-9);
        self.writes_per_sec = self.writes as f64 / wall;
        self.reads_per_sec = self.reads as f64 / wall;
        if let Some(h) = &self.write_hist {
            self.write_latency = Latency::from_hist(h);
        }
        if let Some(h) = &self.read_hist {
            self.read_latency = Latency::from_hist(h);
        }
        let writes = self.writes.max(1) as f64;
        self.core_us_per_write = self.cpu_secs * 1e6 / writes;
        self.store_core_us_per_write =
            (self.cpu_secs - self.client_cpu_secs).max(0.0) * 1e6 / writes;
        self.cores_used = self.cpu_secs / wall;
        self.fsyncs_per_sec = self.log_syncs as f64 / wall;
        let syncs = self.log_syncs.max(1) as f64;
        self.readies_per_fsync = self.readies as f64 / syncs;
        self.writes_per_fsync = self.writes as f64 * replicas as f64 / syncs;
        self.raft_messages_per_write = self.raft_messages as f64 / writes;
    }
}

fn log_write_ms(stats: &StoreStatsSnapshot) -> Option<[f64; 3]> {
    let h = &stats.log_write_duration;
    let ms = |q: f64| h.quantile(q).map(|d| d.as_secs_f64() * 1e3);
    Some([ms(0.5)?, ms(0.99)?, ms(1.0)?])
}

/// A stage's `[p50, p99]` for the table.
fn stage(ms: Option<[f64; 2]>) -> String {
    match ms {
        Some([p50, p99]) => format!("{p50:.2}/{p99:.2}"),
        None => "-".to_owned(),
    }
}

fn p50_p99_ms(h: &raftstore::HistogramSnapshot) -> Option<[f64; 2]> {
    let ms = |q: f64| h.quantile(q).map(|d| d.as_secs_f64() * 1e3);
    Some([ms(0.5)?, ms(0.99)?])
}

fn merge(into: &mut Option<Histogram<u64>>, h: &Histogram<u64>) {
    match into {
        Some(acc) => {
            // Same bounds everywhere, so adding cannot fail; saturate if it did.
            if acc.add(h).is_err() {
                for v in h.iter_recorded() {
                    acc.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                }
            }
        }
        None => *into = Some(h.clone()),
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "durable" or "memory".
    pub engine: String,
    /// Stores.
    pub stores: usize,
    /// Region counts, one phase (or set of phases) each.
    pub regions: Vec<usize>,
    /// `--active-regions`: the load went to this many regions only.
    pub active_regions: Option<usize>,
    /// Client threads.
    pub clients: usize,
    /// Commands in flight per client.
    pub window: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Fraction of reads.
    pub read_ratio: f64,
    /// The stores' configuration (of the first phase).
    pub config: Config,
    /// Online CPUs of the machine.
    pub cpus: usize,
    /// Peak resident set size of the process over the run (MiB).
    pub peak_rss_mib: Option<f64>,
    /// The phases, the default (group commit, full load) first.
    pub phases: Vec<PhaseReport>,
    /// `--probe-disk`: fsync latency of the data directory's disk, with
    /// one writer and with one writer per store.
    pub disk_probe: Vec<crate::disk::FsyncProbe>,
    /// Writes/s with group commit divided by writes/s without, when both ran.
    pub group_commit_ratio: Option<f64>,
}

impl Report {
    /// An empty report for a run with these parameters.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: String,
        stores: usize,
        (regions, active_regions): (Vec<usize>, Option<usize>),
        clients: usize,
        window: usize,
        value_size: usize,
        read_ratio: f64,
        config: Config,
    ) -> Report {
        Report {
            engine,
            stores,
            regions,
            active_regions,
            clients,
            window,
            value_size,
            read_ratio,
            config,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            peak_rss_mib: None,
            phases: Vec::new(),
            disk_probe: Vec::new(),
            group_commit_ratio: None,
        }
    }

    /// Prints the results table (one column per phase).
    pub fn print_table(&mut self) {
        let gc = self.phases.iter().find(|p| p.name == "group commit");
        let nogc = self.phases.iter().find(|p| p.name == "no group commit");
        if let (Some(a), Some(b)) = (gc, nogc) {
            self.group_commit_ratio = Some(a.writes_per_sec / b.writes_per_sec.max(1e-9));
        }
        type Row = (&'static str, fn(&PhaseReport) -> String);
        let rows: Vec<Row> = vec![
            ("regions (active)", |p| {
                format!("{} ({})", p.regions, p.active_regions)
            }),
            ("acked writes/s", |p| format!("{:.0}", p.writes_per_sec)),
            ("reads/s", |p| format!("{:.0}", p.reads_per_sec)),
            ("rate limit (ops/s)", |p| {
                p.rate_limit
                    .map_or("none".to_owned(), |r| format!("{r:.0}"))
            }),
            ("write p50 (ms)", |p| {
                format!("{:.2}", p.write_latency.p50_us as f64 / 1000.0)
            }),
            ("write p99 (ms)", |p| {
                format!("{:.2}", p.write_latency.p99_us as f64 / 1000.0)
            }),
            ("write p999 (ms)", |p| {
                format!("{:.2}", p.write_latency.p999_us as f64 / 1000.0)
            }),
            ("read p50 (ms)", |p| {
                format!("{:.2}", p.read_latency.p50_us as f64 / 1000.0)
            }),
            ("read p99 (ms)", |p| {
                format!("{:.2}", p.read_latency.p99_us as f64 / 1000.0)
            }),
            ("read p999 (ms)", |p| {
                format!("{:.2}", p.read_latency.p999_us as f64 / 1000.0)
            }),
            ("CPU core-µs / write", |p| {
                format!("{:.1}", p.core_us_per_write)
            }),
            ("  of which stores", |p| {
                format!("{:.1}", p.store_core_us_per_write)
            }),
            ("cores busy", |p| format!("{:.2}", p.cores_used)),
            ("client core-µs / op", |p| {
                let ops = (p.writes + p.reads).max(1) as f64;
                format!("{:.2}", p.client_cpu_secs * 1e6 / ops)
            }),
            ("lease reads local (%)", |p| {
                let l = p.lease_reads;
                let all = l.local + l.fallbacks;
                if all == 0 {
                    "-".to_owned()
                } else {
                    format!("{:.2}", l.local as f64 * 100.0 / all as f64)
                }
            }),
            ("lease fallbacks/s", |p| {
                format!(
                    "{:.0}",
                    p.lease_reads.fallbacks as f64 / p.wall_secs.max(1e-9)
                )
            }),
            ("leader-check batches/s", |p| {
                let c = p.leader_checks;
                format!(
                    "{:.0} ({:.0}% ok)",
                    c.batches as f64 / p.wall_secs.max(1e-9),
                    c.confirmed as f64 * 100.0 / c.batches.max(1) as f64
                )
            }),
            ("read delegates published/s", |p| {
                format!(
                    "{:.0}",
                    p.lease_reads.publishes as f64 / p.wall_secs.max(1e-9)
                )
            }),
            ("raft log fsyncs/s", |p| format!("{:.0}", p.fsyncs_per_sec)),
            ("log write p50/p99/max (ms)", |p| match p.log_write_ms {
                Some([p50, p99, max]) => format!("{p50:.2}/{p99:.1}/{max:.0}"),
                None => "-".to_owned(),
            }),
            ("stage propose wait p50/p99 (ms)", |p| {
                stage(p.stage_propose_wait_ms)
            }),
            ("stage commit p50/p99 (ms)", |p| stage(p.stage_commit_ms)),
            ("stage apply p50/p99 (ms)", |p| stage(p.stage_apply_ms)),
            ("Readies / fsync", |p| format!("{:.1}", p.readies_per_fsync)),
            ("writes x replicas / fsync", |p| {
                format!("{:.1}", p.writes_per_fsync)
            }),
            ("raft messages / write", |p| {
                format!("{:.2}", p.raft_messages_per_write)
            }),
            ("retries", |p| p.retries.to_string()),
            ("given up", |p| p.given_up.to_string()),
            ("memory quota (MiB)", |p| {
                format!("{:.0}", p.memory.quota_mib)
            }),
            ("quota in use, peak (MiB)", |p| {
                format!("{:.1}", p.memory.quota_peak_mib)
            }),
            ("refused: memory quota", |p| {
                p.memory.quota_refusals.to_string()
            }),
            ("RSS before load (MiB)", |p| {
                p.memory
                    .rss_before_load_mib
                    .map_or("n/a".to_owned(), |m| format!("{m:.0}"))
            }),
            ("peak RSS (MiB)", |p| {
                p.memory
                    .peak_rss_mib
                    .map_or("n/a".to_owned(), |m| format!("{m:.0}"))
            }),
            ("verified (store x key)", |p| {
                format!(
                    "{}/{}",
                    p.checked_reads - p.verify_failures,
                    p.checked_reads
                )
            }),
            ("setup (s)", |p| format!("{:.1}", p.setup_secs)),
        ];
        let any_reads = self.phases.iter().any(|p| p.reads > 0);
        let any_limit = self.phases.iter().any(|p| p.rate_limit.is_some());
        let any_checks = self.phases.iter().any(|p| p.leader_checks.batches > 0);
        let any_lease = self
            .phases
            .iter()
            .any(|p| p.lease_reads.local + p.lease_reads.fallbacks > 0);
        let rows: Vec<Row> = rows
            .into_iter()
            .filter(|(name, _)| any_reads || !name.starts_with("read"))
            .filter(|(name, _)| any_limit || !name.starts_with("rate limit"))
            .filter(|(name, _)| any_checks || !name.starts_with("leader-check"))
            .filter(|(name, _)| {
                any_lease || !(name.starts_with("lease") || name.starts_with("read delegates"))
            })
            .collect();
        let width = 26;
        let col = 16;
        let mut header = format!("{:<width$}", "");
        for p in &self.phases {
            // A space first: long names must not run together.
            header.push_str(&format!(" {:>w$}", p.name, w = col - 1));
        }
        println!();
        println!("{header}");
        println!("{}", "-".repeat(width + col * self.phases.len()));
        for (name, f) in rows {
            let mut line = format!("{name:<width$}");
            for p in &self.phases {
                line.push_str(&format!("{:>col$}", f(p)));
            }
            println!("{line}");
        }
        if let Some(first) = self.phases.first() {
            println!(
                "core-time per write: {:.1} µs here ({} replicas in one process, clients included) vs Dragonboat ≈ {DRAGONBOAT_CORE_US_PER_WRITE} µs",
                first.core_us_per_write, self.stores
            );
        }
        for p in &self.phases {
            if p.message_mix.is_empty() {
                continue;
            }
            let total_writes: f64 = p
                .timeline
                .iter()
                .map(|s| s.writes_per_sec)
                .sum::<f64>()
                .max(1.0);
            let mix: Vec<String> = p
                .message_mix
                .iter()
                .map(|(t, n)| format!("{t} {:.2}", *n as f64 / total_writes))
                .collect();
            println!(
                "{}: raft messages per write by type: {}",
                p.name,
                mix.join(", ")
            );
        }
        self.print_overload();
        if let Some(r) = self.group_commit_ratio {
            println!("group commit / no group commit (writes/s, same run): {r:.2}x");
        }
        if self.regions.len() > 1 {
            self.print_by_regions();
        }
    }

    /// With an overload phase: its throughput as a ratio to the first
    /// phase's, and its peak RSS against the RSS before load plus the
    /// stores' quotas (what is left is the overhead the quota does not
    /// account).
    fn print_overload(&self) {
        let (Some(first), Some(over)) = (
            self.phases.first(),
            self.phases.iter().find(|p| p.name == "overload"),
        ) else {
            return;
        };
        println!(
            "overload / {} (writes/s, same run): {:.2}x; refused by the memory quota: {}",
            first.name,
            over.writes_per_sec / first.writes_per_sec.max(1e-9),
            over.memory.quota_refusals
        );
        if let (Some(peak), Some(before)) =
            (over.memory.peak_rss_mib, over.memory.rss_before_load_mib)
        {
            println!(
                "overload peak RSS {peak:.0} MiB = {before:.0} MiB before load + {:.0} MiB under load, against a memory quota of {:.0} MiB (all stores): {:.0} MiB above RSS-before-load + quota",
                peak - before,
                over.memory.quota_mib,
                peak - before - over.memory.quota_mib
            );
        }
        for p in self.phases.iter().filter(|p| p.name != "overload") {
            if let (Some(peak), Some(before)) =
                (p.memory.peak_rss_mib, p.memory.rss_before_load_mib)
            {
                println!(
                    "{} peak RSS {peak:.0} MiB = {before:.0} MiB before load + {:.0} MiB under load (quota in use, peak {:.0} MiB)",
                    p.name,
                    peak - before,
                    p.memory.quota_peak_mib
                );
            }
        }
    }

    /// The table of a run over several region counts: one row per count,
    /// with each row's writes/s as a ratio to the first row's.
    fn print_by_regions(&self) {
        let Some(first) = self.phases.first() else {
            return;
        };
        let base = first.writes_per_sec.max(1e-9);
        println!();
        println!(
            "{:>9} {:>8} {:>15} {:>18} {:>15} {:>11} {:>9}",
            "regions",
            "active",
            "acked writes/s",
            "core-µs per write",
            "write p99 (ms)",
            "cores busy",
            "vs first"
        );
        for p in &self.phases {
            println!(
                "{:>9} {:>8} {:>15.0} {:>18.1} {:>15.1} {:>11.2} {:>8.2}x",
                p.regions,
                p.active_regions,
                p.writes_per_sec,
                p.core_us_per_write,
                p.write_latency.p99_us as f64 / 1000.0,
                p.cores_used,
                p.writes_per_sec / base
            );
        }
    }
}
