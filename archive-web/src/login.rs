//! Logging in and out with a password, for people in a browser. Minimal server-rendered
//! pages for now (the real ones come with the search UI); the checks are final: the login
//! gate (rate limit, users file or pass-through, audit record), a fresh session id at every
//! login (no session fixation), and CSRF on both forms ([`crate::csrf`]).

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tower_sessions::Session;

use crate::auth::{logged_in, now_secs, AppState, ClientAddr};
use crate::csrf::{self, LOGIN_COOKIE};
use crate::error::{blocking, ApiError};
use crate::session::{LoggedIn, LOGGED_IN};

/// The login form as posted.
#[derive(serde::Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

/// The logout form as posted.
#[derive(serde::Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// Security headers of the pages: nothing loads from anywhere, nothing frames them.
const PAGE_CSP: &str = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · mailvault</title></head>\n<body>\n<h1>{title}</h1>\n{body}\n</body></html>\n"
    );
    let mut response = (status, html).into_response();
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

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// Only characters that need no escaping in HTML reach a page (tokens are URL-safe base64);
/// user names are escaped.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// `GET /login`: the form, with a fresh CSRF token in a cookie of its own and in the form.
pub async fn form(State(state): State<AppState>) -> Result<Response, ApiError> {
    let token = csrf::new_token()?;
    let body = format!(
        "<form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\n\
         <p><label>User <input name=\"user\" autocomplete=\"username\" required autofocus></label></p>\n\
         <p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\n\
         <p><button type=\"submit\">Log in</button></p>\n</form>"
    );
    let mut response = page(StatusCode::OK, "Log in", &body);
    let secure = if state.config.https() { "; Secure" } else { "" };
    let cookie =
        format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /login`: checks the form's origin and CSRF token, then the password through the
/// login gate; on success a new session (new id) and a redirect to `/`.
pub async fn submit(
    State(state): State<AppState>,
    session: Session,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, ApiError> {
    csrf::same_origin(&headers)?;
    let Form(form) = form.map_err(|e| ApiError::form("login form", e))?;
    csrf::check_token(
        csrf::cookie(&headers, LOGIN_COOKIE).unwrap_or_default(),
        &form.csrf,
    )?;
    let client = client.map_or(std::net::Ipv4Addr::LOCALHOST.into(), |c| c.0 .0.ip());
    let (store, gate) = (state.store.clone(), state.gate.clone());
    let who = blocking(move || {
        gate.login(&store, &form.user, &form.password, client, "web")
            .map_err(ApiError::login)
    })
    .await?;
    // Whatever session the browser brought (an attacker's planted id included) is not the
    // one that is logged in: a new id, no data carried over.
    session.clear().await;
    session
        .cycle_id()
        .await
        .map_err(|_| ApiError::unavailable("sessions are unavailable"))?;
    let now = now_secs();
    let logged_in = LoggedIn {
        user: who.name,
        principal: who.principal,
        login_at: now,
        seen_at: now,
        csrf: csrf::new_token()?,
    };
    session
        .insert(LOGGED_IN, &logged_in)
        .await
        .map_err(|_| ApiError::unavailable("sessions are unavailable"))?;
    let mut response = see_other("/");
    let secure = if state.config.https() { "; Secure" } else { "" };
    let expired = format!("{LOGIN_COOKIE}=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /logout`: ends the session (origin and the session's CSRF token checked first).
pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Result<Response, ApiError> {
    csrf::same_origin(&headers)?;
    let Some(current) = logged_in(&session, state.config.session_max_secs).await else {
        return Err(ApiError::unauthorized("not logged in"));
    };
    let Form(form) = form.map_err(|e| ApiError::form("logout form", e))?;
    csrf::check_token(&current.csrf, &form.csrf)?;
    session
        .flush()
        .await
        .map_err(|_| ApiError::unavailable("sessions are unavailable"))?;
    Ok(see_other("/login"))
}

/// `GET /`: who is logged in, and the logout form; without a session, the way to log in.
pub async fn home(State(state): State<AppState>, session: Session) -> Response {
    let Some(current) = logged_in(&session, state.config.session_max_secs).await else {
        return see_other("/login");
    };
    let body = format!(
        "<p>Logged in as <strong>{}</strong>. The search pages come next; the JSON API is at \
         <a href=\"/api/v1/openapi.json\">/api/v1</a>.</p>\n\
         <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Log out</button></form>",
        escape(&current.user),
        current.csrf
    );
    page(StatusCode::OK, "mailvault", &body)
}

/// The session as `GET /api/v1/session` shows it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// The user's name.
    pub user: String,
    /// `user` or `auditor`.
    pub role: String,
    /// The token state-changing requests of this session send back (form field `csrf`).
    pub csrf: String,
    /// When the session ends at the latest, Unix seconds.
    pub ends_at: i64,
}

/// `GET /api/v1/session`: the session's user and CSRF token (for scripts and pages that
/// log in with a password and then post).
#[utoipa::path(get, path = "/session", tag = "session",
    responses((status = 200, body = SessionInfo), (status = 401, body = crate::error::ErrorBody)))]
pub async fn info(State(state): State<AppState>, session: Session) -> Result<Json<SessionInfo>, ApiError> {
    let Some(current) = logged_in(&session, state.config.session_max_secs).await else {
        return Err(ApiError::unauthorized("not logged in with a session"));
    };
    let role = match current.principal {
        archive_core::search::Principal::User { .. } => "user",
        archive_core::search::Principal::Auditor { .. } => "auditor",
    };
    Ok(Json(SessionInfo {
        user: current.user,
        role: role.into(),
        csrf: current.csrf,
        ends_at: current
            .login_at
            .saturating_add(state.config.session_max_secs as i64),
    }))
}
