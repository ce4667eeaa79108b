//! [`NodeConfig`]: what a `node` process runs with, from a TOML file and
//! command-line flags (flags win).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The stores of a cluster at its first start: store id to address
/// (`host:port`). Written `1=127.0.0.1:20161,2=127.0.0.1:20162,...`.
///
/// # Examples
///
/// ```
/// let c: node::InitialCluster = "2=127.0.0.1:20162,1=127.0.0.1:20161".parse().unwrap();
/// assert_eq!(c.store_ids(), vec![1, 2]);
/// assert_eq!(c.to_string(), "1=127.0.0.1:20161,2=127.0.0.1:20162");
/// assert!("1=a:1,1=b:2".parse::<node::InitialCluster>().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InitialCluster {
    stores: BTreeMap<u64, String>,
}

impl InitialCluster {
    /// The stores, by id.
    pub fn stores(&self) -> &BTreeMap<u64, String> {
        &self.stores
    }

    /// The store ids, ascending.
    pub fn store_ids(&self) -> Vec<u64> {
        self.stores.keys().copied().collect()
    }

    /// Whether no store is listed.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// A cluster of exactly these stores.
    pub fn from_stores(stores: BTreeMap<u64, String>) -> InitialCluster {
        InitialCluster { stores }
    }
}

impl std::str::FromStr for InitialCluster {
    type Err = Error;

    fn from_str(s: &str) -> Result<InitialCluster> {
        let bad = |why: String| Error::InvalidConfig(format!("initial-cluster {s:?}: {why}"));
        let mut stores = BTreeMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, addr) = entry
                .split_once('=')
                .ok_or_else(|| bad(format!("{entry:?} is not ID=HOST:PORT")))?;
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| bad(format!("{:?} is not a store id", id.trim())))?;
            if id == 0 {
                return Err(bad("store id 0 is not valid".to_owned()));
            }
            let addr = addr.trim();
            server::AddressBook::new([(id, addr.to_owned())]).map_err(|e| bad(e.to_string()))?;
            if stores.insert(id, addr.to_owned()).is_some() {
                return Err(bad(format!("store {id} is listed twice")));
            }
        }
        Ok(InitialCluster { stores })
    }
}

impl TryFrom<String> for InitialCluster {
    type Error = Error;

    fn try_from(s: String) -> Result<InitialCluster> {
        s.parse()
    }
}

impl From<InitialCluster> for String {
    fn from(c: InitialCluster) -> String {
        c.to_string()
    }
}

impl std::fmt::Display for InitialCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (id, addr) in &self.stores {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{id}={addr}")?;
        }
        Ok(())
    }
}

/// Configuration of a `node` process.
///
/// Every field has a default, so a TOML file names only what it changes;
/// unknown keys are refused (a typo is an error, not a silently ignored
/// setting). Flags of the `node` binary override the file. Call
/// [`NodeConfig::validate`] before use.
///
/// ```toml
/// store_id = 1
/// listen = "127.0.0.1:20161"
/// status = "127.0.0.1:20181"
/// data_dir = "/var/lib/multi-raft/1"
/// initial_cluster = "1=127.0.0.1:20161,2=127.0.0.1:20162,3=127.0.0.1:20163"
/// regions = 16
/// log_level = "info"
///
/// [raftstore]
/// raft_base_tick_interval_ms = 100
///
/// [server]
/// raft_msg_max_batch_size = 256
/// ```
///
/// # Examples
///
/// ```
/// let cfg: node::NodeConfig = toml::from_str(r#"
///     store_id = 1
///     data_dir = "/tmp/n1"
///     initial_cluster = "1=127.0.0.1:20161"
/// "#).unwrap();
/// cfg.validate().unwrap();
///
/// let err = toml::from_str::<node::NodeConfig>("stor_id = 1").unwrap_err();
/// assert!(err.to_string().contains("unknown field `stor_id`"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This store's id (required, non-zero).
    pub store_id: u64,
    /// Address the gRPC server listens on.
    pub listen: String,
    /// Address of the HTTP status server (`GET /status`, `GET /metrics`).
    pub status: String,
    /// Directory of the store's engines and identity (required).
    pub data_dir: PathBuf,
    /// Every store of the cluster at its first start; only read when the
    /// data directory is empty (a restart reads the cluster from it).
    pub initial_cluster: InitialCluster,
    /// Number of regions the key space is split into at the first start
    /// (every node of a cluster must use the same number).
    pub regions: usize,
    /// Address (`host:port`) of a store of a running cluster this node
    /// joins at its first start, instead of bootstrapping a new cluster
    /// (see [`crate::join`]). Not with `initial_cluster`. A restart reads
    /// the cluster from the data dir; a joined node that restarts carries
    /// on taking its share of replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    /// Least severe log level written: `trace`, `debug`, `info`, `warning`,
    /// `error` or `critical`.
    pub log_level: String,
    /// Worker threads of the tokio runtime running the gRPC server and the
    /// connections to other stores.
    pub grpc_threads: usize,
    /// How long a stopping node lets client requests in progress finish, in
    /// milliseconds.
    pub shutdown_grace_ms: u64,
    /// The raft store (pollers, ticks, mailboxes, ...).
    pub raftstore: raftstore::Config,
    /// The gRPC server and the connections to other stores.
    pub server: server::Config,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            store_id: 0,
            listen: "127.0.0.1:20161".to_owned(),
            status: "127.0.0.1:20181".to_owned(),
            data_dir: PathBuf::new(),
            initial_cluster: InitialCluster::default(),
            regions: 16,
            join: None,
            log_level: "info".to_owned(),
            grpc_threads: 2,
            shutdown_grace_ms: 2_000,
            raftstore: raftstore::Config::default(),
            server: server::Config::default(),
        }
    }
}

