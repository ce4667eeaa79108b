//! The gRPC contract: the messages of `kvrpcpb` and `transportpb` (field
//! numbers and types), the services declared in the `.proto` files against
//! the hand-written method table [`kvproto_lite::grpc::METHODS`], round
//! trips and sample encodings.

use kvproto_lite::grpc::{MethodDesc, METHODS};
use kvproto_lite::{decode, encode, kvrpcpb, transportpb};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::strategies::{bytes, error, peer, raft_message, region, region_epoch, store};
use crate::wire_contract::{d, render};

/// The schema of the service messages, one message per line, in the format
/// of the `wire_contract` table.
const CONTRACT: &str = "\
kvrpcpb.Context: uint64 region_id = 1; metapb.RegionEpoch region_epoch = 2; metapb.Peer peer = 3; uint64 client_id = 4; uint64 sequence = 5;
kvrpcpb.KvPair: bytes key = 1; bytes value = 2;
kvrpcpb.GetRequest: kvrpcpb.Context context = 1; bytes key = 2; raft_cmdpb.ReadMode read_mode = 3;
kvrpcpb.GetResponse: errorpb.Error region_error = 1; bytes value = 2; bool not_found = 3;
kvrpcpb.PutRequest: kvrpcpb.Context context = 1; bytes key = 2; bytes value = 3;
kvrpcpb.PutResponse: errorpb.Error region_error = 1;
kvrpcpb.DeleteRequest: kvrpcpb.Context context = 1; bytes key = 2;
kvrpcpb.DeleteResponse: errorpb.Error region_error = 1;
kvrpcpb.ScanRequest: kvrpcpb.Context context = 1; bytes start_key = 2; bytes end_key = 3; uint32 limit = 4; raft_cmdpb.ReadMode read_mode = 5;
kvrpcpb.ScanResponse: errorpb.Error region_error = 1; repeated kvrpcpb.KvPair pairs = 2; uint32 limit = 3;
kvrpcpb.BatchGetRequest: kvrpcpb.Context context = 1; repeated bytes keys = 2; raft_cmdpb.ReadMode read_mode = 3;
kvrpcpb.BatchGetResponse: errorpb.Error region_error = 1; repeated kvrpcpb.KvPair pairs = 2;
kvrpcpb.BatchPutRequest: kvrpcpb.Context context = 1; repeated kvrpcpb.KvPair pairs = 2;
kvrpcpb.BatchPutResponse: errorpb.Error region_error = 1;
kvrpcpb.CompareAndSwapRequest: kvrpcpb.Context context = 1; bytes key = 2; bytes expected = 3; bool expected_absent = 4; bytes value = 5;
kvrpcpb.CompareAndSwapResponse: errorpb.Error region_error = 1; bool succeeded = 2; bytes previous = 3; bool previous_not_found = 4;
kvrpcpb.DeleteIfEqualRequest: kvrpcpb.Context context = 1; bytes key = 2; bytes expected = 3;
kvrpcpb.DeleteIfEqualResponse: errorpb.Error region_error = 1; bool succeeded = 2; bytes previous = 3; bool previous_not_found = 4;
kvrpcpb.GetRegionRequest: bytes key = 1;
kvrpcpb.RegionInfo: metapb.Region region = 1; metapb.Peer leader = 2; uint64 leader_term = 3;
kvrpcpb.GetRegionResponse: errorpb.Error region_error = 1; kvrpcpb.RegionInfo region = 2;
kvrpcpb.ListRegionsRequest:
kvrpcpb.ListRegionsResponse: repeated kvrpcpb.RegionInfo regions = 1;
kvrpcpb.GetStoresRequest:
kvrpcpb.GetStoresResponse: uint64 store_id = 1; repeated metapb.Store stores = 2; uint64 cluster_id = 3;
kvrpcpb.AddStoreRequest: metapb.Store store = 1;
kvrpcpb.AddStoreResponse: errorpb.Error error = 1; repeated metapb.Store stores = 2;
kvrpcpb.AdminCommandRequest: raft_cmdpb.RaftCmdRequest command = 1;
kvrpcpb.AdminCommandResponse: raft_cmdpb.RaftCmdResponse response = 1;
kvrpcpb.BatchCommandsRequest: repeated raft_cmdpb.RaftCmdRequest commands = 1;
kvrpcpb.BatchCommandsResponse: repeated raft_cmdpb.RaftCmdResponse responses = 1;
transportpb.BatchRaftMessage: repeated raft_serverpb.RaftMessage msgs = 1;
transportpb.SnapshotChunk: raft_serverpb.RaftMessage message = 1; bytes data = 2;
transportpb.Done:
";

