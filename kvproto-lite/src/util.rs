//! Small helpers shared by the apply and raftstore crates: region key-range
//! checks, region-epoch comparison, a command addressed to a region, and one
//! [`errorpb::Error`] constructor per error kind (each sets the human-readable
//! `message` and the typed detail).

use crate::eraftpb::ConfChangeType;
use crate::errorpb;
use crate::metapb::{Peer, Region, RegionEpoch};
use crate::raft_cmdpb::{AdminCmdType, ChangePeerRequest, RaftCmdRequest, RaftCmdResponse};

/// Returns true if `key` lies in `region`'s range `[start_key, end_key)`.
///
/// An empty `start_key` means minus infinity and an empty `end_key` plus
/// infinity.
///
/// # Examples
///
/// ```
/// use kvproto_lite::metapb::Region;
/// use kvproto_lite::util::is_key_in_region;
///
/// let mut region = Region::default();
/// region.set_start_key(b"b".to_vec());
/// region.set_end_key(b"d".to_vec());
/// assert!(is_key_in_region(b"b", &region));
/// assert!(is_key_in_region(b"c\xff", &region));
/// assert!(!is_key_in_region(b"d", &region));
/// assert!(!is_key_in_region(b"a", &region));
///
/// // A region with both keys empty covers every key.
/// assert!(is_key_in_region(b"", &Region::default()));
/// ```
pub fn is_key_in_region(key: &[u8], region: &Region) -> bool {
    let end = region.get_end_key();
    key >= region.get_start_key() && (end.is_empty() || key < end)
}

/// Checks that `key` lies in `region`, returning a `KeyNotInRegion` error
/// that describes the region's current range when it does not.
///
/// # Errors
///
/// An [`errorpb::Error`] with `key_not_in_region` set (see
/// [`new_key_not_in_region`]) when `key` is outside `[start_key, end_key)`.
///
/// # Examples
///
/// ```
/// use kvproto_lite::metapb::Region;
/// use kvproto_lite::util::check_key_in_region;
///
/// let mut region = Region::default();
/// region.set_id(2);
/// region.set_end_key(b"m".to_vec());
/// assert!(check_key_in_region(b"k", &region).is_ok());
///
/// let err = check_key_in_region(b"z", &region).unwrap_err();
/// assert_eq!(err.get_key_not_in_region().get_key(), b"z");
/// assert_eq!(err.get_key_not_in_region().get_region_id(), 2);
/// assert_eq!(err.get_key_not_in_region().get_end_key(), b"m");
/// ```
// The error is returned unboxed on purpose (the shape in notes/contracts.md):
// it goes straight into a response header, and the Ok path carries nothing.
#[allow(clippy::result_large_err)]
pub fn check_key_in_region(key: &[u8], region: &Region) -> Result<(), errorpb::Error> {
    if is_key_in_region(key, region) {
        Ok(())
    } else {
        Err(new_key_not_in_region(key, region))
    }
}

/// Returns true if `checked` is older than `current` in either component:
/// its `version` (key range, bumped by splits) or its `conf_ver` (membership,
/// bumped by peer changes) is smaller.
///
/// An epoch that is newer than `current` in some component is not stale by
/// this test; callers that require an exact match compare for equality.
///
/// # Examples
///
/// ```
/// use kvproto_lite::metapb::RegionEpoch;
/// use kvproto_lite::util::is_epoch_stale;
///
/// let epoch = |conf_ver, version| {
///     let mut e = RegionEpoch::default();
///     e.set_conf_ver(conf_ver);
///     e.set_version(version);
///     e
/// };
/// assert!(!is_epoch_stale(&epoch(2, 3), &epoch(2, 3)));
/// assert!(is_epoch_stale(&epoch(1, 3), &epoch(2, 3)));
/// assert!(is_epoch_stale(&epoch(2, 2), &epoch(2, 3)));
/// assert!(!is_epoch_stale(&epoch(3, 4), &epoch(2, 3)));
/// ```
pub fn is_epoch_stale(checked: &RegionEpoch, current: &RegionEpoch) -> bool {
    checked.get_version() < current.get_version() || checked.get_conf_ver() < current.get_conf_ver()
}

