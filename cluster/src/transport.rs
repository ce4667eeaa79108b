//! `ChannelTransport`: a raftstore [`Transport`] connecting the stores of
//! one process directly through their routers, with fault filters for
//! tests (drop, partition, one-way loss, duplication, holding messages back
//! until released).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use kvproto_lite::raft_serverpb::RaftMessage;
use raftstore::snapshot::OutgoingSnapshot;
use raftstore::{Error, RaftMessageSink, Result, Transport};

/// What a [`Filter`] decides for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    /// Deliver normally.
    Pass,
    /// Lose the message.
    Drop,
    /// Deliver it twice.
    Duplicate,
    /// Hold it until [`ChannelTransport::release_held`] (a delay whose end
    /// the test chooses, so no clock is involved).
    Hold,
}

/// A fault rule applied to every message a [`ChannelTransport`] carries.
pub trait Filter: Send + Sync {
    /// Decides what happens to `msg` going from `from_store` to `to_store`.
    fn check(&self, from_store: u64, to_store: u64, msg: &RaftMessage) -> FilterAction;
}

/// Stores split into groups that cannot talk to each other.
#[derive(Debug, Clone)]
pub struct PartitionFilter {
    groups: Vec<Vec<u64>>,
}

impl PartitionFilter {
    /// Messages only flow within each group; stores in no group are cut off
    /// from everyone.
    pub fn new(groups: Vec<Vec<u64>>) -> PartitionFilter {
        PartitionFilter { groups }
    }

    fn group_of(&self, store: u64) -> Option<usize> {
        self.groups.iter().position(|g| g.contains(&store))
    }
}

impl Filter for PartitionFilter {
    fn check(&self, from: u64, to: u64, _msg: &RaftMessage) -> FilterAction {
        match (self.group_of(from), self.group_of(to)) {
            (Some(a), Some(b)) if a == b => FilterAction::Pass,
            _ => FilterAction::Drop,
        }
    }
}

/// Loses every message from one store to another (one direction only).
#[derive(Debug, Clone)]
pub struct OneWayFilter {
    /// Sending store.
    pub from: u64,
    /// Receiving store.
    pub to: u64,
}

impl Filter for OneWayFilter {
    fn check(&self, from: u64, to: u64, _msg: &RaftMessage) -> FilterAction {
        if from == self.from && to == self.to {
            FilterAction::Drop
        } else {
            FilterAction::Pass
        }
    }
}

/// Applies an action to the messages a predicate selects.
pub struct PredicateFilter<F> {
    pred: F,
    action: FilterAction,
}

impl<F> PredicateFilter<F>
where
    F: Fn(u64, u64, &RaftMessage) -> bool + Send + Sync,
{
    /// `action` for every message with `pred(from_store, to_store, msg)`.
    pub fn new(action: FilterAction, pred: F) -> PredicateFilter<F> {
        PredicateFilter { pred, action }
    }
}

impl<F> Filter for PredicateFilter<F>
where
    F: Fn(u64, u64, &RaftMessage) -> bool + Send + Sync,
{
    fn check(&self, from: u64, to: u64, msg: &RaftMessage) -> FilterAction {
        if (self.pred)(from, to, msg) {
            self.action
        } else {
            FilterAction::Pass
        }
    }
}

/// Counters of what a [`ChannelTransport`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages handed to a destination store.
    pub delivered: u64,
    /// Messages lost by a filter.
    pub filtered: u64,
    /// Messages the destination refused (full or shut down).
    pub refused: u64,
    /// Messages for stores that are not connected.
    pub unreachable: u64,
    /// Snapshots delivered whole (data and message).
    pub snapshots: u64,
    /// Snapshot data chunks carried.
    pub snapshot_chunks: u64,
    /// Snapshot sends that failed (filtered, refused, broken off).
    pub snapshot_failures: u64,
}

