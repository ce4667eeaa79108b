//! `imbalance`: the same messages spread over 1,000 actors or sent to 2.
//!
//! 100,000 messages from one producer, 2 pollers. `balanced` sends
//! round-robin to 1,000 actors; `two_hot` sends everything to 2 actors, so
//! each poller can hold one hot FSM and batch its messages. A good result:
//! `two_hot` is no slower than `balanced` (hot FSMs stay in the batch and
//! are not rescheduled per message).

use std::time::{Duration, Instant};

use batch_system::Config;
use benches::ActorSystem;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const MESSAGES: u64 = 100_000;

fn imbalance(c: &mut Criterion) {
    let mut group = c.benchmark_group("imbalance");
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(20);
    let cfg = Config {
        pool_size: 2,
        ..Config::default()
    };
    for (name, actors) in [("balanced", 1_000u64), ("two_hot", 2)] {
        let system = ActorSystem::start(&cfg, actors);
        let mut handled = 0u64;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    for i in 0..MESSAGES {
                        let _ = system.router.send(i % actors, i);
                    }
                    handled += MESSAGES;
                    system.wait_handled(handled);
                    total += start.elapsed();
                }
                total
            })
        });
        system.shutdown();
    }
    group.finish();
}

criterion_group!(benches, imbalance);
criterion_main!(benches);
