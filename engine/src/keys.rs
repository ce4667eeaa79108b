//! Key layout of the KV engine: user data and per-region metadata in one
//! ordered key space, kept apart by a one-byte prefix.
//!
//! ```text
//! 0x01 0x01 <region_id: u64 BE>   RaftApplyState of the region
//! 0x01 0x02 <region_id: u64 BE>   RegionLocalState of the region
//! 0x01 0x03 .. 0x01 0xfe <region_id: u64 BE> <suffix>
//!                                 further per-region state (e.g. client
//!                                 sessions); travels in region snapshots
//! 'z'  <user key>                 user data (DATA_PREFIX)
//! ```
//!
//! A region's state is therefore: its data keys in its key range, its apply
//! and region state, and every key of kind [`REGION_EXTRA_KIND_MIN`] ..=
//! [`REGION_EXTRA_KIND_MAX`] that starts with its region id
//! ([`region_extra_ranges`]). A region snapshot carries exactly that, so
//! per-region state added later travels with it without naming it.
//!
//! Every local (metadata) key sorts before every data key (`0x01 < 'z'`), and
//! every data key sorts before [`DATA_MAX_KEY`] (`'{'`, the byte after `'z'`).
//! A data scan therefore runs over `['z' + start, 'z' + end)` (or up to
//! `DATA_MAX_KEY` when `end` is unbounded) and can never see a local key.
//! Region ids are big-endian so the metadata of one kind is ordered by region
//! id. Prefixing keeps the order of user keys: `a < b` iff
//! `data_key(a) < data_key(b)`.

use crate::{Error, Result};

/// First byte of every user-data key.
pub const DATA_PREFIX: u8 = b'z';
/// Lower bound (inclusive) of all data keys: the data key of the empty user key.
pub const DATA_MIN_KEY: &[u8] = &[DATA_PREFIX];
/// Upper bound (exclusive) of all data keys.
pub const DATA_MAX_KEY: &[u8] = &[DATA_PREFIX + 1];

/// First byte of every local (per-region metadata) key.
pub const LOCAL_PREFIX: u8 = 0x01;
/// Second byte of an apply-state key.
pub const APPLY_STATE_KIND: u8 = 0x01;
/// Second byte of a region-state key.
pub const REGION_STATE_KIND: u8 = 0x02;

/// First local kind of further per-region state (see [`region_extra_ranges`]).
pub const REGION_EXTRA_KIND_MIN: u8 = 0x03;
/// Last local kind of further per-region state (see [`region_extra_ranges`]).
pub const REGION_EXTRA_KIND_MAX: u8 = 0xfe;

/// Length of a local key: prefix, kind, region id.
pub const LOCAL_KEY_LEN: usize = 2 + 8;

/// The stored key of a user key: [`DATA_PREFIX`] followed by the user key.
///
/// # Examples
///
/// ```
/// assert_eq!(engine::keys::data_key(b"k1"), b"zk1".to_vec());
/// ```
pub fn data_key(user_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + user_key.len());
    key.push(DATA_PREFIX);
    key.extend_from_slice(user_key);
    key
}

/// The exclusive upper bound of a data scan ending at user key `end`; an empty
/// `end` means unbounded and gives [`DATA_MAX_KEY`].
///
/// # Examples
///
/// ```
/// use engine::keys::{data_end_key, DATA_MAX_KEY};
/// assert_eq!(data_end_key(b""), DATA_MAX_KEY.to_vec());
/// assert_eq!(data_end_key(b"m"), b"zm".to_vec());
/// ```
pub fn data_end_key(end: &[u8]) -> Vec<u8> {
    if end.is_empty() {
        DATA_MAX_KEY.to_vec()
    } else {
        data_key(end)
    }
}

