//! The `three_stores` example runs to the end: three hand-wired durable
//! stores, writes, a planned restart with catch-up, a graceful shutdown.

#[path = "../examples/three_stores.rs"]
mod three_stores;

#[test]
fn three_stores_example_runs_to_the_end() {
    three_stores::main().unwrap();
}
