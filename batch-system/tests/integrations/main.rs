//! Integration tests of the batch system, compiled into one binary.

mod fairness;
mod manual;
mod props;
mod router;
mod stress;
mod system;
mod util;
