//! [`RemoteKv`]: a small asynchronous client of a cluster's `Kv` service,
//! what `kvctl` runs on.
//!
//! It learns the stores from `GetStores` on the first endpoint that
//! answers, looks regions up with `GetRegion` (caching what it learns),
//! sends each request to the region's leader and reacts to the store's
//! answer:
//!
//! | answer | reaction |
//! |---|---|
//! | `NotLeader` with a leader | ask that peer, at once |
//! | `NotLeader` without one, `ServerIsBusy`, `StaleCommand`, `RegionNotFound`, no connection | back off, try the next peer |
//! | `EpochNotMatch` | replace the cached region with the current ones, retry |
//! | `KeyNotInRegion`, `RaftEntryTooLarge` | fail: the request itself is wrong |
//!
//! Every operation has a deadline. Retrying is safe because each of them
//! is idempotent (put, delete, reads).

use std::collections::HashMap;
use std::time::Duration;

use kvproto_lite::errorpb;
use kvproto_lite::grpc::KvClient;
use kvproto_lite::kvrpcpb::{
    Context, DeleteRequest, GetRegionRequest, GetRequest, GetStoresRequest, ListRegionsRequest,
    PutRequest, RegionInfo, ScanRequest,
};
use kvproto_lite::metapb::{Peer, Region};
use kvproto_lite::util;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Why a [`RemoteKv`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// No endpoint answered.
    #[error("no endpoint answered ({endpoints}): {last}")]
    NoEndpoint {
        /// The endpoints tried.
        endpoints: String,
        /// The last failure.
        last: String,
    },
    /// The deadline passed; a write may or may not have happened.
    #[error("timed out after {attempts} attempts; last error: {last}")]
    Timeout {
        /// Requests sent.
        attempts: usize,
        /// The last failure.
        last: String,
    },
    /// The store refused the request for a reason retrying cannot fix.
    #[error("refused: {0}")]
    Refused(String),
}

/// Options of a [`RemoteKv`].
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Deadline of one operation, retries included.
    pub timeout: Duration,
    /// First pause after a retryable failure; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest pause.
    pub max_backoff: Duration,
    /// Deadline of one connection attempt.
    pub connect_timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            timeout: Duration::from_secs(20),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// A client of a cluster over gRPC.
pub struct RemoteKv {
    opts: RemoteOptions,
    /// Store id -> address, from `GetStores`.
    stores: HashMap<u64, String>,
    clients: HashMap<String, KvClient<Channel>>,
    /// Regions learnt so far, with the leader last heard of.
    regions: Vec<RegionInfo>,
}

/// One attempt's outcome.
enum Step<T> {
    Done(T),
    Retry { why: String, backoff: bool },
}

impl RemoteKv {
    /// Connects through the first of `endpoints` (`host:port`) that answers
    /// `GetStores`.
    ///
    /// # Errors
    ///
    /// [`RemoteError::NoEndpoint`] when none answers.
    pub async fn connect(
        endpoints: &[String],
        opts: RemoteOptions,
    ) -> Result<RemoteKv, RemoteError> {
        let mut kv = RemoteKv {
            opts,
            stores: HashMap::new(),
            clients: HashMap::new(),
            regions: Vec::new(),
        };
        let mut last = "no endpoints given".to_owned();
        for addr in endpoints {
            match kv.client(addr).await {
                Ok(mut c) => match c.get_stores(GetStoresRequest::default()).await {
                    Ok(resp) => {
                        for s in resp.get_ref().get_stores() {
                            kv.stores.insert(s.get_id(), s.get_address().to_owned());
                        }
                        return Ok(kv);
                    }
                    Err(status) => last = format!("{addr}: {}", status.message()),
                },
                Err(e) => last = e,
            }
        }
        Err(RemoteError::NoEndpoint {
            endpoints: endpoints.join(","),
            last,
        })
    }

