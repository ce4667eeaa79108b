//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) on stable: every
//! input runs through the same function its cargo-fuzz target runs
//! (`fuzz/src/harness.rs`, included here as a module), so a crash the
//! fuzzer found and whose input was added to the corpus stays fixed.

#[allow(dead_code)]
#[path = "../../fuzz/src/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn every_fuzz_corpus_input_runs_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let counts = harness::replay_corpus(&root);
    for (target, _) in harness::TARGETS {
        assert!(
            counts.get(target).copied().unwrap_or(0) > 0,
            "no corpus for {target}"
        );
    }
}

/// Writes the seed inputs of every target into `fuzz/corpus/<target>/`
/// (run once by hand: `cargo test -p node --test fuzz_replay -- --ignored`;
/// fuzzing runs then add the inputs that reach new code).
#[test]
#[ignore]
fn write_seed_corpus() {
    use kvproto_lite::eraftpb::{Entry, MessageType};
    use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, Request};
    use kvproto_lite::raft_serverpb::{RaftApplyState, RaftLocalState, RaftMessage};
    use kvproto_lite::{encode, kvrpcpb, transportpb};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };

    let types = [
        MessageType::MsgAppend,
        MessageType::MsgAppendResponse,
        MessageType::MsgRequestVote,
        MessageType::MsgRequestPreVote,
        MessageType::MsgHeartbeat,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgTimeoutNow,
        MessageType::MsgSnapshot,
    ];
    let mut raft_messages = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let mut rm = RaftMessage::default();
        rm.set_region_id(1);
        rm.mut_from_peer().set_id(2);
        rm.mut_from_peer().set_store_id(2);
        rm.mut_to_peer().set_id(1);
        rm.mut_to_peer().set_store_id(1);
        rm.mut_region_epoch().set_version(1);
        rm.mut_region_epoch().set_conf_ver(1);
        let m = rm.mut_message();
        m.set_msg_type(*t);
        m.from = 2;
        m.to = 1;
        m.term = 6;
        m.index = 5 + i as u64;
        m.log_term = 5;
        m.commit = 5;
        if *t == MessageType::MsgAppend {
            let e = Entry {
                index: m.index + 1,
                term: 6,
                ..Default::default()
            };
            m.set_entries(vec![e].into());
        }
        let bytes = encode(&rm).unwrap();
        write("raft_message", &format!("{t:?}"), &bytes);
        raft_messages.push(rm);
    }

    let mut req = RaftCmdRequest::default();
    req.mut_header().set_region_id(1);
    req.mut_header().mut_peer().set_id(1);
    req.mut_header().mut_peer().set_store_id(1);
    for (i, cmd) in [CmdType::Put, CmdType::Get, CmdType::Delete]
        .iter()
        .enumerate()
    {
        let mut r = Request::default();
        r.set_cmd_type(*cmd);
        match cmd {
            CmdType::Put => {
                r.mut_put().set_key(b"k".to_vec());
                r.mut_put().set_value(b"v".to_vec());
            }
            CmdType::Get => r.mut_get().set_key(b"k".to_vec()),
            _ => r.mut_delete().set_key(b"k".to_vec()),
        }
        req.mut_requests().push(r);
        write("raft_cmd_request", &format!("{i}"), &encode(&req).unwrap());
    }

    let mut batch = transportpb::BatchRaftMessage::default();
    batch.set_msgs(raft_messages.clone().into());
    write(
        "grpc_frame",
        "batch-raft",
        &[&[0u8, 7][..], &encode(&batch).unwrap()].concat(),
    );
    let mut get = kvrpcpb::GetRequest::default();
    get.set_key(b"k".to_vec());
    write(
        "grpc_frame",
        "get",
        &[&[2u8, 1][..], &encode(&get).unwrap()].concat(),
    );
    let mut put = kvrpcpb::PutRequest::default();
    put.set_key(b"k".to_vec());
    put.set_value(b"v".to_vec());
    write(
        "grpc_frame",
        "put",
        &[&[3u8, 3][..], &encode(&put).unwrap()].concat(),
    );
    let mut scan = kvrpcpb::ScanRequest::default();
    scan.set_start_key(b"a".to_vec());
    scan.set_limit(10);
    write(
        "grpc_frame",
        "scan",
        &[&[5u8, 2][..], &encode(&scan).unwrap()].concat(),
    );

    write(
        "engine_encodings",
        "data-key",
        &[&[9u8][..], &engine::keys::data_key(b"k")].concat(),
    );
    write(
        "engine_encodings",
        "apply-key",
        &[
            &[engine::keys::APPLY_STATE_KIND][..],
            &engine::keys::apply_state_key(7),
        ]
        .concat(),
    );
    write(
        "engine_encodings",
        "region-key",
        &[
            &[engine::keys::REGION_STATE_KIND][..],
            &engine::keys::region_state_key(7),
        ]
        .concat(),
    );
    let mut raft_state = RaftLocalState::default();
    raft_state.set_last_index(5);
    raft_state.mut_hard_state().set_term(5);
    raft_state.mut_hard_state().set_commit(5);
    write(
        "engine_encodings",
        "raft-state",
        &[&[4u8][..], &encode(&raft_state).unwrap()].concat(),
    );
    let mut apply_state = RaftApplyState::default();
    apply_state.set_applied_index(5);
    apply_state.mut_truncated_state().set_index(5);
    apply_state.mut_truncated_state().set_term(5);
    write(
        "engine_encodings",
        "apply-state",
        &[&[5u8][..], &encode(&apply_state).unwrap()].concat(),
    );

    write(
        "node_config",
        "full",
        br#"store_id = 1
listen = "127.0.0.1:20161"
status = "127.0.0.1:20181"
data_dir = "/var/lib/multi-raft/1"
initial_cluster = "1=127.0.0.1:20161,2=127.0.0.1:20162,3=127.0.0.1:20163"
regions = 16
log_level = "info"

[raftstore]
raft_base_tick_interval_ms = 100

[server]
raft_msg_max_batch_size = 256
"#,
    );
    write(
        "node_config",
        "minimal",
        b"store_id = 1\ndata_dir = \"/tmp/n1\"\ninitial_cluster = \"1=127.0.0.1:20161\"\n",
    );
    write(
        "node_config",
        "unknown-key",
        b"store_id = 1\n[raftstore]\nno_such_key = 3\n",
    );

    // store_messages: op byte (mod 8) then the op's bytes; 6 and 7 tick.
    let hb = encode(&raft_messages[4]).unwrap();
    write("store_messages", "ticks", &[6, 7, 6, 7, 6, 7]);
    write(
        "store_messages",
        "raw-heartbeat",
        &[&[0u8, hb.len() as u8][..], &hb, &[6]].concat(),
    );
    // A structured append to region 1 and a heartbeat to region 2.
    write(
        "store_messages",
        "structured",
        &[
            1, 0, 0, 0, 3, 6, 5, 5, 5, 0, 0, 1, 6, 6, 0, 6, 1, 1, 1, 0, 8, 6, 9, 6, 0, 0, 6,
        ],
    );
    write(
        "store_messages",
        "commands",
        &[
            5, 0, 1, b'a', 5, 1, 1, b'a', 5, 2, 1, b'a', 6, 5, 3, 1, b'z', 6,
        ],
    );
}
