//! Channels used as FSM mailboxes: a loosely bounded sender and an unbounded one.
//!
//! Both are multi-producer, single-consumer queues that hold no buffer
//! while empty (see [the queue](#the-queue)).
//! [`LooseBoundedSender`] adds a capacity that is checked with one lock-free
//! length read per send (no lock, no counter shared by senders). Because the
//! check and the push are not one atomic step, concurrent senders can
//! overshoot the capacity by at most one message each: the bound is *loose*.
//!
//! # Examples
//!
//! ```
//! use batch_system::mpsc::{self, TrySendError};
//!
//! let (tx, rx) = mpsc::loose_bounded(2);
//! tx.try_send(1).unwrap();
//! tx.try_send(2).unwrap();
//! // Over capacity: the message comes back.
//! assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
//! // `force_send` ignores the capacity.
//! tx.force_send(3).unwrap();
//! assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
//! drop(rx);
//! assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));
//! ```
//!
//! # The queue
//!
//! A mailbox is one of many thousands, and most of them are empty most of
//! the time, so an empty channel holds no buffer: the queue sits behind a
//! mutex, with the oldest message in a slot next to the lock and any
//! others in a `VecDeque` whose buffer is allocated by the second queued
//! message and given back whenever it empties; an atomic length allows
//! lock-free `len` and capacity checks. A channel costs one allocation of
//! 88 bytes plus the size of one message while empty (a crossbeam list
//! channel keeps ~1.2 KB: its ~500-byte channel and a 31-slot block after
//! its first message). A mailbox that is drained before its next message
//! arrives (the usual case for a region's mailbox) never allocates: a send
//! writes the message into the line it has just locked. Sends and receives
//! each take the mutex once; only the FSM's one receiver and the senders to
//! that one FSM ever contend for it.
//!
//! The error types are `crossbeam-channel`'s own, re-exported, so callers
//! match on them as before.

pub use crossbeam_channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The queued messages: the oldest in `front`, next to the lock, the
/// others in `rest`. `front` is `None` only when `rest` is empty too.
///
/// A mailbox that gets one message at a time (the common case: a poller
/// drains it before the next arrives) keeps it in `front` and never
/// allocates; `rest` gets a buffer only for a second queued message and
/// gives it back when it empties.
struct Queue<T> {
    front: Option<T>,
    rest: VecDeque<T>,
}

impl<T> Queue<T> {
    const fn new() -> Self {
        Queue {
            front: None,
            rest: VecDeque::new(),
        }
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.front.is_some()) + self.rest.len()
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    #[inline]
    fn push_back(&mut self, msg: T) {
        if self.front.is_none() {
            self.front = Some(msg);
        } else {
            self.rest.push_back(msg);
        }
    }

    /// Takes the oldest message; `rest`'s buffer goes back to the
    /// allocator when it empties.
    #[inline]
    fn pop_front(&mut self) -> Option<T> {
        let msg = self.front.take()?;
        if !self.rest.is_empty() {
            self.front = self.rest.pop_front();
            if self.rest.is_empty() {
                self.rest = VecDeque::new();
            }
        }
        Some(msg)
    }

    /// Slots of `rest`'s buffer (0: no buffer).
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.rest.capacity()
    }
}

/// What the mutex guards.
struct State<T> {
    queue: Queue<T>,
    /// The receiver is gone: sends fail.
    receiver_gone: bool,
    /// The receiver waits in `recv`/`recv_timeout`: senders notify it.
    receiver_waiting: bool,
}

/// One channel, shared by its senders and its receiver.
struct Shared<T> {
    state: Mutex<State<T>>,
    /// `state.queue.len()`, readable without the lock. Sequentially
    /// consistent: a poller releasing an FSM (a `SeqCst` swap of its
    /// state) then reading the length, and a sender pushing then trying to
    /// wake the FSM, must not both miss each other.
    len: AtomicUsize,
    /// Live `Sender`s; 0 disconnects the receiver once the queue is empty.
    senders: AtomicUsize,
    /// Wakes a receiver blocked in `recv`.
    ready: Condvar,
}

