//! Three stores in one process connected only through gRPC on loopback:
//! replication over `GrpcTransport`, the KV service, region lookup, a store
//! that stops and comes back, and a stream sent to the wrong store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{Engines, KvEngine, MemKvEngine, MemRaftLogEngine, RaftLogEngine};
use kvproto_lite::grpc::KvClient;
use kvproto_lite::kvrpcpb::*;
use kvproto_lite::metapb::{Region, Store};
use raftstore::{bootstrap_store, create_raft_batch_system, initial_regions, RaftBatchSystem};
use raftstore::{Callback, CommandSink, RaftCommand};
use server::{AddressBook, GrpcTransport, KvService, RaftService, Server, StoreService};
use tonic::transport::Channel;

type Sys = RaftBatchSystem<MemKvEngine, MemRaftLogEngine>;

/// Polls `cond` until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

struct Running {
    system: Sys,
    transport: GrpcTransport,
    server: Server,
    unreachable_reports: Arc<AtomicU64>,
    reachable_reports: Arc<AtomicU64>,
}

/// Stores 1..=n with in-memory engines (kept across restarts), each with its
/// own gRPC server and transport.
struct GrpcCluster {
    rt: tokio::runtime::Runtime,
    book: AddressBook,
    addrs: HashMap<u64, SocketAddr>,
    engines: HashMap<u64, Engines<MemKvEngine, MemRaftLogEngine>>,
    running: HashMap<u64, Running>,
    regions: Vec<Region>,
    cfg: raftstore::Config,
    net: server::Config,
    /// Wraps each store's command sink before its KV service gets it (fault
    /// injection between the service and the raft store).
    wrap: Option<Wrap>,
}

type Wrap = Arc<dyn Fn(Arc<dyn CommandSink>) -> Arc<dyn CommandSink> + Send + Sync>;

impl GrpcCluster {
    fn new(stores: u64, regions: usize) -> GrpcCluster {
        GrpcCluster::with_config(stores, regions, |_| {})
    }

