//! Property test: random operation sequences against a model of the router.

use std::collections::HashMap;

use batch_system::mpsc::TrySendError;
use batch_system::test_runner::{Builder, Message};
use batch_system::Config;
use either::Either;
use proptest::prelude::*;

use crate::util::{register_tagged, reports, running_system_with, TIMEOUT};

#[derive(Debug, Clone)]
enum Op {
    Register(u64),
    Send(u64, u64),
    ForceSend(u64, u64),
    Close(u64),
    Broadcast(u64),
    SendControl(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let addr = 0u64..6;
    prop_oneof![
        addr.clone().prop_map(Op::Register),
        (addr.clone(), 1u64..1000).prop_map(|(a, v)| Op::Send(a, v)),
        (addr.clone(), 1u64..1000).prop_map(|(a, v)| Op::ForceSend(a, v)),
        addr.prop_map(Op::Close),
        (1u64..1000).prop_map(Op::Broadcast),
        (1u64..1000).prop_map(Op::SendControl),
    ]
}

/// What the model expects of one registered FSM instance.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    handled: u64,
    sum: u64,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every send is answered as the model says (delivered, or `Right` for an
    /// unknown address); every FSM is dropped exactly once; an FSM alive at
    /// shutdown handled exactly what it accepted, a closed one at most that.
    #[test]
    fn random_operations_match_the_model(ops in prop::collection::vec(op(), 1..80),
                                         pool in 1usize..3, batch in 1usize..4) {
        let cfg = Config { pool_size: pool, max_batch_size: batch, ..Config::default() };
        let builder = Builder::new().budget(2);
        let metrics = builder.metrics();
        let (router, mut system) = running_system_with(&cfg, builder);
        let (report_tx, report_rx) = reports();
        // Every registered instance gets a tag; `live` maps addr -> tag.
        let mut expect: HashMap<u64, Expect> = HashMap::new();
        let mut live: HashMap<u64, u64> = HashMap::new();
        let mut closed: Vec<u64> = Vec::new();
        let mut next_tag = 0u64;
        let mut control = 0u64;
        for op in ops {
            match op {
                Op::Register(a) => {
                    next_tag += 1;
                    register_tagged(&router, a, next_tag, usize::MAX, &report_tx);
                    expect.insert(next_tag, Expect::default());
                    if let Some(old) = live.insert(a, next_tag) {
                        closed.push(old);
                    }
                }
                Op::Send(a, v) => {
                    let e = live.get(&a).and_then(|t| expect.get_mut(t));
                    match (router.try_send(a, Message::Count(v)), e) {
                        (Either::Left(Ok(())), Some(e)) => { e.handled += 1; e.sum += v; }
                        (Either::Right(Message::Count(back)), None) => prop_assert_eq!(back, v),
                        (r, e) => prop_assert!(false, "send {} to {}: {:?} with model {:?}", v, a, r, e),
                    }
                }
                Op::ForceSend(a, v) => {
                    let e = live.get(&a).and_then(|t| expect.get_mut(t));
                    match (router.force_send(a, Message::Count(v)), e) {
                        (Ok(()), Some(e)) => { e.handled += 1; e.sum += v; }
                        (Err(back), None) => prop_assert!(matches!(back.0, Message::Count(x) if x == v)),
                        (r, e) => prop_assert!(false, "force_send {} to {}: {:?} with model {:?}", v, a, r, e),
                    }
                }
                Op::Close(a) => {
                    router.close(a);
                    if let Some(old) = live.remove(&a) {
                        closed.push(old);
                    }
                }
                Op::Broadcast(v) => {
                    router.broadcast_normal(|| Message::Count(v));
                    for t in live.values() {
                        if let Some(e) = expect.get_mut(t) { e.handled += 1; e.sum += v; }
                    }
                }
                Op::SendControl(v) => {
                    match router.send_control(Message::Count(v)) {
                        Ok(()) => control += 1,
                        Err(TrySendError::Full(_)) => {}
                        Err(e) => prop_assert!(false, "control send failed: {:?}", e),
                    }
                }
            }
            prop_assert_eq!(router.alive_cnt(), live.len());
        }
        system.shutdown();
        drop(report_tx);
        let mut reports: HashMap<u64, (u64, u64)> = HashMap::new();
        while let Ok((tag, h, sum)) = report_rx.recv_timeout(TIMEOUT) {
            prop_assert!(reports.insert(tag, (h, sum)).is_none(), "instance {} dropped twice", tag);
        }
        prop_assert_eq!(reports.len(), expect.len(), "every instance dropped");
        let handled: u64 = reports.values().map(|r| r.0).sum();
        for tag in live.values() {
            let e = expect[tag];
            prop_assert_eq!(reports.get(tag), Some(&(e.handled, e.sum)), "live instance {}", tag);
        }
        for tag in &closed {
            let (e, r) = (expect[tag], reports[tag]);
            prop_assert!(r.0 <= e.handled, "closed instance {} handled {:?} of {:?}", tag, r, e);
        }
        prop_assert_eq!(metrics.handled(), handled + control);
    }
}
