//! Shared fixtures: systems of `Runner`s and waiting helpers.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

use batch_system::test_runner::{Builder, Runner};
use batch_system::{
    create_system, create_system_with_config, BasicMailbox, BatchRouter, BatchSystem, Config,
};

/// Generous timeout for anything the tests wait on.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub type System = (BatchRouter<Runner, Runner>, BatchSystem<Runner, Runner>);

/// A system that is created but not spawned: nothing drains the mailboxes.
pub fn idle_system() -> System {
    let (tx, control) = Runner::new(1024);
    create_system(1, 8, tx, control)
}

/// A running system with `pool` threads, batches of `batch`.
pub fn running_system(pool: usize, batch: usize, builder: Builder) -> System {
    let cfg = Config {
        pool_size: pool,
        max_batch_size: batch,
        ..Config::default()
    };
    running_system_with(&cfg, builder)
}

/// A running system with the given config.
pub fn running_system_with(cfg: &Config, builder: Builder) -> System {
    let (tx, control) = Runner::new(1024);
    let (router, mut system) = create_system_with_config(cfg, tx, control);
    system.spawn("test".to_owned(), builder).expect("spawn");
    (router, system)
}

/// Registers a runner at `addr` that reports `(addr, handled, sum)` on drop.
pub fn register_reporting(
    router: &BatchRouter<Runner, Runner>,
    addr: u64,
    capacity: usize,
    report: &Sender<Report>,
) {
    register_tagged(router, addr, addr, capacity, report);
}

/// Registers a runner at `addr` that reports `(tag, handled, sum)` on drop.
pub fn register_tagged(
    router: &BatchRouter<Runner, Runner>,
    addr: u64,
    tag: u64,
    capacity: usize,
    report: &Sender<Report>,
) {
    let (tx, mut runner) = Runner::new(capacity);
    let report = report.clone();
    runner.set_on_drop(move |r| {
        let _ = report.send((tag, r.handled(), r.sum()));
    });
    router.register(addr, BasicMailbox::new(tx, runner));
}

/// A drop report: `(tag, handled, sum)`.
pub type Report = (u64, u64, u64);

/// A channel for drop reports.
pub fn reports() -> (Sender<Report>, Receiver<Report>) {
    channel()
}

/// Polls `cond` until it holds; panics after [`TIMEOUT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(1));
    }
}
