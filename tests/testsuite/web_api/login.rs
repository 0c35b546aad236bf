//! Logins: sessions and CSRF, the rate limit on failures, HTTPS.

use super::*;

#[test]
fn a_password_login_gets_a_fresh_session_and_every_post_is_checked_for_csrf() {
    let a = archive(&[]);
    let web = &a.web;
    let form = web.get("/login", &[]);
    assert_eq!(form.status, 200);
    let cookie = form.cookie("mailvault_login_csrf").unwrap();
    let csrf = cookie.split(';').next().unwrap().to_string();
    assert!(form.text().contains(&format!("value=\"{csrf}\"")));
    let login_cookie = format!("mailvault_login_csrf={csrf}");
    let good = format!("user=alice&password={}&csrf={csrf}", PASSWORD.replace(' ', "+"));

    // Without the token, with another token, or from another site: 403, no session.
    for (body, headers) in [
        (
            format!("user=alice&password={}", PASSWORD.replace(' ', "+")),
            vec![("cookie", login_cookie.as_str())],
        ),
        (
            format!("user=alice&password={}&csrf=forged", PASSWORD.replace(' ', "+")),
            vec![("cookie", login_cookie.as_str())],
        ),
        (
            good.clone(),
            vec![
                ("cookie", login_cookie.as_str()),
                ("origin", "http://evil.example"),
            ],
        ),
        (
            good.clone(),
            vec![
                ("cookie", login_cookie.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ] {
        let refused = web.post("/login", &body, &headers);
        assert_eq!(refused.status, 403, "{body} {headers:?}: {}", refused.text());
        assert!(refused.cookie("mailvault_session").is_none());
    }

    let origin = format!("http://{}", a.server.web.unwrap());
    let logged_in = web.post(
        "/login",
        &good,
        &[
            ("cookie", &login_cookie),
            ("origin", &origin),
            ("sec-fetch-site", "same-origin"),
        ],
    );
    assert_eq!(logged_in.status, 303, "{}", logged_in.text());
    let set = logged_in.cookie("mailvault_session").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let first = format!("mailvault_session={}", set.split(';').next().unwrap());
    let session = web.get("/api/v1/session", &[("cookie", &first)]).json();
    assert_eq!(session["user"], "alice");
    let search = web.get("/api/v1/search?q=invoice", &[("cookie", &first)]);
    assert_eq!(search.json()["total"], 1);

    // Logging in again with that cookie gives a new id; the old one is gone.
    let again = web.post(
        "/login",
        &good,
        &[("cookie", &format!("{login_cookie}; {first}"))],
    );
    assert_eq!(again.status, 303);
    let second = format!(
        "mailvault_session={}",
        again
            .cookie("mailvault_session")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
    );
    assert_ne!(first, second, "the session id must change at login");
    assert_eq!(
        web.get("/api/v1/search?q=invoice", &[("cookie", &first)]).status,
        401
    );
    let session = web.get("/api/v1/session", &[("cookie", &second)]).json();
    let session_csrf = session["csrf"].as_str().unwrap().to_string();

    // Logout: without the session's token, or cross-site, refused; then the session ends.
    assert_eq!(web.post("/logout", "", &[("cookie", &second)]).status, 403);
    assert_eq!(
        web.post("/logout", &format!("csrf={csrf}"), &[("cookie", &second)])
            .status,
        403
    );
    assert_eq!(
        web.post(
            "/logout",
            &format!("csrf={session_csrf}"),
            &[("cookie", &second), ("origin", "https://evil.example")]
        )
        .status,
        403
    );
    let out = web.post("/logout", &format!("csrf={session_csrf}"), &[("cookie", &second)]);
    assert_eq!(out.status, 303);
    assert_eq!(
        web.get("/api/v1/search?q=invoice", &[("cookie", &second)]).status,
        401
    );

    // Scripts: HTTP Basic and a token made while the server runs; a wrong one is 401.
    let basic_answer = web.get(
        "/api/v1/search?q=invoice",
        &[("authorization", &basic("alice", PASSWORD))],
    );
    assert_eq!(basic_answer.json()["total"], 1);
    let token = token(&a.vault, "alice");
    let by_token = web.get("/api/v1/search?q=invoice", &[("authorization", &bearer(&token))]);
    assert_eq!(by_token.json()["total"], 1);
    let wrong = web.get(
        "/api/v1/search?q=invoice",
        &[("authorization", &bearer(&format!("{token}x")))],
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"], "unauthorized");
    assert_eq!(web.get("/api/v1/search?q=invoice", &[]).status, 401);

    // Revoked while the server runs: that token is refused from the next request on, the
    // user's other token still works, and the revoked one stays listed.
    let other = super::token(&a.vault, "alice");
    let id = &token_id(&a.vault, &token);
    a.vault.ok(&["user", "token", "alice", "--revoke", id]);
    let revoked = web.get("/api/v1/search?q=invoice", &[("authorization", &bearer(&token))]);
    assert_eq!(revoked.status, 401);
    let still = web.get("/api/v1/search?q=invoice", &[("authorization", &bearer(&other))]);
    assert_eq!(still.json()["total"], 1);
    let listed = String::from_utf8(a.vault.ok(&["user", "token", "alice", "--list"])).unwrap();
    let revoked_line = listed.lines().find(|l| l.starts_with(id.as_str())).unwrap();
    assert!(!revoked_line.ends_with(" -"), "{listed}");
    assert_eq!(
        listed.lines().filter(|l| l.ends_with(" -")).count(),
        1,
        "{listed}"
    );
    let again = a.vault.run(&["user", "token", "alice", "--revoke", id]);
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("already revoked"), "{why}");

    let events = audit(&a.vault);
    assert!(events
        .iter()
        .any(|e| e["action"] == "login" && e["actor"] == "alice" && e["target"] == "web"));
    assert!(events.iter().any(|e| e["action"] == "user-token"));
    assert!(events
        .iter()
        .any(|e| e["action"] == "user-token-revoke" && e["target"].as_str().unwrap().contains(id.as_str())));
    assert!(events
        .iter()
        .any(|e| e["action"] == "login-failed" && e.to_string().contains("token-revoked")));
}

/// The id `mailvault user token --list` shows for a token: the first 8 hex digits of its
/// SHA-256.
fn token_id(vault: &Vault, token: &str) -> String {
    let id = crate::util::sha256_hex(token.as_bytes())[..8].to_string();
    let listed = String::from_utf8(vault.ok(&["user", "token", "alice", "--list"])).unwrap();
    assert!(listed.lines().any(|l| l.starts_with(&id)), "{listed}");
    id
}

/// Sends one request over a plain socket and returns the status line's code.

#[test]
fn failed_logins_are_rate_limited_with_429() {
    let a = archive(&[]);
    let web = &a.web;
    let wrong = basic("carol", "not her password");
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(web.get("/api/v1/search?q=x", &[("authorization", &wrong)]).status);
    }
    assert_eq!(&codes[..3], &[401, 401, 401], "{codes:?}");
    assert_eq!(codes.last(), Some(&429), "{codes:?}");
    let limited = web.get(
        "/api/v1/search?q=x",
        &[("authorization", &basic("carol", PASSWORD))],
    );
    assert_eq!(limited.status, 429);
    assert_eq!(limited.json()["error"], "rate-limited");
    assert!(limited.header("retry-after").is_some());
    // Bad tokens count too.
    for _ in 0..6 {
        web.get("/api/v1/search?q=x", &[("authorization", "Bearer mvt_guess")]);
    }
    assert_eq!(
        web.get("/api/v1/search?q=x", &[("authorization", "Bearer mvt_guess")])
            .status,
        429
    );
    let failed = audit(&a.vault)
        .into_iter()
        .filter(|e| e["action"] == "login-failed" && e["target"].as_str().unwrap().starts_with("web "))
        .count();
    assert!(failed >= 6, "{failed}");
}

#[test]
fn https_with_a_configured_certificate() {
    let vault_dir = tempfile::tempdir().unwrap();
    let pair =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (
        vault_dir.path().join("web-cert.pem"),
        vault_dir.path().join("web-key.pem"),
    );
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    let config = vault_dir.path().join("mailvault.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let a = archive(&["--config", config.to_str().unwrap()]);
    let addr = a.server.web.unwrap();
    let web = Web::https(addr, pair.cert.pem().as_bytes());
    let alice = bearer(&token(&a.vault, "alice"));
    let hits = web.get("/api/v1/search?q=invoice", &[("authorization", &alice)]);
    assert_eq!(hits.status, 200);
    assert_eq!(hits.json()["total"], 1);
    // A message of several MiB over TLS, byte for byte what `mailvault show` prints.
    let root = bearer(&token(&a.vault, "root"));
    let big = seq_of(&web, &root, "subject:big");
    let raw = web.get(
        &format!("/api/v1/messages/{big}/raw"),
        &[("authorization", &alice)],
    );
    assert_eq!(raw.status, 200);
    assert!(raw.body.len() > 3 << 20);
    assert!(
        raw.body == a.vault.ok(&["show", &big.to_string()]),
        "raw over HTTPS differs from show"
    );
    // The session cookie is Secure over HTTPS.
    let form = web.get("/login", &[]);
    let csrf = form.cookie("mailvault_login_csrf").unwrap();
    assert!(csrf.contains("Secure"), "{csrf}");
    let csrf = csrf.split(';').next().unwrap();
    let logged_in = web.post(
        "/login",
        &format!("user=alice&password={}&csrf={csrf}", PASSWORD.replace(' ', "+")),
        &[("cookie", &format!("mailvault_login_csrf={csrf}"))],
    );
    assert_eq!(logged_in.status, 303, "{}", logged_in.text());
    assert!(logged_in.cookie("mailvault_session").unwrap().contains("Secure"));
    // The search page's export over HTTPS: a bundle holding the several-MiB message byte for
    // byte, which `verify-bundle` accepts offline.
    let mut browser = crate::web_pages::Browser::https(addr, pair.cert.pem().as_bytes());
    let csrf = browser.login("alice");
    let bundle = browser.post("/export", &[("csrf", &csrf), ("q", "subject:big")], &[]);
    assert_eq!(bundle.status, 200, "{}", bundle.text());
    let zip = vault_dir.path().join("big.zip");
    std::fs::write(&zip, &bundle.body).unwrap();
    assert!(
        crate::export::entry(&zip, &format!("messages/{big}.eml")) == raw.body,
        "the exported message differs from show"
    );
    let verified = crate::export::verify_bundle_here(&zip);
    assert!(verified.status.success(), "{}", crate::export::text(&verified));
    // Plain HTTP on the HTTPS port gets no answer.
    assert_eq!(
        raw_request(
            addr,
            "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        0
    );
}