    fn with_config(
        stores: u64,
        regions: usize,
        tweak: impl Fn(&mut raftstore::Config),
    ) -> GrpcCluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ids: Vec<u64> = (1..=stores).collect();
        let regions = initial_regions(&ids, &raftstore::even_split_keys(regions)).unwrap();
        let mut cfg = raftstore::Config {
            raft_base_tick_interval_ms: 10,
            store_pool_size: 1,
            ..raftstore::Config::default()
        };
        cfg.apply.pool_size = 1;
        tweak(&mut cfg);
        let net = server::Config {
            reconnect_initial_backoff_ms: 10,
            reconnect_max_backoff_ms: 100,
            ..server::Config::default()
        };
        // Free ports first, so that every store knows every address.
        let mut addrs = HashMap::new();
        for &id in &ids {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            addrs.insert(id, l.local_addr().unwrap());
        }
        let book = AddressBook::new(addrs.iter().map(|(&id, a)| (id, a.to_string()))).unwrap();
        let mut engines = HashMap::new();
        for &id in &ids {
            let e = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
            bootstrap_store(&e, id, &regions).unwrap();
            engines.insert(id, e);
        }
        let mut c = GrpcCluster {
            rt,
            book,
            addrs,
            engines,
            running: HashMap::new(),
            regions,
            cfg,
            net,
            wrap: None,
        };
        for id in ids {
            c.start(id);
        }
        c
    }

    fn start(&mut self, id: u64) {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let listener = Server::bind(self.addrs[&id]).unwrap();
        let engines = self.engines[&id].clone();
        let (router, mut system) = create_raft_batch_system(&self.cfg);
        let reports = Arc::new(AtomicU64::new(0));
        let (r, n) = (router.clone(), reports.clone());
        let transport = GrpcTransport::new(
            id,
            self.book.clone(),
            self.net.clone(),
            self.rt.handle().clone(),
            Arc::new(move |store| {
                n.fetch_add(1, Ordering::Relaxed);
                r.report_unreachable(store)
            }),
            &logger,
        );
        let comebacks = Arc::new(AtomicU64::new(0));
        let (r, n) = (router.clone(), comebacks.clone());
        assert!(transport.set_reachable_reporter(Arc::new(move |store| {
            n.fetch_add(1, Ordering::Relaxed);
            r.report_reachable(store)
        })));
        assert!(!transport.set_reachable_reporter(Arc::new(|_| {})));
        let mut store = Store::default();
        store.set_id(id);
        system
            .spawn(store, engines.clone(), transport.clone(), &logger)
            .unwrap();
        let sink: Arc<dyn CommandSink> = Arc::new(router.clone());
        let sink = match &self.wrap {
            Some(wrap) => wrap(sink),
            None => sink,
        };
        let kv = KvService::new(
            id,
            sink,
            engines.kv.clone(),
            system.store_meta(),
            self.book.clone(),
            &self.net,
        );
        let raft = RaftService::new(id, Arc::new(router.clone()), &logger);
        let service = StoreService::new(kv, raft, self.net.max_message_size);
        let server = Server::start(self.rt.handle(), listener, service, &self.net).unwrap();
        self.running.insert(
            id,
            Running {
                system,
                transport,
                server,
                unreachable_reports: reports,
                reachable_reports: comebacks,
            },
        );
    }

    fn stop(&mut self, id: u64) {
        if let Some(mut r) = self.running.remove(&id) {
            self.rt
                .block_on(r.server.stop(Duration::from_millis(200)))
                .unwrap();
            r.system.shutdown();
            r.transport.shutdown();
        }
    }

    fn client(&self, id: u64) -> KvClient<Channel> {
        let addr = self.addrs[&id];
        let channel = self.rt.block_on(async {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap()
        });
        KvClient::new(channel)
    }

    /// The store leading `region_id`, once one leads it.
    fn leader_of(&self, region_id: u64) -> Option<u64> {
        self.running.iter().find_map(|(&id, r)| {
            r.system
                .store_meta()
                .leader_info(region_id)
                .filter(|l| l.is_leader)
                .map(|_| id)
        })
    }

    /// A context for the region holding `key`, from a GetRegion answer of
    /// its leader's store, and that store's id.
    fn context_for(&self, key: &[u8]) -> (u64, Context) {
        let region = self
            .regions
            .iter()
            .find(|r| kvproto_lite::util::is_key_in_region(key, r))
            .unwrap()
            .clone();
        let mut leader = None;
        assert!(eventually(Duration::from_secs(10), || {
            leader = self.leader_of(region.get_id());
            leader.is_some()
        }));
        let store = leader.unwrap();
        let mut req = GetRegionRequest::default();
        req.set_key(key.to_vec());
        let mut client = self.client(store);
        let mut info = self
            .rt
            .block_on(client.get_region(req))
            .unwrap()
            .into_inner()
            .take_region();
        assert_eq!(info.get_region().get_id(), region.get_id());
        let mut ctx = Context::default();
        ctx.set_region_id(info.get_region().get_id());
        ctx.set_region_epoch(info.get_region().get_region_epoch().clone());
        ctx.set_peer(info.take_leader());
        assert_eq!(ctx.get_peer().get_store_id(), store);
        (store, ctx)
    }

    /// Puts `key` through its leader, retrying while leadership settles.
    fn put(&self, key: &[u8], value: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (store, ctx) = self.context_for(key);
            let mut req = PutRequest::default();
            req.set_context(ctx);
            req.set_key(key.to_vec());
            req.set_value(value.to_vec());
            let resp = self.rt.block_on(self.client(store).put(req)).unwrap();
            if !resp.get_ref().has_region_error() {
                return;
            }
            assert!(Instant::now() < deadline, "{:?}", resp.get_ref());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running store has applied `key = value`.
    fn replicated(&self, key: &[u8], value: &[u8]) -> bool {
        eventually(Duration::from_secs(20), || {
            self.running
                .keys()
                .all(|id| self.engines[id].kv.get(key).unwrap().as_deref() == Some(value))
        })
    }
}

impl Drop for GrpcCluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}

fn key(i: u64) -> Vec<u8> {
    // Spread over the key space, so several regions are used.
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .to_be_bytes()
        .to_vec()
}

#[test]
fn writes_replicate_to_every_store_over_grpc() {
    let c = GrpcCluster::new(3, 4);
    for i in 0..20 {
        c.put(&key(i), format!("v{i}").as_bytes());
    }
    for i in 0..20 {
        assert!(c.replicated(&key(i), format!("v{i}").as_bytes()), "key {i}");
    }
    let total = |f: fn(&server::GrpcTransportStats) -> u64| {
        c.running
            .values()
            .map(|r| f(&r.transport.stats()))
            .sum::<u64>()
    };
    assert!(total(|s| s.sent_messages) > 0);
    // Batching: fewer batches than messages.
    assert!(total(|s| s.sent_batches) <= total(|s| s.sent_messages));
    assert_eq!(total(|s| s.dropped_full), 0);
}

