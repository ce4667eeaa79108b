//! The `node` binary's flags: each overrides the same setting of the
//! config file.

use std::path::PathBuf;

use clap::Parser;

use crate::config::NodeConfig;
use crate::Result;

/// Flags of the `node` binary.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "node",
    version,
    about = "A multi-raft store server: serves its regions over gRPC, talks raft with the other stores.",
    after_help = "The first start with an empty --data-dir bootstraps the store from --initial-cluster \
                  and --regions (give every node the same values), or with --join joins a running \
                  cluster; later starts recover from the data dir and ignore these flags. SIGTERM or \
                  SIGINT stops the node gracefully."
)]
pub struct NodeFlags {
    /// TOML config file; the flags below override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This store's id (non-zero).
    #[arg(long, value_name = "ID")]
    pub store_id: Option<u64>,
    /// gRPC address to listen on.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// HTTP status address (GET /status, GET /metrics).
    #[arg(long, value_name = "IP:PORT")]
    pub status: Option<String>,
    /// Directory of the store's data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Every store of a new cluster: ID=HOST:PORT,ID=HOST:PORT,...
    #[arg(long, value_name = "LIST")]
    pub initial_cluster: Option<String>,
    /// Regions the key space is split into at the first start.
    #[arg(long, value_name = "N")]
    pub regions: Option<usize>,
    /// Join the running cluster of the store at HOST:PORT (first start,
    /// instead of --initial-cluster): register this store, then take a fair
    /// share of the replicas.
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// trace, debug, info, warning, error or critical.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

impl NodeFlags {
    /// The config: the file's (or the defaults), with every flag given
    /// applied on top. Not validated yet.
    ///
    /// # Errors
    ///
    /// The file cannot be read or parsed, or `--initial-cluster` is
    /// malformed.
    pub fn into_config(self) -> Result<NodeConfig> {
        let mut cfg = match &self.config {
            Some(path) => NodeConfig::from_file(path)?,
            None => NodeConfig::default(),
        };
        if let Some(v) = self.store_id {
            cfg.store_id = v;
        }
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = self.status {
            cfg.status = v;
        }
        if let Some(v) = self.data_dir {
            cfg.data_dir = v;
        }
        if let Some(v) = self.initial_cluster {
            cfg.initial_cluster = v.parse()?;
        }
        if let Some(v) = self.regions {
            cfg.regions = v;
        }
        if let Some(v) = self.join {
            cfg.join = Some(v);
        }
        if let Some(v) = self.log_level {
            cfg.log_level = v;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "store_id = 1\nregions = 4\nlog_level = \"debug\"\n[raftstore]\nraft_base_tick_interval_ms = 20\n",
        )
        .unwrap();
        let flags = NodeFlags::parse_from([
            "node",
            "--config",
            file.to_str().unwrap(),
            "--store-id",
            "3",
            "--data-dir",
            "/tmp/d",
        ]);
        let cfg = flags.into_config().unwrap();
        assert_eq!(cfg.store_id, 3);
        assert_eq!(cfg.regions, 4);
        assert_eq!(cfg.log_level, "debug");
        assert_eq!(cfg.raftstore.raft_base_tick_interval_ms, 20);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/d"));
    }

    #[test]
    fn a_malformed_file_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "store_id = 1\nregoins = 4\n").unwrap();
        let err = NodeFlags {
            config: Some(file.clone()),
            ..NodeFlags::default()
        }
        .into_config()
        .unwrap_err()
        .to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("line 2: unknown field `regoins`"), "{err}");
    }
}
