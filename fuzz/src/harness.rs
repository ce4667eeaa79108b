//! What each fuzz target does with one input, shared by the cargo-fuzz
//! targets (`fuzz/fuzz_targets/*.rs`, through this crate) and by the
//! stable replay of the corpus (`node/tests/fuzz_replay.rs` includes this
//! file as a module), so `cargo test` runs exactly what the fuzzer ran.
//!
//! Each function takes arbitrary bytes and panics only on a bug: a decoder
//! that panics, a decoded message that does not survive re-encoding, or a
//! store that panics on what it was fed.

use std::collections::BTreeMap;

use bytes::Buf;
use engine::{Engines, MemKvEngine, MemRaftLogEngine};
use kvproto_lite::eraftpb::{ConfState, Entry, MessageType};
use kvproto_lite::metapb::{self, Peer, PeerRole, Region};
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, Request};
use kvproto_lite::raft_serverpb::{
    RaftApplyState, RaftLocalState, RaftMessage, RegionLocalState, StoreIdent,
};
use kvproto_lite::{kvrpcpb, transportpb};
use protobuf::Message;
use raftstore::{Callback, PeerMsg, RaftCommand, StoreMsg, Transport};

/// What a fuzz target does with one input.
pub type Target = fn(&[u8]);

/// Every fuzz target: its name (the directory of its corpus under
/// `fuzz/corpus/` and the file in `fuzz/fuzz_targets/`) and its function.
pub const TARGETS: [(&str, Target); 6] = [
    ("raft_message", raft_message),
    ("raft_cmd_request", raft_cmd_request),
    ("grpc_frame", grpc_frame),
    ("engine_encodings", engine_encodings),
    ("node_config", node_config),
    ("store_messages", store_messages),
];

/// Decodes `data` as `M`; a message that decodes must encode and decode
/// again to the same known fields, in an encoding of the same length.
///
/// Unknown fields are kept by rust-protobuf 2 but are not part of the
/// comparison: they live in a `HashMap` (so their order in an encoding
/// varies from one encoding to the next), and a field given twice may
/// leave an empty-but-allocated unknown-field set that compares unequal to
/// an absent one. Neither changes what a store reads from a message.
fn round_trip<M: Message>(data: &[u8]) -> Option<M> {
    let msg = kvproto_lite::decode::<M>(data).ok()?;
    let bytes = kvproto_lite::encode(&msg).expect("a decoded message encodes");
    let again = kvproto_lite::decode::<M>(&bytes).expect("a re-encoded message decodes");
    assert_eq!(
        protobuf::text_format::print_to_string(&again),
        protobuf::text_format::print_to_string(&msg),
        "a message changed through re-encoding"
    );
    assert_eq!(
        kvproto_lite::encode(&again).expect("encodes").len(),
        bytes.len(),
        "a re-encoded message has another size"
    );
    Some(msg)
}

/// A `RaftMessage` from the network: decoding, re-encoding, and the
/// store's message-only validation.
pub fn raft_message(data: &[u8]) {
    if let Some(msg) = round_trip::<RaftMessage>(data) {
        let _ = raftstore::validate::check_message(&msg);
    }
}

/// A client command (also the data of every raft entry): request and
/// response decoders.
pub fn raft_cmd_request(data: &[u8]) {
    round_trip::<RaftCmdRequest>(data);
    round_trip::<RaftCmdResponse>(data);
}

/// One gRPC message frame, as the codec's decoder sees it: the first byte
/// picks the message type of a service method, the second where the frame
/// is split into two buffer chunks; the chunked and the contiguous decode
/// must agree.
pub fn grpc_frame(data: &[u8]) {
    let [kind, split, frame @ ..] = data else {
        return;
    };
    match kind % 12 {
        0 => frame_decodes::<transportpb::BatchRaftMessage>(frame, *split),
        1 => frame_decodes::<transportpb::SnapshotChunk>(frame, *split),
        2 => frame_decodes::<kvrpcpb::GetRequest>(frame, *split),
        3 => frame_decodes::<kvrpcpb::PutRequest>(frame, *split),
        4 => frame_decodes::<kvrpcpb::DeleteRequest>(frame, *split),
        5 => frame_decodes::<kvrpcpb::ScanRequest>(frame, *split),
        6 => frame_decodes::<kvrpcpb::BatchGetRequest>(frame, *split),
        7 => frame_decodes::<kvrpcpb::BatchPutRequest>(frame, *split),
        8 => frame_decodes::<kvrpcpb::GetRegionRequest>(frame, *split),
        9 => frame_decodes::<kvrpcpb::BatchCommandsRequest>(frame, *split),
        10 => frame_decodes::<kvrpcpb::BatchCommandsResponse>(frame, *split),
        _ => frame_decodes::<kvrpcpb::ScanResponse>(frame, *split),
    }
}

