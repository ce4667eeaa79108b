//! [`SnapKey`] and [`SnapshotMeta`]: what a region snapshot is, carried in
//! the `data` field of raft's `eraftpb::Snapshot` (the data itself travels
//! out of band, see [`crate::snapshot`]).

use kvproto_lite::eraftpb::ConfState;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_serverpb::RaftApplyState;
use protobuf::Message as _;

use crate::error::{Error, Result};

/// The voters and learners of a region, as raft-rs wants them, with the
/// joint configuration its roles describe (see [`apply::membership`]).
pub fn conf_state_from_region(region: &Region) -> ConfState {
    apply::membership::conf_state_of(region)
}

/// Format version of an encoded [`SnapshotMeta`].
const META_VERSION: u8 = 1;

/// Names one generated snapshot of a region: the applied position it was
/// taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapKey {
    /// The region.
    pub region_id: u64,
    /// Term of the entry at `index`.
    pub term: u64,
    /// The applied index the snapshot holds the state of.
    pub index: u64,
}

impl std::fmt::Display for SnapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}_{}", self.region_id, self.term, self.index)
    }
}

/// Describes a region snapshot: where it was taken, the region and apply
/// state it restores, and the size and checksum of its data.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotMeta {
    /// Which snapshot.
    pub key: SnapKey,
    /// The region as of the snapshot (its range selects the data).
    pub region: Region,
    /// The region's apply state as of the snapshot, whole (state added to
    /// it later travels too); the receiver sets its truncated state to the
    /// snapshot position.
    pub apply_state: RaftApplyState,
    /// Bytes of the encoded data.
    pub data_size: u64,
    /// Key-value pairs in the data.
    pub pairs: u64,
    /// CRC32 of the encoded data.
    pub checksum: u32,
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over an encoded meta that fails (never panics) on short input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Snapshot("truncated snapshot metadata".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.u64()?)
            .map_err(|_| Error::Snapshot("snapshot metadata length overflows".into()))?;
        self.take(n)
    }
}

impl SnapshotMeta {
    /// Encodes the meta (into `eraftpb::Snapshot::data`).
    ///
    /// # Errors
    ///
    /// The region or apply state cannot be encoded.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let region = self
            .region
            .write_to_bytes()
            .map_err(|e| Error::Snapshot(format!("encode region: {e}")))?;
        let apply_state = self
            .apply_state
            .write_to_bytes()
            .map_err(|e| Error::Snapshot(format!("encode apply state: {e}")))?;
        let mut out = Vec::with_capacity(64 + region.len() + apply_state.len());
        out.push(META_VERSION);
        for v in [
            self.key.region_id,
            self.key.term,
            self.key.index,
            self.data_size,
            self.pairs,
            u64::from(self.checksum),
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        put_bytes(&mut out, &region);
        put_bytes(&mut out, &apply_state);
        Ok(out)
    }

    /// Decodes a meta written by [`encode`](Self::encode).
    ///
    /// # Errors
    ///
    /// [`Error::Snapshot`] for anything malformed: another version, short
    /// input, trailing bytes, undecodable states, a region id or position
    /// that disagrees with the states.
    pub fn decode(data: &[u8]) -> Result<SnapshotMeta> {
        let mut r = Reader(data);
        let version = r.take(1)?[0];
        if version != META_VERSION {
            return Err(Error::Snapshot(format!(
                "snapshot metadata version {version} is not {META_VERSION}"
            )));
        }
        let key = SnapKey {
            region_id: r.u64()?,
            term: r.u64()?,
            index: r.u64()?,
        };
        let data_size = r.u64()?;
        let pairs = r.u64()?;
        let checksum = u32::try_from(r.u64()?)
            .map_err(|_| Error::Snapshot("snapshot checksum out of range".into()))?;
        let region = Region::parse_from_bytes(r.bytes()?)
            .map_err(|e| Error::Snapshot(format!("decode region: {e}")))?;
        let apply_state = RaftApplyState::parse_from_bytes(r.bytes()?)
            .map_err(|e| Error::Snapshot(format!("decode apply state: {e}")))?;
        if !r.0.is_empty() {
            return Err(Error::Snapshot(
                "trailing bytes after snapshot metadata".into(),
            ));
        }
        if region.get_id() != key.region_id || apply_state.get_applied_index() != key.index {
            return Err(Error::Snapshot(format!(
                "snapshot {key} disagrees with its region {} / applied index {}",
                region.get_id(),
                apply_state.get_applied_index()
            )));
        }
        Ok(SnapshotMeta {
            key,
            region,
            apply_state,
            data_size,
            pairs,
            checksum,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        let mut region = Region::default();
        region.set_id(3);
        region.set_start_key(b"a".to_vec());
        let mut apply_state = RaftApplyState::default();
        apply_state.set_applied_index(40);
        SnapshotMeta {
            key: SnapKey {
                region_id: 3,
                term: 7,
                index: 40,
            },
            region,
            apply_state,
            data_size: 1234,
            pairs: 5,
            checksum: 0xdead_beef,
        }
    }

    #[test]
    fn meta_round_trips() {
        let m = meta();
        assert_eq!(SnapshotMeta::decode(&m.encode().unwrap()).unwrap(), m);
    }

    #[test]
    fn every_truncation_or_damage_of_a_meta_is_an_error_not_a_panic() {
        let bytes = meta().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(SnapshotMeta::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SnapshotMeta::decode(&longer).is_err());
        let mut other_version = bytes.clone();
        other_version[0] = 9;
        assert!(SnapshotMeta::decode(&other_version).is_err());
        let mut wrong = meta();
        wrong.key.index = 41;
        assert!(SnapshotMeta::decode(&wrong.encode().unwrap()).is_err());
    }
}
