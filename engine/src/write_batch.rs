//! [`WriteBatch`]: the [`KvWriteBatch`] shared by the provided KV engines.

use std::borrow::Cow;

use kvproto_lite::raft_serverpb::{RaftApplyState, RegionLocalState};
use protobuf::Message;

use crate::{keys, Error, KvWriteBatch, Result};

/// One operation on an encoded key (see [`keys`](crate::keys)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WriteOp {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
    /// Remove every key in `[start, end)` that exists when the operation
    /// runs (stored before the batch, or put earlier in it).
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// Lists the keys an engine stores in `[start, end)`.
pub(crate) type StoredKeys<'a> = dyn FnMut(&[u8], &[u8]) -> Result<Vec<Vec<u8>>> + 'a;

/// The batch's operations as plain puts and deletes, one per key in the
/// order of first appearance, for an engine without a range delete: each
/// range delete becomes a delete of every key `stored` lists in the range
/// and of every key put earlier in the batch, and a key's earlier
/// operations are dropped (its last one wins), so the result does not
/// depend on how the engine orders two writes of one key in a batch.
/// A batch without range deletes is returned as it is, borrowed.
pub(crate) fn expand_ranges<'a>(
    ops: &'a [WriteOp],
    stored: &mut StoredKeys<'_>,
) -> Result<Cow<'a, [WriteOp]>> {
    if !ops.iter().any(|op| matches!(op, WriteOp::DeleteRange(..))) {
        return Ok(Cow::Borrowed(ops));
    }
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut last: std::collections::HashMap<Vec<u8>, Option<Vec<u8>>> =
        std::collections::HashMap::new();
    let mut set = |k: Vec<u8>, v: Option<Vec<u8>>| {
        if !last.contains_key(&k) {
            order.push(k.clone());
        }
        last.insert(k, v);
    };
    let mut pending: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for op in ops {
        match op {
            WriteOp::Put(k, v) => pending.push((k.clone(), Some(v.clone()))),
            WriteOp::Delete(k) => pending.push((k.clone(), None)),
            WriteOp::DeleteRange(start, end) => {
                let earlier: Vec<Vec<u8>> = pending
                    .iter()
                    .map(|(k, _)| k)
                    .filter(|k| start.as_slice() <= k.as_slice() && k.as_slice() < end.as_slice())
                    .cloned()
                    .collect();
                for k in stored(start, end)?.into_iter().chain(earlier) {
                    pending.push((k, None));
                }
            }
        }
    }
    for (k, v) in pending {
        set(k, v);
    }
    Ok(Cow::Owned(
        order
            .into_iter()
            .map(|k| match last.remove(&k).flatten() {
                Some(v) => WriteOp::Put(k, v),
                None => WriteOp::Delete(k),
            })
            .collect(),
    ))
}

impl WriteOp {
    fn size(&self) -> usize {
        match self {
            WriteOp::Put(k, v) => k.len() + v.len(),
            WriteOp::Delete(k) => k.len(),
            WriteOp::DeleteRange(s, e) => s.len() + e.len(),
        }
    }
}

/// An ordered list of puts and deletes with nested save points, used by
/// [`MemKvEngine`](crate::MemKvEngine) and [`FjallKvEngine`](crate::FjallKvEngine).
///
/// Keys are encoded when added (user keys get the data prefix, states go to
/// their local keys), so writing the batch only copies bytes.
///
/// # Examples
///
/// ```
/// use engine::{KvEngine, KvWriteBatch, MemKvEngine};
/// let kv = MemKvEngine::new();
/// let mut wb = kv.write_batch();
/// wb.put(b"a", b"1");
/// wb.set_save_point();
/// wb.put(b"b", b"2");
/// wb.rollback_to_save_point().unwrap();
/// kv.write(&mut wb, true).unwrap();
/// assert_eq!(kv.get(b"a").unwrap(), Some(b"1".to_vec()));
/// assert_eq!(kv.get(b"b").unwrap(), None);
/// ```
#[derive(Debug, Default)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
    data_size: usize,
    /// (ops.len(), data_size) at each save point.
    save_points: Vec<(usize, usize)>,
    /// A state that failed to encode; reported by the next write.
    encode_error: Option<String>,
}

impl WriteBatch {
    /// An empty batch with room for `capacity` operations.
    pub fn with_capacity(capacity: usize) -> Self {
        WriteBatch {
            ops: Vec::with_capacity(capacity),
            ..Default::default()
        }
    }

    /// The operations, or the error of a state that could not be encoded.
    pub(crate) fn ops(&self) -> Result<&[WriteOp]> {
        match &self.encode_error {
            Some(e) => Err(Error::Corruption(format!(
                "a state in the write batch could not be encoded: {e}"
            ))),
            None => Ok(&self.ops),
        }
    }

