//! Router and mailbox behaviour that needs no running pollers.

use batch_system::mpsc::{SendError, TrySendError};
use batch_system::test_runner::{Message, Runner};
use batch_system::BasicMailbox;
use either::Either;

use crate::util::{idle_system, register_reporting, reports, TIMEOUT};

#[test]
fn full_mailbox_returns_message() {
    let (router, _system) = idle_system();
    let (tx, runner) = Runner::new(2);
    router.register(1, BasicMailbox::new(tx, runner));
    router.send(1, Message::Count(1)).unwrap();
    router.send(1, Message::Count(2)).unwrap();
    match router.send(1, Message::Count(3)) {
        Err(TrySendError::Full(Message::Count(3))) => {}
        other => panic!("expected Full(Count(3)), got {other:?}"),
    }
    match router.try_send(1, Message::Count(4)) {
        Either::Left(Err(TrySendError::Full(Message::Count(4)))) => {}
        other => panic!("expected Left(Full(Count(4))), got {other:?}"),
    }
}

#[test]
fn force_send_ignores_capacity() {
    let (router, _system) = idle_system();
    let (tx, runner) = Runner::new(1);
    router.register(1, BasicMailbox::new(tx, runner));
    for i in 0..10 {
        router.force_send(1, Message::Count(i)).unwrap();
    }
    assert_eq!(router.mailbox(1).unwrap().len(), 10);
    let control = router.control_mailbox();
    for i in 0..2000 {
        router.force_send_control(Message::Count(i)).unwrap();
    }
    assert_eq!(control.len(), 2000);
    assert!(matches!(
        router.send_control(Message::Count(0)),
        Err(TrySendError::Full(Message::Count(0)))
    ));
}

#[test]
fn try_send_to_missing_address_gives_message_back_on_the_right() {
    let (router, _system) = idle_system();
    match router.try_send(9, Message::Count(9)) {
        Either::Right(Message::Count(9)) => {}
        other => panic!("expected Right(Count(9)), got {other:?}"),
    }
    assert!(matches!(
        router.send(9, Message::Count(1)),
        Err(TrySendError::Disconnected(Message::Count(1)))
    ));
    assert!(matches!(
        router.force_send(9, Message::Count(2)),
        Err(SendError(Message::Count(2)))
    ));
    assert!(router.mailbox(9).is_none());
}

#[test]
fn close_disconnects_and_drops_the_fsm() {
    let (router, _system) = idle_system();
    let (report_tx, report_rx) = reports();
    register_reporting(&router, 1, 16, &report_tx);
    let mailbox = router.mailbox(1).unwrap();
    assert_eq!(router.alive_cnt(), 1);

    router.close(1);
    // The idle FSM is dropped at once.
    assert_eq!(report_rx.recv_timeout(TIMEOUT).unwrap(), (1, 0, 0));
    assert_eq!(router.alive_cnt(), 0);
    assert!(matches!(
        router.try_send(1, Message::Count(1)),
        Either::Right(_)
    ));
    // A handle kept from before sees the mailbox closed.
    assert!(matches!(
        mailbox.try_send(Message::Count(2)),
        Err(TrySendError::Disconnected(Message::Count(2)))
    ));
    assert!(matches!(
        mailbox.force_send(Message::Count(3)),
        Err(SendError(_))
    ));
    assert!(mailbox.basic().is_closed());
}

#[test]
fn register_replaces_and_drops_the_old_fsm() {
    let (router, _system) = idle_system();
    let (report_tx, report_rx) = reports();
    register_reporting(&router, 1, 16, &report_tx);
    register_reporting(&router, 1, 16, &report_tx);
    assert_eq!(report_rx.recv_timeout(TIMEOUT).unwrap(), (1, 0, 0));
    assert_eq!(router.alive_cnt(), 1);
    assert!(report_rx.try_recv().is_err());
}

#[test]
fn register_all_makes_every_address_reachable() {
    let (router, _system) = idle_system();
    let boxes = (0..50)
        .map(|addr| {
            let (tx, runner) = Runner::new(4);
            (addr, BasicMailbox::new(tx, runner))
        })
        .collect();
    router.register_all(boxes);
    assert_eq!(router.alive_cnt(), 50);
    for addr in 0..50 {
        router.send(addr, Message::Count(addr)).unwrap();
    }
}

#[test]
fn router_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<batch_system::BatchRouter<Runner, Runner>>();
    assert_send_sync::<BasicMailbox<Runner>>();
}

#[test]
fn closing_a_notified_fsm_drops_it_when_the_system_goes_away() {
    let (router, system) = idle_system();
    let (report_tx, report_rx) = reports();
    register_reporting(&router, 1, 16, &report_tx);
    // Queued for the pollers (none are running): the FSM is notified.
    router.send(1, Message::Count(5)).unwrap();
    router.close(1);
    assert!(report_rx.try_recv().is_err());
    assert!(matches!(
        router.try_send(1, Message::Count(1)),
        Either::Right(_)
    ));
    drop(system);
    // Dropped with its unhandled message.
    assert_eq!(report_rx.recv_timeout(TIMEOUT).unwrap(), (1, 0, 0));
}

#[test]
fn registering_the_same_mailbox_again_keeps_it_open() {
    let (router, _system) = idle_system();
    let (tx, runner) = Runner::new(4);
    let mailbox = BasicMailbox::new(tx, runner);
    router.register(1, mailbox.clone());
    router.register(1, mailbox.clone());
    assert!(!mailbox.is_closed());
    router.send(1, Message::Count(1)).unwrap();
}
