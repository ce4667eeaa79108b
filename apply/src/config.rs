//! Configuration of the apply batch system.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Configuration of the apply batch system.
///
/// All fields have defaults ([`Config::default`]); deserialising a partial
/// document fills in the rest. [`ApplyBatchSystem::spawn`](crate::ApplyBatchSystem::spawn)
/// calls [`Config::validate`].
///
/// # Examples
///
/// ```
/// let mut cfg = apply::Config::default();
/// cfg.pool_size = 1;
/// cfg.validate().unwrap();
/// cfg.max_entries_per_round = 0;
/// assert!(cfg.validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Number of apply poller threads.
    pub pool_size: usize,
    /// Most apply FSMs one poller handles in one round (they share one KV
    /// write batch).
    pub max_batch_size: usize,
    /// Most entries one region applies in one round; the rest waits for the
    /// next round, so one busy region cannot stall the others in the batch.
    pub max_entries_per_round: usize,
    /// Most entry bytes one region applies in one round (checked after each
    /// entry, so at least one entry is always applied).
    pub max_bytes_per_round: usize,
    /// Most messages one region takes from its mailbox in one round.
    pub messages_per_round: usize,
    /// Capacity of a region's mailbox (loose: committed entries are always
    /// accepted, see [`ApplyRouter::schedule_task`](crate::ApplyRouter::schedule_task)).
    pub mailbox_capacity: usize,
    /// Capacity of the control mailbox.
    pub control_mailbox_capacity: usize,
    /// Make every round's KV write durable before callbacks run. When
    /// `false`, a round is synced only if it holds an admin command
    /// (CompactLog, ChangePeer, Split): after a crash, lost plain writes are
    /// re-applied from the raft log, but a log compaction or a region change
    /// must never be forgotten once raftstore has acted on it.
    pub sync_write: bool,
    /// Session records (exactly-once client commands) idle for more than
    /// this many log entries of their region are removed at the next sweep.
    /// Must be the same on every store (it changes replicated state).
    pub session_ttl_entries: u64,
    /// Most session records a region keeps; beyond it a sweep removes the
    /// least recently used. Must be the same on every store.
    pub max_sessions_per_region: usize,
    /// A region sweeps its session records when it applies an entry whose
    /// index is a multiple of this. Must be the same on every store.
    pub session_sweep_interval: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            pool_size: 2,
            max_batch_size: 256,
            max_entries_per_round: 256,
            max_bytes_per_round: 4 * 1024 * 1024,
            messages_per_round: 1024,
            mailbox_capacity: 1024,
            control_mailbox_capacity: 65536,
            sync_write: false,
            session_ttl_entries: 1_000_000,
            max_sessions_per_region: 10_000,
            session_sweep_interval: 1024,
        }
    }
}

impl Config {
    /// Checks every field, returning the first problem found.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("pool_size", self.pool_size),
            ("max_batch_size", self.max_batch_size),
            ("max_entries_per_round", self.max_entries_per_round),
            ("max_bytes_per_round", self.max_bytes_per_round),
            ("messages_per_round", self.messages_per_round),
            ("mailbox_capacity", self.mailbox_capacity),
            ("control_mailbox_capacity", self.control_mailbox_capacity),
            ("max_sessions_per_region", self.max_sessions_per_region),
            (
                "session_sweep_interval",
                usize::try_from(self.session_sweep_interval).unwrap_or(usize::MAX),
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::InvalidConfig(format!(
                    "{name} must be greater than 0"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn zero_field_is_rejected_with_its_name() {
        let cfg = Config {
            max_bytes_per_round: 0,
            ..Config::default()
        };
        let err = cfg.validate().unwrap_err();
        assert!(err.to_string().contains("max_bytes_per_round"), "{err}");
    }

    #[test]
    fn partial_document_fills_in_defaults() {
        let cfg: Config = serde_json::from_str(r#"{"pool_size": 4}"#).unwrap();
        assert_eq!(cfg.pool_size, 4);
        assert_eq!(cfg.max_batch_size, Config::default().max_batch_size);
    }
}
