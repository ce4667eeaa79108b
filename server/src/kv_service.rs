//! [`KvService`]: the client-to-store requests of `kvrpcpb`, served over
//! raftstore's command path and the store's KV engine.
//!
//! Point reads and writes become one `RaftCmdRequest` for the region named
//! in the request's `Context` (several requests in one command for
//! `BatchGet` and `BatchPut`, so they apply atomically at one log
//! position), sent to the region's peer on this store through its
//! [`CommandSink`]; raftstore answers every command exactly once, and its
//! errors (`NotLeader`, `EpochNotMatch`, ...) travel back unchanged in
//! `region_error`.
//!
//! Writes (`Put`, `Delete`, `BatchPut`, `CompareAndSwap`, `DeleteIfEqual`)
//! carry the client's session from the `Context` (`client_id`, `sequence`)
//! into the command header, so apply runs a retried write at most once and
//! answers the retry with the saved response. Reads (`Get`, `BatchGet`,
//! `Scan`) carry their `read_mode` into the header instead (and never a
//! session: they change nothing).
//!
//! A `Scan` reads the KV engine directly, after a read in the request's read
//! mode (through the Raft log, a read index, the leader's lease, or a
//! follower's read index) proves that this store has applied every write
//! acknowledged before the scan arrived:
//!
//! ```text
//! 1. region r0 as this store applied it; the client's epoch version must
//!    equal r0's (else EpochNotMatch / "not applied yet")
//! 2. clamp [start, end) to r0's range
//! 3. Get(start) in the read mode: this peer (the leader, or a follower for
//!    a Follower scan) has applied everything committed before the read
//! 4. take an engine snapshot, scan [start, end) up to the limit
//! 5. region r1 as applied now: if its version moved (a split applied in
//!    between), answer EpochNotMatch instead of a possibly mixed result
//! ```
//!
//! Step 5 is what keeps a scan linearizable across a split: a write to the
//! split-off half can only be acknowledged after the split is applied, and
//! a snapshot that contains any write after the split also contains the
//! split itself.

use std::sync::Arc;

use batch_system::mpsc::TrySendError;
use engine::{KvEngine, KvSnapshot};
use kvproto_lite::errorpb;
use kvproto_lite::kvrpcpb::{
    AddStoreRequest, AddStoreResponse, AdminCommandRequest, AdminCommandResponse,
    BatchCommandsRequest, BatchCommandsResponse, BatchGetRequest, BatchGetResponse,
    BatchPutRequest, BatchPutResponse, CompareAndSwapRequest, CompareAndSwapResponse, Context,
    DeleteIfEqualRequest, DeleteIfEqualResponse, DeleteRequest, DeleteResponse, GetRegionRequest,
    GetRegionResponse, GetRequest, GetResponse, GetStoresRequest, GetStoresResponse, KvPair,
    ListRegionsRequest, ListRegionsResponse, PutRequest, PutResponse, RegionInfo, ScanRequest,
    ScanResponse,
};
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::{
    AdminCmdType, CmdType, CompareAndSwapResponse as CasResult, RaftCmdRequest, RaftCmdResponse,
    ReadMode, Request, Response,
};
use kvproto_lite::raft_serverpb::PeerState;
use kvproto_lite::util;
use raftstore::{Callback, CommandSink, RaftCommand, StoreMeta};
use tokio::sync::oneshot;

use crate::address::AddressBook;

/// What the KV service needs from a running store.
pub struct KvService<EK: KvEngine> {
    store_id: u64,
    sink: Arc<dyn CommandSink>,
    kv: EK,
    meta: Arc<StoreMeta>,
    book: AddressBook,
    cluster_id: u64,
    max_scan_limit: u32,
    max_batch_commands: usize,
}

/// The outcome of one command: the responses, in request order, or the
/// store's error.
type CmdResult = Result<Vec<Response>, errorpb::Error>;

