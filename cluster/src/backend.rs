//! `InProcessBackend`: the client's [`Backend`] over the command sinks of
//! stores running in this process.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use client::{Backend, BackendError};
use kvproto_lite::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use raftstore::CommandSink;

/// The stores a client can reach in this process, by store id. Shared, so
/// a cluster can swap a restarted store's router in.
pub type StoreDirectory = Arc<RwLock<HashMap<u64, Arc<dyn CommandSink>>>>;

/// A [`Backend`] that hands each command to its store's [`CommandSink`]
/// (a `RaftRouter`) and waits on the callback's channel.
///
/// A store missing from the directory (stopped) is unreachable; a full
/// mailbox or a missing region is answered by the sink itself
/// (`ServerIsBusy`, `RegionNotFound`).
#[derive(Clone)]
pub struct InProcessBackend {
    stores: StoreDirectory,
}

impl InProcessBackend {
    /// A backend over `stores`.
    pub fn new(stores: StoreDirectory) -> InProcessBackend {
        InProcessBackend { stores }
    }
}

impl Backend for InProcessBackend {
    fn call(
        &self,
        store_id: u64,
        command: RaftCmdRequest,
        timeout: Duration,
    ) -> Result<RaftCmdResponse, BackendError> {
        let sink = self
            .stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&store_id)
            .cloned();
        let Some(sink) = sink else {
            return Err(BackendError::Unreachable(format!(
                "store {store_id} not reachable"
            )));
        };
        sink.submit(command)
            .recv_timeout(timeout)
            .map_err(|_| BackendError::Timeout)
    }
}
