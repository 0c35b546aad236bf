//! Cross-site request checks for every state-changing request (login, logout and
//! export): the request must not come from another site — `Sec-Fetch-Site` (sent by every
//! current browser) must be `same-origin` or `none` and `Origin`, if sent, must name this
//! host — and it must carry the per-session token (for the login form, which has no session
//! yet, the token of the form's own cookie). Either check alone would do against today's
//! browsers; both guard against the day one of them is missing.

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::ApiError;

/// The login form's CSRF cookie (double submit: the form field must equal it).
pub const LOGIN_COOKIE: &str = "mailvault_login_csrf";

/// A fresh random token (256 bits).
pub fn new_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| ApiError::unavailable("no random bytes for a CSRF token"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Refuses a request that says it comes from another site.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        if !matches!(site, "same-origin" | "none") {
            return Err(ApiError::forbidden(format!(
                "cross-site request refused (Sec-Fetch-Site: {site})"
            )));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or_default();
        if host.is_empty() || !authority.eq_ignore_ascii_case(host) {
            return Err(ApiError::forbidden("cross-site request refused (Origin)"));
        }
    }
    Ok(())
}

/// Checks a token sent back against the expected one, in time independent of where they
/// differ.
pub fn check_token(expected: &str, given: &str) -> Result<(), ApiError> {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let differ = a.len() != b.len() || a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0;
    if expected.is_empty() || differ {
        return Err(ApiError::forbidden("missing or wrong CSRF token"));
    }
    Ok(())
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn other_sites_are_refused_and_this_one_passes() {
        assert!(same_origin(&headers(&[("host", "a.example:8080")])).is_ok());
        assert!(same_origin(&headers(&[
            ("host", "a.example:8080"),
            ("origin", "https://a.example:8080"),
            ("sec-fetch-site", "same-origin")
        ]))
        .is_ok());
        for bad in [
            &[("host", "a.example"), ("origin", "https://evil.example")][..],
            &[("host", "a.example"), ("origin", "null")],
            &[("host", "a.example"), ("sec-fetch-site", "cross-site")],
            &[("host", "a.example"), ("sec-fetch-site", "same-site")],
        ] {
            assert_eq!(same_origin(&headers(bad)).unwrap_err().status, 403, "{bad:?}");
        }
    }

    #[test]
    fn tokens_must_match_exactly() {
        assert!(check_token("abc", "abc").is_ok());
        assert!(check_token("abc", "abd").is_err());
        assert!(check_token("abc", "ab").is_err());
        assert!(check_token("", "").is_err());
        let h = headers(&[("cookie", "a=1; mailvault_login_csrf=xyz; b=2")]);
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("xyz"));
    }
}
