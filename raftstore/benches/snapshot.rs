//! Snapshot throughput: a 64 MiB region (fjall), generated, carried and
//! applied the way stores do it, against a plain fjall scan of the same
//! pairs written into another fjall engine, in the same run.
//!
//! - `snapshot_64mib/generate_transfer_apply`: `snapshot::generate` over a
//!   consistent view (1 MiB chunks, CRC32), `SnapManager::begin_send` on the
//!   sender, `begin_receive` + `push` of every chunk + `finish` (size and
//!   CRC32 checked) on a receiving manager, `take_received`, then
//!   `write_to_kv`: every record checked against the region's ranges, the
//!   range's existing keys deleted, pairs + apply and region state written in
//!   one synced batch.
//! - `snapshot_64mib/fjall_scan_write` (the baseline): scan the same range
//!   of the same engine and write the pairs into a fresh engine in one
//!   synced batch.
//!
//! Each iteration writes into a fresh, empty fjall engine (created outside
//! the timing). Throughput is in bytes of user data (keys + values). A good
//! result is a ratio close to 1: the snapshot path adds checksums, chunking
//! and copies, not another pass over the disk.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engine::{FjallKvEngine, KvEngine, KvSnapshot, KvWriteBatch};
use kvproto_lite::eraftpb::MessageType;
use kvproto_lite::metapb::{Peer, Region};
use kvproto_lite::raft_serverpb::{RaftApplyState, RaftMessage, RegionLocalState};
use raftstore::snapshot::{
    generate, raft_snapshot, write_to_kv, SnapLimits, SnapManager, SnapshotStats,
};

const REGION_BYTES: usize = 64 << 20;
const VALUE_BYTES: usize = 1024;
const KEY_BYTES: usize = 16;
const CHUNK: usize = 1 << 20;

fn region() -> Region {
    let mut r = Region::default();
    r.set_id(1);
    for (id, store) in [(1, 1), (2, 2)] {
        let mut p = Peer::default();
        p.set_id(id);
        p.set_store_id(store);
        r.mut_peers().push(p);
    }
    r
}

/// A fjall engine holding region 1 with 64 MiB of incompressible data.
fn source(dir: &std::path::Path) -> (FjallKvEngine, u64) {
    let kv = FjallKvEngine::open(dir).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut value = vec![0u8; VALUE_BYTES];
    let pairs = REGION_BYTES / (KEY_BYTES + VALUE_BYTES);
    let mut wb = kv.write_batch();
    for i in 0..pairs {
        for b in value.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        wb.put(format!("key-{i:012}").as_bytes(), &value);
        if wb.count() >= 4096 {
            kv.write(&mut wb, false).unwrap();
        }
    }
    let mut apply = RaftApplyState::default();
    apply.set_applied_index(100);
    apply.set_commit_index(100);
    apply.set_commit_term(7);
    wb.put_apply_state(1, &apply);
    let mut state = RegionLocalState::default();
    state.set_region(region());
    wb.put_region_state(1, &state);
    kv.write(&mut wb, true).unwrap();
    (kv, (pairs * (KEY_BYTES + VALUE_BYTES)) as u64)
}

fn manager() -> Arc<SnapManager> {
    Arc::new(SnapManager::new(
        SnapLimits {
            chunk_size: CHUNK,
            max_sends: 4,
            max_receives: 4,
        },
        Arc::new(SnapshotStats::default()),
        Arc::new(|_, _, _| {}),
    ))
}

/// Generate, carry chunk by chunk between two managers, apply.
fn snapshot_path(src: &FjallKvEngine, dst: &FjallKvEngine) {
    let (sender, receiver) = (manager(), manager());
    let generated = generate(&src.snapshot(), 1, CHUNK).unwrap();
    let meta = generated.meta.clone();
    sender.register_generated(generated);
    let out = sender.begin_send(meta.key, 2).unwrap();
    let mut msg = RaftMessage::default();
    msg.set_region_id(1);
    msg.mut_to_peer().set_id(2);
    msg.mut_message().set_msg_type(MessageType::MsgSnapshot);
    msg.mut_message()
        .set_snapshot(raft_snapshot(&meta).unwrap());
    let mut incoming = receiver.begin_receive(msg).unwrap();
    for chunk in out.chunks() {
        incoming.push(chunk).unwrap();
    }
    incoming.finish().unwrap();
    out.finish(true);
    let data = receiver.take_received(&meta.key).unwrap();
    write_to_kv(dst, &meta, &data, None).unwrap();
}

/// The baseline: scan the range, write the pairs.
fn scan_write(src: &FjallKvEngine, dst: &FjallKvEngine) {
    let view = src.snapshot();
    let mut wb = dst.write_batch();
    let (start, end) = engine::keys::region_data_range(b"", b"");
    view.scan_raw(&start, &end, &mut |k, v| {
        wb.put_raw(k, v);
        Ok(true)
    })
    .unwrap();
    dst.write(&mut wb, true).unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (src, bytes) = source(&dir.path().join("src"));
    let fresh = || {
        let d = tempfile::tempdir().unwrap();
        let kv = FjallKvEngine::open(d.path()).unwrap();
        (d, kv)
    };
    let mut group = c.benchmark_group("snapshot_64mib");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("generate_transfer_apply", |b| {
        b.iter_batched(
            fresh,
            |(_d, dst)| snapshot_path(&src, &dst),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("fjall_scan_write", |b| {
        b.iter_batched(
            fresh,
            |(_d, dst)| scan_write(&src, &dst),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
