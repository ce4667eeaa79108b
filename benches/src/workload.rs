//! The actor workload and its two runners.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_system::{create_system_with_config, BasicMailbox, Config};

use crate::actor::{spin_for, Actor, ActorBuilder};
use crate::sys::thread_cpu;

/// Shape of one run.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Number of actors (FSMs or tasks).
    pub actors: usize,
    /// Messages sent in total, round-robin over the actors.
    pub messages: u64,
    /// Threads: batch-system pollers, or tokio worker threads.
    pub pool_size: usize,
    /// Batch-system `max_batch_size` (unused by the baseline).
    pub max_batch_size: usize,
    /// Simulated cost of making handled messages durable (a stand-in for a
    /// raft log fsync), paid as CPU spin: once per poll round by the batch
    /// system (in `end`), once per task wake by the baseline (after draining
    /// up to 128 queued messages with `recv_many`). Zero: no such work.
    pub sync_cost: Duration,
}

/// Outcome of one run.
#[derive(Debug, Clone, Copy)]
pub struct RunStats {
    /// Messages handled.
    pub messages: u64,
    /// From the first send to the last message handled.
    pub elapsed: Duration,
    /// Units of group commit paid: poll rounds that handled messages
    /// (batch system) or task wakes that drained messages with `recv_many`
    /// (baseline, only with a non-zero `sync_cost`; 0 otherwise).
    pub syncs: u64,
    /// CPU time of the producer thread while it sent (user + system).
    /// On a machine whose cores are taken by other work the elapsed time
    /// says little; this is what one send costs the sender, and what
    /// bounds throughput when the producer has a core to itself.
    pub producer_cpu: Duration,
}

impl RunStats {
    /// Throughput in messages per second.
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Producer CPU time per message, in nanoseconds.
    pub fn producer_ns_per_msg(&self) -> f64 {
        self.producer_cpu.as_nanos() as f64 / self.messages.max(1) as f64
    }

    /// Messages per unit of group commit (0 when not measured).
    pub fn msgs_per_sync(&self) -> f64 {
        if self.syncs == 0 {
            0.0
        } else {
            self.messages as f64 / self.syncs as f64
        }
    }
}

/// How long to wait for a run to finish before calling it broken.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the workload on a batch system with `w.pool_size` pollers.
///
/// # Panics
///
/// Panics if the system cannot be spawned or the run does not finish
/// within five minutes (a lost message).
pub fn run_batch_system(w: &Workload) -> RunStats {
    let cfg = Config {
        pool_size: w.pool_size,
        max_batch_size: w.max_batch_size,
        ..Config::default()
    };
    let (control_tx, control) = Actor::new();
    let (router, mut system) = create_system_with_config::<Actor, Actor>(&cfg, control_tx, control);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let builder = ActorBuilder::new(128, w.messages, done_tx).sync_cost(w.sync_cost);
    let rounds = builder.rounds();
    system
        .spawn("bench".to_owned(), builder)
        .expect("spawn batch system");
    let mailboxes = (0..w.actors as u64)
        .map(|addr| {
            let (tx, actor) = Actor::new();
            (addr, BasicMailbox::new(tx, actor))
        })
        .collect();
    router.register_all(mailboxes);

    let actors = w.actors.max(1) as u64;
    let start = Instant::now();
    let cpu_start = thread_cpu();
    let mut addr = 0;
    for i in 0..w.messages {
        router.send(addr, i).expect("actor mailbox");
        addr += 1;
        if addr == actors {
            addr = 0;
        }
    }
    let producer_cpu = thread_cpu().saturating_sub(cpu_start);
    if w.messages > 0 {
        done_rx
            .recv_timeout(RUN_TIMEOUT)
            .expect("batch system run did not finish");
    }
    let elapsed = start.elapsed();
    system.shutdown();
    RunStats {
        messages: w.messages,
        elapsed,
        syncs: rounds.load(Ordering::Acquire),
        producer_cpu,
    }
}

/// Runs the workload on one tokio task per actor, each fed by an unbounded
/// `tokio::sync::mpsc` channel, on a runtime with `w.pool_size` workers.
///
/// # Panics
///
/// Panics if the runtime cannot be built or the run does not finish within
/// five minutes.
pub fn run_tokio_baseline(w: &Workload) -> RunStats {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(w.pool_size.max(1))
        .build()
        .expect("tokio runtime");
    let actors = w.actors.max(1);
    let per_actor = |a: usize| -> u64 {
        let base = w.messages / actors as u64;
        base + u64::from((a as u64) < w.messages % actors as u64)
    };
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let remaining = Arc::new(AtomicUsize::new(
        (0..actors).filter(|&a| per_actor(a) > 0).count(),
    ));
    // Each task adds its wake count once, when it is done.
    let syncs = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::with_capacity(actors);
    for a in 0..actors {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        senders.push(tx);
        let expected = per_actor(a);
        let remaining = Arc::clone(&remaining);
        let syncs = Arc::clone(&syncs);
        let done_tx = done_tx.clone();
        let sync_cost = w.sync_cost;
        runtime.spawn(async move {
            let (mut handled, mut sum, mut wakes) = (0u64, 0u64, 0u64);
            if expected == 0 {
                return;
            }
            let finish = |handled: u64, wakes: u64| {
                if handled == expected {
                    syncs.fetch_add(wakes, Ordering::AcqRel);
                    if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        let _ = done_tx.send(());
                    }
                }
            };
            if sync_cost.is_zero() {
                while let Some(v) = rx.recv().await {
                    sum = sum.wrapping_add(v);
                    handled += 1;
                    finish(handled, 0);
                }
            } else {
                // Group commit per wake: drain what is queued, sync once.
                let mut buf = Vec::with_capacity(128);
                while rx.recv_many(&mut buf, 128).await > 0 {
                    for v in buf.drain(..) {
                        sum = sum.wrapping_add(v);
                        handled += 1;
                    }
                    spin_for(sync_cost);
                    wakes += 1;
                    finish(handled, wakes);
                }
            }
            std::hint::black_box(sum);
        });
    }
    let start = Instant::now();
    let cpu_start = thread_cpu();
    let mut addr = 0;
    for i in 0..w.messages {
        senders[addr].send(i).expect("actor task alive");
        addr += 1;
        if addr == actors {
            addr = 0;
        }
    }
    let producer_cpu = thread_cpu().saturating_sub(cpu_start);
    if w.messages > 0 {
        done_rx
            .recv_timeout(RUN_TIMEOUT)
            .expect("tokio baseline run did not finish");
    }
    let elapsed = start.elapsed();
    drop(senders);
    runtime.shutdown_timeout(Duration::from_secs(10));
    RunStats {
        messages: w.messages,
        elapsed,
        syncs: syncs.load(Ordering::Acquire),
        producer_cpu,
    }
}
