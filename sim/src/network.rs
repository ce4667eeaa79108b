//! The simulated network: a [`Transport`] that queues every message for the
//! simulation, and the faults (partitions, one-way cuts) that decide which
//! messages get through.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use kvproto_lite::raft_serverpb::RaftMessage;
use raftstore::snapshot::OutgoingSnapshot;
use raftstore::Transport;

/// A snapshot a store sent: `(from_store, message, data)`.
pub type SentSnapshot = (u64, RaftMessage, OutgoingSnapshot);

/// Messages sent by the stores' pollers and not yet picked up by the
/// simulation, in send order: `(from_store, message)`.
#[derive(Clone, Default)]
pub struct Outbox {
    queue: Arc<Mutex<Vec<(u64, RaftMessage)>>>,
    snapshots: Arc<Mutex<Vec<SentSnapshot>>>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Takes every queued message, in send order.
    pub fn drain(&self) -> Vec<(u64, RaftMessage)> {
        std::mem::take(&mut *self.lock())
    }

    /// Takes every queued snapshot, in send order.
    pub fn drain_snapshots(&self) -> Vec<SentSnapshot> {
        std::mem::take(&mut *self.snapshots.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, RaftMessage)>> {
        // Only the simulation thread uses it; a poisoned lock still holds a
        // consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The [`Transport`] of one simulated store: `send` appends to the shared
/// [`Outbox`]; the simulation decides after each poll round when (and
/// whether) each message arrives.
#[derive(Clone)]
pub struct SimTransport {
    store_id: u64,
    outbox: Outbox,
}

impl SimTransport {
    /// The transport store `store_id` sends through.
    pub fn new(store_id: u64, outbox: Outbox) -> SimTransport {
        SimTransport { store_id, outbox }
    }
}

impl Transport for SimTransport {
    fn send(&mut self, msg: RaftMessage) -> raftstore::Result<()> {
        // Like a real network, sending always "works"; loss happens later.
        self.outbox.lock().push((self.store_id, msg));
        Ok(())
    }

    fn send_snapshot(&mut self, msg: RaftMessage, snap: OutgoingSnapshot) -> raftstore::Result<()> {
        // Carried chunk by chunk by the simulation (`Event::SnapshotStep`).
        self.outbox
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.store_id, msg, snap));
        Ok(())
    }

    fn flush(&mut self) {}
}

/// A network fault that is in force until healed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetFault {
    /// Stores in `side` and the others cannot talk in either direction.
    Partition {
        /// One side of the cut; every other store is on the other side.
        side: BTreeSet<u64>,
    },
    /// Stores in `side` and the others cannot exchange region (raft)
    /// messages in either direction, but store-level leader checks
    /// (`raftstore::leader_check`) and their answers get through: an
    /// asynchronous network may hold a leader's heartbeats back
    /// indefinitely while its checks arrive, so a deposed leader keeps
    /// asking the stores that elected another.
    RegionPartition {
        /// One side of the cut; every other store is on the other side.
        side: BTreeSet<u64>,
    },
    /// Messages from `from` to `to` are lost (the reverse direction works).
    OneWay {
        /// Sender whose messages are lost.
        from: u64,
        /// Receiver that does not hear them.
        to: u64,
    },
}

impl NetFault {
    /// Whether this fault stops a message from `from` to `to`
    /// (`store_level`: a leader check or its answer).
    pub fn blocks(&self, from: u64, to: u64, store_level: bool) -> bool {
        match self {
            NetFault::Partition { side } => side.contains(&from) != side.contains(&to),
            NetFault::RegionPartition { side } => {
                !store_level && side.contains(&from) != side.contains(&to)
            }
            NetFault::OneWay { from: f, to: t } => *f == from && *t == to,
        }
    }
}

/// The faults currently in force, each with the id that heals it.
#[derive(Debug, Clone, Default)]
pub struct NetState {
    faults: Vec<(u64, NetFault)>,
}

impl NetState {
    /// Adds a fault under `id`.
    pub fn add(&mut self, id: u64, fault: NetFault) {
        self.faults.push((id, fault));
    }

    /// Removes the fault `id` (if still there).
    pub fn heal(&mut self, id: u64) {
        self.faults.retain(|(i, _)| *i != id);
    }

    /// Removes every fault.
    pub fn heal_all(&mut self) {
        self.faults.clear();
    }

    /// Whether any fault stops a region's message (or snapshot) from
    /// `from` to `to`.
    pub fn blocked(&self, from: u64, to: u64) -> bool {
        from != to && self.faults.iter().any(|(_, f)| f.blocks(from, to, false))
    }

    /// Whether any fault stops `msg` from `from` to `to` (a store-level
    /// leader check passes a [`NetFault::RegionPartition`]).
    pub fn blocks_message(&self, from: u64, to: u64, msg: &RaftMessage) -> bool {
        let store_level = raftstore::leader_check::is_leader_check(msg);
        from != to
            && self
                .faults
                .iter()
                .any(|(_, f)| f.blocks(from, to, store_level))
    }

    /// How many faults are in force.
    pub fn len(&self) -> usize {
        self.faults.len()
    }

    /// Whether no fault is in force.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_blocks_both_directions_across_the_cut_only() {
        let mut net = NetState::default();
        net.add(1, NetFault::Partition { side: [1].into() });
        assert!(net.blocked(1, 2) && net.blocked(2, 1) && net.blocked(3, 1));
        assert!(!net.blocked(2, 3));
        net.heal(1);
        assert!(!net.blocked(1, 2));
    }

    #[test]
    fn one_way_cut_blocks_one_direction() {
        let mut net = NetState::default();
        net.add(7, NetFault::OneWay { from: 1, to: 2 });
        assert!(net.blocked(1, 2));
        assert!(!net.blocked(2, 1));
        net.heal_all();
        assert!(net.is_empty());
    }

    #[test]
    fn transport_queues_in_send_order() {
        let outbox = Outbox::new();
        let mut t = SimTransport::new(3, outbox.clone());
        for region in 1..=3 {
            let mut m = RaftMessage::default();
            m.set_region_id(region);
            t.send(m).unwrap();
        }
        t.flush();
        let got: Vec<(u64, u64)> = outbox
            .drain()
            .into_iter()
            .map(|(from, m)| (from, m.get_region_id()))
            .collect();
        assert_eq!(got, vec![(3, 1), (3, 2), (3, 3)]);
        assert!(outbox.drain().is_empty());
    }

    #[test]
    fn a_region_partition_lets_leader_checks_through() {
        let mut net = NetState::default();
        net.add(
            1,
            NetFault::RegionPartition {
                side: [1].into_iter().collect(),
            },
        );
        let region_msg = RaftMessage::default();
        let mut check = RaftMessage::default();
        check.set_extra(kvproto_lite::raft_serverpb::ExtraMessageType::LeaderCheckRequest);
        assert!(net.blocked(1, 2) && net.blocks_message(2, 1, &region_msg));
        assert!(!net.blocks_message(1, 2, &check) && !net.blocks_message(2, 1, &check));
        assert!(!net.blocks_message(2, 3, &region_msg));
    }
}
