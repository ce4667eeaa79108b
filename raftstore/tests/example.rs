//! The examples run to the end: `three_stores` (three hand-wired durable
//! stores, writes, a planned restart with catch-up, a graceful shutdown) and
//! `replace_dead_store` (a store lost for good, the logs compacted past it,
//! its replicas moved to a new store, every acknowledged write kept) and
//! `write_path_cost` (three stores driven on one thread, every put answered).

#[path = "../examples/three_stores.rs"]
mod three_stores;

#[test]
fn three_stores_example_runs_to_the_end() {
    three_stores::main().unwrap();
}

#[path = "../examples/replace_dead_store.rs"]
mod replace_dead_store;

#[test]
fn replace_dead_store_example_moves_every_replica_and_loses_nothing() {
    replace_dead_store::run(200).unwrap();
}

#[path = "../examples/write_path_cost.rs"]
mod write_path_cost;

#[test]
fn write_path_cost_example_answers_every_put() {
    assert_eq!(write_path_cost::run(500, 16).unwrap(), 500);
}
