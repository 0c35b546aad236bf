//! The server-rendered pages for people (docs/WEB.md): search, message, the auditors' status,
//! access trail and users, and the page a link in a message leads to. Templates are askama's
//! (compiled, escaped by default; `templates/`), words come from [`crate::i18n`], and the one
//! style sheet and script are our own (`static/`). Everything works without JavaScript.
//!
//! One module per page group: `search`, `message` (with `html_body`: the sandboxed HTML view
//! and `/out`), `auditor`; `lang` the language switch, `assets` the static files. Downloads
//! (raw message, attachments) are the JSON API's handlers mounted here too, so they carry the
//! same headers and write the same audit records. Pages read through the same store calls as
//! the API; no access decision is made here.

mod assets;
mod auditor;
pub mod criteria;
mod export;
mod html_body;
mod lang;
mod message;
mod search;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_sessions::Session;

use crate::auth::{client_of, session_login, AppState, Caller};
use crate::error::ApiError;
use crate::i18n::{Lang, Text};

/// The pages' Content-Security-Policy: our own script, style and frames only; nothing else
/// loads, nothing frames a page, forms post only here.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Longest request target a page links back to (the language switch's `back`).
const MAX_BACK_BYTES: usize = 4096;

/// What every page's layout shows: language, words, who is logged in.
#[derive(Clone)]
pub struct Page {
    /// The page's language.
    pub lang: &'static str,
    /// Its words.
    pub t: &'static Text,
    /// The logged-in user's name, if any.
    pub user: Option<String>,
    /// The session's CSRF token (empty without a session).
    pub csrf: String,
    /// An auditor: the status page is in the menu.
    pub auditor: bool,
    /// An auditor of the whole archive: the trail and the users too.
    pub auditor_all: bool,
    /// Where the language switch returns to (a local path).
    pub here: String,
    /// The style sheet's URL (versioned by content).
    pub css: &'static str,
    /// The script's URL (versioned by content).
    pub js: &'static str,
}

impl Page {
    /// The layout for someone not logged in.
    pub fn anonymous(headers: &HeaderMap) -> Page {
        let lang = Lang::of(headers);
        Page {
            lang: lang.code(),
            t: lang.text(),
            user: None,
            csrf: String::new(),
            auditor: false,
            auditor_all: false,
            here: "/search".into(),
            css: assets::css_url(),
            js: assets::js_url(),
        }
    }
}

/// A logged-in person asking for a page (session cookie): who, and their page layout. Without
/// a session, a redirect to the login form.
pub struct Viewer {
    /// The caller, as the API's handlers see one.
    pub caller: Caller,
    /// The layout.
    pub page: Page,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Viewer, Response> {
        let mut page = Page::anonymous(&parts.headers);
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| error_page(&page, ApiError::unavailable("sessions are unavailable")))?;
        let login = session_login(&session, state, client_of(parts))
            .await
            .map_err(|e| error_page(&page, e))?;
        let Some(login) = login else {
            return Err(see_other("/login"));
        };
        page.user = Some(login.user.clone());
        page.csrf = login.csrf.clone();
        page.auditor = login.principal.may_read_status();
        page.auditor_all = login.principal.may_read_audit_trail();
        let target = parts.uri.path_and_query().map_or("/search", |p| p.as_str());
        if target.len() <= MAX_BACK_BYTES {
            page.here = target.to_string();
        }
        Ok(Viewer {
            caller: Caller {
                user: login.user,
                principal: login.principal,
                client: client_of(parts),
            },
            page,
        })
    }
}

/// The page routes (the API is nested beside them).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/search", get(search::page))
        .route("/messages/{seq}", get(message::page))
        .route("/messages/{seq}/html", get(html_body::document))
        .route("/messages/{seq}/raw", get(crate::api::messages::raw))
        .route(
            "/messages/{seq}/attachments/{n}",
            get(crate::api::messages::attachment),
        )
        .route("/out", get(html_body::out))
        .route("/export", post(export::bundle))
        .route("/status", get(auditor::status))
        .route("/audit", get(auditor::audit))
        .route("/users", get(auditor::users))
        .route("/lang", post(lang::switch))
        .route("/static/{file}", get(assets::file))
}

/// A rendered page with the pages' headers.
pub fn html(status: StatusCode, template: &impl Template) -> Response {
    let body = match template.render() {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "web: a page did not render");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response();
        }
    };
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `303 See Other` to a local path.
pub fn see_other(to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/search"));
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    page: &'a Page,
    title: &'a str,
    detail: &'a str,
}

/// An error as a page: a 404 says only "not found" (the same for a missing message, one
/// outside the viewer's scope and a page they may not see), others say what went wrong.
pub fn error_page(page: &Page, e: ApiError) -> Response {
    let t = page.t;
    // Error pages link the language switch back to the search, so they do not depend on
    // the path that was asked for: a missing page and a hidden one are the same bytes.
    let page = Page {
        here: "/search".into(),
        ..page.clone()
    };
    let (title, detail) = match e.status {
        StatusCode::NOT_FOUND => (t.not_found_title, t.not_found.to_string()),
        StatusCode::SERVICE_UNAVAILABLE if e.error == "unavailable" => {
            (t.error_title, t.unavailable.to_string())
        }
        s if s.is_client_error() => (t.bad_request_title, t.say(&e)),
        _ => (t.error_title, t.say(&e)),
    };
    let mut response = html(
        e.status,
        &ErrorPage {
            page: &page,
            title,
            detail: &detail,
        },
    );
    if let Some(secs) = e.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The 404 page of a path no route has (and of the pages the viewer may not see).
pub fn not_found(page: &Page) -> Response {
    error_page(page, ApiError::not_found("no such page"))
}

/// The fallback for paths outside the API: the 404 page, with the viewer's menu when they
/// are logged in.
pub async fn fallback(viewer: Result<Viewer, Response>, headers: HeaderMap) -> Response {
    match viewer {
        Ok(v) => not_found(&v.page),
        Err(_) => not_found(&Page::anonymous(&headers)),
    }
}

/// An error that axum made rather than a page handler (a path segment that is not UTF-8, a
/// method the path does not take), shown as an error page like every other. The JSON errors
/// of the downloads the pages share with the API stay as they are.
pub async fn page_errors(headers: HeaderMap, response: Response) -> Response {
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE);
    let made_by_axum = content_type.is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !made_by_axum {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let detail = crate::error::reason_of(status, response.into_body()).await;
    let e = ApiError {
        status,
        ..ApiError::bad_request(detail)
    };
    let mut page = error_page(&Page::anonymous(&headers), e);
    if let Some(allow) = allow {
        page.headers_mut().insert(header::ALLOW, allow);
    }
    page
}

/// Human-readable bytes (1024-based, as mail clients count).
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Unix seconds as `YYYY-MM-DD HH:MM` UTC.
pub fn date_text(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map_or_else(|_| secs.to_string(), |t| t.strftime("%Y-%m-%d %H:%M").to_string())
}

/// Microseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time_text(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us).map_or_else(
        |_| us.to_string(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// HTML-escapes `text` (for the few strings built outside templates).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What stays as it is when percent-encoded: RFC 3986's unreserved characters. Safe in a
/// query string value and in an RFC 5987 `filename*` alike.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `text` for a query string value.
pub fn url_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}
