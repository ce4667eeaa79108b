//! Test kit: building regions, commands and entries; a test engine that can
//! fail or count writes; a driver that runs the apply poller by hand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use apply::{
    Apply, ApplyBatchSystem, ApplyFsm, ApplyMsg, ApplyPoller, ApplyRes, Callback, Config, Proposal,
    Registration,
};
use batch_system::mpsc::LooseBoundedSender;
use batch_system::PollHandler;
use engine::{KvEngine, MemKvEngine};
use kvproto_lite::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};
use kvproto_lite::metapb::{Peer, PeerRole, Region, RegionEpoch};
use kvproto_lite::raft_cmdpb::{
    AdminCmdType, AdminRequest, CmdType, RaftCmdRequest, RaftCmdResponse, Request,
};
use kvproto_lite::raft_serverpb::{RaftApplyState, RaftTruncatedState, RegionLocalState};
use protobuf::Message;

pub fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Region `id` covering `[start, end)` with peers (id, store) = (id*10+i, i)
/// for i in 1..=3, epoch (1, 1).
pub fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
    let mut r = Region::default();
    r.set_id(id);
    r.set_start_key(start.to_vec());
    r.set_end_key(end.to_vec());
    r.set_region_epoch(epoch(1, 1));
    for i in 1..=3 {
        r.mut_peers().push(peer(id * 10 + i, i));
    }
    r
}

pub fn epoch(conf_ver: u64, version: u64) -> RegionEpoch {
    let mut e = RegionEpoch::default();
    e.set_conf_ver(conf_ver);
    e.set_version(version);
    e
}

pub fn peer(id: u64, store_id: u64) -> Peer {
    let mut p = Peer::default();
    p.set_id(id);
    p.set_store_id(store_id);
    p
}

/// The registration of `region`'s first peer with an initial state.
pub fn registration(region: &Region) -> Registration {
    let mut apply_state = RaftApplyState::default();
    apply_state.set_truncated_state(RaftTruncatedState::default());
    Registration {
        peer_id: region.get_peers()[0].get_id(),
        region: region.clone(),
        apply_state,
        applied_term: 0,
    }
}

/// The registration a restarted store builds from what the engine holds.
pub fn registration_from_engine<K: KvEngine>(kv: &K, region_id: u64, peer_id: u64) -> Registration {
    let region_state: RegionLocalState = kv.get_region_state(region_id).unwrap().unwrap();
    let apply_state = kv.get_apply_state(region_id).unwrap().unwrap_or_default();
    Registration {
        peer_id,
        region: region_state.get_region().clone(),
        applied_term: if apply_state.get_applied_index() == 0 {
            0
        } else {
            1
        },
        apply_state,
    }
}

/// The applied index stored in `kv` for `region_id` (the test fails if
/// there is no apply state).
pub fn persisted_applied<K: KvEngine>(kv: &K, region_id: u64) -> u64 {
    kv.get_apply_state(region_id)
        .unwrap()
        .expect("apply state is stored")
        .get_applied_index()
}

pub fn header(cmd: &mut RaftCmdRequest, region: &Region) {
    cmd.mut_header().set_region_id(region.get_id());
    cmd.mut_header()
        .set_region_epoch(region.get_region_epoch().clone());
}

pub fn put_req(key: &[u8], value: &[u8]) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::Put);
    r.mut_put().set_key(key.to_vec());
    r.mut_put().set_value(value.to_vec());
    r
}

pub fn delete_req(key: &[u8]) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::Delete);
    r.mut_delete().set_key(key.to_vec());
    r
}

pub fn get_req(key: &[u8]) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::Get);
    r.mut_get().set_key(key.to_vec());
    r
}

pub fn cmd(region: &Region, requests: Vec<Request>) -> RaftCmdRequest {
    let mut c = RaftCmdRequest::default();
    header(&mut c, region);
    for r in requests {
        c.mut_requests().push(r);
    }
    c
}

pub fn admin_cmd(region: &Region, admin: AdminRequest) -> RaftCmdRequest {
    let mut c = RaftCmdRequest::default();
    header(&mut c, region);
    c.set_admin_request(admin);
    c
}

