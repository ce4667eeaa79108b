//! Three raft stores wired together by hand, the way an application embeds
//! `raftstore` without any test kit: durable engines on disk, a transport
//! written in a few lines, commands sent through each store's router.
//!
//! The story, step by step (each step is a section of `main`):
//!
//! 1. bootstrap three stores with two regions, `[.., "m")` and `["m", ..)`,
//!    each with a voter on every store, and start them;
//! 2. wait until every region has a leader, and write through the leaders;
//! 3. stop store 3 *gracefully* (a planned restart): the regions it leads
//!    are handed to the other stores first, so writes go on at once;
//! 4. write while store 3 is down, then restart it from its files and
//!    watch it catch up (its applied index against the leader's commit
//!    index);
//! 5. shut everything down gracefully.
//!
//! ```text
//! cargo run -p raftstore --example three_stores
//! ```
//!
//! The integration test `tests/example.rs` runs this file's `main`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use engine::{Engines, FjallKvEngine, KvEngine, RaftEngineLogEngine};
use kvproto_lite::metapb::{self, Region};
use kvproto_lite::raft_cmdpb::{AdminCmdType, CmdType, RaftCmdRequest, Request};
use kvproto_lite::raft_serverpb::RaftMessage;
use kvproto_lite::util;
use raftstore::{
    bootstrap_store, create_raft_batch_system, initial_regions, is_bootstrapped, CommandSink,
    Config, Error, RaftBatchSystem, RaftMessageSink, RaftRouter, Transport,
};

/// The engines of one store: fjall for the key-value data and the apply
/// state, raft-engine for the raft log. Both live in the store's directory
/// and survive a restart.
type StoreEngines = Engines<FjallKvEngine, RaftEngineLogEngine>;

/// How long any step may take before the example gives up.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The transport.
//
// A store's raft pollers hand every outgoing raft message to `send`; the
// message names the destination store in `to_peer.store_id`. Our "network"
// is a map from store id to that store's message sink (its router). A real
// transport would put the message on a socket here and, on the receiving
// side, call `RaftMessageSink::deliver` with it.
// ---------------------------------------------------------------------------

/// Every running store's message sink, by store id.
#[derive(Clone, Default)]
struct Network {
    stores: Arc<RwLock<HashMap<u64, Arc<dyn RaftMessageSink>>>>,
}

impl Network {
    fn connect(&self, store_id: u64, sink: Arc<dyn RaftMessageSink>) {
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        stores.insert(store_id, sink);
    }

    fn disconnect(&self, store_id: u64) {
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        stores.remove(&store_id);
    }
}

impl Transport for Network {
    fn send(&mut self, msg: RaftMessage) -> raftstore::Result<()> {
        let to = msg.get_to_peer().get_store_id();
        let stores = self.stores.read().unwrap_or_else(|e| e.into_inner());
        match stores.get(&to) {
            // A full mailbox drops the message, like a congested network:
            // raft retries what matters.
            Some(sink) => {
                let _ = sink.deliver(msg);
                Ok(())
            }
            // A store that is not connected is unreachable: the sending
            // peer tells raft, which stops pipelining to it and probes.
            None => Err(Error::StoreUnreachable(to)),
        }
    }

    // Nothing is buffered, so there is nothing to flush. A network
    // transport would send its batch of the poll round here.
    fn flush(&mut self) {}
}

// ---------------------------------------------------------------------------
// A store: its engines, its two batch systems (raft and apply) and its
// router.
// ---------------------------------------------------------------------------

struct Store {
    id: u64,
    system: RaftBatchSystem<FjallKvEngine, RaftEngineLogEngine>,
    router: RaftRouter<RaftEngineLogEngine>,
    engines: StoreEngines,
}

/// Opens (or reopens) store `id`'s engines under `root`, bootstraps it the
/// first time, and starts it.
fn start_store(
    root: &Path,
    id: u64,
    regions: &[Region],
    cfg: &Config,
    network: &Network,
) -> Result<Store, Box<dyn std::error::Error>> {
    let dir = root.join(format!("store-{id}"));
    let engines = Engines::new(
        FjallKvEngine::open(dir.join("kv"))?,
        RaftEngineLogEngine::open(dir.join("raft"))?,
    );
    // The first start writes the initial regions; a restart finds them.
    if !is_bootstrapped(&engines)? {
        bootstrap_store(&engines, id, regions)?;
    }
    let (router, mut system) = create_raft_batch_system(cfg);
    // The router exists before the store runs, so the store can be
    // connected to the network before `spawn` (or after: both work;
    // messages to a store not connected yet are refused as unreachable and
    // retried by raft).
    network.connect(id, Arc::new(router.clone()));
    let mut meta = metapb::Store::default();
    meta.set_id(id);
    // The logger: pass your own `slog::Logger` to see what the store does
    // (region_id, peer_id and term are in every record).
    system.spawn(
        meta,
        engines.clone(),
        network.clone(),
        &raftstore::discard_logger(),
    )?;
    Ok(Store {
        id,
        system,
        router,
        engines,
    })
}