#[test]
fn service_messages_match_the_field_number_contract() {
    let descriptors = [
        d::<kvrpcpb::Context>(),
        d::<kvrpcpb::KvPair>(),
        d::<kvrpcpb::GetRequest>(),
        d::<kvrpcpb::GetResponse>(),
        d::<kvrpcpb::PutRequest>(),
        d::<kvrpcpb::PutResponse>(),
        d::<kvrpcpb::DeleteRequest>(),
        d::<kvrpcpb::DeleteResponse>(),
        d::<kvrpcpb::ScanRequest>(),
        d::<kvrpcpb::ScanResponse>(),
        d::<kvrpcpb::BatchGetRequest>(),
        d::<kvrpcpb::BatchGetResponse>(),
        d::<kvrpcpb::BatchPutRequest>(),
        d::<kvrpcpb::BatchPutResponse>(),
        d::<kvrpcpb::CompareAndSwapRequest>(),
        d::<kvrpcpb::CompareAndSwapResponse>(),
        d::<kvrpcpb::DeleteIfEqualRequest>(),
        d::<kvrpcpb::DeleteIfEqualResponse>(),
        d::<kvrpcpb::GetRegionRequest>(),
        d::<kvrpcpb::RegionInfo>(),
        d::<kvrpcpb::GetRegionResponse>(),
        d::<kvrpcpb::ListRegionsRequest>(),
        d::<kvrpcpb::ListRegionsResponse>(),
        d::<kvrpcpb::GetStoresRequest>(),
        d::<kvrpcpb::GetStoresResponse>(),
        d::<kvrpcpb::AddStoreRequest>(),
        d::<kvrpcpb::AddStoreResponse>(),
        d::<kvrpcpb::AdminCommandRequest>(),
        d::<kvrpcpb::AdminCommandResponse>(),
        d::<kvrpcpb::BatchCommandsRequest>(),
        d::<kvrpcpb::BatchCommandsResponse>(),
        d::<transportpb::BatchRaftMessage>(),
        d::<transportpb::SnapshotChunk>(),
        d::<transportpb::Done>(),
    ];
    let expected: Vec<&str> = CONTRACT.lines().collect();
    let actual: Vec<String> = descriptors.iter().map(|d| render(d)).collect();
    assert_eq!(actual.len(), expected.len(), "message list differs");
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!(a, e);
    }
}

/// The `rpc` lines of every `service` block of a `.proto` file, as method
/// descriptions (paths and message names fully qualified with the file's
/// package; the services only name messages of their own package).
fn services_in(text: &str) -> Vec<(String, String, String, bool)> {
    let mut package = "";
    let mut service = None;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("//") {
            continue;
        }
        if let Some(p) = line.strip_prefix("package ") {
            package = p.trim_end_matches(';');
        } else if let Some(s) = line.strip_prefix("service ") {
            service = Some(s.trim_end_matches('{').trim().to_owned());
        } else if line == "}" {
            service = None;
        } else if let (Some(svc), Some(rpc)) = (&service, line.strip_prefix("rpc ")) {
            // rpc Name(stream? Req) returns (Resp);
            let (name, rest) = rpc.split_once('(').expect("rpc name");
            let (req, rest) = rest.split_once(')').expect("request type");
            let (_, resp) = rest.split_once('(').expect("returns");
            let resp = resp.split_once(')').expect("response type").0;
            let (streaming, req) = match req.strip_prefix("stream ") {
                Some(r) => (true, r),
                None => (false, req),
            };
            assert!(
                !resp.starts_with("stream "),
                "no server streaming in the contract"
            );
            out.push((
                format!("/{package}.{svc}/{}", name.trim()),
                format!("{package}.{}", req.trim()),
                format!("{package}.{}", resp.trim()),
                streaming,
            ));
        }
    }
    out
}

#[test]
fn method_table_matches_the_services_in_the_proto_files() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let mut declared = Vec::new();
    for file in ["kvrpcpb.proto", "transportpb.proto"] {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
        declared.extend(services_in(&text));
    }
    let table: Vec<(String, String, String, bool)> = METHODS
        .iter()
        .map(|m: &MethodDesc| {
            (
                m.path.to_owned(),
                m.request.to_owned(),
                m.response.to_owned(),
                m.client_streaming,
            )
        })
        .collect();
    assert_eq!(table, declared);
    // Each message named by the table exists with that full name.
    let names: Vec<&str> = [
        d::<kvrpcpb::GetRequest>(),
        d::<transportpb::BatchRaftMessage>(),
        d::<transportpb::SnapshotChunk>(),
        d::<transportpb::Done>(),
    ]
    .iter()
    .map(|d| d.full_name())
    .collect();
    for name in names {
        assert!(
            METHODS
                .iter()
                .any(|m| m.request == name || m.response == name),
            "{name}"
        );
    }
}

#[test]
fn batch_raft_message_encodes_to_the_agreed_bytes() {
    let mut batch = transportpb::BatchRaftMessage::default();
    for region_id in [1, 2] {
        let mut m = kvproto_lite::raft_serverpb::RaftMessage::default();
        m.set_region_id(region_id);
        batch.mut_msgs().push(m);
    }
    #[rustfmt::skip]
    let expected = [
        0x0a, 2, 0x08, 1,                 // 1: msgs {region_id = 1}
        0x0a, 2, 0x08, 2,                 // 1: msgs {region_id = 2}
    ];
    assert_eq!(encode(&batch).unwrap(), expected);
}

