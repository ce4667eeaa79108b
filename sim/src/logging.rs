//! The logger `--verbose` runs use: raftstore's structured log on stderr.

use slog::{o, Drain, Logger};

/// A synchronous terminal logger at `Info` level, without timestamps (the
/// wall clock means nothing in a simulation).
pub fn terminal_logger() -> Logger {
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator)
        .use_custom_timestamp(|_: &mut dyn std::io::Write| Ok(()))
        .build()
        .fuse();
    let drain = slog::LevelFilter::new(drain, slog::Level::Info).fuse();
    Logger::root(drain, o!())
}
