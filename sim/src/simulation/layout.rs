//! The region layout the simulation believes in: a [`client::RegionCache`]
//! (the client crate's, with its stale-epoch guard) shared by the clients
//! and the nemesis, learned from `EpochNotMatch` answers (in
//! [`client::learn`]), from split responses and, like a client asking a
//! placement service, from a store's region metadata.
//!
//! Every region id a store can report was created by bootstrap or by a
//! split this simulation issued, and both put it in `tick_ids` first, so
//! learning a region never adds a region to tick.

use engine::KvEngine;
use kvproto_lite::raft_serverpb::PeerState;

use super::Simulation;

impl Simulation {
    /// Learns every known region's metadata from `store`'s KV engine.
    pub(super) fn refresh_regions_from(&mut self, store: u64) {
        let Some(slot) = self.stores.get(&store) else {
            return;
        };
        let states = match slot.engines.kv.region_states() {
            Ok(states) => states,
            Err(_) => return,
        };
        for state in states {
            if state.get_state() == PeerState::Normal {
                self.regions.update(state.get_region().clone());
            }
        }
    }

    /// Learns the layouts from finished splits.
    pub(super) fn learn_splits(&mut self) {
        let done =
            std::mem::take(&mut *self.split_results.lock().unwrap_or_else(|e| e.into_inner()));
        for resp in done {
            if resp.get_header().has_error() || !resp.has_admin_response() {
                continue;
            }
            let split = resp.get_admin_response().get_split();
            for r in [split.get_left().clone(), split.get_right().clone()] {
                self.regions.update(r);
            }
        }
        let changed = std::mem::take(
            &mut *self
                .membership_results
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for resp in changed {
            let header = resp.get_header();
            if header.has_error() {
                // A stale layout: learn the current one.
                for r in header
                    .get_error()
                    .get_epoch_not_match()
                    .get_current_regions()
                {
                    self.regions.update(r.clone());
                }
                continue;
            }
            let admin = resp.get_admin_response();
            let region = if admin.has_change_peer_v2() {
                admin.get_change_peer_v2().get_region()
            } else {
                admin.get_change_peer().get_region()
            };
            self.stats.conf_changes_applied += 1;
            self.regions.update(region.clone());
        }
    }
}
