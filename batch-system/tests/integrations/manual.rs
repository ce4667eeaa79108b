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

/// A system of `Runner`s with batches of `batch`, not spawned, and FSMs
/// `1..=fsms` registered.
fn manual_system(
    batch: usize,
    fsms: u64,
) -> (
    batch_system::BatchRouter<Runner, Runner>,
    batch_system::BatchSystem<Runner, Runner>,
) {
    let (control_tx, control) = Runner::new(64);
    let (router, system) = create_system::<Runner, Runner>(2, batch, control_tx, control);
    for addr in 1..=fsms {
        let (tx, runner) = Runner::new(64);
        router.register(addr, BasicMailbox::new(tx, runner));
    }
    (router, system)
}

#[test]
fn a_held_fsm_is_not_handed_to_another_manual_poller() {
    let (router, system) = manual_system(1, 2);
    let (mut one, mut two) = (Builder::new(), Builder::new());
    let (one_metrics, two_metrics) = (one.metrics(), two.metrics());
    let mut first = system.manual_poller(one.build());
    let mut second = system.manual_poller(two.build());
    router.send(1, Message::Count(1)).unwrap();
    router.send(2, Message::Count(10)).unwrap();

    assert_eq!(first.begin_round().unwrap(), 1, "FSM 1 (batches of one)");
    assert!(first.in_round());
    assert_eq!(first.held(), 1);
    assert_eq!(
        second.begin_round().unwrap(),
        1,
        "FSM 2, while FSM 1 is held"
    );
    assert_eq!(second.finish_round().unwrap(), 1);
    router.send(1, Message::Count(100)).unwrap();
    assert_eq!(
        second.poll_once(),
        0,
        "FSM 1 is held by the first poller: nothing is scheduled"
    );
    assert_eq!(first.finish_round().unwrap(), 1);
    assert!(!first.in_round());
    assert_eq!(first.held(), 0);
    assert_eq!(one_metrics.handled(), 2, "both messages of FSM 1");
    assert_eq!(two_metrics.handled(), 1, "FSM 2's message only");
    assert_eq!(first.poll_once() + second.poll_once(), 0);
}

#[test]
fn a_message_sent_to_a_held_fsm_after_its_turn_is_handled_in_a_later_round() {
    let (router, system) = manual_system(8, 1);
    let mut builder = Builder::new();
    let metrics = builder.metrics();
    let mut first = system.manual_poller(builder.build());
    let mut second = system.manual_poller(builder.build());
    let (sums_tx, sums) = std::sync::mpsc::channel();
    let report = move |r: &mut Runner| sums_tx.send(r.sum()).unwrap();
    router.send(1, Message::Count(1)).unwrap();
    router.send(1, Message::callback(report.clone())).unwrap();

    assert_eq!(first.begin_round().unwrap(), 1);
    assert!(first.handle_next(), "FSM 1 handled");
    assert!(!first.handle_next(), "the round has no other FSM");
    router.send(1, Message::Count(2)).unwrap();
    router.send(1, Message::callback(report)).unwrap();
    assert_eq!(second.poll_once(), 0, "FSM 1 is still held");
    assert_eq!(first.finish_round().unwrap(), 1);
    assert_eq!(sums.try_iter().collect::<Vec<_>>(), vec![1]);
    assert_eq!(metrics.rounds(), 1);

    assert_eq!(
        second.poll_once(),
        1,
        "the release found the new messages and scheduled FSM 1 again"
    );
    assert_eq!(sums.try_iter().collect::<Vec<_>>(), vec![3]);
    assert_eq!(metrics.handled(), 4);
    assert_eq!(first.poll_once() + second.poll_once(), 0);
}

