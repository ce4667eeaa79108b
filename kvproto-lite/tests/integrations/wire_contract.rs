//! The field numbers, field types and enum values are a wire and on-disk
//! contract (see the crate docs and `notes/contracts.md`). These tests fail
//! if any of them changes, and check sample encodings byte for byte.

use kvproto_lite::eraftpb::{Entry, Message as RaftMsg, MessageType};
use kvproto_lite::{encode, errorpb, metapb, raft_cmdpb, raft_serverpb};
use protobuf::descriptor::{FieldDescriptorProto_Label, FieldDescriptorProto_Type};
use protobuf::reflect::MessageDescriptor;
use protobuf::{Message, ProtobufEnum};

/// The schema as agreed between crates, one message per line.
const CONTRACT: &str = "\
metapb.Store: uint64 id = 1; string address = 2;
metapb.RegionEpoch: uint64 conf_ver = 1; uint64 version = 2;
metapb.Peer: uint64 id = 1; uint64 store_id = 2; metapb.PeerRole role = 3;
metapb.Region: uint64 id = 1; bytes start_key = 2; bytes end_key = 3; metapb.RegionEpoch region_epoch = 4; repeated metapb.Peer peers = 5;
raft_serverpb.RaftMessage: uint64 region_id = 1; metapb.Peer from_peer = 2; metapb.Peer to_peer = 3; eraftpb.Message message = 4; metapb.RegionEpoch region_epoch = 5; bool is_tombstone = 6; bytes start_key = 7; bytes end_key = 8; raft_serverpb.ExtraMessageType extra = 9; raft_serverpb.LeaderCheck leader_check = 10; raft_serverpb.LeaderCheckResponse leader_check_response = 11;
raft_serverpb.RaftLocalState: eraftpb.HardState hard_state = 1; uint64 last_index = 2;
raft_serverpb.RaftTruncatedState: uint64 index = 1; uint64 term = 2;
raft_serverpb.RaftApplyState: uint64 applied_index = 1; raft_serverpb.RaftTruncatedState truncated_state = 2; uint64 commit_index = 3; uint64 commit_term = 4;
raft_serverpb.RegionLocalState: raft_serverpb.PeerState state = 1; metapb.Region region = 2;
raft_serverpb.StoreIdent: uint64 cluster_id = 1; uint64 store_id = 2;
raft_cmdpb.GetRequest: bytes key = 1;
raft_cmdpb.GetResponse: bytes value = 1; bool not_found = 2;
raft_cmdpb.PutRequest: bytes key = 1; bytes value = 2;
raft_cmdpb.PutResponse:
raft_cmdpb.DeleteRequest: bytes key = 1;
raft_cmdpb.DeleteResponse:
raft_cmdpb.Request: raft_cmdpb.CmdType cmd_type = 1; raft_cmdpb.GetRequest get = 2; raft_cmdpb.PutRequest put = 4; raft_cmdpb.DeleteRequest delete = 5; raft_cmdpb.CompareAndSwapRequest cas = 6; raft_cmdpb.DeleteIfEqualRequest delete_if_equal = 7; raft_cmdpb.UserRequest user = 8;
raft_cmdpb.Response: raft_cmdpb.CmdType cmd_type = 1; raft_cmdpb.GetResponse get = 2; raft_cmdpb.PutResponse put = 4; raft_cmdpb.DeleteResponse delete = 5; raft_cmdpb.CompareAndSwapResponse cas = 6; raft_cmdpb.UserResponse user = 8;
raft_cmdpb.ChangePeerRequest: eraftpb.ConfChangeType change_type = 1; metapb.Peer peer = 2;
raft_cmdpb.ChangePeerResponse: metapb.Region region = 1;
raft_cmdpb.ChangePeerV2Request: repeated raft_cmdpb.ChangePeerRequest changes = 1;
raft_cmdpb.ChangePeerV2Response: metapb.Region region = 1;
raft_cmdpb.SplitRequest: bytes split_key = 1; uint64 new_region_id = 2; repeated uint64 new_peer_ids = 3;
raft_cmdpb.SplitResponse: metapb.Region left = 1; metapb.Region right = 2;
raft_cmdpb.CompactLogRequest: uint64 compact_index = 1; uint64 compact_term = 2;
raft_cmdpb.CompactLogResponse:
raft_cmdpb.TransferLeaderRequest: metapb.Peer peer = 1;
raft_cmdpb.TransferLeaderResponse:
raft_cmdpb.AdminRequest: raft_cmdpb.AdminCmdType cmd_type = 1; raft_cmdpb.ChangePeerRequest change_peer = 2; raft_cmdpb.SplitRequest split = 3; raft_cmdpb.CompactLogRequest compact_log = 4; raft_cmdpb.TransferLeaderRequest transfer_leader = 5; raft_cmdpb.ChangePeerV2Request change_peer_v2 = 6;
raft_cmdpb.AdminResponse: raft_cmdpb.AdminCmdType cmd_type = 1; raft_cmdpb.ChangePeerResponse change_peer = 2; raft_cmdpb.SplitResponse split = 3; raft_cmdpb.CompactLogResponse compact_log = 4; raft_cmdpb.TransferLeaderResponse transfer_leader = 5; raft_cmdpb.ChangePeerV2Response change_peer_v2 = 6;
raft_cmdpb.RaftRequestHeader: uint64 region_id = 1; metapb.Peer peer = 2; metapb.RegionEpoch region_epoch = 3; uint64 term = 4; uint64 client_id = 5; uint64 sequence = 6; raft_cmdpb.ReadMode read_mode = 7;
raft_cmdpb.RaftResponseHeader: errorpb.Error error = 1; uint64 current_term = 2;
raft_cmdpb.RaftCmdRequest: raft_cmdpb.RaftRequestHeader header = 1; repeated raft_cmdpb.Request requests = 2; raft_cmdpb.AdminRequest admin_request = 3;
raft_cmdpb.RaftCmdResponse: raft_cmdpb.RaftResponseHeader header = 1; repeated raft_cmdpb.Response responses = 2; raft_cmdpb.AdminResponse admin_response = 3;
errorpb.NotLeader: uint64 region_id = 1; metapb.Peer leader = 2;
errorpb.RegionNotFound: uint64 region_id = 1;
errorpb.KeyNotInRegion: bytes key = 1; uint64 region_id = 2; bytes start_key = 3; bytes end_key = 4;
errorpb.EpochNotMatch: repeated metapb.Region current_regions = 1;
errorpb.ServerIsBusy: string reason = 1;
errorpb.StaleCommand:
errorpb.StoreNotMatch: uint64 to_store_id = 1; uint64 actual_store_id = 2;
errorpb.RaftEntryTooLarge: uint64 region_id = 1; uint64 entry_size = 2;
errorpb.Error: string message = 1; errorpb.NotLeader not_leader = 2; errorpb.RegionNotFound region_not_found = 3; errorpb.KeyNotInRegion key_not_in_region = 4; errorpb.EpochNotMatch epoch_not_match = 5; errorpb.ServerIsBusy server_is_busy = 6; errorpb.StaleCommand stale_command = 7; errorpb.StoreNotMatch store_not_match = 8; errorpb.RaftEntryTooLarge raft_entry_too_large = 9; errorpb.InvalidRequest invalid_request = 10; errorpb.StaleSequence stale_sequence = 11;
raft_cmdpb.CompareAndSwapRequest: bytes key = 1; bytes expected = 2; bool expected_absent = 3; bytes value = 4;
raft_cmdpb.CompareAndSwapResponse: bool succeeded = 1; bytes previous = 2; bool previous_not_found = 3;
raft_cmdpb.DeleteIfEqualRequest: bytes key = 1; bytes expected = 2;
raft_cmdpb.UserRequest: string name = 1; bytes input = 2;
raft_cmdpb.UserResponse: bytes output = 1; bool failed = 2; string error = 3;
errorpb.InvalidRequest: string reason = 1;
errorpb.StaleSequence: uint64 client_id = 1; uint64 sequence = 2; uint64 applied_sequence = 3;
raft_serverpb.LeaderCheck: uint64 id = 1; repeated raft_serverpb.LeaderCheckRegion regions = 2;
raft_serverpb.LeaderCheckRegion: uint64 region_id = 1; uint64 term = 2; uint64 leader_peer_id = 3; uint64 peer_id = 4;
raft_serverpb.LeaderCheckResponse: uint64 id = 1; repeated raft_serverpb.LeaderCheckAnswer answers = 2;
raft_serverpb.LeaderCheckAnswer: uint64 region_id = 1; uint64 term = 2; bool confirmed = 3;
";

