//! What the store and the login gate record through the `metrics` facade, by name. The
//! facade does nothing until a recorder is installed (the binary does so for `serve` when its
//! admin listener is on), so the library costs nothing in tools and tests that record nothing.
//!
//! Only events are recorded here, where they happen; state that is cheap to read (checkpoint
//! age, index lag, sessions open, disk free) is read when metrics are scraped.

/// Histogram: seconds one group-commit fsync of the active segment took.
pub const FSYNC_SECONDS: &str = "mailvault_store_fsync_seconds";
/// Histogram: records one group-commit fsync made durable (the batch size).
pub const COMMIT_RECORDS: &str = "mailvault_store_commit_records";
/// Counter: logins refused by the login gate, labelled `door` (imap, smtp, lmtp, web, other)
/// and `reason` (failed: wrong password, unknown or disabled user; rate_limited;
/// unavailable: the users file or the upstream could not be asked, or the audit record not
/// written).
pub const LOGIN_FAILURES: &str = "mailvault_login_failures_total";

/// Describes the metrics above (HELP text); call once after installing a recorder.
pub fn describe() {
    metrics::describe_histogram!(
        FSYNC_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one group-commit fsync of the log's active segment."
    );
    metrics::describe_histogram!(
        COMMIT_RECORDS,
        "Records made durable by one group-commit fsync (batch size)."
    );
    metrics::describe_counter!(
        LOGIN_FAILURES,
        "Logins refused by the login gate, by front door and reason."
    );
}

/// A front door's name as a label value: a fixed set, whatever a caller passes.
pub(crate) fn door_label(door: &str) -> &'static str {
    match door {
        "imap" => "imap",
        "smtp" => "smtp",
        "lmtp" => "lmtp",
        "web" => "web",
        _ => "other",
    }
}
