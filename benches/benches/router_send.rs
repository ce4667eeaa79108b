//! `router_send`: the cost of one send from a single producer.
//!
//! Sends to 1 actor, or round-robin to 1,000 actors, while 2 pollers (or 2
//! tokio workers) consume; only the producer's sending time is measured, in
//! bursts of 10,000 sends with the consumers catching up in between.
//! `batch_mailbox_handle` sends through a kept `Mailbox` (no address
//! lookup). A good result: `batch_router` at or under 50 ns per send, close
//! to a raw `crossbeam_unbounded` push (the ceiling: no lookup, no wake-up),
//! and under `tokio_unbounded` (same work plus a task wake-up).

use std::time::{Duration, Instant};

use batch_system::Config;
use benches::ActorSystem;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ACTORS: u64 = 1_000;

/// Sends are timed in bursts of this many; between bursts (untimed) the
/// consumers catch up, so queues stay short and the number measured is the
/// cost of a send, not of a backlog growing without bound.
const BURST: u64 = 10_000;

fn chunks(iters: u64) -> impl Iterator<Item = std::ops::Range<u64>> {
    (0..iters)
        .step_by(BURST as usize)
        .map(move |start| start..(start + BURST).min(iters))
}

fn router_send(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_send");
    group.throughput(Throughput::Elements(1));

    let cfg = Config {
        pool_size: 2,
        ..Config::default()
    };
    for actors in [1, ACTORS] {
        let system = ActorSystem::start(&cfg, actors);
        let mut sent = 0u64;
        group.bench_function(format!("batch_router/{actors}_actors"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for chunk in chunks(iters) {
                    let start = Instant::now();
                    for i in chunk.clone() {
                        let _ = system.router.send(i % actors, i);
                    }
                    elapsed += start.elapsed();
                    sent += chunk.end - chunk.start;
                    system.wait_handled(sent);
                }
                elapsed
            })
        });
        let mailboxes: Vec<_> = (0..actors)
            .filter_map(|a| system.router.mailbox(a))
            .collect();
        group.bench_function(format!("batch_mailbox_handle/{actors}_actors"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for chunk in chunks(iters) {
                    let start = Instant::now();
                    for i in chunk.clone() {
                        let _ = mailboxes[(i % actors) as usize].try_send(i);
                    }
                    elapsed += start.elapsed();
                    sent += chunk.end - chunk.start;
                    system.wait_handled(sent);
                }
                elapsed
            })
        });
        drop(mailboxes);
        system.shutdown();
    }

    let channels: Vec<_> = (0..ACTORS)
        .map(|_| crossbeam_channel::unbounded::<u64>())
        .collect();
    group.bench_function("crossbeam_unbounded", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for chunk in chunks(iters) {
                let start = Instant::now();
                for i in chunk {
                    let _ = channels[(i % ACTORS) as usize].0.send(i);
                }
                elapsed += start.elapsed();
                for (_, rx) in &channels {
                    while rx.try_recv().is_ok() {}
                }
            }
            elapsed
        })
    });
    drop(channels);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    let handled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let senders: Vec<_> = (0..ACTORS)
        .map(|_| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let handled = handled.clone();
            runtime.spawn(async move {
                let mut buf = Vec::with_capacity(128);
                while rx.recv_many(&mut buf, 128).await > 0 {
                    handled.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::AcqRel);
                    buf.clear();
                }
            });
            tx
        })
        .collect();
    let mut sent = 0u64;
    group.bench_function("tokio_unbounded", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for chunk in chunks(iters) {
                let start = Instant::now();
                for i in chunk.clone() {
                    let _ = senders[(i % ACTORS) as usize].send(i);
                }
                elapsed += start.elapsed();
                sent += chunk.end - chunk.start;
                while handled.load(std::sync::atomic::Ordering::Acquire) < sent {
                    std::thread::yield_now();
                }
            }
            elapsed
        })
    });
    drop(senders);
    runtime.shutdown_timeout(Duration::from_secs(10));
    group.finish();
}

criterion_group!(benches, router_send);
criterion_main!(benches);