impl<EK: KvEngine> KvService<EK> {
    /// The service of store `store_id`: commands go to `sink` (the store's
    /// router), scans and region lookups read `kv`, leaders come from
    /// `meta`, `GetStores` answers from `book`; the limits (most pairs per
    /// scan, most commands per batch) come from `cfg`.
    pub fn new(
        store_id: u64,
        sink: Arc<dyn CommandSink>,
        kv: EK,
        meta: Arc<StoreMeta>,
        book: AddressBook,
        cfg: &crate::Config,
    ) -> KvService<EK> {
        KvService {
            store_id,
            sink,
            kv,
            meta,
            book,
            cluster_id: 0,
            max_scan_limit: cfg.max_scan_limit.max(1),
            max_batch_commands: cfg.max_batch_commands.max(1),
        }
    }

    /// The same service answering `GetStores` with `cluster_id`.
    pub fn with_cluster_id(mut self, cluster_id: u64) -> KvService<EK> {
        self.cluster_id = cluster_id;
        self
    }

    /// Sends `cmd` to its region's peer; the receiver gets the response
    /// (refusals included, as error responses).
    fn send(&self, cmd: RaftCmdRequest) -> oneshot::Receiver<RaftCmdResponse> {
        let region_id = cmd.get_header().get_region_id();
        let (tx, rx) = oneshot::channel();
        let cb = Callback::new(move |resp| {
            let _ = tx.send(resp);
        });
        match self.sink.send_command(RaftCommand::new(cmd, cb)) {
            Ok(()) => {}
            Err(TrySendError::Full(c)) => c.callback.invoke_with_error(
                util::new_server_is_busy(&format!("mailbox of region {region_id} is full")),
                0,
            ),
            Err(TrySendError::Disconnected(c)) => c
                .callback
                .invoke_with_error(util::new_region_not_found(region_id), 0),
        }
        rx
    }

    /// Sends `cmd` to its region's peer and waits for the answer.
    async fn submit(&self, cmd: RaftCmdRequest) -> CmdResult {
        let expected = cmd.get_requests().len();
        let mut resp = answer(self.send(cmd)).await;
        if resp.get_header().has_error() {
            return Err(resp.mut_header().take_error());
        }
        let responses = resp.take_responses().into_vec();
        if responses.len() != expected {
            return Err(util::new_error(format!(
                "malformed answer: {} responses to {expected} requests",
                responses.len()
            )));
        }
        Ok(responses)
    }

    /// `Kv.BatchCommands`: every command is sent at once, then the answers
    /// are collected in order. Administrative commands, commands without a
    /// request and batches over `max_batch_commands` are refused (the
    /// refused commands' responses carry the error; nothing is sent).
    pub async fn batch_commands(&self, mut req: BatchCommandsRequest) -> BatchCommandsResponse {
        let commands = req.take_commands().into_vec();
        metrics::counter!("kv_batched_commands_total").increment(commands.len() as u64);
        let mut resp = BatchCommandsResponse::default();
        if commands.len() > self.max_batch_commands {
            let err = util::new_error(format!(
                "a batch of {} commands exceeds the limit of {}",
                commands.len(),
                self.max_batch_commands
            ));
            for _ in &commands {
                resp.mut_responses()
                    .push(util::error_response(err.clone(), 0));
            }
            return resp;
        }
        // Everything is sent before the first answer is awaited, so the
        // commands run concurrently; a refused one is answered at once.
        let pending: Vec<Pending> = commands
            .into_iter()
            .map(|cmd| {
                if cmd.has_admin_request() {
                    Pending::Refused("administrative commands are not accepted from clients")
                } else if cmd.get_requests().is_empty() {
                    Pending::Refused("a command without requests")
                } else {
                    Pending::Sent(self.send(cmd))
                }
            })
            .collect();
        for p in pending {
            resp.mut_responses().push(match p {
                Pending::Sent(rx) => answer(rx).await,
                Pending::Refused(why) => util::error_response(util::new_error(why), 0),
            });
        }
        resp
    }

