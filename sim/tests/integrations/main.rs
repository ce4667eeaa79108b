//! Integration tests of the simulation: many seeds, determinism, and
//! regressions found by it (each named after its seed).

mod corruption;
mod detection;
mod regressions;
mod seeds;
