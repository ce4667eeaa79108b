//! Entries applied per second for 1,000 regions through the apply batch
//! system's real thread pool (2 pollers), on the in-memory engine (the
//! same-run baseline: apply's own cost without real storage) and on fjall
//! (unsynced rounds, the default, and every round synced).
//!
//! Each iteration sends every region one `Apply` with 10 committed Put
//! entries (16-byte key, 128-byte value) and waits until the notifier has
//! reported all 10,000 entries applied. A good result: fjall close to its
//! raw batched-put rate (~0.8M puts/s on this machine, see design.md), i.e.
//! apply adds little on top of the engine; the memory figure is the ceiling
//! of the apply machinery itself.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use apply::{Apply, ApplyBatchSystem, ApplyMsg, ApplyRes, ApplyRouter, Config, Registration};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::{FjallKvEngine, KvEngine, MemKvEngine};
use kvproto_lite::eraftpb::Entry;
use kvproto_lite::metapb::{Peer, Region};
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, Request};
use protobuf::Message;

const REGIONS: u64 = 1_000;
const ENTRIES_PER_REGION: u64 = 10;
const VALUE_LEN: usize = 128;

fn region(id: u64) -> Region {
    let mut r = Region::default();
    r.set_id(id);
    r.set_start_key(format!("r{id:06}").into_bytes());
    r.set_end_key(format!("r{:06}", id + 1).into_bytes());
    r.mut_region_epoch().set_conf_ver(1);
    r.mut_region_epoch().set_version(1);
    let mut p = Peer::default();
    p.set_id(id);
    p.set_store_id(1);
    r.mut_peers().push(p);
    r
}

/// Entry templates of a region (data encoded once; cloning an entry only
/// bumps its data's reference count).
fn templates(r: &Region) -> Vec<Entry> {
    (0..ENTRIES_PER_REGION)
        .map(|slot| {
            let mut cmd = RaftCmdRequest::default();
            cmd.mut_header().set_region_id(r.get_id());
            cmd.mut_header()
                .set_region_epoch(r.get_region_epoch().clone());
            let mut put = Request::default();
            put.set_cmd_type(CmdType::Put);
            put.mut_put()
                .set_key(format!("r{:06}-{slot:08}", r.get_id()).into_bytes());
            put.mut_put().set_value(vec![b'v'; VALUE_LEN]);
            cmd.mut_requests().push(put);
            let mut e = Entry::default();
            e.set_term(1);
            e.set_data(cmd.write_to_bytes().expect("encode").into());
            e
        })
        .collect()
}

struct Fixture {
    router: ApplyRouter,
    system: ApplyBatchSystem,
    results: mpsc::Receiver<Vec<ApplyRes>>,
    regions: Vec<Region>,
    templates: Vec<Vec<Entry>>,
    applied: u64,
}

impl Fixture {
    fn new<K: KvEngine>(engine: K, sync_write: bool) -> Fixture {
        let cfg = Config {
            sync_write,
            ..Config::default()
        };
        let (router, mut system) = apply::create_apply_batch_system(&cfg);
        let (tx, results) = mpsc::channel();
        system
            .spawn("apply-bench".to_owned(), engine, tx)
            .expect("spawn");
        let regions: Vec<Region> = (1..=REGIONS).map(region).collect();
        for r in &regions {
            router.schedule_task(
                r.get_id(),
                ApplyMsg::registration(Registration {
                    peer_id: r.get_id(),
                    region: r.clone(),
                    apply_state: Default::default(),
                    applied_term: 0,
                }),
            );
        }
        let templates = regions.iter().map(templates).collect();
        Fixture {
            router,
            system,
            results,
            regions,
            templates,
            applied: 0,
        }
    }

