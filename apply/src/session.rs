//! Client sessions: exactly-once execution of retried commands.
//!
//! A command whose header carries a `client_id` (non-zero) and a `sequence`
//! belongs to a session. Per region and client, apply keeps the highest
//! sequence it applied and the response it gave, in a KV record written in
//! the **same write batch** as the command's data:
//!
//! - a command repeating that sequence is a retry of a command that ran:
//!   it gets the saved response and runs no second time;
//! - a lower sequence is an older retry whose response is gone: it is
//!   refused with `StaleSequence` (and does not run);
//! - a higher sequence runs, and its response replaces the saved one.
//!
//! # Where the records live
//!
//! The records are ordinary keys **inside the region's key range**, so
//! whatever copies a region's range (a region snapshot, a split) carries
//! the sessions along with the data they describe:
//!
//! ```text
//! <region start key> 00 00 ff 'S' 'E' 'S' 'S' ff <client id: u64 BE>
//! ```
//!
//! The 8-byte [`SESSION_MARK`] followed by 8 bytes at the end of a key marks
//! it as reserved ([`is_reserved_key`]): user commands reading or writing
//! such a key are refused with `InvalidRequest`, whatever region they are
//! in, so a user key can never collide with a session record after any
//! split. A region must be wide enough to hold its records (its end key
//! above `start ++ SESSION_MARK ++ ff..ff`); a split key that would make
//! either half narrower is refused ([`split_keeps_sessions`]).
//!
//! The value is the sequence (u64 BE), the index of the entry that wrote
//! it (u64 BE) and the encoded `RaftCmdResponse` (header without term).
//!
//! # Bounded and expired deterministically
//!
//! Every [`Config::session_sweep_interval`](crate::Config) log entries (at
//! indexes that are multiples of it, so every replica sweeps at the same
//! entries, restarts included), apply removes the records of clients idle
//! for more than `session_ttl_entries` entries, then, beyond
//! `max_sessions_per_region`, the least recently used ones (ties by client
//! id). Expiry reads log positions only, never a clock. A client whose
//! record expired runs its next command as new: a retry delayed past the
//! expiry window would run again, which is why the window is counted in
//! entries of the region and kept large.

// Errors are `errorpb::Error` values, as everywhere in apply (cold path,
// moved straight into the response).
#![allow(clippy::result_large_err)]

use kvproto_lite::errorpb;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::{RaftCmdResponse, RaftRequestHeader};
use kvproto_lite::util;
use protobuf::Message;

/// The 8 bytes between a region's start key and a client id that mark a
/// session record key (see the module docs).
pub const SESSION_MARK: [u8; 8] = [0x00, 0x00, 0xff, b'S', b'E', b'S', b'S', 0xff];

const ID_LEN: usize = 8;
const RECORD_HEADER_LEN: usize = 16;

/// Whether `key` has the shape of a session record key (the mark followed
/// by 8 bytes at its end): such keys are reserved for the store and refused
/// in user commands.
///
/// # Examples
///
/// ```
/// let key = apply::session_key(b"m", 7);
/// assert!(apply::is_reserved_key(&key));
/// assert!(!apply::is_reserved_key(b"user key"));
/// ```
pub fn is_reserved_key(key: &[u8]) -> bool {
    key.len() >= SESSION_MARK.len() + ID_LEN
        && key[key.len() - ID_LEN - SESSION_MARK.len()..key.len() - ID_LEN] == SESSION_MARK
}

/// The key of `client_id`'s session record in a region starting at
/// `region_start`.
///
/// # Examples
///
/// ```
/// let key = apply::session_key(b"a", 1);
/// assert!(key.starts_with(b"a"));
/// assert_eq!(key.len(), 1 + 8 + 8);
/// ```
pub fn session_key(region_start: &[u8], client_id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(region_start.len() + SESSION_MARK.len() + ID_LEN);
    key.extend_from_slice(region_start);
    key.extend_from_slice(&SESSION_MARK);
    key.extend_from_slice(&client_id.to_be_bytes());
    key
}

/// The range `[start, end)` holding every session record of a region
/// starting at `region_start`.
pub(crate) fn session_span(region_start: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut start = Vec::with_capacity(region_start.len() + SESSION_MARK.len());
    start.extend_from_slice(region_start);
    start.extend_from_slice(&SESSION_MARK);
    let mut end = start.clone();
    end.extend_from_slice(&[0xff; ID_LEN]);
    end.push(0);
    (start, end)
}

/// Whether a region `[start, end)` holds every possible session key of its
/// own (its largest one lies below `end`).
pub(crate) fn region_holds_sessions(start: &[u8], end: &[u8]) -> bool {
    end.is_empty() || session_key(start, u64::MAX).as_slice() < end
}

/// Whether splitting `region` at `split_key` leaves both halves able to
/// hold their session records.
///
/// # Examples
///
/// ```
/// use kvproto_lite::metapb::Region;
/// let region = Region::default(); // the whole key space
/// assert!(apply::split_keeps_sessions(&region, b"m"));
/// assert!(!apply::split_keeps_sessions(&region, b"\x00"));
/// ```
pub fn split_keeps_sessions(region: &Region, split_key: &[u8]) -> bool {
    region_holds_sessions(region.get_start_key(), split_key)
        && region_holds_sessions(split_key, region.get_end_key())
}

