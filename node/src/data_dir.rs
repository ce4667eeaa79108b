//! [`DataDir`]: a node's directory, its identity record and its engines;
//! [`prepare`] decides between a first start (bootstrap) and a restart.
//!
//! ```text
//! DATA_DIR/
//!   LOCK           flock'ed while a node runs: one node per directory
//!   cluster.toml   written once, before the engines: store id, cluster
//!                  id, the initial cluster and the number of regions (for
//!                  a store that joined a running cluster: the stores at
//!                  that time, no regions, `joined = true`)
//!   stores.toml    the address book: every store this node learned of
//!                  (rewritten atomically whenever one is added)
//!   kv/            fjall: the state machine and per-region metadata
//!   raft/          raft-engine: the raft logs
//! ```
//!
//! The record is written first (atomically: temporary file, fsync, rename,
//! fsync of the directory), then the engines are bootstrapped. A crash
//! between the two leaves a record with empty engines, and the next start
//! finishes the bootstrap from the record, with the same layout. Engines
//! without a record are refused: nothing says which store they belong to.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use engine::{Engines, FjallKvEngine, KvEngine, RaftEngineLogEngine};
use kvproto_lite::util;
use serde::{Deserialize, Serialize};
use slog::{info, warn, Logger};

use crate::config::{InitialCluster, NodeConfig};
use crate::{Error, Result};

/// The name of the identity record in a data directory.
pub const CLUSTER_FILE: &str = "cluster.toml";

/// The name of the address book in a data directory.
pub const STORES_FILE: &str = "stores.toml";

/// Version of the record's layout.
const RECORD_FORMAT: u32 = 1;

/// What a data directory says about the store it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterRecord {
    /// Layout version of this record.
    pub format: u32,
    /// The store this directory belongs to.
    pub store_id: u64,
    /// Identifies the cluster: a hash of its initial stores and regions,
    /// the same on every node bootstrapped with the same flags.
    pub cluster_id: u64,
    /// The regions the key space was split into at the first start.
    pub regions: usize,
    /// The stores of the cluster at its first start, with their addresses
    /// (for a joined store: the stores when it joined, itself included).
    pub initial_cluster: InitialCluster,
    /// The store joined a running cluster (it bootstrapped no region; its
    /// replicas were moved onto it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joined: bool,
}

/// The address book as `stores.toml` holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoresFile {
    #[serde(default)]
    store: Vec<StoreEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreEntry {
    id: u64,
    address: String,
}

impl ClusterRecord {
    /// The record of store `store_id` in a new cluster.
    pub fn new(store_id: u64, initial_cluster: InitialCluster, regions: usize) -> ClusterRecord {
        ClusterRecord {
            format: RECORD_FORMAT,
            store_id,
            cluster_id: cluster_id(&initial_cluster, regions),
            regions,
            initial_cluster,
            joined: false,
        }
    }

    /// The record of store `store_id` joining the running cluster
    /// `cluster_id`, whose stores (this one included) are `stores`.
    pub fn joined(
        store_id: u64,
        cluster_id: u64,
        stores: std::collections::BTreeMap<u64, String>,
    ) -> ClusterRecord {
        ClusterRecord {
            format: RECORD_FORMAT,
            store_id,
            cluster_id,
            regions: 0,
            initial_cluster: InitialCluster::from_stores(stores),
            joined: true,
        }
    }

    /// The initial regions of the cluster: every node computes the same
    /// layout from the same record (store ids ascending, the key space of
    /// 8-byte big-endian keys split evenly).
    ///
    /// # Errors
    ///
    /// As [`raftstore::initial_regions`].
    pub fn initial_regions(&self) -> Result<Vec<kvproto_lite::metapb::Region>> {
        if self.joined {
            return Ok(Vec::new());
        }
        Ok(raftstore::initial_regions(
            &self.initial_cluster.store_ids(),
            &raftstore::even_split_keys(self.regions),
        )?)
    }
}