    /// `Kv.Get`.
    pub async fn get(&self, mut req: GetRequest) -> GetResponse {
        let mut resp = GetResponse::default();
        let get = get_request(req.take_key());
        let cmd = read_command(req.get_context(), vec![get], req.get_read_mode());
        match self.submit(cmd).await {
            Ok(mut r) => match r.pop() {
                Some(mut r) if r.get_cmd_type() == CmdType::Get => {
                    let mut get = r.take_get();
                    if get.get_not_found() {
                        resp.set_not_found(true);
                    } else {
                        resp.set_value(get.take_value());
                    }
                }
                _ => resp.set_region_error(util::new_error("malformed answer to a Get")),
            },
            Err(e) => resp.set_region_error(e),
        }
        resp
    }

    /// `Kv.Put`.
    pub async fn put(&self, mut req: PutRequest) -> PutResponse {
        let mut resp = PutResponse::default();
        let put = put_request(req.take_key(), req.take_value());
        let cmd = write_command(req.get_context(), vec![put]);
        if let Err(e) = self.submit(cmd).await {
            resp.set_region_error(e);
        }
        resp
    }

    /// `Kv.Delete`.
    pub async fn delete(&self, mut req: DeleteRequest) -> DeleteResponse {
        let mut resp = DeleteResponse::default();
        let mut del = Request::default();
        del.set_cmd_type(CmdType::Delete);
        del.mut_delete().set_key(req.take_key());
        if let Err(e) = self
            .submit(write_command(req.get_context(), vec![del]))
            .await
        {
            resp.set_region_error(e);
        }
        resp
    }

    /// `Kv.BatchGet`: one command with one Get per key.
    pub async fn batch_get(&self, mut req: BatchGetRequest) -> BatchGetResponse {
        let mut resp = BatchGetResponse::default();
        let keys = req.take_keys().into_vec();
        if keys.is_empty() {
            return resp;
        }
        let requests = keys.iter().map(|k| get_request(k.clone())).collect();
        let cmd = read_command(req.get_context(), requests, req.get_read_mode());
        match self.submit(cmd).await {
            Ok(responses) => {
                for (key, mut r) in keys.into_iter().zip(responses) {
                    if r.get_cmd_type() != CmdType::Get {
                        resp.clear_pairs();
                        resp.set_region_error(util::new_error("malformed answer to a BatchGet"));
                        return resp;
                    }
                    let mut get = r.take_get();
                    if !get.get_not_found() {
                        resp.mut_pairs().push(pair(key, get.take_value()));
                    }
                }
            }
            Err(e) => resp.set_region_error(e),
        }
        resp
    }

    /// `Kv.BatchPut`: one command with one Put per pair (atomic).
    pub async fn batch_put(&self, mut req: BatchPutRequest) -> BatchPutResponse {
        let mut resp = BatchPutResponse::default();
        let pairs = req.take_pairs().into_vec();
        if pairs.is_empty() {
            return resp;
        }
        let requests = pairs
            .into_iter()
            .map(|mut p| put_request(p.take_key(), p.take_value()))
            .collect();
        if let Err(e) = self
            .submit(write_command(req.get_context(), requests))
            .await
        {
            resp.set_region_error(e);
        }
        resp
    }

    /// `Kv.CompareAndSwap`: one CompareAndSwap command.
    pub async fn compare_and_swap(&self, mut req: CompareAndSwapRequest) -> CompareAndSwapResponse {
        let mut resp = CompareAndSwapResponse::default();
        let mut r = Request::default();
        r.set_cmd_type(CmdType::CompareAndSwap);
        let cas = r.mut_cas();
        cas.set_key(req.take_key());
        cas.set_expected(req.take_expected());
        cas.set_expected_absent(req.get_expected_absent());
        cas.set_value(req.take_value());
        match self.conditional(req.get_context(), r).await {
            Ok(mut c) => {
                resp.set_succeeded(c.get_succeeded());
                resp.set_previous(c.take_previous());
                resp.set_previous_not_found(c.get_previous_not_found());
            }
            Err(e) => resp.set_region_error(e),
        }
        resp
    }