/// A region epoch as text with both fields always shown (`conf_ver 1,
/// version 0`): protobuf's `Debug` output leaves zero fields out, which
/// makes an epoch with a zero field unreadable in an error message.
///
/// # Examples
///
/// ```
/// use kvproto_lite::metapb::RegionEpoch;
///
/// let mut epoch = RegionEpoch::default();
/// epoch.set_conf_ver(1);
/// assert_eq!(kvproto_lite::util::epoch_text(&epoch), "conf_ver 1, version 0");
/// ```
pub fn epoch_text(epoch: &RegionEpoch) -> String {
    format!(
        "conf_ver {}, version {}",
        epoch.get_conf_ver(),
        epoch.get_version()
    )
}

/// The peer of `region` that lives on store `store_id`, if any (a region
/// has at most one peer per store).
///
/// # Examples
///
/// ```
/// use kvproto_lite::metapb::{Peer, Region};
/// use kvproto_lite::util::find_peer;
///
/// let mut region = Region::default();
/// for (id, store) in [(11, 1), (12, 2)] {
///     let mut p = Peer::default();
///     p.set_id(id);
///     p.set_store_id(store);
///     region.mut_peers().push(p);
/// }
/// assert_eq!(find_peer(&region, 2).map(|p| p.get_id()), Some(12));
/// assert!(find_peer(&region, 3).is_none());
/// ```
pub fn find_peer(region: &Region, store_id: u64) -> Option<&Peer> {
    region
        .get_peers()
        .iter()
        .find(|p| p.get_store_id() == store_id)
}

/// A command addressed to `peer` of `region`: a [`RaftCmdRequest`] whose
/// header carries the region id, the peer and the region's current epoch.
/// Push requests (or set an admin request) before sending it.
///
/// # Examples
///
/// ```
/// use kvproto_lite::metapb::{Peer, Region};
/// use kvproto_lite::raft_cmdpb::{CmdType, Request};
///
/// let mut region = Region::default();
/// region.set_id(7);
/// region.mut_region_epoch().set_version(3);
/// let mut peer = Peer::default();
/// peer.set_id(71);
/// peer.set_store_id(1);
///
/// let mut cmd = kvproto_lite::util::new_cmd_request(&region, peer.clone());
/// let mut get = Request::default();
/// get.set_cmd_type(CmdType::Get);
/// get.mut_get().set_key(b"k".to_vec());
/// cmd.mut_requests().push(get);
///
/// assert_eq!(cmd.get_header().get_region_id(), 7);
/// assert_eq!(cmd.get_header().get_peer(), &peer);
/// assert_eq!(cmd.get_header().get_region_epoch().get_version(), 3);
/// ```
pub fn new_cmd_request(region: &Region, peer: Peer) -> RaftCmdRequest {
    let mut cmd = RaftCmdRequest::default();
    let header = cmd.mut_header();
    header.set_region_id(region.get_id());
    header.set_peer(peer);
    header.set_region_epoch(region.get_region_epoch().clone());
    cmd
}

/// One membership change: add `peer` as a voter (`AddNode`, which also
/// promotes a learner), as a learner (`AddLearnerNode`, which also demotes
/// a voter), or remove it (`RemoveNode`).
///
/// # Examples
///
/// ```
/// use kvproto_lite::eraftpb::ConfChangeType;
/// use kvproto_lite::metapb::Peer;
///
/// let mut peer = Peer::default();
/// peer.set_id(14);
/// peer.set_store_id(4);
/// let c = kvproto_lite::util::change_peer(ConfChangeType::AddLearnerNode, peer);
/// assert_eq!(c.get_peer().get_store_id(), 4);
/// ```
pub fn change_peer(change_type: ConfChangeType, peer: Peer) -> ChangePeerRequest {
    let mut c = ChangePeerRequest::default();
    c.set_change_type(change_type);
    c.set_peer(peer);
    c
}

