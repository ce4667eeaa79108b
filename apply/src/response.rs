//! Building command responses and the errors they carry.

use kvproto_lite::errorpb;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_unknown_is_untyped_and_names_the_region() {
        let e = err_outcome_unknown(9);
        assert!(e.get_message().contains("region 9"));
        assert!(e.get_message().contains("outcome unknown"));
        assert!(!e.has_region_not_found() && !e.has_stale_command() && !e.has_not_leader());
    }
}
