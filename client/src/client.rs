//! `Client`: a blocking key-value client, a thin driver of [`Call`] over a
//! [`Backend`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::{Request, Response};

use crate::backend::Backend;
use crate::call::{Call, Step};
use crate::error::Result;
use crate::options::ClientOptions;
use crate::region_cache::RegionCache;
use crate::request::{delete_request, get_request, get_value, put_request};
use crate::routing::Routing;

/// A key-value client of a cluster.
///
/// Keeps a cache of regions (key ranges and epochs) and of leaders; sends
/// each command to the believed leader; follows `NotLeader` hints,
/// refreshes regions on `EpochNotMatch`, backs off on `ServerIsBusy`,
/// `StaleCommand` and unknown leaders (see [`Call`] for every decision).
/// Each call blocks the calling thread until the operation is done.
pub struct Client {
    backend: Arc<dyn Backend>,
    routing: Routing,
    opts: ClientOptions,
    epoch: Instant,
}

impl Client {
    /// A client over `backend` that starts from the given region list.
    pub fn new(backend: Arc<dyn Backend>, regions: Vec<Region>, opts: ClientOptions) -> Client {
        Client {
            backend,
            routing: Routing::new(RegionCache::new(regions)),
            opts,
            epoch: Instant::now(),
        }
    }

    /// Writes `value` under `key`.
    ///
    /// # Errors
    ///
    /// See [`ClientError`](crate::ClientError).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.execute(key, put_request(key.to_vec(), value.to_vec()))
            .map(|_| ())
    }

    /// Reads `key` through the raft log (linearizable).
    ///
    /// # Errors
    ///
    /// See [`ClientError`](crate::ClientError).
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get_value(self.execute(key, get_request(key.to_vec()))?)
    }

    /// Deletes `key`.
    ///
    /// # Errors
    ///
    /// See [`ClientError`](crate::ClientError).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.execute(key, delete_request(key.to_vec())).map(|_| ())
    }

    /// The region the client believes covers `key`.
    pub fn region_for(&self, key: &[u8]) -> Option<&Region> {
        self.routing.regions().locate(key)
    }

    /// The client's routing state (regions and leaders it believes in).
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Runs one request on the region of `key`, with retries.
    ///
    /// # Errors
    ///
    /// See [`ClientError`](crate::ClientError).
    pub fn execute(&mut self, key: &[u8], request: Request) -> Result<Response> {
        let started = self.now();
        let mut call = Call::new(key.to_vec(), request, started, &self.opts);
        let mut step = call.start(&mut self.routing, started);
        loop {
            step = match step {
                Step::Send {
                    attempt,
                    store_id,
                    command,
                } => {
                    let answer = self
                        .backend
                        .call(store_id, command, self.opts.attempt_timeout);
                    let now = self.now();
                    call.on_answer(&mut self.routing, attempt, answer, now)
                }
                Step::Wait { until } => {
                    std::thread::sleep(until.saturating_sub(self.now()));
                    let now = self.now();
                    call.on_wake(&mut self.routing, now)
                }
                Step::Done(result) => return result,
            };
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}
