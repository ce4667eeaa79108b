//! Classification of a store's error answer: did the command run, and
//! what should the client do next.

use kvproto_lite::errorpb;

/// What an error answer means for the command and for the next attempt.
///
/// Every typed error in [`errorpb::Error`] says the command did **not**
/// run; an untyped one (only a message: the command was dropped at a
/// shutdown, its peer was destroyed, ...) leaves the outcome unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Not run; the answer says where to go (`NotLeader` naming the
    /// leader's store) or what changed (`EpochNotMatch` with the current
    /// regions): try again at once.
    RetryNow,
    /// Not run, for a reason that takes time to go away: `NotLeader`
    /// without a leader (an election is running), `RegionNotFound`,
    /// `StoreNotMatch`, `ServerIsBusy`, `StaleCommand`. Try again after a
    /// backoff.
    RetryLater,
    /// Not run, and asking again will not help: `KeyNotInRegion`,
    /// `RaftEntryTooLarge`, `InvalidRequest`, `StaleSequence`.
    Fail,
    /// The outcome is unknown: the command may or may not have run.
    Unknown,
}

impl ErrorClass {
    /// Whether the command certainly did not run.
    pub fn not_applied(self) -> bool {
        self != ErrorClass::Unknown
    }
}

/// Classifies `err` (see [`ErrorClass`]).
///
/// # Examples
///
/// ```
/// use client::{classify, ErrorClass};
/// use kvproto_lite::util;
///
/// assert_eq!(classify(&util::new_server_is_busy("full")), ErrorClass::RetryLater);
/// assert_eq!(classify(&util::new_not_leader(1, None)), ErrorClass::RetryLater);
/// assert_eq!(classify(&util::new_error("dropped at shutdown")), ErrorClass::Unknown);
/// assert!(!ErrorClass::Unknown.not_applied());
/// ```
pub fn classify(err: &errorpb::Error) -> ErrorClass {
    if err.has_not_leader() {
        let nl = err.get_not_leader();
        if nl.has_leader() && nl.get_leader().get_store_id() != 0 {
            return ErrorClass::RetryNow;
        }
        return ErrorClass::RetryLater;
    }
    if err.has_epoch_not_match() {
        return ErrorClass::RetryNow;
    }
    if err.has_region_not_found()
        || err.has_store_not_match()
        || err.has_server_is_busy()
        || err.has_stale_command()
    {
        return ErrorClass::RetryLater;
    }
    if err.has_key_not_in_region()
        || err.has_raft_entry_too_large()
        || err.has_invalid_request()
        || err.has_stale_sequence()
    {
        return ErrorClass::Fail;
    }
    ErrorClass::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvproto_lite::metapb::{Peer, Region};
    use kvproto_lite::util;

    #[test]
    fn every_typed_error_means_not_applied_and_an_untyped_one_unknown() {
        let mut leader = Peer::default();
        leader.set_id(7);
        leader.set_store_id(2);
        let mut region = Region::default();
        region.set_id(1);
        let cases = [
            (util::new_not_leader(1, Some(leader)), ErrorClass::RetryNow),
            (util::new_not_leader(1, None), ErrorClass::RetryLater),
            (
                util::new_epoch_not_match("stale", vec![region.clone()]),
                ErrorClass::RetryNow,
            ),
            (util::new_region_not_found(1), ErrorClass::RetryLater),
            (util::new_store_not_match(1, 2), ErrorClass::RetryLater),
            (util::new_server_is_busy("busy"), ErrorClass::RetryLater),
            (util::new_stale_command(), ErrorClass::RetryLater),
            (util::new_key_not_in_region(b"k", &region), ErrorClass::Fail),
            (util::new_raft_entry_too_large(1, 10), ErrorClass::Fail),
            (util::new_invalid_request("reserved key"), ErrorClass::Fail),
            (util::new_stale_sequence(1, 2, 3), ErrorClass::Fail),
            (util::new_error("outcome unknown"), ErrorClass::Unknown),
        ];
        for (err, class) in cases {
            assert_eq!(classify(&err), class, "{err:?}");
            assert_eq!(class.not_applied(), class != ErrorClass::Unknown);
        }
    }

    #[test]
    fn a_leader_hint_without_a_store_is_no_hint() {
        let mut leader = Peer::default();
        leader.set_id(7);
        assert_eq!(
            classify(&util::new_not_leader(1, Some(leader))),
            ErrorClass::RetryLater
        );
    }
}
