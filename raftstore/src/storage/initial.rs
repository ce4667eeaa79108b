//! The states a peer starts from.
//!
//! A bootstrapped region, and a region created by a split, start with an
//! empty log "truncated" at ([`RAFT_INIT_LOG_INDEX`],
//! [`RAFT_INIT_LOG_TERM`]): every replica has identical raft state without
//! writing any entry, and a peer created later from a message (index 0)
//! can be told apart from one that was bootstrapped. The apply system
//! writes a split region's initial apply state itself, so the constants and
//! [`initial_apply_state`] are defined once, in the `apply` crate, and used
//! here.

use kvproto_lite::raft_serverpb::RaftLocalState;

pub(crate) use apply::initial_apply_state;
pub use apply::{RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};

/// The raft state every bootstrapped (or split-created) peer starts with:
/// term [`RAFT_INIT_LOG_TERM`], commit and last index
/// [`RAFT_INIT_LOG_INDEX`].
pub(crate) fn initial_raft_state() -> RaftLocalState {
    let mut state = RaftLocalState::default();
    state.mut_hard_state().set_term(RAFT_INIT_LOG_TERM);
    state.mut_hard_state().set_commit(RAFT_INIT_LOG_INDEX);
    state.set_last_index(RAFT_INIT_LOG_INDEX);
    state
}

/// The raft state a peer created by a split starts with: the bootstrap
/// state, but never behind the term (and vote) an uninitialized peer of the
/// same region already persisted here, so it cannot vote twice in a term.
pub(crate) fn split_raft_state(existing: Option<RaftLocalState>) -> RaftLocalState {
    let mut state = initial_raft_state();
    if let Some(old) = existing {
        let hs = old.get_hard_state();
        if hs.get_term() >= state.get_hard_state().get_term() {
            state.mut_hard_state().set_term(hs.get_term());
            state.mut_hard_state().set_vote(hs.get_vote());
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (simulation seed 85 with splits): a store that applied a
    /// split late already had an uninitialized peer of the new region
    /// (created from its peers' votes) that had voted; the split peer
    /// replacing it must keep that term and vote.
    #[test]
    fn seed_85_split_peer_keeps_the_term_and_vote_of_an_uninitialized_peer() {
        let mut old = RaftLocalState::default();
        old.mut_hard_state().set_term(9);
        old.mut_hard_state().set_vote(1001);
        let s = split_raft_state(Some(old));
        assert_eq!(s.get_hard_state().get_term(), 9);
        assert_eq!(s.get_hard_state().get_vote(), 1001);
        assert_eq!(s.get_hard_state().get_commit(), RAFT_INIT_LOG_INDEX);
        assert_eq!(s.get_last_index(), RAFT_INIT_LOG_INDEX);
        assert_eq!(split_raft_state(None), initial_raft_state());
        let mut stale = RaftLocalState::default();
        stale.mut_hard_state().set_term(2);
        stale.mut_hard_state().set_vote(7);
        assert_eq!(split_raft_state(Some(stale)), initial_raft_state());
    }
}
