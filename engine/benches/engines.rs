//! Engine throughput: what one store's poll round costs the disk.
//!
//! - `raft_log/1000_regions_x_128B_synced`: one log batch holding one 128-byte
//!   entry (plus its raft state) for each of 1,000 regions, consumed with
//!   `sync = true`, i.e. one poll round of a busy store. Throughput is in
//!   entries; batches/s = entries/s / 1,000. A good durable result is close
//!   to the in-memory baseline plus one fsync per batch.
//! - `kv/1000_puts_synced`: one KV write batch of 1,000 puts (16-byte key,
//!   128-byte value, cycling over 200k keys) written with `sync = true`,
//!   i.e. one apply round.
//!
//! The `*_cpu` groups repeat both with the writing thread's CPU time instead
//! of elapsed time (criterion still labels it "time"): the cost of a batch
//! to the CPU, which other processes' load does not distort.
//!
//! The in-memory engines (which keep a crash-safe second copy, as in the
//! simulation) are the same-run baseline. `raft-engine-lz4` is raft-engine
//! with its default 8 KiB batch compression threshold, to show why
//! [`RaftEngineLogEngine::open`] turns compression off: payloads here are
//! random, as encoded commands mostly are.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::kvproto_lite::raft_serverpb::RaftLocalState;
use engine::raft_engine::ReadableSize;
use engine::{
    FjallKvEngine, KvEngine, KvWriteBatch, MemKvEngine, MemRaftLogEngine, RaftEngineLogEngine,
    RaftLogBatch, RaftLogEngine,
};
use raft::eraftpb::Entry;

const REGIONS: u64 = 1_000;
const ENTRY_BYTES: usize = 128;
const PUTS: u64 = 1_000;
/// Distinct keys the KV bench cycles through (bounds the memory baseline).
const KV_KEYS: u64 = 200_000;
/// Compact every region's log (untimed) this often, so the log stays small.
const GC_EVERY: u64 = 256;

/// What a round's duration is measured with.
#[derive(Clone, Copy)]
enum Clock {
    /// Elapsed time, fsync waits included.
    Wall,
    /// CPU time of the calling thread (the writer; raft-engine's group-commit
    /// leader writes on it): what a batch costs the CPU, independent of
    /// other processes' load and of fsync latency.
    ThreadCpu,
}

impl Clock {
    fn now(self, wall: Instant) -> Duration {
        match self {
            Clock::Wall => wall.elapsed(),
            Clock::ThreadCpu => {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `ts` is a valid, exclusively borrowed timespec for
                // the duration of the call; CLOCK_THREAD_CPUTIME_ID is
                // supported on Linux.
                let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
                assert_eq!(rc, 0, "clock_gettime");
                Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
            }
        }
    }
}

/// Deterministic, incompressible bytes (xorshift64*).
struct Bytes(u64);