#[test]
fn the_kv_service_reads_writes_scans_and_looks_up_regions() {
    let c = GrpcCluster::new(3, 1);
    let (store, ctx) = c.context_for(b"a");
    let mut client = c.client(store);
    let rt = &c.rt;

    let mut put = BatchPutRequest::default();
    put.set_context(ctx.clone());
    for k in ["a", "b", "c", "d"] {
        let mut p = KvPair::default();
        p.set_key(k.as_bytes().to_vec());
        p.set_value(format!("{k}{k}").into_bytes());
        put.mut_pairs().push(p);
    }
    let resp = rt.block_on(client.batch_put(put)).unwrap().into_inner();
    assert!(!resp.has_region_error(), "{resp:?}");

    let mut get = BatchGetRequest::default();
    get.set_context(ctx.clone());
    get.set_keys(vec![b"a".to_vec(), b"zz".to_vec(), b"c".to_vec()].into());
    let resp = rt.block_on(client.batch_get(get)).unwrap().into_inner();
    let found: Vec<(&[u8], &[u8])> = resp
        .get_pairs()
        .iter()
        .map(|p| (p.get_key(), p.get_value()))
        .collect();
    assert_eq!(found, [(&b"a"[..], &b"aa"[..]), (b"c", b"cc")]);

    let mut del = DeleteRequest::default();
    del.set_context(ctx.clone());
    del.set_key(b"b".to_vec());
    assert!(!rt
        .block_on(client.delete(del))
        .unwrap()
        .get_ref()
        .has_region_error());

    let mut scan = ScanRequest::default();
    scan.set_context(ctx.clone());
    scan.set_start_key(b"a".to_vec());
    scan.set_limit(2);
    let resp = rt.block_on(client.scan(scan.clone())).unwrap().into_inner();
    let keys: Vec<&[u8]> = resp.get_pairs().iter().map(|p| p.get_key()).collect();
    assert_eq!(keys, [&b"a"[..], b"c"]);
    assert_eq!(resp.get_limit(), 2);
    scan.set_limit(0);
    scan.set_end_key(b"d".to_vec());
    let resp = rt.block_on(client.scan(scan.clone())).unwrap().into_inner();
    let keys: Vec<&[u8]> = resp.get_pairs().iter().map(|p| p.get_key()).collect();
    assert_eq!(keys, [&b"a"[..], b"c"]);
    assert_eq!(resp.get_limit(), c.net.max_scan_limit);

    // A stale epoch is refused with the current region.
    let mut stale = ctx.clone();
    stale.mut_region_epoch().set_version(0);
    scan.set_context(stale);
    let resp = rt.block_on(client.scan(scan)).unwrap().into_inner();
    assert!(resp.get_region_error().has_epoch_not_match(), "{resp:?}");

    // A follower answers NotLeader with the leader.
    let follower = (1..=3).find(|&s| s != store).unwrap();
    let mut get = GetRequest::default();
    let mut fctx = ctx.clone();
    let region = &c.regions[0];
    fctx.set_peer(
        kvproto_lite::util::find_peer(region, follower)
            .unwrap()
            .clone(),
    );
    get.set_context(fctx);
    get.set_key(b"a".to_vec());
    let resp = rt
        .block_on(c.client(follower).get(get))
        .unwrap()
        .into_inner();
    let nl = resp.get_region_error().get_not_leader();
    assert_eq!(nl.get_leader().get_store_id(), store, "{resp:?}");

    let resp = rt
        .block_on(client.list_regions(ListRegionsRequest::default()))
        .unwrap()
        .into_inner();
    assert_eq!(resp.get_regions().len(), 1);
    assert_eq!(resp.get_regions()[0].get_leader(), ctx.get_peer());

    let resp = rt
        .block_on(client.get_stores(GetStoresRequest::default()))
        .unwrap()
        .into_inner();
    assert_eq!(resp.get_store_id(), store);
    let ids: Vec<u64> = resp.get_stores().iter().map(|s| s.get_id()).collect();
    assert_eq!(ids, [1, 2, 3]);
}

#[test]
fn a_store_the_log_was_compacted_past_catches_up_by_a_snapshot_streamed_over_grpc() {
    let mut c = GrpcCluster::with_config(3, 1, |cfg| {
        cfg.raft_log_gc_threshold = 5;
        cfg.raft_log_gc_tick_interval = 3;
        cfg.raft_log_gc_count_limit = 20;
        cfg.snap_chunk_size = 1024;
    });
    c.put(&key(0), b"first");
    assert!(c.replicated(&key(0), b"first"));
    c.stop(3);
    let behind = c.engines[&3]
        .raft
        .get_raft_state(1)
        .unwrap()
        .map_or(0, |s| s.get_last_index());
    let value = vec![b'v'; 300];
    let truncated = |c: &GrpcCluster, id: u64| {
        c.engines[&id]
            .kv
            .get_apply_state(1)
            .unwrap()
            .map_or(0, |s| s.get_truncated_state().get_index())
    };
    let mut n = 1;
    while ![1, 2].iter().all(|id| truncated(&c, *id) > behind + 1) {
        c.put(&key(n), &value);
        n += 1;
        assert!(n < 2_000, "the log was never compacted past store 3");
    }
    c.start(3);
    for i in 1..n {
        assert!(c.replicated(&key(i), &value), "key {i}");
    }
    let snaps = &c.running[&3].system.stats().snapshots;
    assert!(snaps.applied.load(Ordering::Relaxed) >= 1);
    assert!(
        snaps.bytes_received.load(Ordering::Relaxed) > 1024,
        "several chunks"
    );
}