/// Stops `store`: a planned stop hands its leaderships over first. The
/// network forgets it, and the other stores are told it is unreachable
/// (what a connection-level transport does when a connection breaks), so
/// their followers stop naming it as a leader.
fn stop_store(mut store: Store, network: &Network, others: &[Store]) {
    let report = store.system.shutdown_gracefully(Duration::from_secs(5));
    println!(
        "store {} stopped: handed off the leadership of regions {:?}, still led {:?}",
        store.id, report.handed_off, report.still_leading
    );
    network.disconnect(store.id);
    for other in others {
        other.router.report_unreachable(store.id);
    }
    // Dropping the store drops its engines: their files are closed and can
    // be reopened by the next start.
}

// ---------------------------------------------------------------------------
// A minimal client: find the leader of a key's region as the stores know
// it, send the command there, follow `NotLeader` hints, back off when
// nobody knows a leader.
// ---------------------------------------------------------------------------

fn region_of<'a>(regions: &'a [Region], key: &[u8]) -> &'a Region {
    regions
        .iter()
        .find(|r| util::is_key_in_region(key, r))
        .expect("the regions cover every key")
}

fn store(stores: &[Store], id: u64) -> &Store {
    stores
        .iter()
        .find(|s| s.id == id)
        .expect("the store is running")
}

/// The store whose peer leads `region_id`, as the running stores see it.
fn leader_of(stores: &[Store], region_id: u64) -> Option<u64> {
    stores
        .iter()
        .filter_map(|s| s.system.leader_info(region_id))
        .filter(|info| info.has_leader())
        .max_by_key(|info| info.term)
        .map(|info| info.leader_store_id)
}

fn put(stores: &[Store], regions: &[Region], key: &[u8], value: &[u8]) {
    let region = region_of(regions, key);
    let deadline = Instant::now() + DEADLINE;
    let mut target = leader_of(stores, region.get_id());
    loop {
        assert!(Instant::now() < deadline, "no leader took the write");
        let Some(store) = target.and_then(|id| stores.iter().find(|s| s.id == id)) else {
            // Nobody names a reachable leader (an election is under way):
            // back off instead of spinning.
            std::thread::sleep(Duration::from_millis(20));
            target = leader_of(stores, region.get_id());
            continue;
        };
        let peer = util::find_peer(region, store.id).expect("a peer on every store");
        let mut request: RaftCmdRequest = util::new_cmd_request(region, peer.clone());
        let mut req = Request::default();
        req.set_cmd_type(CmdType::Put);
        req.mut_put().set_key(key.to_vec());
        req.mut_put().set_value(value.to_vec());
        request.mut_requests().push(req);
        // `submit` answers refusals itself (ServerIsBusy, RegionNotFound);
        // with `send_raft_command` you get the command back and answer it
        // with `raftstore::answer_refused`.
        let resp = store
            .router
            .submit(request)
            .recv_timeout(DEADLINE)
            .expect("every command is answered");
        let header = resp.get_header();
        if !header.has_error() {
            return;
        }
        let err = header.get_error();
        target = if err.has_not_leader() && err.get_not_leader().has_leader() {
            // Follow the hint.
            Some(err.get_not_leader().get_leader().get_store_id())
        } else {
            // No hint (the leader is unreachable or being elected), or
            // another retryable error: look again after a pause.
            std::thread::sleep(Duration::from_millis(20));
            leader_of(stores, region.get_id())
        };
    }
}

