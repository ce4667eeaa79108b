//! Configuration of the gRPC server and the store-to-store transport.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Settings of a store's gRPC server and of its connections to other stores.
///
/// Every field has a default ([`Config::default`]); deserialising a partial
/// document fills in the rest. [`Config::validate`] says what is wrong with
/// a bad combination.
///
/// # Examples
///
/// ```
/// let mut cfg = server::Config::default();
/// cfg.validate().unwrap();
/// cfg.raft_msg_max_batch_size = 0;
/// assert!(cfg.validate().unwrap_err().to_string().contains("raft_msg_max_batch_size"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Most raft messages in one batch sent to a store.
    pub raft_msg_max_batch_size: usize,
    /// A batch is closed once its estimated size reaches this many bytes (a
    /// single larger message still goes alone).
    pub raft_msg_max_batch_bytes: usize,
    /// Most raft messages queued for one connection; beyond it messages are
    /// dropped (and counted): raft retransmits what it needs.
    pub raft_queue_capacity: usize,
    /// Connections to each other store; a region's messages always use the
    /// same one (region id modulo this), so their order is kept.
    pub raft_conns_per_store: usize,
    /// Pause before the first reconnection attempt, in milliseconds; it
    /// doubles after every failed attempt up to `reconnect_max_backoff_ms`.
    pub reconnect_initial_backoff_ms: u64,
    /// Longest pause between reconnection attempts, in milliseconds.
    pub reconnect_max_backoff_ms: u64,
    /// How long a connection attempt may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// HTTP/2 keep-alive ping interval on every connection, in milliseconds.
    pub keepalive_interval_ms: u64,
    /// A connection whose keep-alive ping is not answered within this many
    /// milliseconds is closed.
    pub keepalive_timeout_ms: u64,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_size: usize,
    /// Most requests in progress on one client connection (HTTP/2
    /// concurrent streams); more wait on the client side.
    pub max_concurrent_streams: u32,
    /// Most commands one `BatchCommands` call may carry.
    pub max_batch_commands: usize,
    /// Most pairs one Scan returns (a request asking for more, or for 0,
    /// gets this many).
    pub max_scan_limit: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            raft_msg_max_batch_size: 256,
            raft_msg_max_batch_bytes: 4 * 1024 * 1024,
            raft_queue_capacity: 16 * 1024,
            raft_conns_per_store: 1,
            reconnect_initial_backoff_ms: 50,
            reconnect_max_backoff_ms: 2_000,
            connect_timeout_ms: 2_000,
            keepalive_interval_ms: 10_000,
            keepalive_timeout_ms: 5_000,
            max_message_size: 64 * 1024 * 1024,
            max_concurrent_streams: 1024,
            max_batch_commands: 4096,
            max_scan_limit: 10_000,
        }
    }
}

impl Config {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first bad field and why.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        if self.raft_msg_max_batch_size == 0 {
            return bad("raft_msg_max_batch_size must be at least 1".to_owned());
        }
        if self.raft_queue_capacity < self.raft_msg_max_batch_size {
            return bad(format!(
                "raft_queue_capacity ({}) must be at least raft_msg_max_batch_size ({})",
                self.raft_queue_capacity, self.raft_msg_max_batch_size
            ));
        }
        if self.raft_conns_per_store == 0 || self.raft_conns_per_store > 64 {
            return bad(format!(
                "raft_conns_per_store must be in 1..=64, got {}",
                self.raft_conns_per_store
            ));
        }
        if self.reconnect_initial_backoff_ms == 0
            || self.reconnect_initial_backoff_ms > self.reconnect_max_backoff_ms
        {
            return bad(format!(
                "reconnect_initial_backoff_ms ({}) must be positive and at most \
                 reconnect_max_backoff_ms ({})",
                self.reconnect_initial_backoff_ms, self.reconnect_max_backoff_ms
            ));
        }
        if self.connect_timeout_ms == 0 {
            return bad("connect_timeout_ms must be positive".to_owned());
        }
        if self.keepalive_interval_ms == 0 || self.keepalive_timeout_ms == 0 {
            return bad(
                "keepalive_interval_ms and keepalive_timeout_ms must be positive".to_owned(),
            );
        }
        if self.max_message_size < 1024 * 1024 {
            return bad(format!(
                "max_message_size must be at least 1 MiB, got {}",
                self.max_message_size
            ));
        }
        if self.raft_msg_max_batch_bytes == 0
            || self.raft_msg_max_batch_bytes > self.max_message_size / 2
        {
            return bad(format!(
                "raft_msg_max_batch_bytes ({}) must be positive and at most half of \
                 max_message_size ({})",
                self.raft_msg_max_batch_bytes, self.max_message_size
            ));
        }
        if self.max_batch_commands == 0 {
            return bad("max_batch_commands must be at least 1".to_owned());
        }
        if self.max_concurrent_streams == 0 {
            return bad("max_concurrent_streams must be at least 1".to_owned());
        }
        if self.max_scan_limit == 0 {
            return bad("max_scan_limit must be at least 1".to_owned());
        }
        Ok(())
    }

    pub(crate) fn initial_backoff(&self) -> Duration {
        Duration::from_millis(self.reconnect_initial_backoff_ms)
    }

    pub(crate) fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.reconnect_max_backoff_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        type Breaker = fn(&mut Config);
        let cases: [(&str, Breaker); 9] = [
            ("raft_msg_max_batch_size", |c| c.raft_msg_max_batch_size = 0),
            ("raft_queue_capacity", |c| c.raft_queue_capacity = 1),
            ("raft_conns_per_store", |c| c.raft_conns_per_store = 0),
            ("reconnect_initial_backoff_ms", |c| {
                c.reconnect_initial_backoff_ms = c.reconnect_max_backoff_ms + 1
            }),
            ("connect_timeout_ms", |c| c.connect_timeout_ms = 0),
            ("keepalive", |c| c.keepalive_timeout_ms = 0),
            ("raft_msg_max_batch_bytes", |c| {
                c.raft_msg_max_batch_bytes = c.max_message_size
            }),
            ("max_scan_limit", |c| c.max_scan_limit = 0),
            ("max_concurrent_streams", |c| c.max_concurrent_streams = 0),
        ];
        for (field, break_it) in cases {
            let mut cfg = Config::default();
            break_it(&mut cfg);
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
