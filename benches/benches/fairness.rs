//! `fairness`: latency of quick work while hot FSMs keep the pollers busy.
//!
//! Measures the time for 1,000 quick FSMs to each handle one message, on 2
//! pollers, with no other load (`quick_alone`) and while 4 hot FSMs keep
//! re-sending to themselves (`quick_with_hot_loops`). A good result: a
//! good scheduler does not starve the quick tasks, so the two are close;
//! hot FSMs occupy at most a few batch slots and are rescheduled after
//! `reschedule_duration`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_system::test_runner::{Builder, Message, Runner};
use batch_system::{create_system, BasicMailbox, BatchRouter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const QUICK: u64 = 1_000;
const HOT: u64 = 4;

fn hot_loop(router: BatchRouter<Runner, Runner>, addr: u64, stop: Arc<AtomicBool>) -> Message {
    Message::callback(move |_| {
        if !stop.load(Ordering::Relaxed) {
            let next = hot_loop(router.clone(), addr, stop);
            let _ = router.send(addr, next);
        }
    })
}

fn fairness(c: &mut Criterion) {
    let mut group = c.benchmark_group("fairness");
    group.throughput(Throughput::Elements(QUICK));
    group.sample_size(20);
    for hot in [false, true] {
        let (control_tx, control) = Runner::new(1024);
        let (router, mut system) = create_system::<Runner, Runner>(2, 64, control_tx, control);
        system
            .spawn("fair".to_owned(), Builder::new())
            .expect("spawn");
        for addr in 0..QUICK + HOT {
            let (tx, runner) = Runner::new(usize::MAX);
            router.register(addr, BasicMailbox::new(tx, runner));
        }
        let stop = Arc::new(AtomicBool::new(false));
        if hot {
            for addr in QUICK..QUICK + HOT {
                let _ = router.send(addr, hot_loop(router.clone(), addr, stop.clone()));
            }
        }
        let name = if hot {
            "quick_with_hot_loops"
        } else {
            "quick_alone"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (done_tx, done_rx) = crossbeam_channel::unbounded();
                    let start = Instant::now();
                    for addr in 0..QUICK {
                        let done_tx = done_tx.clone();
                        let _ = router.send(
                            addr,
                            Message::callback(move |_| {
                                let _ = done_tx.send(());
                            }),
                        );
                    }
                    for _ in 0..QUICK {
                        done_rx
                            .recv_timeout(Duration::from_secs(60))
                            .expect("quick FSM starved");
                    }
                    total += start.elapsed();
                }
                total
            })
        });
        stop.store(true, Ordering::Relaxed);
        system.shutdown();
    }
    group.finish();
}

criterion_group!(benches, fairness);
criterion_main!(benches);
