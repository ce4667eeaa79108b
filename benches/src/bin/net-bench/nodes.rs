//! The node processes of a net-bench run: configs, start, readiness,
//! CPU time, metrics, graceful stop.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `node` process; killed when dropped if still running.
pub struct NodeProc {
    pub id: u64,
    pub grpc: String,
    pub status: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Settings every node of the run gets.
pub struct NodeSettings {
    pub regions: usize,
    pub store_pool_size: usize,
    pub apply_pool_size: usize,
    pub grpc_threads: usize,
}

/// `n` distinct free loopback ports (bound together, then released).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Writes the configs of `n` nodes under `dir` and starts them.
pub fn start(
    node_bin: &Path,
    dir: &Path,
    n: u64,
    s: &NodeSettings,
) -> Result<Vec<NodeProc>, String> {
    let ports = free_ports(2 * n as usize).map_err(|e| format!("free ports: {e}"))?;
    let grpc = |i: u64| format!("127.0.0.1:{}", ports[i as usize - 1]);
    let initial: Vec<String> = (1..=n).map(|i| format!("{i}={}", grpc(i))).collect();
    let mut nodes = Vec::new();
    for i in 1..=n {
        let status = format!("127.0.0.1:{}", ports[(n + i) as usize - 1]);
        let data_dir = dir.join(format!("node-{i}"));
        let config = format!(
            "store_id = {i}\nlisten = \"{}\"\nstatus = \"{status}\"\ndata_dir = \"{}\"\n\
             initial_cluster = \"{}\"\nregions = {}\nlog_level = \"warning\"\ngrpc_threads = {}\n\
             [raftstore]\nstore_pool_size = {}\n[raftstore.apply]\npool_size = {}\n",
            grpc(i),
            data_dir.display(),
            initial.join(","),
            s.regions,
            s.grpc_threads,
            s.store_pool_size,
            s.apply_pool_size,
        );
        let cfg_path = dir.join(format!("node-{i}.toml"));
        std::fs::write(&cfg_path, config)
            .map_err(|e| format!("write {}: {e}", cfg_path.display()))?;
        let log = dir.join(format!("node-{i}.log"));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let mut cmd = Command::new(node_bin);
        cmd.arg("--config")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(log_file);
        // SAFETY: runs in the child between fork and exec and only calls
        // prctl, which is async-signal-safe: the node dies with us.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", node_bin.display()))?;
        nodes.push(NodeProc {
            id: i,
            grpc: grpc(i),
            status,
            data_dir,
            log,
            child: Some(child),
        });
    }
    Ok(nodes)
}

/// `GET path` on `addr`: the body of a 200 answer.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    node::status::fetch(addr, path).ok()
}

/// Waits until every node answers `/status` and they lead `regions`
/// regions together.
pub fn wait_ready(nodes: &mut [NodeProc], regions: usize, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut leaders = 0u64;
        let mut up = 0;
        for n in nodes.iter_mut() {
            if let Some(Ok(Some(status))) = n.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                return Err(format!("node {} exited ({status}):\n{log}", n.id));
            }
            let v = http_get(&n.status, "/status")
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
            if let Some(l) = v.as_ref().and_then(|v| v["leaders"].as_u64()) {
                leaders += l;
                up += 1;
            }
        }
        if up == nodes.len() && leaders as usize >= regions {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not ready after {timeout:?}: {up} nodes answer, {leaders} of {regions} regions have a leader"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The applied index of every region of every node (`/status/regions`),
/// `None` if a node does not answer.
fn applied(nodes: &[NodeProc]) -> Option<Vec<Vec<(u64, u64)>>> {
    nodes
        .iter()
        .map(|n| {
            let s = http_get(&n.status, "/status/regions")?;
            let v: serde_json::Value = serde_json::from_str(&s).ok()?;
            v["regions"]
                .as_array()?
                .iter()
                .map(|r| Some((r["id"].as_u64()?, r["applied_index"].as_u64()?)))
                .collect()
        })
        .collect()
}

/// Waits until every node has applied the same log position in every
/// region (followers learn the last commits a heartbeat later), so that
/// each node's engine can be checked after the stop.
pub fn wait_applied(nodes: &[NodeProc], timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        if let Some(a) = applied(nodes) {
            if a.windows(2).all(|w| w[0] == w[1]) {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "the nodes did not converge on one applied index per region in {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// User + system CPU time of process `pid` so far (from `/proc`).
pub fn process_cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) may hold spaces; fields after its ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13
    // after the state field that follows ')'.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Duration::from_micros(ticks * 1_000_000 / hz)
}

impl NodeProc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// CPU time of this node so far.
    pub fn cpu(&self) -> Duration {
        self.pid().map(process_cpu).unwrap_or_default()
    }

    /// The sum of every sample of metric `name` in the node's `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        http_get(&self.status, "/metrics")
            .map(|text| metric_sum(&text, name))
            .unwrap_or(0.0)
    }

    /// The sum of the samples of metric `name` whose labels contain
    /// `label` (for example `method="put"`).
    pub fn metric_with(&self, name: &str, label: &str) -> f64 {
        http_get(&self.status, "/metrics")
            .map(|text| {
                text.lines()
                    .filter(|l| l.starts_with(name) && l.contains(label))
                    .map(|l| metric_sum(l, name))
                    .sum()
            })
            .unwrap_or(0.0)
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `timeout`).
    pub fn stop(&mut self, timeout: Duration) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill only sends a signal to our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(s)) if s.success() => return Ok(()),
                Ok(Some(s)) => return Err(format!("node {} exited with {s}", self.id)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("node {} did not stop in {timeout:?}", self.id));
                }
            }
        }
    }
}

/// Sums the samples of `name` (any labels) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_every_label_set_of_one_name() {
        let text = "# TYPE a counter\na{x=\"1\"} 2\na{x=\"2\"} 3\nab 7\na 1\n";
        assert_eq!(metric_sum(text, "a"), 6.0);
        assert_eq!(metric_sum(text, "ab"), 7.0);
        assert_eq!(metric_sum(text, "c"), 0.0);
    }

    #[test]
    fn cpu_time_of_this_process_is_read_from_proc() {
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu(std::process::id()) > Duration::ZERO);
    }
}
