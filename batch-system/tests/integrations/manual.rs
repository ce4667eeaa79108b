//! `ManualPoller`: poll rounds driven on the test's thread.

use batch_system::test_runner::{Builder, Message, Runner};
use batch_system::{create_system, BasicMailbox, HandlerBuilder};

#[test]
fn manual_poll_once_handles_scheduled_fsms_then_reports_idle() {
    let (control_tx, control) = Runner::new(16);
    let (router, system) = create_system::<Runner, Runner>(1, 8, control_tx, control);
    let mut builder = Builder::new();
    let metrics = builder.metrics();
    let mut poller = system.manual_poller(builder.build());
    assert_eq!(poller.poll_once(), 0);
    for addr in 1..=3 {
        let (tx, runner) = Runner::new(16);
        router.register(addr, BasicMailbox::new(tx, runner));
        router.send(addr, Message::Count(addr)).unwrap();
    }
    router.send_control(Message::Count(10)).unwrap();
    assert_eq!(
        poller.poll_once(),
        4,
        "three normal FSMs and the control FSM"
    );
    assert_eq!(metrics.handled(), 4);
    assert_eq!(metrics.rounds(), 1);
    assert_eq!(poller.poll_once(), 0, "every FSM was released");
    // Released FSMs are scheduled again by the next message.
    router.send(2, Message::Count(1)).unwrap();
    assert_eq!(poller.poll_once(), 1);
    assert_eq!(metrics.handled(), 5);
}

#[test]
fn manual_poll_once_reschedules_fsms_with_work_left() {
    let (control_tx, control) = Runner::new(16);
    let (router, system) = create_system::<Runner, Runner>(1, 8, control_tx, control);
    let mut builder = Builder::new().budget(2);
    let metrics = builder.metrics();
    let mut poller = system.manual_poller(builder.build());
    let (tx, runner) = Runner::new(64);
    router.register(1, BasicMailbox::new(tx, runner));
    for _ in 0..5 {
        router.send(1, Message::Count(1)).unwrap();
    }
    // Budget 2 per round: 2 + 2 + 1 messages over three rounds, then idle.
    assert_eq!(poller.poll_once(), 1);
    assert_eq!(metrics.handled(), 2);
    assert_eq!(poller.poll_once(), 1);
    assert_eq!(poller.poll_once(), 1);
    assert_eq!(metrics.handled(), 5);
    assert_eq!(poller.poll_once(), 0);
}

#[test]
fn manual_poll_once_respects_max_batch_size_and_keeps_fifo_order() {
    let (control_tx, control) = Runner::new(16);
    let (router, system) = create_system::<Runner, Runner>(1, 2, control_tx, control);
    let mut builder = Builder::new();
    let metrics = builder.metrics();
    let mut poller = system.manual_poller(builder.build());
    let (order_tx, order_rx) = std::sync::mpsc::channel();
    for addr in 1..=5u64 {
        let (tx, runner) = Runner::new(16);
        router.register(addr, BasicMailbox::new(tx, runner));
        let order_tx = order_tx.clone();
        router
            .send(
                addr,
                Message::callback(move |_: &mut Runner| order_tx.send(addr).unwrap()),
            )
            .unwrap();
    }
    assert_eq!(poller.poll_once(), 2);
    assert_eq!(poller.poll_once(), 2);
    assert_eq!(poller.poll_once(), 1);
    assert_eq!(poller.poll_once(), 0);
    assert_eq!(metrics.handled(), 5);
    let order: Vec<u64> = order_rx.try_iter().collect();
    assert_eq!(order, vec![1, 2, 3, 4, 5]);
}

#[test]
fn stopped_fsm_is_dropped_by_manual_poll() {
    let (control_tx, control) = Runner::new(16);
    let (router, system) = create_system::<Runner, Runner>(1, 8, control_tx, control);
    let mut poller = system.manual_poller(Builder::new().build());
    let (tx, runner) = Runner::new(16);
    router.register(1, BasicMailbox::new(tx, runner));
    router.send(1, Message::Stop).unwrap();
    assert_eq!(poller.poll_once(), 1);
    assert!(router.send(1, Message::Count(1)).is_err());
    assert_eq!(poller.poll_once(), 0);
}
