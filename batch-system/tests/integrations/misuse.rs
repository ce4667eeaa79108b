//! What happens when a handler or a caller gets the contract wrong, and the
//! corrected `broadcast_normal_where` accounting.

use std::ops::DerefMut;
use std::sync::{Arc, Mutex};

use batch_system::test_runner::{Builder, Message, Runner};
use batch_system::{create_system, BasicMailbox, Fsm, HandleResult, HandlerBuilder, PollHandler};
use slog::{o, Drain, Logger, Never, OwnedKVList, Record};

use crate::util::{idle_system, wait_until};

/// A slog drain that keeps every message.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl Drain for Capture {
    type Ok = ();
    type Err = Never;
    fn log(&self, record: &Record<'_>, _: &OwnedKVList) -> Result<(), Never> {
        self.0.lock().unwrap().push(record.msg().to_string());
        Ok(())
    }
}

impl Capture {
    fn messages(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// An FSM with a mailbox of `()`s.
struct Idle {
    rx: batch_system::mpsc::Receiver<()>,
}

impl Fsm for Idle {
    type Message = ();
    fn is_stopped(&self) -> bool {
        false
    }
}

fn new_idle() -> (batch_system::mpsc::LooseBoundedSender<()>, Box<Idle>) {
    let (tx, rx) = batch_system::mpsc::loose_bounded(16);
    (tx, Box::new(Idle { rx }))
}

/// Breaks the contract: keeps every FSM whether or not it has messages.
struct KeepsEverything;

impl PollHandler<Idle, Idle> for KeepsEverything {
    fn begin(&mut self, _batch_size: usize) {}
    fn handle_control(&mut self, control: &mut Idle) -> Option<usize> {
        while control.rx.try_recv().is_ok() {}
        None
    }
    fn handle_normal(&mut self, normal: &mut impl DerefMut<Target = Idle>) -> HandleResult {
        while normal.rx.try_recv().is_ok() {}
        HandleResult::KeepProcessing
    }
    fn end(&mut self, _batch: &mut [Option<impl DerefMut<Target = Idle>>]) {}
}

impl HandlerBuilder<Idle, Idle> for KeepsEverything {
    type Handler = KeepsEverything;
    fn build(&mut self) -> KeepsEverything {
        KeepsEverything
    }
}

/// The warning threshold documented on `PollHandler`.
const SPIN_WARN_ROUNDS: u64 = 100_000;

#[test]
fn a_handler_that_keeps_empty_fsms_is_reported_as_spinning() {
    let (ctx, control) = new_idle();
    let (router, mut system) = create_system::<Idle, Idle>(1, 8, ctx, control);
    let capture = Capture::default();
    system.set_logger(Logger::root(capture.clone(), o!()));
    let mut poller = system.manual_poller(KeepsEverything);
    let (tx, fsm) = new_idle();
    router.register(1, BasicMailbox::new(tx, fsm));
    router.send(1, ()).unwrap();

    // The first round drains the message: that one did work.
    assert_eq!(poller.poll_once(), 1);
    assert_eq!(poller.empty_rounds(), 0);
    // From now on the FSM is kept with nothing to do.
    assert_eq!(poller.poll_once(), 1);
    assert_eq!(poller.empty_rounds(), 1);
    for _ in 1..SPIN_WARN_ROUNDS - 1 {
        poller.poll_once();
    }
    assert_eq!(poller.empty_rounds(), SPIN_WARN_ROUNDS - 1);
    assert!(capture.messages().is_empty(), "no warning before the limit");
    poller.poll_once();
    let messages = capture.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("spinning"), "{}", messages[0]);
    // Once per streak, not once per round.
    for _ in 0..1000 {
        poller.poll_once();
    }
    assert_eq!(capture.messages().len(), 1);
    // A message for the FSM ends the streak.
    router.send(1, ()).unwrap();
    poller.poll_once();
    assert_eq!(poller.empty_rounds(), 0);
}

#[test]
fn a_spinning_poller_thread_is_reported_too() {
    let (ctx, control) = new_idle();
    let (router, mut system) = create_system::<Idle, Idle>(1, 8, ctx, control);
    let capture = Capture::default();
    system.set_logger(Logger::root(capture.clone(), o!()));
    system.spawn("spin".to_owned(), KeepsEverything).unwrap();
    router.send_control(()).unwrap();
    wait_until("the spin warning", || !capture.messages().is_empty());
    assert!(capture.messages()[0].contains("spinning"));
    system.shutdown();
}

#[test]
fn a_handler_that_follows_the_contract_never_spins() {
    let (control_tx, control) = Runner::new(16);
    let (router, system) = create_system::<Runner, Runner>(1, 8, control_tx, control);
    let mut poller = system.manual_poller(Builder::new().budget(1).build());
    let (tx, runner) = Runner::new(16);
    router.register(1, BasicMailbox::new(tx, runner));
    for i in 0..3 {
        router.send(1, Message::Count(i)).unwrap();
    }
    while poller.poll_once() > 0 {
        assert_eq!(poller.empty_rounds(), 0);
    }
}

#[test]
fn broadcast_makes_messages_only_for_open_mailboxes() {
    let (router, _system) = idle_system();
    for addr in 0..4 {
        let (tx, runner) = Runner::new(16);
        router.register(addr, BasicMailbox::new(tx, runner));
    }
    // A stopped FSM's mailbox is closed but stays registered until
    // `Router::close`; close one that way.
    router.mailbox(1).unwrap().basic().close();
    assert_eq!(router.alive_cnt(), 4);
    let (mut filtered, mut made) = (0, 0);
    router.broadcast_normal_where(
        |_| {
            filtered += 1;
            true
        },
        || {
            made += 1;
            Message::Count(1)
        },
    );
    assert_eq!((filtered, made), (4, 3));
    for addr in [0, 2, 3] {
        assert_eq!(router.mailbox(addr).unwrap().len(), 1);
    }
    let mut made = 0;
    router.broadcast_normal(|| {
        made += 1;
        Message::Count(1)
    });
    assert_eq!(made, 3);
    // After shutdown neither closure runs.
    router.broadcast_shutdown();
    router.broadcast_normal_where(|_| panic!("filter after shutdown"), || Message::Count(1));
}

#[test]
fn a_kept_mailbox_can_notify_its_fsm() {
    let (control_tx, control) = Runner::new(16);
    let (router, system) = create_system::<Runner, Runner>(1, 8, control_tx, control);
    let mut builder = Builder::new();
    let metrics = builder.metrics();
    let mut poller = system.manual_poller(builder.build());
    let (tx, runner) = Runner::new(16);
    router.register(1, BasicMailbox::new(tx, runner));
    let kept = router.mailbox(1).unwrap();
    kept.notify();
    kept.notify();
    assert_eq!(poller.poll_once(), 1, "woken once, with no message");
    assert_eq!(metrics.handled(), 0);
    assert_eq!(poller.poll_once(), 0);
    router.broadcast_shutdown();
    kept.notify();
    assert_eq!(poller.poll_once(), 0, "nothing is woken after shutdown");
    assert!(!kept.is_closed());
}