#[test]
fn only_one_manual_poller_holds_the_control_fsm() {
    let (router, system) = manual_system(8, 0);
    let mut builder = Builder::new();
    let metrics = builder.metrics();
    let mut first = system.manual_poller(builder.build());
    let mut second = system.manual_poller(builder.build());
    router.send_control(Message::Count(1)).unwrap();
    assert_eq!(first.begin_round().unwrap(), 1);
    assert!(first.holds_control());
    assert!(first.handle_next(), "the control FSM handled");
    router.send_control(Message::Count(2)).unwrap();
    assert_eq!(second.begin_round().unwrap(), 0, "the control FSM is held");
    assert!(!second.in_round(), "nothing taken: no round begun");
    assert_eq!(
        first.poll_once(),
        1,
        "poll_once finishes the round in progress"
    );
    assert!(!first.holds_control());
    assert_eq!(second.poll_once(), 1, "the control FSM, scheduled again");
    assert_eq!(metrics.handled(), 2);
    assert_eq!(metrics.rounds(), 2);
}

#[test]
fn finishing_without_a_round_is_an_error_and_calls_no_handler() {
    let (router, system) = manual_system(8, 1);
    let mut builder = Builder::new();
    let metrics = builder.metrics();
    let mut poller = system.manual_poller(builder.build());
    assert!(matches!(
        poller.finish_round(),
        Err(batch_system::Error::NoRoundInProgress)
    ));
    assert!(!poller.handle_next(), "no round: nothing to handle");
    assert_eq!(poller.begin_round().unwrap(), 0, "nothing scheduled");
    assert!(matches!(
        poller.finish_round(),
        Err(batch_system::Error::NoRoundInProgress)
    ));
    assert_eq!(metrics.rounds(), 0, "neither begin nor end was called");

    router.send(1, Message::Count(5)).unwrap();
    assert_eq!(poller.begin_round().unwrap(), 1);
    assert!(matches!(
        poller.begin_round(),
        Err(batch_system::Error::RoundInProgress)
    ));
    assert_eq!(poller.held(), 1, "the round in progress is kept");
    assert_eq!(poller.finish_round().unwrap(), 1);
    assert_eq!(metrics.handled(), 1);
    assert_eq!(metrics.rounds(), 1);
}

#[test]
fn split_rounds_handle_the_control_fsm_first_then_normal_fsms_in_queue_order() {
    let (router, system) = manual_system(8, 3);
    let mut poller = system.manual_poller(Builder::new().build());
    let (order_tx, order) = std::sync::mpsc::channel();
    for addr in [2, 1, 3] {
        let order_tx = order_tx.clone();
        router
            .send(
                addr,
                Message::callback(move |_: &mut Runner| order_tx.send(addr).unwrap()),
            )
            .unwrap();
    }
    router
        .send_control(Message::callback(move |_: &mut Runner| {
            order_tx.send(0).unwrap()
        }))
        .unwrap();
    assert_eq!(poller.begin_round().unwrap(), 4);
    let mut seen = Vec::new();
    while poller.handle_next() {
        seen.extend(order.try_iter());
    }
    assert_eq!(seen, vec![0, 2, 1, 3]);
    assert_eq!(poller.finish_round().unwrap(), 4);
    assert_eq!(poller.poll_once(), 0);
}

#[test]
fn dropping_a_manual_poller_that_holds_fsms_drops_them_and_closes_their_mailboxes() {
    let (control_tx, control) = Runner::new(16);
    let (router, system) = create_system::<Runner, Runner>(2, 8, control_tx, control);
    let mut poller = system.manual_poller(Builder::new().build());
    let (tx, mut runner) = Runner::new(16);
    let (dropped_tx, dropped) = std::sync::mpsc::channel();
    runner.set_on_drop(move |r| dropped_tx.send(r.sum()).unwrap());
    router.register(1, BasicMailbox::new(tx, runner));
    router.send(1, Message::Count(7)).unwrap();
    assert_eq!(poller.begin_round().unwrap(), 1);
    assert!(poller.handle_next());
    drop(poller);
    assert_eq!(dropped.try_recv(), Ok(7), "dropped with the poller");
    assert!(
        router.send(1, Message::Count(1)).is_err(),
        "its mailbox is closed"
    );
    let mut other = system.manual_poller(Builder::new().build());
    assert_eq!(other.poll_once(), 0);
}

/// A small deterministic generator (splitmix64) for the interleaving test.
struct Steps(u64);