    /// `Kv.DeleteIfEqual`: one DeleteIfEqual command.
    pub async fn delete_if_equal(&self, mut req: DeleteIfEqualRequest) -> DeleteIfEqualResponse {
        let mut resp = DeleteIfEqualResponse::default();
        let mut r = Request::default();
        r.set_cmd_type(CmdType::DeleteIfEqual);
        r.mut_delete_if_equal().set_key(req.take_key());
        r.mut_delete_if_equal().set_expected(req.take_expected());
        match self.conditional(req.get_context(), r).await {
            Ok(mut c) => {
                resp.set_succeeded(c.get_succeeded());
                resp.set_previous(c.take_previous());
                resp.set_previous_not_found(c.get_previous_not_found());
            }
            Err(e) => resp.set_region_error(e),
        }
        resp
    }

    /// Runs a conditional write (`request`) as a write of `ctx`'s session
    /// and returns its outcome.
    async fn conditional(
        &self,
        ctx: &Context,
        request: Request,
    ) -> Result<CasResult, errorpb::Error> {
        let kind = request.get_cmd_type();
        let mut responses = self.submit(write_command(ctx, vec![request])).await?;
        match responses.pop() {
            Some(mut r) if r.get_cmd_type() == kind => Ok(r.take_cas()),
            _ => Err(util::new_error(format!("malformed answer to a {kind:?}"))),
        }
    }

    /// `Kv.Scan`: see the module docs for why the answer is linearizable.
    pub async fn scan(&self, req: ScanRequest) -> ScanResponse {
        let mut resp = ScanResponse::default();
        let limit = match req.get_limit() {
            0 => self.max_scan_limit,
            n => n.min(self.max_scan_limit),
        };
        resp.set_limit(limit);
        match self.scan_pairs(req, limit as usize).await {
            Ok(pairs) => resp.set_pairs(pairs.into()),
            Err(e) => resp.set_region_error(e),
        }
        resp
    }

    async fn scan_pairs(
        &self,
        req: ScanRequest,
        limit: usize,
    ) -> Result<Vec<KvPair>, errorpb::Error> {
        let ctx = req.get_context().clone();
        let region_id = ctx.get_region_id();
        let version = ctx.get_region_epoch().get_version();
        let r0 = self
            .blocking(move |s| s.local_region(region_id))
            .await?
            .ok_or_else(|| util::new_region_not_found(region_id))?;
        let local = r0.get_region_epoch().get_version();
        if version > local {
            return Err(util::new_server_is_busy(&format!(
                "store {} has not applied version {version} of region {region_id} yet (at {local})",
                self.store_id
            )));
        }
        if version < local {
            return Err(self.epoch_not_match(r0, version).await);
        }
        let (start, end) = clamp(req.get_start_key(), req.get_end_key(), &r0);
        if !end.is_empty() && start >= end {
            return Ok(Vec::new());
        }
        // The read in the request's mode (step 3).
        let mode = req.get_read_mode();
        self.submit(read_command(&ctx, vec![get_request(start.clone())], mode))
            .await?;
        let (pairs, r1) = self
            .blocking(move |s| {
                let snap = s.kv.snapshot();
                // Session records (reserved keys inside the region) are the
                // store's own: skipped, and the scan goes on past them.
                let mut pairs = Vec::new();
                let mut cursor = start.clone();
                loop {
                    let want = limit.saturating_sub(pairs.len());
                    let got = snap.scan(&cursor, &end, want)?;
                    let full = got.len() == want;
                    if let Some((last, _)) = got.last() {
                        cursor = last.clone();
                        cursor.push(0);
                    }
                    pairs.extend(
                        got.into_iter()
                            .filter(|(k, _)| !raftstore::is_reserved_key(k)),
                    );
                    if !full || pairs.len() >= limit {
                        break;
                    }
                }
                let r1 = s.local_region(region_id)?;
                Ok((pairs, r1))
            })
            .await?;
        match r1 {
            Some(r1) if r1.get_region_epoch().get_version() == version => {
                Ok(pairs.into_iter().map(|(k, v)| pair(k, v)).collect())
            }
            Some(r1) => Err(self.epoch_not_match(r1, version).await),
            None => Err(util::new_region_not_found(region_id)),
        }
    }

