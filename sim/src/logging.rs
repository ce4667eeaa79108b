//! The logger `--verbose` runs use: raftstore's structured log on stderr.

use slog::{o, Drain, Logger};

/// A synchronous terminal logger without timestamps (the wall clock means
/// nothing in a simulation), at `Info` level, or `Debug` when the
/// environment variable `SIM_LOG=debug`.
pub fn terminal_logger() -> Logger {
    let level = match std::env::var("SIM_LOG").as_deref() {
        Ok("debug") => slog::Level::Debug,
        Ok("trace") => slog::Level::Trace,
        _ => slog::Level::Info,
    };
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator)
        .use_custom_timestamp(|_: &mut dyn std::io::Write| Ok(()))
        .build()
        .fuse();
    let drain = slog::LevelFilter::new(drain, level).fuse();
    Logger::root(drain, o!())
}
