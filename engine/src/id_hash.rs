//! A fast hasher for maps keyed by region id.
//!
//! Region ids are small integers chosen by the cluster, not by an attacker,
//! so SipHash's flooding resistance buys nothing and costs a large share of
//! the in-memory engines' time. This is a multiplicative (Fibonacci) hash.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap` keyed by region id.
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Hashes one `u64` by multiplying with 2^64 / golden ratio.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u64 keys; fold the bytes in.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_map_behaves_like_a_map() {
        let mut m: IdMap<u64> = IdMap::default();
        for id in 0..10_000u64 {
            m.insert(id * 7, id);
        }
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.get(&(7 * 9_999)), Some(&9_999));
        assert_eq!(m.get(&1), None);
    }
}
