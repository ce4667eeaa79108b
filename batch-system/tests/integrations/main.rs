//! Integration tests of the batch system, compiled into one binary.

// The narrated example, compiled into this binary so its `run` is tested
// (its `main` is only used by `cargo run --example accounts`).
#[allow(dead_code)]
#[path = "../../examples/accounts.rs"]
mod accounts_example;
mod example;
mod fairness;
mod health;
mod manual;
mod misuse;
mod props;
mod router;
mod shutdown;
mod stress;
mod system;
mod util;
