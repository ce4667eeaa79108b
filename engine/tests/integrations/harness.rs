//! Factories that give the conformance suite a fresh engine of each kind and
//! a way to restart it.

use engine::{FjallKvEngine, MemKvEngine, MemRaftLogEngine, RaftEngineLogEngine};
use tempfile::TempDir;

/// A fresh engine plus a restart operation.
pub trait Harness: Sized {
    /// The engine under test.
    type Engine: Clone;
    /// `true` if [`restart`](Harness::restart) loses writes that were not
    /// synced (a simulated crash); `false` if it is a graceful reopen that
    /// keeps every write.
    const RESTART_LOSES_UNSYNCED: bool;
    /// A new, empty engine.
    fn fresh() -> Self;
    /// The engine (drop clones before calling `restart`).
    fn engine(&self) -> &Self::Engine;
    /// Memory engines: `crash()`. Durable engines: drop every handle and
    /// open the directory again.
    fn restart(&mut self);
}

pub struct MemRaft(MemRaftLogEngine);

impl Harness for MemRaft {
    type Engine = MemRaftLogEngine;
    const RESTART_LOSES_UNSYNCED: bool = true;
    fn fresh() -> Self {
        MemRaft(MemRaftLogEngine::new())
    }
    fn engine(&self) -> &MemRaftLogEngine {
        &self.0
    }
    fn restart(&mut self) {
        self.0.crash();
    }
}

pub struct DurableRaft {
    engine: Option<RaftEngineLogEngine>,
    dir: TempDir,
}

impl Harness for DurableRaft {
    type Engine = RaftEngineLogEngine;
    const RESTART_LOSES_UNSYNCED: bool = false;
    fn fresh() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = Some(RaftEngineLogEngine::open(dir.path()).unwrap());
        DurableRaft { engine, dir }
    }
    fn engine(&self) -> &RaftEngineLogEngine {
        self.engine.as_ref().unwrap()
    }
    fn restart(&mut self) {
        self.engine = None;
        self.engine = Some(RaftEngineLogEngine::open_existing(self.dir.path()).unwrap());
    }
}

pub struct MemKv(MemKvEngine);

impl Harness for MemKv {
    type Engine = MemKvEngine;
    const RESTART_LOSES_UNSYNCED: bool = true;
    fn fresh() -> Self {
        MemKv(MemKvEngine::new())
    }
    fn engine(&self) -> &MemKvEngine {
        &self.0
    }
    fn restart(&mut self) {
        self.0.crash();
    }
}

pub struct DurableKv {
    engine: Option<FjallKvEngine>,
    dir: TempDir,
}

impl Harness for DurableKv {
    type Engine = FjallKvEngine;
    const RESTART_LOSES_UNSYNCED: bool = false;
    fn fresh() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = Some(FjallKvEngine::open(dir.path()).unwrap());
        DurableKv { engine, dir }
    }
    fn engine(&self) -> &FjallKvEngine {
        self.engine.as_ref().unwrap()
    }
    fn restart(&mut self) {
        self.engine = None;
        self.engine = Some(FjallKvEngine::open_existing(self.dir.path()).unwrap());
    }
}
