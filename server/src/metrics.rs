//! The metrics this crate records through the `metrics` facade. The binary
//! that runs the server chooses the exporter (the `node` installs a
//! Prometheus recorder); without one, recording costs next to nothing.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `raft_messages_sent_total` | counter | `to_store` | raft messages handed to a stream |
//! | `raft_message_bytes_sent_total` | counter | `to_store` | encoded bytes of those batches |
//! | `raft_message_batches_sent_total` | counter | `to_store` | `BatchRaftMessage`s sent |
//! | `raft_messages_dropped_total` | counter | `to_store`, `reason` (`queue_full`, `unreachable`) | messages not sent |
//! | `raft_connection_failures_total` | counter | `to_store`, `kind` (`connect`, `stream`) | failed connection attempts and broken streams |
//! | `raft_messages_received_total` | counter | | raft messages received from other stores |
//! | `raft_messages_received_dropped_total` | counter | `reason` (`mailbox_full`, `not_running`) | received messages the store could not take |
//! | `raft_streams_refused_total` | counter | | incoming streams refused (messages for another store) |
//! | `kv_requests_total` | counter | `method` | client requests served |
//! | `kv_request_errors_total` | counter | `method`, `kind` | requests answered with a `region_error` (kind = the error detail; for `batch_commands`, each refused command) |
//! | `kv_request_duration_seconds` | histogram | `method` | time from a request's arrival to its answer |
//! | `kv_batched_commands_total` | counter | | commands carried by `BatchCommands` calls |

use metrics::{counter, Counter};

/// Describes every metric of this crate to the installed recorder (units
/// and help texts). Call it once after installing a recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        "raft_messages_sent_total",
        Unit::Count,
        "Raft messages sent to another store"
    );
    describe_counter!(
        "raft_message_bytes_sent_total",
        Unit::Bytes,
        "Encoded bytes of raft message batches sent to another store"
    );
    describe_counter!(
        "raft_message_batches_sent_total",
        Unit::Count,
        "Raft message batches sent to another store"
    );
    describe_counter!(
        "raft_messages_dropped_total",
        Unit::Count,
        "Raft messages dropped before sending (queue full or store unreachable)"
    );
    describe_counter!(
        "raft_connection_failures_total",
        Unit::Count,
        "Failed connection attempts and broken raft streams"
    );
    describe_counter!(
        "raft_messages_received_total",
        Unit::Count,
        "Raft messages received from other stores"
    );
    describe_counter!(
        "raft_messages_received_dropped_total",
        Unit::Count,
        "Received raft messages the store could not take"
    );
    describe_counter!(
        "raft_streams_refused_total",
        Unit::Count,
        "Incoming raft streams refused"
    );
    describe_counter!("kv_requests_total", Unit::Count, "Client requests served");
    describe_counter!(
        "kv_request_errors_total",
        Unit::Count,
        "Client requests answered with a region error"
    );
    describe_histogram!(
        "kv_request_duration_seconds",
        Unit::Seconds,
        "Time from a client request's arrival to its answer"
    );
}

/// The per-store metric handles of one connection (registered once, so
/// recording is an atomic add).
pub(crate) struct ConnMetrics {
    sent: Counter,
    bytes: Counter,
    batches: Counter,
    pub(crate) dropped_full: Counter,
    pub(crate) dropped_unreachable: Counter,
    pub(crate) connect_failures: Counter,
    pub(crate) stream_failures: Counter,
}

impl ConnMetrics {
    pub(crate) fn new(to_store: u64) -> ConnMetrics {
        let s = to_store.to_string();
        ConnMetrics {
            sent: counter!("raft_messages_sent_total", "to_store" => s.clone()),
            bytes: counter!("raft_message_bytes_sent_total", "to_store" => s.clone()),
            batches: counter!("raft_message_batches_sent_total", "to_store" => s.clone()),
            dropped_full: counter!("raft_messages_dropped_total", "to_store" => s.clone(), "reason" => "queue_full"),
            dropped_unreachable: counter!("raft_messages_dropped_total", "to_store" => s.clone(), "reason" => "unreachable"),
            connect_failures: counter!("raft_connection_failures_total", "to_store" => s.clone(), "kind" => "connect"),
            stream_failures: counter!("raft_connection_failures_total", "to_store" => s, "kind" => "stream"),
        }
    }

    pub(crate) fn record_batch(&self, messages: u64, bytes: u64) {
        self.sent.increment(messages);
        self.bytes.increment(bytes);
        self.batches.increment(1);
    }
}
