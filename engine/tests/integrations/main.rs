//! Integration tests of the `engine` crate: one conformance suite run on
//! every implementation, model-based property tests, crash tests and
//! open-error tests.

mod crash;
mod harness;
mod kv_suite;
mod model;
mod open_errors;
mod raft_engine_cache;
mod raft_engine_gc;
mod raft_suite;

/// Instantiates every raft log check for one harness.
macro_rules! raft_conformance {
    ($name:ident, $harness:ty, $cases:expr) => {
        mod $name {
            use crate::harness::*;
            use crate::raft_suite as s;
            use proptest::prelude::*;

            #[test]
            fn append_then_fetch_returns_the_entries() {
                s::append_then_fetch_returns_the_entries::<$harness>();
            }
            #[test]
            fn append_overwrites_the_conflicting_suffix() {
                s::append_overwrites_the_conflicting_suffix::<$harness>();
            }
            #[test]
            fn invalid_appends_are_rejected_and_write_nothing() {
                s::invalid_appends_are_rejected_and_write_nothing::<$harness>();
            }
            #[test]
            fn batch_rejects_non_contiguous_entries() {
                s::batch_rejects_non_contiguous_entries::<$harness>();
            }
            #[test]
            fn fetch_stops_at_the_size_limit_but_returns_one_entry() {
                s::fetch_stops_at_the_size_limit_but_returns_one_entry::<$harness>();
            }
            #[test]
            fn fetch_reports_compacted_and_unavailable_ranges() {
                s::fetch_reports_compacted_and_unavailable_ranges::<$harness>();
            }
            #[test]
            fn compact_removes_a_prefix_and_counts_it() {
                s::compact_removes_a_prefix_and_counts_it::<$harness>();
            }
            #[test]
            fn one_batch_writes_many_regions_atomically() {
                s::one_batch_writes_many_regions_atomically::<$harness>();
            }
            #[test]
            fn raft_state_is_replaced_and_listed() {
                s::raft_state_is_replaced_and_listed::<$harness>();
            }
            #[test]
            fn clean_removes_log_and_state_and_allows_a_restart() {
                s::clean_removes_log_and_state_and_allows_a_restart::<$harness>();
            }
            #[test]
            fn empty_batches_and_sync_succeed() {
                s::empty_batches_and_sync_succeed::<$harness>();
            }
            #[test]
            fn restart_keeps_synced_writes() {
                s::restart_keeps_synced_writes::<$harness>();
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases($cases))]
                #[test]
                fn random_operations_match_the_model(ops in crate::model::log_ops(24)) {
                    crate::model::raft_log_matches_model::<$harness>(ops);
                }
            }
        }
    };
}

/// Instantiates every KV check for one harness.
macro_rules! kv_conformance {
    ($name:ident, $harness:ty, $cases:expr) => {
        mod $name {
            use crate::harness::*;
            use crate::kv_suite as s;
            use proptest::prelude::*;

            #[test]
            fn put_get_delete_and_scan() {
                s::put_get_delete_and_scan::<$harness>();
            }
            #[test]
            fn batch_applies_in_order_and_all_at_once() {
                s::batch_applies_in_order_and_all_at_once::<$harness>();
            }
            #[test]
            fn states_live_beside_data_but_never_in_scans() {
                s::states_live_beside_data_but_never_in_scans::<$harness>();
            }
            #[test]
            fn region_and_apply_states_pair_every_region_state_with_its_apply_state() {
                s::region_and_apply_states_pair_every_region_state_with_its_apply_state::<$harness>(
                );
            }
            #[test]
            fn save_points_roll_back_one_command() {
                s::save_points_roll_back_one_command::<$harness>();
            }
            #[test]
            fn snapshots_do_not_see_later_writes() {
                s::snapshots_do_not_see_later_writes::<$harness>();
            }
            #[test]
            fn clones_share_one_store() {
                s::clones_share_one_store::<$harness>();
            }
            #[test]
            fn snapshot_raw_scan_sees_a_regions_keys_as_of_the_snapshot() {
                s::snapshot_raw_scan_sees_a_regions_keys_as_of_the_snapshot::<$harness>();
            }
            #[test]
            fn a_range_delete_removes_stored_keys_and_earlier_puts_of_the_batch() {
                s::a_range_delete_removes_stored_keys_and_earlier_puts_of_the_batch::<$harness>();
            }
            #[test]
            fn raw_puts_and_deletes_are_stored_as_given() {
                s::raw_puts_and_deletes_are_stored_as_given::<$harness>();
            }
            #[test]
            fn restart_keeps_synced_writes() {
                s::restart_keeps_synced_writes::<$harness>();
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases($cases))]
                #[test]
                fn random_operations_match_the_model(ops in crate::model::kv_ops(32)) {
                    crate::model::kv_matches_model::<$harness>(ops);
                }
            }
        }
    };
}

raft_conformance!(mem_raft, MemRaft, 256);
raft_conformance!(raft_engine, DurableRaft, 64);
kv_conformance!(mem_kv, MemKv, 256);
kv_conformance!(fjall, DurableKv, 64);
