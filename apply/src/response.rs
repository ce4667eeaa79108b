//! Building command responses and the errors they carry.

use kvproto_lite::errorpb;
use kvproto_lite::metapb::Region;
use kvproto_lite::raft_cmdpb::RaftCmdResponse;

/// An error with only a message (no typed kind).
pub(crate) fn err_message(msg: impl Into<String>) -> errorpb::Error {
    let mut err = errorpb::Error::default();
    err.set_message(msg.into());
    err
}

/// `EpochNotMatch` carrying the region as it is now.
pub(crate) fn err_epoch_not_match(current: &Region) -> errorpb::Error {
    let mut err = err_message(format!(
        "region {} epoch does not match: current conf_ver {} version {}",
        current.get_id(),
        current.get_region_epoch().get_conf_ver(),
        current.get_region_epoch().get_version()
    ));
    err.mut_epoch_not_match()
        .mut_current_regions()
        .push(current.clone());
    err
}

/// `KeyNotInRegion` for `key`.
pub(crate) fn err_key_not_in_region(key: &[u8], region: &Region) -> errorpb::Error {
    let mut err = err_message(format!("key is not in region {}", region.get_id()));
    let e = err.mut_key_not_in_region();
    e.set_key(key.to_vec());
    e.set_region_id(region.get_id());
    e.set_start_key(region.get_start_key().to_vec());
    e.set_end_key(region.get_end_key().to_vec());
    err
}

/// `StaleCommand`: the command's entry was superseded (or the FSM reset).
pub(crate) fn err_stale_command() -> errorpb::Error {
    let mut err = err_message("stale command: its log entry was superseded");
    err.set_stale_command(errorpb::StaleCommand::default());
    err
}

/// `RegionNotFound` for `region_id`.
pub(crate) fn err_region_not_found(region_id: u64) -> errorpb::Error {
    let mut err = err_message(format!("region {region_id} not found"));
    err.mut_region_not_found().set_region_id(region_id);
    err
}

/// An untyped error for a proposal whose entry is committed but will not be
/// applied by this FSM (destroyed or shut down): the entry may still apply
/// elsewhere, or here after a restart, so the outcome is unknown. A typed
/// `RegionNotFound` would wrongly tell the client the command did not run.
pub(crate) fn err_outcome_unknown(region_id: u64) -> errorpb::Error {
    err_message(format!(
        "region {region_id}: apply stopped before the command's committed entry was applied here: outcome unknown"
    ))
}

/// A response whose header carries `err`.
pub(crate) fn error_response(err: errorpb::Error, current_term: u64) -> RaftCmdResponse {
    let mut resp = RaftCmdResponse::default();
    resp.mut_header().set_error(err);
    resp.mut_header().set_current_term(current_term);
    resp
}

/// `start_key <= key < end_key` (an empty end key is +infinity).
pub(crate) fn key_in_region(key: &[u8], region: &Region) -> bool {
    key >= region.get_start_key() && (region.get_end_key().is_empty() || key < region.get_end_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: &[u8], end: &[u8]) -> Region {
        let mut r = Region::default();
        r.set_id(1);
        r.set_start_key(start.to_vec());
        r.set_end_key(end.to_vec());
        r
    }

    #[test]
    fn key_range_is_half_open_with_infinite_empty_end() {
        let r = region(b"b", b"d");
        assert!(!key_in_region(b"a", &r));
        assert!(key_in_region(b"b", &r));
        assert!(key_in_region(b"c", &r));
        assert!(!key_in_region(b"d", &r));
        let all = region(b"", b"");
        assert!(key_in_region(b"", &all));
        assert!(key_in_region(b"\xff\xff", &all));
    }

    #[test]
    fn typed_errors_carry_their_kind() {
        let r = region(b"b", b"d");
        assert!(err_epoch_not_match(&r).has_epoch_not_match());
        let e = err_key_not_in_region(b"z", &r);
        assert_eq!(e.get_key_not_in_region().get_key(), b"z");
        assert_eq!(e.get_key_not_in_region().get_end_key(), b"d");
        assert!(err_stale_command().has_stale_command());
        assert_eq!(
            err_region_not_found(9)
                .get_region_not_found()
                .get_region_id(),
            9
        );
        let resp = error_response(err_message("x"), 7);
        assert_eq!(resp.get_header().get_current_term(), 7);
        assert_eq!(resp.get_header().get_error().get_message(), "x");
    }
}
