//! Proptest strategies that build every message type with random field
//! values; optional message fields are sometimes left unset.

use kvproto_lite::eraftpb::{
    ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot,
    SnapshotMetadata,
};
use kvproto_lite::errorpb;
use kvproto_lite::metapb::{Peer, PeerRole, Region, RegionEpoch, Store};
use kvproto_lite::raft_cmdpb::*;
use kvproto_lite::raft_serverpb::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// Random bytes, often empty (the proto3 default) and never huge.
pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..24)
}

/// Random UTF-8 strings, including multi-byte characters.
pub fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.chars().take(16).collect())
}

prop_compose! {
    pub fn store()(id in any::<u64>(), address in text()) -> Store {
        let mut m = Store::default();
        m.set_id(id);
        m.set_address(address);
        m
    }
}

prop_compose! {
    pub fn region_epoch()(conf_ver in any::<u64>(), version in any::<u64>()) -> RegionEpoch {
        let mut m = RegionEpoch::default();
        m.set_conf_ver(conf_ver);
        m.set_version(version);
        m
    }
}

pub fn peer_role() -> impl Strategy<Value = PeerRole> {
    prop_oneof![
        Just(PeerRole::Voter),
        Just(PeerRole::Learner),
        Just(PeerRole::IncomingVoter),
        Just(PeerRole::DemotingVoter),
    ]
}

prop_compose! {
    pub fn peer()(id in any::<u64>(), store_id in any::<u64>(), role in peer_role()) -> Peer {
        let mut m = Peer::default();
        m.set_id(id);
        m.set_store_id(store_id);
        m.set_role(role);
        m
    }
}

prop_compose! {
    pub fn region()(
        id in any::<u64>(),
        start_key in bytes(),
        end_key in bytes(),
        epoch in option::of(region_epoch()),
        peers in vec(peer(), 0..5),
    ) -> Region {
        let mut m = Region::default();
        m.set_id(id);
        m.set_start_key(start_key);
        m.set_end_key(end_key);
        if let Some(e) = epoch {
            m.set_region_epoch(e);
        }
        m.set_peers(peers.into());
        m
    }
}

pub fn entry_type() -> impl Strategy<Value = EntryType> {
    prop_oneof![
        Just(EntryType::EntryNormal),
        Just(EntryType::EntryConfChange),
        Just(EntryType::EntryConfChangeV2),
    ]
}

prop_compose! {
    pub fn entry()(
        entry_type in entry_type(),
        term in any::<u64>(),
        index in any::<u64>(),
        data in vec(any::<u8>(), 0..64),
        context in bytes(),
    ) -> Entry {
        let mut m = Entry::default();
        m.set_entry_type(entry_type);
        m.set_term(term);
        m.set_index(index);
        m.set_data(data.into());
        m.set_context(context.into());
        m
    }
}

prop_compose! {
    pub fn snapshot()(
        data in bytes(),
        voters in vec(any::<u64>(), 0..4),
        learners in vec(any::<u64>(), 0..3),
        index in any::<u64>(),
        term in any::<u64>(),
    ) -> Snapshot {
        let mut cs = ConfState::default();
        cs.set_voters(voters);
        cs.set_learners(learners);
        let mut meta = SnapshotMetadata::default();
        meta.set_conf_state(cs);
        meta.set_index(index);
        meta.set_term(term);
        let mut m = Snapshot::default();
        m.set_data(data.into());
        m.set_metadata(meta);
        m
    }
}

pub fn message_type() -> impl Strategy<Value = MessageType> {
    (0usize..19).prop_map(|i| {
        use protobuf::ProtobufEnum;
        MessageType::values()[i]
    })
}

