//! The default logger of a batch system: warnings on standard error in
//! debug builds, nothing in release builds.

use std::fmt::Write as _;

use slog::{o, Discard, Drain, Logger, Never, OwnedKVList, Record, Serializer, KV};

/// Writes each record as one line on standard error (through `eprintln!`,
/// so test harnesses capture it).
struct StderrDrain;

impl Drain for StderrDrain {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        let mut line = KvText(String::new());
        let _ = record.kv().serialize(record, &mut line);
        let _ = values.serialize(record, &mut line);
        eprintln!(
            "{} batch-system: {}{}",
            record.level().as_short_str(),
            record.msg(),
            line.0
        );
        Ok(())
    }
}

/// Collects `key: value` pairs after the message.
struct KvText(String);

impl Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, ", {key}: {val}");
        Ok(())
    }
}

/// The logger a system uses until [`BatchSystem::set_logger`](crate::BatchSystem::set_logger):
/// standard error in debug builds (so misuse such as a spinning handler is
/// seen during development), discarded in release builds.
pub(crate) fn default_logger() -> Logger {
    if cfg!(debug_assertions) {
        Logger::root(StderrDrain, o!())
    } else {
        Logger::root(Discard, o!())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slog::warn;

    #[test]
    fn stderr_drain_formats_message_and_pairs() {
        let mut text = KvText(String::new());
        let logger = Logger::root(StderrDrain, o!("system" => "t"));
        // Smoke: logging through the drain does not fail.
        warn!(logger, "hello"; "rounds" => 3);
        let args = format_args!("{}", 3);
        text.emit_arguments("rounds", &args).unwrap();
        assert_eq!(text.0, ", rounds: 3");
    }
}
