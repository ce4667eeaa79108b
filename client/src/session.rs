//! Client sessions: the client id and sequence number a write carries so
//! that the store applies it at most once however often it is retried.
//!
//! The store keeps, per client id and region, the highest sequence it
//! applied and that command's answer (see `docs/reads-and-sessions.md`). A
//! retry repeats its sequence and gets the saved answer; a lower sequence is
//! refused. So one client id must have **one write in flight at a time**:
//! two concurrent writes numbered 5 and 6 could apply 6 first and then see 5
//! refused as stale.
//!
//! - [`Session`]: one client id and its counter, for a driver that issues
//!   writes one at a time (the blocking [`Client`](crate::Client)).
//! - [`SessionPool`]: sessions for a driver with many writes in flight (the
//!   async gRPC client): each write borrows a session no other write is
//!   using and gives it back when it is done; a new session (a new random
//!   id) is made only when every existing one is busy, so the pool holds as
//!   many sessions as the most writes ever in flight at once.
//!
//! Both are plain data: no I/O, no clock, shared by every driver.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A random, non-zero client id (std's random hash keys; each call draws
/// fresh keys).
pub fn random_client_id() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x5e55_1015);
    h.finish().max(1)
}

/// One client id and the sequence number of its last write.
///
/// # Examples
///
/// ```
/// let mut s = client::Session::new(7);
/// assert_eq!((s.client_id(), s.next_sequence()), (7, 1));
/// assert_eq!(s.next_sequence(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    client_id: u64,
    sequence: u64,
}

impl Session {
    /// The session of `client_id` (0 picks a random id), no write issued
    /// yet.
    pub fn new(client_id: u64) -> Session {
        Session {
            client_id: if client_id == 0 {
                random_client_id()
            } else {
                client_id
            },
            sequence: 0,
        }
    }

    /// A session with a random id.
    pub fn random() -> Session {
        Session::new(0)
    }

    /// The client id.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The sequence number of the last write numbered (0 before the first).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Numbers a new write: the sequence after the last one. Every attempt
    /// of that write carries the number returned here.
    pub fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }
}

/// Sessions for writes in flight at the same time: [`SessionPool::acquire`]
/// lends a session that no other write holds, [`SessionPool::release`]
/// takes it back.
///
/// # Examples
///
/// ```
/// let mut pool = client::SessionPool::new();
/// let mut a = pool.acquire();
/// let mut b = pool.acquire();
/// assert_ne!(a.client_id(), b.client_id());
/// let (id, seq) = (a.client_id(), a.next_sequence());
/// pool.release(a);
/// // The idle session is lent again, its numbering continued.
/// let mut c = pool.acquire();
/// assert_eq!((c.client_id(), c.next_sequence()), (id, seq + 1));
/// # pool.release(b); pool.release(c);
/// assert_eq!(pool.len(), 2);
/// ```
#[derive(Debug, Default)]
pub struct SessionPool {
    idle: Vec<Session>,
    lent: usize,
}

impl SessionPool {
    /// An empty pool.
    pub fn new() -> SessionPool {
        SessionPool::default()
    }

    /// A session no other write holds: the one released last, or a new one
    /// with a random id when all are busy.
    pub fn acquire(&mut self) -> Session {
        self.lent += 1;
        self.idle.pop().unwrap_or_else(Session::random)
    }

    /// Takes back a session lent by [`SessionPool::acquire`] (its write is
    /// done, whatever the outcome: a later write numbered higher is safe
    /// even if the earlier one is still travelling, since the store refuses
    /// the lower number once the higher one applied).
    pub fn release(&mut self, session: Session) {
        self.lent = self.lent.saturating_sub(1);
        self.idle.push(session);
    }

    /// Sessions made so far (lent or idle).
    pub fn len(&self) -> usize {
        self.idle.len() + self.lent
    }

    /// Whether no session was made yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writes_never_share_a_session() {
        let mut pool = SessionPool::new();
        let held: Vec<Session> = (0..8).map(|_| pool.acquire()).collect();
        let mut ids: Vec<u64> = held.iter().map(Session::client_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 8);
        assert!(ids.iter().all(|&id| id != 0));
        for s in held {
            pool.release(s);
        }
        assert_eq!(pool.len(), 8);
    }

    #[test]
    fn a_released_session_continues_its_numbering() {
        let mut pool = SessionPool::new();
        let mut s = pool.acquire();
        let id = s.client_id();
        assert_eq!(s.next_sequence(), 1);
        assert_eq!(s.next_sequence(), 2);
        pool.release(s);
        let mut again = pool.acquire();
        assert_eq!(again.client_id(), id);
        assert_eq!(again.next_sequence(), 3);
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn a_zero_id_is_replaced_by_a_random_one() {
        assert_ne!(Session::new(0).client_id(), 0);
        assert_eq!(Session::new(42).client_id(), 42);
    }
}
