//! Encoding and decoding any message with a typed error.

use protobuf::{CodedInputStream, Message};

use crate::{Error, Result};

/// Decodes a message of type `M` from `bytes`.
///
/// Empty input decodes to `M::default()`, as in every protobuf runtime.
///
/// # Errors
///
/// [`Error::Decode`] when `bytes` is not a valid encoding of `M` (for
/// example truncated inside a field, an invalid wire type, a length past the
/// end of the input, or invalid UTF-8 in a string field). Never panics.
///
/// Prefer this over `protobuf::Message::parse_from_bytes`, which accepts a
/// nested message whose length runs past the end of the input (see the
/// crate docs, "Decoding untrusted bytes").
///
/// # Examples
///
/// ```
/// use kvproto_lite::{decode, encode, metapb::Peer};
///
/// let mut peer = Peer::default();
/// peer.set_id(3);
/// peer.set_store_id(1);
/// let bytes = encode(&peer)?;
/// assert_eq!(decode::<Peer>(&bytes)?, peer);
///
/// // A length-delimited field whose length runs past the end of the input.
/// assert!(decode::<kvproto_lite::metapb::Region>(&[0x12, 0x05, b'a']).is_err());
/// # Ok::<(), kvproto_lite::Error>(())
/// ```
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M> {
    parse_bounded(bytes).map_err(|source| Error::Decode {
        message: std::any::type_name::<M>(),
        source,
    })
}

/// Parses `bytes` with the input length as the stream's limit.
///
/// `protobuf::Message::parse_from_bytes` (2.28) starts with an unlimited
/// stream, so a nested message whose length prefix runs past the end of the
/// input is accepted as if the input ended at a field boundary: a truncated
/// `RaftCmdRequest` could decode as a shorter, valid-looking command. With
/// the limit set to the input length, such a length prefix is an error.
fn parse_bounded<M: Message>(bytes: &[u8]) -> protobuf::ProtobufResult<M> {
    let mut input = CodedInputStream::from_bytes(bytes);
    let unlimited = input.push_limit(bytes.len() as u64)?;
    let msg = M::parse_from(&mut input)?;
    input.check_eof()?;
    input.pop_limit(unlimited);
    Ok(msg)
}

/// Encodes `msg` into a new byte vector.
///
/// # Errors
///
/// [`Error::Encode`] if the protobuf runtime refuses the message. The proto3
/// schemas of this crate have no required fields, so this does not happen
/// for them in practice; the error exists because the runtime's signature
/// allows it.
///
/// # Examples
///
/// ```
/// use kvproto_lite::{encode, metapb::Store};
///
/// let mut store = Store::default();
/// store.set_id(1);
/// // Field 1 (`id`), varint wire type: tag 0x08, then the value.
/// assert_eq!(encode(&store)?, vec![0x08, 0x01]);
/// # Ok::<(), kvproto_lite::Error>(())
/// ```
pub fn encode<M: Message>(msg: &M) -> Result<Vec<u8>> {
    msg.write_to_bytes().map_err(|source| Error::Encode {
        message: std::any::type_name::<M>(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metapb::{Region, Store};
    use crate::raft_cmdpb::RaftCmdRequest;

    #[test]
    fn empty_input_decodes_to_default() {
        let region: Region = decode(&[]).unwrap();
        assert_eq!(region, Region::default());
    }

    #[test]
    fn invalid_wire_type_is_a_decode_error() {
        // Field 1 with wire type 7, which does not exist.
        let err = decode::<Store>(&[0x0f, 0x01]).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }));
    }

    #[test]
    fn field_number_zero_is_a_decode_error() {
        assert!(decode::<RaftCmdRequest>(&[0x00, 0x01]).is_err());
    }

    #[test]
    fn length_past_end_of_input_is_a_decode_error() {
        // Field 2 (`address`), length 10, but only one byte follows.
        assert!(decode::<Store>(&[0x12, 0x0a, b'x']).is_err());
    }

    #[test]
    fn nested_message_longer_than_input_is_a_decode_error() {
        // Field 1 (`header`) claiming 2 bytes with none following.
        let bytes = [0x0a, 0x02];
        assert!(decode::<RaftCmdRequest>(&bytes).is_err());
        // The unbounded runtime entry point accepts it: the reason `decode` exists.
        assert!(<RaftCmdRequest as Message>::parse_from_bytes(&bytes).is_ok());
    }

    #[test]
    fn unterminated_varint_is_a_decode_error() {
        assert!(decode::<Store>(&[0x08, 0xff, 0xff]).is_err());
    }

    #[test]
    fn invalid_utf8_in_string_field_is_a_decode_error() {
        assert!(decode::<Store>(&[0x12, 0x02, 0xc3, 0x28]).is_err());
    }

    #[test]
    fn decode_error_names_the_expected_message() {
        let err = decode::<Store>(&[0x0f]).unwrap_err();
        assert!(err.to_string().contains("metapb::Store"), "{err}");
    }

    #[test]
    fn encode_then_decode_gives_the_same_message() {
        let mut store = Store::default();
        store.set_id(7);
        store.set_address("127.0.0.1:20160".to_owned());
        assert_eq!(decode::<Store>(&encode(&store).unwrap()).unwrap(), store);
    }
}