    /// `EpochNotMatch` with `region` and the region right after it on this
    /// store (the other half of a split, usually).
    async fn epoch_not_match(&self, region: Region, version: u64) -> errorpb::Error {
        let reason = format!(
            "request version {version}, region {} is at version {}",
            region.get_id(),
            region.get_region_epoch().get_version()
        );
        let end = region.get_end_key().to_vec();
        let mut current = vec![region];
        if !end.is_empty() {
            if let Ok(regions) = self.blocking(|s| s.local_regions()).await {
                current.extend(regions.into_iter().find(|r| r.get_start_key() == end));
            }
        }
        util::new_epoch_not_match(reason, current)
    }

    /// `Kv.GetRegion`.
    pub async fn get_region(&self, req: GetRegionRequest) -> GetRegionResponse {
        let mut resp = GetRegionResponse::default();
        let key = req.get_key().to_vec();
        match self.blocking(|s| s.local_regions()).await {
            Ok(regions) => match regions
                .into_iter()
                .find(|r| util::is_key_in_region(&key, r))
            {
                Some(region) => resp.set_region(self.region_info(region)),
                None => resp.set_region_error(util::new_error(format!(
                    "no region on store {} holds key {:?}",
                    self.store_id,
                    String::from_utf8_lossy(&key)
                ))),
            },
            Err(e) => resp.set_region_error(e),
        }
        resp
    }

    /// `Kv.ListRegions`.
    pub async fn list_regions(&self, _req: ListRegionsRequest) -> ListRegionsResponse {
        let mut resp = ListRegionsResponse::default();
        if let Ok(regions) = self.blocking(|s| s.local_regions()).await {
            for region in regions {
                resp.mut_regions().push(self.region_info(region));
            }
        }
        resp
    }

    /// `Kv.GetStores`.
    pub async fn get_stores(&self, _req: GetStoresRequest) -> GetStoresResponse {
        let mut resp = GetStoresResponse::default();
        resp.set_store_id(self.store_id);
        resp.set_stores(self.book.stores().into());
        resp.set_cluster_id(self.cluster_id);
        resp
    }

    /// `Kv.AdminCommand`: a membership change (`ChangePeer`,
    /// `ChangePeerV2`) or a leadership transfer, sent to the region's peer
    /// on this store; any other command is refused without being sent.
    pub async fn admin_command(&self, mut req: AdminCommandRequest) -> AdminCommandResponse {
        let mut resp = AdminCommandResponse::default();
        let cmd = req.take_command();
        let allowed = cmd.has_admin_request()
            && cmd.get_requests().is_empty()
            && matches!(
                cmd.get_admin_request().get_cmd_type(),
                AdminCmdType::ChangePeer
                    | AdminCmdType::ChangePeerV2
                    | AdminCmdType::TransferLeader
            );
        resp.set_response(if allowed {
            answer(self.send(cmd)).await
        } else {
            util::error_response(
                util::new_error(
                    "AdminCommand accepts ChangePeer, ChangePeerV2 and TransferLeader commands only",
                ),
                0,
            )
        });
        resp
    }