impl<T> Shared<T> {
    fn new() -> Arc<Shared<T>> {
        Arc::new(Shared {
            state: Mutex::new(State {
                queue: Queue::new(),
                receiver_gone: false,
                receiver_waiting: false,
            }),
            len: AtomicUsize::new(0),
            senders: AtomicUsize::new(1),
            ready: Condvar::new(),
        })
    }

    /// The state; a panic in another thread while it held the lock cannot
    /// leave the queue inconsistent (every change is one `VecDeque` call).
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, msg: T) -> Result<(), SendError<T>> {
        let mut state = self.lock();
        if state.receiver_gone {
            return Err(SendError(msg));
        }
        state.queue.push_back(msg);
        self.len.store(state.queue.len(), Ordering::SeqCst);
        if state.receiver_waiting {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Pops the front message.
    fn pop(&self, state: &mut State<T>) -> Option<T> {
        let msg = state.queue.pop_front()?;
        self.len.store(state.queue.len(), Ordering::SeqCst);
        Some(msg)
    }

    fn disconnected(&self) -> bool {
        self.senders.load(Ordering::Acquire) == 0
    }
}

/// The sending half of an [`unbounded`] channel. Cloneable, `Sync`.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Sends `msg`.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message when the receiver is gone.
    #[inline]
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.shared.send(msg)
    }

    /// Number of messages queued.
    #[inline]
    pub fn len(&self) -> usize {
        self.shared.len.load(Ordering::SeqCst)
    }

    /// Whether no message is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `self` and `other` send into the same channel.
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last one: a receiver blocked in `recv` must see the
            // disconnection (taking the lock orders this after its check).
            let state = self.shared.lock();
            if state.receiver_waiting {
                self.shared.ready.notify_one();
            }
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("len", &self.len()).finish()
    }
}

/// The receiving half of a channel: owned by one FSM, drained with
/// [`try_recv`](Receiver::try_recv) or [`try_iter`](Receiver::try_iter)
/// in a handler (never the blocking [`recv`](Receiver::recv), which would
/// stall the poller).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// Takes the front message if there is one.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when nothing is queued,
    /// [`TryRecvError::Disconnected`] when nothing is queued and every
    /// sender is gone.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        if self.shared.len.load(Ordering::SeqCst) == 0 {
            return Err(if self.shared.disconnected() && self.is_empty_locked() {
                TryRecvError::Disconnected
            } else {
                TryRecvError::Empty
            });
        }
        let mut state = self.shared.lock();
        self.shared.pop(&mut state).ok_or(TryRecvError::Empty)
    }

    fn is_empty_locked(&self) -> bool {
        self.shared.lock().queue.is_empty()
    }

    /// Blocks until a message arrives.
    ///
    /// # Errors
    ///
    /// [`RecvError`] when nothing is queued and every sender is gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        let mut state = self.shared.lock();
        loop {
            if let Some(msg) = self.shared.pop(&mut state) {
                return Ok(msg);
            }
            if self.shared.disconnected() {
                return Err(RecvError);
            }
            state.receiver_waiting = true;
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.receiver_waiting = false;
        }
    }

    /// Blocks until a message arrives or `timeout` passes.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when the time passed,
    /// [`RecvTimeoutError::Disconnected`] when nothing is queued and every
    /// sender is gone.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(msg) = self.shared.pop(&mut state) {
                return Ok(msg);
            }
            if self.shared.disconnected() {
                return Err(RecvTimeoutError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            state.receiver_waiting = true;
            state = self
                .shared
                .ready
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.receiver_waiting = false;
        }
    }

    /// An iterator over the messages queued now (it stops at the first
    /// empty check).
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { receiver: self }
    }

    /// Number of messages queued.
    #[inline]
    pub fn len(&self) -> usize {
        self.shared.len.load(Ordering::SeqCst)
    }

    /// Whether no message is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots the queue's buffer has room for (0: no buffer).
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.shared.lock().queue.buffer_capacity()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Like crossbeam: messages nobody will receive are dropped now
        // (outside the lock, their destructors may send elsewhere), and
        // later sends fail.
        let queued = {
            let mut state = self.shared.lock();
            state.receiver_gone = true;
            self.shared.len.store(0, Ordering::SeqCst);
            std::mem::replace(&mut state.queue, Queue::new())
        };
        drop(queued);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .finish()
    }
}

