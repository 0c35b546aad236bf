//! Intake counters: cheap atomics, read as a snapshot for logs and (later) a metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one intake server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Transactions archived (each answered 250).
    pub accepted: AtomicU64,
    /// Transactions refused or failed (4xx/5xx after DATA/BDAT, or refused recipients).
    pub rejected: AtomicU64,
    /// Message bytes archived.
    pub bytes: AtomicU64,
    /// Sessions opened.
    pub sessions: AtomicU64,
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

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