fn frame_decodes<M: Message>(frame: &[u8], split: u8) {
    let at = usize::from(split).min(frame.len());
    let (a, b) = frame.split_at(at);
    let mut chained = a.chain(b);
    let chunked = kvproto_lite::grpc::decode_frame::<M>(&mut chained);
    assert_eq!(
        chained.remaining(),
        0,
        "the decoder left bytes of the frame"
    );
    let mut whole = frame;
    let contiguous = kvproto_lite::grpc::decode_frame::<M>(&mut whole);
    match (chunked, contiguous) {
        (Ok(x), Ok(y)) => assert_eq!(
            protobuf::text_format::print_to_string(&x),
            protobuf::text_format::print_to_string(&y),
            "chunked and contiguous decodes differ"
        ),
        (Err(_), Err(_)) => {}
        _ => panic!("chunked and contiguous decodes disagree on validity"),
    }
    round_trip::<M>(frame);
}

/// What the engines store and read back: the key encodings (user keys,
/// local keys with a region id) and the persisted states.
pub fn engine_encodings(data: &[u8]) {
    let Some((kind, rest)) = data.split_first() else {
        return;
    };
    if let Ok(user) = engine::keys::origin_key(rest) {
        assert_eq!(engine::keys::data_key(user), rest, "data key round trip");
    }
    if let Ok(region_id) = engine::keys::region_id_of_local_key(rest, *kind) {
        let rebuilt = match *kind {
            engine::keys::APPLY_STATE_KIND => Some(engine::keys::apply_state_key(region_id)),
            engine::keys::REGION_STATE_KIND => Some(engine::keys::region_state_key(region_id)),
            _ => None,
        };
        if let Some(key) = rebuilt {
            assert_eq!(&key[..], rest, "local key round trip");
        }
    }
    let _ = engine::keys::data_end_key(rest);
    match kind % 4 {
        0 => drop(round_trip::<RaftLocalState>(rest)),
        1 => drop(round_trip::<RaftApplyState>(rest)),
        2 => drop(round_trip::<RegionLocalState>(rest)),
        _ => drop(round_trip::<StoreIdent>(rest)),
    }
}

/// The node's TOML config: parsing, then every accessor and the validation
/// a node runs at start.
pub fn node_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(cfg) = node::NodeConfig::from_toml_str(&text) {
        let _ = cfg.validate();
        let _ = cfg.listen_addr();
        let _ = cfg.status_addr();
        let _ = cfg.raftstore.validate();
    }
}

/// A transport that accepts every message and delivers none (the other
/// stores of the fuzzed store's regions do not exist).
#[derive(Clone, Default)]
struct Sink;

impl Transport for Sink {
    fn send(&mut self, _msg: RaftMessage) -> raftstore::Result<()> {
        Ok(())
    }

    fn flush(&mut self) {}
}

/// Reads the input a few bytes at a time; zeros once it runs out.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A number near the region's log (0..=31) most of the time, an
    /// extreme now and then.
    fn number(&mut self) -> u64 {
        match self.byte() {
            b @ 0..=223 => u64::from(b % 32),
            224..=239 => u64::from(self.byte()) << 8 | u64::from(self.byte()),
            240..=247 => u64::MAX - u64::from(self.byte() % 4),
            _ => u64::from(self.byte()) << 56,
        }
    }
}