pub fn compact_log(index: u64, term: u64) -> AdminRequest {
    let mut a = AdminRequest::default();
    a.set_cmd_type(AdminCmdType::CompactLog);
    a.mut_compact_log().set_compact_index(index);
    a.mut_compact_log().set_compact_term(term);
    a
}

pub fn split(key: &[u8], new_region_id: u64, new_peer_ids: Vec<u64>) -> AdminRequest {
    let mut a = AdminRequest::default();
    a.set_cmd_type(AdminCmdType::Split);
    a.mut_split().set_split_key(key.to_vec());
    a.mut_split().set_new_region_id(new_region_id);
    a.mut_split().set_new_peer_ids(new_peer_ids);
    a
}

pub fn entry(index: u64, term: u64, cmd: &RaftCmdRequest) -> Entry {
    raw_entry(index, term, cmd.write_to_bytes().unwrap())
}

pub fn raw_entry(index: u64, term: u64, data: Vec<u8>) -> Entry {
    let mut e = Entry::default();
    e.set_index(index);
    e.set_term(term);
    e.set_data(data.into());
    e
}

pub fn put_entry(region: &Region, index: u64, term: u64, key: &[u8], value: &[u8]) -> Entry {
    entry(index, term, &cmd(region, vec![put_req(key, value)]))
}

/// A ConfChange entry the way `RawNode::propose_conf_change` builds it.
pub fn conf_change_entry(
    index: u64,
    term: u64,
    region: &Region,
    change_type: ConfChangeType,
    target: Peer,
) -> (Entry, ConfChange) {
    let mut cc = ConfChange::default();
    cc.set_change_type(change_type);
    cc.set_node_id(target.get_id());
    let mut admin = AdminRequest::default();
    admin.set_cmd_type(AdminCmdType::ChangePeer);
    admin.mut_change_peer().set_change_type(change_type);
    admin.mut_change_peer().set_peer(target);
    let req = admin_cmd(region, admin);
    let mut e = Entry::default();
    e.set_entry_type(EntryType::EntryConfChange);
    e.set_index(index);
    e.set_term(term);
    e.set_data(cc.write_to_bytes().unwrap().into());
    e.set_context(req.write_to_bytes().unwrap().into());
    (e, cc)
}

pub fn learner(id: u64, store_id: u64) -> Peer {
    let mut p = peer(id, store_id);
    p.set_role(PeerRole::Learner);
    p
}

/// Responses delivered to callbacks, in the order they were delivered.
#[derive(Clone, Default)]
pub struct Responses {
    inner: Arc<Mutex<Vec<(u64, RaftCmdResponse)>>>,
}

impl Responses {
    /// A callback that records its response under `tag`.
    pub fn callback(&self, tag: u64) -> Callback {
        let inner = self.inner.clone();
        Box::new(move |resp| inner.lock().unwrap().push((tag, resp)))
    }

    pub fn proposal(&self, index: u64, term: u64) -> Proposal {
        Proposal::new(index, term, self.callback(index))
    }

    pub fn take(&self) -> Vec<(u64, RaftCmdResponse)> {
        std::mem::take(&mut *self.inner.lock().unwrap())
    }
}

/// A KV engine over `MemKvEngine` whose writes can be made to fail and are
/// counted (with their sync flag).
#[derive(Clone, Default)]
pub struct TestKv {
    pub inner: MemKvEngine,
    pub fail: Arc<AtomicBool>,
    pub writes: Arc<AtomicUsize>,
    pub synced_writes: Arc<AtomicUsize>,
}

impl KvEngine for TestKv {
    type WriteBatch = <MemKvEngine as KvEngine>::WriteBatch;
    type Snapshot = <MemKvEngine as KvEngine>::Snapshot;

