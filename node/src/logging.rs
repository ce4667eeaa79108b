//! Structured logs: slog to stderr, asynchronously, at the configured level.

use slog::{o, Drain, Level, Logger};

/// Keeps the asynchronous log drain running; dropping it flushes what is
/// queued. Hold it until the process exits.
pub struct LogGuard {
    _guard: slog_async::AsyncGuard,
}

/// A logger writing `key=value` lines to stderr at `level` and above
/// (`trace`, `debug`, `info`, `warning`, `error`, `critical`; anything else
/// means `info`). The pieces of the node add `store_id` (and region and
/// peer ids where they apply) to their lines.
pub fn logger(level: &str) -> (Logger, LogGuard) {
    let level = match level {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "warning" => Level::Warning,
        "error" => Level::Error,
        "critical" => Level::Critical,
        _ => Level::Info,
    };
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = drain.filter_level(level).fuse();
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(4096)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .build_with_guard();
    let logger = Logger::root(drain.fuse(), o!());
    (logger, LogGuard { _guard: guard })
}
