//! The client history: every operation with its invocation, its completion
//! and what it returned.

use std::fmt;

/// A point in the simulation at which something happened.
///
/// `time` is simulated time (for humans); `seq` is a global counter that
/// grows with every recorded invocation and completion, so comparing `seq`s
/// gives the exact real-time order the linearizability checker needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// Simulated time.
    pub time: u64,
    /// Global order of history events.
    pub seq: u64,
}

/// What an operation asked the store to do. Values are the ids of the puts
/// that wrote them (unique per history), so a read names the write it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Write value `.0` to the key.
    Put(u64),
    /// Remove the key.
    Delete,
    /// Read the key.
    Get,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Not finished yet (only while the simulation runs).
    Pending,
    /// A put or delete was acknowledged.
    Written,
    /// A get returned this value (`None` = key absent).
    Read(Option<u64>),
    /// Definitely not executed: every attempt was refused with an error that
    /// guarantees the command had no effect (not leader, busy, stale, ...).
    Failed(String),
    /// May or may not have taken effect, at any point after invocation: the
    /// attempt timed out, or the store answered "outcome unknown".
    Unknown(String),
}

/// One client operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    /// Unique id (its index in the history).
    pub id: u64,
    /// The client (process) that issued it; a client has at most one
    /// operation in flight.
    pub client: u64,
    /// The key, as an index into the simulation's key set.
    pub key: usize,
    /// What was asked.
    pub command: Command,
    /// When the client invoked it.
    pub invoke: Stamp,
    /// When the client saw the result (`None` while pending or if unknown).
    pub complete: Option<Stamp>,
    /// The result.
    pub outcome: Outcome,
    /// How many attempts (sends to a store) it took.
    pub attempts: u32,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cmd = match self.command {
            Command::Put(v) => format!("put(k{}, v{v})", self.key),
            Command::Delete => format!("delete(k{})", self.key),
            Command::Get => format!("get(k{})", self.key),
        };
        let end = match self.complete {
            Some(s) => format!("{}#{}", s.time, s.seq),
            None => "?".to_owned(),
        };
        let out = match &self.outcome {
            Outcome::Pending => "pending".to_owned(),
            Outcome::Written => "ok".to_owned(),
            Outcome::Read(Some(v)) => format!("ok v{v}"),
            Outcome::Read(None) => "ok none".to_owned(),
            Outcome::Failed(e) => format!("failed ({e})"),
            Outcome::Unknown(e) => format!("unknown ({e})"),
        };
        write!(
            f,
            "op {:>4} client {:>2} [{}#{} .. {}] {} -> {} ({} attempts)",
            self.id, self.client, self.invoke.time, self.invoke.seq, end, cmd, out, self.attempts
        )
    }
}

/// The bytes a put of value id `v` writes.
pub fn encode_value(v: u64) -> Vec<u8> {
    format!("v{v}").into_bytes()
}

/// The value id in bytes written by [`encode_value`]; `None` for anything
/// else (which a correct store never returns).
pub fn decode_value(bytes: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(bytes).ok()?;
    s.strip_prefix('v')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_garbage_is_rejected() {
        assert_eq!(decode_value(&encode_value(42)), Some(42));
        assert_eq!(decode_value(b"x42"), None);
        assert_eq!(decode_value(b"v"), None);
        assert_eq!(decode_value(&[0xff]), None);
    }
}
