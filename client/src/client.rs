//! `Client`: a blocking key-value client, a thin driver of [`Call`] over a
//! [`Backend`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::{ReadMode, Request, Response};

use crate::backend::Backend;
use crate::call::{Call, Step};
use crate::error::Result;
use crate::options::ClientOptions;
use crate::region_cache::RegionCache;
use crate::request::{
    cas_outcome, compare_and_swap_request, delete_if_equal_request, delete_request, get_request,
    get_value, put_request, user_output, user_request, CasOutcome,
};
use crate::routing::Routing;
use crate::session::Session;

/// A key-value client of a cluster.
///
/// Keeps a cache of regions (key ranges and epochs) and of leaders; sends
/// each command to the believed leader; follows `NotLeader` hints,
/// refreshes regions on `EpochNotMatch`, backs off on `ServerIsBusy`,
/// `StaleCommand` and unknown leaders (see [`Call`] for every decision).
/// Each call blocks the calling thread until the operation is done.
///
/// Every write carries the client's session: a random client id and a
/// sequence number, one more for each write. Its retries (after timeouts,
/// unknown outcomes, refusals) repeat the sequence, and the store applies
/// the write at most once, answering repeats with the saved response. A
/// client's writes are therefore exactly-once as long as it issues them one
/// at a time, as this blocking client does.
pub struct Client {
    backend: Arc<dyn Backend>,
    routing: Routing,
    opts: ClientOptions,
    epoch: Instant,
    session: Session,
    /// Reads issued (spreads follower reads over the peers).
    reads: usize,
}

impl Client {
    /// A client over `backend` that starts from the given region list.
    pub fn new(backend: Arc<dyn Backend>, regions: Vec<Region>, opts: ClientOptions) -> Client {
        Client {
            backend,
            routing: Routing::new(RegionCache::new(regions)),
            opts,
            epoch: Instant::now(),
            session: Session::random(),
            reads: 0,
        }
    }

    /// The same client with the given session id (non-zero; 0 picks a
    /// random one). Two live clients must never share an id.
    pub fn with_client_id(mut self, client_id: u64) -> Client {
        self.session = Session::new(client_id);
        self
    }

    /// The id this client's writes carry in their session.
    pub fn client_id(&self) -> u64 {
        self.session.client_id()
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
        self.get_with(key, ReadMode::Log)
    }

    /// Reads `key` served as `mode` says (every mode is linearizable; see
    /// [`ReadMode`]).
    ///
    /// # Errors
    ///
    /// See [`ClientError`](crate::ClientError).
    pub fn get_with(&mut self, key: &[u8], mode: ReadMode) -> Result<Option<Vec<u8>>> {
        get_value(self.run(key, get_request(key.to_vec()), mode)?)
    }

    /// Writes `value` under `key` if the key holds `expected` (`None`: if it
    /// has no value); reports whether it did and the previous value.
    ///
    /// # Errors
    ///
    /// See [`ClientError`](crate::ClientError).
    pub fn compare_and_swap(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<CasOutcome> {
        let req =
            compare_and_swap_request(key.to_vec(), expected.map(|e| e.to_vec()), value.to_vec());
        cas_outcome(self.execute(key, req)?)
    }

    /// Deletes `key` if it holds `expected`; reports whether it did and the
    /// previous value.
    ///
    /// # Errors
    ///
    /// See [`ClientError`](crate::ClientError).
    pub fn delete_if_equal(&mut self, key: &[u8], expected: &[u8]) -> Result<CasOutcome> {
        cas_outcome(self.execute(
            key,
            delete_if_equal_request(key.to_vec(), expected.to_vec()),
        )?)
    }

    /// Runs the user command handler registered as `name` with `input` in
    /// the region of `key`, and returns its output.
    ///
    /// # Errors
    ///
    /// [`ClientError::Command`](crate::ClientError::Command) if the handler
    /// failed; otherwise see [`ClientError`](crate::ClientError).
    pub fn user_command(&mut self, key: &[u8], name: &str, input: &[u8]) -> Result<Vec<u8>> {
        user_output(self.execute(key, user_request(name, input.to_vec()))?)
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
    /// A write (anything but a Get) carries the client's session with a new
    /// sequence number.
    pub fn execute(&mut self, key: &[u8], request: Request) -> Result<Response> {
        self.run(key, request, ReadMode::Log)
    }

    fn run(&mut self, key: &[u8], request: Request, mode: ReadMode) -> Result<Response> {
        let started = self.now();
        if request.get_cmd_type() == kvproto_lite::raft_cmdpb::CmdType::Get {
            self.reads = self.reads.wrapping_add(1);
        }
        let mut call = Call::for_request(
            key.to_vec(),
            request,
            mode,
            self.reads,
            &mut self.session,
            started,
            &self.opts,
        );
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
