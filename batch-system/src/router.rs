//! [`Router`]: the address book that delivers messages to FSM mailboxes.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use dashmap::DashMap;
use either::Either;

use crate::fsm::{Fsm, FsmScheduler};
use crate::mailbox::{BasicMailbox, Mailbox};
use crate::mpsc::{SendError, TrySendError};
use crate::scheduler::{ControlScheduler, NormalScheduler};

/// A hasher for `u64` addresses that keeps neighbouring addresses
/// together.
///
/// Addresses come in blocks of 16 (`addr >> 4`). The block number is
/// spread with one multiply and a fold, as a plain hash would; the low 4
/// bits are kept as they are in the bits that pick the bucket, so the 16
/// addresses of a block sit in one shard, in neighbouring buckets, and in
/// one 16-byte group of the table's control bytes. Senders that walk
/// addresses in order (region ids are handed out in sequence) then find
/// the next address on a cache line they just used, instead of missing
/// the cache on a random bucket for every send. The low bits are also
/// folded into the top 7 bits, which the table keeps per bucket to rule
/// out non-matching keys, so the addresses of one block differ there too.
///
/// A set of addresses that all fall in different blocks (a stride of 16
/// or more) is spread exactly as a plain hash would spread it.
#[derive(Default, Clone, Copy)]
struct AddrHasher(u64);

impl AddrHasher {
    /// The hash of `addr`, see the type's docs.
    #[inline]
    fn hash_addr(addr: u64) -> u64 {
        let h = (addr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let block = h ^ (h >> 29);
        let low = addr & 0xF;
        ((block & !0xF) | low) ^ (low << 57)
    }
}

impl Hasher for AddrHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b) ^ self.0.rotate_left(8));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = AddrHasher::hash_addr(n);
    }
}

type AddrMap<N> = DashMap<u64, BasicMailbox<N>, BuildHasherDefault<AddrHasher>>;

struct Core<N: Fsm, C: Fsm> {
    normals: AddrMap<N>,
    control_box: BasicMailbox<C>,
    stopped: CachePadded<AtomicBool>,
}

/// Routes messages to FSM mailboxes by `u64` address.
///
/// Every batch system has many *normal* FSMs (one per region, say), each
/// registered under an address, and one *control* FSM for work that needs a
/// global view (creating missing FSMs, store-wide ticks). `Ns` and `Cs`
/// wake them; [`BatchRouter`] is the router with the batch system's own
/// schedulers.
///
/// The router is `Clone` (one reference count) and `Sync`. Lookups take a
/// shard read lock of a concurrent map, so senders never serialise on each
/// other; only [`register`](Self::register) and [`close`](Self::close) take
/// a shard write lock.
///
/// After [`broadcast_shutdown`](Self::broadcast_shutdown) every send fails
/// with `Disconnected` and gives the message back, through the router and
/// through every [`Mailbox`] it handed out.
///
/// # Examples
///
/// ```
/// use batch_system::test_runner::{Builder, Message, Runner};
/// use batch_system::{create_system, BasicMailbox, Either};
///
/// let (control_tx, control) = Runner::new(16);
/// let (router, mut system) = create_system::<Runner, Runner>(1, 8, control_tx, control);
/// system.spawn("doc".to_owned(), Builder::new()).unwrap();
///
/// let (tx, runner) = Runner::new(16);
/// router.register(1, BasicMailbox::new(tx, runner));
/// assert_eq!(router.alive_cnt(), 1);
/// assert!(router.send(1, Message::Count(1)).is_ok());
/// // No FSM at address 2: the message comes back on the right.
/// assert!(matches!(router.try_send(2, Message::Count(2)), Either::Right(Message::Count(2))));
/// system.shutdown();
/// ```
pub struct Router<N: Fsm, C: Fsm, Ns, Cs> {
    core: Arc<Core<N, C>>,
    normal_scheduler: Ns,
    control_scheduler: Cs,
}

