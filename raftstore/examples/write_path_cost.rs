//! The cost of one replicated write, measured in a single thread so that an
//! instruction counter gives the same answer on a busy and a quiet machine.
//!
//! Three stores with in-memory engines hold one region (a voter on every
//! store). Every store's raft and apply pollers are driven by hand on this
//! thread ([`RaftBatchSystem::spawn_manual`]), and the transport delivers a
//! raft message straight into the receiving store's router. Each round the
//! client submits `batch` puts (16-byte values) to the leader, then the
//! pollers run until every put is answered: propose, append, replicate,
//! commit, apply and callback, on all three stores. So the whole process
//! does the work of three stores serving one region, and nothing else.
//!
//! ```text
//! cargo run --release -p raftstore --example write_path_cost -- 20000 64
//! valgrind --tool=callgrind --callgrind-out-file=target/wp.cg \
//!     target/release/examples/write_path_cost 20000 64
//! callgrind_annotate target/wp.cg | head -60
//! ```
//!
//! Arguments: writes (default 20,000), puts per round (default 64),
//! regions (default 1). It prints the writes answered and the wall time;
//! under callgrind, the instruction count divided by the writes is the
//! cost per write of the three stores together (setup included: run two
//! sizes and take the difference to cancel it). The integration test
//! `tests/example.rs` runs a small size ([`run`]).
//!
//! With more regions than puts per round (`20000 64 1000`), the puts of a
//! round go to consecutive regions, round-robin, so every put is alone in
//! its region: what a write costs when nothing batches it within a region
//! (one Ready, one append message per follower, one apply task per put).
//! Every region is ticked once per 16 rounds in both shapes, so a region's
//! heartbeats are paid per region and show in the difference.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::{Engines, MemKvEngine, MemRaftLogEngine};
use kvproto_lite::metapb::{self, Region};
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, Request};
use kvproto_lite::raft_serverpb::{ExtraMessageType, RaftMessage};
use kvproto_lite::util;
use raftstore::{
    bootstrap_store, create_raft_batch_system, initial_regions, CommandSink, Config, ManualPollers,
    PeerMsg, RaftBatchSystem, RaftMessageSink, RaftRouter, Receiver, Transport,
};

type Router = RaftRouter<MemRaftLogEngine>;

/// Delivers each message into the receiving store's router at once, and
/// counts the messages by kind.
#[derive(Clone, Default)]
struct Direct {
    routers: Arc<Mutex<Vec<(u64, Router)>>>,
    sent: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// A message's kind: its hibernation role, or its raft type.
fn kind(msg: &RaftMessage) -> String {
    if msg.get_extra() == ExtraMessageType::NoExtra {
        format!("{:?}", msg.get_message().get_msg_type())
    } else {
        format!("{:?}", msg.get_extra())
    }
}

impl Transport for Direct {
    fn send(&mut self, msg: RaftMessage) -> raftstore::Result<()> {
        *self
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind(&msg))
            .or_default() += 1;
        let to = msg.get_to_peer().get_store_id();
        let routers = self.routers.lock().unwrap_or_else(|e| e.into_inner());
        match routers.iter().find(|(id, _)| *id == to) {
            Some((_, router)) => {
                let _ = router.deliver(msg);
                Ok(())
            }
            None => Err(raftstore::Error::StoreUnreachable(to)),
        }
    }

    fn flush(&mut self) {}
}

struct Store {
    router: Router,
    pollers: ManualPollers<MemKvEngine, MemRaftLogEngine, Direct>,
    // Kept alive: dropping the system closes the mailboxes.
    _system: RaftBatchSystem<MemKvEngine, MemRaftLogEngine>,
}

/// Runs every store's pollers until none has work; returns the FSMs handled.
fn drive(stores: &mut [Store]) -> usize {
    let mut total = 0;
    loop {
        let mut handled = 0;
        for s in stores.iter_mut() {
            handled += s.pollers.raft.poll_once();
            handled += s.pollers.apply.poll_once();
        }
        if handled == 0 {
            return total;
        }
        total += handled;
    }
}

fn tick(store: &Store, region_id: u64) {
    let _ = store.router.force_send(region_id, PeerMsg::Tick);
}

fn put(region: &Region, leader: &metapb::Peer, i: u64) -> RaftCmdRequest {
    let mut request = util::new_cmd_request(region, leader.clone());
    let mut req = Request::default();
    req.set_cmd_type(CmdType::Put);
    let mut key = region.get_start_key().to_vec();
    key.extend_from_slice(&(i % 4096).to_be_bytes());
    req.mut_put().set_key(key);
    req.mut_put().set_value(vec![b'v'; 16]);
    request.mut_requests().push(req);
    request
}

