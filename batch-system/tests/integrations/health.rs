//! A poller panic is recorded, kills only its batch, and a system with no
//! poller left refuses sends instead of queueing them for nobody.

use std::sync::mpsc::channel;

use batch_system::mpsc::TrySendError;
use batch_system::test_runner::{Builder, Message, Runner};
use batch_system::BasicMailbox;

use crate::util::{running_system, wait_until, TIMEOUT};

fn panicking() -> Message {
    Message::callback(|_| panic!("handler failure for test"))
}

#[test]
fn after_a_poller_panics_the_other_pollers_keep_serving_and_health_says_so() {
    let (router, mut system) = running_system(2, 8, Builder::new());
    for addr in 1..=2 {
        let (tx, runner) = Runner::new(16);
        router.register(addr, BasicMailbox::new(tx, runner));
    }
    assert!(system.health().is_healthy());
    router.send(1, panicking()).unwrap();
    wait_until("the panic is recorded", || system.health().panicked == 1);

    let health = system.health();
    assert_eq!((health.pollers, health.running), (2, 1));
    assert_eq!(
        health.first_panic.as_deref(),
        Some("handler failure for test")
    );
    assert!(!health.refusing_sends && !health.is_healthy());
    // The FSM that was in the dead poller's batch is gone ...
    assert!(matches!(
        router.send(1, Message::Count(1)),
        Err(TrySendError::Disconnected(_))
    ));
    // ... the others are still served by the remaining poller.
    let (seen_tx, seen_rx) = channel();
    router
        .send(2, Message::callback(move |_| seen_tx.send(()).unwrap()))
        .unwrap();
    seen_rx.recv_timeout(TIMEOUT).unwrap();
    router.send_control(Message::Count(1)).unwrap();

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| system.shutdown()));
    assert!(result.is_err(), "shutdown re-raises the panic");
}

#[test]
fn when_the_last_poller_panics_every_send_is_refused() {
    let (router, mut system) = running_system(1, 8, Builder::new());
    for addr in 1..=2 {
        let (tx, runner) = Runner::new(16);
        router.register(addr, BasicMailbox::new(tx, runner));
    }
    let kept = router.mailbox(2).unwrap();
    router.send(1, panicking()).unwrap();
    wait_until("the panic is recorded", || system.health().panicked == 1);

    let health = system.health();
    assert_eq!((health.pollers, health.running), (1, 0));
    assert!(health.refusing_sends);
    // FSM 2 was never in the dead batch, but nothing can poll it now: the
    // send is refused rather than accepted and never handled.
    assert!(matches!(
        router.send(2, Message::Count(1)),
        Err(TrySendError::Disconnected(_))
    ));
    assert!(kept.force_send(Message::Count(2)).is_err());
    assert!(router.send_control(Message::Count(3)).is_err());
    assert!(!router.is_shutdown(), "broken, not shut down");

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| system.shutdown()));
    assert!(result.is_err());
    assert!(system.health().refusing_sends);
}

#[test]
fn a_system_is_idle_only_when_nothing_is_queued_and_every_poller_is_parked() {
    // Not spawned: idle exactly while nothing is scheduled.
    let (control_tx, control) = Runner::new(16);
    let (router, mut system) =
        batch_system::create_system::<Runner, Runner>(2, 4, control_tx, control);
    assert!(system.health().is_idle());
    let (tx, runner) = Runner::new(16);
    router.register(1, BasicMailbox::new(tx, runner));
    router.send(1, Message::Count(1)).unwrap();
    let health = system.health();
    assert_eq!(health.queued, 1);
    assert!(!health.is_idle());

    // Spawned: the queued FSM is handled, then every poller parks.
    let builder = Builder::new();
    let metrics = builder.metrics();
    system.spawn("idle".to_owned(), builder).unwrap();
    wait_until("idle", || system.health().is_idle());
    assert_eq!(metrics.handled(), 1);
    assert_eq!(system.health().parked, 2);
    system.shutdown();
}
