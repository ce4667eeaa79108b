//! Truncated, malformed and random bytes decode to an error value (or to a
//! well-formed message), never to a panic.

use kvproto_lite::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use kvproto_lite::raft_serverpb::{RaftMessage, RegionLocalState};
use kvproto_lite::{decode, encode, errorpb, metapb, raft_cmdpb, raft_serverpb, Error};
use proptest::collection::vec;
use proptest::prelude::*;
use protobuf::Message;

use crate::strategies::*;

/// Decodes `bytes` as `M`; when that succeeds the result must be a
/// well-formed message (it re-encodes and decodes to itself).
fn decode_is_total<M: Message + PartialEq>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(msg) = decode::<M>(bytes) {
        let again = encode(&msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decode::<M>(&again).ok(), Some(msg));
    }
    Ok(())
}

/// Every prefix of `bytes` (an encoding of `M`) either fails to decode or
/// ends exactly on a field boundary, in which case it decodes to the
/// message made of those fields, which re-encodes to the same prefix.
fn prefixes_fail_or_end_on_field_boundary<M: Message + PartialEq>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    for len in 0..bytes.len() {
        let prefix = &bytes[..len];
        match decode::<M>(prefix) {
            Ok(msg) => {
                let again = encode(&msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(again.as_slice(), prefix);
            }
            Err(Error::Decode { .. }) => {}
            Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_for_any_message_type(bytes in vec(any::<u8>(), 0..128)) {
        decode_is_total::<metapb::Store>(&bytes)?;
        decode_is_total::<metapb::RegionEpoch>(&bytes)?;
        decode_is_total::<metapb::Peer>(&bytes)?;
        decode_is_total::<metapb::Region>(&bytes)?;
        decode_is_total::<raft_serverpb::RaftMessage>(&bytes)?;
        decode_is_total::<raft_serverpb::RaftLocalState>(&bytes)?;
        decode_is_total::<raft_serverpb::RaftTruncatedState>(&bytes)?;
        decode_is_total::<raft_serverpb::RaftApplyState>(&bytes)?;
        decode_is_total::<raft_serverpb::RegionLocalState>(&bytes)?;
        decode_is_total::<raft_serverpb::StoreIdent>(&bytes)?;
        decode_is_total::<raft_cmdpb::GetRequest>(&bytes)?;
        decode_is_total::<raft_cmdpb::GetResponse>(&bytes)?;
        decode_is_total::<raft_cmdpb::PutRequest>(&bytes)?;
        decode_is_total::<raft_cmdpb::PutResponse>(&bytes)?;
        decode_is_total::<raft_cmdpb::DeleteRequest>(&bytes)?;
        decode_is_total::<raft_cmdpb::DeleteResponse>(&bytes)?;
        decode_is_total::<raft_cmdpb::Request>(&bytes)?;
        decode_is_total::<raft_cmdpb::Response>(&bytes)?;
        decode_is_total::<raft_cmdpb::ChangePeerRequest>(&bytes)?;
        decode_is_total::<raft_cmdpb::ChangePeerResponse>(&bytes)?;
        decode_is_total::<raft_cmdpb::ChangePeerV2Request>(&bytes)?;
        decode_is_total::<raft_cmdpb::ChangePeerV2Response>(&bytes)?;
        decode_is_total::<raft_cmdpb::SplitRequest>(&bytes)?;
        decode_is_total::<raft_cmdpb::SplitResponse>(&bytes)?;
        decode_is_total::<raft_cmdpb::CompactLogRequest>(&bytes)?;
        decode_is_total::<raft_cmdpb::CompactLogResponse>(&bytes)?;
        decode_is_total::<raft_cmdpb::TransferLeaderRequest>(&bytes)?;
        decode_is_total::<raft_cmdpb::TransferLeaderResponse>(&bytes)?;
        decode_is_total::<raft_cmdpb::AdminRequest>(&bytes)?;
        decode_is_total::<raft_cmdpb::AdminResponse>(&bytes)?;
        decode_is_total::<raft_cmdpb::RaftRequestHeader>(&bytes)?;
        decode_is_total::<raft_cmdpb::RaftResponseHeader>(&bytes)?;
        decode_is_total::<raft_cmdpb::RaftCmdRequest>(&bytes)?;
        decode_is_total::<raft_cmdpb::RaftCmdResponse>(&bytes)?;
        decode_is_total::<errorpb::NotLeader>(&bytes)?;
        decode_is_total::<errorpb::RegionNotFound>(&bytes)?;
        decode_is_total::<errorpb::KeyNotInRegion>(&bytes)?;
        decode_is_total::<errorpb::EpochNotMatch>(&bytes)?;
        decode_is_total::<errorpb::ServerIsBusy>(&bytes)?;
        decode_is_total::<errorpb::StaleCommand>(&bytes)?;
        decode_is_total::<errorpb::StoreNotMatch>(&bytes)?;
        decode_is_total::<errorpb::RaftEntryTooLarge>(&bytes)?;
        decode_is_total::<errorpb::Error>(&bytes)?;
    }

    #[test]
    fn valid_encoding_with_random_bytes_appended_never_panics(
        cmd in raft_cmd_request(),
        tail in vec(any::<u8>(), 1..32),
    ) {
        let mut bytes = encode(&cmd).unwrap();
        bytes.extend_from_slice(&tail);
        decode_is_total::<RaftCmdRequest>(&bytes)?;
    }

    #[test]
    fn valid_encoding_with_one_byte_flipped_never_panics(
        msg in raft_message(),
        pos in any::<prop::sample::Index>(),
        flip in 1u8..,
    ) {
        let mut bytes = encode(&msg).unwrap();
        if !bytes.is_empty() {
            let i = pos.index(bytes.len());
            bytes[i] ^= flip;
        }
        decode_is_total::<RaftMessage>(&bytes)?;
    }

    #[test]
    fn truncated_raft_cmd_request_fails_or_ends_on_field_boundary(cmd in raft_cmd_request()) {
        prefixes_fail_or_end_on_field_boundary::<RaftCmdRequest>(&encode(&cmd).unwrap())?;
    }

    #[test]
    fn truncated_raft_cmd_response_fails_or_ends_on_field_boundary(resp in raft_cmd_response()) {
        prefixes_fail_or_end_on_field_boundary::<RaftCmdResponse>(&encode(&resp).unwrap())?;
    }

    #[test]
    fn truncated_raft_message_fails_or_ends_on_field_boundary(msg in raft_message()) {
        prefixes_fail_or_end_on_field_boundary::<RaftMessage>(&encode(&msg).unwrap())?;
    }

    #[test]
    fn truncated_region_local_state_fails_or_ends_on_field_boundary(state in region_local_state()) {
        prefixes_fail_or_end_on_field_boundary::<RegionLocalState>(&encode(&state).unwrap())?;
    }

    /// A RaftMessage whose only field is the raft message has no field
    /// boundary inside it: every non-empty proper prefix is an error.
    #[test]
    fn raft_message_cut_inside_its_raft_message_is_an_error(inner in eraft_message()) {
        let mut msg = RaftMessage::default();
        msg.set_message(inner);
        let bytes = encode(&msg).unwrap();
        for len in 1..bytes.len() {
            prop_assert!(decode::<RaftMessage>(&bytes[..len]).is_err(), "prefix of {} bytes decoded", len);
        }
    }
}

#[test]
fn huge_length_prefix_is_an_error_not_an_allocation() {
    // Field 2 (`address`) claiming a 4 GiB string.
    let bytes = [0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a'];
    assert!(decode::<metapb::Store>(&bytes).is_err());
    // Field 4 (`message`) of a RaftMessage claiming 2^63 bytes.
    let bytes = [
        0x22, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
    ];
    assert!(decode::<RaftMessage>(&bytes).is_err());
}

#[test]
fn overlong_varint_is_an_error() {
    // Eleven continuation bytes: longer than any 64-bit varint.
    let mut bytes = vec![0x08];
    bytes.extend_from_slice(&[0xff; 11]);
    assert!(decode::<metapb::Peer>(&bytes).is_err());
}

#[test]
fn nested_message_with_bad_wire_type_is_an_error() {
    // RaftCmdRequest.header (field 1, length 2) holding field 1 with wire type 7.
    assert!(decode::<RaftCmdRequest>(&[0x0a, 0x02, 0x0f, 0x01]).is_err());
}

#[test]
fn unknown_fields_are_skipped_not_rejected() {
    // Field 15 (varint 1) is not in the schema; then Store.id = 5.
    let store: metapb::Store = decode(&[0x78, 0x01, 0x08, 0x05]).unwrap();
    assert_eq!(store.get_id(), 5);
}