/// Renders a message's schema from the generated descriptor in the format of
/// [`CONTRACT`].
pub(crate) fn render(d: &MessageDescriptor) -> String {
    let mut line = format!("{}:", d.full_name());
    for f in d.fields() {
        let p = f.proto();
        let ty = match p.get_field_type() {
            FieldDescriptorProto_Type::TYPE_UINT64 => "uint64".to_owned(),
            FieldDescriptorProto_Type::TYPE_UINT32 => "uint32".to_owned(),
            FieldDescriptorProto_Type::TYPE_STRING => "string".to_owned(),
            FieldDescriptorProto_Type::TYPE_BYTES => "bytes".to_owned(),
            FieldDescriptorProto_Type::TYPE_BOOL => "bool".to_owned(),
            FieldDescriptorProto_Type::TYPE_MESSAGE | FieldDescriptorProto_Type::TYPE_ENUM => {
                p.get_type_name().trim_start_matches('.').to_owned()
            }
            other => format!("{other:?}"),
        };
        let repeated = if p.get_label() == FieldDescriptorProto_Label::LABEL_REPEATED {
            "repeated "
        } else {
            ""
        };
        line.push_str(&format!(
            " {repeated}{ty} {} = {};",
            p.get_name(),
            p.get_number()
        ));
    }
    line
}