/// The session a command belongs to, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionCmd {
    pub client_id: u64,
    pub sequence: u64,
}

impl SessionCmd {
    pub(crate) fn from_header(header: &RaftRequestHeader) -> Option<SessionCmd> {
        (header.get_client_id() != 0).then(|| SessionCmd {
            client_id: header.get_client_id(),
            sequence: header.get_sequence(),
        })
    }
}

/// One client's saved state in one region.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SessionRecord {
    pub sequence: u64,
    /// Index of the entry that last wrote the record.
    pub last_index: u64,
    pub response: RaftCmdResponse,
}

impl SessionRecord {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, errorpb::Error> {
        let body = self
            .response
            .write_to_bytes()
            .map_err(|e| util::new_error(format!("cannot encode a session response: {e}")))?;
        let mut out = Vec::with_capacity(RECORD_HEADER_LEN + body.len());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.last_index.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub(crate) fn decode(value: &[u8]) -> Result<SessionRecord, errorpb::Error> {
        let corrupt = |why: String| util::new_error(format!("corrupt session record: {why}"));
        if value.len() < RECORD_HEADER_LEN {
            return Err(corrupt(format!("{} bytes", value.len())));
        }
        let (seq, rest) = value.split_at(8);
        let (idx, body) = rest.split_at(8);
        let to_u64 = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        };
        let response =
            kvproto_lite::decode::<RaftCmdResponse>(body).map_err(|e| corrupt(e.to_string()))?;
        Ok(SessionRecord {
            sequence: to_u64(seq),
            last_index: to_u64(idx),
            response,
        })
    }
}

/// The client id of a session record key of a region starting at
/// `region_start` (`None` if `key` is not one).
pub(crate) fn client_of_key(region_start: &[u8], key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(region_start)?;
    let id = rest.strip_prefix(&SESSION_MARK[..])?;
    let bytes: [u8; 8] = id.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Which records a sweep at `index` removes: idle longer than `ttl`
/// entries, then the least recently used beyond `max`. `records` are
/// `(client_id, last_index)`.
pub(crate) fn expired(records: &[(u64, u64)], index: u64, ttl: u64, max: usize) -> Vec<u64> {
    let mut gone = Vec::new();
    let mut live: Vec<(u64, u64)> = Vec::with_capacity(records.len());
    for &(client, last) in records {
        if index.saturating_sub(last) > ttl {
            gone.push(client);
        } else {
            live.push((last, client));
        }
    }
    if live.len() > max {
        live.sort_unstable();
        let extra = live.len() - max;
        gone.extend(live.iter().take(extra).map(|&(_, c)| c));
    }
    gone.sort_unstable();
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_are_reserved_and_inside_their_region() {
        for start in [&b""[..], b"a", b"\xff\xff"] {
            let key = session_key(start, 42);
            assert!(is_reserved_key(&key));
            assert_eq!(client_of_key(start, &key), Some(42));
            let (lo, hi) = session_span(start);
            assert!(lo.as_slice() <= key.as_slice() && key.as_slice() < hi.as_slice());
            assert!(key.as_slice() > start);
        }
    }

    #[test]
    fn ordinary_keys_are_not_reserved() {
        assert!(!is_reserved_key(b""));
        assert!(!is_reserved_key(&SESSION_MARK));
        assert!(!is_reserved_key(&7u64.to_be_bytes()));
        let mut key = SESSION_MARK.to_vec();
        key.extend_from_slice(&[1; 9]);
        assert!(
            !is_reserved_key(&key),
            "mark not at the 8 bytes before the end"
        );
    }

    #[test]
    fn a_split_that_leaves_no_room_for_sessions_is_refused() {
        let mut region = Region::default();
        region.set_start_key(b"a".to_vec());
        region.set_end_key(b"z".to_vec());
        assert!(split_keeps_sessions(&region, b"m"));
        assert!(!split_keeps_sessions(&region, b"a\x00"));
        let just_above = {
            let mut k = session_key(b"a", u64::MAX);
            k.push(0);
            k
        };
        assert!(split_keeps_sessions(&region, &just_above));
        region.set_end_key(b"m\x00".to_vec());
        assert!(
            !split_keeps_sessions(&region, b"m"),
            "right half too narrow"
        );
    }

    #[test]
    fn record_round_trips_and_corruption_is_an_error() {
        let mut response = RaftCmdResponse::default();
        response.mut_responses().push(Default::default());
        let rec = SessionRecord {
            sequence: 9,
            last_index: 77,
            response,
        };
        let bytes = rec.encode().unwrap();
        assert_eq!(SessionRecord::decode(&bytes).unwrap(), rec);
        assert!(SessionRecord::decode(&bytes[..10]).is_err());
    }

    #[test]
    fn sweep_removes_idle_clients_then_the_least_recently_used() {
        let records = [(1, 10), (2, 500), (3, 900), (4, 950)];
        assert_eq!(expired(&records, 1000, 600, 10), vec![1]);
        assert_eq!(expired(&records, 1000, 600, 2), vec![1, 2]);
        assert_eq!(expired(&records, 1000, 10_000, 1), vec![1, 2, 3]);
        assert!(expired(&records, 1000, 10_000, 4).is_empty());
    }
}