/// FNV-1a over the cluster's description: stable across builds and
/// platforms (unlike `std`'s hasher), so every node derives the same id.
/// 63 bits, so that it fits a TOML integer (a signed 64-bit number).
fn cluster_id(initial_cluster: &InitialCluster, regions: usize) -> u64 {
    let text = format!("{initial_cluster}/{regions}");
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h >> 1
}

/// An open, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates `path` if needed and locks it.
    ///
    /// # Errors
    ///
    /// [`Error::DataDir`] when it cannot be created, or another node holds
    /// its lock.
    pub fn open(path: &Path) -> Result<DataDir> {
        let err = |message: String| Error::DataDir {
            path: path.to_path_buf(),
            message,
        };
        std::fs::create_dir_all(path).map_err(|e| err(format!("cannot create: {e}")))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("LOCK"))
            .map_err(|e| err(format!("cannot open the lock file: {e}")))?;
        // SAFETY: flock only operates on the descriptor, which `lock` owns
        // and keeps open for the call (and for the life of the DataDir,
        // which holds the lock).
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(err(format!(
                "is in use by another node ({})",
                std::io::Error::last_os_error()
            )));
        }
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The identity record, if the directory has one.
    ///
    /// # Errors
    ///
    /// [`Error::DataDir`] when the record exists but cannot be read or
    /// parsed.
    pub fn record(&self) -> Result<Option<ClusterRecord>> {
        let file = self.path.join(CLUSTER_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(format!("cannot read {CLUSTER_FILE}: {e}"))),
        };
        let record: ClusterRecord = toml::from_str(&text).map_err(|e| {
            self.error(format!(
                "{CLUSTER_FILE} is damaged: {}",
                crate::config::toml_error(&text, &e)
            ))
        })?;
        if record.format != RECORD_FORMAT {
            return Err(self.error(format!(
                "{CLUSTER_FILE} has format {}, this node reads format {RECORD_FORMAT}",
                record.format
            )));
        }
        Ok(Some(record))
    }

    /// Writes the identity record atomically.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a step fails.
    pub fn write_record(&self, record: &ClusterRecord) -> Result<()> {
        let text = format!(
            "# Identity of this store's data; written once at its first start.\n{}",
            toml::to_string(record)
                .map_err(|e| self.error(format!("cannot encode {CLUSTER_FILE}: {e}")))?
        );
        self.write_atomically(CLUSTER_FILE, &text)
    }

    /// The address book saved in the directory (empty when there is none).
    ///
    /// # Errors
    ///
    /// [`Error::DataDir`] when the file exists but cannot be read or parsed.
    pub fn stores(&self) -> Result<std::collections::BTreeMap<u64, String>> {
        let file = self.path.join(STORES_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(self.error(format!("cannot read {STORES_FILE}: {e}"))),
        };
        let parsed: StoresFile = toml::from_str(&text).map_err(|e| {
            self.error(format!(
                "{STORES_FILE} is damaged: {}",
                crate::config::toml_error(&text, &e)
            ))
        })?;
        Ok(parsed
            .store
            .into_iter()
            .map(|s| (s.id, s.address))
            .collect())
    }

    /// Saves the address book atomically.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a step fails.
    pub fn write_stores(&self, stores: &[kvproto_lite::metapb::Store]) -> Result<()> {
        let file = StoresFile {
            store: stores
                .iter()
                .map(|s| StoreEntry {
                    id: s.get_id(),
                    address: s.get_address().to_owned(),
                })
                .collect(),
        };
        let text = format!(
            "# Every store this node knows of; rewritten when one is added.\n{}",
            toml::to_string(&file)
                .map_err(|e| self.error(format!("cannot encode {STORES_FILE}: {e}")))?
        );
        self.write_atomically(STORES_FILE, &text)
    }

    /// Writes `name` in the directory: a temporary file, fsync, rename,
    /// fsync of the directory.
    fn write_atomically(&self, name: &str, text: &str) -> Result<()> {
        let tmp = self.path.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp).map_err(Error::io(format!("create {}", tmp.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(Error::io(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, self.path.join(name))
            .map_err(Error::io(format!("rename {}", tmp.display())))?;
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(Error::io(format!("sync {}", self.path.display())))?;
        Ok(())
    }

    /// Whether the engine directories hold anything.
    fn has_engine_files(&self) -> bool {
        ["kv", "raft"].iter().any(|d| {
            std::fs::read_dir(self.path.join(d))
                .map(|mut it| it.next().is_some())
                .unwrap_or(false)
        })
    }

    /// Opens (creating if needed) the durable engines: fjall in `kv/`,
    /// raft-engine in `raft/`.
    ///
    /// # Errors
    ///
    /// An engine that cannot be opened.
    pub fn open_engines(&self) -> Result<Engines<FjallKvEngine, RaftEngineLogEngine>> {
        let kv = FjallKvEngine::open(self.path.join("kv"))?;
        let raft = RaftEngineLogEngine::open(self.path.join("raft"))?;
        Ok(Engines::new(kv, raft))
    }

    fn error(&self, message: String) -> Error {
        Error::DataDir {
            path: self.path.clone(),
            message,
        }
    }
}

/// What [`prepare`] found and did.
#[derive(Debug)]
pub struct Prepared {
    /// The store's identity.
    pub record: ClusterRecord,
    /// The opened engines, bootstrapped.
    pub engines: Engines<FjallKvEngine, RaftEngineLogEngine>,
    /// Whether this start bootstrapped the store (else it restarts).
    pub bootstrapped: bool,
    /// Regions with a peer on this store.
    pub regions: usize,
}

/// Makes `dir` ready for store `cfg.store_id`: on the first start writes
/// the record from `cfg.initial_cluster` and `cfg.regions` and bootstraps
/// the engines; on a restart checks that the directory belongs to this
/// store and ignores the bootstrap settings.
///
/// # Errors
///
/// [`Error::DataDir`] for a directory of another store, engines without a
/// record, or a first start without an initial cluster; engine errors.
pub fn prepare(dir: &DataDir, cfg: &NodeConfig, logger: &Logger) -> Result<Prepared> {
    prepare_with(dir, cfg, None, logger)
}

/// [`prepare`] for a node joining a running cluster: on the first start
/// (no record yet) writes `joined` (see [`ClusterRecord::joined`]) instead
/// of bootstrapping; a restart ignores it, as [`prepare`] ignores the
/// bootstrap settings.
///
/// # Errors
///
/// As [`prepare`].
pub fn prepare_joined(
    dir: &DataDir,
    cfg: &NodeConfig,
    joined: ClusterRecord,
    logger: &Logger,
) -> Result<Prepared> {
    prepare_with(dir, cfg, Some(joined), logger)
}

fn prepare_with(
    dir: &DataDir,
    cfg: &NodeConfig,
    joined: Option<ClusterRecord>,
    logger: &Logger,
) -> Result<Prepared> {
    let mut first_start = false;
    let record = match dir.record()? {
        Some(record) => {
            if record.store_id != cfg.store_id {
                return Err(dir.error(format!(
                    "belongs to store {}, not store {}; refusing to start",
                    record.store_id, cfg.store_id
                )));
            }
            if !cfg.initial_cluster.is_empty()
                && (cfg.initial_cluster != record.initial_cluster || cfg.regions != record.regions)
            {
                warn!(logger, "restarting: the initial cluster given differs from the one recorded at the first start; using the recorded one";
                      "given" => %cfg.initial_cluster, "recorded" => %record.initial_cluster,
                      "given_regions" => cfg.regions, "recorded_regions" => record.regions);
            }
            record
        }
        None => {
            if dir.has_engine_files() {
                return Err(dir.error(format!(
                    "holds engine files but no {CLUSTER_FILE}: cannot tell which store they belong to"
                )));
            }
            first_start = true;
            if let Some(record) = joined {
                dir.write_record(&record)?;
                info!(logger, "joined a running cluster"; "cluster_id" => record.cluster_id,
                      "stores" => %record.initial_cluster);
                return finish(dir, record, true, logger);
            }
            if cfg.initial_cluster.is_empty() {
                return Err(dir.error(
                    "is empty: the first start needs --initial-cluster (every store of the new cluster) \
                     or --join (a store of a running cluster)"
                        .to_owned(),
                ));
            }
            let record = ClusterRecord::new(cfg.store_id, cfg.initial_cluster.clone(), cfg.regions);
            dir.write_record(&record)?;
            record
        }
    };
    finish(dir, record, first_start, logger)
}

/// Opens the engines of `record`'s store, bootstrapping them if needed.
fn finish(
    dir: &DataDir,
    record: ClusterRecord,
    first_start: bool,
    logger: &Logger,
) -> Result<Prepared> {
    let engines = dir.open_engines()?;
    // A joined store bootstraps no region: its replicas come from the
    // cluster.
    let bootstrapped = if record.joined || raftstore::is_bootstrapped(&engines)? {
        false
    } else {
        let regions = record.initial_regions()?;
        let n = raftstore::bootstrap_store(&engines, record.store_id, &regions)?;
        info!(logger, "bootstrapped the store"; "regions" => n, "cluster_id" => record.cluster_id,
              "initial_cluster" => %record.initial_cluster);
        true
    };
    let regions = engines
        .kv
        .region_states()?
        .iter()
        .filter(|s| util::find_peer(s.get_region(), record.store_id).is_some())
        .count();
    if regions == 0 && !record.joined {
        return Err(dir.error(format!(
            "holds no region with a replica on store {}",
            record.store_id
        )));
    }
    if !first_start && !bootstrapped {
        info!(logger, "restarting from the data dir"; "regions" => regions,
              "cluster_id" => record.cluster_id);
    }
    Ok(Prepared {
        record,
        engines,
        bootstrapped,
        regions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(store_id: u64, dir: &Path) -> NodeConfig {
        NodeConfig {
            store_id,
            data_dir: dir.to_path_buf(),
            initial_cluster: "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3".parse().unwrap(),
            regions: 4,
            ..NodeConfig::default()
        }
    }

    fn quiet() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    #[test]
    fn a_joined_store_starts_without_regions_and_restarts_as_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = cfg(4, tmp.path());
        c.initial_cluster = InitialCluster::default();
        c.join = Some("127.0.0.1:1".to_owned());
        let stores = [(1, "127.0.0.1:1".to_owned()), (4, "127.0.0.1:4".to_owned())]
            .into_iter()
            .collect();
        let record = ClusterRecord::joined(4, 77, stores);
        {
            let dir = DataDir::open(tmp.path()).unwrap();
            let p = prepare_joined(&dir, &c, record.clone(), &quiet()).unwrap();
            assert_eq!((p.regions, p.bootstrapped), (0, false));
            assert_eq!(dir.record().unwrap(), Some(record.clone()));
        }
        // A restart reads the record; the join settings are not used again.
        let dir = DataDir::open(tmp.path()).unwrap();
        let other = ClusterRecord::joined(4, 99, Default::default());
        let p = prepare_joined(&dir, &c, other, &quiet()).unwrap();
        assert_eq!(p.record, record);
        // Another store id is refused, as for any data dir.
        drop(dir);
        let dir = DataDir::open(tmp.path()).unwrap();
        assert!(prepare(&dir, &cfg(5, tmp.path()), &quiet()).is_err());
        // An ordinary record does not say `joined` at all.
        let plain = toml::to_string(&ClusterRecord::new(1, Default::default(), 1)).unwrap();
        assert!(!plain.contains("joined"), "{plain}");
    }

    #[test]
    fn the_address_book_round_trips_through_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        assert!(dir.stores().unwrap().is_empty());
        let book = server::AddressBook::new([
            (1, "127.0.0.1:1".to_owned()),
            (4, "127.0.0.1:4".to_owned()),
        ])
        .unwrap();
        dir.write_stores(&book.stores()).unwrap();
        let back = dir.stores().unwrap();
        assert_eq!(back.get(&4).map(String::as_str), Some("127.0.0.1:4"));
        assert_eq!(back.len(), 2);
        std::fs::write(tmp.path().join(STORES_FILE), "[[store]]\nid = 1\n").unwrap();
        let err = dir.stores().unwrap_err().to_string();
        assert!(err.contains("stores.toml is damaged"), "{err}");
    }

    #[test]
    fn first_start_bootstraps_and_restart_recovers() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(2, tmp.path());
        {
            let dir = DataDir::open(tmp.path()).unwrap();
            let p = prepare(&dir, &c, &quiet()).unwrap();
            assert!(p.bootstrapped);
            assert_eq!(p.regions, 4);
        }
        // The restart ignores a different initial cluster.
        let mut other = c.clone();
        other.initial_cluster = "2=127.0.0.1:2".parse().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let p = prepare(&dir, &other, &quiet()).unwrap();
        assert!(!p.bootstrapped);
        assert_eq!(p.record.initial_cluster, c.initial_cluster);
        assert_eq!(p.regions, 4);
    }

    #[test]
    fn every_node_derives_the_same_layout_and_cluster_id() {
        let a = ClusterRecord::new(1, cfg(1, Path::new("/")).initial_cluster, 8);
        let b = ClusterRecord::new(3, cfg(3, Path::new("/")).initial_cluster, 8);
        assert_eq!(a.cluster_id, b.cluster_id);
        assert_eq!(a.initial_regions().unwrap(), b.initial_regions().unwrap());
        let c = ClusterRecord::new(1, cfg(1, Path::new("/")).initial_cluster, 9);
        assert_ne!(a.cluster_id, c.cluster_id);
    }

    #[test]
    fn a_data_dir_of_another_store_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        prepare(
            &DataDir::open(tmp.path()).unwrap(),
            &cfg(1, tmp.path()),
            &quiet(),
        )
        .unwrap();
        let err = prepare(
            &DataDir::open(tmp.path()).unwrap(),
            &cfg(2, tmp.path()),
            &quiet(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("belongs to store 1, not store 2"), "{err}");
    }

    #[test]
    fn a_second_node_on_the_same_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let _held = DataDir::open(tmp.path()).unwrap();
        let err = DataDir::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another node"), "{err}");
    }

    #[test]
    fn a_first_start_needs_the_initial_cluster() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = cfg(1, tmp.path());
        c.initial_cluster = InitialCluster::default();
        let err = prepare(&DataDir::open(tmp.path()).unwrap(), &c, &quiet())
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs --initial-cluster"), "{err}");
        assert!(DataDir::open(tmp.path())
            .unwrap()
            .record()
            .unwrap()
            .is_none());
    }

    #[test]
    fn engines_without_a_record_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        drop(dir.open_engines().unwrap());
        // Engines exist (their directories hold files), no record.
        let err = prepare(&dir, &cfg(1, tmp.path()), &quiet())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no cluster.toml"), "{err}");
    }

    #[test]
    fn a_damaged_record_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(CLUSTER_FILE), "store_id = \"one\"").unwrap();
        let err = DataDir::open(tmp.path())
            .unwrap()
            .record()
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.toml is damaged"), "{err}");
    }

    #[test]
    fn a_crash_between_record_and_bootstrap_finishes_the_bootstrap() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(3, tmp.path());
        let dir = DataDir::open(tmp.path()).unwrap();
        dir.write_record(&ClusterRecord::new(3, c.initial_cluster.clone(), 4))
            .unwrap();
        let p = prepare(&dir, &c, &quiet()).unwrap();
        assert!(p.bootstrapped);
        assert_eq!(p.regions, 4);
    }
}
