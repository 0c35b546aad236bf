//! Login and logout pages, the language switch: CSRF, errors, what sticks.

use super::*;

#[test]
fn login_logout_and_the_language_switch() {
    let a = scope_archive();
    let mut web = a.browser();

    // Not logged in: every page leads to the login form.
    for path in ["/", "/search", "/messages/3", "/status"] {
        let away = web.get(path);
        assert_eq!(
            (away.status, away.header("location")),
            (303, Some("/login")),
            "{path}"
        );
    }
    let form = web.get("/login");
    assert_eq!(form.status, 200);
    let html = form.text();
    assert!(html.contains("<html lang=\"en\""), "{html}");
    assert!(html.contains("<form id=\"login\""));
    assert!(html.contains("name=\"user\"") && html.contains("name=\"password\""));
    assert_eq!(
        form.header("content-security-policy"),
        Some(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    );
    // `same-origin`: under `no-referrer` Chromium would post this form with `Origin: null`.
    assert_eq!(form.header("referrer-policy"), Some("same-origin"));
    assert_safe_html(&html, Kind::Page, "login page");

    // A wrong password: the form again, 401, with the reason.
    let csrf = login_token(&html);
    let wrong = web.post(
        "/login",
        &[("user", "alice"), ("password", "nope"), ("csrf", &csrf)],
        &[],
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("id=\"login-error\""), "{}", wrong.text());
    assert!(wrong.cookie("mailvault_session").is_none());
    // A forged token: 403.
    let forged = web.post(
        "/login",
        &[("user", "alice"), ("password", PASSWORD), ("csrf", "forged")],
        &[],
    );
    assert_eq!(forged.status, 403);
    assert!(forged.text().contains("id=\"login-error\""));

    // The real login goes to the search, which names the user and has the logout form.
    let token = web.login("alice");
    let search = web.get("/search").text();
    assert!(search.contains("<strong>alice</strong>"));
    assert!(search.contains("<form id=\"logout\""));
    assert!(search.contains("<main id=\"main\""));
    assert_eq!(web.get("/").header("location"), Some("/search"));

    // The language: Accept-Language first, then the switch, which sticks in mv_lang.
    web.extra
        .push(("accept-language".into(), "de-DE,de;q=0.9,en;q=0.5".into()));
    let german = web.get("/search").text();
    assert!(german.contains("<html lang=\"de\""), "{german}");
    assert!(german.contains("Archiv durchsuchen"));
    // The switch needs the session's token and this site.
    assert_eq!(
        web.post(
            "/lang",
            &[("lang", "en"), ("back", "/search"), ("csrf", "x")],
            &[]
        )
        .status,
        403
    );
    assert_eq!(
        web.post(
            "/lang",
            &[("lang", "en"), ("back", "/search"), ("csrf", &token)],
            &[("origin", "http://evil.example")]
        )
        .status,
        403
    );
    let switched = web.post(
        "/lang",
        &[("lang", "en"), ("back", "/search?q=invoice"), ("csrf", &token)],
        &[],
    );
    assert_eq!(switched.status, 303);
    assert_eq!(switched.header("location"), Some("/search?q=invoice"));
    assert_eq!(switched.cookie("mv_lang").as_deref(), Some("en"));
    let english = web.get("/search").text();
    assert!(
        english.contains("<html lang=\"en\""),
        "the cookie wins over Accept-Language"
    );
    // Never sent elsewhere.
    let away = web.post(
        "/lang",
        &[("lang", "de"), ("back", "//evil.example/"), ("csrf", &token)],
        &[],
    );
    assert_eq!(away.header("location"), Some("/search"));
    assert!(web.get("/search").text().contains("<html lang=\"de\""));

    // Logout: the session's token is needed; then the session is over.
    assert_eq!(web.post("/logout", &[("csrf", "wrong")], &[]).status, 403);
    assert_eq!(web.get("/search").status, 200);
    let out = web.post("/logout", &[("csrf", &token)], &[]);
    assert_eq!((out.status, out.header("location")), (303, Some("/login")));
    assert_eq!(web.get("/search").status, 303);

    // A live session follows the users file: `user disable` while serve runs ends it at its
    // next request (the API with the cookie: 401; a page: to /login, whose form shows, no
    // loop), with a record; enabling the user again does not bring it back.
    let mut api = a.browser();
    api.login("alice");
    let mut pages = a.browser();
    pages.login("alice");
    assert_eq!(api.get("/api/v1/search?q=invoice").status, 200);
    a.vault.ok(&["user", "disable", "alice"]);
    let refused = api.get("/api/v1/search?q=invoice");
    assert_eq!(refused.status, 401, "{}", refused.text());
    let away = pages.get("/messages/1");
    assert_eq!((away.status, away.header("location")), (303, Some("/login")));
    assert_eq!(pages.get("/login").status, 200);
    let ended = audit(&a.vault)
        .into_iter()
        .filter(|e| e["action"] == "login-failed" && e["actor"] == "alice")
        .filter(|e| e["target"] == "web reason=session-disabled")
        .count();
    assert_eq!(ended, 2, "one record per session ended");
    a.vault.ok(&["user", "enable", "alice"]);
    assert_eq!(api.get("/api/v1/session").status, 401);
    assert_eq!(pages.get("/search").status, 303);
    pages.login("alice");
}

#[test]
fn failed_logins_show_the_rate_limit() {
    let a = scope_archive();
    let mut web = a.browser();
    let mut last = None;
    for _ in 0..8 {
        let form = web.get("/login");
        let csrf = login_token(&form.text());
        last = Some(web.post(
            "/login",
            &[("user", "carol"), ("password", "wrong"), ("csrf", &csrf)],
            &[],
        ));
    }
    let limited = last.unwrap();
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.header("retry-after").is_some());
    assert!(limited.text().contains("id=\"login-error\""));
    assert!(limited.text().contains("Too many failed logins"));
}
