//! Who is asking: the one extractor every API handler takes ([`Caller`]). A request carries
//! HTTP Basic credentials or a bearer token (scripts; checked by the store's `LoginGate`
//! on every request, like an IMAP login), or the session cookie of a login through
//! `POST /login` (people). Nothing here decides what the caller may see: that is the
//! [`Principal`]'s, in archive-core. A session is re-checked at every request through the same
//! gate ([`session_login`]): it follows its user's record in the users file as it is now.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use archive_core::access::{Authenticated, LoginGate, LoginRefused};
use archive_core::search::Principal;
use archive_core::Store;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tower_sessions::Session;

use crate::config::WebConfig;
use crate::error::{blocking, ApiError};
use crate::search_pool::SearchPool;
use crate::session::{LoggedIn, LOGGED_IN};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The archive.
    pub store: Arc<Store>,
    /// Logins, shared with the other front doors (one rate limit for all).
    pub gate: Arc<LoginGate>,
    /// `[web]`.
    pub config: Arc<WebConfig>,
    /// The threads searches run on.
    pub searches: Arc<SearchPool>,
}

/// The client's address, put into every request by the connection that carried it.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Longest `Authorization` header looked at.
const MAX_AUTHORIZATION_BYTES: usize = 4096;

/// A session's `seen_at` is refreshed (which moves its idle expiry) at most this often.
const SEEN_GRANULARITY_SECS: i64 = 60;

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The user's name (the audit trail's actor).
    pub user: String,
    /// What they may see.
    pub principal: Principal,
    /// Where the request came from.
    pub client: IpAddr,
}

/// The client address of a request.
pub fn client_of(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ClientAddr>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip())
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let client = client_of(parts);
        if let Some(value) = parts.headers.get(AUTHORIZATION) {
            if value.len() > MAX_AUTHORIZATION_BYTES {
                return Err(ApiError::bad_request("the Authorization header is too long"));
            }
            let text = value
                .to_str()
                .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?
                .to_string();
            return credentials(state, &text, client).await;
        }
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::unavailable("sessions are unavailable"))?;
        let Some(logged_in) = session_login(&session, state, client).await? else {
            return Err(ApiError::unauthorized(
                "log in (POST /login), or send HTTP Basic credentials or a bearer token",
            ));
        };
        Ok(Caller {
            user: logged_in.user,
            principal: logged_in.principal,
            client,
        })
    }
}

/// The session's login for a request, as [`logged_in`], re-checked against the users file as
/// it is now ([`LoginGate::recheck`]): the principal is the user's current one (a changed
/// scope applies at once); a user disabled since the login ends the session here (flushed,
/// `None`, and the gate's `login-failed` record with reason `session-disabled`), and enabling
/// them again does not bring it back. The idle expiry moves on at most once a minute.
pub async fn session_login(
    session: &Session,
    state: &AppState,
    client: IpAddr,
) -> Result<Option<LoggedIn>, ApiError> {
    let Some(mut current) = logged_in(session, state.config.session_max_secs).await else {
        return Ok(None);
    };
    let who = Authenticated {
        name: current.user.clone(),
        principal: current.principal.clone(),
    };
    let (store, gate) = (state.store.clone(), state.gate.clone());
    let now = blocking(move || Ok(gate.recheck(&store, &who, client, "web"))).await?;
    let now = match now {
        Ok(now) => now,
        Err(LoginRefused::Failed) => {
            let _ = session.flush().await;
            return Ok(None);
        }
        Err(refused) => return Err(ApiError::login(refused)),
    };
    let changed = now.principal != current.principal;
    current.principal = now.principal;
    let now_secs = now_secs();
    if changed || now_secs.saturating_sub(current.seen_at) >= SEEN_GRANULARITY_SECS {
        current.seen_at = now_secs;
        let _ = session.insert(LOGGED_IN, &current).await;
    }
    Ok(Some(current))
}

/// The session's login, if any and not past its absolute timeout (`max_secs` after the
/// login; a session past it is ended here). The idle timeout is the session cookie's and
/// store's expiry.
pub async fn logged_in(session: &Session, max_secs: u64) -> Option<LoggedIn> {
    let current = session.get::<LoggedIn>(LOGGED_IN).await.ok().flatten()?;
    if now_secs().saturating_sub(current.login_at) >= max_secs.min(i64::MAX as u64) as i64 {
        let _ = session.flush().await;
        return None;
    }
    Some(current)
}

/// Checks `Authorization: Basic …` or `Bearer …` through the login gate.
async fn credentials(state: &AppState, text: &str, client: IpAddr) -> Result<Caller, ApiError> {
    let (scheme, value) = text.trim().split_once(' ').unwrap_or((text, ""));
    let (store, gate) = (state.store.clone(), state.gate.clone());
    let value = value.trim().to_string();
    let who = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(&value)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::unauthorized("Basic credentials are not base64 of user:password"))?;
        let (user, password) = decoded
            .split_once(':')
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .ok_or_else(|| ApiError::unauthorized("Basic credentials are not user:password"))?;
        blocking(move || {
            gate.login(&store, &user, &password, client, "web")
                .map_err(ApiError::login)
        })
        .await?
    } else if scheme.eq_ignore_ascii_case("bearer") {
        blocking(move || {
            gate.login_token(&store, &value, client, "web")
                .map_err(ApiError::login)
        })
        .await?
    } else {
        return Err(ApiError::unauthorized(
            "unsupported Authorization scheme (Basic or Bearer)",
        ));
    };
    Ok(Caller {
        user: who.name,
        principal: who.principal,
        client,
    })
}