    /// Applies `ENTRIES_PER_REGION` entries to every region; returns when
    /// the notifier reported all of them.
    fn round(&mut self) {
        let first = self.applied + 1;
        for (r, tpl) in self.regions.iter().zip(&self.templates) {
            let entries = tpl
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut e = t.clone();
                    e.set_index(first + i as u64);
                    e
                })
                .collect();
            self.router.schedule_task(
                r.get_id(),
                ApplyMsg::apply(Apply::new(r.get_id(), 1, entries)),
            );
        }
        self.applied += ENTRIES_PER_REGION;
        let mut done = 0;
        while done < REGIONS {
            let batch = self
                .results
                .recv_timeout(Duration::from_secs(60))
                .expect("apply results");
            done += batch
                .iter()
                .filter(|res| res.apply_state.get_applied_index() == self.applied)
                .count() as u64;
        }
    }
}

fn bench_engine<K: KvEngine>(c: &mut Criterion, name: &str, engine: K, sync_write: bool) {
    let mut group = c.benchmark_group("apply_1000_regions_10_entries");
    group.throughput(Throughput::Elements(REGIONS * ENTRIES_PER_REGION));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    let mut fx = Fixture::new(engine, sync_write);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                fx.round();
            }
            start.elapsed()
        })
    });
    group.finish();
    fx.system.shutdown();
}

/// The same work driven by hand on this thread: one `ApplyPoller`, all
/// 1,000 FSMs in one batch per round (no pool, no wake-ups): apply's CPU
/// cost per entry.
fn bench_direct(c: &mut Criterion) {
    use batch_system::PollHandler;

    let cfg = Config {
        sync_write: true,
        ..Config::default()
    };
    let (router, _system) = apply::create_apply_batch_system(&cfg);
    let (tx, results) = mpsc::channel::<Vec<ApplyRes>>();
    let mut poller = apply::ApplyPoller::new(
        router,
        MemKvEngine::new(),
        tx,
        &cfg,
        slog::Logger::root(slog::Discard, slog::o!()),
    );
    let regions: Vec<Region> = (1..=REGIONS).map(region).collect();
    let tpls: Vec<Vec<Entry>> = regions.iter().map(templates).collect();
    let mut senders = Vec::new();
    let mut fsms: Vec<Option<Box<apply::ApplyFsm>>> = Vec::new();
    for r in &regions {
        let (s, fsm) = apply::ApplyFsm::from_registration(
            Registration {
                peer_id: r.get_id(),
                region: r.clone(),
                apply_state: Default::default(),
                applied_term: 0,
            },
            &cfg,
        );
        senders.push(s);
        fsms.push(Some(fsm));
    }
    let mut applied = 0u64;
    let mut group = c.benchmark_group("apply_1000_regions_10_entries");
    group.throughput(Throughput::Elements(REGIONS * ENTRIES_PER_REGION));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("memory_direct_one_thread", |b| {
        b.iter(|| {
            let first = applied + 1;
            for ((r, tpl), s) in regions.iter().zip(&tpls).zip(&senders) {
                let entries = tpl
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let mut e = t.clone();
                        e.set_index(first + i as u64);
                        e
                    })
                    .collect();
                s.force_send(ApplyMsg::apply(Apply::new(r.get_id(), 1, entries)))
                    .expect("send");
            }
            applied += ENTRIES_PER_REGION;
            poller.begin(fsms.len());
            for fsm in fsms.iter_mut().flatten() {
                poller.handle_normal(fsm);
            }
            poller.end(&mut fsms);
            let reported: usize = results.try_iter().map(|r| r.len()).sum();
            assert_eq!(reported as u64, REGIONS);
        })
    });
    group.finish();
}

fn apply_entries(c: &mut Criterion) {
    bench_direct(c);
    // The memory engine keeps every unsynced write in a pending list until
    // the next sync; syncing each round keeps that bounded (a sync there is
    // only a map update).
    bench_engine(c, "memory", MemKvEngine::new(), true);
    let dir = tempfile::tempdir().expect("tempdir");
    bench_engine(
        c,
        "fjall",
        FjallKvEngine::open(dir.path().join("unsynced")).expect("open fjall"),
        false,
    );
    bench_engine(
        c,
        "fjall_sync_every_round",
        FjallKvEngine::open(dir.path().join("synced")).expect("open fjall"),
        true,
    );
}

criterion_group!(benches, apply_entries);
criterion_main!(benches);
