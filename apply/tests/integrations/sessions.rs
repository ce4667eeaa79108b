//! Client sessions, compare-and-swap and user commands, executed through
//! `ApplyPoller` rounds.

use apply::{CommandHandlers, Config, KeyAccess};
use engine::{KvEngine, MemKvEngine};
use kvproto_lite::raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, Request};

use crate::harness::*;

fn with_session(mut c: RaftCmdRequest, client_id: u64, sequence: u64) -> RaftCmdRequest {
    c.mut_header().set_client_id(client_id);
    c.mut_header().set_sequence(sequence);
    c
}

fn cas_req(key: &[u8], expected: Option<&[u8]>, value: &[u8]) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::CompareAndSwap);
    let cas = r.mut_cas();
    cas.set_key(key.to_vec());
    match expected {
        Some(e) => cas.set_expected(e.to_vec()),
        None => cas.set_expected_absent(true),
    }
    cas.set_value(value.to_vec());
    r
}

fn delete_if_equal_req(key: &[u8], expected: &[u8]) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::DeleteIfEqual);
    r.mut_delete_if_equal().set_key(key.to_vec());
    r.mut_delete_if_equal().set_expected(expected.to_vec());
    r
}

fn user_req(name: &str, input: &[u8]) -> Request {
    let mut r = Request::default();
    r.set_cmd_type(CmdType::User);
    r.mut_user().set_name(name.to_owned());
    r.mut_user().set_input(input.to_vec());
    r
}

/// Applies `cmds` as entries `first..` in one round, every one with a
/// callback; returns the responses in log order.
fn run<K: KvEngine>(
    d: &mut Driver<K>,
    r: &kvproto_lite::metapb::Region,
    first: u64,
    cmds: Vec<RaftCmdRequest>,
) -> Vec<RaftCmdResponse> {
    let resps = Responses::default();
    let n = cmds.len() as u64;
    let entries = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| entry(first + i as u64, 1, c))
        .collect();
    let proposals = (first..first + n).map(|i| resps.proposal(i, 1)).collect();
    d.apply(r, 1, entries, proposals);
    d.run();
    resps.take().into_iter().map(|(_, r)| r).collect()
}

fn setup(cfg: Config) -> (Driver<MemKvEngine>, kvproto_lite::metapb::Region) {
    let mut d = Driver::new(MemKvEngine::new(), cfg);
    let r = region(1, b"b", b"y");
    d.register(registration(&r));
    (d, r)
}

#[test]
fn a_repeated_sequence_gets_the_saved_response_and_does_not_run_again() {
    let (mut d, r) = setup(Config::default());
    let got = run(
        &mut d,
        &r,
        1,
        vec![
            with_session(cmd(&r, vec![put_req(b"k", b"v1")]), 7, 1),
            cmd(&r, vec![put_req(b"k", b"v2")]),
            // A retry of the first put arriving after another client's write.
            with_session(cmd(&r, vec![put_req(b"k", b"v1")]), 7, 1),
        ],
    );
    assert!(got.iter().all(|g| !g.get_header().has_error()), "{got:?}");
    assert_eq!(got[2].get_responses(), got[0].get_responses());
    assert_eq!(
        d.kv.get(b"k").unwrap(),
        Some(b"v2".to_vec()),
        "not applied twice"
    );
}

#[test]
fn a_lower_sequence_is_refused_with_stale_sequence_and_changes_nothing() {
    let (mut d, r) = setup(Config::default());
    let got = run(
        &mut d,
        &r,
        1,
        vec![
            with_session(cmd(&r, vec![put_req(b"k", b"v2")]), 7, 2),
            with_session(cmd(&r, vec![put_req(b"k", b"v1")]), 7, 1),
        ],
    );
    let err = got[1].get_header().get_error();
    assert!(err.has_stale_sequence(), "{err:?}");
    assert_eq!(err.get_stale_sequence().get_applied_sequence(), 2);
    assert_eq!(d.kv.get(b"k").unwrap(), Some(b"v2".to_vec()));
}