    /// Moves the operations out (the batch keeps its capacity); size and
    /// save points are left for `clear`.
    pub(crate) fn drain_ops(&mut self) -> std::vec::Drain<'_, WriteOp> {
        self.ops.drain(..)
    }

    fn push(&mut self, op: WriteOp) {
        self.data_size += op.size();
        self.ops.push(op);
    }

    fn put_message(&mut self, key: &[u8], msg: &dyn Message) {
        match msg.write_to_bytes() {
            Ok(value) => self.push(WriteOp::Put(key.to_vec(), value)),
            Err(e) => {
                if self.encode_error.is_none() {
                    self.encode_error = Some(e.to_string());
                }
            }
        }
    }
}

impl KvWriteBatch for WriteBatch {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.push(WriteOp::Put(keys::data_key(key), value.to_vec()));
    }

    fn delete(&mut self, key: &[u8]) {
        self.push(WriteOp::Delete(keys::data_key(key)));
    }

    fn put_apply_state(&mut self, region_id: u64, state: &RaftApplyState) {
        self.put_message(&keys::apply_state_key(region_id), state);
    }

    fn put_region_state(&mut self, region_id: u64, state: &RegionLocalState) {
        self.put_message(&keys::region_state_key(region_id), state);
    }

    fn put_raw(&mut self, key: &[u8], value: &[u8]) {
        self.push(WriteOp::Put(key.to_vec(), value.to_vec()));
    }

    fn delete_range_raw(&mut self, start: &[u8], end: &[u8]) {
        if start < end {
            self.push(WriteOp::DeleteRange(start.to_vec(), end.to_vec()));
        }
    }

    fn delete_raw(&mut self, key: &[u8]) {
        self.push(WriteOp::Delete(key.to_vec()));
    }

    fn count(&self) -> usize {
        self.ops.len()
    }

    fn data_size(&self) -> usize {
        self.data_size
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn clear(&mut self) {
        self.ops.clear();
        self.data_size = 0;
        self.save_points.clear();
        self.encode_error = None;
    }

    fn set_save_point(&mut self) {
        self.save_points.push((self.ops.len(), self.data_size));
    }

    fn rollback_to_save_point(&mut self) -> Result<()> {
        let (len, size) = self.save_points.pop().ok_or(Error::NoSavePoint)?;
        self.ops.truncate(len);
        self.data_size = size;
        Ok(())
    }

    fn pop_save_point(&mut self) -> Result<()> {
        self.save_points.pop().map(|_| ()).ok_or(Error::NoSavePoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_save_points_roll_back_in_order() {
        let mut wb = WriteBatch::default();
        wb.put(b"a", b"1");
        wb.set_save_point();
        wb.put(b"b", b"22");
        wb.set_save_point();
        wb.delete(b"c");
        assert_eq!(wb.count(), 3);
        wb.rollback_to_save_point().unwrap();
        assert_eq!(wb.count(), 2);
        assert_eq!(wb.data_size(), 2 + 1 + 2 + 2);
        wb.rollback_to_save_point().unwrap();
        assert_eq!(wb.count(), 1);
        assert_eq!(wb.data_size(), 3);
        assert!(matches!(
            wb.rollback_to_save_point(),
            Err(Error::NoSavePoint)
        ));
        assert!(matches!(wb.pop_save_point(), Err(Error::NoSavePoint)));
    }

    #[test]
    fn pop_save_point_keeps_operations() {
        let mut wb = WriteBatch::default();
        wb.set_save_point();
        wb.put(b"a", b"1");
        wb.pop_save_point().unwrap();
        assert_eq!(wb.count(), 1);
        assert!(wb.rollback_to_save_point().is_err());
        assert_eq!(wb.count(), 1);
    }

    #[test]
    fn clear_drops_operations_and_save_points() {
        let mut wb = WriteBatch::with_capacity(4);
        wb.set_save_point();
        wb.put(b"a", b"1");
        wb.clear();
        assert!(wb.is_empty());
        assert_eq!(wb.data_size(), 0);
        assert!(wb.pop_save_point().is_err());
    }

    #[test]
    fn user_keys_are_stored_under_the_data_prefix() {
        let mut wb = WriteBatch::default();
        wb.put(b"k", b"v");
        wb.put_apply_state(9, &RaftApplyState::default());
        let ops = wb.ops().unwrap();
        assert_eq!(ops[0], WriteOp::Put(b"zk".to_vec(), b"v".to_vec()));
        assert!(matches!(&ops[1], WriteOp::Put(k, _) if k[..] == keys::apply_state_key(9)[..]));
    }
}