    async fn client(&mut self, addr: &str) -> Result<KvClient<Channel>, String> {
        if let Some(c) = self.clients.get(addr) {
            return Ok(c.clone());
        }
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad endpoint {addr:?}: {e}"))?
            .connect_timeout(self.opts.connect_timeout)
            .timeout(self.opts.timeout)
            .connect()
            .await
            .map_err(|e| format!("{addr}: cannot connect: {}", server::error_chain(&e)))?;
        let c = KvClient::new(channel);
        self.clients.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// The cached region holding `key`, or one looked up from the stores.
    async fn locate(&mut self, key: &[u8]) -> Result<RegionInfo, String> {
        if let Some(info) = self
            .regions
            .iter()
            .find(|i| util::is_key_in_region(key, i.get_region()))
        {
            return Ok(info.clone());
        }
        let mut ids: Vec<u64> = self.stores.keys().copied().collect();
        ids.sort_unstable();
        let mut last = "no store known".to_owned();
        for id in ids {
            let addr = self.stores[&id].clone();
            let mut c = match self.client(&addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut req = GetRegionRequest::default();
            req.set_key(key.to_vec());
            match c.get_region(req).await {
                Ok(resp) if !resp.get_ref().has_region_error() => {
                    let info = resp.into_inner().take_region();
                    self.learn(info.clone());
                    return Ok(info);
                }
                Ok(resp) => last = resp.get_ref().get_region_error().get_message().to_owned(),
                Err(status) => last = format!("{addr}: {}", status.message()),
            }
        }
        Err(last)
    }

    /// Replaces the cached regions overlapping `info`'s with it.
    fn learn(&mut self, info: RegionInfo) {
        let r = info.get_region();
        self.regions.retain(|i| !overlaps(i.get_region(), r));
        self.regions.push(info);
    }

    fn forget(&mut self, region_id: u64) {
        self.regions
            .retain(|i| i.get_region().get_id() != region_id);
    }

    fn set_leader(&mut self, region_id: u64, leader: Option<Peer>) {
        if let Some(i) = self
            .regions
            .iter_mut()
            .find(|i| i.get_region().get_id() == region_id)
        {
            match leader {
                Some(p) => i.set_leader(p),
                None => i.clear_leader(),
            }
        }
    }

    /// Runs `op` against the leader of the region holding `key` until it
    /// answers without a retryable error or the deadline passes.
    async fn run<T, F, Fut>(&mut self, key: &[u8], mut op: F) -> Result<T, RemoteError>
    where
        F: FnMut(KvClient<Channel>, Context) -> Fut,
        Fut: std::future::Future<Output = Result<(Option<errorpb::Error>, T), tonic::Status>>,
    {
        let deadline = Instant::now() + self.opts.timeout;
        let mut backoff = self.opts.initial_backoff;
        let mut attempts = 0usize;
        let mut last = String::from("none");
        loop {
            if Instant::now() >= deadline {
                return Err(RemoteError::Timeout { attempts, last });
            }
            let step = match self.locate(key).await {
                Err(why) => Step::Retry { why, backoff: true },
                Ok(info) => {
                    attempts += 1;
                    self.attempt(&info, attempts, &mut op).await?
                }
            };
            match step {
                Step::Done(v) => return Ok(v),
                Step::Retry { why, backoff: wait } => {
                    last = why;
                    if wait {
                        let left = deadline.saturating_duration_since(Instant::now());
                        tokio::time::sleep(backoff.min(left)).await;
                        backoff = (backoff * 2).min(self.opts.max_backoff);
                    }
                }
            }
        }
    }

    async fn attempt<T, F, Fut>(
        &mut self,
        info: &RegionInfo,
        attempt: usize,
        op: &mut F,
    ) -> Result<Step<T>, RemoteError>
    where
        F: FnMut(KvClient<Channel>, Context) -> Fut,
        Fut: std::future::Future<Output = Result<(Option<errorpb::Error>, T), tonic::Status>>,
    {
        let region = info.get_region();
        let peers = region.get_peers();
        let peer = if info.has_leader() {
            info.get_leader().clone()
        } else if peers.is_empty() {
            self.forget(region.get_id());
            return Ok(Step::Retry {
                why: format!("region {} has no peers", region.get_id()),
                backoff: true,
            });
        } else {
            peers[attempt % peers.len()].clone()
        };
        let Some(addr) = self.stores.get(&peer.get_store_id()).cloned() else {
            self.set_leader(region.get_id(), None);
            return Ok(Step::Retry {
                why: format!("store {} has no known address", peer.get_store_id()),
                backoff: true,
            });
        };
        let client = match self.client(&addr).await {
            Ok(c) => c,
            Err(why) => {
                self.set_leader(region.get_id(), None);
                return Ok(Step::Retry { why, backoff: true });
            }
        };
        let mut ctx = Context::default();
        ctx.set_region_id(region.get_id());
        ctx.set_region_epoch(region.get_region_epoch().clone());
        ctx.set_peer(peer.clone());
        let (err, value) = match op(client, ctx).await {
            Ok(answer) => answer,
            Err(status) => {
                // The connection may be gone with the store: forget it.
                self.clients.remove(&addr);
                self.set_leader(region.get_id(), None);
                return Ok(Step::Retry {
                    why: format!("{addr}: {}", status.message()),
                    backoff: true,
                });
            }
        };
        let Some(err) = err else {
            self.set_leader(region.get_id(), Some(peer));
            return Ok(Step::Done(value));
        };
        let why = err.get_message().to_owned();
        if err.has_not_leader() {
            let nl = err.get_not_leader();
            let hint =
                (nl.has_leader() && nl.get_leader().get_id() != 0).then(|| nl.get_leader().clone());
            let known = hint.is_some();
            self.set_leader(region.get_id(), hint);
            return Ok(Step::Retry {
                why,
                backoff: !known,
            });
        }
        if err.has_epoch_not_match() {
            self.forget(region.get_id());
            for r in err.get_epoch_not_match().get_current_regions() {
                let mut i = RegionInfo::default();
                i.set_region(r.clone());
                self.learn(i);
            }
            return Ok(Step::Retry {
                why,
                backoff: false,
            });
        }
        if err.has_raft_entry_too_large() || err.has_key_not_in_region() {
            return Err(RemoteError::Refused(why));
        }
        if err.has_region_not_found() || err.has_store_not_match() {
            self.forget(region.get_id());
        } else if !(err.has_server_is_busy() || err.has_stale_command()) {
            // Untyped: the outcome is unknown; ask someone else.
            self.set_leader(region.get_id(), None);
        }
        Ok(Step::Retry { why, backoff: true })
    }

    /// Writes `value` under `key`.
    ///
    /// # Errors
    ///
    /// See [`RemoteError`].
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), RemoteError> {
        self.run(key, |mut c, ctx| {
            let mut req = PutRequest::default();
            req.set_context(ctx);
            req.set_key(key.to_vec());
            req.set_value(value.to_vec());
            async move {
                let mut resp = c.put(req).await?.into_inner();
                Ok((
                    resp.has_region_error().then(|| resp.take_region_error()),
                    (),
                ))
            }
        })
        .await
    }

    /// Reads `key` (linearizable).
    ///
    /// # Errors
    ///
    /// See [`RemoteError`].
    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RemoteError> {
        self.run(key, |mut c, ctx| {
            let mut req = GetRequest::default();
            req.set_context(ctx);
            req.set_key(key.to_vec());
            async move {
                let mut resp = c.get(req).await?.into_inner();
                let value = (!resp.get_not_found()).then(|| resp.take_value());
                Ok((
                    resp.has_region_error().then(|| resp.take_region_error()),
                    value,
                ))
            }
        })
        .await
    }

    /// Removes `key`.
    ///
    /// # Errors
    ///
    /// See [`RemoteError`].
    pub async fn delete(&mut self, key: &[u8]) -> Result<(), RemoteError> {
        self.run(key, |mut c, ctx| {
            let mut req = DeleteRequest::default();
            req.set_context(ctx);
            req.set_key(key.to_vec());
            async move {
                let mut resp = c.delete(req).await?.into_inner();
                Ok((
                    resp.has_region_error().then(|| resp.take_region_error()),
                    (),
                ))
            }
        })
        .await
    }

    /// The pairs with `start <= key < end` (empty `end`: no bound), in key
    /// order, at most `limit` (0: all), region after region.
    ///
    /// # Errors
    ///
    /// See [`RemoteError`].
    pub async fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RemoteError> {
        let mut out = Vec::new();
        let mut cursor = start.to_vec();
        loop {
            let want = if limit == 0 {
                0
            } else {
                u32::try_from(limit - out.len()).unwrap_or(u32::MAX)
            };
            let (region, pairs, cap) = self
                .run(&cursor.clone(), |mut c, ctx| {
                    let mut req = ScanRequest::default();
                    req.set_context(ctx);
                    req.set_start_key(cursor.clone());
                    req.set_end_key(end.to_vec());
                    req.set_limit(want);
                    async move {
                        let mut resp = c.scan(req).await?.into_inner();
                        let err = resp.has_region_error().then(|| resp.take_region_error());
                        let cap = resp.get_limit() as usize;
                        Ok((err, (cap, resp.take_pairs().into_vec())))
                    }
                })
                .await
                .map(|(cap, pairs)| (self.region_of(&cursor), pairs, cap))?;
            let full = pairs.len() >= cap && cap > 0;
            let last = pairs.last().map(|p| p.get_key().to_vec());
            out.extend(
                pairs
                    .into_iter()
                    .map(|mut p| (p.take_key(), p.take_value())),
            );
            if limit != 0 && out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            cursor = match (full, last, region) {
                // More may follow in this region: continue after the last key.
                (true, Some(mut k), _) => {
                    k.push(0);
                    k
                }
                // The region is exhausted: continue in the next one.
                (_, _, Some(r)) => {
                    let region_end = r.get_end_key();
                    if region_end.is_empty() || (!end.is_empty() && region_end >= end) {
                        return Ok(out);
                    }
                    region_end.to_vec()
                }
                (_, _, None) => return Ok(out),
            };
        }
    }

    fn region_of(&self, key: &[u8]) -> Option<Region> {
        self.regions
            .iter()
            .map(|i| i.get_region())
            .find(|r| util::is_key_in_region(key, r))
            .cloned()
    }

    /// Every region of the cluster as the reachable stores report them:
    /// for each region the newest epoch and the leader of the highest term,
    /// by start key.
    ///
    /// # Errors
    ///
    /// [`RemoteError::NoEndpoint`] when no store answers.
    pub async fn regions(&mut self) -> Result<Vec<RegionInfo>, RemoteError> {
        let mut merged: HashMap<u64, RegionInfo> = HashMap::new();
        let mut answered = 0;
        let mut last = String::from("no store known");
        let mut stores: Vec<(u64, String)> =
            self.stores.iter().map(|(&i, a)| (i, a.clone())).collect();
        stores.sort_unstable();
        for (_, addr) in stores {
            let mut c = match self.client(&addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let resp = match c.list_regions(ListRegionsRequest::default()).await {
                Ok(r) => r.into_inner(),
                Err(s) => {
                    last = format!("{addr}: {}", s.message());
                    continue;
                }
            };
            answered += 1;
            for info in resp.get_regions() {
                let id = info.get_region().get_id();
                let slot = merged.entry(id).or_insert_with(|| info.clone());
                let (a, b) = (
                    info.get_region().get_region_epoch(),
                    slot.get_region().get_region_epoch(),
                );
                if (a.get_version(), a.get_conf_ver()) > (b.get_version(), b.get_conf_ver()) {
                    slot.set_region(info.get_region().clone());
                }
                if info.has_leader() && info.get_leader_term() >= slot.get_leader_term() {
                    slot.set_leader(info.get_leader().clone());
                    slot.set_leader_term(info.get_leader_term());
                }
            }
        }
        if answered == 0 {
            return Err(RemoteError::NoEndpoint {
                endpoints: self.stores.values().cloned().collect::<Vec<_>>().join(","),
                last,
            });
        }
        let mut list: Vec<RegionInfo> = merged.into_values().collect();
        list.sort_by(|a, b| {
            a.get_region()
                .get_start_key()
                .cmp(b.get_region().get_start_key())
        });
        Ok(list)
    }
}

/// Whether two key ranges overlap.
fn overlaps(a: &Region, b: &Region) -> bool {
    let a_before_b_ends = b.get_end_key().is_empty() || a.get_start_key() < b.get_end_key();
    let b_before_a_ends = a.get_end_key().is_empty() || b.get_start_key() < a.get_end_key();
    a_before_b_ends && b_before_a_ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
        let mut r = Region::default();
        r.set_id(id);
        r.set_start_key(start.to_vec());
        r.set_end_key(end.to_vec());
        r
    }

    #[test]
    fn ranges_overlap_unless_one_ends_before_the_other_starts() {
        assert!(overlaps(&region(1, b"", b""), &region(2, b"m", b"n")));
        assert!(overlaps(&region(1, b"a", b"m"), &region(2, b"l", b"")));
        assert!(!overlaps(&region(1, b"a", b"m"), &region(2, b"m", b"")));
        assert!(!overlaps(&region(1, b"m", b""), &region(2, b"", b"m")));
    }

    #[test]
    fn learning_a_region_replaces_the_overlapping_ones() {
        let mut kv = RemoteKv {
            opts: RemoteOptions::default(),
            stores: HashMap::new(),
            clients: HashMap::new(),
            regions: Vec::new(),
        };
        for r in [region(1, b"", b"m"), region(2, b"m", b"")] {
            let mut i = RegionInfo::default();
            i.set_region(r);
            kv.learn(i);
        }
        let mut split = RegionInfo::default();
        split.set_region(region(3, b"k", b"p"));
        kv.learn(split);
        let ids: Vec<u64> = kv.regions.iter().map(|i| i.get_region().get_id()).collect();
        assert_eq!(ids, [3]);
        assert_eq!(kv.region_of(b"l").unwrap().get_id(), 3);
        assert!(kv.region_of(b"a").is_none());
    }
}