pub(crate) fn d<M: Message>() -> &'static MessageDescriptor {
    MessageDescriptor::for_type::<M>()
}

#[test]
fn every_message_matches_the_field_number_contract() {
    let descriptors = [
        d::<metapb::Store>(),
        d::<metapb::RegionEpoch>(),
        d::<metapb::Peer>(),
        d::<metapb::Region>(),
        d::<raft_serverpb::RaftMessage>(),
        d::<raft_serverpb::RaftLocalState>(),
        d::<raft_serverpb::RaftTruncatedState>(),
        d::<raft_serverpb::RaftApplyState>(),
        d::<raft_serverpb::RegionLocalState>(),
        d::<raft_serverpb::StoreIdent>(),
        d::<raft_cmdpb::GetRequest>(),
        d::<raft_cmdpb::GetResponse>(),
        d::<raft_cmdpb::PutRequest>(),
        d::<raft_cmdpb::PutResponse>(),
        d::<raft_cmdpb::DeleteRequest>(),
        d::<raft_cmdpb::DeleteResponse>(),
        d::<raft_cmdpb::Request>(),
        d::<raft_cmdpb::Response>(),
        d::<raft_cmdpb::ChangePeerRequest>(),
        d::<raft_cmdpb::ChangePeerResponse>(),
        d::<raft_cmdpb::ChangePeerV2Request>(),
        d::<raft_cmdpb::ChangePeerV2Response>(),
        d::<raft_cmdpb::SplitRequest>(),
        d::<raft_cmdpb::SplitResponse>(),
        d::<raft_cmdpb::CompactLogRequest>(),
        d::<raft_cmdpb::CompactLogResponse>(),
        d::<raft_cmdpb::TransferLeaderRequest>(),
        d::<raft_cmdpb::TransferLeaderResponse>(),
        d::<raft_cmdpb::AdminRequest>(),
        d::<raft_cmdpb::AdminResponse>(),
        d::<raft_cmdpb::RaftRequestHeader>(),
        d::<raft_cmdpb::RaftResponseHeader>(),
        d::<raft_cmdpb::RaftCmdRequest>(),
        d::<raft_cmdpb::RaftCmdResponse>(),
        d::<errorpb::NotLeader>(),
        d::<errorpb::RegionNotFound>(),
        d::<errorpb::KeyNotInRegion>(),
        d::<errorpb::EpochNotMatch>(),
        d::<errorpb::ServerIsBusy>(),
        d::<errorpb::StaleCommand>(),
        d::<errorpb::StoreNotMatch>(),
        d::<errorpb::RaftEntryTooLarge>(),
        d::<errorpb::Error>(),
        d::<raft_cmdpb::CompareAndSwapRequest>(),
        d::<raft_cmdpb::CompareAndSwapResponse>(),
        d::<raft_cmdpb::DeleteIfEqualRequest>(),
        d::<raft_cmdpb::UserRequest>(),
        d::<raft_cmdpb::UserResponse>(),
        d::<errorpb::InvalidRequest>(),
        d::<errorpb::StaleSequence>(),
        d::<raft_serverpb::LeaderCheck>(),
        d::<raft_serverpb::LeaderCheckRegion>(),
        d::<raft_serverpb::LeaderCheckResponse>(),
        d::<raft_serverpb::LeaderCheckAnswer>(),
    ];
    let expected: Vec<&str> = CONTRACT.lines().collect();
    let actual: Vec<String> = descriptors.iter().map(|d| render(d)).collect();
    assert_eq!(actual.len(), expected.len(), "message list differs");
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!(a, e);
    }
}