/// The two regions of the fuzzed store (store 1): region 1 with voters on
/// stores 1, 2, 3 (the store's peer follows or campaigns), region 2 with
/// the only voter on store 1 and learners on stores 2 and 3 (the store's
/// peer leads and replicates).
fn fuzz_regions() -> Vec<Region> {
    let peer = |id, store, learner| {
        let mut p = Peer::default();
        p.set_id(id);
        p.set_store_id(store);
        if learner {
            p.set_role(PeerRole::Learner);
        }
        p
    };
    let mut r1 = Region::default();
    r1.set_id(1);
    r1.set_end_key(b"m".to_vec());
    r1.mut_region_epoch().set_version(1);
    r1.mut_region_epoch().set_conf_ver(1);
    for (id, store) in [(1, 1), (2, 2), (3, 3)] {
        r1.mut_peers().push(peer(id, store, false));
    }
    let mut r2 = Region::default();
    r2.set_id(2);
    r2.set_start_key(b"m".to_vec());
    r2.mut_region_epoch().set_version(1);
    r2.mut_region_epoch().set_conf_ver(1);
    r2.mut_peers().push(peer(4, 1, false));
    r2.mut_peers().push(peer(5, 2, true));
    r2.mut_peers().push(peer(6, 3, true));
    vec![r1, r2]
}

const MESSAGE_TYPES: [MessageType; 19] = [
    MessageType::MsgHup,
    MessageType::MsgBeat,
    MessageType::MsgPropose,
    MessageType::MsgAppend,
    MessageType::MsgAppendResponse,
    MessageType::MsgRequestVote,
    MessageType::MsgRequestVoteResponse,
    MessageType::MsgSnapshot,
    MessageType::MsgHeartbeat,
    MessageType::MsgHeartbeatResponse,
    MessageType::MsgUnreachable,
    MessageType::MsgSnapStatus,
    MessageType::MsgCheckQuorum,
    MessageType::MsgTransferLeader,
    MessageType::MsgTimeoutNow,
    MessageType::MsgReadIndex,
    MessageType::MsgReadIndexResp,
    MessageType::MsgRequestPreVote,
    MessageType::MsgRequestPreVoteResponse,
];

/// A raft message built from the input's bytes: mostly well addressed to
/// the store's peers, with fields near the regions' logs, so the fuzzer
/// reaches raft-rs's handlers rather than the envelope checks.
fn structured_message(input: &mut Input<'_>, regions: &[Region]) -> RaftMessage {
    let region = &regions[usize::from(input.byte() % 2)];
    let peers = region.get_peers();
    let local = &peers[0];
    let remote = &peers[1 + usize::from(input.byte() % 2)];
    let mut rm = RaftMessage::default();
    rm.set_region_id(region.get_id());
    rm.set_region_epoch(region.get_region_epoch().clone());
    let (mut from, mut to) = (remote.get_id(), local.get_id());
    let addressing = input.byte();
    if addressing >= 240 {
        from = input.number();
        to = input.number();
    }
    rm.mut_from_peer().set_id(from);
    rm.mut_from_peer().set_store_id(remote.get_store_id());
    rm.mut_to_peer().set_id(to);
    rm.mut_to_peer().set_store_id(1);
    let m = rm.mut_message();
    m.set_msg_type(MESSAGE_TYPES[usize::from(input.byte()) % MESSAGE_TYPES.len()]);
    m.from = from;
    m.to = to;
    m.term = input.number();
    m.index = input.number();
    m.log_term = input.number();
    m.commit = input.number();
    m.commit_term = input.number();
    let flags = input.byte();
    m.reject = flags & 1 != 0;
    m.reject_hint = if flags & 2 != 0 { input.number() } else { 0 };
    m.request_snapshot = if flags & 4 != 0 { input.number() } else { 0 };
    if flags & 8 != 0 {
        m.set_context(input.bytes(4).to_vec().into());
    }
    let n = usize::from(input.byte() % 4);
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let (index, term) = (input.number(), input.number());
        let len = usize::from(input.byte() % 8);
        let e = Entry {
            index,
            term,
            data: input.bytes(len).to_vec().into(),
            ..Default::default()
        };
        entries.push(e);
    }
    m.set_entries(entries.into());
    if flags & 16 != 0 {
        let meta = m.mut_snapshot().mut_metadata();
        meta.index = input.number();
        meta.term = input.number();
        let mut cs = ConfState::default();
        cs.set_voters((0..input.byte() % 4).map(|_| input.number()).collect());
        cs.set_learners((0..input.byte() % 3).map(|_| input.number()).collect());
        meta.set_conf_state(cs);
    }
    rm
}