/// Most regions an initial cluster may be split into.
pub const MAX_INITIAL_REGIONS: usize = 1 << 20;

/// The log levels [`NodeConfig::log_level`] accepts.
pub const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warning", "error", "critical"];

impl NodeConfig {
    /// Reads a TOML file.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the file, when it cannot be read or is not
    /// a valid config (the message names the offending key and line).
    pub fn from_file(path: &Path) -> Result<NodeConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        NodeConfig::from_toml_str(&text).map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses a config from TOML text (what [`NodeConfig::from_file`] does
    /// with the file's contents). Nothing is validated beyond the syntax
    /// and the keys: call [`NodeConfig::validate`] for the values.
    ///
    /// # Errors
    ///
    /// A message naming the offending key and line, for text that is not a
    /// valid config.
    pub fn from_toml_str(text: &str) -> std::result::Result<NodeConfig, String> {
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        cfg.check_unknown_raftstore_keys(text)?;
        Ok(cfg)
    }

    /// `raftstore::Config` (and the `apply` table inside it) fill in
    /// defaults but do not refuse unknown keys, so a misspelt setting there
    /// would be ignored silently: compare the keys given with the keys the
    /// parsed config has.
    fn check_unknown_raftstore_keys(&self, text: &str) -> std::result::Result<(), String> {
        let given: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        let Some(given) = given.get("raftstore") else {
            return Ok(());
        };
        let known = toml::Value::try_from(&self.raftstore).map_err(|e| e.to_string())?;
        unknown_keys("raftstore", given, &known)
    }

    /// The gRPC listening address.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when it is not `ip:port`.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        parse_addr("listen", &self.listen)
    }

    /// The status listening address.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when it is not `ip:port`.
    pub fn status_addr(&self) -> Result<SocketAddr> {
        parse_addr("status", &self.status)
    }

    /// Checks every setting, this crate's and those of the raft store and
    /// the server.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] saying which setting is wrong and why.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.store_id == 0 {
            return bad("store-id is required and must not be 0".to_owned());
        }
        let listen = self.listen_addr()?;
        let status = self.status_addr()?;
        if listen == status {
            return bad(format!("listen and status are the same address {listen}"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data-dir is required".to_owned());
        }
        if let Some(join) = &self.join {
            if !self.initial_cluster.is_empty() {
                return bad(
                    "give either initial-cluster (a new cluster) or join (a running one), not both"
                        .to_owned(),
                );
            }
            if let Err(e) = server::AddressBook::new([(self.store_id, join.clone())]) {
                return bad(format!("join: {e}"));
            }
            if listen.ip().is_unspecified() {
                return bad(format!(
                    "a joining node is known to the others by its listen address; {listen} is \
                     not one they can reach"
                ));
            }
        }
        if !self.initial_cluster.is_empty()
            && !self.initial_cluster.stores().contains_key(&self.store_id)
        {
            return bad(format!(
                "initial-cluster {} does not list this store ({})",
                self.initial_cluster, self.store_id
            ));
        }
        if self.regions == 0 || self.regions > MAX_INITIAL_REGIONS {
            return bad(format!(
                "regions must be in 1..={MAX_INITIAL_REGIONS}, got {}",
                self.regions
            ));
        }
        if !LOG_LEVELS.contains(&self.log_level.as_str()) {
            return bad(format!(
                "log-level {:?} is not one of {}",
                self.log_level,
                LOG_LEVELS.join(", ")
            ));
        }
        if self.grpc_threads == 0 || self.grpc_threads > 256 {
            return bad(format!(
                "grpc_threads must be in 1..=256, got {}",
                self.grpc_threads
            ));
        }
        self.raftstore
            .validate()
            .map_err(|e| Error::InvalidConfig(format!("[raftstore] {e}")))?;
        self.server
            .validate()
            .map_err(|e| Error::InvalidConfig(format!("[server] {e}")))?;
        Ok(())
    }
}

/// The first key of `given` (recursively, tables only) that `known` lacks.
fn unknown_keys(
    path: &str,
    given: &toml::Value,
    known: &toml::Value,
) -> std::result::Result<(), String> {
    let (Some(given), Some(known)) = (given.as_table(), known.as_table()) else {
        return Ok(());
    };
    for (key, value) in given {
        match known.get(key) {
            None => {
                let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
                names.sort_unstable();
                return Err(format!(
                    "unknown key `{key}` in [{path}], expected one of {}",
                    names.join(", ")
                ));
            }
            Some(k) => unknown_keys(&format!("{path}.{key}"), value, k)?,
        }
    }
    Ok(())
}

