//! Logging in and out with a password, for people in a browser: the login gate (rate limit,
//! users file or pass-through, audit record), a fresh session id at every login (no session
//! fixation), and CSRF on both forms ([`crate::csrf`]).

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use tower_sessions::Session;

use crate::auth::{logged_in, now_secs, session_login, AppState, ClientAddr};
use crate::csrf::{self, LOGIN_COOKIE};
use crate::error::{blocking, ApiError};
use crate::pages::{see_other, Page};
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

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    page: Page,
    csrf: String,
    user: String,
    error: Option<String>,
}

/// The login form (status `status`, with `error` shown in `#login-error`), with a fresh CSRF
/// token in a cookie of its own and in the form.
fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    user: &str,
    error: Option<String>,
) -> Response {
    let page = Page::anonymous(headers);
    let token = match csrf::new_token() {
        Ok(t) => t,
        Err(e) => return crate::pages::error_page(&page, e),
    };
    let mut response = crate::pages::html(
        status,
        &LoginPage {
            page,
            csrf: token.clone(),
            user: user.chars().take(256).collect(),
            error,
        },
    );
    let secure = if state.config.https() { "; Secure" } else { "" };
    let cookie =
        format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /login`: the form; someone logged in already goes to the search.
pub async fn form(
    State(state): State<AppState>,
    session: Session,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Response {
    if let Ok(Some(_)) = session_login(&session, &state, client_ip(client)).await {
        return see_other("/search");
    }
    login_page(&state, &headers, StatusCode::OK, "", None)
}

/// `POST /login`: checks the form's origin and CSRF token, then the password through the
/// login gate; on success a new session (new id) and a redirect to `/search`. A refusal is
/// the form again with the reason (403, 401, 429 with `Retry-After`, 503).
pub async fn submit(
    State(state): State<AppState>,
    session: Session,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    match login(&state, &session, client, &headers, form).await {
        Ok(response) => response,
        Err((e, user)) => {
            let t = Page::anonymous(&headers).t;
            let message = match e.status {
                StatusCode::UNAUTHORIZED => t.login_failed.to_string(),
                StatusCode::TOO_MANY_REQUESTS => {
                    format!("{} {}", t.login_rate_limited, e.retry_after.unwrap_or(1))
                }
                StatusCode::FORBIDDEN => t.login_forbidden.to_string(),
                StatusCode::SERVICE_UNAVAILABLE => t.unavailable.to_string(),
                _ => e.detail.clone(),
            };
            let mut response = login_page(&state, &headers, e.status, &user, Some(message));
            if let Some(secs) = e.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    }
}

/// The login itself; a refusal with the user name that was tried (to fill the form again).
async fn login(
    state: &AppState,
    session: &Session,
    client: Option<axum::Extension<ClientAddr>>,
    headers: &HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, (ApiError, String)> {
    csrf::same_origin(headers).map_err(|e| (e, String::new()))?;
    let Form(form) = form.map_err(|e| (ApiError::form("login form", e), String::new()))?;
    let user = form.user.clone();
    csrf::check_token(
        csrf::cookie(headers, LOGIN_COOKIE).unwrap_or_default(),
        &form.csrf,
    )
    .map_err(|e| (e, user.clone()))?;
    let client = client_ip(client);
    let (store, gate) = (state.store.clone(), state.gate.clone());
    let who = blocking(move || {
        gate.login(&store, &form.user, &form.password, client, "web")
            .map_err(ApiError::login)
    })
    .await
    .map_err(|e| (e, user.clone()))?;
    let unavailable = || (ApiError::unavailable("sessions are unavailable"), user.clone());
    // Whatever session the browser brought (an attacker's planted id included) is not the
    // one that is logged in: a new id, no data carried over.
    session.clear().await;
    session.cycle_id().await.map_err(|_| unavailable())?;
    let now = now_secs();
    let logged_in = LoggedIn {
        user: who.name,
        principal: who.principal,
        login_at: now,
        seen_at: now,
        csrf: csrf::new_token().map_err(|e| (e, user.clone()))?,
    };
    session
        .insert(LOGGED_IN, &logged_in)
        .await
        .map_err(|_| unavailable())?;
    let mut response = see_other("/search");
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
) -> Result<Response, Response> {
    let page = Page::anonymous(&headers);
    let refuse = |e: ApiError| crate::pages::error_page(&page, e);
    csrf::same_origin(&headers).map_err(refuse)?;
    let Some(current) = logged_in(&session, state.config.session_max_secs).await else {
        return Err(refuse(ApiError::unauthorized("not logged in")));
    };
    let Form(form) = form.map_err(|e| refuse(ApiError::form("logout form", e)))?;
    csrf::check_token(&current.csrf, &form.csrf).map_err(refuse)?;
    session
        .flush()
        .await
        .map_err(|_| refuse(ApiError::unavailable("sessions are unavailable")))?;
    Ok(see_other("/login"))
}

/// `GET /`: the search for someone logged in, else the login form.
pub async fn home(
    State(state): State<AppState>,
    session: Session,
    client: Option<axum::Extension<ClientAddr>>,
) -> Response {
    match session_login(&session, &state, client_ip(client)).await {
        Ok(Some(_)) => see_other("/search"),
        _ => see_other("/login"),
    }
}

/// The client's address (loopback when the connection did not say).
fn client_ip(client: Option<axum::Extension<ClientAddr>>) -> std::net::IpAddr {
    client.map_or(std::net::Ipv4Addr::LOCALHOST.into(), |c| c.0 .0.ip())
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
pub async fn info(
    State(state): State<AppState>,
    session: Session,
    client: Option<axum::Extension<ClientAddr>>,
) -> Result<Json<SessionInfo>, ApiError> {
    let Some(current) = session_login(&session, &state, client_ip(client)).await? else {
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