#[allow(dead_code)] // the integration test calls `run`, not `main`
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let writes: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let batch: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let regions: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    let start = Instant::now();
    let Outcome { answered, messages } = run_regions(writes, batch, regions)?;
    let elapsed = start.elapsed();
    println!(
        "writes: {answered}  batch: {batch}  regions: {regions}  wall s: {:.3}  writes/s (one thread, three stores): {:.0}",
        elapsed.as_secs_f64(),
        answered as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    let total: u64 = messages.values().sum();
    println!(
        "raft messages per write: {:.2}",
        total as f64 / answered.max(1) as f64
    );
    for (kind, n) in &messages {
        println!("  {kind}: {:.2}", *n as f64 / answered.max(1) as f64);
    }
    Ok(())
}

/// Sets the three stores up with one region, elects store 1's peer, then
/// writes `writes` puts, `batch` per round; returns how many were answered
/// OK (all of them, or an error).
pub fn run(writes: u64, batch: u64) -> Result<u64, Box<dyn std::error::Error>> {
    Ok(run_regions(writes, batch, 1)?.answered)
}

/// What [`run_regions`] did.
pub struct Outcome {
    /// Puts answered OK.
    pub answered: u64,
    /// Raft messages sent while writing (after the elections), by kind.
    pub messages: BTreeMap<String, u64>,
}

/// [`run`] over `region_count` regions (split evenly over 2-byte key
/// prefixes), store 1's peer leading each; a round's puts go to
/// consecutive regions, round-robin.
pub fn run_regions(
    writes: u64,
    batch: u64,
    region_count: u64,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let batch = batch.max(1);
    let region_count = region_count.clamp(1, u64::from(u16::MAX));
    let split_keys: Vec<Vec<u8>> = (1..region_count)
        .map(|i| {
            ((i * u64::from(u16::MAX) / region_count) as u16)
                .to_be_bytes()
                .to_vec()
        })
        .collect();
    let regions = initial_regions(&[1, 2, 3], &split_keys)?;
    let cfg = Config {
        // Time only moves when this program ticks.
        raft_base_tick_interval_ms: 3_600_000,
        raft_election_jitter: false,
        ..Config::default()
    };
    let network = Direct::default();
    let logger = raftstore::discard_logger();
    let mut stores = Vec::new();
    for id in [1u64, 2, 3] {
        let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
        bootstrap_store(&engines, id, &regions)?;
        let (router, mut system) = create_raft_batch_system(&cfg);
        network
            .routers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, router.clone()));
        let mut meta = metapb::Store::default();
        meta.set_id(id);
        let pollers = system.spawn_manual(meta, engines, network.clone(), &logger)?;
        stores.push(Store {
            router,
            pollers,
            _system: system,
        });
    }

    // Only store 1 ticks: its peers time out first and lead.
    let mut leaders = Vec::with_capacity(regions.len());
    for region in &regions {
        let region_id = region.get_id();
        let mut ticks = 0;
        while !stores[0]
            ._system
            .leader_info(region_id)
            .is_some_and(|i| i.is_leader)
        {
            ticks += 1;
            if ticks > 100 * cfg.raft_election_timeout_ticks {
                return Err(format!("store 1 did not become leader of region {region_id}").into());
            }
            tick(&stores[0], region_id);
            drive(&mut stores);
        }
        let leader = region
            .get_peers()
            .iter()
            .find(|p| p.get_store_id() == 1)
            .cloned()
            .ok_or("no peer on store 1")?;
        leaders.push(leader);
    }

    network
        .sent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let mut answered = 0u64;
    let mut next = 0u64;
    let mut target = 0usize;
    while answered < writes {
        let n = batch.min(writes - answered);
        let receivers: Vec<Receiver<RaftCmdResponse>> = (0..n)
            .map(|_| {
                next += 1;
                let (region, leader) = (&regions[target], &leaders[target]);
                target = (target + 1) % regions.len();
                stores[0].router.submit(put(region, leader, next))
            })
            .collect();
        drive(&mut stores);
        for rx in receivers {
            let resp = rx.try_recv().map_err(|_| "a put was not answered")?;
            if resp.get_header().has_error() {
                return Err(format!("put failed: {:?}", resp.get_header().get_error()).into());
            }
            answered += 1;
        }
        // Heartbeats and the leader's lease keep going as under load.
        if next % (batch * 16) < batch {
            for s in &stores {
                for region in &regions {
                    tick(s, region.get_id());
                }
            }
            drive(&mut stores);
        }
    }
    let messages = std::mem::take(&mut *network.sent.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Outcome { answered, messages })
}