#[derive(Default)]
struct Shared {
    stores: RwLock<HashMap<u64, Arc<dyn RaftMessageSink>>>,
    filters: RwLock<Vec<Arc<dyn Filter>>>,
    held: Mutex<Vec<RaftMessage>>,
    stats: Mutex<TransportStats>,
    /// Break every snapshot transfer after this many chunks.
    snapshot_chunk_limit: Mutex<Option<usize>>,
}

/// An in-process transport: stores in one process reach each other's
/// routers directly. Cloning gives another handle to the same network.
///
/// Each handle buffers what it sends and delivers on [`Transport::flush`];
/// filters are applied at delivery.
///
/// Snapshots ([`Transport::send_snapshot`]) are carried at once, chunk by
/// chunk, into the destination's [`RaftMessageSink::receive_snapshot`];
/// filters see the snapshot's message, and a dropped or held one fails the
/// whole snapshot (raft sends another). A test can break transfers in the
/// middle with [`ChannelTransport::break_snapshots_after`].
///
/// # Examples
///
/// ```
/// use cluster::{ChannelTransport, PartitionFilter};
/// let net = ChannelTransport::new(1);
/// // Cut store 1 off from stores 2 and 3.
/// net.add_filter(PartitionFilter::new(vec![vec![1], vec![2, 3]]));
/// net.clear_filters();
/// ```
pub struct ChannelTransport {
    shared: Arc<Shared>,
    from_store: u64,
    buffer: Vec<RaftMessage>,
}

impl Clone for ChannelTransport {
    fn clone(&self) -> Self {
        ChannelTransport {
            shared: self.shared.clone(),
            from_store: self.from_store,
            buffer: Vec::new(),
        }
    }
}

impl ChannelTransport {
    /// A new, empty network, with this handle sending as `from_store`.
    pub fn new(from_store: u64) -> ChannelTransport {
        ChannelTransport {
            shared: Arc::new(Shared::default()),
            from_store,
            buffer: Vec::new(),
        }
    }

    /// Another handle to the same network, sending as `store_id`.
    pub fn for_store(&self, store_id: u64) -> ChannelTransport {
        ChannelTransport {
            shared: self.shared.clone(),
            from_store: store_id,
            buffer: Vec::new(),
        }
    }

    /// Connects a store: messages for `store_id` go to `sink`.
    pub fn connect(&self, store_id: u64, sink: Arc<dyn RaftMessageSink>) {
        write(&self.shared.stores).insert(store_id, sink);
    }

    /// Disconnects a store (it is stopped): its messages are refused.
    pub fn disconnect(&self, store_id: u64) {
        write(&self.shared.stores).remove(&store_id);
    }

    /// Adds a fault filter.
    pub fn add_filter(&self, filter: impl Filter + 'static) {
        write(&self.shared.filters).push(Arc::new(filter));
    }

    /// Removes every filter (the network heals). Held messages stay held
    /// until [`ChannelTransport::release_held`].
    pub fn clear_filters(&self) {
        write(&self.shared.filters).clear();
    }

    /// Delivers every held message now.
    pub fn release_held(&self) {
        let held = std::mem::take(&mut *lock(&self.shared.held));
        let stores = self.sinks();
        let mut stats = TransportStats::default();
        for msg in held {
            deliver(&stores, msg, &mut stats);
        }
        add_stats(&self.shared, stats);
    }

    /// What the network did so far.
    pub fn stats(&self) -> TransportStats {
        *lock(&self.shared.stats)
    }

    /// Breaks every snapshot transfer after `chunks` data chunks (as a
    /// connection lost in the middle of one); `None` lets them through.
    pub fn break_snapshots_after(&self, chunks: Option<usize>) {
        *lock(&self.shared.snapshot_chunk_limit) = chunks;
    }

    /// The connected stores' sinks, copied out of the lock: a sink may
    /// send (and flush) in turn while it takes a message (a store answers
    /// a leader check at once), which must not wait on this lock.
    fn sinks(&self) -> HashMap<u64, Arc<dyn RaftMessageSink>> {
        read(&self.shared.stores).clone()
    }