#[test]
fn a_stopped_store_is_reported_and_catches_up_after_restart() {
    let mut c = GrpcCluster::new(3, 2);
    c.put(&key(1), b"before");
    assert!(c.replicated(&key(1), b"before"));
    c.stop(3);
    for i in 2..10 {
        c.put(&key(i), b"while down");
    }
    // The stores sending to store 3 (the leaders; a store leading nothing
    // has nothing to send there) noticed: failures and unreachable reports.
    let noticed = |r: &Running| {
        let s = r.transport.stats();
        s.connect_failures + s.stream_failures > 0
            && r.unreachable_reports.load(Ordering::Relaxed) > 0
    };
    assert!(eventually(Duration::from_secs(10), || c
        .running
        .values()
        .any(noticed)));
    let before: Vec<(u64, u64)> = c
        .running
        .iter()
        .filter(|(_, r)| noticed(r))
        .map(|(&id, r)| (id, r.transport.stats().connects))
        .collect();
    c.start(3);
    for i in 2..10 {
        assert!(c.replicated(&key(i), b"while down"), "key {i}");
    }
    // Each of them connected again, and reported store 3 reachable.
    assert!(eventually(Duration::from_secs(10), || before.iter().all(
        |&(id, connects)| c.running[&id].transport.stats().connects > connects
            && c.running[&id].reachable_reports.load(Ordering::Relaxed) > 0
    )));
    // The restarted store had never failed to reach anyone: no comeback.
    assert_eq!(c.running[&3].reachable_reports.load(Ordering::Relaxed), 0);
}

#[test]
fn a_stream_to_the_wrong_store_is_refused() {
    let c = GrpcCluster::new(3, 1);
    // A transport of store 1 whose book sends store 2's messages to store 3.
    let wrong = AddressBook::new([(2, c.addrs[&3].to_string())]).unwrap();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut t = GrpcTransport::new(
        1,
        wrong,
        c.net.clone(),
        c.rt.handle().clone(),
        Arc::new(|_| {}),
        &logger,
    );
    let mut msg = kvproto_lite::raft_serverpb::RaftMessage::default();
    msg.set_region_id(1);
    msg.mut_to_peer().set_store_id(2);
    use raftstore::Transport;
    assert!(eventually(Duration::from_secs(10), || {
        // Keep sending until the refusal shows (the first messages may be
        // queued before the connection is up).
        let _ = t.send(msg.clone());
        t.flush();
        t.stats().stream_failures > 0
    }));
    t.shutdown();
}

#[test]
fn batch_commands_answer_each_command_in_order() {
    use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, Request};
    let c = GrpcCluster::new(3, 2);
    let (store, ctx) = c.context_for(&key(1));
    let cmd = |ctx: &Context, req: Request| {
        let mut cmd = RaftCmdRequest::default();
        cmd.mut_header().set_region_id(ctx.get_region_id());
        cmd.mut_header().set_peer(ctx.get_peer().clone());
        cmd.mut_header()
            .set_region_epoch(ctx.get_region_epoch().clone());
        cmd.mut_requests().push(req);
        cmd
    };
    let put = |k: &[u8], v: &[u8]| {
        let mut r = Request::default();
        r.set_cmd_type(CmdType::Put);
        r.mut_put().set_key(k.to_vec());
        r.mut_put().set_value(v.to_vec());
        r
    };
    let get = |k: &[u8]| {
        let mut r = Request::default();
        r.set_cmd_type(CmdType::Get);
        r.mut_get().set_key(k.to_vec());
        r
    };
    let mut batch = BatchCommandsRequest::default();
    batch.mut_commands().push(cmd(&ctx, put(&key(1), b"one")));
    batch.mut_commands().push(cmd(&ctx, get(&key(1))));
    // An administrative command is refused, and so is a command for a
    // region this store has no peer of.
    let mut admin = cmd(&ctx, put(&key(1), b"x"));
    admin
        .mut_admin_request()
        .set_cmd_type(kvproto_lite::raft_cmdpb::AdminCmdType::CompactLog);
    batch.mut_commands().push(admin);
    let mut unknown = ctx.clone();
    unknown.set_region_id(999);
    batch.mut_commands().push(cmd(&unknown, get(&key(1))));
    let resp =
        c.rt.block_on(c.client(store).batch_commands(batch))
            .unwrap()
            .into_inner();
    let r = resp.get_responses();
    assert_eq!(r.len(), 4);
    assert!(!r[0].get_header().has_error(), "{:?}", r[0]);
    assert_eq!(r[1].get_responses()[0].get_get().get_value(), b"one");
    assert!(r[2]
        .get_header()
        .get_error()
        .get_message()
        .contains("administrative"));
    assert!(
        r[3].get_header().get_error().has_region_not_found(),
        "{:?}",
        r[3]
    );
}