prop_compose! {
    /// A raft message with every field random (not necessarily meaningful to
    /// raft, which is fine for encoding tests).
    pub fn eraft_message()(
        (msg_type, to, from, term, log_term, index) in
            (message_type(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        entries in vec(entry(), 0..4),
        (commit, commit_term, request_snapshot, reject, reject_hint) in
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>(), any::<u64>()),
        snapshot in option::of(snapshot()),
        context in bytes(),
        priority in any::<i64>(),
    ) -> Message {
        let mut m = Message::default();
        m.set_msg_type(msg_type);
        m.set_to(to);
        m.set_from(from);
        m.set_term(term);
        m.set_log_term(log_term);
        m.set_index(index);
        m.set_entries(entries.into());
        m.set_commit(commit);
        m.set_commit_term(commit_term);
        m.set_request_snapshot(request_snapshot);
        m.set_reject(reject);
        m.set_reject_hint(reject_hint);
        if let Some(s) = snapshot {
            m.set_snapshot(s);
        }
        m.set_context(context.into());
        m.set_priority(priority);
        m
    }
}

prop_compose! {
    pub fn hard_state()(term in any::<u64>(), vote in any::<u64>(), commit in any::<u64>()) -> HardState {
        let mut m = HardState::default();
        m.set_term(term);
        m.set_vote(vote);
        m.set_commit(commit);
        m
    }
}

// ---- raft_serverpb ----

prop_compose! {
    pub fn raft_message()(
        region_id in any::<u64>(),
        from_peer in option::of(peer()),
        to_peer in option::of(peer()),
        message in option::of(eraft_message()),
        epoch in option::of(region_epoch()),
        is_tombstone in any::<bool>(),
        start_key in bytes(),
        end_key in bytes(),
        extra in 0usize..4,
    ) -> RaftMessage {
        let mut m = RaftMessage::default();
        m.set_region_id(region_id);
        if let Some(p) = from_peer {
            m.set_from_peer(p);
        }
        if let Some(p) = to_peer {
            m.set_to_peer(p);
        }
        if let Some(msg) = message {
            m.set_message(msg);
        }
        if let Some(e) = epoch {
            m.set_region_epoch(e);
        }
        m.set_is_tombstone(is_tombstone);
        m.set_start_key(start_key);
        m.set_end_key(end_key);
        m.set_extra(<ExtraMessageType as protobuf::ProtobufEnum>::values()[extra]);
        m
    }
}

prop_compose! {
    pub fn raft_local_state()(hs in option::of(hard_state()), last_index in any::<u64>()) -> RaftLocalState {
        let mut m = RaftLocalState::default();
        if let Some(hs) = hs {
            m.set_hard_state(hs);
        }
        m.set_last_index(last_index);
        m
    }
}

prop_compose! {
    pub fn raft_truncated_state()(index in any::<u64>(), term in any::<u64>()) -> RaftTruncatedState {
        let mut m = RaftTruncatedState::default();
        m.set_index(index);
        m.set_term(term);
        m
    }
}

prop_compose! {
    pub fn raft_apply_state()(
        applied_index in any::<u64>(),
        truncated in option::of(raft_truncated_state()),
        commit_index in any::<u64>(),
        commit_term in any::<u64>(),
    ) -> RaftApplyState {
        let mut m = RaftApplyState::default();
        m.set_applied_index(applied_index);
        if let Some(t) = truncated {
            m.set_truncated_state(t);
        }
        m.set_commit_index(commit_index);
        m.set_commit_term(commit_term);
        m
    }
}

pub fn peer_state() -> impl Strategy<Value = PeerState> {
    prop_oneof![
        Just(PeerState::Normal),
        Just(PeerState::Applying),
        Just(PeerState::Tombstone)
    ]
}

prop_compose! {
    pub fn region_local_state()(state in peer_state(), region in option::of(region())) -> RegionLocalState {
        let mut m = RegionLocalState::default();
        m.set_state(state);
        if let Some(r) = region {
            m.set_region(r);
        }
        m
    }
}

prop_compose! {
    pub fn store_ident()(cluster_id in any::<u64>(), store_id in any::<u64>()) -> StoreIdent {
        let mut m = StoreIdent::default();
        m.set_cluster_id(cluster_id);
        m.set_store_id(store_id);
        m
    }
}

// ---- errorpb ----

prop_compose! {
    pub fn not_leader()(region_id in any::<u64>(), leader in option::of(peer())) -> errorpb::NotLeader {
        let mut m = errorpb::NotLeader::default();
        m.set_region_id(region_id);
        if let Some(l) = leader {
            m.set_leader(l);
        }
        m
    }
}

prop_compose! {
    pub fn region_not_found()(region_id in any::<u64>()) -> errorpb::RegionNotFound {
        let mut m = errorpb::RegionNotFound::default();
        m.set_region_id(region_id);
        m
    }
}

prop_compose! {
    pub fn key_not_in_region()(
        key in bytes(), region_id in any::<u64>(), start_key in bytes(), end_key in bytes(),
    ) -> errorpb::KeyNotInRegion {
        let mut m = errorpb::KeyNotInRegion::default();
        m.set_key(key);
        m.set_region_id(region_id);
        m.set_start_key(start_key);
        m.set_end_key(end_key);
        m
    }
}

prop_compose! {
    pub fn epoch_not_match()(regions in vec(region(), 0..3)) -> errorpb::EpochNotMatch {
        let mut m = errorpb::EpochNotMatch::default();
        m.set_current_regions(regions.into());
        m
    }
}

prop_compose! {
    pub fn server_is_busy()(reason in text()) -> errorpb::ServerIsBusy {
        let mut m = errorpb::ServerIsBusy::default();
        m.set_reason(reason);
        m
    }
}

prop_compose! {
    pub fn store_not_match()(to in any::<u64>(), actual in any::<u64>()) -> errorpb::StoreNotMatch {
        let mut m = errorpb::StoreNotMatch::default();
        m.set_to_store_id(to);
        m.set_actual_store_id(actual);
        m
    }
}

prop_compose! {
    pub fn raft_entry_too_large()(region_id in any::<u64>(), size in any::<u64>()) -> errorpb::RaftEntryTooLarge {
        let mut m = errorpb::RaftEntryTooLarge::default();
        m.set_region_id(region_id);
        m.set_entry_size(size);
        m
    }
}

prop_compose! {
    /// An error with a message and any subset of the details set (the
    /// schema allows several even though constructors set one).
    pub fn error()(
        message in text(),
        (nl, rnf, knir) in (option::of(not_leader()), option::of(region_not_found()), option::of(key_not_in_region())),
        (enm, busy, stale) in (option::of(epoch_not_match()), option::of(server_is_busy()), any::<bool>()),
        (snm, large) in (option::of(store_not_match()), option::of(raft_entry_too_large())),
    ) -> errorpb::Error {
        let mut m = errorpb::Error::default();
        m.set_message(message);
        if let Some(x) = nl { m.set_not_leader(x); }
        if let Some(x) = rnf { m.set_region_not_found(x); }
        if let Some(x) = knir { m.set_key_not_in_region(x); }
        if let Some(x) = enm { m.set_epoch_not_match(x); }
        if let Some(x) = busy { m.set_server_is_busy(x); }
        if stale { m.set_stale_command(errorpb::StaleCommand::default()); }
        if let Some(x) = snm { m.set_store_not_match(x); }
        if let Some(x) = large { m.set_raft_entry_too_large(x); }
        m
    }
}

// ---- raft_cmdpb ----

pub fn cmd_type() -> impl Strategy<Value = CmdType> {
    prop_oneof![
        Just(CmdType::Invalid),
        Just(CmdType::Get),
        Just(CmdType::Put),
        Just(CmdType::Delete)
    ]
}

prop_compose! {
    pub fn get_request()(key in bytes()) -> GetRequest {
        let mut m = GetRequest::default();
        m.set_key(key);
        m
    }
}

prop_compose! {
    pub fn get_response()(value in bytes(), not_found in any::<bool>()) -> GetResponse {
        let mut m = GetResponse::default();
        m.set_value(value);
        m.set_not_found(not_found);
        m
    }
}

prop_compose! {
    pub fn put_request()(key in bytes(), value in bytes()) -> PutRequest {
        let mut m = PutRequest::default();
        m.set_key(key);
        m.set_value(value);
        m
    }
}

prop_compose! {
    pub fn delete_request()(key in bytes()) -> DeleteRequest {
        let mut m = DeleteRequest::default();
        m.set_key(key);
        m
    }
}

prop_compose! {
    pub fn request()(
        cmd_type in cmd_type(),
        get in option::of(get_request()),
        put in option::of(put_request()),
        delete in option::of(delete_request()),
    ) -> Request {
        let mut m = Request::default();
        m.set_cmd_type(cmd_type);
        if let Some(x) = get { m.set_get(x); }
        if let Some(x) = put { m.set_put(x); }
        if let Some(x) = delete { m.set_delete(x); }
        m
    }
}

prop_compose! {
    pub fn response()(
        cmd_type in cmd_type(),
        get in option::of(get_response()),
        put in any::<bool>(),
        delete in any::<bool>(),
    ) -> Response {
        let mut m = Response::default();
        m.set_cmd_type(cmd_type);
        if let Some(x) = get { m.set_get(x); }
        if put { m.set_put(PutResponse::default()); }
        if delete { m.set_delete(DeleteResponse::default()); }
        m
    }
}

pub fn admin_cmd_type() -> impl Strategy<Value = AdminCmdType> {
    prop_oneof![
        Just(AdminCmdType::InvalidAdmin),
        Just(AdminCmdType::ChangePeer),
        Just(AdminCmdType::Split),
        Just(AdminCmdType::CompactLog),
        Just(AdminCmdType::TransferLeader),
        Just(AdminCmdType::ChangePeerV2),
    ]
}

pub fn conf_change_type() -> impl Strategy<Value = ConfChangeType> {
    prop_oneof![
        Just(ConfChangeType::AddNode),
        Just(ConfChangeType::RemoveNode),
        Just(ConfChangeType::AddLearnerNode),
    ]
}

prop_compose! {
    pub fn change_peer_request()(change_type in conf_change_type(), peer in option::of(peer())) -> ChangePeerRequest {
        let mut m = ChangePeerRequest::default();
        m.set_change_type(change_type);
        if let Some(p) = peer { m.set_peer(p); }
        m
    }
}

prop_compose! {
    pub fn change_peer_v2_request()(changes in vec(change_peer_request(), 0..4)) -> ChangePeerV2Request {
        let mut m = ChangePeerV2Request::default();
        m.set_changes(changes.into());
        m
    }
}

prop_compose! {
    pub fn change_peer_v2_response()(region in option::of(region())) -> ChangePeerV2Response {
        let mut m = ChangePeerV2Response::default();
        if let Some(r) = region { m.set_region(r); }
        m
    }
}

prop_compose! {
    pub fn change_peer_response()(region in option::of(region())) -> ChangePeerResponse {
        let mut m = ChangePeerResponse::default();
        if let Some(r) = region { m.set_region(r); }
        m
    }
}

prop_compose! {
    pub fn split_request()(
        split_key in bytes(), new_region_id in any::<u64>(), new_peer_ids in vec(any::<u64>(), 0..5),
    ) -> SplitRequest {
        let mut m = SplitRequest::default();
        m.set_split_key(split_key);
        m.set_new_region_id(new_region_id);
        m.set_new_peer_ids(new_peer_ids);
        m
    }
}

prop_compose! {
    pub fn split_response()(left in option::of(region()), right in option::of(region())) -> SplitResponse {
        let mut m = SplitResponse::default();
        if let Some(r) = left { m.set_left(r); }
        if let Some(r) = right { m.set_right(r); }
        m
    }
}

prop_compose! {
    pub fn compact_log_request()(index in any::<u64>(), term in any::<u64>()) -> CompactLogRequest {
        let mut m = CompactLogRequest::default();
        m.set_compact_index(index);
        m.set_compact_term(term);
        m
    }
}

prop_compose! {
    pub fn transfer_leader_request()(peer in option::of(peer())) -> TransferLeaderRequest {
        let mut m = TransferLeaderRequest::default();
        if let Some(p) = peer { m.set_peer(p); }
        m
    }
}

prop_compose! {
    pub fn admin_request()(
        cmd_type in admin_cmd_type(),
        change_peer in option::of(change_peer_request()),
        split in option::of(split_request()),
        compact_log in option::of(compact_log_request()),
        transfer_leader in option::of(transfer_leader_request()),
        change_peer_v2 in option::of(change_peer_v2_request()),
    ) -> AdminRequest {
        let mut m = AdminRequest::default();
        m.set_cmd_type(cmd_type);
        if let Some(x) = change_peer { m.set_change_peer(x); }
        if let Some(x) = split { m.set_split(x); }
        if let Some(x) = compact_log { m.set_compact_log(x); }
        if let Some(x) = transfer_leader { m.set_transfer_leader(x); }
        if let Some(x) = change_peer_v2 { m.set_change_peer_v2(x); }
        m
    }
}

prop_compose! {
    pub fn admin_response()(
        cmd_type in admin_cmd_type(),
        change_peer in option::of(change_peer_response()),
        split in option::of(split_response()),
        compact_log in any::<bool>(),
        transfer_leader in any::<bool>(),
        change_peer_v2 in option::of(change_peer_v2_response()),
    ) -> AdminResponse {
        let mut m = AdminResponse::default();
        m.set_cmd_type(cmd_type);
        if let Some(x) = change_peer { m.set_change_peer(x); }
        if let Some(x) = split { m.set_split(x); }
        if compact_log { m.set_compact_log(CompactLogResponse::default()); }
        if transfer_leader { m.set_transfer_leader(TransferLeaderResponse::default()); }
        if let Some(x) = change_peer_v2 { m.set_change_peer_v2(x); }
        m
    }
}

prop_compose! {
    pub fn raft_request_header()(
        region_id in any::<u64>(), peer in option::of(peer()),
        epoch in option::of(region_epoch()), term in any::<u64>(),
    ) -> RaftRequestHeader {
        let mut m = RaftRequestHeader::default();
        m.set_region_id(region_id);
        if let Some(p) = peer { m.set_peer(p); }
        if let Some(e) = epoch { m.set_region_epoch(e); }
        m.set_term(term);
        m
    }
}

prop_compose! {
    pub fn raft_response_header()(error in option::of(error()), current_term in any::<u64>()) -> RaftResponseHeader {
        let mut m = RaftResponseHeader::default();
        if let Some(e) = error { m.set_error(e); }
        m.set_current_term(current_term);
        m
    }
}

prop_compose! {
    pub fn raft_cmd_request()(
        header in option::of(raft_request_header()),
        requests in vec(request(), 0..4),
        admin in option::of(admin_request()),
    ) -> RaftCmdRequest {
        let mut m = RaftCmdRequest::default();
        if let Some(h) = header { m.set_header(h); }
        m.set_requests(requests.into());
        if let Some(a) = admin { m.set_admin_request(a); }
        m
    }
}

prop_compose! {
    pub fn raft_cmd_response()(
        header in option::of(raft_response_header()),
        responses in vec(response(), 0..4),
        admin in option::of(admin_response()),
    ) -> RaftCmdResponse {
        let mut m = RaftCmdResponse::default();
        if let Some(h) = header { m.set_header(h); }
        m.set_responses(responses.into());
        if let Some(a) = admin { m.set_admin_response(a); }
        m
    }
}