#[test]
fn session_records_are_written_in_the_same_batch_and_survive_a_restart() {
    let kv = MemKvEngine::new();
    let r = region(1, b"b", b"y");
    {
        let mut d = Driver::new(kv.clone(), Config::default());
        d.register(registration(&r));
        let got = run(
            &mut d,
            &r,
            1,
            vec![with_session(cmd(&r, vec![cas_req(b"k", None, b"a")]), 9, 5)],
        );
        assert!(got[0].get_responses()[0].get_cas().get_succeeded());
        assert!(kv.get(&apply::session_key(b"b", 9)).unwrap().is_some());
    }
    // A new poller over the same engine (a restart): the retry of the
    // compare-and-swap is answered from the record, not run again (run
    // again, it would fail: the key is no longer absent).
    let mut d = Driver::new(kv.clone(), Config::default());
    let mut reg = registration(&r);
    reg.apply_state = kv.get_apply_state(1).unwrap().unwrap();
    reg.applied_term = 1;
    d.register(reg);
    let got = run(
        &mut d,
        &r,
        2,
        vec![with_session(cmd(&r, vec![cas_req(b"k", None, b"a")]), 9, 5)],
    );
    assert!(
        got[0].get_responses()[0].get_cas().get_succeeded(),
        "{got:?}"
    );
}