/// A membership change command for `region` (as the caller knows it: its
/// epoch is checked), addressed to `leader`: `ChangePeer` for one change,
/// `ChangePeerV2` (a joint configuration, left automatically) for several.
///
/// # Examples
///
/// ```
/// use kvproto_lite::eraftpb::ConfChangeType;
/// use kvproto_lite::metapb::{Peer, Region};
/// use kvproto_lite::raft_cmdpb::AdminCmdType;
/// use kvproto_lite::util::{change_peer, new_change_peer_request};
///
/// let peer = |id, store| {
///     let mut p = Peer::default();
///     p.set_id(id);
///     p.set_store_id(store);
///     p
/// };
/// let mut region = Region::default();
/// region.set_id(1);
/// region.mut_region_epoch().set_conf_ver(1);
/// // Replace the peer on store 3 by one on store 4 through a joint change:
/// // the old one is demoted (it can be removed once it is a learner).
/// let cmd = new_change_peer_request(
///     &region,
///     peer(11, 1),
///     vec![
///         change_peer(ConfChangeType::AddNode, peer(14, 4)),
///         change_peer(ConfChangeType::AddLearnerNode, peer(13, 3)),
///     ],
/// );
/// assert_eq!(cmd.get_admin_request().get_cmd_type(), AdminCmdType::ChangePeerV2);
/// ```
pub fn new_change_peer_request(
    region: &Region,
    leader: Peer,
    mut changes: Vec<ChangePeerRequest>,
) -> RaftCmdRequest {
    let mut cmd = new_cmd_request(region, leader);
    let admin = cmd.mut_admin_request();
    if changes.len() == 1 {
        admin.set_cmd_type(AdminCmdType::ChangePeer);
        admin.set_change_peer(changes.remove(0));
    } else {
        admin.set_cmd_type(AdminCmdType::ChangePeerV2);
        admin.mut_change_peer_v2().set_changes(changes.into());
    }
    cmd
}

/// A command response whose header carries `err` and the responder's
/// current raft term (0 when unknown): how a store answers a command it
/// refused or could not finish.
///
/// # Examples
///
/// ```
/// use kvproto_lite::util::{error_response, new_region_not_found};
///
/// let resp = error_response(new_region_not_found(7), 3);
/// assert!(resp.get_header().get_error().has_region_not_found());
/// assert_eq!(resp.get_header().get_current_term(), 3);
/// assert!(resp.get_responses().is_empty());
/// ```
pub fn error_response(err: errorpb::Error, current_term: u64) -> RaftCmdResponse {
    let mut resp = RaftCmdResponse::default();
    resp.mut_header().set_error(err);
    resp.mut_header().set_current_term(current_term);
    resp
}

/// Builds an error with only the human-readable `message` set, for failures
/// that have no typed detail.
///
/// # Examples
///
/// ```
/// let err = kvproto_lite::util::new_error("request has no header");
/// assert_eq!(err.get_message(), "request has no header");
/// assert!(!err.has_not_leader());
/// ```
pub fn new_error(message: impl Into<String>) -> errorpb::Error {
    let mut err = errorpb::Error::default();
    err.set_message(message.into());
    err
}

