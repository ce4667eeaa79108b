//! A client that routes keys to regions and leaders, retrying on the errors
//! that say "ask someone else" or "ask again later".

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kvproto_lite::errorpb;
use kvproto_lite::metapb::{Peer, Region};
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdResponse, Request, Response};

use crate::router::CommandSink;

/// The stores a client can reach, by store id. Shared, so a cluster can
/// swap a restarted store's router in.
pub type StoreDirectory = Arc<RwLock<HashMap<u64, Arc<dyn CommandSink>>>>;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer before the deadline; a write may or may not have happened.
    #[error("timed out after {attempts} attempts; last error: {last_error}")]
    Timeout {
        /// How many times the command was sent.
        attempts: usize,
        /// The last error seen.
        last_error: String,
    },
    /// The store answered with an error the client cannot retry.
    #[error("store error: {0:?}")]
    Store(errorpb::Error),
    /// No region covers the key (the client's region list is incomplete).
    #[error("no region covers key {0:?}")]
    NoRegion(Vec<u8>),
    /// The response did not have the shape of the request.
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// Options of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Total time an operation may take, retries included.
    pub timeout: Duration,
    /// Time to wait for one attempt's answer.
    pub attempt_timeout: Duration,
    /// First backoff after a busy/stale/no-leader answer; doubles up to
    /// `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(3),
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(200),
        }
    }
}

/// A key-value client of a cluster.
///
/// Keeps a cache of regions (key ranges and epochs) and of leaders; sends
/// each command to the believed leader; follows `NotLeader` hints, refreshes
/// regions on `EpochNotMatch`, backs off on `ServerIsBusy`,
/// `StaleCommand` and unknown leaders.
pub struct Client {
    stores: StoreDirectory,
    regions: Vec<Region>,
    leaders: HashMap<u64, Peer>,
    opts: ClientOptions,
}

enum Attempt {
    Done(RaftCmdResponse),
    Retry { err: String, backoff: bool },
    Fail(ClientError),
}

impl Client {
    /// A client over `stores` that starts from the given region list.
    pub fn new(stores: StoreDirectory, mut regions: Vec<Region>, opts: ClientOptions) -> Client {
        regions.sort_by(|a, b| a.get_start_key().cmp(b.get_start_key()));
        Client {
            stores,
            regions,
            leaders: HashMap::new(),
            opts,
        }
    }