/// A Put request of `ctx`'s region.
fn put_request(ctx: &Context, k: &[u8], v: &[u8]) -> PutRequest {
    let mut req = PutRequest::default();
    req.set_context(ctx.clone());
    req.set_key(k.to_vec());
    req.set_value(v.to_vec());
    req
}

#[test]
fn a_put_repeated_with_its_session_after_an_unknown_outcome_applies_once() {
    let c = GrpcCluster::new(3, 1);
    let (store, ctx) = c.context_for(b"k");
    let mut client = c.client(store);
    let rt = &c.rt;
    let mut session = ctx.clone();
    session.set_client_id(77);
    session.set_sequence(1);
    // The client's put; say its answer is lost (the client cannot tell
    // whether it applied).
    let first = put_request(&session, b"k", b"mine");
    assert!(!rt
        .block_on(client.put(first.clone()))
        .unwrap()
        .get_ref()
        .has_region_error());
    // Another writer goes next.
    let other = put_request(&ctx, b"k", b"theirs");
    assert!(!rt
        .block_on(client.put(other))
        .unwrap()
        .get_ref()
        .has_region_error());
    // The retry carries the same session: answered from the saved response,
    // not applied again over the later write.
    let retry = rt.block_on(client.put(first)).unwrap().into_inner();
    assert!(!retry.has_region_error(), "{retry:?}");
    assert!(c.replicated(b"k", b"theirs"));
    // An older sequence of the session is refused, and changes nothing.
    session.set_sequence(2);
    assert!(!rt
        .block_on(client.put(put_request(&session, b"k", b"second")))
        .unwrap()
        .get_ref()
        .has_region_error());
    session.set_sequence(1);
    let stale = rt
        .block_on(client.put(put_request(&session, b"k", b"stale")))
        .unwrap()
        .into_inner();
    assert!(stale.get_region_error().has_stale_sequence(), "{stale:?}");
    assert!(c.replicated(b"k", b"second"));
    // Without a session the same repeat is applied again: what sessions
    // prevent.
    let plain = put_request(&ctx, b"k", b"mine");
    assert!(!rt
        .block_on(client.put(plain.clone()))
        .unwrap()
        .get_ref()
        .has_region_error());
    assert!(!rt
        .block_on(client.put(put_request(&ctx, b"k", b"theirs")))
        .unwrap()
        .get_ref()
        .has_region_error());
    assert!(!rt
        .block_on(client.put(plain))
        .unwrap()
        .get_ref()
        .has_region_error());
    assert!(c.replicated(b"k", b"mine"));
}

