//! The crate's error type and its mapping onto [`raft::Error`].

use std::path::PathBuf;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in a storage engine.
///
/// Bad input (a gap in the log, an empty save-point stack, ...) is reported
/// with a dedicated variant and changes no state. Failures of the underlying
/// libraries are wrapped with their source kept.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Part of the requested log range was removed by compaction.
    ///
    /// Maps to [`raft::StorageError::Compacted`].
    #[error("requested raft log entries are compacted")]
    EntriesCompacted,

    /// Part of the requested log range is not in the log (yet).
    ///
    /// Maps to [`raft::StorageError::Unavailable`].
    #[error("requested raft log entries are unavailable")]
    EntriesUnavailable,

    /// Entries handed to [`RaftLogBatch::append`](crate::RaftLogBatch::append)
    /// do not have contiguous, ascending indexes.
    #[error("region {region_id}: entries are not contiguous: index {got} follows index {prev}")]
    NonContiguousEntries {
        /// The region the entries were appended to.
        region_id: u64,
        /// Index of the entry before the offending one.
        prev: u64,
        /// Index of the offending entry.
        got: u64,
    },

    /// An append would leave a gap after the region's last entry.
    #[error("region {region_id}: appending at index {first_new} leaves a gap after last index {last_index}")]
    LogGap {
        /// The region the entries were appended to.
        region_id: u64,
        /// The region's last index when the append was checked.
        last_index: u64,
        /// The index of the first appended entry.
        first_new: u64,
    },

    /// An append would overwrite entries that were already compacted away.
    #[error("region {region_id}: appending at index {first_new} overwrites compacted entries (first index {first_index})")]
    OverwriteCompacted {
        /// The region the entries were appended to.
        region_id: u64,
        /// The region's first index when the append was checked.
        first_index: u64,
        /// The index of the first appended entry.
        first_new: u64,
    },

    /// A save point operation was called on a write batch without save points.
    #[error("the write batch has no save point")]
    NoSavePoint,

    /// [`open_existing`](crate::FjallKvEngine::open_existing) was given a
    /// directory that does not exist.
    #[error("{engine} directory {path:?} does not exist")]
    DirectoryNotFound {
        /// Which engine was being opened.
        engine: &'static str,
        /// The missing directory.
        path: PathBuf,
    },

    /// A durable engine could not be opened (not a directory, unreadable,
    /// corrupted files, locked by another process, ...).
    #[error("cannot open {engine} engine at {path:?}: {source}")]
    Open {
        /// Which engine was being opened.
        engine: &'static str,
        /// The engine directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },

    /// Stored bytes could not be interpreted.
    #[error("corrupted data: {0}")]
    Corruption(String),

    /// An I/O error outside the wrapped libraries.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// A protobuf message could not be encoded or decoded.
    #[error("protobuf codec error: {0}")]
    Codec(#[from] protobuf::ProtobufError),

    /// An error reported by raft-engine.
    #[error("raft-engine: {0}")]
    RaftEngine(raft_engine::Error),

    /// An error reported by fjall.
    #[error("fjall: {0}")]
    Fjall(#[from] fjall::Error),
}

impl From<raft_engine::Error> for Error {
    fn from(e: raft_engine::Error) -> Self {
        match e {
            raft_engine::Error::EntryCompacted => Error::EntriesCompacted,
            raft_engine::Error::EntryNotFound => Error::EntriesUnavailable,
            e => Error::RaftEngine(e),
        }
    }
}

impl From<Error> for raft::Error {
    /// Compacted and unavailable entries become the matching
    /// [`raft::StorageError`] variants, so raft-rs reacts to them (e.g. by
    /// sending a snapshot); everything else is `StorageError::Other`.
    fn from(e: Error) -> Self {
        match e {
            Error::EntriesCompacted => raft::Error::Store(raft::StorageError::Compacted),
            Error::EntriesUnavailable => raft::Error::Store(raft::StorageError::Unavailable),
            e => raft::Error::Store(raft::StorageError::Other(Box::new(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_and_unavailable_map_to_raft_storage_errors() {
        assert_eq!(
            raft::Error::from(Error::EntriesCompacted),
            raft::Error::Store(raft::StorageError::Compacted)
        );
        assert_eq!(
            raft::Error::from(Error::EntriesUnavailable),
            raft::Error::Store(raft::StorageError::Unavailable)
        );
        let other = raft::Error::from(Error::NoSavePoint);
        assert!(matches!(
            other,
            raft::Error::Store(raft::StorageError::Other(_))
        ));
    }

    #[test]
    fn raft_engine_entry_errors_become_our_variants() {
        assert!(matches!(
            Error::from(raft_engine::Error::EntryCompacted),
            Error::EntriesCompacted
        ));
        assert!(matches!(
            Error::from(raft_engine::Error::EntryNotFound),
            Error::EntriesUnavailable
        ));
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
