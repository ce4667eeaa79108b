//! Shutdown is bounded whatever senders do with mailboxes they kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;

use batch_system::mpsc::TrySendError;
use batch_system::test_runner::{Builder, Message, Runner};
use batch_system::{BasicMailbox, BatchSystem, Mailbox, NormalScheduler};

use crate::util::{running_system, TIMEOUT};

type KeptMailbox = Mailbox<Runner, NormalScheduler<Runner, Runner>>;

/// A message that, when handled, sends itself again through a kept mailbox:
/// a periodic tick that re-arms forever.
fn rearm(mailbox: KeptMailbox) -> Message {
    Message::callback(move |_| {
        let next = rearm(mailbox.clone());
        let _ = mailbox.force_send(next);
    })
}

/// Runs `system.shutdown()` on another thread; fails the test (instead of
/// hanging it) if shutdown does not return.
fn shutdown_within_timeout(mut system: BatchSystem<Runner, Runner>) {
    let (done_tx, done_rx) = channel();
    std::thread::spawn(move || {
        system.shutdown();
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(TIMEOUT)
        .expect("shutdown did not return");
}

#[test]
fn shutdown_returns_while_an_fsm_re_arms_itself_through_a_kept_mailbox() {
    let builder = Builder::new();
    let metrics = builder.metrics();
    let (router, system) = running_system(1, 8, builder);
    let (tx, runner) = Runner::new(usize::MAX);
    router.register(1, BasicMailbox::new(tx, runner));
    let kept = router.mailbox(1).unwrap();
    let (started_tx, started_rx) = channel();
    kept.force_send(Message::callback(move |_| started_tx.send(()).unwrap()))
        .unwrap();
    kept.force_send(rearm(kept.clone())).unwrap();
    started_rx.recv_timeout(TIMEOUT).unwrap();

    shutdown_within_timeout(system);
    assert!(metrics.handled() >= 2);
    // The kept mailbox, the router and notify all refuse now.
    assert!(kept.force_send(Message::Count(1)).is_err());
    assert!(matches!(
        kept.try_send(Message::Count(2)),
        Err(TrySendError::Disconnected(Message::Count(2)))
    ));
    kept.notify();
    assert!(router.send(1, Message::Count(3)).is_err());
}

#[test]
fn shutdown_returns_while_another_thread_keeps_sending_through_a_kept_mailbox() {
    let builder = Builder::new();
    let metrics = builder.metrics();
    let (router, system) = running_system(2, 8, builder);
    let (tx, runner) = Runner::new(usize::MAX);
    router.register(1, BasicMailbox::new(tx, runner));
    let kept = router.mailbox(1).unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let (sending_tx, sending_rx) = channel();
    let sender = {
        let accepted = Arc::clone(&accepted);
        std::thread::spawn(move || {
            let mut told = false;
            // Sends until refused: only shutdown can stop this loop.
            while kept.force_send(Message::Count(1)).is_ok() {
                accepted.fetch_add(1, Ordering::SeqCst);
                if !told {
                    told = true;
                    sending_tx.send(()).unwrap();
                }
            }
        })
    };
    sending_rx.recv_timeout(TIMEOUT).unwrap();

    shutdown_within_timeout(system);
    sender.join().unwrap();
    // Everything accepted was handled, except at most the one send that
    // raced with the start of shutdown (dropped with its FSM).
    let (accepted, handled) = (accepted.load(Ordering::SeqCst), metrics.handled());
    assert!(
        handled <= accepted && accepted <= handled + 1,
        "accepted {accepted}, handled {handled}"
    );
}

#[test]
fn a_notify_loop_through_a_kept_mailbox_cannot_hold_shutdown_either() {
    let (router, system) = running_system(1, 8, Builder::new());
    let (tx, runner) = Runner::new(16);
    router.register(1, BasicMailbox::new(tx, runner));
    let kept = router.mailbox(1).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let notifier = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                kept.notify();
            }
        })
    };
    shutdown_within_timeout(system);
    stop.store(true, Ordering::SeqCst);
    notifier.join().unwrap();
}