#[test]
fn get_request_encodes_to_the_agreed_bytes() {
    let mut req = kvrpcpb::GetRequest::default();
    req.mut_context().set_region_id(3);
    req.mut_context().mut_region_epoch().set_version(2);
    req.mut_context().mut_peer().set_id(4);
    req.set_key(b"k".to_vec());
    #[rustfmt::skip]
    let expected = [
        0x0a, 10,                         // 1: context
            0x08, 3,                      //    region_id = 3
            0x12, 2, 0x10, 2,             //    region_epoch {version = 2}
            0x1a, 2, 0x08, 4,             //    peer {id = 4}
        0x12, 1, b'k',                    // 2: key
    ];
    assert_eq!(encode(&req).unwrap(), expected);
}

prop_compose! {
    fn context()(
        region_id in any::<u64>(),
        epoch in option::of(region_epoch()),
        p in option::of(peer()),
    ) -> kvrpcpb::Context {
        let mut c = kvrpcpb::Context::default();
        c.set_region_id(region_id);
        if let Some(e) = epoch { c.set_region_epoch(e); }
        if let Some(p) = p { c.set_peer(p); }
        c
    }
}

prop_compose! {
    fn kv_pair()(key in bytes(), value in bytes()) -> kvrpcpb::KvPair {
        let mut p = kvrpcpb::KvPair::default();
        p.set_key(key);
        p.set_value(value);
        p
    }
}

prop_compose! {
    fn region_info()(
        r in option::of(region()),
        leader in option::of(peer()),
        term in any::<u64>(),
    ) -> kvrpcpb::RegionInfo {
        let mut i = kvrpcpb::RegionInfo::default();
        if let Some(r) = r { i.set_region(r); }
        if let Some(l) = leader { i.set_leader(l); }
        i.set_leader_term(term);
        i
    }
}

/// Encodes, decodes and re-encodes `msg`, checking nothing changed.
fn check_roundtrip<M: protobuf::Message + PartialEq>(msg: &M) -> Result<(), TestCaseError> {
    let bytes = encode(msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let decoded: M = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, msg);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scan_request_and_response_round_trip(
        ctx in option::of(context()),
        start in bytes(),
        end in bytes(),
        limit in any::<u32>(),
        err in option::of(error()),
        pairs in vec(kv_pair(), 0..4),
    ) {
        let mut req = kvrpcpb::ScanRequest::default();
        if let Some(c) = ctx { req.set_context(c); }
        req.set_start_key(start);
        req.set_end_key(end);
        req.set_limit(limit);
        check_roundtrip(&req)?;
        let mut resp = kvrpcpb::ScanResponse::default();
        if let Some(e) = err { resp.set_region_error(e); }
        resp.set_pairs(pairs.into());
        resp.set_limit(limit);
        check_roundtrip(&resp)?;
    }

    #[test]
    fn batch_requests_round_trip(
        ctx in context(),
        keys in vec(bytes(), 0..4),
        pairs in vec(kv_pair(), 0..4),
    ) {
        let mut get = kvrpcpb::BatchGetRequest::default();
        get.set_context(ctx.clone());
        get.set_keys(keys.into());
        check_roundtrip(&get)?;
        let mut put = kvrpcpb::BatchPutRequest::default();
        put.set_context(ctx);
        put.set_pairs(pairs.into());
        check_roundtrip(&put)?;
    }

    #[test]
    fn region_lookup_answers_round_trip(
        err in option::of(error()),
        info in region_info(),
        infos in vec(region_info(), 0..3),
        store_id in any::<u64>(),
        stores in vec(store(), 0..3),
    ) {
        let mut one = kvrpcpb::GetRegionResponse::default();
        if let Some(e) = err { one.set_region_error(e); }
        one.set_region(info);
        check_roundtrip(&one)?;
        let mut list = kvrpcpb::ListRegionsResponse::default();
        list.set_regions(infos.into());
        check_roundtrip(&list)?;
        let mut s = kvrpcpb::GetStoresResponse::default();
        s.set_store_id(store_id);
        s.set_stores(stores.into());
        check_roundtrip(&s)?;
    }

    #[test]
    fn raft_streams_round_trip(
        msgs in vec(raft_message(), 0..4),
        first in option::of(raft_message()),
        data in bytes(),
    ) {
        let mut batch = transportpb::BatchRaftMessage::default();
        batch.set_msgs(msgs.into());
        check_roundtrip(&batch)?;
        let mut chunk = transportpb::SnapshotChunk::default();
        if let Some(m) = first { chunk.set_message(m); }
        chunk.set_data(data);
        check_roundtrip(&chunk)?;
    }
}