    fn write_batch(&self) -> Self::WriteBatch {
        self.inner.write_batch()
    }
    fn write(&self, batch: &mut Self::WriteBatch, sync: bool) -> engine::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(engine::Error::Io(std::io::Error::other(
                "injected write failure",
            )));
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        if sync {
            self.synced_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.write(batch, sync)
    }
    fn get(&self, key: &[u8]) -> engine::Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> engine::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(start, end, limit)
    }
    fn snapshot(&self) -> Self::Snapshot {
        self.inner.snapshot()
    }
    fn get_apply_state(&self, region_id: u64) -> engine::Result<Option<RaftApplyState>> {
        self.inner.get_apply_state(region_id)
    }
    fn get_region_state(&self, region_id: u64) -> engine::Result<Option<RegionLocalState>> {
        self.inner.get_region_state(region_id)
    }
    fn region_states(&self) -> engine::Result<Vec<RegionLocalState>> {
        self.inner.region_states()
    }
    fn sync(&self) -> engine::Result<()> {
        self.inner.sync()
    }
}

/// Runs an [`ApplyPoller`] by hand on the test thread, the way the
/// simulation does: no thread pool.
pub struct Driver<K: KvEngine> {
    pub kv: K,
    pub poller: ApplyPoller<K, mpsc::Sender<Vec<ApplyRes>>>,
    pub results: mpsc::Receiver<Vec<ApplyRes>>,
    pub fsms: Vec<Option<Box<ApplyFsm>>>,
    pub senders: HashMap<u64, LooseBoundedSender<ApplyMsg>>,
    pub cfg: Config,
    _system: ApplyBatchSystem,
}

impl<K: KvEngine> Driver<K> {
    pub fn new(kv: K, cfg: Config) -> Self {
        let (router, system) = apply::create_apply_batch_system(&cfg);
        let (tx, results) = mpsc::channel();
        let poller = ApplyPoller::new(router, kv.clone(), tx, &cfg, logger());
        Driver {
            kv,
            poller,
            results,
            fsms: Vec::new(),
            senders: HashMap::new(),
            cfg,
            _system: system,
        }
    }

    pub fn register(&mut self, reg: Registration) {
        let region_id = reg.region.get_id();
        let (tx, fsm) = ApplyFsm::from_registration(reg, &self.cfg);
        self.senders.insert(region_id, tx);
        self.fsms.push(Some(fsm));
    }

    pub fn send(&self, region_id: u64, msg: ApplyMsg) {
        self.senders[&region_id].force_send(msg).unwrap();
    }

    pub fn apply(&self, region: &Region, term: u64, entries: Vec<Entry>, proposals: Vec<Proposal>) {
        self.send(
            region.get_id(),
            ApplyMsg::apply(Apply {
                region_id: region.get_id(),
                term,
                entries,
                proposals,
            }),
        );
    }

    /// One poll round over every FSM; returns the round's notifications
    /// and whether any FSM asked to keep processing.
    pub fn round(&mut self) -> (Vec<ApplyRes>, bool) {
        self.poller.begin(self.fsms.len());
        let mut keep = false;
        for fsm in self.fsms.iter_mut().flatten() {
            if let batch_system::HandleResult::KeepProcessing = self.poller.handle_normal(fsm) {
                keep = true;
            }
        }
        self.poller.end(&mut self.fsms);
        self.fsms.retain(|f| {
            f.as_ref()
                .is_some_and(|f| !batch_system::Fsm::is_stopped(&**f))
        });
        let mut out = Vec::new();
        while let Ok(res) = self.results.try_recv() {
            out.extend(res);
        }
        (out, keep)
    }

    /// Rounds until no FSM has queued work; all notifications.
    /// The router the poller uses (its disk failure is the store's).
    pub fn poller_router(&self) -> &apply::ApplyRouter {
        self._system.router()
    }

    pub fn run(&mut self) -> Vec<ApplyRes> {
        let mut all = Vec::new();
        for _ in 0..10_000 {
            let (res, keep) = self.round();
            all.extend(res);
            let idle = self
                .fsms
                .iter()
                .flatten()
                .all(|f| f.pending_entries() == 0 && f.pending_messages() == 0);
            if !keep && idle {
                return all;
            }
        }
        panic!("apply driver did not go idle");
    }

    pub fn fsm(&self, region_id: u64) -> &ApplyFsm {
        self.fsms
            .iter()
            .flatten()
            .find(|f| f.region_id() == region_id)
            .expect("fsm exists")
    }
}
