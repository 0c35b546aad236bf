//! `POST /lang` (form `lang` = `en`|`de`, `back`, `csrf`): the language switch on every page.
//! The choice sticks in the `mv_lang` cookie (a year). The request must come from this site
//! (`Sec-Fetch-Site`/`Origin`, as every state-changing request) and, with a session, carry
//! its CSRF token; without a session (the login page) there is nothing but the cookie to
//! protect.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::{error_page, see_other, Page};
use crate::auth::{logged_in, AppState};
use crate::csrf;
use crate::error::ApiError;
use crate::i18n::{Lang, LANG_COOKIE};

#[derive(serde::Deserialize)]
pub struct LangForm {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    back: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /lang`.
pub async fn switch(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<LangForm>, FormRejection>,
) -> Response {
    let page = Page::anonymous(&headers);
    if let Err(e) = csrf::same_origin(&headers) {
        return error_page(&page, e);
    }
    let Form(form) = match form {
        Ok(f) => f,
        Err(e) => return error_page(&page, ApiError::form("language form", e)),
    };
    if let Some(current) = logged_in(&session, state.config.session_max_secs).await {
        if let Err(e) = csrf::check_token(&current.csrf, &form.csrf) {
            return error_page(&page, e);
        }
    }
    let Some(lang) = Lang::parse(&form.lang) else {
        return error_page(&page, ApiError::bad_request("lang must be en or de"));
    };
    let mut response = see_other(local_path(&form.back));
    let secure = if state.config.https() { "; Secure" } else { "" };
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly{secure}",
        lang.code()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response.into_response()
}

/// `back` if it is a path on this site, else the search page: the switch never sends anyone
/// elsewhere (`//host`, `/\host` and schemes are refused).
fn local_path(back: &str) -> &str {
    let local = back.starts_with('/')
        && !back.starts_with("//")
        && !back.starts_with("/\\")
        && back.len() <= 4096
        && !back.contains(|c: char| c.is_control());
    if local {
        back
    } else {
        "/search"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_returns_only_to_this_site() {
        assert_eq!(local_path("/search?q=a"), "/search?q=a");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "",
            "/x\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(local_path(bad), "/search", "{bad:?}");
        }
    }
}
