//! The generated types share raft's own `eraftpb` types: a `RaftMessage`
//! decoded from bytes steps straight into a `raft::RawNode`.

use kvproto_lite::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, HardState, MessageType};
use kvproto_lite::metapb::{Peer, RegionEpoch};
use kvproto_lite::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, CmdType, PutRequest, RaftCmdRequest, Request,
};
use kvproto_lite::raft_serverpb::{RaftLocalState, RaftMessage};
use kvproto_lite::{decode, encode};
use raft::storage::MemStorage;
use raft::{Config, RawNode};

fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn peer(id: u64, store_id: u64) -> Peer {
    let mut p = Peer::default();
    p.set_id(id);
    p.set_store_id(store_id);
    p
}

fn put_cmd(key: &[u8], value: &[u8]) -> RaftCmdRequest {
    let mut put = PutRequest::default();
    put.set_key(key.to_vec());
    put.set_value(value.to_vec());
    let mut req = Request::default();
    req.set_cmd_type(CmdType::Put);
    req.set_put(put);
    let mut cmd = RaftCmdRequest::default();
    cmd.mut_header().set_region_id(1);
    cmd.mut_requests().push(req);
    cmd
}

/// A MsgAppend from leader 1 to follower 2 carrying entries, wrapped in a
/// RaftMessage for region 1.
fn append_message(entries: Vec<Entry>) -> RaftMessage {
    let mut msg = raft::eraftpb::Message::default();
    msg.set_msg_type(MessageType::MsgAppend);
    msg.set_from(1);
    msg.set_to(2);
    msg.set_term(1);
    msg.set_log_term(0);
    msg.set_index(0);
    msg.set_commit(entries.len() as u64);
    msg.set_entries(entries.into());

    let mut raft_msg = RaftMessage::default();
    raft_msg.set_region_id(1);
    raft_msg.set_from_peer(peer(1, 1));
    raft_msg.set_to_peer(peer(2, 2));
    let mut epoch = RegionEpoch::default();
    epoch.set_conf_ver(1);
    epoch.set_version(1);
    raft_msg.set_region_epoch(epoch);
    raft_msg.set_message(msg);
    raft_msg
}

#[test]
fn raft_message_field_is_raft_eraftpb_message() {
    // These bindings only compile if the generated types are raft's own.
    let mut raft_msg = RaftMessage::default();
    let inner: raft::eraftpb::Message = raft_msg.take_message();
    raft_msg.set_message(inner);
    let _: &raft::eraftpb::HardState = RaftLocalState::default().get_hard_state();
    let _: raft::eraftpb::ConfChangeType = ChangePeerRequest::default().get_change_type();
    assert!(raft_msg.has_message());
}

#[test]
fn raft_message_with_entries_roundtrips_and_steps_into_raw_node() {
    let mut entry = Entry::default();
    entry.set_entry_type(EntryType::EntryNormal);
    entry.set_term(1);
    entry.set_index(1);
    entry.set_data(encode(&put_cmd(b"k", b"v")).unwrap().into());
    let sent = append_message(vec![entry]);

    let bytes = encode(&sent).unwrap();
    let mut received: RaftMessage = decode(&bytes).unwrap();
    assert_eq!(received, sent);

    let storage = MemStorage::new_with_conf_state((vec![1, 2], vec![]));
    let config = Config {
        id: 2,
        ..Default::default()
    };
    let mut node = RawNode::new(&config, storage, &discard_logger()).unwrap();
    node.step(received.take_message()).unwrap();

    assert!(node.has_ready());
    let ready = node.ready();
    assert_eq!(ready.entries().len(), 1);
    let appended = &ready.entries()[0];
    assert_eq!((appended.get_index(), appended.get_term()), (1, 1));
    let cmd: RaftCmdRequest = decode(appended.get_data()).unwrap();
    assert_eq!(cmd.get_requests()[0].get_put().get_key(), b"k");
    assert_eq!(cmd.get_requests()[0].get_put().get_value(), b"v");
    assert_eq!(ready.hs().map(HardState::get_term), Some(1));
}

#[test]
fn conf_change_entry_carries_change_peer_command_in_context() {
    let mut change = ChangePeerRequest::default();
    change.set_change_type(ConfChangeType::AddLearnerNode);
    change.set_peer(peer(3, 3));
    let mut admin = AdminRequest::default();
    admin.set_cmd_type(AdminCmdType::ChangePeer);
    admin.set_change_peer(change);
    let mut cmd = RaftCmdRequest::default();
    cmd.set_admin_request(admin);

    let mut cc = ConfChange::default();
    cc.set_change_type(ConfChangeType::AddLearnerNode);
    cc.set_node_id(3);
    cc.set_context(encode(&cmd).unwrap().into());

    let mut entry = Entry::default();
    entry.set_entry_type(EntryType::EntryConfChange);
    entry.set_term(1);
    entry.set_index(1);
    entry.set_data(encode(&cc).unwrap().into());

    let received: RaftMessage = decode(&encode(&append_message(vec![entry])).unwrap()).unwrap();
    let entry = &received.get_message().get_entries()[0];
    let cc: ConfChange = decode(entry.get_data()).unwrap();
    let cmd: RaftCmdRequest = decode(cc.get_context()).unwrap();
    let change = cmd.get_admin_request().get_change_peer();
    assert_eq!(change.get_change_type(), cc.get_change_type());
    assert_eq!(change.get_peer().get_id(), cc.get_node_id());
}
