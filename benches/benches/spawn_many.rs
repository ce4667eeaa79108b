//! `spawn_many`: start 10,000 actors and deliver one message to each.
//!
//! Per iteration: create 10,000 FSMs, register them with a running batch
//! system (2 pollers), send each one message, wait until all are handled,
//! then close them. The baseline does the same with 10,000 tokio tasks and
//! unbounded channels on a 2-worker runtime. A good result: the batch
//! system is not slower than spawning tasks (its FSMs are plain boxes in a
//! map, not scheduled until they get a message).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_system::{BasicMailbox, Config};
use benches::{Actor, ActorSystem};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ACTORS: u64 = 10_000;

fn spawn_many(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_many");
    group.throughput(Throughput::Elements(ACTORS));
    group.sample_size(20);

    let cfg = Config {
        pool_size: 2,
        ..Config::default()
    };
    let system = ActorSystem::start(&cfg, 0);
    let mut handled = 0u64;
    group.bench_function("batch_system", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mailboxes = (0..ACTORS)
                    .map(|addr| {
                        let (tx, actor) = Actor::new();
                        (addr, BasicMailbox::new(tx, actor))
                    })
                    .collect();
                system.router.register_all(mailboxes);
                for addr in 0..ACTORS {
                    let _ = system.router.send(addr, addr);
                }
                handled += ACTORS;
                system.wait_handled(handled);
                total += start.elapsed();
                for addr in 0..ACTORS {
                    system.router.close(addr);
                }
            }
            total
        })
    });
    system.shutdown();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    let counter = Arc::new(AtomicU64::new(0));
    let mut handled = 0u64;
    group.bench_function("tokio_tasks", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let senders: Vec<_> = (0..ACTORS)
                    .map(|_| {
                        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
                        let counter = counter.clone();
                        runtime.spawn(async move {
                            while let Some(v) = rx.recv().await {
                                std::hint::black_box(v);
                                counter.fetch_add(1, Ordering::AcqRel);
                            }
                        });
                        tx
                    })
                    .collect();
                for (i, tx) in senders.iter().enumerate() {
                    let _ = tx.send(i as u64);
                }
                handled += ACTORS;
                while counter.load(Ordering::Acquire) < handled {
                    std::thread::yield_now();
                }
                total += start.elapsed();
                drop(senders);
            }
            total
        })
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    group.finish();
}

criterion_group!(benches, spawn_many);
criterion_main!(benches);