#[test]
fn compare_and_swap_and_delete_if_equal_write_only_on_a_match() {
    let c = GrpcCluster::new(3, 1);
    let (store, ctx) = c.context_for(b"k");
    let mut client = c.client(store);
    let rt = &c.rt;
    let cas = |expected: Option<&[u8]>, value: &[u8], session: u64| {
        let mut req = CompareAndSwapRequest::default();
        let mut ctx = ctx.clone();
        if session != 0 {
            ctx.set_client_id(5);
            ctx.set_sequence(session);
        }
        req.set_context(ctx);
        req.set_key(b"k".to_vec());
        match expected {
            Some(e) => req.set_expected(e.to_vec()),
            None => req.set_expected_absent(true),
        }
        req.set_value(value.to_vec());
        req
    };
    let r = rt
        .block_on(client.compare_and_swap(cas(None, b"v1", 1)))
        .unwrap()
        .into_inner();
    assert!(!r.has_region_error(), "{r:?}");
    assert!(r.get_succeeded() && r.get_previous_not_found());
    // Retried with its session: the saved answer (succeeded), not a failure
    // against its own write.
    let again = rt
        .block_on(client.compare_and_swap(cas(None, b"v1", 1)))
        .unwrap()
        .into_inner();
    assert!(again.get_succeeded(), "{again:?}");
    let miss = rt
        .block_on(client.compare_and_swap(cas(Some(b"nope"), b"v2", 0)))
        .unwrap()
        .into_inner();
    assert!(!miss.get_succeeded());
    assert_eq!(miss.get_previous(), b"v1");
    assert!(c.replicated(b"k", b"v1"));
    let hit = rt
        .block_on(client.compare_and_swap(cas(Some(b"v1"), b"v2", 2)))
        .unwrap()
        .into_inner();
    assert!(
        hit.get_succeeded() && hit.get_previous() == b"v1",
        "{hit:?}"
    );
    assert!(c.replicated(b"k", b"v2"));

    let del = |expected: &[u8]| {
        let mut req = DeleteIfEqualRequest::default();
        req.set_context(ctx.clone());
        req.set_key(b"k".to_vec());
        req.set_expected(expected.to_vec());
        req
    };
    let miss = rt
        .block_on(client.delete_if_equal(del(b"v1")))
        .unwrap()
        .into_inner();
    assert!(
        !miss.get_succeeded() && miss.get_previous() == b"v2",
        "{miss:?}"
    );
    let hit = rt
        .block_on(client.delete_if_equal(del(b"v2")))
        .unwrap()
        .into_inner();
    assert!(hit.get_succeeded(), "{hit:?}");
    assert!(eventually(Duration::from_secs(20), || c
        .running
        .keys()
        .all(|id| c.engines[id].kv.get(b"k").unwrap().is_none())));
    // A key outside the region travels back as a region error.
    let mut outside = ctx.clone();
    outside.mut_region_epoch().set_version(99);
    let mut req = cas(None, b"x", 0);
    req.set_context(outside);
    let r = rt
        .block_on(client.compare_and_swap(req))
        .unwrap()
        .into_inner();
    assert!(r.has_region_error() && !r.get_succeeded(), "{r:?}");
}

#[test]
fn every_read_mode_over_grpc_sees_the_last_acknowledged_write() {
    use kvproto_lite::raft_cmdpb::ReadMode;
    let c = GrpcCluster::new(3, 1);
    c.put(b"k", b"v");
    let (store, ctx) = c.context_for(b"k");
    let rt = &c.rt;
    let follower = (1..=3).find(|&s| s != store).unwrap();
    let mut fctx = ctx.clone();
    fctx.set_peer(
        kvproto_lite::util::find_peer(&c.regions[0], follower)
            .unwrap()
            .clone(),
    );
    for mode in [
        ReadMode::Log,
        ReadMode::ReadIndex,
        ReadMode::Lease,
        ReadMode::Follower,
    ] {
        let (to, ctx) = if mode == ReadMode::Follower {
            (follower, fctx.clone())
        } else {
            (store, ctx.clone())
        };
        let mut client = c.client(to);
        let mut get = GetRequest::default();
        get.set_context(ctx.clone());
        get.set_key(b"k".to_vec());
        get.set_read_mode(mode);
        let r = rt.block_on(client.get(get)).unwrap().into_inner();
        assert_eq!(
            (r.get_region_error(), r.get_value()),
            (&Default::default(), &b"v"[..]),
            "{mode:?}"
        );

        let mut bg = BatchGetRequest::default();
        bg.set_context(ctx.clone());
        bg.set_keys(vec![b"k".to_vec(), b"missing".to_vec()].into());
        bg.set_read_mode(mode);
        let r = rt.block_on(client.batch_get(bg)).unwrap().into_inner();
        assert!(!r.has_region_error(), "{mode:?}: {r:?}");
        assert_eq!(r.get_pairs().len(), 1, "{mode:?}");

        let mut scan = ScanRequest::default();
        scan.set_context(ctx);
        scan.set_read_mode(mode);
        let r = rt.block_on(client.scan(scan)).unwrap().into_inner();
        assert!(!r.has_region_error(), "{mode:?}: {r:?}");
        let keys: Vec<&[u8]> = r.get_pairs().iter().map(|p| p.get_key()).collect();
        assert_eq!(keys, [&b"k"[..]], "{mode:?}");
    }
    // A follower asked for a leader read answers NotLeader.
    let mut get = GetRequest::default();
    get.set_context(fctx);
    get.set_key(b"k".to_vec());
    get.set_read_mode(ReadMode::ReadIndex);
    let r = rt
        .block_on(c.client(follower).get(get))
        .unwrap()
        .into_inner();
    assert!(r.get_region_error().has_not_leader(), "{r:?}");
}

