//! Building command responses and the errors they carry.

use kvproto_lite::errorpb;
use kvproto_lite::raft_cmdpb::RaftCmdResponse;
use kvproto_lite::util;

/// An untyped error for a proposal whose entry is committed but will not be
/// applied by this FSM (destroyed or shut down): the entry may still apply
/// elsewhere, or here after a restart, so the outcome is unknown. A typed
/// `RegionNotFound` would wrongly tell the client the command did not run.
pub(crate) fn err_outcome_unknown(region_id: u64) -> errorpb::Error {
    util::new_error(format!(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_carries_the_error_and_the_term() {
        let resp = error_response(util::new_error("x"), 7);
        assert_eq!(resp.get_header().get_current_term(), 7);
        assert_eq!(resp.get_header().get_error().get_message(), "x");
    }

    #[test]
    fn outcome_unknown_is_untyped_and_names_the_region() {
        let e = err_outcome_unknown(9);
        assert!(e.get_message().contains("region 9"));
        assert!(e.get_message().contains("outcome unknown"));
        assert!(!e.has_region_not_found() && !e.has_stale_command() && !e.has_not_leader());
    }
}
