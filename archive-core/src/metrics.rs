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
/// Counter: frames of evicted segments found in the local range cache and checked.
pub const RANGE_CACHE_HITS: &str = "mailvault_range_cache_hits_total";
/// Counter: frames of evicted segments not in the range cache (fetched).
pub const RANGE_CACHE_MISSES: &str = "mailvault_range_cache_misses_total";
/// Counter: cached frames that failed their check, discarded and fetched again.
pub const RANGE_CACHE_DISCARDED: &str = "mailvault_range_cache_discarded_total";
/// Counter: range reads sent to object storage for evicted segments.
pub const REMOTE_FETCHES: &str = "mailvault_remote_fetches_total";
/// Counter: bytes those range reads brought.
pub const REMOTE_FETCHED_BYTES: &str = "mailvault_remote_fetched_bytes_total";

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
    metrics::describe_counter!(
        RANGE_CACHE_HITS,
        "Frames of evicted segments read from the local range cache (checked before use)."
    );
    metrics::describe_counter!(
        RANGE_CACHE_MISSES,
        "Frames of evicted segments not in the local range cache."
    );
    metrics::describe_counter!(
        RANGE_CACHE_DISCARDED,
        "Cached frames of evicted segments that failed their check: discarded and fetched again."
    );
    metrics::describe_counter!(
        REMOTE_FETCHES,
        "Range reads of evicted segments from object storage."
    );
    metrics::describe_counter!(
        REMOTE_FETCHED_BYTES,
        metrics::Unit::Bytes,
        "Bytes read from object storage for evicted segments."
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