/// The iterator of [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    receiver: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.receiver.try_recv().ok()
    }
}

/// Creates a channel whose sender refuses messages once `capacity` messages
/// are queued (checked loosely, see the [module docs](self)).
///
/// `capacity == usize::MAX` means unbounded: the length check is skipped.
///
/// # Examples
///
/// ```
/// let (tx, rx) = batch_system::mpsc::loose_bounded::<u32>(16);
/// assert_eq!(tx.capacity(), 16);
/// tx.try_send(7).unwrap();
/// assert_eq!(rx.recv().unwrap(), 7);
/// ```
pub fn loose_bounded<T>(capacity: usize) -> (LooseBoundedSender<T>, Receiver<T>) {
    let (sender, receiver) = unbounded();
    (LooseBoundedSender { sender, capacity }, receiver)
}

/// Creates an unbounded channel.
///
/// The sender converts into a [`LooseBoundedSender`] without a bound
/// (`LooseBoundedSender::from(tx)`), so it can back a
/// [`BasicMailbox`](crate::BasicMailbox).
///
/// # Examples
///
/// ```
/// let (tx, rx) = batch_system::mpsc::unbounded();
/// tx.send("hello").unwrap();
/// assert_eq!(rx.recv().unwrap(), "hello");
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Shared::new();
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

/// The sending half of a [`loose_bounded`] channel.
///
/// Cloneable and shareable between threads (`Sync`).
#[derive(Debug)]
pub struct LooseBoundedSender<T> {
    sender: Sender<T>,
    capacity: usize,
}

impl<T> Clone for LooseBoundedSender<T> {
    fn clone(&self) -> Self {
        LooseBoundedSender {
            sender: self.sender.clone(),
            capacity: self.capacity,
        }
    }
}

impl<T> From<Sender<T>> for LooseBoundedSender<T> {
    /// Wraps an unbounded sender without a capacity limit.
    fn from(sender: Sender<T>) -> Self {
        LooseBoundedSender {
            sender,
            capacity: usize::MAX,
        }
    }
}