fn values<E: ProtobufEnum>() -> Vec<(&'static str, i32)> {
    E::values()
        .iter()
        .map(|v| (v.descriptor().name(), v.value()))
        .collect()
}

#[test]
fn enum_values_match_the_contract() {
    assert_eq!(
        values::<metapb::PeerRole>(),
        [
            ("Voter", 0),
            ("Learner", 1),
            ("IncomingVoter", 2),
            ("DemotingVoter", 3)
        ]
    );
    assert_eq!(
        values::<raft_serverpb::PeerState>(),
        [("Normal", 0), ("Applying", 1), ("Tombstone", 2)]
    );
    assert_eq!(
        values::<raft_serverpb::ExtraMessageType>(),
        [
            ("NoExtra", 0),
            ("HibernateRequest", 1),
            ("HibernateResponse", 2),
            ("WakeUp", 3),
            ("LeaderCheckRequest", 4),
            ("LeaderCheckResponse", 5)
        ]
    );
    assert_eq!(
        values::<raft_cmdpb::CmdType>(),
        [
            ("Invalid", 0),
            ("Get", 1),
            ("Put", 3),
            ("Delete", 4),
            ("CompareAndSwap", 5),
            ("DeleteIfEqual", 6),
            ("User", 7)
        ]
    );
    assert_eq!(
        values::<raft_cmdpb::ReadMode>(),
        [("Log", 0), ("ReadIndex", 1), ("Lease", 2), ("Follower", 3)]
    );
    assert_eq!(
        values::<raft_cmdpb::AdminCmdType>(),
        [
            ("InvalidAdmin", 0),
            ("ChangePeer", 1),
            ("Split", 2),
            ("CompactLog", 3),
            ("TransferLeader", 4),
            ("ChangePeerV2", 5)
        ]
    );
}

#[test]
fn region_encodes_to_the_agreed_bytes() {
    let mut region = metapb::Region::default();
    region.set_id(7);
    region.set_start_key(b"a".to_vec());
    region.set_end_key(b"z".to_vec());
    region.mut_region_epoch().set_conf_ver(2);
    region.mut_region_epoch().set_version(3);
    let mut peer = metapb::Peer::default();
    peer.set_id(4);
    peer.set_store_id(5);
    peer.set_role(metapb::PeerRole::Learner);
    region.mut_peers().push(peer);
    #[rustfmt::skip]
    let expected = [
        0x08, 7,                          // 1: id, varint
        0x12, 1, b'a',                    // 2: start_key, bytes
        0x1a, 1, b'z',                    // 3: end_key, bytes
        0x22, 4, 0x08, 2, 0x10, 3,        // 4: region_epoch {conf_ver = 1, version = 2}
        0x2a, 6, 0x08, 4, 0x10, 5, 0x18, 1, // 5: peers {id = 1, store_id = 2, role = 3}
    ];
    assert_eq!(encode(&region).unwrap(), expected);
}

