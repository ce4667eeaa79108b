//! Channels used as FSM mailboxes: a loosely bounded sender and an unbounded one.
//!
//! Both are thin layers over `crossbeam-channel`'s unbounded list channel.
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
//! # Re-exported types
//!
//! The receiver, the unbounded sender, their iterators and every error type
//! are `crossbeam-channel`'s own, re-exported so users need not depend on
//! it; their documentation is crossbeam's. A mailbox's receiver is an
//! ordinary crossbeam [`Receiver`]: drain it with `try_recv` or
//! [`try_iter`](Receiver::try_iter) in a handler (never a blocking `recv`,
//! which would stall the poller).

pub use crossbeam_channel::{
    IntoIter, Iter, Receiver, RecvError, RecvTimeoutError, SendError, SendTimeoutError, Sender,
    TryIter, TryRecvError, TrySendError,
};

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
    let (sender, receiver) = crossbeam_channel::unbounded();
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
    crossbeam_channel::unbounded()
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
}