/// Waits until `cond` holds, checking every 10 ms.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Ticks of 10 ms: an election takes 100 to 200 ms, so the example runs
    // in a few seconds. Everything else is the default (see the rustdoc of
    // `Config` for the values).
    let cfg = Config {
        raft_base_tick_interval_ms: 10,
        store_pool_size: 1,
        ..Config::default()
    };
    let dir = tempfile::tempdir()?;
    let network = Network::default();

    // -- 1. Bootstrap and start three stores -------------------------------
    //
    // `initial_regions` describes two regions split at "m", each with one
    // voter on every store. Every store is bootstrapped with the same
    // description.
    let regions = initial_regions(&[1, 2, 3], &[b"m".to_vec()])?;
    let mut stores = Vec::new();
    for id in [1, 2, 3] {
        stores.push(start_store(dir.path(), id, &regions, &cfg, &network)?);
    }

    // -- 2. Wait for leaders, then write ------------------------------------
    //
    // Each store can tell when every one of its regions knows a leader.
    for store in &stores {
        store.system.wait_for_leaders(DEADLINE)?;
    }
    for region in &regions {
        let info = stores[0].system.leader_info(region.get_id());
        println!("region {} is led by {:?}", region.get_id(), info);
    }
    for i in 0..50u32 {
        put(&stores, &regions, format!("a{i:03}").as_bytes(), b"before");
        put(&stores, &regions, format!("n{i:03}").as_bytes(), b"before");
    }
    println!("wrote 100 keys");

    // -- 3. A planned restart of store 3: stop it gracefully ----------------
    //
    // Make sure store 3 leads something, so the hand-off has work to do:
    // ask the leader of the first region to transfer leadership there (an
    // admin command; it returns at once, the transfer takes a round trip).
    let first = regions[0].clone();
    wait_for("store 3 to lead the first region", || {
        if store(&stores, 3)
            .system
            .leader_info(first.get_id())
            .is_some_and(|i| i.is_leader)
        {
            return true;
        }
        if let Some(leader) = leader_of(&stores, first.get_id()) {
            let peer = util::find_peer(&first, leader).expect("a peer on every store");
            let mut request = util::new_cmd_request(&first, peer.clone());
            let admin = request.mut_admin_request();
            admin.set_cmd_type(AdminCmdType::TransferLeader);
            let target = util::find_peer(&first, 3).expect("a peer on every store");
            admin.mut_transfer_leader().set_peer(target.clone());
            let _ = store(&stores, leader).router.submit(request);
        }
        false
    });
    let store3 = stores.pop().expect("three stores");
    let led = store3.system.store_meta().leader_regions();
    println!("store 3 leads regions {led:?} before its restart");
    stop_store(store3, &network, &stores);
    // The remaining stores already know a leader for every region: no
    // election timeout was waited for.
    for region in &regions {
        let leader = leader_of(&stores, region.get_id());
        assert!(
            matches!(leader, Some(1 | 2)),
            "region {}: {leader:?}",
            region.get_id()
        );
    }

    // -- 4. Write while store 3 is down, restart it, watch it catch up ------
    for i in 0..50u32 {
        put(&stores, &regions, format!("a{i:03}").as_bytes(), b"after");
        put(&stores, &regions, format!("n{i:03}").as_bytes(), b"after");
    }
    println!("wrote 100 keys while store 3 was down");
    stores.push(start_store(dir.path(), 3, &regions, &cfg, &network)?);
    // A store's progress per region: its applied index, and the commit
    // index it knows. Store 3 has caught up with a region once it has
    // applied what that region's leader had committed.
    for region in &regions {
        let id = region.get_id();
        wait_for("store 3 to catch up", || {
            let Some(leader) = leader_of(&stores, id) else {
                return false;
            };
            let leader = store(&stores, leader).system.region_progress(id);
            let mine = store(&stores, 3).system.region_progress(id);
            matches!((mine, leader), (Some(m), Some(l)) if m.caught_up_with(&l))
        });
        println!(
            "region {id}: store 3 applied up to {:?}",
            store(&stores, 3).system.region_progress(id)
        );
    }
    // Its own KV engine has every write it missed.
    let kv = &store(&stores, 3).engines.kv;
    assert_eq!(kv.get(b"a049")?.as_deref(), Some(&b"after"[..]));
    assert_eq!(kv.get(b"n000")?.as_deref(), Some(&b"after"[..]));
    println!("store 3 caught up");

    // -- 5. Shut down -------------------------------------------------------
    //
    // Each store but the last hands its leaderships over before stopping;
    // the last one has nobody left to hand them to and simply stops.
    while stores.len() > 1 {
        let store = stores.remove(0);
        stop_store(store, &network, &stores);
    }
    let mut last = stores.remove(0);
    last.system.shutdown();
    println!("all stores stopped");
    Ok(())
}