#[test]
fn raft_message_encodes_to_the_agreed_bytes() {
    let mut inner = RaftMsg::default();
    inner.set_msg_type(MessageType::MsgAppend);
    inner.set_to(2);
    let mut entry = Entry::default();
    entry.set_index(1);
    inner.mut_entries().push(entry);

    let mut msg = raft_serverpb::RaftMessage::default();
    msg.set_region_id(1);
    msg.mut_from_peer().set_id(1);
    msg.mut_to_peer().set_id(2);
    msg.set_message(inner);
    msg.mut_region_epoch().set_version(1);
    msg.set_is_tombstone(true);
    msg.set_start_key(b"s".to_vec());
    msg.set_end_key(b"e".to_vec());
    msg.set_extra(raft_serverpb::ExtraMessageType::HibernateResponse);
    #[rustfmt::skip]
    let expected = [
        0x08, 1,                          // 1: region_id
        0x12, 2, 0x08, 1,                 // 2: from_peer {id}
        0x1a, 2, 0x08, 2,                 // 3: to_peer {id}
        0x22, 8,                          // 4: message (eraftpb.Message)
            0x08, 3,                      //    msg_type = MsgAppend
            0x10, 2,                      //    to = 2
            0x3a, 2, 0x18, 1,             //    entries {index = 1}
        0x2a, 2, 0x10, 1,                 // 5: region_epoch {version}
        0x30, 1,                          // 6: is_tombstone
        0x3a, 1, b's',                    // 7: start_key
        0x42, 1, b'e',                    // 8: end_key
        0x48, 2,                          // 9: extra = HibernateResponse
    ];
    assert_eq!(encode(&msg).unwrap(), expected);
}

#[test]
fn raft_cmd_request_encodes_to_the_agreed_bytes() {
    let mut cmd = raft_cmdpb::RaftCmdRequest::default();
    cmd.mut_header().set_region_id(1);
    cmd.mut_header().mut_peer().set_id(2);
    cmd.mut_header().mut_region_epoch().set_conf_ver(3);
    cmd.mut_header().set_term(4);
    let mut req = raft_cmdpb::Request::default();
    req.set_cmd_type(raft_cmdpb::CmdType::Put);
    req.mut_put().set_key(b"k".to_vec());
    req.mut_put().set_value(b"v".to_vec());
    cmd.mut_requests().push(req);
    let mut del = raft_cmdpb::Request::default();
    del.set_cmd_type(raft_cmdpb::CmdType::Delete);
    del.mut_delete().set_key(b"d".to_vec());
    cmd.mut_requests().push(del);
    #[rustfmt::skip]
    let expected = [
        0x0a, 12,                         // 1: header
            0x08, 1,                      //    region_id
            0x12, 2, 0x08, 2,             //    peer {id}
            0x1a, 2, 0x08, 3,             //    region_epoch {conf_ver}
            0x20, 4,                      //    term
        0x12, 10,                         // 2: requests[0]
            0x08, 3,                      //    cmd_type = Put (3)
            0x22, 6, 0x0a, 1, b'k', 0x12, 1, b'v', // put (4) {key, value}
        0x12, 7,                          // 2: requests[1]
            0x08, 4,                      //    cmd_type = Delete (4)
            0x2a, 3, 0x0a, 1, b'd',       //    delete (5) {key}
    ];
    assert_eq!(encode(&cmd).unwrap(), expected);
}