impl Steps {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

#[test]
fn interleaved_steps_of_two_manual_pollers_handle_every_message_exactly_once() {
    for seed in 0..50u64 {
        let fsms = 6u64;
        let (router, system) = manual_system(1 + (seed % 3) as usize, fsms);
        let mut builder = Builder::new().budget(1 + (seed % 2) as usize);
        let metrics = builder.metrics();
        let mut pollers = [
            system.manual_poller(builder.build()),
            system.manual_poller(builder.build()),
        ];
        let mut rng = Steps(seed);
        let mut sent = 0u64;
        let mut expected = vec![0u64; fsms as usize + 1];
        for _ in 0..2_000 {
            match rng.next(4) {
                0 if sent < 300 => {
                    let addr = rng.next(fsms + 1);
                    let value = 1 + rng.next(1_000);
                    if addr == 0 {
                        router.send_control(Message::Count(value)).unwrap();
                    } else {
                        router.send(addr, Message::Count(value)).unwrap();
                    }
                    expected[addr as usize] += value;
                    sent += 1;
                }
                _ => {
                    let p = &mut pollers[rng.next(2) as usize];
                    if !p.in_round() {
                        p.begin_round().unwrap();
                    } else if rng.next(3) == 0 || !p.handle_next() {
                        p.finish_round().unwrap();
                    }
                }
            }
        }
        for p in &mut pollers {
            while p.poll_once() > 0 {}
        }
        assert!(pollers.iter().all(|p| !p.in_round()));
        assert_eq!(metrics.handled(), sent, "seed {seed}");
        let (sums_tx, sums) = std::sync::mpsc::channel();
        for addr in 0..=fsms {
            let sums_tx = sums_tx.clone();
            let report =
                Message::callback(move |r: &mut Runner| sums_tx.send((addr, r.sum())).unwrap());
            if addr == 0 {
                router.send_control(report).unwrap();
            } else {
                router.send(addr, report).unwrap();
            }
        }
        while pollers[0].poll_once() + pollers[1].poll_once() > 0 {}
        let mut got: Vec<(u64, u64)> = sums.try_iter().collect();
        got.sort_unstable();
        let want: Vec<(u64, u64)> = (0..=fsms).map(|a| (a, expected[a as usize])).collect();
        assert_eq!(got, want, "seed {seed}");
    }
}

#[test]
fn an_fsm_closed_while_held_before_its_turn_is_not_handled_and_is_dropped() {
    let (control_tx, control) = Runner::new(16);
    let (router, system) = create_system::<Runner, Runner>(2, 8, control_tx, control);
    let mut builder = Builder::new();
    let metrics = builder.metrics();
    let mut poller = system.manual_poller(builder.build());
    let (dropped_tx, dropped) = std::sync::mpsc::channel();
    for addr in 1..=2 {
        let (tx, mut runner) = Runner::new(16);
        let dropped_tx = dropped_tx.clone();
        runner.set_on_drop(move |r| dropped_tx.send((addr, r.handled())).unwrap());
        router.register(addr, BasicMailbox::new(tx, runner));
        router.send(addr, Message::Count(1)).unwrap();
    }
    assert_eq!(poller.begin_round().unwrap(), 2);
    assert!(poller.handle_next(), "FSM 1 handled");
    // Both are closed while held: FSM 1 after its turn, FSM 2 before it
    // (as when a new FSM takes over an address).
    router.close(1);
    router.close(2);
    assert!(dropped.try_recv().is_err(), "still held by the poller");
    assert!(poller.handle_next(), "FSM 2's turn: skipped");
    assert!(!poller.handle_next());
    assert_eq!(poller.finish_round().unwrap(), 2);
    let mut gone: Vec<(u64, u64)> = dropped.try_iter().collect();
    gone.sort_unstable();
    assert_eq!(
        gone,
        vec![(1, 1), (2, 0)],
        "FSM 1 was handled before it was closed, FSM 2 never after"
    );
    assert_eq!(metrics.handled(), 1);
    assert_eq!(poller.poll_once(), 0);
}