    fn action(&self, to: u64, msg: &RaftMessage) -> FilterAction {
        for f in read(&self.shared.filters).iter() {
            match f.check(self.from_store, to, msg) {
                FilterAction::Pass => {}
                a => return a,
            }
        }
        FilterAction::Pass
    }

    /// Carries one snapshot into `sink`; `true` if it was delivered.
    fn carry_snapshot(
        &self,
        sink: &dyn RaftMessageSink,
        msg: RaftMessage,
        snap: &OutgoingSnapshot,
        stats: &mut TransportStats,
    ) -> bool {
        let Ok(mut incoming) = sink.receive_snapshot(msg) else {
            return false;
        };
        let limit = *lock(&self.shared.snapshot_chunk_limit);
        for (i, chunk) in snap.chunks().iter().enumerate() {
            if limit.is_some_and(|l| i >= l) || snap.is_cancelled() {
                return false;
            }
            if incoming.push(chunk).is_err() {
                return false;
            }
            snap.record_sent(chunk.len());
            stats.snapshot_chunks += 1;
        }
        match incoming.finish() {
            Ok(msg) => sink.deliver(msg).is_ok(),
            Err(_) => false,
        }
    }
}

fn deliver(
    stores: &HashMap<u64, Arc<dyn RaftMessageSink>>,
    msg: RaftMessage,
    stats: &mut TransportStats,
) {
    match stores.get(&msg.get_to_peer().get_store_id()) {
        Some(sink) => match sink.deliver(msg) {
            Ok(()) => stats.delivered += 1,
            Err(_) => stats.refused += 1,
        },
        None => stats.unreachable += 1,
    }
}

fn add_stats(shared: &Shared, s: TransportStats) {
    let mut total = lock(&shared.stats);
    total.delivered += s.delivered;
    total.filtered += s.filtered;
    total.refused += s.refused;
    total.unreachable += s.unreachable;
    total.snapshots += s.snapshots;
    total.snapshot_chunks += s.snapshot_chunks;
    total.snapshot_failures += s.snapshot_failures;
}

