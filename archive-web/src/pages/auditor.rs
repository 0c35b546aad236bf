//! The auditors' pages: `/status` (auditors), `/audit` and `/users` (auditors of the whole
//! archive, as the API's trail: both name every user across all domains). Anyone else gets
//! the 404 page of a path that does not exist — the pages' existence is no one else's
//! business. The trail is read by the API's own code (with its `audit-read` record).

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use archive_core::access::listing::{list_users, UserSummary};
use archive_core::search::query::{Node, SizeOp};
use archive_core::search::{Query, SearchOptions};

use super::{error_page, html, not_found, size_text, url_encode, Page, Viewer};
use crate::api::archive::{status_of, trail, AuditLine, AuditParams, Status};
use crate::api::MAX_QUERY_STRING_BYTES;
use crate::auth::AppState;
use crate::error::{blocking, ApiError};

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    page: Page,
    messages: u64,
    status: Status,
    raw: String,
    disk_log: String,
    disk_index: String,
    disk_search: String,
    disk_total: String,
    ratio: Option<String>,
    per_message: Option<u64>,
}

/// `GET /status` (auditors).
pub async fn status(State(state): State<AppState>, viewer: Viewer) -> Response {
    let Viewer { caller, page } = viewer;
    if !caller.principal.may_read_status() {
        return not_found(&page);
    }
    let store = state.store.clone();
    let found = blocking(move || {
        // Every message in the auditor's scope: NOT (size < 0).
        let all = Query::from_node(Node::Not(Box::new(Node::Size(SizeOp::Smaller, 0))))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        // Counted exactly (the default stops counting at 10,000: a status page says how many).
        let options = SearchOptions {
            limit: 1,
            snippets: false,
            count_limit: None,
            ..SearchOptions::default()
        };
        let messages = store
            .search(&caller.principal, &all, &options)
            .map_err(ApiError::store)?
            .total;
        Ok((messages, status_of(&store)?))
    })
    .await;
    let (messages, status) = match found {
        Ok(f) => f,
        Err(e) => return error_page(&page, e),
    };
    html(
        StatusCode::OK,
        &StatusPage {
            page,
            messages,
            raw: size_text(status.raw_bytes),
            disk_log: size_text(status.log_bytes),
            disk_index: size_text(status.index_bytes),
            disk_search: size_text(status.search_bytes),
            disk_total: size_text(status.on_disk_bytes),
            ratio: status.on_disk_ratio.map(|r| format!("{r:.3}")),
            per_message: status.on_disk_bytes.checked_div(status.messages),
            status,
        },
    )
}

struct AuditRow {
    seq: u64,
    line: AuditLine,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    page: Page,
    user: String,
    action: String,
    since: String,
    until: String,
    rows: Vec<AuditRow>,
    next: Option<String>,
    error: Option<String>,
}

/// `GET /audit?user=&action=&since=&until=&cursor=` (auditors of the whole archive).
pub async fn audit(State(state): State<AppState>, viewer: Viewer, RawQuery(raw): RawQuery) -> Response {
    let Viewer { caller, page } = viewer;
    if !caller.principal.may_read_audit_trail() {
        return not_found(&page);
    }
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_QUERY_STRING_BYTES {
        return error_page(&page, ApiError::bad_request("the address is too long"));
    }
    // Empty fields of the filter form mean "any".
    let pairs: Vec<(String, String)> = match crate::api::parse_query::<Vec<(String, String)>>(&raw) {
        Ok(p) => p.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect(),
        Err(e) => return error_page(&page, e),
    };
    // A field given twice is refused, as the API refuses it: neither value silently wins.
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
        let e = ApiError::bad_request(format!("query string: duplicate field `{}`", twice[0]));
        return error_page(&page, e);
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let params = AuditParams {
        user: get("user"),
        action: get("action"),
        since: get("since"),
        until: get("until"),
        cursor: get("cursor"),
        limit: Some("100".into()),
    };
    let mut view = AuditPage {
        page,
        user: params.user.clone().unwrap_or_default(),
        action: params.action.clone().unwrap_or_default(),
        since: params.since.clone().unwrap_or_default(),
        until: params.until.clone().unwrap_or_default(),
        rows: Vec::new(),
        next: None,
        error: None,
    };
    match trail(&state, caller, params).await {
        Ok(found) => {
            view.rows = found
                .events
                .into_iter()
                .map(|line| AuditRow { seq: line.seq, line })
                .collect();
            view.next = found.next_cursor.map(|c| {
                let mut url = String::from("/audit?");
                for (name, value) in [
                    ("user", &view.user),
                    ("action", &view.action),
                    ("since", &view.since),
                    ("until", &view.until),
                ] {
                    if !value.is_empty() {
                        url.push_str(&format!("{name}={}&", url_encode(value)));
                    }
                }
                url.push_str(&format!("cursor={}", url_encode(&c)));
                url
            });
            html(StatusCode::OK, &view)
        }
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            view.error = Some(e.detail);
            html(StatusCode::BAD_REQUEST, &view)
        }
        Err(e) => error_page(&view.page, e),
    }
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    page: Page,
    users: Vec<UserSummary>,
}

/// `GET /users` (auditors of the whole archive): read-only.
pub async fn users(State(state): State<AppState>, viewer: Viewer) -> Response {
    let Viewer { caller, page } = viewer;
    if !caller.principal.may_read_audit_trail() {
        return not_found(&page);
    }
    let store = state.store.clone();
    let listed =
        blocking(move || list_users(&store.layout().dir, &caller.principal).map_err(ApiError::store)).await;
    match listed {
        Ok(users) => html(StatusCode::OK, &UsersPage { page, users }),
        Err(e) => error_page(&page, e),
    }
}
