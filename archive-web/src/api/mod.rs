//! The JSON API under `/api/v1`, one module per group (`search`, `messages`, `archive`:
//! checkpoint, status, audit trail), described by `/api/v1/openapi.json` (utoipa).

pub(crate) mod archive;
pub(crate) mod messages;
pub(crate) mod search;

use std::sync::Arc;

use archive_core::search::Mailbox;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AppState;
use crate::error::ApiError;

/// Longest query string any API call reads (the search's `q` has its own, lower, bound).
pub const MAX_QUERY_STRING_BYTES: usize = 16 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mailvault JSON API",
        description = "Search and read the archive as the logged-in user sees it (docs/API.md)."
    ),
    servers((url = "/api/v1")),
    components(schemas(crate::error::ErrorBody)),
    tags(
        (name = "search", description = "The query language of docs/SEARCH.md"),
        (name = "messages", description = "One message by seq: metadata, raw bytes, attachments, inclusion proof"),
        (name = "integrity", description = "Checkpoint, status and the access trail"),
        (name = "session", description = "Password logins"),
    )
)]
struct ApiDoc;

/// The API routes (to be nested under `/api/v1`) and the OpenAPI document describing them.
pub fn router() -> Router<AppState> {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(search::search))
        .routes(routes!(messages::message))
        .routes(routes!(messages::raw))
        .routes(routes!(messages::attachment))
        .routes(routes!(messages::proof))
        .routes(routes!(archive::checkpoint))
        .routes(routes!(archive::status))
        .routes(routes!(archive::audit))
        .routes(routes!(crate::login::info))
        .split_for_parts();
    let document: Arc<str> = api.to_pretty_json().unwrap_or_else(|_| "{}".into()).into();
    router
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document.to_string()).into_response() }
            }),
        )
        .fallback(|| async { ApiError::no_such_path() })
}

/// Query parameters from a raw query string, with errors as JSON 400s (an unknown parameter
/// is an error too: a typo should not silently search something else).
fn params<T: serde::de::DeserializeOwned + Default>(raw: Option<&str>) -> Result<T, ApiError> {
    let Some(raw) = raw else {
        return Ok(T::default());
    };
    if raw.len() > MAX_QUERY_STRING_BYTES {
        return Err(ApiError::bad_request(format!(
            "the query string is {} bytes long; at most {MAX_QUERY_STRING_BYTES}",
            raw.len()
        )));
    }
    parse_query(raw)
}

/// A query string as `T`: every name and value must be UTF-8 once percent-decoded (serde's
/// decoder would put U+FFFD in place of what is not, and search for that), then as
/// serde_urlencoded reads it. For the API and the pages alike.
pub(crate) fn parse_query<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let not_utf8 = raw
        .split(['&', '=', ';'])
        .any(|piece| percent_encoding::percent_decode_str(piece).decode_utf8().is_err());
    if not_utf8 {
        return Err(ApiError::bad_request(
            "query string: a parameter is not UTF-8 once percent-decoded",
        ));
    }
    serde_urlencoded::from_str(raw).map_err(|e| ApiError::bad_request(format!("query string: {e}")))
}

/// Unix seconds as RFC 3339 UTC.
fn date_text(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

/// Microseconds since the epoch as RFC 3339 UTC.
fn time_text(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us).map_or_else(|_| us.to_string(), |t| t.to_string())
}

/// Where a hit's `date` comes from: `header`, or `received` for mail without a Date.
fn date_source(date_is_received: bool) -> String {
    match date_is_received {
        true => "received".into(),
        false => "header".into(),
    }
}

/// Mailboxes as `Name <address>` strings.
fn mailboxes(list: &[Mailbox]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}