/// Builds a `NotLeader` error: the addressed peer of `region_id` is not the
/// leader; `leader` is the leader it knows of, if any.
///
/// # Examples
///
/// ```
/// use kvproto_lite::metapb::Peer;
/// use kvproto_lite::util::new_not_leader;
///
/// let mut leader = Peer::default();
/// leader.set_id(5);
/// leader.set_store_id(2);
/// let err = new_not_leader(1, Some(leader.clone()));
/// assert_eq!(err.get_not_leader().get_region_id(), 1);
/// assert_eq!(err.get_not_leader().get_leader(), &leader);
///
/// let unknown = new_not_leader(1, None);
/// assert!(unknown.has_not_leader());
/// assert!(!unknown.get_not_leader().has_leader());
/// ```
pub fn new_not_leader(region_id: u64, leader: Option<Peer>) -> errorpb::Error {
    let mut detail = errorpb::NotLeader::default();
    detail.set_region_id(region_id);
    let mut err = match &leader {
        Some(l) => new_error(format!(
            "peer is not leader for region {region_id}, leader may be peer {} on store {}",
            l.get_id(),
            l.get_store_id()
        )),
        None => new_error(format!(
            "peer is not leader for region {region_id}, leader unknown"
        )),
    };
    if let Some(leader) = leader {
        detail.set_leader(leader);
    }
    err.set_not_leader(detail);
    err
}

/// Builds a `RegionNotFound` error: this store has no peer of `region_id`.
///
/// # Examples
///
/// ```
/// let err = kvproto_lite::util::new_region_not_found(9);
/// assert_eq!(err.get_region_not_found().get_region_id(), 9);
/// assert_eq!(err.get_message(), "region 9 not found");
/// ```
pub fn new_region_not_found(region_id: u64) -> errorpb::Error {
    let mut detail = errorpb::RegionNotFound::default();
    detail.set_region_id(region_id);
    let mut err = new_error(format!("region {region_id} not found"));
    err.set_region_not_found(detail);
    err
}

/// Builds a `KeyNotInRegion` error for `key`, carrying `region`'s id and
/// current range so the client can refresh its routing.
///
/// # Examples
///
/// ```
/// use kvproto_lite::metapb::Region;
///
/// let mut region = Region::default();
/// region.set_id(4);
/// region.set_start_key(b"a".to_vec());
/// let err = kvproto_lite::util::new_key_not_in_region(b"0", &region);
/// let detail = err.get_key_not_in_region();
/// assert_eq!((detail.get_key(), detail.get_region_id()), (&b"0"[..], 4));
/// assert_eq!(detail.get_start_key(), b"a");
/// ```
pub fn new_key_not_in_region(key: &[u8], region: &Region) -> errorpb::Error {
    let mut detail = errorpb::KeyNotInRegion::default();
    detail.set_key(key.to_vec());
    detail.set_region_id(region.get_id());
    detail.set_start_key(region.get_start_key().to_vec());
    detail.set_end_key(region.get_end_key().to_vec());
    let mut err = new_error(format!(
        "key {} is not in region {} [{}, {})",
        escape(key),
        region.get_id(),
        escape(region.get_start_key()),
        escape(region.get_end_key())
    ));
    err.set_key_not_in_region(detail);
    err
}

/// Builds an `EpochNotMatch` error: the command was built against an older
/// region epoch. `reason` says what differed; `current_regions` are the
/// region (and after a split its siblings) as the store knows them now.
///
/// # Examples
///
/// ```
/// use kvproto_lite::metapb::Region;
///
/// let mut region = Region::default();
/// region.set_id(3);
/// region.mut_region_epoch().set_version(2);
/// let err = kvproto_lite::util::new_epoch_not_match(
///     "request version 1 < current version 2",
///     vec![region.clone()],
/// );
/// assert_eq!(err.get_epoch_not_match().get_current_regions(), &[region]);
/// assert!(err.get_message().contains("version 1"));
/// ```
pub fn new_epoch_not_match(
    reason: impl Into<String>,
    current_regions: Vec<Region>,
) -> errorpb::Error {
    let mut detail = errorpb::EpochNotMatch::default();
    detail.set_current_regions(current_regions.into());
    let mut err = new_error(format!("epoch not match: {}", reason.into()));
    err.set_epoch_not_match(detail);
    err
}