/// A client command built from the input: a read or write of a short key,
/// addressed to the store's peer of one of its regions, or any bytes the
/// command decoder accepts.
fn command(input: &mut Input<'_>, regions: &[Region]) -> Option<RaftCmdRequest> {
    let mode = input.byte();
    if mode >= 200 {
        let len = usize::from(input.byte());
        return kvproto_lite::decode::<RaftCmdRequest>(input.bytes(len)).ok();
    }
    let region = &regions[usize::from(mode % 2)];
    let mut req = RaftCmdRequest::default();
    req.mut_header().set_region_id(region.get_id());
    req.mut_header().set_peer(region.get_peers()[0].clone());
    req.mut_header()
        .set_region_epoch(region.get_region_epoch().clone());
    let mut r = Request::default();
    let len = usize::from(input.byte() % 4);
    let key = input.bytes(len).to_vec();
    match mode % 3 {
        0 => {
            r.set_cmd_type(CmdType::Put);
            r.mut_put().set_key(key);
            r.mut_put().set_value(b"v".to_vec());
        }
        1 => {
            r.set_cmd_type(CmdType::Get);
            r.mut_get().set_key(key);
        }
        _ => {
            r.set_cmd_type(CmdType::Delete);
            r.mut_delete().set_key(key);
        }
    }
    req.mut_requests().push(r);
    Some(req)
}

/// One store (store 1, in-memory engines, its pollers driven on this
/// thread) fed a sequence of raft messages, commands and ticks taken from
/// the input. Nothing it is fed may panic it.
pub fn store_messages(data: &[u8]) {
    let regions = fuzz_regions();
    let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
    raftstore::bootstrap_store(&engines, 1, &regions).expect("bootstrap");
    let cfg = raftstore::Config {
        raft_election_jitter: false,
        raft_election_timeout_ticks: 4,
        raft_heartbeat_ticks: 1,
        ..raftstore::Config::default()
    };
    let (router, mut system) =
        raftstore::create_raft_batch_system::<MemKvEngine, MemRaftLogEngine>(&cfg);
    let mut store = metapb::Store::default();
    store.set_id(1);
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut pollers = system
        .spawn_manual(store, engines, Sink, &logger)
        .expect("start the store");
    let tick = |router: &raftstore::RaftRouter<MemRaftLogEngine>| {
        for region in &regions {
            let _ = router.force_send(region.get_id(), PeerMsg::Tick);
        }
        let _ = router.send_control(StoreMsg::Tick);
    };
    // Region 2's only voter elects itself.
    for _ in 0..2 * cfg.raft_election_timeout_ticks {
        tick(&router);
        drive(&mut pollers);
    }
    assert!(
        system
            .store_meta()
            .leader_info(2)
            .is_some_and(|info| info.is_leader),
        "region 2's only voter elects itself"
    );
    let mut input = Input { data };
    let mut steps = 0;
    while !input.is_empty() && steps < 256 {
        steps += 1;
        match input.byte() % 8 {
            0 => {
                let len = usize::from(input.byte());
                if let Ok(msg) = kvproto_lite::decode::<RaftMessage>(input.bytes(len)) {
                    let _ = router.send_raft_message(msg);
                }
            }
            1..=4 => {
                let msg = structured_message(&mut input, &regions);
                let _ = router.send_raft_message(msg);
            }
            5 => {
                if let Some(req) = command(&mut input, &regions) {
                    let cmd = RaftCommand::new(req, Callback::none());
                    if let Err(refused) = router.send_raft_command(cmd) {
                        raftstore::answer_refused(refused);
                    }
                }
            }
            _ => tick(&router),
        }
        drive(&mut pollers);
    }
    drop(pollers);
    drop(system);
}

/// Runs poll rounds of the store's raft and apply pollers until both are
/// idle (at most 64 rounds).
fn drive(pollers: &mut raftstore::ManualPollers<MemKvEngine, MemRaftLogEngine, Sink>) {
    for _ in 0..64 {
        if pollers.raft.poll_once() + pollers.apply.poll_once() == 0 {
            break;
        }
    }
}

/// Reads every file of `fuzz/corpus/<target>/` (relative to `root`, the
/// repository) and runs the target's function on it; returns how many
/// inputs ran per target.
///
/// # Panics
///
/// When a target panics on an input (the file name is printed first), or
/// a corpus directory is missing or empty.
pub fn replay_corpus(root: &std::path::Path) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for (name, target) in TARGETS {
        let dir = root.join("fuzz").join("corpus").join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus {} is empty", dir.display());
        for file in &files {
            let data =
                std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
            eprintln!("{name}: {}", file.display());
            target(&data);
        }
        counts.insert(name, files.len());
    }
    counts
}