    /// `Kv.AddStore`: registers the store in the address book (durably,
    /// when the book has a persister; see [`AddressBook::register`]).
    pub async fn add_store(&self, req: AddStoreRequest) -> AddStoreResponse {
        let mut resp = AddStoreResponse::default();
        let store = req.get_store();
        let book = self.book.clone();
        let (id, addr) = (store.get_id(), store.get_address().to_owned());
        // Persisting syncs a file: off the async workers.
        let outcome = tokio::task::spawn_blocking(move || book.register(id, addr)).await;
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => resp.set_error(util::new_error(e.to_string())),
            Err(e) => resp.set_error(util::new_error(format!("registration did not finish: {e}"))),
        }
        resp.set_stores(self.book.stores().into());
        resp
    }

    /// `region` with the leader this store knows.
    fn region_info(&self, region: Region) -> RegionInfo {
        let mut info = RegionInfo::default();
        if let Some(l) = self.meta.leader_info(region.get_id()) {
            if let Some(p) = region
                .get_peers()
                .iter()
                .find(|p| p.get_id() == l.leader_id)
            {
                info.set_leader(p.clone());
                info.set_leader_term(l.term);
            }
        }
        info.set_region(region);
        info
    }

    /// Runs engine reads off the async workers.
    async fn blocking<T, F>(&self, f: F) -> Result<T, errorpb::Error>
    where
        F: FnOnce(&LocalView<EK>) -> engine::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let view = LocalView {
            store_id: self.store_id,
            kv: self.kv.clone(),
        };
        match tokio::task::spawn_blocking(move || f(&view)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(util::new_error(format!("engine read failed: {e}"))),
            Err(e) => Err(util::new_error(format!("engine read did not finish: {e}"))),
        }
    }
}

/// What engine reads off the async workers see: the store's KV engine.
struct LocalView<EK> {
    store_id: u64,
    kv: EK,
}

impl<EK: KvEngine> LocalView<EK> {
    /// The region `region_id` as this store last applied it, if it has a
    /// live peer of it.
    fn local_region(&self, region_id: u64) -> engine::Result<Option<Region>> {
        Ok(self
            .kv
            .get_region_state(region_id)?
            .filter(|s| s.get_state() == PeerState::Normal)
            .map(|mut s| s.take_region())
            .filter(|r| util::find_peer(r, self.store_id).is_some()))
    }

    /// Every region with a live peer on this store, by start key.
    fn local_regions(&self) -> engine::Result<Vec<Region>> {
        store_regions(&self.kv, self.store_id)
    }
}

/// Every region with a live peer of store `store_id`, as the store last
/// applied it (from the KV engine's region states), by start key.
///
/// # Errors
///
/// The engine's read error.
pub fn store_regions<EK: KvEngine>(kv: &EK, store_id: u64) -> engine::Result<Vec<Region>> {
    let mut regions: Vec<Region> = kv
        .region_states()?
        .into_iter()
        .filter(|s| s.get_state() == PeerState::Normal)
        .map(|mut s| s.take_region())
        .filter(|r| util::find_peer(r, store_id).is_some())
        .collect();
    regions.sort_by(|a, b| a.get_start_key().cmp(b.get_start_key()));
    Ok(regions)
}

