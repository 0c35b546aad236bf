//! Logging in and out in the browser.

use super::{run_flow, site};

/// A wrong password shows `#login-error`; the right one lands on `/search` with an `HttpOnly`,
/// `SameSite=Strict` session cookie scripts cannot read; logging out lands on `/login`, and
/// the old cookie, brought back by another browser, opens nothing (page and API).
#[test]
fn login_and_logout() {
    let site = site(&[]);
    let result = run_flow("login", &site.base_url, &site.as_user("alice"));
    result.require(&[
        "login.search_without_session_goes_to_login",
        "login.wrong_password_error",
        "login.lands_on_search",
        "login.cookie_httponly",
        "login.cookie_samesite",
        "login.cookie_not_in_document_cookie",
        "login.logout_lands_on_login",
        "login.after_logout_search_goes_to_login",
        "login.old_cookie_page_goes_to_login",
        "login.old_cookie_refused",
        "login.no_outside_request",
    ]);
}