#[test]
fn a_store_registers_once_and_a_taken_id_is_refused() {
    let c = GrpcCluster::new(3, 1);
    let mut client = c.client(1);
    let add = |id: u64, addr: &str| {
        let mut req = AddStoreRequest::default();
        req.mut_store().set_id(id);
        req.mut_store().set_address(addr.to_owned());
        req
    };
    let r =
        c.rt.block_on(client.add_store(add(4, "127.0.0.1:1")))
            .unwrap()
            .into_inner();
    assert!(!r.has_error(), "{r:?}");
    let ids: Vec<u64> = r.get_stores().iter().map(|s| s.get_id()).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    // The same registration again is accepted (a retry) ...
    let r =
        c.rt.block_on(client.add_store(add(4, "127.0.0.1:1")))
            .unwrap()
            .into_inner();
    assert!(!r.has_error(), "{r:?}");
    // ... an id already taken at another address is not.
    let taken = c.addrs[&2].to_string();
    let r =
        c.rt.block_on(client.add_store(add(2, "127.0.0.1:9")))
            .unwrap()
            .into_inner();
    assert!(
        r.get_error()
            .get_message()
            .contains("store 2 is already a member"),
        "{r:?}"
    );
    assert_eq!(c.book.get(2), Some(taken));
    let r =
        c.rt.block_on(client.add_store(add(0, "127.0.0.1:9")))
            .unwrap()
            .into_inner();
    assert!(r.has_error(), "store id 0 is refused: {r:?}");
}

#[test]
fn the_async_client_writes_concurrently_with_sessions_and_reads_in_every_mode() {
    use client::grpc::{AsyncClient, GrpcOptions};
    use kvproto_lite::raft_cmdpb::ReadMode;
    let c = GrpcCluster::new(3, 4);
    let endpoints: Vec<String> = c.addrs.values().map(|a| a.to_string()).collect();
    c.rt.block_on(async {
        let kv = AsyncClient::connect(&endpoints, Default::default(), GrpcOptions::default())
            .await
            .unwrap();
        // Many writes in flight at once: each borrows its own session, so
        // none is refused as stale.
        let writes = (0..40u64).map(|i| {
            let kv = kv.clone();
            tokio::spawn(async move { kv.put(&key(i), format!("v{i}").as_bytes()).await })
        });
        for w in writes {
            w.await.unwrap().unwrap();
        }
        let swapped = kv
            .compare_and_swap(&key(0), Some(b"v0"), b"w0")
            .await
            .unwrap();
        assert!(swapped.succeeded);
        let kept = kv
            .compare_and_swap(&key(1), Some(b"other"), b"w1")
            .await
            .unwrap();
        assert!(!kept.succeeded);
        assert_eq!(kept.previous.as_deref(), Some(&b"v1"[..]));
        assert!(kv.delete_if_equal(&key(2), b"v2").await.unwrap().succeeded);
        for mode in [
            ReadMode::Log,
            ReadMode::ReadIndex,
            ReadMode::Lease,
            ReadMode::Follower,
        ] {
            assert_eq!(
                kv.get_with(&key(0), mode).await.unwrap().as_deref(),
                Some(&b"w0"[..]),
                "{mode:?}"
            );
            assert_eq!(kv.get_with(&key(2), mode).await.unwrap(), None, "{mode:?}");
            let all = kv.scan_with(b"", b"", 0, mode).await.unwrap();
            assert_eq!(all.len(), 39, "{mode:?}");
        }
    });
    // The writes carried sessions: the leaders hold session records.
    use engine::KvSnapshot;
    let records = c.running.keys().any(|id| {
        c.engines[id]
            .kv
            .snapshot()
            .scan(b"", b"", usize::MAX)
            .unwrap()
            .iter()
            .any(|(k, _)| raftstore::is_reserved_key(k))
    });
    assert!(records, "no session record was written");
}

#[test]
fn admin_commands_change_membership_and_nothing_else() {
    use kvproto_lite::eraftpb::ConfChangeType;
    use kvproto_lite::raft_cmdpb::AdminCmdType;
    let c = GrpcCluster::new(3, 1);
    let (store, ctx) = c.context_for(b"k");
    let mut client = c.client(store);
    let region = c.regions[0].clone();
    let leader = ctx.get_peer().clone();
    // A leadership transfer to another voter is accepted.
    let target = region
        .get_peers()
        .iter()
        .find(|p| p.get_store_id() != store)
        .unwrap()
        .clone();
    let mut cmd = kvproto_lite::util::new_cmd_request(&region, leader.clone());
    cmd.mut_admin_request()
        .set_cmd_type(AdminCmdType::TransferLeader);
    cmd.mut_admin_request()
        .mut_transfer_leader()
        .set_peer(target.clone());
    let mut req = AdminCommandRequest::default();
    req.set_command(cmd);
    let resp =
        c.rt.block_on(client.admin_command(req))
            .unwrap()
            .into_inner();
    assert!(!resp.get_response().get_header().has_error(), "{resp:?}");
    assert!(eventually(Duration::from_secs(20), || c.leader_of(1)
        == Some(target.get_store_id())));
    // A compaction is not an operator's membership command: refused, not sent.
    let mut cmd = kvproto_lite::util::new_cmd_request(&region, leader.clone());
    cmd.mut_admin_request()
        .set_cmd_type(AdminCmdType::CompactLog);
    let mut req = AdminCommandRequest::default();
    req.set_command(cmd);
    let resp =
        c.rt.block_on(client.admin_command(req))
            .unwrap()
            .into_inner();
    let err = resp.get_response().get_header().get_error();
    assert!(err.get_message().contains("accepts ChangePeer"), "{resp:?}");
    // A membership change sent to the old leader is redirected.
    let mut learner = kvproto_lite::metapb::Peer::default();
    learner.set_id(1_000);
    learner.set_store_id(9);
    let change = kvproto_lite::util::change_peer(ConfChangeType::AddLearnerNode, learner);
    let cmd = kvproto_lite::util::new_change_peer_request(&region, leader, vec![change]);
    let mut req = AdminCommandRequest::default();
    req.set_command(cmd);
    let resp =
        c.rt.block_on(client.admin_command(req))
            .unwrap()
            .into_inner();
    assert!(
        resp.get_response()
            .get_header()
            .get_error()
            .has_not_leader(),
        "{resp:?}"
    );
}

