//! Stress: many producers, many FSMs, small batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use batch_system::test_runner::{Builder, Message, Runner};
use batch_system::{BasicMailbox, Config};

use crate::util::{
    register_reporting, reports, running_system, running_system_with, wait_until, TIMEOUT,
};

/// Each message is sent when its FSM may be just releasing itself; a lost
/// wake-up would leave a message queued on an idle FSM and the count short
/// (shutdown only drains FSMs that were notified, so it cannot hide one).
#[test]
fn no_wake_up_is_lost_under_many_producers() {
    let builder = Builder::new().budget(1);
    let metrics = builder.metrics();
    let cfg = Config {
        pool_size: 3,
        max_batch_size: 2,
        ..Config::default()
    };
    let (router, mut system) = running_system_with(&cfg, builder);
    let fsms = 16u64;
    let (report_tx, report_rx) = reports();
    for addr in 0..fsms {
        register_reporting(&router, addr, usize::MAX, &report_tx);
    }
    let producers = 6u64;
    let rounds = 4_000u64;
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let router = router.clone();
            std::thread::spawn(move || {
                for i in 0..rounds {
                    router.send((i + p) % fsms, Message::Count(1)).unwrap();
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = producers * rounds;
    wait_until("every message handled", || metrics.handled() == total);
    system.shutdown();
    let mut handled = 0;
    for _ in 0..fsms {
        handled += report_rx.recv_timeout(TIMEOUT).unwrap().1;
    }
    assert_eq!(handled, total);
}

/// The runner asserts on entry that nobody else is handling it; callbacks
/// make the handling long enough for an overlap to show, and the panic
/// would come back from `shutdown`.
#[test]
fn an_fsm_is_never_handled_by_two_threads_at_once() {
    let cfg = Config {
        pool_size: 4,
        max_batch_size: 3,
        ..Config::default()
    };
    let (router, mut system) = running_system_with(&cfg, Builder::new().budget(2));
    let fsms = 8u64;
    let concurrent = Arc::new((0..fsms).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    for addr in 0..fsms {
        let (tx, runner) = Runner::new(usize::MAX);
        router.register(addr, BasicMailbox::new(tx, runner));
    }
    let producers = 4u64;
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let router = router.clone();
            let concurrent = concurrent.clone();
            std::thread::spawn(move || {
                for i in 0..1_500u64 {
                    let addr = (i * 3 + p) % fsms;
                    let concurrent = concurrent.clone();
                    router
                        .send(
                            addr,
                            Message::callback(move |_| {
                                // Also counted from outside the FSM.
                                let slot = &concurrent[addr as usize];
                                assert_eq!(slot.fetch_add(1, Ordering::SeqCst), 0);
                                std::thread::yield_now();
                                slot.fetch_sub(1, Ordering::SeqCst);
                            }),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Re-raises any assertion failure from the pollers.
    system.shutdown();
}

/// Bursts separated by idle gaps in which every poller parks: each burst
/// must wake the pool again, whatever the interleaving of the first send
/// with the last poller going to sleep.
#[test]
fn bursts_after_every_poller_parked_are_all_handled() {
    for pool in [1usize, 2, 3] {
        let builder = Builder::new();
        let metrics = builder.metrics();
        let (router, mut system) = running_system(pool, 4, builder);
        for addr in 0..8 {
            let (tx, runner) = Runner::new(usize::MAX);
            router.register(addr, BasicMailbox::new(tx, runner));
        }
        let mut sent = 0;
        for burst in 0..50u64 {
            wait_until("every poller parked", || system.health().parked == pool);
            for i in 0..=(burst % 7) {
                router.send(i % 8, Message::Count(1)).unwrap();
                sent += 1;
            }
            wait_until("the burst handled", || metrics.handled() == sent);
        }
        system.shutdown();
        assert_eq!(metrics.handled(), sent, "pool {pool}");
    }
}