// A poisoned lock only means another thread panicked while holding it; the
// maps inside are still consistent (every update is a single insert/remove).
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transport for ChannelTransport {
    fn send(&mut self, msg: RaftMessage) -> Result<()> {
        let to = msg.get_to_peer().get_store_id();
        if !read(&self.shared.stores).contains_key(&to) {
            lock(&self.shared.stats).unreachable += 1;
            return Err(Error::StoreUnreachable(to));
        }
        self.buffer.push(msg);
        Ok(())
    }

    fn send_snapshot(&mut self, msg: RaftMessage, snap: OutgoingSnapshot) -> Result<()> {
        let to = msg.get_to_peer().get_store_id();
        let Some(sink) = read(&self.shared.stores).get(&to).cloned() else {
            lock(&self.shared.stats).unreachable += 1;
            snap.finish(false);
            return Err(Error::StoreUnreachable(to));
        };
        let mut stats = TransportStats::default();
        let delivered = match self.action(to, &msg) {
            FilterAction::Pass | FilterAction::Duplicate => {
                self.carry_snapshot(sink.as_ref(), msg, &snap, &mut stats)
            }
            FilterAction::Drop | FilterAction::Hold => {
                stats.filtered += 1;
                false
            }
        };
        if delivered {
            stats.snapshots += 1;
        } else {
            stats.snapshot_failures += 1;
        }
        add_stats(&self.shared, stats);
        snap.finish(delivered);
        Ok(())
    }

    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let msgs = std::mem::take(&mut self.buffer);
        let filters = read(&self.shared.filters).clone();
        let stores = self.sinks();
        let mut stats = TransportStats::default();
        let mut held = Vec::new();
        for msg in msgs {
            let to = msg.get_to_peer().get_store_id();
            let mut action = FilterAction::Pass;
            for f in &filters {
                match f.check(self.from_store, to, &msg) {
                    FilterAction::Pass => {}
                    a => {
                        action = a;
                        break;
                    }
                }
            }
            match action {
                FilterAction::Pass => deliver(&stores, msg, &mut stats),
                FilterAction::Drop => stats.filtered += 1,
                FilterAction::Duplicate => {
                    deliver(&stores, msg.clone(), &mut stats);
                    deliver(&stores, msg, &mut stats);
                }
                FilterAction::Hold => held.push(msg),
            }
        }
        drop(stores);
        if !held.is_empty() {
            lock(&self.shared.held).extend(held);
        }
        add_stats(&self.shared, stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batch_system::mpsc::TrySendError;

    #[derive(Default)]
    struct Sink {
        got: Mutex<Vec<RaftMessage>>,
    }

    impl RaftMessageSink for Sink {
        fn deliver(&self, msg: RaftMessage) -> std::result::Result<(), TrySendError<RaftMessage>> {
            self.got.lock().unwrap().push(msg);
            Ok(())
        }
    }

    fn msg(to_store: u64, region: u64) -> RaftMessage {
        let mut m = RaftMessage::default();
        m.set_region_id(region);
        m.mut_to_peer().set_store_id(to_store);
        m
    }

    fn net() -> (ChannelTransport, Arc<Sink>, Arc<Sink>) {
        let t = ChannelTransport::new(1);
        let (s2, s3) = (Arc::new(Sink::default()), Arc::new(Sink::default()));
        t.connect(2, s2.clone());
        t.connect(3, s3.clone());
        (t, s2, s3)
    }

    #[test]
    fn messages_are_delivered_on_flush_only() {
        let (mut t, s2, _) = net();
        t.send(msg(2, 1)).unwrap();
        assert!(s2.got.lock().unwrap().is_empty());
        t.flush();
        assert_eq!(s2.got.lock().unwrap().len(), 1);
        assert_eq!(t.stats().delivered, 1);
    }

    #[test]
    fn unknown_store_is_reported_unreachable() {
        let (mut t, _, _) = net();
        assert!(matches!(t.send(msg(9, 1)), Err(Error::StoreUnreachable(9))));
    }

    #[test]
    fn partition_drops_across_groups_and_heals() {
        let (mut t, s2, s3) = net();
        t.add_filter(PartitionFilter::new(vec![vec![1, 2], vec![3]]));
        t.send(msg(2, 1)).unwrap();
        t.send(msg(3, 1)).unwrap();
        t.flush();
        assert_eq!(s2.got.lock().unwrap().len(), 1);
        assert_eq!(s3.got.lock().unwrap().len(), 0);
        assert_eq!(t.stats().filtered, 1);
        t.clear_filters();
        t.send(msg(3, 1)).unwrap();
        t.flush();
        assert_eq!(s3.got.lock().unwrap().len(), 1);
    }

    #[test]
    fn one_way_filter_only_cuts_one_direction() {
        let (mut t, s2, _) = net();
        t.add_filter(OneWayFilter { from: 1, to: 2 });
        t.send(msg(2, 1)).unwrap();
        t.flush();
        assert!(s2.got.lock().unwrap().is_empty());
        let mut from3 = t.for_store(3);
        from3.send(msg(2, 1)).unwrap();
        from3.flush();
        assert_eq!(s2.got.lock().unwrap().len(), 1);
    }

    #[test]
    fn duplicate_and_hold_filters() {
        let (mut t, s2, s3) = net();
        t.add_filter(PredicateFilter::new(FilterAction::Duplicate, |_, to, _| {
            to == 2
        }));
        t.add_filter(PredicateFilter::new(FilterAction::Hold, |_, to, _| to == 3));
        t.send(msg(2, 1)).unwrap();
        t.send(msg(3, 1)).unwrap();
        t.flush();
        assert_eq!(s2.got.lock().unwrap().len(), 2);
        assert!(s3.got.lock().unwrap().is_empty());
        t.release_held();
        assert_eq!(s3.got.lock().unwrap().len(), 1);
    }
}