#[test]
fn admin_split_request_encodes_to_the_agreed_bytes() {
    let mut admin = raft_cmdpb::AdminRequest::default();
    admin.set_cmd_type(raft_cmdpb::AdminCmdType::Split);
    admin.mut_split().set_split_key(b"m".to_vec());
    admin.mut_split().set_new_region_id(9);
    admin.mut_split().set_new_peer_ids(vec![10, 11]);
    let mut cmd = raft_cmdpb::RaftCmdRequest::default();
    cmd.set_admin_request(admin);
    #[rustfmt::skip]
    let expected = [
        0x1a, 13,                         // 3: admin_request
            0x08, 2,                      //    cmd_type = Split (2)
            0x1a, 9,                      //    split (3)
                0x0a, 1, b'm',            //       split_key
                0x10, 9,                  //       new_region_id
                0x1a, 2, 10, 11,          //       new_peer_ids, packed
    ];
    assert_eq!(encode(&cmd).unwrap(), expected);
    // The unpacked form (one tag per element) decodes to the same request.
    let unpacked = [
        0x1a, 13, 0x08, 2, 0x1a, 9, 0x0a, 1, b'm', 0x10, 9, 0x18, 10, 0x18, 11,
    ];
    assert_eq!(
        kvproto_lite::decode::<raft_cmdpb::RaftCmdRequest>(&unpacked).unwrap(),
        cmd
    );
}

#[test]
fn error_details_encode_under_their_agreed_numbers() {
    // Each detail of errorpb.Error, set alone and empty, is the tag
    // (number << 3 | 2) followed by length 0.
    let mut cases: Vec<(errorpb::Error, u8)> = Vec::new();
    let mut e = errorpb::Error::default();
    e.set_not_leader(Default::default());
    cases.push((e, 2));
    let mut e = errorpb::Error::default();
    e.set_region_not_found(Default::default());
    cases.push((e, 3));
    let mut e = errorpb::Error::default();
    e.set_key_not_in_region(Default::default());
    cases.push((e, 4));
    let mut e = errorpb::Error::default();
    e.set_epoch_not_match(Default::default());
    cases.push((e, 5));
    let mut e = errorpb::Error::default();
    e.set_server_is_busy(Default::default());
    cases.push((e, 6));
    let mut e = errorpb::Error::default();
    e.set_stale_command(Default::default());
    cases.push((e, 7));
    let mut e = errorpb::Error::default();
    e.set_store_not_match(Default::default());
    cases.push((e, 8));
    let mut e = errorpb::Error::default();
    e.set_raft_entry_too_large(Default::default());
    cases.push((e, 9));
    for (err, number) in cases {
        assert_eq!(
            encode(&err).unwrap(),
            [number << 3 | 2, 0],
            "field {number}"
        );
    }
    let mut e = errorpb::Error::default();
    e.set_message("x".to_owned());
    assert_eq!(encode(&e).unwrap(), [0x0a, 1, b'x']);
}

#[test]
fn persisted_states_encode_to_the_agreed_bytes() {
    let mut apply = raft_serverpb::RaftApplyState::default();
    apply.set_applied_index(5);
    apply.mut_truncated_state().set_index(3);
    apply.mut_truncated_state().set_term(2);
    apply.set_commit_index(6);
    apply.set_commit_term(2);
    assert_eq!(
        encode(&apply).unwrap(),
        [0x08, 5, 0x12, 4, 0x08, 3, 0x10, 2, 0x18, 6, 0x20, 2]
    );

    let mut local = raft_serverpb::RaftLocalState::default();
    local.mut_hard_state().set_term(1);
    local.mut_hard_state().set_vote(2);
    local.mut_hard_state().set_commit(3);
    local.set_last_index(4);
    assert_eq!(
        encode(&local).unwrap(),
        [0x0a, 6, 0x08, 1, 0x10, 2, 0x18, 3, 0x10, 4]
    );

    let mut region_state = raft_serverpb::RegionLocalState::default();
    region_state.set_state(raft_serverpb::PeerState::Tombstone);
    region_state.mut_region().set_id(1);
    assert_eq!(encode(&region_state).unwrap(), [0x08, 2, 0x12, 2, 0x08, 1]);

    let mut ident = raft_serverpb::StoreIdent::default();
    ident.set_cluster_id(1);
    ident.set_store_id(2);
    assert_eq!(encode(&ident).unwrap(), [0x08, 1, 0x10, 2]);
}