#[test]
fn a_failed_command_saves_no_session_so_its_retry_runs() {
    let (mut d, r) = setup(Config::default());
    let mut stale = with_session(cmd(&r, vec![put_req(b"k", b"v")]), 3, 1);
    stale.mut_header().mut_region_epoch().set_version(0);
    let got = run(
        &mut d,
        &r,
        1,
        vec![
            stale,
            with_session(cmd(&r, vec![put_req(b"k", b"v")]), 3, 1),
        ],
    );
    assert!(got[0].get_header().get_error().has_epoch_not_match());
    assert!(!got[1].get_header().has_error(), "{:?}", got[1]);
    assert_eq!(d.kv.get(b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn reserved_session_keys_are_refused_to_user_commands() {
    let (mut d, r) = setup(Config::default());
    let key = apply::session_key(b"b", 1);
    let got = run(&mut d, &r, 1, vec![cmd(&r, vec![put_req(&key, b"x")])]);
    assert!(
        got[0].get_header().get_error().has_invalid_request(),
        "{got:?}"
    );
    assert_eq!(d.kv.get(&key).unwrap(), None);
}

#[test]
fn idle_sessions_expire_by_log_position_and_the_count_is_bounded() {
    let cfg = Config {
        session_sweep_interval: 4,
        session_ttl_entries: 2,
        max_sessions_per_region: 1,
        ..Config::default()
    };
    let (mut d, r) = setup(cfg);
    run(
        &mut d,
        &r,
        1,
        vec![
            with_session(cmd(&r, vec![put_req(b"a", b"1")]), 1, 1),
            with_session(cmd(&r, vec![put_req(b"c", b"1")]), 2, 1),
            with_session(cmd(&r, vec![put_req(b"d", b"1")]), 3, 1),
            cmd(&r, vec![put_req(b"e", b"1")]),
        ],
    );
    // The sweep at index 4: client 1 (index 1) idle for 3 > 2 entries;
    // clients 2 and 3 within the window, but only one may stay: the most
    // recently used (3).
    let has = |c| d.kv.get(&apply::session_key(b"b", c)).unwrap().is_some();
    assert!(!has(1) && !has(2) && has(3));
}

#[test]
fn a_split_copies_the_sessions_to_the_new_region() {
    let (mut d, r) = setup(Config::default());
    let got = run(
        &mut d,
        &r,
        1,
        vec![
            with_session(cmd(&r, vec![put_req(b"p", b"1")]), 4, 1),
            admin_cmd(&r, split(b"m", 2, vec![21, 22, 23])),
        ],
    );
    assert!(!got[1].get_header().has_error(), "{:?}", got[1]);
    let left = d.kv.get(&apply::session_key(b"b", 4)).unwrap();
    let right = d.kv.get(&apply::session_key(b"m", 4)).unwrap();
    assert!(left.is_some());
    assert_eq!(left, right);
}

#[test]
fn a_split_key_that_leaves_no_room_for_sessions_is_refused() {
    let (mut d, r) = setup(Config::default());
    let got = run(
        &mut d,
        &r,
        1,
        vec![admin_cmd(&r, split(b"b\x00", 2, vec![21, 22, 23]))],
    );
    assert!(
        got[0].get_header().get_error().has_invalid_request(),
        "{got:?}"
    );
    assert_eq!(d.kv.get_region_state(2).unwrap(), None);
}

#[test]
fn compare_and_swap_writes_only_when_the_value_matches() {
    let (mut d, r) = setup(Config::default());
    let got = run(
        &mut d,
        &r,
        1,
        vec![
            cmd(&r, vec![cas_req(b"k", None, b"v1")]),
            cmd(&r, vec![cas_req(b"k", None, b"v2")]),
            cmd(&r, vec![cas_req(b"k", Some(b"v1"), b"v3")]),
            cmd(&r, vec![delete_if_equal_req(b"k", b"v1")]),
            cmd(&r, vec![delete_if_equal_req(b"k", b"v3")]),
        ],
    );
    let outcome = |i: usize| {
        let c = got[i].get_responses()[0].get_cas();
        (
            c.get_succeeded(),
            (!c.get_previous_not_found()).then(|| c.get_previous().to_vec()),
        )
    };
    assert_eq!(outcome(0), (true, None));
    assert_eq!(outcome(1), (false, Some(b"v1".to_vec())));
    assert_eq!(outcome(2), (true, Some(b"v1".to_vec())));
    assert_eq!(outcome(3), (false, Some(b"v3".to_vec())));
    assert_eq!(outcome(4), (true, Some(b"v3".to_vec())));
    assert_eq!(d.kv.get(b"k").unwrap(), None);
}

fn append_handler(keys: &mut KeyAccess<'_>, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut v = keys.get(b"log")?.unwrap_or_default();
    keys.put(b"log", &[&v[..], input].concat())?;
    if input == b"!" {
        return Err("no exclamations".to_owned());
    }
    v.extend_from_slice(input);
    Ok(v)
}

#[test]
fn user_commands_run_the_registered_handler_and_errors_roll_back_their_writes() {
    let mut cfg_handlers = CommandHandlers::default();
    cfg_handlers.register("append", append_handler);
    cfg_handlers.register("escape", |k: &mut KeyAccess<'_>, _: &[u8]| {
        k.put(b"a", b"outside").map(|_| Vec::new())
    });
    let (mut d, r) = setup(Config::default());
    d.poller.set_command_handlers(cfg_handlers);
    let got = run(
        &mut d,
        &r,
        1,
        vec![
            cmd(&r, vec![user_req("append", b"ab")]),
            cmd(&r, vec![put_req(b"c", b"1"), user_req("append", b"!")]),
            cmd(&r, vec![user_req("append", b"cd")]),
            cmd(&r, vec![user_req("missing", b"")]),
            cmd(&r, vec![user_req("escape", b"")]),
        ],
    );
    let user = |i: usize, j: usize| got[i].get_responses()[j].get_user().clone();
    assert_eq!(user(0, 0).get_output(), b"ab");
    assert!(user(1, 1).get_failed());
    assert_eq!(user(1, 1).get_error(), "no exclamations");
    assert_eq!(
        user(2, 0).get_output(),
        b"abcd",
        "the failed append left nothing"
    );
    assert!(user(3, 0).get_error().contains("no handler"));
    assert!(user(4, 0).get_error().contains("outside region"));
    assert_eq!(d.kv.get(b"log").unwrap(), Some(b"abcd".to_vec()));
    assert_eq!(
        d.kv.get(b"c").unwrap(),
        Some(b"1".to_vec()),
        "the put beside it stays"
    );
    assert_eq!(d.kv.get(b"a").unwrap(), None);
}
