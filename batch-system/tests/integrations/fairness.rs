//! Fairness: one hot FSM cannot starve the others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Duration;

use batch_system::test_runner::{Builder, Message, Runner};
use batch_system::{BasicMailbox, BatchRouter, Config};

use crate::util::{running_system_with, TIMEOUT};

/// Sends to `addr` a message that re-sends itself until `stop` is set.
fn hot_loop(router: BatchRouter<Runner, Runner>, addr: u64, stop: Arc<AtomicBool>) -> Message {
    Message::callback(move |_| {
        if !stop.load(Ordering::SeqCst) {
            let next = hot_loop(router.clone(), addr, stop);
            let _ = router.send(addr, next);
        }
    })
}

/// One poller, one batch slot, and an FSM that always has another message:
/// without the reschedule limit the cold FSM would never get the slot.
#[test]
fn a_hot_fsm_cannot_starve_a_cold_one() {
    let cfg = Config {
        pool_size: 1,
        max_batch_size: 1,
        reschedule_duration: Duration::from_millis(1),
    };
    let (router, mut system) = running_system_with(&cfg, Builder::new());
    for addr in 0..2 {
        let (tx, runner) = Runner::new(usize::MAX);
        router.register(addr, BasicMailbox::new(tx, runner));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = channel();
    router
        .send(0, Message::callback(move |_| started_tx.send(()).unwrap()))
        .unwrap();
    router
        .send(0, hot_loop(router.clone(), 0, stop.clone()))
        .unwrap();
    started_rx.recv_timeout(TIMEOUT).unwrap();

    let (cold_tx, cold_rx) = channel();
    router
        .send(1, Message::callback(move |_| cold_tx.send(()).unwrap()))
        .unwrap();
    let cold_ran = cold_rx.recv_timeout(TIMEOUT);
    stop.store(true, Ordering::SeqCst);
    system.shutdown();
    cold_ran.expect("the cold FSM was starved by the hot one");
}

/// The control FSM shares the pollers too: a busy control FSM must not
/// starve normal ones either.
#[test]
fn a_hot_control_fsm_cannot_starve_normal_fsms() {
    fn control_loop(router: BatchRouter<Runner, Runner>, stop: Arc<AtomicBool>) -> Message {
        Message::callback(move |_| {
            if !stop.load(Ordering::SeqCst) {
                let next = control_loop(router.clone(), stop);
                let _ = router.send_control(next);
            }
        })
    }
    let cfg = Config {
        pool_size: 1,
        max_batch_size: 1,
        reschedule_duration: Duration::from_millis(1),
    };
    let (router, mut system) = running_system_with(&cfg, Builder::new());
    let (tx, runner) = Runner::new(usize::MAX);
    router.register(1, BasicMailbox::new(tx, runner));
    let stop = Arc::new(AtomicBool::new(false));
    router
        .send_control(control_loop(router.clone(), stop.clone()))
        .unwrap();
    let (cold_tx, cold_rx) = channel();
    router
        .send(1, Message::callback(move |_| cold_tx.send(()).unwrap()))
        .unwrap();
    let cold_ran = cold_rx.recv_timeout(TIMEOUT);
    stop.store(true, Ordering::SeqCst);
    system.shutdown();
    cold_ran.expect("the normal FSM was starved by the control FSM");
}
