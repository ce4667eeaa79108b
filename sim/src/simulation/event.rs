//! The events of the simulation's queue and the phases of a run.

use kvproto_lite::raft_serverpb::RaftMessage;

#[derive(Debug)]
pub(super) enum Event {
    Deliver {
        from: u64,
        to: u64,
        msg: Box<RaftMessage>,
    },
    Tick {
        store: u64,
    },
    ClientWake {
        client: usize,
    },
    AttemptTimeout {
        client: usize,
        op: usize,
        attempt: u32,
    },
    CallWake {
        client: usize,
        op: usize,
    },
    Poll {
        store: u64,
    },
    Nemesis,
    HealNet {
        fault: u64,
    },
    Restart {
        store: u64,
    },
    /// The stop of a planned restart: the store was told to evict its
    /// leaders (those it led then are `led`).
    PlannedStop {
        store: u64,
        led: Vec<u64>,
        restart_at: u64,
    },
    EndWorkload,
    StartFinalReads,
    Converge,
    /// The next chunk of snapshot transfer `id` arrives.
    SnapshotStep {
        id: u64,
    },
    /// The store's I/O writers write what the raft pollers handed them.
    IoWrite {
        store: u64,
    },
}

impl Event {
    pub(super) fn code(&self) -> u64 {
        match self {
            Event::Deliver { .. } => 1,
            Event::Tick { .. } => 2,
            Event::ClientWake { .. } => 3,
            Event::AttemptTimeout { .. } => 5,
            Event::Poll { .. } => 4,
            Event::Nemesis => 6,
            Event::HealNet { .. } => 7,
            Event::Restart { .. } => 8,
            Event::EndWorkload => 9,
            Event::StartFinalReads => 10,
            Event::Converge => 11,
            Event::PlannedStop { .. } => 12,
            Event::SnapshotStep { .. } => 13,
            Event::CallWake { .. } => 14,
            Event::IoWrite { .. } => 15,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Workload,
    Settling,
    FinalReads,
    Done,
}
