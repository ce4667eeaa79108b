//! `node`: runs one store of a multi-raft cluster. See `node --help`.

use std::process::ExitCode;

use clap::Parser;
use node::{Node, NodeFlags};
use slog::{error, info};

/// mimalloc instead of glibc malloc: a store allocates raft messages on one
/// thread and frees them on another, which glibc's arenas handle poorly
/// (cluster-bench measured a quarter to a third of its CPU profile in
/// malloc); TiKV likewise links jemalloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cfg = match NodeFlags::parse().into_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("node: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = cfg.validate() {
        eprintln!("node: {e}");
        return ExitCode::from(2);
    }
    let (logger, guard) = node::logger(&cfg.log_level);
    let code = match Node::start(cfg, &logger) {
        Ok(node) => match node.wait_for_signal() {
            Ok(signal) => {
                info!(logger, "stopping"; "signal" => signal);
                match node.stop() {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        error!(logger, "stop failed"; "error" => %e);
                        eprintln!("node: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("node: {e}");
                let _ = node.stop();
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            // One line on stderr says why (the log goes there too).
            drop(logger);
            drop(guard);
            eprintln!("node: {e}");
            return ExitCode::FAILURE;
        }
    };
    drop(logger);
    drop(guard);
    code
}