/// A command sink that loses the answer of one write: the first Put of
/// `mine` applied while armed is followed by another writer's put of
/// `theirs`, then the client is told "outcome unknown", as when a
/// connection breaks after the store applied the write.
struct LosesOneAnswer {
    inner: Arc<dyn CommandSink>,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl CommandSink for LosesOneAnswer {
    fn send_command(
        &self,
        cmd: RaftCommand,
    ) -> Result<(), batch_system::mpsc::TrySendError<RaftCommand>> {
        use kvproto_lite::raft_cmdpb::CmdType;
        let target = cmd.request.get_requests().first().is_some_and(|r| {
            r.get_cmd_type() == CmdType::Put && r.get_put().get_value() == b"mine"
        });
        if !target || !self.armed.swap(false, Ordering::SeqCst) {
            return self.inner.send_command(cmd);
        }
        let RaftCommand { request, callback } = cmd;
        let mut theirs = request.clone();
        theirs.mut_header().set_client_id(0);
        theirs.mut_header().set_sequence(0);
        theirs.mut_requests()[0]
            .mut_put()
            .set_value(b"theirs".to_vec());
        let inner = self.inner.clone();
        let armed = self.armed.clone();
        let lost = Callback::new(move |applied: kvproto_lite::raft_cmdpb::RaftCmdResponse| {
            if applied.get_header().has_error() {
                // Refused (a follower, say): nothing applied, nothing lost.
                armed.store(true, Ordering::SeqCst);
                callback.invoke(applied);
                return;
            }
            // Off the raft store's thread: the other write must apply.
            std::thread::spawn(move || {
                let other = inner.submit(theirs).recv_timeout(Duration::from_secs(20));
                assert!(other.is_ok_and(|r| !r.get_header().has_error()));
                callback.invoke(kvproto_lite::util::error_response(
                    kvproto_lite::util::new_error("connection lost: outcome unknown"),
                    0,
                ));
            });
        });
        self.inner.send_command(RaftCommand::new(request, lost))
    }
}

#[test]
fn the_async_client_retries_a_write_whose_answer_was_lost_and_it_applies_once() {
    use client::grpc::{AsyncClient, GrpcOptions};
    use client::ClientOptions;
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut c = GrpcCluster::new(3, 1);
    let ids: Vec<u64> = c.running.keys().copied().collect();
    for &id in &ids {
        c.stop(id);
    }
    let a = armed.clone();
    c.wrap = Some(Arc::new(move |inner| {
        Arc::new(LosesOneAnswer {
            inner,
            armed: a.clone(),
        })
    }));
    for id in ids {
        c.start(id);
    }
    let endpoints: Vec<String> = c.addrs.values().map(|a| a.to_string()).collect();
    let put_mine = |sessions: bool| {
        armed.store(true, Ordering::SeqCst);
        let opts = ClientOptions {
            sessions,
            ..ClientOptions::default()
        };
        c.rt.block_on(async {
            let kv = AsyncClient::connect(&endpoints, opts, GrpcOptions::default())
                .await
                .unwrap();
            kv.put(b"k", b"mine").await.unwrap();
        });
        assert!(!armed.load(Ordering::SeqCst), "the answer was not lost");
    };
    // With a session the retry is answered from the saved response: the
    // other writer's later value stays.
    put_mine(true);
    assert!(c.replicated(b"k", b"theirs"));
    // Without one, the retry applies the write a second time, over it.
    put_mine(false);
    assert!(c.replicated(b"k", b"mine"));
}