/// Builds a `ServerIsBusy` error: the store refused the command because it
/// is overloaded (for example a full mailbox); `reason` says which limit.
///
/// `reason` is a `&str`, a concrete type, so a call with `"...".into()`
/// infers it (a generic `impl Into<String>` would be ambiguous there,
/// because protobuf's `Chars` converts into `String` too); pass
/// `&format!(..)` for a built reason.
///
/// # Examples
///
/// ```
/// use kvproto_lite::util::new_server_is_busy;
///
/// let err = new_server_is_busy("mailbox of region 7 is full");
/// assert_eq!(err.get_server_is_busy().get_reason(), "mailbox of region 7 is full");
/// let region_id = 7;
/// let built = new_server_is_busy(&format!("mailbox of region {region_id} is full"));
/// assert_eq!(built, err);
/// let converted = new_server_is_busy("mailbox of region 7 is full".into());
/// assert_eq!(converted, err);
/// ```
pub fn new_server_is_busy(reason: &str) -> errorpb::Error {
    let mut err = new_error(format!("server is busy: {reason}"));
    let mut detail = errorpb::ServerIsBusy::default();
    detail.set_reason(reason.to_owned());
    err.set_server_is_busy(detail);
    err
}

/// Builds a `StaleCommand` error: the command was dropped before it was
/// applied (for example its proposal was overwritten after a leader change),
/// so its outcome is unknown to the client.
///
/// # Examples
///
/// ```
/// let err = kvproto_lite::util::new_stale_command();
/// assert!(err.has_stale_command());
/// ```
pub fn new_stale_command() -> errorpb::Error {
    let mut err = new_error("stale command: its log entry was superseded");
    err.set_stale_command(errorpb::StaleCommand::default());
    err
}

/// Builds a `StoreNotMatch` error: a command meant for store `to_store_id`
/// reached store `actual_store_id`.
///
/// # Examples
///
/// ```
/// let err = kvproto_lite::util::new_store_not_match(2, 3);
/// assert_eq!(err.get_store_not_match().get_to_store_id(), 2);
/// assert_eq!(err.get_store_not_match().get_actual_store_id(), 3);
/// ```
pub fn new_store_not_match(to_store_id: u64, actual_store_id: u64) -> errorpb::Error {
    let mut detail = errorpb::StoreNotMatch::default();
    detail.set_to_store_id(to_store_id);
    detail.set_actual_store_id(actual_store_id);
    let mut err = new_error(format!(
        "store not match: request for store {to_store_id} reached store {actual_store_id}"
    ));
    err.set_store_not_match(detail);
    err
}

/// Builds a `RaftEntryTooLarge` error: a command for `region_id` would be a
/// Raft entry of `entry_size` bytes, more than the store accepts.
///
/// # Examples
///
/// ```
/// let err = kvproto_lite::util::new_raft_entry_too_large(1, 9 << 20);
/// assert_eq!(err.get_raft_entry_too_large().get_entry_size(), 9 << 20);
/// ```
pub fn new_raft_entry_too_large(region_id: u64, entry_size: u64) -> errorpb::Error {
    let mut detail = errorpb::RaftEntryTooLarge::default();
    detail.set_region_id(region_id);
    detail.set_entry_size(entry_size);
    let mut err = new_error(format!(
        "raft entry of region {region_id} is too large: {entry_size} bytes"
    ));
    err.set_raft_entry_too_large(detail);
    err
}

/// A short name for the kind of `err`, its typed detail (`not_leader`,
/// `region_not_found`, `key_not_in_region`, `epoch_not_match`,
/// `server_is_busy`, `stale_command`, `store_not_match`,
/// `raft_entry_too_large`) or `other` for an untyped error: a metric label.
///
/// # Examples
///
/// ```
/// use kvproto_lite::util::{error_kind, new_error, new_not_leader};
///
/// assert_eq!(error_kind(&new_not_leader(1, None)), "not_leader");
/// assert_eq!(error_kind(&new_error("dropped")), "other");
/// ```
pub fn error_kind(err: &errorpb::Error) -> &'static str {
    if err.has_not_leader() {
        "not_leader"
    } else if err.has_region_not_found() {
        "region_not_found"
    } else if err.has_key_not_in_region() {
        "key_not_in_region"
    } else if err.has_epoch_not_match() {
        "epoch_not_match"
    } else if err.has_server_is_busy() {
        "server_is_busy"
    } else if err.has_stale_command() {
        "stale_command"
    } else if err.has_store_not_match() {
        "store_not_match"
    } else if err.has_raft_entry_too_large() {
        "raft_entry_too_large"
    } else {
        "other"
    }
}

