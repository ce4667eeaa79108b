//! Every message type survives encode → decode unchanged, with random field
//! values, and re-encodes to the same bytes.

use kvproto_lite::errorpb;
use kvproto_lite::raft_cmdpb::{
    CompactLogResponse, DeleteResponse, PutResponse, TransferLeaderResponse,
};
use kvproto_lite::{decode, encode};
use proptest::prelude::*;
use protobuf::Message;

use crate::strategies::*;

/// Encodes, decodes and re-encodes `msg`, checking nothing changed.
fn check_roundtrip<M: Message + PartialEq>(msg: &M) -> Result<(), TestCaseError> {
    let bytes = encode(msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(bytes.len() as u32, msg.compute_size());
    let decoded: M = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, msg);
    let again = encode(&decoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(again, bytes);
    Ok(())
}

macro_rules! roundtrip_tests {
    ($($name:ident: $strategy:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            $(
                #[test]
                fn $name(msg in $strategy) {
                    check_roundtrip(&msg)?;
                }
            )*
        }
    };
}

roundtrip_tests! {
    // metapb
    store_roundtrips: store();
    region_epoch_roundtrips: region_epoch();
    peer_roundtrips: peer();
    region_roundtrips: region();
    // raft_serverpb
    raft_message_roundtrips: raft_message();
    raft_local_state_roundtrips: raft_local_state();
    raft_truncated_state_roundtrips: raft_truncated_state();
    raft_apply_state_roundtrips: raft_apply_state();
    region_local_state_roundtrips: region_local_state();
    store_ident_roundtrips: store_ident();
    // raft_cmdpb
    get_request_roundtrips: get_request();
    get_response_roundtrips: get_response();
    put_request_roundtrips: put_request();
    put_response_roundtrips: Just(PutResponse::default());
    delete_request_roundtrips: delete_request();
    delete_response_roundtrips: Just(DeleteResponse::default());
    request_roundtrips: request();
    response_roundtrips: response();
    change_peer_request_roundtrips: change_peer_request();
    change_peer_response_roundtrips: change_peer_response();
    split_request_roundtrips: split_request();
    split_response_roundtrips: split_response();
    compact_log_request_roundtrips: compact_log_request();
    compact_log_response_roundtrips: Just(CompactLogResponse::default());
    transfer_leader_request_roundtrips: transfer_leader_request();
    transfer_leader_response_roundtrips: Just(TransferLeaderResponse::default());
    admin_request_roundtrips: admin_request();
    admin_response_roundtrips: admin_response();
    raft_request_header_roundtrips: raft_request_header();
    raft_response_header_roundtrips: raft_response_header();
    raft_cmd_request_roundtrips: raft_cmd_request();
    raft_cmd_response_roundtrips: raft_cmd_response();
    // errorpb
    not_leader_roundtrips: not_leader();
    region_not_found_roundtrips: region_not_found();
    key_not_in_region_roundtrips: key_not_in_region();
    epoch_not_match_roundtrips: epoch_not_match();
    server_is_busy_roundtrips: server_is_busy();
    stale_command_roundtrips: Just(errorpb::StaleCommand::default());
    store_not_match_roundtrips: store_not_match();
    raft_entry_too_large_roundtrips: raft_entry_too_large();
    error_roundtrips: error();
}

#[test]
fn get_response_keeps_absent_apart_from_empty_value() {
    let mut absent = kvproto_lite::raft_cmdpb::GetResponse::default();
    absent.set_not_found(true);
    let empty = kvproto_lite::raft_cmdpb::GetResponse::default();
    let absent2: kvproto_lite::raft_cmdpb::GetResponse = decode(&encode(&absent).unwrap()).unwrap();
    let empty2: kvproto_lite::raft_cmdpb::GetResponse = decode(&encode(&empty).unwrap()).unwrap();
    assert!(absent2.get_not_found());
    assert!(!empty2.get_not_found());
    assert_eq!(empty2.get_value(), b"");
}

#[test]
fn set_but_empty_message_field_stays_set() {
    let mut region = kvproto_lite::metapb::Region::default();
    region.set_region_epoch(Default::default());
    let decoded: kvproto_lite::metapb::Region = decode(&encode(&region).unwrap()).unwrap();
    assert!(decoded.has_region_epoch());
    assert!(!decode::<kvproto_lite::metapb::Region>(&[])
        .unwrap()
        .has_region_epoch());
}