    /// Writes `value` under `key`.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let mut req = Request::default();
        req.set_cmd_type(CmdType::Put);
        req.mut_put().set_key(key.to_vec());
        req.mut_put().set_value(value.to_vec());
        self.execute(key, req).map(|_| ())
    }

    /// Reads `key` through the raft log (linearizable).
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        let mut req = Request::default();
        req.set_cmd_type(CmdType::Get);
        req.mut_get().set_key(key.to_vec());
        let mut resp = self.execute(key, req)?;
        if resp.get_cmd_type() != CmdType::Get {
            return Err(ClientError::Malformed(format!(
                "expected a Get response, got {:?}",
                resp.get_cmd_type()
            )));
        }
        let get = resp.take_get();
        Ok(if get.get_not_found() {
            None
        } else {
            Some(get.get_value().to_vec())
        })
    }

    /// Deletes `key`.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub fn delete(&mut self, key: &[u8]) -> Result<(), ClientError> {
        let mut req = Request::default();
        req.set_cmd_type(CmdType::Delete);
        req.mut_delete().set_key(key.to_vec());
        self.execute(key, req).map(|_| ())
    }

    /// The region the client believes covers `key`.
    pub fn region_for(&self, key: &[u8]) -> Option<&Region> {
        let idx = self.regions.partition_point(|r| r.get_start_key() <= key);
        let region = self.regions.get(idx.checked_sub(1)?)?;
        kvproto_lite::util::is_key_in_region(key, region).then_some(region)
    }

    /// Runs one request on the region of `key`, with retries.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub fn execute(&mut self, key: &[u8], req: Request) -> Result<Response, ClientError> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut backoff = self.opts.initial_backoff;
        let mut attempts = 0usize;
        let mut last_error = String::from("none");
        loop {
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    attempts,
                    last_error,
                });
            }
            let region = self
                .region_for(key)
                .cloned()
                .ok_or_else(|| ClientError::NoRegion(key.to_vec()))?;
            let peer = self.pick_peer(&region, attempts);
            attempts += 1;
            match self.attempt(&region, &peer, &req) {
                Attempt::Done(mut resp) => {
                    let mut responses = resp.take_responses();
                    return responses.pop().ok_or_else(|| {
                        ClientError::Malformed("no response in a successful reply".to_owned())
                    });
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { err, backoff: wait } => {
                    last_error = err;
                    if wait {
                        let left = deadline.saturating_duration_since(Instant::now());
                        std::thread::sleep(backoff.min(left));
                        backoff = (backoff * 2).min(self.opts.max_backoff);
                    }
                }
            }
        }
    }

    fn pick_peer(&self, region: &Region, attempt: usize) -> Peer {
        if let Some(p) = self.leaders.get(&region.get_id()) {
            return p.clone();
        }
        let peers = region.get_peers();
        if peers.is_empty() {
            return Peer::default();
        }
        peers[attempt % peers.len()].clone()
    }

    fn attempt(&mut self, region: &Region, peer: &Peer, req: &Request) -> Attempt {
        let region_id = region.get_id();
        let sink = self
            .stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&peer.get_store_id())
            .cloned();
        let Some(sink) = sink else {
            self.leaders.remove(&region_id);
            return Attempt::Retry {
                err: format!("store {} not reachable", peer.get_store_id()),
                backoff: true,
            };
        };
        let mut cmd = kvproto_lite::util::new_cmd_request(region, peer.clone());
        cmd.mut_requests().push(req.clone());
        let rx = sink.submit(cmd);
        let resp = match rx.recv_timeout(self.opts.attempt_timeout) {
            Ok(resp) => resp,
            Err(_) => {
                self.leaders.remove(&region_id);
                return Attempt::Retry {
                    err: "attempt timed out".to_owned(),
                    backoff: false,
                };
            }
        };
        if !resp.get_header().has_error() {
            self.leaders.insert(region_id, peer.clone());
            return Attempt::Done(resp);
        }
        let err = resp.get_header().get_error().clone();
        let text = format!("{err:?}");
        if err.has_not_leader() {
            let nl = err.get_not_leader();
            if nl.has_leader() && nl.get_leader().get_id() != 0 {
                self.leaders.insert(region_id, nl.get_leader().clone());
                return Attempt::Retry {
                    err: text,
                    backoff: false,
                };
            }
            self.leaders.remove(&region_id);
            return Attempt::Retry {
                err: text,
                backoff: true,
            };
        }
        if err.has_epoch_not_match() {
            for r in err.get_epoch_not_match().get_current_regions() {
                self.update_region(r.clone());
            }
            return Attempt::Retry {
                err: text,
                backoff: false,
            };
        }
        if err.has_region_not_found() || err.has_store_not_match() {
            self.leaders.remove(&region_id);
            return Attempt::Retry {
                err: text,
                backoff: true,
            };
        }
        if err.has_server_is_busy() || err.has_stale_command() {
            return Attempt::Retry {
                err: text,
                backoff: true,
            };
        }
        if err.has_key_not_in_region() || err.has_raft_entry_too_large() {
            return Attempt::Fail(ClientError::Store(err));
        }
        // An untyped error: the command's outcome is unknown (dropped at
        // shutdown, ...). Retrying is safe for idempotent puts, gets and
        // deletes.
        self.leaders.remove(&region_id);
        Attempt::Retry {
            err: text,
            backoff: true,
        }
    }

    fn update_region(&mut self, region: Region) {
        // Cached regions overlapping the new one keep only the parts of their
        // range it does not cover: a key there is still routed to the old
        // region id, whose store answers with the current layout (for
        // example the other half of a split it has not reported yet).
        let (start, end) = (region.get_start_key(), region.get_end_key());
        let mut kept = Vec::with_capacity(self.regions.len() + 2);
        for r in self.regions.drain(..) {
            let overlaps = (end.is_empty() || r.get_start_key() < end)
                && (r.get_end_key().is_empty() || start < r.get_end_key());
            if !overlaps {
                kept.push(r);
                continue;
            }
            if r.get_start_key() < start {
                let mut left = r.clone();
                left.set_end_key(start.to_vec());
                kept.push(left);
            }
            if !end.is_empty() && (r.get_end_key().is_empty() || end < r.get_end_key()) {
                let mut right = r;
                right.set_start_key(end.to_vec());
                kept.push(right);
            }
        }
        self.leaders.remove(&region.get_id());
        kept.push(region);
        kept.sort_by(|a, b| a.get_start_key().cmp(b.get_start_key()));
        self.regions = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> Region {
        let mut r = Region::default();
        r.set_id(id);
        r.set_start_key(start.to_vec());
        r.set_end_key(end.to_vec());
        r.mut_region_epoch().set_version(version);
        r
    }

    fn client(regions: Vec<Region>) -> Client {
        Client::new(
            Arc::new(RwLock::new(HashMap::new())),
            regions,
            ClientOptions::default(),
        )
    }

    #[test]
    fn region_lookup_follows_key_ranges() {
        let c = client(vec![region(2, b"m", b"", 1), region(1, b"", b"m", 1)]);
        assert_eq!(c.region_for(b"a").unwrap().get_id(), 1);
        assert_eq!(c.region_for(b"m").unwrap().get_id(), 2);
        assert_eq!(c.region_for(b"zzz").unwrap().get_id(), 2);
    }

    #[test]
    fn learning_half_of_a_split_keeps_the_other_half_routable() {
        let mut c = client(vec![region(1, b"", b"", 1)]);
        c.update_region(region(1, b"", b"h", 2));
        assert_eq!(
            c.region_for(b"a").unwrap().get_region_epoch().get_version(),
            2
        );
        // Still routed to region 1 (old epoch) until the store says more.
        let rest = c.region_for(b"z").unwrap();
        assert_eq!(
            (rest.get_id(), rest.get_region_epoch().get_version()),
            (1, 1)
        );
        c.update_region(region(100, b"h", b"", 2));
        assert_eq!(c.region_for(b"z").unwrap().get_id(), 100);
        assert_eq!(c.regions.len(), 2);
    }

    #[test]
    fn a_new_region_in_the_middle_splits_the_cached_one() {
        let mut c = client(vec![region(1, b"", b"", 1)]);
        c.update_region(region(5, b"c", b"f", 1));
        let ids: Vec<u64> = c.regions.iter().map(|r| r.get_id()).collect();
        assert_eq!(ids, vec![1, 5, 1]);
        assert_eq!(c.region_for(b"d").unwrap().get_id(), 5);
        assert_eq!(c.region_for(b"g").unwrap().get_start_key(), b"f");
    }
}
