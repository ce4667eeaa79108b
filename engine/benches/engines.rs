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
fn raft_rounds<E: RaftLogEngine>(e: &E, next: &mut u64, rng: &mut Bytes, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let index = *next;
        *next += 1;
        let payloads: Vec<Vec<u8>> = (0..REGIONS).map(|_| rng.fill(ENTRY_BYTES)).collect();
        let start = Instant::now();
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
        total += start.elapsed();
        if index % GC_EVERY == 0 {
            for region in 1..=REGIONS {
                e.compact_to(region, index).expect("compact");
            }
        }
    }
    total
}

fn bench_raft_log(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft_log/1000_regions_x_128B_synced");
    group.throughput(Throughput::Elements(REGIONS));

    let mem = MemRaftLogEngine::new();
    let mut next = 1;
    let mut rng = Bytes(0x9e37_79b9_7f4a_7c15);
    group.bench_function(BenchmarkId::from_parameter("memory"), |b| {
        b.iter_custom(|iters| raft_rounds(&mem, &mut next, &mut rng, iters))
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
                let t = raft_rounds(&e, &mut next, &mut rng, iters);
                e.purge_expired_files().expect("purge");
                t
            })
        });
    }
    group.finish();
}

/// Times `iters` synced write batches of 1,000 fresh puts.
fn kv_rounds<E: KvEngine>(e: &E, next: &mut u64, rng: &mut Bytes, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let values: Vec<Vec<u8>> = (0..PUTS).map(|_| rng.fill(ENTRY_BYTES)).collect();
        let start = Instant::now();
        let mut wb = e.write_batch();
        for value in values {
            let key = format!("{:016x}", *next % KV_KEYS);
            *next += 1;
            wb.put(key.as_bytes(), &value);
        }
        e.write(&mut wb, true).expect("write");
        total += start.elapsed();
    }
    total
}

fn bench_kv(c: &mut Criterion) {
    let mut group = c.benchmark_group("kv/1000_puts_synced");
    group.throughput(Throughput::Elements(PUTS));
    let mut rng = Bytes(0x2545_f491_4f6c_dd1d);

    let mem = MemKvEngine::new();
    let mut next = 0;
    group.bench_function(BenchmarkId::from_parameter("memory"), |b| {
        b.iter_custom(|iters| kv_rounds(&mem, &mut next, &mut rng, iters))
    });
    drop(mem);

    let dir = tempfile::tempdir().expect("tempdir");
    let fjall = FjallKvEngine::open(dir.path()).expect("open");
    let mut next = 0;
    group.bench_function(BenchmarkId::from_parameter("fjall"), |b| {
        b.iter_custom(|iters| kv_rounds(&fjall, &mut next, &mut rng, iters))
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
