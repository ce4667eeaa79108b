//! Model checks with loom of [`FsmState`] (who owns an FSM) and of the
//! idle-poller protocol (`idle.rs`: searching, parking, waking): every
//! interleaving of the threads below (within loom's bounds) is explored.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p batch-system --test loom --release
//! ```
//!
//! Without `--cfg loom` this file is empty. Under it, `FsmState` runs on
//! loom's atomics (see `Slot` in `src/fsm.rs`); the mailbox's message queue
//! is modelled by a counter behind a loom mutex, and the poller's release
//! protocol (`release`, then re-check the queue and take the FSM back) is
//! the one `batch.rs` uses.
#![cfg(loom)]

use batch_system::loom_model::{ModelIdle, ModelState as FsmState};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// An FSM that counts its drops.
struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs `f` on a new loom thread with its own handle to `state`.
fn on_thread<R: Send + 'static>(
    state: &Arc<FsmState<Token>>,
    f: impl FnOnce(Arc<FsmState<Token>>) -> R + Send + 'static,
) -> thread::JoinHandle<R> {
    let state = Arc::clone(state);
    thread::spawn(move || f(state))
}

/// Drops the last handle to `state` and checks that the FSM was dropped
/// exactly once over the whole run.
fn assert_dropped_once(state: Arc<FsmState<Token>>, drops: &AtomicUsize) {
    drop(state);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

fn new_state() -> (Arc<FsmState<Token>>, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let state = Arc::new(FsmState::new(Box::new(Token(Arc::clone(&drops)))));
    (state, drops)
}

#[test]
fn two_notifiers_one_owner() {
    loom::model(|| {
        let (state, drops) = new_state();
        let takers: Vec<_> = (0..2)
            .map(|_| {
                on_thread(&state, |state| {
                    if state.try_notify() {
                        let fsm = state.take_notified();
                        assert!(fsm.is_some(), "the winner must get the FSM");
                        state.release(fsm.unwrap());
                        1
                    } else {
                        0
                    }
                })
            })
            .collect();
        let owners: usize = takers.into_iter().map(|t| t.join().unwrap()).sum();
        // Both may win one after the other (the first released it), but
        // never at the same time: each winner found the FSM in the slot.
        assert!((1..=2).contains(&owners));
        assert_dropped_once(state, &drops);
    });
}

#[test]
fn close_racing_with_release_drops_the_fsm_exactly_once() {
    loom::model(|| {
        let (state, drops) = new_state();
        assert!(state.try_notify());
        let fsm = state.take_notified().unwrap();
        let poller = on_thread(&state, move |state| state.release(fsm));
        let closer = on_thread(&state, |state| state.close());
        poller.join().unwrap();
        closer.join().unwrap();
        // Whichever came second dropped it; nothing is left to drop later.
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(state.is_closed());
        assert_dropped_once(state, &drops);
    });
}

#[test]
fn close_racing_with_a_notify_drops_the_fsm_exactly_once() {
    loom::model(|| {
        let (state, drops) = new_state();
        let sender = on_thread(&state, |state| {
            if state.try_notify() {
                if let Some(fsm) = state.take_notified() {
                    state.release(fsm);
                }
            }
        });
        let closer = on_thread(&state, |state| state.close());
        sender.join().unwrap();
        closer.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_dropped_once(state, &drops);
    });
}

#[test]
fn a_message_sent_during_release_is_never_stranded() {
    loom::model(|| {
        let (state, drops) = new_state();
        let queued = Arc::new(Mutex::new(0usize));
        // The poller owns the FSM and has drained its queue.
        assert!(state.try_notify());
        let fsm = state.take_notified().unwrap();

        let poller = {
            let queued = Arc::clone(&queued);
            on_thread(&state, move |state| {
                state.release(fsm);
                // Re-check after releasing, as `batch.rs` does.
                if *queued.lock().unwrap() > 0 && state.try_notify() {
                    return state.take_notified();
                }
                None
            })
        };
        let sender = {
            let queued = Arc::clone(&queued);
            on_thread(&state, move |state| {
                *queued.lock().unwrap() += 1;
                if state.try_notify() {
                    // The scheduling token: whoever gets it runs the FSM.
                    return state.take_notified();
                }
                None
            })
        };
        let by_poller = poller.join().unwrap();
        let by_sender = sender.join().unwrap();
        // The message is queued, so exactly one side must now own the FSM
        // (a poller will handle it); idle with a queued message would be
        // a lost wake-up.
        assert_eq!(*queued.lock().unwrap(), 1);
        assert!(
            by_poller.is_some() ^ by_sender.is_some(),
            "exactly one owner: poller {} sender {}",
            by_poller.is_some(),
            by_sender.is_some()
        );
        drop(by_poller);
        drop(by_sender);
        assert_dropped_once(state, &drops);
    });
}

/// A model of the scheduler queue: a count of queued FSMs.
struct Queue(AtomicUsize);

impl Queue {
    fn push(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn pop(&self) -> bool {
        let mut n = self.0.load(Ordering::SeqCst);
        while n > 0 {
            match self
                .0
                .compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }

    fn has_work(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

/// The shared state of the wake-up model.
struct Pool {
    idle: ModelIdle,
    queue: Queue,
    handled: AtomicUsize,
    stopping: AtomicBool,
    items: usize,
}

/// One poller, as `Poller::poll` and `Poller::wait_for_work` run it: take
/// work; a searcher that found work passes the duty on; with no work,
/// search (one look here) and park. The poller that handles the last item
/// stops the pool as `BatchSystem::shutdown` would.
fn poller(pool: &Pool, id: usize) {
    let mut searching = false;
    loop {
        let got = pool.queue.pop();
        if got && searching {
            searching = false;
            if pool.idle.stop_searching() && pool.queue.has_work() {
                pool.idle.notify_one();
            }
        }
        if got {
            if pool.handled.fetch_add(1, Ordering::SeqCst) + 1 == pool.items {
                pool.stopping.store(true, Ordering::SeqCst);
                pool.idle.notify_all();
            }
            continue;
        }
        if pool.stopping.load(Ordering::SeqCst) {
            break;
        }
        if !searching {
            pool.idle.start_searching();
            searching = true;
        }
        if pool.queue.has_work() || pool.stopping.load(Ordering::SeqCst) {
            continue;
        }
        pool.idle.park(
            id,
            searching,
            || pool.queue.has_work(),
            || pool.stopping.load(Ordering::SeqCst),
        );
        searching = true;
    }
    pool.idle.exit(searching, || pool.queue.has_work());
}

/// A producer schedules `items` FSMs (push, then notify) while two pollers
/// run, search and park. A lost wake-up leaves an item queued with both
/// pollers parked: the joins below never return and loom reports a
/// deadlock. Every item is handled exactly once.
fn run_wake_up_model(items: usize) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let pool = Arc::new(Pool {
            idle: ModelIdle::new(2),
            queue: Queue(AtomicUsize::new(0)),
            handled: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            items,
        });
        let pollers: Vec<_> = (0..2)
            .map(|id| {
                let pool = Arc::clone(&pool);
                thread::spawn(move || poller(&pool, id))
            })
            .collect();
        for _ in 0..items {
            pool.queue.push();
            pool.idle.notify_one();
        }
        for p in pollers {
            p.join().unwrap();
        }
        assert_eq!(pool.handled.load(Ordering::SeqCst), items);
        assert!(!pool.queue.has_work());
    });
}

#[test]
fn a_scheduled_fsm_always_wakes_a_poller() {
    run_wake_up_model(1);
}

#[test]
fn two_scheduled_fsms_are_both_handled_while_pollers_search_and_park() {
    run_wake_up_model(2);
}
