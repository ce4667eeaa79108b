//! Live heap bytes per idle region replica, counted by the allocator.
//!
//! Three stores in one process hold `N` regions (in-memory engines, or
//! durable ones with `durable` as the second argument); once every region
//! has a leader and every replica hibernated, the live heap (bytes
//! allocated and not yet freed, counted by a wrapper around the system
//! allocator) grown since before the cluster was made is divided by the
//! number of replicas. Unlike RSS this counts exactly what the regions
//! hold, not allocator slack or pages the allocator keeps.
//!
//! ```text
//! cargo run --release -p benches --example heap_per_replica -- 10000 [memory|durable]
//! ```
//!
//! It exits without shutting the stores down, so under `heaptrack` the
//! "leaked" allocations are exactly what the idle regions hold, by call
//! site.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use cluster::Cluster;
use engine::{KvEngine, RaftLogEngine};
use raftstore::Config;

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counter is
// only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `alloc` with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let regions: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let durable = args.next().as_deref() == Some("durable");
    let stores = 3;
    let cfg = Config {
        store_pool_size: 1,
        ..Config::default()
    };
    let before = live();
    let result = if durable {
        Cluster::durable(stores, regions, cfg).map(|c| run(c, before))
    } else {
        Cluster::memory(stores, regions, cfg).map(|c| run(c, before))
    };
    if let Err(e) = result {
        eprintln!("cannot build cluster: {e}");
        std::process::exit(1);
    }
}

fn run<EK: KvEngine, ER: RaftLogEngine>(mut cluster: Cluster<EK, ER>, before: isize) {
    let replicas = cluster.regions().len() * cluster.store_ids().len();
    if let Err(e) = cluster
        .start()
        .and_then(|_| cluster.wait_for_leaders(Duration::from_secs(600)))
    {
        eprintln!("cluster did not start: {e}");
        std::process::exit(1);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let awake = || -> usize {
        cluster
            .store_ids()
            .iter()
            .filter_map(|id| cluster.awake_regions(*id))
            .map(|a| a.len())
            .sum()
    };
    while awake() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the last apply results and messages drain.
    std::thread::sleep(Duration::from_secs(2));
    let grown = live() - before;
    println!("replicas: {replicas}, still awake: {}", awake());
    println!(
        "live heap bytes/replica: {}",
        grown / replicas.max(1) as isize
    );
    std::process::exit(0);
}