impl<T> LooseBoundedSender<T> {
    /// Sends `msg` unless the channel is over capacity or disconnected.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when `capacity` messages or more are queued,
    /// [`TrySendError::Disconnected`] when the receiver is gone; both give
    /// the message back.
    #[inline]
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        if self.capacity != usize::MAX && self.sender.len() >= self.capacity {
            return Err(TrySendError::Full(msg));
        }
        self.sender
            .send(msg)
            .map_err(|SendError(m)| TrySendError::Disconnected(m))
    }

    /// Sends `msg` regardless of the capacity.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message when the receiver is gone.
    #[inline]
    pub fn force_send(&self, msg: T) -> Result<(), SendError<T>> {
        self.sender.send(msg)
    }

    /// Number of messages queued in the channel.
    #[inline]
    pub fn len(&self) -> usize {
        self.sender.len()
    }

    /// Whether no message is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.sender.is_empty()
    }

    /// The capacity given to [`loose_bounded`] (`usize::MAX` when unbounded).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `self` and `other` send into the same channel.
    pub fn same_channel(&self, other: &Self) -> bool {
        self.sender.same_channel(&other.sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_channel_returns_message_and_force_send_ignores_capacity() {
        let (tx, rx) = loose_bounded(1);
        assert!(tx.try_send(1).is_ok());
        assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
        assert!(tx.force_send(2).is_ok());
        assert_eq!(tx.len(), 2);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![1, 2]);
        assert!(tx.is_empty());
    }

    #[test]
    fn dropped_receiver_disconnects_both_send_paths() {
        let (tx, rx) = loose_bounded(4);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(TrySendError::Disconnected(1)));
        assert_eq!(tx.force_send(2), Err(SendError(2)));
    }

    #[test]
    fn unbounded_sender_converts_without_a_limit() {
        let (tx, rx) = unbounded();
        let tx = LooseBoundedSender::from(tx);
        assert_eq!(tx.capacity(), usize::MAX);
        for i in 0..1000 {
            assert!(tx.try_send(i).is_ok());
        }
        assert_eq!(rx.len(), 1000);
        assert!(tx.same_channel(&tx.clone()));
    }

    #[test]
    fn an_empty_channel_holds_no_buffer() {
        let (tx, rx) = loose_bounded(64);
        assert_eq!(rx.buffer_capacity(), 0);
        for i in 0..40 {
            tx.try_send(i).unwrap();
        }
        assert!(rx.buffer_capacity() >= 39);
        assert_eq!(
            rx.try_iter().collect::<Vec<_>>(),
            (0..40).collect::<Vec<_>>()
        );
        assert_eq!(rx.buffer_capacity(), 0);
        assert_eq!(tx.len(), 0);
    }

    #[test]
    fn one_message_at_a_time_needs_no_buffer() {
        let (tx, rx) = loose_bounded(128);
        for i in 0..10 {
            tx.try_send(i).unwrap();
            assert_eq!(rx.buffer_capacity(), 0);
            assert_eq!(rx.len(), 1);
            assert_eq!(rx.try_recv(), Ok(i));
        }
        // Interleaved sends and receives keep their order across the slot
        // and the buffer.
        let mut next = 0;
        for i in 0..100 {
            tx.try_send(i).unwrap();
            if i % 3 == 0 {
                assert_eq!(rx.try_recv(), Ok(next));
                next += 1;
            }
        }
        let rest: Vec<_> = rx.try_iter().collect();
        assert_eq!(rest, (next..100).collect::<Vec<_>>());
        assert_eq!(rx.buffer_capacity(), 0);
    }

    #[test]
    fn messages_from_several_senders_keep_each_senders_order() {
        let (tx, rx) = unbounded();
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        tx.send((t, i)).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0u64; 4];
        // Blocks until every sender is gone and the queue is drained.
        while let Ok((t, i)) = rx.recv() {
            assert_eq!(i, next[t as usize]);
            next[t as usize] += 1;
        }
        assert_eq!(next, [1000; 4]);
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn a_blocked_receiver_wakes_for_a_message_and_for_the_last_sender_leaving() {
        let (tx, rx) = unbounded::<u32>();
        let waiter = std::thread::spawn(move || {
            let first = rx.recv_timeout(Duration::from_secs(60));
            let second = rx.recv_timeout(Duration::from_secs(60));
            (first, second)
        });
        tx.send(9).unwrap();
        drop(tx);
        let (first, second) = waiter.join().unwrap();
        assert_eq!(first, Ok(9));
        assert_eq!(second, Err(RecvTimeoutError::Disconnected));
    }

    #[test]
    fn dropping_the_receiver_drops_queued_messages_at_once() {
        let (tx, rx) = unbounded();
        let token = Arc::new(());
        tx.send(Arc::clone(&token)).unwrap();
        assert_eq!(Arc::strong_count(&token), 2);
        drop(rx);
        assert_eq!(Arc::strong_count(&token), 1);
        assert!(tx.send(token).is_err());
        assert!(tx.is_empty());
    }

    #[test]
    fn try_recv_reports_disconnection_only_once_drained() {
        let (tx, rx) = unbounded();
        tx.send(1).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