/// The router of a [`BatchSystem`](crate::BatchSystem), as returned by
/// [`create_system`](crate::create_system).
pub type BatchRouter<N, C> = Router<N, C, NormalScheduler<N, C>, ControlScheduler<N, C>>;

impl<N: Fsm, C: Fsm, Ns: Clone, Cs: Clone> Clone for Router<N, C, Ns, Cs> {
    fn clone(&self) -> Self {
        Router {
            core: Arc::clone(&self.core),
            normal_scheduler: self.normal_scheduler.clone(),
            control_scheduler: self.control_scheduler.clone(),
        }
    }
}

impl<N, C, Ns, Cs> Router<N, C, Ns, Cs>
where
    N: Fsm,
    C: Fsm,
    Ns: FsmScheduler<Fsm = N> + Clone,
    Cs: FsmScheduler<Fsm = C> + Clone,
{
    /// Creates a router with the control FSM's mailbox and the two schedulers.
    pub fn new(
        control_box: BasicMailbox<C>,
        normal_scheduler: Ns,
        control_scheduler: Cs,
    ) -> Router<N, C, Ns, Cs> {
        Router {
            core: Arc::new(Core {
                normals: DashMap::default(),
                control_box,
                stopped: CachePadded::new(AtomicBool::new(false)),
            }),
            normal_scheduler,
            control_scheduler,
        }
    }

    #[inline]
    fn is_stopped(&self) -> bool {
        self.core.stopped.load(Ordering::SeqCst)
    }

    /// Whether [`broadcast_shutdown`](Self::broadcast_shutdown) has been called.
    pub fn is_shutdown(&self) -> bool {
        self.is_stopped()
    }

    /// Sends `msg` to the FSM at `addr`, within its mailbox capacity.
    ///
    /// Returns `Either::Left` with the send result if the address is
    /// registered, or `Either::Right(msg)` if there is no such mailbox (the
    /// caller may then ask the control FSM to create it).
    ///
    /// # Examples
    ///
    /// ```
    /// # use batch_system::test_runner::{Message, Runner};
    /// # use batch_system::{create_system, Either};
    /// # let (ctx, c) = Runner::new(4);
    /// # let (router, _system) = create_system::<Runner, Runner>(1, 4, ctx, c);
    /// match router.try_send(42, Message::Count(1)) {
    ///     Either::Left(Ok(())) => println!("delivered"),
    ///     Either::Left(Err(e)) => println!("mailbox full or closed: {e:?}"),
    ///     Either::Right(msg) => { let _ = router.send_control(msg); }
    /// }
    /// ```
    #[inline]
    pub fn try_send(
        &self,
        addr: u64,
        msg: N::Message,
    ) -> Either<Result<(), TrySendError<N::Message>>, N::Message> {
        if self.is_stopped() {
            return Either::Left(Err(TrySendError::Disconnected(msg)));
        }
        match self.core.normals.get(&addr) {
            Some(mailbox) => Either::Left(mailbox.try_send(msg, &self.normal_scheduler)),
            None => Either::Right(msg),
        }
    }

    /// Sends `msg` to the FSM at `addr`, within its mailbox capacity.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] over capacity; [`TrySendError::Disconnected`]
    /// if the address is not registered, closed, or the router is shut down.
    #[inline]
    pub fn send(&self, addr: u64, msg: N::Message) -> Result<(), TrySendError<N::Message>> {
        match self.try_send(addr, msg) {
            Either::Left(r) => r,
            Either::Right(m) => Err(TrySendError::Disconnected(m)),
        }
    }

    /// Sends `msg` to the FSM at `addr` ignoring its mailbox capacity.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message if the address is not registered,
    /// closed, or the router is shut down.
    #[inline]
    pub fn force_send(&self, addr: u64, msg: N::Message) -> Result<(), SendError<N::Message>> {
        if self.is_stopped() {
            return Err(SendError(msg));
        }
        match self.core.normals.get(&addr) {
            Some(mailbox) => mailbox.force_send(msg, &self.normal_scheduler),
            None => Err(SendError(msg)),
        }
    }

    /// Sends `msg` to the control FSM within its mailbox capacity.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] over capacity; [`TrySendError::Disconnected`]
    /// if the control FSM is gone or the router is shut down.
    #[inline]
    pub fn send_control(&self, msg: C::Message) -> Result<(), TrySendError<C::Message>> {
        if self.is_stopped() {
            return Err(TrySendError::Disconnected(msg));
        }
        self.core.control_box.try_send(msg, &self.control_scheduler)
    }

    /// Sends `msg` to the control FSM ignoring its mailbox capacity.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message if the control FSM is gone or the
    /// router is shut down.
    #[inline]
    pub fn force_send_control(&self, msg: C::Message) -> Result<(), SendError<C::Message>> {
        if self.is_stopped() {
            return Err(SendError(msg));
        }
        self.core
            .control_box
            .force_send(msg, &self.control_scheduler)
    }

    /// Force-sends a message made by `msg_gen` to every registered normal
    /// FSM. Closed mailboxes are skipped, and `msg_gen` is not called for
    /// them; see [`broadcast_normal_where`](Self::broadcast_normal_where).
    pub fn broadcast_normal(&self, msg_gen: impl FnMut() -> N::Message) {
        self.broadcast_normal_where(|_| true, msg_gen);
    }

    /// Force-sends a message made by `msg_gen` to every registered normal
    /// FSM whose address passes `filter`.
    ///
    /// `filter` is called once per registered address. `msg_gen` is called
    /// once per address that passes the filter and whose mailbox is open
    /// when the broadcast reaches it; closed mailboxes (an FSM that stopped
    /// but whose address was not [closed](Self::close) yet) are skipped
    /// without making a message. Only a mailbox closed by another thread in
    /// the instant between that check and the send drops its message.
    /// After shutdown nothing is sent and neither closure is called.
    ///
    /// Useful to spread periodic work: a timer that reaches a tenth of the
    /// FSMs every tenth of its period wakes each FSM as often as a full
    /// broadcast would, without handing the pollers every FSM at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use batch_system::test_runner::{Message, Runner};
    /// use batch_system::{create_system, BasicMailbox};
    ///
    /// let (tx, control) = Runner::new(16);
    /// let (router, _system) = create_system(1, 8, tx, control);
    /// for addr in 0..4 {
    ///     let (tx, fsm) = Runner::new(16);
    ///     router.register(addr, BasicMailbox::new(tx, fsm));
    /// }
    /// // Only the even addresses get a message.
    /// router.broadcast_normal_where(|addr| addr % 2 == 0, || Message::Count(1));
    /// for addr in 0..4 {
    ///     let queued = router.mailbox(addr).map(|mb| mb.len()).unwrap_or(0);
    ///     assert_eq!(queued, usize::from(addr % 2 == 0));
    /// }
    /// // A closed mailbox that is still registered costs no message.
    /// router.mailbox(2).unwrap().basic().close();
    /// let mut made = 0;
    /// router.broadcast_normal(|| {
    ///     made += 1;
    ///     Message::Count(1)
    /// });
    /// assert_eq!(made, 3);
    /// ```
    pub fn broadcast_normal_where(
        &self,
        mut filter: impl FnMut(u64) -> bool,
        mut msg_gen: impl FnMut() -> N::Message,
    ) {
        if self.is_stopped() {
            return;
        }
        for entry in self.core.normals.iter() {
            if filter(*entry.key()) && !entry.value().is_closed() {
                let _ = entry.value().force_send(msg_gen(), &self.normal_scheduler);
            }
        }
    }

    /// Marks the router shut down: from now on every send through it fails
    /// with `Disconnected`, and so does every send through a kept
    /// [`Mailbox`] (the schedulers are [stopped](FsmScheduler::stop) too).
    /// FSMs are not dropped here;
    /// [`BatchSystem::shutdown`](crate::BatchSystem::shutdown) calls this,
    /// lets the pollers drain, then [closes](Self::close_all) everything.
    pub fn broadcast_shutdown(&self) {
        self.core.stopped.store(true, Ordering::SeqCst);
        self.normal_scheduler.stop();
        self.control_scheduler.stop();
    }

    /// Registers `mailbox` at `addr`. An older mailbox at the same address is
    /// closed (its FSM dropped). After shutdown the new mailbox is closed at
    /// once instead of being registered.
    pub fn register(&self, addr: u64, mailbox: BasicMailbox<N>) {
        if self.is_stopped() {
            mailbox.close();
            return;
        }
        let same = mailbox.clone();
        if let Some(old) = self.core.normals.insert(addr, mailbox) {
            if !old.ptr_eq(&same) {
                old.close();
            }
        }
    }

    /// Registers every `(addr, mailbox)` pair, as [`register`](Self::register).
    pub fn register_all(&self, mailboxes: Vec<(u64, BasicMailbox<N>)>) {
        for (addr, mailbox) in mailboxes {
            self.register(addr, mailbox);
        }
    }

    /// Removes the mailbox at `addr` and closes it: later sends to `addr`
    /// find no mailbox, and the FSM is dropped (now if idle, otherwise when
    /// its poller releases it, unhandled if its turn had not come; see
    /// [`BasicMailbox::close`]). Does nothing for an unknown address.
    pub fn close(&self, addr: u64) {
        if let Some((_, mailbox)) = self.core.normals.remove(&addr) {
            mailbox.close();
        }
    }

    /// Closes and removes every normal mailbox and closes the control
    /// mailbox. Used at shutdown, after the pollers stopped.
    pub fn close_all(&self) {
        let addrs: Vec<u64> = self.core.normals.iter().map(|e| *e.key()).collect();
        for addr in addrs {
            self.close(addr);
        }
        self.core.control_box.close();
    }

    /// The mailbox at `addr`, bundled with the normal scheduler, if
    /// registered. Sending through it skips the address lookup.
    pub fn mailbox(&self, addr: u64) -> Option<Mailbox<N, Ns>> {
        self.core
            .normals
            .get(&addr)
            .map(|m| Mailbox::new(m.value().clone(), self.normal_scheduler.clone()))
    }

    /// The control FSM's mailbox, bundled with the control scheduler.
    pub fn control_mailbox(&self) -> Mailbox<C, Cs> {
        Mailbox::new(
            self.core.control_box.clone(),
            self.control_scheduler.clone(),
        )
    }

    /// Number of registered normal mailboxes.
    ///
    /// An FSM that stopped ([`Fsm::is_stopped`]) has its mailbox closed by
    /// its poller, but its address stays registered (and counted here)
    /// until someone calls [`close`](Self::close) with it: the poller does
    /// not know FSM addresses. A handler that stops an FSM usually closes
    /// its address in the same round.
    pub fn alive_cnt(&self) -> usize {
        self.core.normals.len()
    }

    /// The scheduler used to wake normal FSMs.
    pub fn normal_scheduler(&self) -> &Ns {
        &self.normal_scheduler
    }
}

#[cfg(test)]
mod tests {
    use super::AddrHasher;

    #[test]
    fn a_block_of_16_addresses_shares_shard_and_neighbouring_buckets() {
        for block in [0u64, 1, 7, 1 << 20, u64::MAX >> 4] {
            let base = AddrHasher::hash_addr(block << 4);
            for low in 0..16u64 {
                let h = AddrHasher::hash_addr((block << 4) | low);
                // The bucket bits differ only in the low 4 bits ...
                assert_eq!(h & 0xF, low);
                // ... the shard bits (below the top 7) not at all ...
                assert_eq!((h << 7) >> 11, (base << 7) >> 11);
                // ... and the top 7 bits tell the 16 apart.
                assert_eq!(h >> 57, (base >> 57) ^ low);
            }
        }
    }

    #[test]
    fn blocks_are_spread_over_the_top_bits() {
        // Consecutive blocks land in different shards: their top bits differ.
        let shards: std::collections::HashSet<u64> = (0..64u64)
            .map(|block| (AddrHasher::hash_addr(block << 4) << 7) >> 61)
            .collect();
        assert_eq!(shards.len(), 8);
    }
}