/// The user key inside a stored data key.
///
/// # Errors
///
/// [`Error::Corruption`] if `key` does not start with [`DATA_PREFIX`].
///
/// # Examples
///
/// ```
/// assert_eq!(engine::keys::origin_key(b"zk1").unwrap(), b"k1");
/// assert!(engine::keys::origin_key(b"\x01\x01").is_err());
/// ```
pub fn origin_key(key: &[u8]) -> Result<&[u8]> {
    match key.split_first() {
        Some((&DATA_PREFIX, rest)) => Ok(rest),
        _ => Err(Error::Corruption(format!(
            "{key:?} is not a data key (no {DATA_PREFIX:#04x} prefix)"
        ))),
    }
}

fn local_key(kind: u8, region_id: u64) -> [u8; LOCAL_KEY_LEN] {
    let mut key = [0; LOCAL_KEY_LEN];
    key[0] = LOCAL_PREFIX;
    key[1] = kind;
    key[2..].copy_from_slice(&region_id.to_be_bytes());
    key
}

/// The key of a region's `RaftApplyState`.
///
/// # Examples
///
/// ```
/// assert_eq!(engine::keys::apply_state_key(258), [1, 1, 0, 0, 0, 0, 0, 0, 1, 2]);
/// ```
pub fn apply_state_key(region_id: u64) -> [u8; LOCAL_KEY_LEN] {
    local_key(APPLY_STATE_KIND, region_id)
}

/// The key of a region's `RegionLocalState`.
///
/// # Examples
///
/// ```
/// assert_eq!(engine::keys::region_state_key(1), [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
/// ```
pub fn region_state_key(region_id: u64) -> [u8; LOCAL_KEY_LEN] {
    local_key(REGION_STATE_KIND, region_id)
}

/// The key range `[start, end)` holding every key of one local `kind`.
///
/// # Examples
///
/// ```
/// use engine::keys::{local_kind_range, region_state_key, REGION_STATE_KIND};
/// let (start, end) = local_kind_range(REGION_STATE_KIND);
/// let key = region_state_key(u64::MAX);
/// assert!(start.as_slice() <= &key[..] && &key[..] < end.as_slice());
/// ```
pub fn local_kind_range(kind: u8) -> (Vec<u8>, Vec<u8>) {
    // `kind + 1` cannot overflow for the kinds defined here (< 0xff).
    (
        vec![LOCAL_PREFIX, kind],
        vec![LOCAL_PREFIX, kind.saturating_add(1)],
    )
}

/// The raw key range `[start, end)` of a region's user data: the data keys
/// of user keys in `[start_key, end_key)` (an empty `end_key` is unbounded).
///
/// # Examples
///
/// ```
/// use engine::keys::{region_data_range, DATA_MAX_KEY};
/// assert_eq!(region_data_range(b"a", b""), (b"za".to_vec(), DATA_MAX_KEY.to_vec()));
/// ```
pub fn region_data_range(start_key: &[u8], end_key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (data_key(start_key), data_end_key(end_key))
}

/// The raw key ranges `[start, end)` of a region's further per-region state:
/// for every kind in [`REGION_EXTRA_KIND_MIN`] ..= [`REGION_EXTRA_KIND_MAX`],
/// the keys `0x01 kind <region_id BE> ...`. The apply and region states are
/// not included (a snapshot rewrites them itself).
///
/// # Examples
///
/// ```
/// use engine::keys::{region_extra_ranges, REGION_EXTRA_KIND_MIN};
/// let ranges = region_extra_ranges(7);
/// let mut key = vec![0x01, REGION_EXTRA_KIND_MIN];
/// key.extend_from_slice(&7u64.to_be_bytes());
/// key.extend_from_slice(b"client-1");
/// assert!(ranges.iter().any(|(s, e)| s.as_slice() <= &key[..] && &key[..] < e.as_slice()));
/// ```
pub fn region_extra_ranges(region_id: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    (REGION_EXTRA_KIND_MIN..=REGION_EXTRA_KIND_MAX)
        .map(|kind| {
            let start = local_key(kind, region_id).to_vec();
            let end = match region_id.checked_add(1) {
                Some(next) => local_key(kind, next).to_vec(),
                None => vec![LOCAL_PREFIX, kind + 1],
            };
            (start, end)
        })
        .collect()
}