/// A command of a batch: sent (its answer to come) or refused.
enum Pending {
    Sent(oneshot::Receiver<RaftCmdResponse>),
    Refused(&'static str),
}

/// The response `rx` brings. A callback is always called (dropped
/// unanswered, it answers with an error itself), so the channel only closes
/// without a value if that guarantee is broken: outcome unknown.
async fn answer(rx: oneshot::Receiver<RaftCmdResponse>) -> RaftCmdResponse {
    rx.await.unwrap_or_else(|_| {
        util::error_response(
            util::new_error("the store dropped the command: outcome unknown"),
            0,
        )
    })
}

/// A command for the region of `ctx` with `requests`.
fn command(ctx: &Context, requests: Vec<Request>) -> RaftCmdRequest {
    let mut cmd = RaftCmdRequest::default();
    let header = cmd.mut_header();
    header.set_region_id(ctx.get_region_id());
    header.set_peer(ctx.get_peer().clone());
    header.set_region_epoch(ctx.get_region_epoch().clone());
    cmd.set_requests(requests.into());
    cmd
}

/// A write command for the region of `ctx`, carrying `ctx`'s session (if
/// any): apply runs it at most once per (client, sequence).
fn write_command(ctx: &Context, requests: Vec<Request>) -> RaftCmdRequest {
    let mut cmd = command(ctx, requests);
    if ctx.get_client_id() != 0 {
        let header = cmd.mut_header();
        header.set_client_id(ctx.get_client_id());
        header.set_sequence(ctx.get_sequence());
    }
    cmd
}

/// A read command for the region of `ctx`, served as `mode` says (the
/// context's session, meaningless for a read, is left out).
fn read_command(ctx: &Context, requests: Vec<Request>, mode: ReadMode) -> RaftCmdRequest {
    let mut cmd = command(ctx, requests);
    cmd.mut_header().set_read_mode(mode);
    cmd
}

fn get_request(key: Vec<u8>) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::Get);
    r.mut_get().set_key(key);
    r
}

fn put_request(key: Vec<u8>, value: Vec<u8>) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::Put);
    r.mut_put().set_key(key);
    r.mut_put().set_value(value);
    r
}

fn pair(key: Vec<u8>, value: Vec<u8>) -> KvPair {
    let mut p = KvPair::default();
    p.set_key(key);
    p.set_value(value);
    p
}

/// `[start, end)` cut to the region's range (empty `end` = unbounded).
fn clamp(start: &[u8], end: &[u8], region: &Region) -> (Vec<u8>, Vec<u8>) {
    let start = start.max(region.get_start_key()).to_vec();
    let region_end = region.get_end_key();
    let end = if end.is_empty() {
        region_end.to_vec()
    } else if region_end.is_empty() {
        end.to_vec()
    } else {
        end.min(region_end).to_vec()
    };
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: &[u8], end: &[u8]) -> Region {
        let mut r = Region::default();
        r.set_start_key(start.to_vec());
        r.set_end_key(end.to_vec());
        r
    }

    #[test]
    fn writes_carry_the_session_and_reads_the_read_mode() {
        let mut ctx = Context::default();
        ctx.set_region_id(3);
        ctx.set_client_id(11);
        ctx.set_sequence(4);
        let w = write_command(&ctx, vec![put_request(b"k".to_vec(), b"v".to_vec())]);
        let h = w.get_header();
        assert_eq!(
            (h.get_region_id(), h.get_client_id(), h.get_sequence()),
            (3, 11, 4)
        );
        assert_eq!(h.get_read_mode(), ReadMode::Log);
        let r = read_command(&ctx, vec![get_request(b"k".to_vec())], ReadMode::Follower);
        let h = r.get_header();
        assert_eq!((h.get_client_id(), h.get_sequence()), (0, 0));
        assert_eq!(h.get_read_mode(), ReadMode::Follower);
        ctx.set_client_id(0);
        let w = write_command(&ctx, vec![put_request(b"k".to_vec(), b"v".to_vec())]);
        assert_eq!(w.get_header().get_sequence(), 0, "no session, no sequence");
    }

    #[test]
    fn clamping_keeps_the_part_inside_the_region() {
        let r = region(b"c", b"m");
        assert_eq!(clamp(b"a", b"", &r), (b"c".to_vec(), b"m".to_vec()));
        assert_eq!(clamp(b"d", b"f", &r), (b"d".to_vec(), b"f".to_vec()));
        assert_eq!(clamp(b"d", b"z", &r), (b"d".to_vec(), b"m".to_vec()));
        let open = region(b"", b"");
        assert_eq!(clamp(b"", b"", &open), (Vec::new(), Vec::new()));
        assert_eq!(
            clamp(b"x", b"", &region(b"", b"k")),
            (b"x".to_vec(), b"k".to_vec())
        );
    }
}
