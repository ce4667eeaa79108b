//! A running batch system: delivery, ordering, broadcast, stopping, shutdown.

use std::collections::HashMap;
use std::sync::mpsc::channel;
use std::sync::{Arc, Barrier};

use batch_system::mpsc::{SendError, TrySendError};
use batch_system::test_runner::{Builder, Message, Runner};
use batch_system::{create_system, BasicMailbox, Error, HandleResult, HandlerBuilder, PollHandler};
use either::Either;

use crate::util::{register_reporting, reports, running_system, wait_until, TIMEOUT};

#[test]
fn every_accepted_message_is_handled_exactly_once() {
    for skip_end in [false, true] {
        let builder = Builder::new().budget(8).skip_end(skip_end);
        let metrics = builder.metrics();
        let (router, mut system) = running_system(2, 4, builder);
        let (report_tx, report_rx) = reports();
        let fsms = 64u64;
        for addr in 0..fsms {
            register_reporting(&router, addr, usize::MAX, &report_tx);
        }
        let producers = 4u64;
        let per_producer = 5_000u64;
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let router = router.clone();
                std::thread::spawn(move || {
                    for i in 0..per_producer {
                        let addr = (i * 7 + p) % fsms;
                        router
                            .send(addr, Message::Count(p * per_producer + i))
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let total = producers * per_producer;
        wait_until("all messages handled", || metrics.handled() == total);
        system.shutdown();
        let mut expected: HashMap<u64, (u64, u64)> = HashMap::new();
        for p in 0..producers {
            for i in 0..per_producer {
                let e = expected.entry((i * 7 + p) % fsms).or_default();
                e.0 += 1;
                e.1 += p * per_producer + i;
            }
        }
        for _ in 0..fsms {
            let (addr, handled, sum) = report_rx.recv_timeout(TIMEOUT).unwrap();
            assert_eq!(
                expected[&addr],
                (handled, sum),
                "fsm {addr}, skip_end {skip_end}"
            );
        }
        assert_eq!(metrics.handled(), total);
    }
}

#[test]
fn messages_to_one_mailbox_are_handled_in_send_order() {
    let (router, mut system) = running_system(2, 8, Builder::new().budget(3));
    for addr in 0..4 {
        let (tx, runner) = Runner::new(usize::MAX);
        router.register(addr, BasicMailbox::new(tx, runner));
    }
    let (seen_tx, seen_rx) = channel();
    for i in 0..2_000u64 {
        let addr = i % 4;
        let seen_tx = seen_tx.clone();
        router
            .send(
                addr,
                Message::callback(move |_| seen_tx.send((addr, i)).unwrap()),
            )
            .unwrap();
    }
    let mut last: HashMap<u64, u64> = HashMap::new();
    for _ in 0..2_000 {
        let (addr, i) = seen_rx.recv_timeout(TIMEOUT).unwrap();
        if let Some(prev) = last.insert(addr, i) {
            assert!(prev < i, "fsm {addr} handled {i} after {prev}");
        }
    }
    system.shutdown();
}

#[test]
fn broadcast_reaches_every_fsm() {
    let (router, mut system) = running_system(2, 16, Builder::new());
    let fsms = 200;
    for addr in 0..fsms {
        let (tx, runner) = Runner::new(4);
        router.register(addr, BasicMailbox::new(tx, runner));
    }
    let (seen_tx, seen_rx) = channel();
    let mut next = 0;
    router.broadcast_normal(|| {
        let seen_tx = seen_tx.clone();
        next += 1;
        Message::callback(move |r: &mut Runner| seen_tx.send(r as *const Runner as usize).unwrap())
    });
    assert_eq!(next, fsms);
    let mut runners = std::collections::HashSet::new();
    for _ in 0..fsms {
        runners.insert(seen_rx.recv_timeout(TIMEOUT).unwrap());
    }
    assert_eq!(runners.len() as u64, fsms);
    system.shutdown();
}

#[test]
fn control_fsm_gets_its_messages() {
    let builder = Builder::new();
    let metrics = builder.metrics();
    let (router, mut system) = running_system(2, 4, builder);
    let (seen_tx, seen_rx) = channel();
    for i in 0..100u64 {
        router.send_control(Message::Count(i)).unwrap();
    }
    router
        .force_send_control(Message::callback(move |r: &mut Runner| {
            seen_tx.send(r.sum()).unwrap()
        }))
        .unwrap();
    assert_eq!(
        seen_rx.recv_timeout(TIMEOUT).unwrap(),
        (0..100).sum::<u64>()
    );
    system.shutdown();
    assert_eq!(metrics.handled(), 101);
}

#[test]
fn shutdown_handles_accepted_messages_joins_threads_and_later_sends_are_disconnected() {
    let builder = Builder::new();
    let metrics = builder.metrics();
    let (router, mut system) = running_system(2, 8, builder);
    let (report_tx, report_rx) = reports();
    for addr in 0..100 {
        register_reporting(&router, addr, usize::MAX, &report_tx);
    }
    let (thread_tx, thread_rx) = channel();
    for i in 0..10_000u64 {
        router.send(i % 100, Message::Count(1)).unwrap();
    }
    for addr in 0..100 {
        let thread_tx = thread_tx.clone();
        router
            .send(
                addr,
                Message::callback(move |_| {
                    thread_tx
                        .send(std::thread::current().name().map(str::to_owned))
                        .unwrap()
                }),
            )
            .unwrap();
    }
    system.shutdown();
    // Everything accepted before shutdown was handled, by the named pollers.
    assert_eq!(metrics.handled(), 10_100);
    for _ in 0..100 {
        let name = thread_rx.recv_timeout(TIMEOUT).unwrap().unwrap();
        assert!(name.starts_with("test-"), "{name}");
    }
    // Every FSM was dropped.
    let mut dropped = 0;
    while let Ok((_, handled, sum)) = report_rx.try_recv() {
        assert_eq!((handled, sum), (101, 100));
        dropped += 1;
    }
    assert_eq!(dropped, 100);
    assert!(matches!(
        router.send(1, Message::Count(1)),
        Err(TrySendError::Disconnected(Message::Count(1)))
    ));
    assert!(matches!(
        router.try_send(1, Message::Count(2)),
        Either::Left(Err(TrySendError::Disconnected(Message::Count(2))))
    ));
    assert!(matches!(
        router.force_send(1, Message::Count(3)),
        Err(SendError(_))
    ));
    assert!(matches!(
        router.send_control(Message::Count(4)),
        Err(TrySendError::Disconnected(_))
    ));
    assert!(router.force_send_control(Message::Count(5)).is_err());
    assert_eq!(router.alive_cnt(), 0);
    // Registering after shutdown drops the FSM at once.
    register_reporting(&router, 7, 4, &report_tx);
    assert_eq!(report_rx.recv_timeout(TIMEOUT).unwrap(), (7, 0, 0));
    // Idempotent.
    system.shutdown();
}

#[test]
fn stopped_fsm_is_dropped_and_its_mailbox_disconnected() {
    let (router, mut system) = running_system(2, 8, Builder::new());
    let (report_tx, report_rx) = reports();
    register_reporting(&router, 3, 16, &report_tx);
    let mailbox = router.mailbox(3).unwrap();
    router.send(3, Message::Count(2)).unwrap();
    router.send(3, Message::Stop).unwrap();
    assert_eq!(report_rx.recv_timeout(TIMEOUT).unwrap(), (3, 2, 2));
    assert!(matches!(
        mailbox.try_send(Message::Count(1)),
        Err(TrySendError::Disconnected(_))
    ));
    router.close(3);
    assert_eq!(router.alive_cnt(), 0);
    system.shutdown();
}

#[test]
fn closing_a_running_fsm_drops_it_when_its_poller_releases_it() {
    let (router, mut system) = running_system(1, 8, Builder::new());
    let (report_tx, report_rx) = reports();
    register_reporting(&router, 1, 16, &report_tx);
    let inside = Arc::new(Barrier::new(2));
    let resume = Arc::new(Barrier::new(2));
    let (i2, r2) = (inside.clone(), resume.clone());
    router
        .send(
            1,
            Message::callback(move |_| {
                i2.wait();
                r2.wait();
            }),
        )
        .unwrap();
    inside.wait(); // the FSM is now being handled on the poller
    router.close(1);
    assert!(report_rx.try_recv().is_err(), "dropped while being handled");
    resume.wait();
    assert_eq!(report_rx.recv_timeout(TIMEOUT).unwrap(), (1, 1, 0));
    system.shutdown();
}

#[test]
fn spawn_rejects_bad_sizes_a_second_spawn_and_a_spawn_after_shutdown() {
    let (tx, control) = Runner::new(4);
    let (_router, mut system) = create_system::<Runner, Runner>(0, 8, tx, control);
    match system.spawn("bad".to_owned(), Builder::new()) {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("pool_size"), "{msg}"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let (tx, control) = Runner::new(4);
    let (_router, mut system) = create_system::<Runner, Runner>(1, 0, tx, control);
    assert!(matches!(
        system.spawn("bad".to_owned(), Builder::new()),
        Err(Error::InvalidConfig(_))
    ));

    let (tx, control) = Runner::new(4);
    let (_router, mut system) = create_system::<Runner, Runner>(1, 8, tx, control);
    system.spawn("ok".to_owned(), Builder::new()).unwrap();
    assert!(matches!(
        system.spawn("again".to_owned(), Builder::new()),
        Err(Error::AlreadySpawned)
    ));
    system.shutdown();
    assert!(matches!(
        system.spawn("late".to_owned(), Builder::new()),
        Err(Error::ShutDown)
    ));
}

#[test]
fn shutdown_reraises_a_handler_panic() {
    let (router, mut system) = running_system(1, 8, Builder::new());
    let (tx, runner) = Runner::new(4);
    router.register(1, BasicMailbox::new(tx, runner));
    let (ran_tx, ran_rx) = channel();
    router
        .send(
            1,
            Message::callback(move |_| {
                ran_tx.send(()).unwrap();
                panic!("handler failure for test");
            }),
        )
        .unwrap();
    ran_rx.recv_timeout(TIMEOUT).unwrap();
    // The FSM died with the panicking poller: its mailbox is closed, so
    // senders are told instead of queueing into a mailbox nobody polls.
    let mailbox = router.mailbox(1).unwrap();
    wait_until("the dead FSM's mailbox is closed", || {
        mailbox.basic().is_closed()
    });
    assert!(matches!(
        router.send(1, Message::Count(1)),
        Err(TrySendError::Disconnected(_))
    ));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| system.shutdown()));
    assert!(result.is_err());
}

#[test]
fn dropping_the_system_shuts_it_down() {
    let (router, system) = running_system(2, 8, Builder::new());
    let (report_tx, report_rx) = reports();
    register_reporting(&router, 1, 16, &report_tx);
    router.send(1, Message::Count(4)).unwrap();
    drop(system);
    assert_eq!(report_rx.recv_timeout(TIMEOUT).unwrap(), (1, 1, 4));
    assert!(router.send(1, Message::Count(1)).is_err());
}

#[test]
fn a_handler_can_be_driven_directly_without_threads() {
    // As a deterministic simulation would: plain boxed FSMs, no pollers.
    let mut builder = Builder::new().budget(2);
    let metrics = builder.metrics();
    let mut handler = HandlerBuilder::<Runner, Runner>::build(&mut builder);
    let (tx, runner) = Runner::new(16);
    for i in 1..=3 {
        tx.try_send(Message::Count(i)).unwrap();
    }
    let mut batch = vec![Some(runner)];
    handler.begin(batch.len());
    let first = batch[0].as_mut().map(|r| handler.handle_normal(r));
    assert_eq!(first, Some(HandleResult::KeepProcessing));
    let second = batch[0].as_mut().map(|r| handler.handle_normal(r));
    assert_eq!(second, Some(HandleResult::stop_at(0, false)));
    handler.end(&mut batch);
    assert_eq!(metrics.handled(), 3);
    assert_eq!(batch[0].as_ref().map(|r| r.sum()), Some(6));
}

/// An FSM whose handler always wants more processing, with no messages.
struct Busy {
    rx: batch_system::mpsc::Receiver<()>,
}

impl batch_system::Fsm for Busy {
    type Message = ();
    fn is_stopped(&self) -> bool {
        false
    }
}

struct AlwaysMore(std::sync::mpsc::Sender<()>);

impl PollHandler<Busy, Busy> for AlwaysMore {
    fn begin(&mut self, _batch_size: usize) {}
    fn handle_control(&mut self, control: &mut Busy) -> Option<usize> {
        while control.rx.try_recv().is_ok() {}
        None
    }
    fn handle_normal(
        &mut self,
        normal: &mut impl std::ops::DerefMut<Target = Busy>,
    ) -> HandleResult {
        while normal.rx.try_recv().is_ok() {
            let _ = self.0.send(());
        }
        HandleResult::KeepProcessing
    }
    fn end(&mut self, _batch: &mut [Option<impl std::ops::DerefMut<Target = Busy>>]) {}
}

struct AlwaysMoreBuilder(std::sync::mpsc::Sender<()>);

impl HandlerBuilder<Busy, Busy> for AlwaysMoreBuilder {
    type Handler = AlwaysMore;
    fn build(&mut self) -> AlwaysMore {
        AlwaysMore(self.0.clone())
    }
}

#[test]
fn shutdown_finishes_even_if_handlers_always_ask_for_more() {
    let new_busy = || {
        let (tx, rx) = batch_system::mpsc::loose_bounded(16);
        (tx, Box::new(Busy { rx }))
    };
    let (ctx, control) = new_busy();
    let (router, mut system) = create_system::<Busy, Busy>(2, 4, ctx, control);
    let (seen_tx, seen_rx) = channel();
    system
        .spawn("busy".to_owned(), AlwaysMoreBuilder(seen_tx))
        .unwrap();
    for addr in 0..4 {
        let (tx, fsm) = new_busy();
        router.register(addr, BasicMailbox::new(tx, fsm));
        router.send(addr, ()).unwrap();
    }
    router.send_control(()).unwrap();
    for _ in 0..4 {
        seen_rx.recv_timeout(TIMEOUT).unwrap();
    }
    system.shutdown();
}