/// A TOML error in one line: `line N: what`.
pub(crate) fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

fn parse_addr(what: &str, s: &str) -> Result<SocketAddr> {
    s.parse().map_err(|_| {
        Error::InvalidConfig(format!(
            "{what} address {s:?} is not IP:PORT (for example 127.0.0.1:20161)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> NodeConfig {
        NodeConfig {
            store_id: 2,
            data_dir: "/tmp/x".into(),
            initial_cluster: "1=127.0.0.1:1,2=127.0.0.1:2".parse().unwrap(),
            ..NodeConfig::default()
        }
    }

    #[test]
    fn a_complete_config_is_valid() {
        valid().validate().unwrap();
    }

    #[test]
    fn each_mistake_gets_its_own_message() {
        type Breaker = fn(&mut NodeConfig);
        let cases: [(Breaker, &str); 12] = [
            (|c| c.store_id = 0, "store-id is required"),
            (|c| c.listen = "nowhere".into(), "listen address"),
            (|c| c.status = c.listen.clone(), "same address"),
            (|c| c.data_dir = PathBuf::new(), "data-dir is required"),
            (|c| c.store_id = 3, "does not list this store (3)"),
            (|c| c.regions = 0, "regions must be"),
            (|c| c.log_level = "loud".into(), "log-level \"loud\""),
            (|c| c.raftstore.raft_heartbeat_ticks = 0, "[raftstore]"),
            (|c| c.server.raft_msg_max_batch_size = 0, "[server]"),
            (
                |c| c.join = Some("127.0.0.1:20161".into()),
                "either initial-cluster (a new cluster) or join",
            ),
            (
                |c| {
                    c.initial_cluster = InitialCluster::default();
                    c.join = Some("nowhere".into());
                },
                "join: bad address \"nowhere\"",
            ),
            (
                |c| {
                    c.initial_cluster = InitialCluster::default();
                    c.join = Some("127.0.0.1:1".into());
                    c.listen = "0.0.0.0:20164".into();
                },
                "0.0.0.0:20164 is not one they can reach",
            ),
        ];
        for (break_it, expected) in cases {
            let mut cfg = valid();
            break_it(&mut cfg);
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn a_joining_node_needs_no_initial_cluster() {
        let mut cfg = valid();
        cfg.initial_cluster = InitialCluster::default();
        cfg.join = Some("127.0.0.1:20161".into());
        cfg.validate().unwrap();
        let text = toml::to_string(&cfg).unwrap();
        assert!(text.contains("join = \"127.0.0.1:20161\""), "{text}");
        assert_eq!(NodeConfig::from_toml_str(&text).unwrap(), cfg);
    }

    #[test]
    fn initial_cluster_syntax_errors_name_the_entry() {
        for (text, expected) in [
            ("1=127.0.0.1:1,x", "\"x\" is not ID=HOST:PORT"),
            ("a=127.0.0.1:1", "\"a\" is not a store id"),
            ("0=127.0.0.1:1", "store id 0"),
            ("1=nowhere", "host:port"),
            ("1=h:1,1=h:2", "listed twice"),
        ] {
            let err = text.parse::<InitialCluster>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        assert!("".parse::<InitialCluster>().unwrap().is_empty());
    }

    #[test]
    fn unknown_raftstore_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.toml");
        for (text, expected) in [
            (
                "[raftstore]\nraft_base_tick_ms = 5\n",
                "unknown key `raft_base_tick_ms` in [raftstore]",
            ),
            (
                "[raftstore.apply]\npool = 2\n",
                "unknown key `pool` in [raftstore.apply]",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = NodeConfig::from_file(&file).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        std::fs::write(
            &file,
            "[raftstore]\nraft_base_tick_interval_ms = 5\n[raftstore.apply]\npool_size = 2\n",
        )
        .unwrap();
        let cfg = NodeConfig::from_file(&file).unwrap();
        assert_eq!(
            (
                cfg.raftstore.raft_base_tick_interval_ms,
                cfg.raftstore.apply.pool_size
            ),
            (5, 2)
        );
    }

    #[test]
    fn toml_round_trips_and_nested_sections_fill_defaults() {
        let text = r#"
            store_id = 2
            data_dir = "/tmp/x"
            initial_cluster = "1=127.0.0.1:1,2=127.0.0.1:2"
            [raftstore]
            raft_base_tick_interval_ms = 20
        "#;
        let cfg: NodeConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.raftstore.raft_base_tick_interval_ms, 20);
        assert_eq!(cfg.raftstore.raft_heartbeat_ticks, 2);
        assert_eq!(cfg.initial_cluster.store_ids(), vec![1, 2]);
        let again: NodeConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(again, cfg);
        let err = toml::from_str::<NodeConfig>("[server]\nbatch = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `batch`"), "{err}");
    }
}
