//! `GET /api/v1/checkpoint` (the newest signed checkpoint, as `mailvault checkpoint` prints
//! it), `GET /api/v1/status` (auditors: counts, sizes on disk, index lag, the store's health) and
//! `GET /api/v1/audit` (auditors of the whole archive: the access trail, paged, as
//! `mailvault audit --json` lists it).

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use archive_core::audit::trail::{page, parse_time, TrailFilter};
use archive_core::audit::{query_text, AuditEvent};
use archive_core::log::reader::LogReader;
use archive_core::status::last_verify;

use super::{date_text, params, time_text};
use crate::auth::{AppState, Caller};
use crate::error::{blocking, ApiError};

/// The newest signed checkpoint (C2SP signed note): what proofs lead to.
#[utoipa::path(get, path = "/checkpoint", tag = "integrity",
    responses(
        (status = 200, content_type = "text/plain", description = "the signed note"),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn checkpoint(State(state): State<AppState>, _caller: Caller) -> Result<Response, ApiError> {
    let (_, signed) = state
        .store
        .latest_checkpoint()
        .ok_or_else(|| ApiError::unavailable("the log has no checkpoint yet"))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], signed.note).into_response())
}

/// The archive's state.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Status {
    /// Distinct messages in the archive (the search index's; whoever asks).
    pub messages: u64,
    /// Their raw bytes (each distinct message once).
    pub raw_bytes: u64,
    /// Bytes on disk: the log plus the key-value index and the tree cache (as
    /// `mailvault status` counts them; the search index is `search_bytes`).
    pub on_disk_bytes: u64,
    /// `on_disk_bytes / raw_bytes`; absent while the archive holds no message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_disk_ratio: Option<f64>,
    /// The log's files.
    pub log_bytes: u64,
    /// The key-value index and the tree cache.
    pub index_bytes: u64,
    /// The full-text index (derived, rebuilt by `mailvault reindex`).
    pub search_bytes: u64,
    /// The search index's seq the message counts and sizes are from (the sizes are taken at
    /// most 10 s before the answer).
    pub sizes_as_of_seq: u64,
    /// Seq of the newest record.
    pub last_seq: u64,
    /// Seq the search index has applied.
    pub search_indexed_seq: u64,
    /// Durable records not searchable yet.
    pub search_lag_records: u64,
    /// Seq of the newest signed checkpoint record (0 if none).
    pub checkpoint_seq: u64,
    /// Tree size of the newest signed checkpoint.
    pub checkpoint_size: u64,
    /// Records not under a signed checkpoint yet.
    pub unsigned_records: u64,
    /// The last `mailvault verify` run on this data directory; absent if none is recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verify: Option<LastVerify>,
    /// Why the store cannot take mail now, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trouble: Option<String>,
}

/// What the last `mailvault verify` found.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LastVerify {
    /// When it finished (RFC 3339, UTC).
    pub finished: String,
    /// `intact`, `tampered` or `unsigned`.
    pub result: String,
    /// Whether the log verified intact.
    pub intact: bool,
    /// Records checked.
    pub records: u64,
}

