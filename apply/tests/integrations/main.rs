//! Integration tests of the apply crate (one binary).

mod crash;
mod exec;
mod harness;
mod membership;
mod model;
mod system;
