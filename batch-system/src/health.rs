//! [`Health`]: what a running [`BatchSystem`](crate::BatchSystem) can tell
//! about its poller threads, and the shared life-cycle state behind it.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;

/// A snapshot of a batch system's poller threads, from
/// [`BatchSystem::health`](crate::BatchSystem::health).
///
/// A poller whose handler panics dies with the FSMs of its batch: their
/// mailboxes are closed, so later sends to them fail with `Disconnected`.
/// The other pollers keep serving every other FSM. When the last poller
/// has died nothing can poll any FSM any more, so the system refuses every
/// send (as after shutdown) instead of queueing messages nobody handles.
/// [`BatchSystem::shutdown`](crate::BatchSystem::shutdown) later re-raises
/// the first panic.
///
/// # Examples
///
/// ```
/// use batch_system::test_runner::{Builder, Runner};
/// use batch_system::create_system;
///
/// let (tx, control) = Runner::new(16);
/// let (_router, mut system) = create_system::<Runner, Runner>(2, 8, tx, control);
/// assert_eq!(system.health().running, 0);
/// system.spawn("health".to_owned(), Builder::new()).unwrap();
/// let health = system.health();
/// assert_eq!((health.pollers, health.running, health.panicked), (2, 2, 0));
/// assert!(health.is_healthy());
/// system.shutdown();
/// assert_eq!(system.health().running, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Poller threads started by [`spawn`](crate::BatchSystem::spawn).
    pub pollers: usize,
    /// Poller threads still running (they stop at shutdown, or when their
    /// handler panics).
    pub running: usize,
    /// Poller threads that died because their handler panicked.
    pub panicked: usize,
    /// The message of the first panic, if it was a string.
    pub first_panic: Option<String>,
    /// Whether sends are refused: shutdown has begun, or no poller is left.
    pub refusing_sends: bool,
    /// Poller threads parked right now, waiting to be woken by a send (an
    /// idle system parks all of them after a short search).
    pub parked: usize,
    /// FSMs scheduled (they have messages, or asked to be polled again)
    /// and not yet taken by a poller.
    pub queued: usize,
}

impl Health {
    /// No poller has panicked and the system still accepts messages.
    pub fn is_healthy(&self) -> bool {
        self.panicked == 0 && !self.refusing_sends
    }

    /// Every running poller is parked and no FSM waits for one: nothing is
    /// being handled and nothing queued, at the moment the health was
    /// read. A send right after changes that, so a caller that wants a
    /// quiet system (a test letting messages settle) checks it together
    /// with whatever else can send. A system without poller threads (not
    /// spawned, or driven by [`ManualPoller`](crate::ManualPoller)s) is
    /// idle when nothing is queued.
    pub fn is_idle(&self) -> bool {
        self.queued == 0 && self.parked >= self.running
    }
}

/// Life-cycle state shared by a system, its schedulers and its pollers.
#[derive(Default)]
pub(crate) struct Lifecycle {
    /// Sends are refused: shutdown began, or every poller died.
    stopped: CachePadded<AtomicBool>,
    spawned: AtomicUsize,
    running: AtomicUsize,
    panicked: AtomicUsize,
    first_panic: Mutex<Option<String>>,
}

impl Lifecycle {
    #[inline]
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// A poller thread is about to start.
    pub(crate) fn poller_started(&self) {
        self.spawned.fetch_add(1, Ordering::SeqCst);
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    /// A poller thread could not be started after `poller_started`.
    pub(crate) fn poller_not_started(&self) {
        self.spawned.fetch_sub(1, Ordering::SeqCst);
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// A poller thread ended normally (at shutdown).
    pub(crate) fn poller_exited(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// A poller thread's handler panicked with `payload`. When it was the
    /// last poller, sends are refused from now on.
    pub(crate) fn poller_panicked(&self, payload: &(dyn Any + Send)) {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        {
            let mut first = self.first_panic.lock().unwrap_or_else(|e| e.into_inner());
            if self.panicked.load(Ordering::SeqCst) == 0 {
                *first = text;
            }
            self.panicked.fetch_add(1, Ordering::SeqCst);
        }
        if self.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.stop();
        }
    }

    pub(crate) fn health(&self) -> Health {
        let first_panic = self
            .first_panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Health {
            pollers: self.spawned.load(Ordering::SeqCst),
            running: self.running.load(Ordering::SeqCst),
            panicked: self.panicked.load(Ordering::SeqCst),
            first_panic,
            refusing_sends: self.is_stopped(),
            parked: 0,
            queued: 0,
        }
    }
}