/// The region id inside a local key of the given `kind`.
///
/// # Errors
///
/// [`Error::Corruption`] if `key` is not a local key of that kind.
///
/// # Examples
///
/// ```
/// use engine::keys::{region_id_of_local_key, region_state_key, REGION_STATE_KIND};
/// assert_eq!(region_id_of_local_key(&region_state_key(7), REGION_STATE_KIND).unwrap(), 7);
/// ```
pub fn region_id_of_local_key(key: &[u8], kind: u8) -> Result<u64> {
    match key {
        [LOCAL_PREFIX, k, id @ ..] if *k == kind && id.len() == 8 => {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(id);
            Ok(u64::from_be_bytes(bytes))
        }
        _ => Err(Error::Corruption(format!(
            "{key:?} is not a local key of kind {kind:#04x}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn local_keys_sort_before_all_data_keys() {
        let data_min = data_key(b"");
        for kind in [APPLY_STATE_KIND, REGION_STATE_KIND] {
            let key = local_key(kind, u64::MAX);
            assert!(key.as_slice() < data_min.as_slice());
        }
        assert_eq!(data_min, DATA_MIN_KEY);
    }

    #[test]
    fn kinds_do_not_overlap() {
        let (a_start, a_end) = local_kind_range(APPLY_STATE_KIND);
        let (r_start, _) = local_kind_range(REGION_STATE_KIND);
        assert!(a_end <= r_start);
        assert!(a_start < a_end);
        assert!(region_id_of_local_key(&apply_state_key(3), REGION_STATE_KIND).is_err());
    }

    #[test]
    fn extra_ranges_hold_only_the_regions_own_keys() {
        let ranges = region_extra_ranges(5);
        assert_eq!(
            ranges.len(),
            usize::from(REGION_EXTRA_KIND_MAX - REGION_EXTRA_KIND_MIN) + 1
        );
        let inside = |key: &[u8]| {
            ranges
                .iter()
                .any(|(s, e)| s.as_slice() <= key && key < e.as_slice())
        };
        let mut own = local_key(REGION_EXTRA_KIND_MIN, 5).to_vec();
        own.push(9);
        assert!(inside(&own));
        assert!(!inside(&local_key(REGION_EXTRA_KIND_MIN, 6)));
        assert!(!inside(&local_key(REGION_EXTRA_KIND_MIN, 4)));
        assert!(!inside(&apply_state_key(5)));
        assert!(!inside(&region_state_key(5)));
        assert!(!inside(&data_key(b"")));
        let last = region_extra_ranges(u64::MAX);
        assert_eq!(last[0].1, vec![LOCAL_PREFIX, REGION_EXTRA_KIND_MIN + 1]);
    }

    proptest! {
        #[test]
        fn data_keys_keep_user_key_order(a in proptest::collection::vec(any::<u8>(), 0..16),
                                         b in proptest::collection::vec(any::<u8>(), 0..16)) {
            prop_assert_eq!(a.cmp(&b), data_key(&a).cmp(&data_key(&b)));
        }

        #[test]
        fn data_keys_stay_inside_data_range(k in proptest::collection::vec(any::<u8>(), 0..16),
                                            id in any::<u64>()) {
            let key = data_key(&k);
            prop_assert!(DATA_MIN_KEY <= key.as_slice() && key.as_slice() < DATA_MAX_KEY);
            prop_assert_eq!(origin_key(&key).unwrap(), k.as_slice());
            prop_assert!(apply_state_key(id).as_slice() < DATA_MIN_KEY);
            prop_assert!(region_state_key(id).as_slice() < DATA_MIN_KEY);
        }

        #[test]
        fn local_keys_round_trip_and_order_by_region(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(region_id_of_local_key(&apply_state_key(a), APPLY_STATE_KIND).unwrap(), a);
            prop_assert_eq!(region_id_of_local_key(&region_state_key(b), REGION_STATE_KIND).unwrap(), b);
            prop_assert_eq!(a.cmp(&b), region_state_key(a).cmp(&region_state_key(b)));
        }
    }
}