/// Renders a key for an error message: printable ASCII as is, other bytes as
/// `\xNN`.
fn escape(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_typed_error_has_its_own_kind() {
        let errors = [
            new_not_leader(1, None),
            new_region_not_found(1),
            new_key_not_in_region(b"k", &Region::default()),
            new_epoch_not_match("x", vec![]),
            new_server_is_busy("x"),
            new_stale_command(),
            new_store_not_match(1, 2),
            new_raft_entry_too_large(1, 2),
            new_error("x"),
        ];
        let kinds: std::collections::HashSet<&str> = errors.iter().map(error_kind).collect();
        assert_eq!(kinds.len(), errors.len());
        assert!(kinds.contains("other"));
    }

    fn region(start: &[u8], end: &[u8]) -> Region {
        let mut r = Region::default();
        r.set_id(1);
        r.set_start_key(start.to_vec());
        r.set_end_key(end.to_vec());
        r
    }

    fn epoch(conf_ver: u64, version: u64) -> RegionEpoch {
        let mut e = RegionEpoch::default();
        e.set_conf_ver(conf_ver);
        e.set_version(version);
        e
    }

    /// Which typed detail fields of an error are set.
    fn details(err: &errorpb::Error) -> Vec<&'static str> {
        let mut set = Vec::new();
        if err.has_not_leader() {
            set.push("not_leader");
        }
        if err.has_region_not_found() {
            set.push("region_not_found");
        }
        if err.has_key_not_in_region() {
            set.push("key_not_in_region");
        }
        if err.has_epoch_not_match() {
            set.push("epoch_not_match");
        }
        if err.has_server_is_busy() {
            set.push("server_is_busy");
        }
        if err.has_stale_command() {
            set.push("stale_command");
        }
        if err.has_store_not_match() {
            set.push("store_not_match");
        }
        if err.has_raft_entry_too_large() {
            set.push("raft_entry_too_large");
        }
        set
    }

    #[test]
    fn start_key_is_inclusive_and_end_key_exclusive() {
        let r = region(b"b", b"d");
        assert!(is_key_in_region(b"b", &r));
        assert!(is_key_in_region(b"c", &r));
        assert!(!is_key_in_region(b"d", &r));
        assert!(!is_key_in_region(b"a\xff", &r));
        assert!(!is_key_in_region(b"", &r));
    }

    #[test]
    fn empty_end_key_means_unbounded_above() {
        let r = region(b"m", b"");
        assert!(is_key_in_region(b"m", &r));
        assert!(is_key_in_region(b"\xff\xff\xff", &r));
        assert!(!is_key_in_region(b"l", &r));
    }

    #[test]
    fn empty_start_key_means_unbounded_below() {
        let r = region(b"", b"m");
        assert!(is_key_in_region(b"", &r));
        assert!(is_key_in_region(b"\x00", &r));
        assert!(!is_key_in_region(b"m", &r));
    }

    #[test]
    fn key_outside_region_reports_region_range() {
        let r = region(b"b", b"d");
        let err = check_key_in_region(b"e", &r).unwrap_err();
        let detail = err.get_key_not_in_region();
        assert_eq!(detail.get_key(), b"e");
        assert_eq!(detail.get_region_id(), 1);
        assert_eq!(detail.get_start_key(), b"b");
        assert_eq!(detail.get_end_key(), b"d");
        assert_eq!(details(&err), ["key_not_in_region"]);
        assert_eq!(err.get_message(), "key e is not in region 1 [b, d)");
    }

    #[test]
    fn key_message_escapes_binary_bytes() {
        let err = new_key_not_in_region(b"\x00k\xff", &region(b"a", b""));
        assert_eq!(
            err.get_message(),
            "key \\x00k\\xff is not in region 1 [a, )"
        );
    }

    #[test]
    fn key_inside_region_passes_check() {
        assert_eq!(check_key_in_region(b"c", &region(b"b", b"d")), Ok(()));
    }

    #[test]
    fn equal_epochs_are_not_stale() {
        assert!(!is_epoch_stale(&epoch(1, 1), &epoch(1, 1)));
        assert!(!is_epoch_stale(&epoch(0, 0), &epoch(0, 0)));
    }

    #[test]
    fn older_version_or_conf_ver_is_stale() {
        assert!(is_epoch_stale(&epoch(1, 1), &epoch(1, 2)));
        assert!(is_epoch_stale(&epoch(1, 1), &epoch(2, 1)));
        assert!(is_epoch_stale(&epoch(5, 1), &epoch(2, 2)));
        assert!(is_epoch_stale(&epoch(1, 5), &epoch(2, 2)));
    }

    #[test]
    fn newer_epoch_is_not_stale() {
        assert!(!is_epoch_stale(&epoch(2, 3), &epoch(1, 1)));
        assert!(!is_epoch_stale(&epoch(1, 3), &epoch(1, 1)));
    }

    #[test]
    fn each_constructor_sets_exactly_its_detail_and_a_message() {
        let cases = [
            (new_not_leader(1, None), "not_leader"),
            (new_region_not_found(1), "region_not_found"),
            (
                new_key_not_in_region(b"k", &region(b"a", b"b")),
                "key_not_in_region",
            ),
            (new_epoch_not_match("stale", vec![]), "epoch_not_match"),
            (new_server_is_busy("full"), "server_is_busy"),
            (new_stale_command(), "stale_command"),
            (new_store_not_match(1, 2), "store_not_match"),
            (new_raft_entry_too_large(1, 10), "raft_entry_too_large"),
        ];
        for (err, kind) in cases {
            assert_eq!(details(&err), [kind], "{err:?}");
            assert!(!err.get_message().is_empty(), "{kind} has no message");
        }
        assert!(details(&new_error("plain")).is_empty());
    }

    #[test]
    fn not_leader_carries_leader_hint() {
        let mut leader = Peer::default();
        leader.set_id(5);
        leader.set_store_id(2);
        let err = new_not_leader(7, Some(leader.clone()));
        assert_eq!(err.get_not_leader().get_region_id(), 7);
        assert_eq!(err.get_not_leader().get_leader(), &leader);
        assert!(err.get_message().contains("peer 5 on store 2"));
        assert!(!new_not_leader(7, None).get_not_leader().has_leader());
    }

    #[test]
    fn epoch_not_match_carries_current_regions() {
        let regions = vec![region(b"", b"m"), region(b"m", b"")];
        let err = new_epoch_not_match("split", regions.clone());
        assert_eq!(
            err.get_epoch_not_match().get_current_regions(),
            &regions[..]
        );
        assert_eq!(err.get_message(), "epoch not match: split");
    }

    #[test]
    fn server_is_busy_keeps_reason() {
        let err = new_server_is_busy("mailbox full");
        assert_eq!(err.get_server_is_busy().get_reason(), "mailbox full");
        assert_eq!(err.get_message(), "server is busy: mailbox full");
    }

    #[test]
    fn store_not_match_and_entry_too_large_keep_their_numbers() {
        let err = new_store_not_match(2, 3);
        assert_eq!(err.get_store_not_match().get_to_store_id(), 2);
        assert_eq!(err.get_store_not_match().get_actual_store_id(), 3);
        let err = new_raft_entry_too_large(4, 1000);
        assert_eq!(err.get_raft_entry_too_large().get_region_id(), 4);
        assert_eq!(err.get_raft_entry_too_large().get_entry_size(), 1000);
    }
}