/// The archive's state (auditors).
#[utoipa::path(get, path = "/status", tag = "integrity",
    responses(
        (status = 200, body = Status),
        (status = 403, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn status(State(state): State<AppState>, caller: Caller) -> Result<Json<Status>, ApiError> {
    if !caller.principal.may_read_status() {
        return Err(ApiError::forbidden("the archive's status is for auditors"));
    }
    let store = state.store.clone();
    blocking(move || Ok(Json(status_of(&store)?))).await
}

/// The store's counters, sizes and health (may block briefly: run it on a blocking thread).
pub(crate) fn status_of(store: &archive_core::Store) -> Result<Status, ApiError> {
    let stats = store.stats();
    let health = store.health();
    let disk = store.on_disk().map_err(ApiError::store)?;
    let checkpoint = store.latest_checkpoint();
    Ok(Status {
        messages: disk.messages,
        raw_bytes: disk.raw_bytes,
        on_disk_bytes: disk.on_disk_bytes,
        on_disk_ratio: disk.ratio,
        log_bytes: disk.usage.log_bytes,
        index_bytes: disk.usage.index_bytes,
        search_bytes: disk.usage.search_bytes,
        sizes_as_of_seq: disk.as_of_seq,
        last_seq: stats.last_seq,
        search_indexed_seq: stats.search_indexed_seq,
        search_lag_records: health.search_lag_records,
        checkpoint_seq: checkpoint.as_ref().map_or(0, |(seq, _)| *seq),
        checkpoint_size: checkpoint.map_or(0, |(_, c)| c.checkpoint.size),
        unsigned_records: health.unsigned_records,
        last_verify: last_verify(store.layout()).map(|v| LastVerify {
            finished: date_text(v.finished.min(i64::MAX as u64) as i64),
            result: v.result,
            intact: v.intact,
            records: v.records,
        }),
        trouble: health.trouble,
    })
}

/// Most events a page may hold.
pub const MAX_AUDIT_LIMIT: usize = 500;

/// A page of the access trail.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Events in log order.
    pub events: Vec<AuditLine>,
    /// `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One event, as `mailvault audit --json` prints it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditLine {
    /// The audit record's seq.
    pub seq: u64,
    /// The record's time (RFC 3339, UTC).
    pub time: String,
    /// Who.
    pub actor: String,
    /// What (`login`, `search`, `view`, …; docs/FORMAT.md §audit).
    pub action: String,
    /// On what.
    pub target: String,
    /// From where.
    pub origin: String,
    /// When it happened, for an event that reached the log later (through the spool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// The trail's filters and page, as sent.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    pub user: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

/// The access trail (auditors of the whole archive), oldest first.
#[utoipa::path(get, path = "/audit", tag = "integrity",
    params(
        ("user" = Option<String>, Query, description = "Only this actor, exactly"),
        ("action" = Option<String>, Query, description = "Only this action, exactly"),
        ("since" = Option<String>, Query, description = "At or after: YYYY-MM-DD or RFC 3339"),
        ("until" = Option<String>, Query, description = "Before: YYYY-MM-DD (through that day) or RFC 3339"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<usize>, Query, description = "Events per page, 1..=500 (default 100)"),
    ),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<AuditPage>, ApiError> {
    if !caller.principal.may_read_audit_trail() {
        return Err(ApiError::forbidden(
            "the access trail is for auditors of the whole archive",
        ));
    }
    let p: AuditParams = params(raw.as_deref())?;
    Ok(Json(trail(&state, caller, p).await?))
}

/// Records of the log one page of the trail looks at, at most: a filter that matches little
/// gives pages with fewer events (maybe none) and a `next_cursor` that goes on from there,
/// rather than one request that reads the whole log.
const TRAIL_PAGE_RECORDS: usize = 200_000;

/// Time one page of the trail may take.
const TRAIL_PAGE_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// A page of the trail for `caller` (an auditor of the whole archive: checked by the
/// handlers first), after its `audit-read` record. Shared by the API and the audit page.
pub(crate) async fn trail(state: &AppState, caller: Caller, p: AuditParams) -> Result<AuditPage, ApiError> {
    let time = |value: &Option<String>, name: &str, end: bool| -> Result<Option<i64>, ApiError> {
        value
            .as_deref()
            .map(|v| parse_time(v, end).map_err(|e| ApiError::bad_request(format!("{name}: {e}"))))
            .transpose()
    };
    let filter = TrailFilter {
        since_us: time(&p.since, "since", false)?,
        until_us: time(&p.until, "until", true)?,
        actor: p.user.clone(),
        action: p.action.clone(),
    };
    let from = match p.cursor.as_deref() {
        None => 1,
        Some(c) => c
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| ApiError::bad_request("cursor is not one this listing returned"))?,
    };
    let limit = match p.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_AUDIT_LIMIT).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 1..={MAX_AUDIT_LIMIT}")))?,
    };
    let mut target = String::from("web");
    for (name, value) in [
        ("since", &p.since),
        ("until", &p.until),
        ("user", &p.user),
        ("action", &p.action),
    ] {
        if let Some(v) = value {
            target.push_str(&format!(" {name} {}", query_text(v)));
        }
    }
    let store = state.store.clone();
    blocking(move || {
        // Reading the trail is an access of its own, as `mailvault audit`'s `audit-read`.
        let event = AuditEvent::new(&caller.user, "audit-read", target, &caller.client.to_string());
        store.append_audit(&event).map_err(ApiError::store)?;
        let log = LogReader::open(&store.layout().log_dir).map_err(ApiError::store)?;
        let deadline = std::time::Instant::now() + TRAIL_PAGE_TIME;
        let page = page(&log, from, &filter, limit, TRAIL_PAGE_RECORDS, deadline).map_err(ApiError::store)?;
        let lines = page
            .entries
            .into_iter()
            .map(|entry| AuditLine {
                seq: entry.seq,
                time: time_text(entry.time_us),
                actor: entry.event.actor,
                action: entry.event.action,
                target: entry.event.target,
                origin: entry.event.origin,
                at: entry.event.at,
            })
            .collect();
        Ok(AuditPage {
            events: lines,
            next_cursor: page.next.map(|seq| seq.to_string()),
        })
    })
    .await
}
