//! Intake counters: cheap atomics, read as a snapshot for the shutdown log line, and the same
//! events recorded through the `metrics` facade for the admin listener's `/metrics` (a no-op
//! unless the binary installed a recorder). The facade's handles are registered once, at
//! start: counting a message is an atomic add, with no lookup, lock or allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Histogram};

use crate::session::Protocol;

/// Counter: messages by `protocol` and `result` (accepted; temporary: answered 4xx, the
/// sender retries; permanent: answered 5xx, the sender bounces).
pub const MESSAGES: &str = "mailvault_intake_messages_total";
/// Counter: message bytes archived, by `protocol`.
pub const BYTES: &str = "mailvault_intake_bytes_total";
/// Counter: sessions opened, by `protocol`.
pub const SESSIONS: &str = "mailvault_intake_sessions_total";
/// Histogram: seconds from a message's last byte to its 250 (durable and signed).
pub const ACK_SECONDS: &str = "mailvault_intake_ack_seconds";

/// Bucket bounds of [`ACK_SECONDS`]: a group commit takes one fsync (about a millisecond on
/// SSDs, tens on disks and network storage); beyond a few seconds a relay's timeout nears.
pub const ACK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Describes the metrics above (HELP text); call once after installing a recorder.
pub fn describe() {
    metrics::describe_counter!(
        MESSAGES,
        "Journaled messages by result: accepted (250), temporary (4xx: the relay retries), permanent (5xx: the relay bounces)."
    );
    metrics::describe_counter!(
        BYTES,
        metrics::Unit::Bytes,
        "Message bytes archived (of accepted messages)."
    );
    metrics::describe_counter!(SESSIONS, "Intake sessions opened.");
    metrics::describe_histogram!(
        ACK_SECONDS,
        metrics::Unit::Seconds,
        "Time from a message's last byte to its 250: the durable, signed append."
    );
}

/// Whose fault a refusal is, by the class of its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 4xx: the sender keeps the message and tries again.
    Temporary,
    /// 5xx: the sender bounces the message.
    Permanent,
}

/// Counters of one intake server.
#[derive(Debug)]
pub struct Metrics {
    /// Transactions archived (each answered 250).
    pub accepted: AtomicU64,
    /// Transactions refused or failed (4xx/5xx after DATA/BDAT, or refused recipients).
    pub rejected: AtomicU64,
    /// Message bytes archived.
    pub bytes: AtomicU64,
    /// Sessions opened.
    pub sessions: AtomicU64,
    /// The facade's handles, by protocol (SMTP, LMTP).
    exported: [Exported; 2],
}

#[derive(Debug)]
struct Exported {
    accepted: Counter,
    temporary: Counter,
    permanent: Counter,
    bytes: Counter,
    sessions: Counter,
    ack: Histogram,
}

impl Exported {
    fn new(protocol: Protocol) -> Exported {
        let p = protocol.name();
        Exported {
            accepted: metrics::counter!(MESSAGES, "protocol" => p, "result" => "accepted"),
            temporary: metrics::counter!(MESSAGES, "protocol" => p, "result" => "temporary"),
            permanent: metrics::counter!(MESSAGES, "protocol" => p, "result" => "permanent"),
            bytes: metrics::counter!(BYTES, "protocol" => p),
            sessions: metrics::counter!(SESSIONS, "protocol" => p),
            ack: metrics::histogram!(ACK_SECONDS),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            exported: [Exported::new(Protocol::Smtp), Exported::new(Protocol::Lmtp)],
        }
    }
}

/// A point-in-time copy of [`Metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    pub accepted: u64,
    pub rejected: u64,
    pub bytes: u64,
    pub sessions: u64,
}

impl Metrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
        }
    }

    fn of(&self, protocol: Protocol) -> &Exported {
        match protocol {
            Protocol::Smtp => &self.exported[0],
            Protocol::Lmtp => &self.exported[1],
        }
    }

    /// A message of `bytes` was archived and answered 250, `ack` after its last byte.
    pub(crate) fn accepted(&self, protocol: Protocol, bytes: u64, ack: Duration) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let e = self.of(protocol);
        e.accepted.increment(1);
        e.bytes.increment(bytes);
        e.ack.record(ack.as_secs_f64());
    }

    /// A message (or a recipient) was refused.
    pub(crate) fn rejected(&self, protocol: Protocol, refusal: Refusal) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let e = self.of(protocol);
        match refusal {
            Refusal::Temporary => e.temporary.increment(1),
            Refusal::Permanent => e.permanent.increment(1),
        }
    }

    /// A session was opened.
    pub(crate) fn session(&self, protocol: Protocol) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        self.of(protocol).sessions.increment(1);
    }
}
