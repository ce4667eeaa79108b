//! [`Engines`]: the pair of engines a store owns.

use crate::{KvEngine, RaftLogEngine, Result};

/// Both engines of a store: the state machine (`kv`) and the raft logs (`raft`).
///
/// # Examples
///
/// ```
/// use engine::{Engines, MemKvEngine, MemRaftLogEngine};
/// let engines = Engines::new(MemKvEngine::new(), MemRaftLogEngine::new());
/// engines.sync().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Engines<K, R> {
    /// The key-value engine holding data, apply states and region states.
    pub kv: K,
    /// The raft log engine holding entries and raft states.
    pub raft: R,
}

impl<K, R> Engines<K, R> {
    /// Pairs two engines.
    pub fn new(kv: K, raft: R) -> Self {
        Engines { kv, raft }
    }
}

impl<K: KvEngine, R: RaftLogEngine> Engines<K, R> {
    /// Makes every earlier write to both engines durable (raft log first).
    ///
    /// # Errors
    ///
    /// The first sync error of either engine.
    pub fn sync(&self) -> Result<()> {
        self.raft.sync()?;
        self.kv.sync()
    }
}