impl Bytes {
    fn fill(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            out.extend_from_slice(&self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// Times `iters` synced rounds of 1,000 regions × 1 entry on `engine`,
/// starting at log index `*next`.
fn raft_rounds<E: RaftLogEngine>(
    e: &E,
    clock: Clock,
    next: &mut u64,
    rng: &mut Bytes,
    iters: u64,
) -> Duration {
    let origin = Instant::now();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let index = *next;
        *next += 1;
        let payloads: Vec<Vec<u8>> = (0..REGIONS).map(|_| rng.fill(ENTRY_BYTES)).collect();
        let start = clock.now(origin);
        let mut batch = e.log_batch(2 * REGIONS as usize);
        for (region, data) in (1..=REGIONS).zip(payloads) {
            let entry = Entry {
                index,
                term: 1,
                data: data.into(),
                ..Default::default()
            };
            batch.append(region, vec![entry]).expect("append");
            let mut state = RaftLocalState::default();
            state.set_last_index(index);
            state.mut_hard_state().set_term(1);
            state.mut_hard_state().set_commit(index - 1);
            batch.put_raft_state(region, &state).expect("state");
        }
        e.consume(&mut batch, true).expect("consume");
        total += clock.now(origin) - start;
        if index % GC_EVERY == 0 {
            for region in 1..=REGIONS {
                e.compact_to(region, index).expect("compact");
            }
        }
    }
    total
}

fn bench_raft_log(c: &mut Criterion) {
    raft_log_group(c, "raft_log/1000_regions_x_128B_synced", Clock::Wall);
    raft_log_group(
        c,
        "raft_log_cpu/1000_regions_x_128B_synced",
        Clock::ThreadCpu,
    );
}

fn raft_log_group(c: &mut Criterion, name: &str, clock: Clock) {
    let mut group = c.benchmark_group(name);
    if let Clock::ThreadCpu = clock {
        // CPU time runs slower than wall time: keep the wall time modest.
        group.measurement_time(Duration::from_secs(2));
    }
    group.throughput(Throughput::Elements(REGIONS));

    let mem = MemRaftLogEngine::new();
    let mut next = 1;
    let mut rng = Bytes(0x9e37_79b9_7f4a_7c15);
    group.bench_function(BenchmarkId::from_parameter("memory"), |b| {
        b.iter_custom(|iters| raft_rounds(&mem, clock, &mut next, &mut rng, iters))
    });
    drop(mem);

    for (name, lz4) in [("raft-engine", false), ("raft-engine-lz4", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = RaftEngineLogEngine::default_config(dir.path()).expect("config");
        if lz4 {
            cfg.batch_compression_threshold = ReadableSize::kb(8);
        }
        let e = RaftEngineLogEngine::open_with_config(cfg).expect("open");
        let mut next = 1;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let t = raft_rounds(&e, clock, &mut next, &mut rng, iters);
                e.purge_expired_files().expect("purge");
                t
            })
        });
    }
    group.finish();
}

/// Times `iters` synced write batches of 1,000 fresh puts.
fn kv_rounds<E: KvEngine>(
    e: &E,
    clock: Clock,
    next: &mut u64,
    rng: &mut Bytes,
    iters: u64,
) -> Duration {
    let origin = Instant::now();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let values: Vec<Vec<u8>> = (0..PUTS).map(|_| rng.fill(ENTRY_BYTES)).collect();
        let start = clock.now(origin);
        let mut wb = e.write_batch();
        for value in values {
            let key = format!("{:016x}", *next % KV_KEYS);
            *next += 1;
            wb.put(key.as_bytes(), &value);
        }
        e.write(&mut wb, true).expect("write");
        total += clock.now(origin) - start;
    }
    total
}

fn bench_kv(c: &mut Criterion) {
    kv_group(c, "kv/1000_puts_synced", Clock::Wall);
    kv_group(c, "kv_cpu/1000_puts_synced", Clock::ThreadCpu);
}

fn kv_group(c: &mut Criterion, name: &str, clock: Clock) {
    let mut group = c.benchmark_group(name);
    if let Clock::ThreadCpu = clock {
        // CPU time runs slower than wall time: keep the wall time modest.
        group.measurement_time(Duration::from_secs(2));
    }
    group.throughput(Throughput::Elements(PUTS));
    let mut rng = Bytes(0x2545_f491_4f6c_dd1d);

    let mem = MemKvEngine::new();
    let mut next = 0;
    group.bench_function(BenchmarkId::from_parameter("memory"), |b| {
        b.iter_custom(|iters| kv_rounds(&mem, clock, &mut next, &mut rng, iters))
    });
    drop(mem);

    let dir = tempfile::tempdir().expect("tempdir");
    let fjall = FjallKvEngine::open(dir.path()).expect("open");
    let mut next = 0;
    group.bench_function(BenchmarkId::from_parameter("fjall"), |b| {
        b.iter_custom(|iters| kv_rounds(&fjall, clock, &mut next, &mut rng, iters))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_raft_log, bench_kv
}
criterion_main!(benches);
