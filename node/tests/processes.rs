//! Real `node` processes on loopback ports: a three-node cluster that loses
//! a node to SIGKILL and gets it back without losing an acknowledged write;
//! a fourth node that joins a running cluster and takes its share of the
//! replicas; `kvctl`'s conditional writes and read modes; and nodes that
//! refuse to start.
//!
//! Every process is killed when its guard drops (also when a test panics),
//! and asks the kernel to kill it if the test process dies first. Every
//! wait has a deadline.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use client::grpc::AsyncClient;
use engine::{FjallKvEngine, KvEngine};

const NODE: &str = env!("CARGO_BIN_EXE_node");
const KVCTL: &str = env!("CARGO_BIN_EXE_kvctl");
const REGIONS: usize = 8;

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` distinct free loopback ports (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A child process killed (SIGKILL) and reaped when dropped.
struct Proc(Child);

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Proc(cmd.spawn().unwrap())
    }

    /// Waits for the process to exit, at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        eventually(timeout, || {
            status = self.0.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on `addr`; the body, if the answer is 200.
fn http_get(addr: &str, path: &str) -> Option<String> {
    node::status::fetch(addr, path).ok()
}

/// The value of `"key":NUMBER` in a JSON text.
fn json_number(json: &str, key: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get(key)?.as_u64()
}

struct Cluster {
    dir: tempfile::TempDir,
    grpc: BTreeMap<u64, String>,
    status: BTreeMap<u64, String>,
    procs: BTreeMap<u64, Proc>,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        let ports = free_ports(2 * n as usize);
        let grpc: BTreeMap<u64, String> = (1..=n)
            .map(|i| (i, format!("127.0.0.1:{}", ports[i as usize - 1])))
            .collect();
        let status: BTreeMap<u64, String> = (1..=n)
            .map(|i| (i, format!("127.0.0.1:{}", ports[(n + i) as usize - 1])))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let initial: Vec<String> = grpc.iter().map(|(i, a)| format!("{i}={a}")).collect();
        for i in 1..=n {
            // Fast ticks so elections take a fraction of a second.
            let config = format!(
                "store_id = {i}\nlisten = \"{}\"\nstatus = \"{}\"\ndata_dir = \"{}\"\n\
                 initial_cluster = \"{}\"\nregions = {REGIONS}\nlog_level = \"info\"\n\
                 shutdown_grace_ms = 500\n\
                 [raftstore]\nraft_base_tick_interval_ms = 20\nstore_pool_size = 1\n\
                 [raftstore.apply]\npool_size = 1\n\
                 [server]\nreconnect_initial_backoff_ms = 20\nreconnect_max_backoff_ms = 200\n",
                grpc[&i],
                status[&i],
                dir.path().join(i.to_string()).display(),
                initial.join(","),
            );
            std::fs::write(dir.path().join(format!("{i}.toml")), config).unwrap();
        }
        let mut c = Cluster {
            dir,
            grpc,
            status,
            procs: BTreeMap::new(),
        };
        for i in 1..=n {
            c.start(i);
        }
        c
    }

    /// Adds node `i` (not started) that joins the cluster through node 1.
    fn add_joining(&mut self, i: u64) {
        let ports = free_ports(2);
        let (grpc, status) = (
            format!("127.0.0.1:{}", ports[0]),
            format!("127.0.0.1:{}", ports[1]),
        );
        let config = format!(
            "store_id = {i}\nlisten = \"{grpc}\"\nstatus = \"{status}\"\ndata_dir = \"{}\"\n\
             join = \"{}\"\nlog_level = \"info\"\nshutdown_grace_ms = 500\n\
             [raftstore]\nraft_base_tick_interval_ms = 20\nstore_pool_size = 1\n\
             [raftstore.apply]\npool_size = 1\n\
             [server]\nreconnect_initial_backoff_ms = 20\nreconnect_max_backoff_ms = 200\n",
            self.dir.path().join(i.to_string()).display(),
            self.grpc[&1],
        );
        std::fs::write(self.dir.path().join(format!("{i}.toml")), config).unwrap();
        self.grpc.insert(i, grpc);
        self.status.insert(i, status);
    }

    /// `/status`'s `regions` of node `i`.
    fn regions_of(&self, i: u64) -> Option<u64> {
        http_get(&self.status[&i], "/status").and_then(|s| json_number(&s, "regions"))
    }

    fn start(&mut self, i: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{i}.log")))
            .unwrap();
        let p = Proc::spawn(
            Command::new(NODE)
                .arg("--config")
                .arg(self.dir.path().join(format!("{i}.toml")))
                .stdout(Stdio::null())
                .stderr(log),
        );
        self.procs.insert(i, p);
    }

    fn log(&self, i: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{i}.log"))).unwrap_or_default()
    }

    /// Every running node answers /status, and together they lead every
    /// region.
    fn ready(&self) -> bool {
        let mut leaders = 0;
        for i in self.procs.keys() {
            match http_get(&self.status[i], "/status").and_then(|s| json_number(&s, "leaders")) {
                Some(n) => leaders += n,
                None => return false,
            }
        }
        leaders as usize >= REGIONS
    }

    fn wait_ready(&self) {
        assert!(
            eventually(Duration::from_secs(30), || self.ready()),
            "cluster not ready; logs:\n{}",
            self.procs
                .keys()
                .map(|&i| self.log(i))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// The applied index of every region, per running node.
    fn applied(&self) -> Option<Vec<Vec<u64>>> {
        self.procs
            .keys()
            .map(|i| {
                let s = http_get(&self.status[i], "/status/regions")?;
                let v: serde_json::Value = serde_json::from_str(&s).ok()?;
                v["regions"]
                    .as_array()?
                    .iter()
                    .map(|r| r["applied_index"].as_u64())
                    .collect()
            })
            .collect()
    }

    fn endpoints(&self) -> String {
        self.grpc.values().cloned().collect::<Vec<_>>().join(",")
    }

    fn kvctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(KVCTL)
            .arg("--endpoints")
            .arg(self.endpoints())
            .arg("--timeout-ms")
            .arg("20000")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn data_dir(&self, i: u64) -> PathBuf {
        self.dir.path().join(i.to_string())
    }
}

fn client(rt: &tokio::runtime::Runtime, c: &Cluster) -> AsyncClient {
    let endpoints: Vec<String> = c.grpc.values().cloned().collect();
    rt.block_on(AsyncClient::connect(
        &endpoints,
        Default::default(),
        Default::default(),
    ))
    .unwrap()
}

#[test]
fn three_nodes_lose_one_to_sigkill_and_keep_every_acknowledged_write() {
    let mut c = Cluster::new(3);
    c.wait_ready();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked: BTreeMap<String, String> = BTreeMap::new();

    // Writes through kvctl ...
    for i in 0..5 {
        let (k, v) = (format!("kvctl-{i}"), format!("v{i}"));
        let (code, _, err) = c.kvctl(&["put", &k, &v]);
        assert_eq!(code, 0, "{err}");
        acked.insert(k, v);
    }
    // ... and through the client library, spread over the regions.
    let kv = client(&rt, &c);
    let key = |i: u64| format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for i in 0..40 {
        rt.block_on(kv.put(key(i).as_bytes(), b"first")).unwrap();
        acked.insert(key(i), "first".to_owned());
    }

    // SIGKILL node 2; the others keep serving.
    drop(c.procs.remove(&2));
    for i in 20..60 {
        rt.block_on(kv.put(key(i).as_bytes(), b"second")).unwrap();
        acked.insert(key(i), "second".to_owned());
    }
    let (code, _, err) = c.kvctl(&["put", "while-down", "yes"]);
    assert_eq!(code, 0, "{err}");
    acked.insert("while-down".to_owned(), "yes".to_owned());

    // Node 2 comes back from its data dir and catches up.
    c.start(2);
    c.wait_ready();
    assert!(
        c.log(2).contains("restarting from the data dir"),
        "{}",
        c.log(2)
    );
    for (k, v) in &acked {
        assert_eq!(
            rt.block_on(kv.get(k.as_bytes())).unwrap().as_deref(),
            Some(v.as_bytes()),
            "{k}"
        );
    }
    let (code, out, _) = c.kvctl(&["get", "kvctl-3"]);
    assert_eq!((code, out.as_str()), (0, "v3\n"));
    let (code, _, err) = c.kvctl(&["get", "never-written"]);
    assert_eq!(code, 1, "{err}");
    let (code, out, _) = c.kvctl(&["scan", "kvctl-", "kvctl-9", "--limit", "3"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "kvctl-0\tv0\nkvctl-1\tv1\nkvctl-2\tv2\n")
    );
    let (code, out, _) = c.kvctl(&["regions"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), REGIONS + 1, "{out}");

    // The status endpoints of a node that served all of this.
    let status = http_get(&c.status[&1], "/status").unwrap();
    assert_eq!(json_number(&status, "store_id"), Some(1));
    assert_eq!(json_number(&status, "regions"), Some(REGIONS as u64));
    // Nothing writes now: every region falls asleep, and /status says so.
    assert!(
        eventually(Duration::from_secs(30), || {
            http_get(&c.status[&1], "/status").and_then(|s| json_number(&s, "hibernated"))
                == Some(REGIONS as u64)
        }),
        "regions did not all hibernate: {:?}",
        http_get(&c.status[&1], "/status")
    );
    // Which node leads what varies from run to run: look at all three.
    let metrics: String = c
        .status
        .values()
        .map(|a| http_get(a, "/metrics").unwrap())
        .collect();
    for name in [
        "kv_requests_total{method=\"batch_commands\"}",
        "kv_batched_commands_total",
        "raft_messages_sent_total{to_store=\"2\"}",
        "raft_message_batches_sent_total{to_store=\"3\"}",
        "raftstore_log_syncs_total",
        "raftstore_log_write_duration_seconds_bucket{sync=\"true\"",
        "raftstore_commit_duration_seconds_bucket",
        "raftstore_proposals_total",
        "raftstore_peer_mailbox_depth",
        "apply_entries_total",
        "apply_write_duration_seconds_bucket",
        "raftstore_regions{role=\"leader\"}",
        "kv_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    // Every node holds every acknowledged write: once they have applied
    // the same log, stop them and read each one's engine.
    assert!(
        eventually(Duration::from_secs(30), || {
            let a = c.applied();
            matches!(&a, Some(v) if v.len() == 3 && v.windows(2).all(|w| w[0] == w[1]))
        }),
        "applied indexes did not converge: {:?}",
        c.applied()
    );
    for i in [1, 2, 3] {
        let p = c.procs.get_mut(&i).unwrap();
        // SAFETY: kill only sends a signal to our own child's pid.
        unsafe {
            libc::kill(p.0.id() as i32, libc::SIGTERM);
        }
        let status = p.wait(Duration::from_secs(20)).expect("graceful stop");
        assert!(status.success(), "node {i}: {status:?}\n{}", c.log(i));
        assert!(c.log(i).contains("node stopped"));
    }
    for i in [1, 2, 3] {
        let kv = FjallKvEngine::open_existing(c.data_dir(i).join("kv")).unwrap();
        for (k, v) in &acked {
            assert_eq!(
                kv.get(k.as_bytes()).unwrap().as_deref(),
                Some(v.as_bytes()),
                "node {i}, key {k}"
            );
        }
    }
}

/// The flags of a start of store `store_id` on `data` at the given
/// addresses.
fn start_flags<'a>(
    store_id: &'a str,
    data: &'a str,
    listen: &'a str,
    status: &'a str,
) -> [&'a str; 8] {
    [
        "--store-id",
        store_id,
        "--data-dir",
        data,
        "--listen",
        listen,
        "--status",
        status,
    ]
}

/// Runs `node` with `args` and returns its exit code and stderr; the
/// process must exit by itself within 20 s.
fn node_refusal(args: &[&str], dir: &Path) -> (i32, String) {
    let err = dir.join("stderr");
    let mut p = Proc::spawn(
        Command::new(NODE)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap()),
    );
    let status = p.wait(Duration::from_secs(20)).expect("node did not exit");
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(err).unwrap(),
    )
}

#[test]
fn a_node_with_a_wrong_store_id_or_a_bad_config_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let listen = format!("127.0.0.1:{}", ports[0]);
    let status = format!("127.0.0.1:{}", ports[1]);
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();

    // A data dir that belongs to store 1.
    {
        let cfg = node::NodeConfig {
            store_id: 1,
            data_dir: data.clone(),
            initial_cluster: format!("1={listen}").parse().unwrap(),
            regions: 2,
            ..node::NodeConfig::default()
        };
        let dir = node::data_dir::DataDir::open(&data).unwrap();
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        node::data_dir::prepare(&dir, &cfg, &logger).unwrap();
    }
    let (code, err) = node_refusal(&start_flags("2", data_s, &listen, &status), tmp.path());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("belongs to store 1, not store 2; refusing to start"),
        "{err}"
    );

    // A config file with a misspelt key, one with a bad value, a bad flag.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "store_id = 1\nregoins = 4\n").unwrap();
    let (code, err) = node_refusal(&["--config", bad.to_str().unwrap()], tmp.path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.toml: line 2: unknown field `regoins`"),
        "{err}"
    );

    std::fs::write(
        &bad,
        format!("store_id = 1\ndata_dir = \"{data_s}\"\nregions = 0\n"),
    )
    .unwrap();
    let (code, err) = node_refusal(&["--config", bad.to_str().unwrap()], tmp.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("regions must be in 1..="), "{err}");

    let (code, err) = node_refusal(
        &[
            "--store-id",
            "1",
            "--data-dir",
            data_s,
            "--initial-cluster",
            "1=nowhere",
        ],
        tmp.path(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("initial-cluster \"1=nowhere\""), "{err}");

    // A first start without an initial cluster.
    let empty = tmp.path().join("empty");
    let empty_s = empty.to_str().unwrap();
    let (code, err) = node_refusal(&start_flags("1", empty_s, &listen, &status), tmp.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("needs --initial-cluster"), "{err}");
}

/// What store `store` holds, read from it with a follower scan of each of
/// its regions (so its own replicas answer, not a leader elsewhere): the
/// regions' key ranges and the pairs. `None` while a region's read fails
/// (a replica still catching up, an epoch changing).
type Holdings = (Vec<(Vec<u8>, Vec<u8>)>, BTreeMap<Vec<u8>, Vec<u8>>);

fn follower_scan_of(rt: &tokio::runtime::Runtime, addr: &str, store: u64) -> Option<Holdings> {
    use kvproto_lite::kvrpcpb::{Context, ListRegionsRequest, ScanRequest};
    use kvproto_lite::raft_cmdpb::ReadMode;
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect()
            .await
            .ok()?;
        let mut kv = kvproto_lite::grpc::KvClient::new(channel);
        let regions = kv
            .list_regions(ListRegionsRequest::default())
            .await
            .ok()?
            .into_inner();
        let mut ranges = Vec::new();
        let mut pairs = BTreeMap::new();
        for info in regions.get_regions() {
            let region = info.get_region();
            let mut ctx = Context::default();
            ctx.set_region_id(region.get_id());
            ctx.set_region_epoch(region.get_region_epoch().clone());
            ctx.set_peer(kvproto_lite::util::find_peer(region, store)?.clone());
            let mut req = ScanRequest::default();
            req.set_context(ctx);
            req.set_read_mode(ReadMode::Follower);
            let resp = kv.scan(req).await.ok()?.into_inner();
            if resp.has_region_error() || resp.get_pairs().len() >= resp.get_limit() as usize {
                return None;
            }
            ranges.push((
                region.get_start_key().to_vec(),
                region.get_end_key().to_vec(),
            ));
            for p in resp.get_pairs() {
                pairs.insert(p.get_key().to_vec(), p.get_value().to_vec());
            }
        }
        Some((ranges, pairs))
    })
}

/// How many replicas each store holds, by the regions as their leaders
/// report them (`ListRegions` of every node, the newest epoch of each
/// region).
fn replicas_by_store(rt: &tokio::runtime::Runtime, c: &Cluster) -> BTreeMap<u64, usize> {
    let mut held = BTreeMap::new();
    let Ok(regions) = rt.block_on(client(rt, c).regions()) else {
        return held;
    };
    for info in regions {
        for p in info.get_region().get_peers() {
            *held.entry(p.get_store_id()).or_default() += 1;
        }
    }
    held
}

/// `kvctl stores` as node `i` knows them.
fn stores_of(c: &Cluster, i: u64) -> String {
    let out = Command::new(KVCTL)
        .args(["--endpoints", &c.grpc[&i], "stores"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_fourth_node_joins_takes_its_share_of_replicas_and_serves_them() {
    let mut c = Cluster::new(3);
    c.wait_ready();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let kv = client(&rt, &c);
    // Spread over the whole key space, so every region gets writes.
    let key = |i: u64| {
        let mut k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes().to_vec();
        k.extend_from_slice(format!("-{i}").as_bytes());
        k
    };
    for i in 0..40 {
        rt.block_on(kv.put(&key(i), b"before")).unwrap();
        acked.insert(key(i), b"before".to_vec());
    }

    // A store id the cluster already has is refused, and nothing is
    // written.
    let tmp = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let (listen, status) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    let taken = tmp.path().join("taken");
    let mut args = start_flags("2", taken.to_str().unwrap(), &listen, &status).to_vec();
    args.extend(["--join", c.grpc[&1].as_str()]);
    let (code, err) = node_refusal(&args, tmp.path());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("store 2 is already a member of the cluster"),
        "{err}"
    );
    assert!(!taken.join("cluster.toml").exists());

    // Node 4 joins through node 1 while writes go on, and while node 3 is
    // down: node 3 learns of it from the others when it comes back.
    drop(c.procs.remove(&3));
    c.add_joining(4);
    c.start(4);
    assert!(
        eventually(Duration::from_secs(30), || c
            .log(4)
            .contains("could not register with a store")),
        "{}",
        c.log(4)
    );
    c.start(3);
    let fair = (REGIONS * 3 / 4) as u64;
    let mut i = 40;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(c.regions_of(4) == Some(fair) && c.log(4).contains("holds its share of the replicas")) {
        rt.block_on(kv.put(&key(i), b"during")).unwrap();
        acked.insert(key(i), b"during".to_vec());
        i += 1;
        assert!(
            Instant::now() < deadline,
            "node 4 did not take its share: {:?}\n{}",
            c.regions_of(4),
            c.log(4)
        );
    }
    assert!(
        c.log(4).contains("joined a running cluster"),
        "{}",
        c.log(4)
    );
    // The replicas came off the other stores, as the regions' leaders
    // report them: 24 replicas on 4 stores, 6 on each.
    let mut held = BTreeMap::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            held = replicas_by_store(&rt, &c);
            held.values().all(|&n| n == fair as usize) && held.len() == 4
        }),
        "replicas by store: {held:?}\nnode 4:\n{}",
        c.log(4)
    );

    // Every acknowledged write is readable through the cluster ...
    let kv = client(&rt, &c);
    for (k, v) in &acked {
        assert_eq!(
            rt.block_on(kv.get(k)).unwrap().as_deref(),
            Some(v.as_slice()),
            "{k:?}"
        );
    }
    // ... and node 4's own replicas hold exactly the acknowledged writes of
    // their key ranges.
    let mut seen = None;
    let matches = |(ranges, pairs): &Holdings| {
        let inside = |k: &[u8]| {
            ranges
                .iter()
                .any(|(s, e)| k >= s.as_slice() && (e.is_empty() || k < e.as_slice()))
        };
        let expected: BTreeMap<Vec<u8>, Vec<u8>> = acked
            .iter()
            .filter(|(k, _)| inside(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ranges.len() == fair as usize && !expected.is_empty() && *pairs == expected
    };
    assert!(
        eventually(Duration::from_secs(30), || {
            seen = follower_scan_of(&rt, &c.grpc[&4], 4);
            seen.as_ref().is_some_and(matches)
        }),
        "node 4's replicas: {seen:?}"
    );

    // Every node knows the new store (node 3 from the others' books); a
    // restarted node still does (its address book is saved in its data
    // dir).
    let row = format!("4\t{}", c.grpc[&4]);
    assert!(
        eventually(Duration::from_secs(30), || stores_of(&c, 3).contains(&row)),
        "{}\n{}",
        stores_of(&c, 3),
        c.log(3)
    );
    assert!(c.log(3).contains("learned of a store"), "{}", c.log(3));
    drop(c.procs.remove(&2));
    c.start(2);
    c.wait_ready();
    let stores = stores_of(&c, 2);
    assert!(stores.contains(&row), "{stores}");
    let saved = std::fs::read_to_string(c.data_dir(2).join("stores.toml")).unwrap();
    assert!(saved.contains(&c.grpc[&4]), "{saved}");

    // Node 4 restarts from its data dir with its replicas.
    drop(c.procs.remove(&4));
    c.start(4);
    c.wait_ready();
    assert!(
        c.log(4).contains("restarting from the data dir"),
        "{}",
        c.log(4)
    );
    assert!(eventually(Duration::from_secs(30), || c.regions_of(4) == Some(fair)));

    // kvctl moves a replica by hand: region 8's from store 1 to a store
    // without one.
    let regions = rt.block_on(client(&rt, &c).regions()).unwrap();
    let r8 = regions
        .iter()
        .find(|i| i.get_region().get_id() == 8)
        .unwrap()
        .get_region();
    let stores: Vec<u64> = r8.get_peers().iter().map(|p| p.get_store_id()).collect();
    let from = stores[0];
    let to = (1..=4).find(|s| !stores.contains(s)).unwrap();
    let (code, out, err) = c.kvctl(&[
        "move-replica",
        "8",
        &from.to_string(),
        &to.to_string(),
        "--peer-id",
        "900001",
    ]);
    assert_eq!(code, 0, "{err}");
    let mut after: Vec<u64> = out.trim().split(',').map(|s| s.parse().unwrap()).collect();
    after.sort_unstable();
    let mut expected: Vec<u64> = stores
        .iter()
        .map(|&s| if s == from { to } else { s })
        .collect();
    expected.sort_unstable();
    assert_eq!(after, expected, "{out}");
    let (code, _, err) = c.kvctl(&["move-replica", "99", "1", "2", "--peer-id", "900002"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no region 99"), "{err}");

    // kvctl: compare-and-swap and its exit codes ...
    let (code, _, err) = c.kvctl(&["put", "k0", "before"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = c.kvctl(&["cas", "k0", "before", "swapped"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let (code, out, err) = c.kvctl(&["cas", "k0", "before", "again"]);
    assert_eq!((code, out.as_str()), (1, "swapped\n"), "{err}");
    let (code, out, err) = c.kvctl(&["cas", "--absent", "fresh", "new"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let (code, out, _) = c.kvctl(&["cas", "--absent", "fresh", "other"]);
    assert_eq!((code, out.as_str()), (1, "new\n"));
    let (code, out, err) = c.kvctl(&["cas", "never-written", "x", "y"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("has no value"), "{err}");
    let (code, _, err) = c.kvctl(&["cas", "--absent", "fresh"]);
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = c.kvctl(&["delete-if-equal", "fresh", "other"]);
    assert_eq!((code, out.as_str()), (1, "new\n"), "{err}");
    // ... and every read mode.
    for mode in ["log", "read-index", "lease", "follower"] {
        let (code, out, err) = c.kvctl(&["get", "k0", "--read-mode", mode]);
        assert_eq!((code, out.as_str()), (0, "swapped\n"), "{mode}: {err}");
        let (code, out, err) = c.kvctl(&["scan", "fresh", "fresh0", "--read-mode", mode]);
        assert_eq!((code, out.as_str()), (0, "fresh\tnew\n"), "{mode}: {err}");
    }
    let (code, _, err) = c.kvctl(&["get", "k0", "--read-mode", "sometimes"]);
    assert_eq!(code, 2, "{err}");
}
