//! The web front door (issue #16, increment 1): password login with sessions and CSRF, HTTP
//! Basic and bearer tokens, and the JSON API `/api/v1`, over real sockets against the real
//! binary (ureq as the client; a raw socket where a request must be one no client builds).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine;
use serde_json::Value;

use crate::util::{incompressible_message, Server, Vault};

/// An answer: status, headers (names lower-case), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of cookie `name` as the answer sets it (`name=value; …`).
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .find_map(|(_, v)| v.strip_prefix(&format!("{name}=")).map(|rest| rest.to_string()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client of one web listener, redirects not followed, every status an answer.
struct Web {
    agent: ureq::Agent,
    base: String,
}

impl Web {
    fn http(addr: SocketAddr) -> Web {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            // A fresh connection per request: a connection the server closed after refusing
            // a request (a 413 whose body it did not read) is never reused.
            .max_idle_connections(0)
            .build()
            .into();
        Web {
            agent,
            base: format!("http://{addr}"),
        }
    }

    /// HTTPS, trusting `ca_pem` only.
    fn https(addr: SocketAddr, ca_pem: &[u8]) -> Web {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let ca = Certificate::from_pem(ca_pem).unwrap();
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&[ca]))
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .max_idle_connections(0)
            .tls_config(tls)
            .build()
            .into();
        Web {
            agent,
            base: format!("https://localhost:{}", addr.port()),
        }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        answer(request.call().unwrap_or_else(|e| panic!("GET {path}: {e}")))
    }

    fn post(&self, path: &str, form: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        answer(
            request
                .send(form.as_bytes())
                .unwrap_or_else(|e| panic!("POST {path}: {e}")),
        )
    }
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

fn basic(user: &str, password: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {pair}")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const PASSWORD: &str = "correct horse battery";

/// Users: alice (alice@example.com), carol (carol@other.net), pm (auditor of example.com),
/// root (auditor of everything).
fn add_users(vault: &Vault) {
    let pw = format!("{PASSWORD}\n");
    for args in [
        &[
            "user",
            "add",
            "alice",
            "--address",
            "alice@example.com",
            "--password-stdin",
        ][..],
        &[
            "user",
            "add",
            "carol",
            "--address",
            "carol@other.net",
            "--password-stdin",
        ],
        &[
            "user",
            "add",
            "pm",
            "--role",
            "auditor",
            "--domain",
            "example.com",
            "--password-stdin",
        ],
        &[
            "user",
            "add",
            "root",
            "--role",
            "auditor",
            "--all-domains",
            "--password-stdin",
        ],
    ] {
        vault.ok_in(args, Some(pw.as_bytes()));
    }
}

/// A new token of `user`, made with `mailvault user token` (works while `serve` runs).
fn token(vault: &Vault, user: &str) -> String {
    String::from_utf8(vault.ok(&["user", "token", user]))
        .unwrap()
        .trim()
        .to_string()
}

const TO_ALICE: &str = "From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: quarterly invoice\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
the invoice for alice\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x\r\n--b--\r\n";

const TO_CAROL: &str = "From: x@other.net\r\nTo: carol@other.net\r\nSubject: secret merger plan\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
the invoice nobody else may see\r\n--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"plan.csv\"\r\n\r\n\
a;b\r\n--b--\r\n";

/// A store with the users and three messages (one of several MiB), served on free ports.
struct Archive {
    vault: Vault,
    server: Server,
    web: Web,
    _mail: tempfile::TempDir,
}

fn archive(extra: &[&str]) -> Archive {
    let vault = Vault::new();
    vault.ok(&["init"]);
    add_users(&vault);
    let mail = tempfile::tempdir().unwrap();
    let mut big = b"From: bob@example.org\r\nTo: alice@example.com\r\n".to_vec();
    big.extend(incompressible_message("big report", 3 << 20));
    let files: Vec<PathBuf> = [
        ("alice.eml", TO_ALICE.as_bytes().to_vec()),
        ("carol.eml", TO_CAROL.as_bytes().to_vec()),
        ("big.eml", big),
    ]
    .into_iter()
    .map(|(name, bytes)| {
        let path = mail.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    })
    .collect();
    let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    assert_eq!(vault.import(&paths).len(), 3);
    let server = vault.serve(extra);
    let web = Web::http(server.web.expect("web listener"));
    Archive {
        vault,
        server,
        web,
        _mail: mail,
    }
}

/// The seq of the one message `q` finds for the whole-archive auditor.
fn seq_of(web: &Web, root: &str, q: &str) -> u64 {
    let found = web.get(&format!("/api/v1/search?q={q}"), &[("authorization", root)]);
    assert_eq!(found.status, 200, "{}", found.text());
    let found = found.json();
    assert_eq!(found["total"], 1, "{q}: {found}");
    found["hits"][0]["seq"].as_u64().unwrap()
}

/// `mailvault audit --json`, one value per event.
fn audit(vault: &Vault) -> Vec<Value> {
    String::from_utf8(vault.ok(&["audit", "--json"]))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn each_caller_sees_their_scope_and_a_message_outside_it_is_a_plain_404() {
    let a = archive(&[]);
    let (alice, pm, root) = (
        bearer(&token(&a.vault, "alice")),
        bearer(&token(&a.vault, "pm")),
        bearer(&token(&a.vault, "root")),
    );
    let web = &a.web;
    let mine = seq_of(web, &root, "subject:quarterly");
    let carols = seq_of(web, &root, "subject:merger");
    let big = seq_of(web, &root, "subject:big");

    // Search: alice finds her own invoice, nothing of carol's, and no count of it.
    let hits = web.get("/api/v1/search?q=invoice", &[("authorization", &alice)]);
    assert_eq!(hits.status, 200);
    let hits = hits.json();
    assert_eq!(hits["total"], 1, "{hits}");
    assert_eq!(hits["hits"][0]["seq"], mine);
    assert_eq!(hits["hits"][0]["has_attachment"], true);
    assert_eq!(hits["hits"][0]["from"][0], "Bob <bob@example.org>");
    assert!(hits["hits"][0]["snippet"].as_str().unwrap().contains("invoice"));
    let hidden = web
        .get("/api/v1/search?q=merger", &[("authorization", &alice)])
        .json();
    assert_eq!(hidden["total"], 0, "{hidden}");
    assert!(!hidden.to_string().contains("merger plan"));

    // Every read of carol's message is the 404 of a seq that does not exist, byte for byte.
    let missing = web.get("/api/v1/messages/999999", &[("authorization", &alice)]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not-found");
    for path in [
        format!("/api/v1/messages/{carols}"),
        format!("/api/v1/messages/{carols}/raw"),
        format!("/api/v1/messages/{carols}/attachments/1"),
        format!("/api/v1/messages/{carols}/proof"),
        // A seq that is an audit record, not a message.
        "/api/v1/messages/1".to_string(),
    ] {
        let refused = web.get(&path, &[("authorization", &alice)]);
        assert_eq!(refused.status, 404, "{path}");
        assert_eq!(refused.body, missing.body, "{path}");
        assert!(!refused.text().contains("merger"), "{path}");
    }
    // An auditor of example.com does not see other.net either; the whole-archive one does.
    let refused = web.get(&format!("/api/v1/messages/{carols}"), &[("authorization", &pm)]);
    assert_eq!((refused.status, &refused.body), (404, &missing.body));
    assert_eq!(
        web.get("/api/v1/search?q=merger", &[("authorization", &pm)])
            .json()["total"],
        0
    );
    assert_eq!(
        web.get("/api/v1/search?q=invoice", &[("authorization", &pm)])
            .json()["total"],
        1
    );
    let seen = web.get(&format!("/api/v1/messages/{carols}"), &[("authorization", &root)]);
    assert_eq!(seen.status, 200);
    assert_eq!(seen.json()["subject"], "secret merger plan");

    // Her own message: metadata with parts, the attachment as a download, the proof.
    let message = web.get(&format!("/api/v1/messages/{mine}"), &[("authorization", &alice)]);
    assert_eq!(message.status, 200);
    let message = message.json();
    assert_eq!(message["subject"], "quarterly invoice");
    let pdf = message["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["attachment"] == 1)
        .unwrap();
    assert_eq!(
        (pdf["name"].as_str(), pdf["content_type"].as_str()),
        (Some("r.pdf"), Some("application/pdf"))
    );
    let attachment = web.get(
        &format!("/api/v1/messages/{mine}/attachments/1"),
        &[("authorization", &alice)],
    );
    assert_eq!(attachment.status, 200);
    assert_eq!(attachment.body, b"%PDF-1");
    assert!(attachment
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment;"));
    assert_eq!(attachment.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(attachment.header("content-security-policy"), Some("sandbox"));
    let none = web.get(
        &format!("/api/v1/messages/{mine}/attachments/2"),
        &[("authorization", &alice)],
    );
    assert_eq!(none.status, 404);
    let proof = web.get(
        &format!("/api/v1/messages/{mine}/proof"),
        &[("authorization", &alice)],
    );
    assert_eq!(proof.status, 200, "{}", proof.text());
    let proof = proof.json();
    assert_eq!(proof["seq"], mine);
    let checkpoint = web.get("/api/v1/checkpoint", &[("authorization", &alice)]);
    assert_eq!(checkpoint.status, 200);
    assert!(checkpoint
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(proof["checkpoint"].as_str().unwrap().lines().count() >= 4);
    assert!(proof["tree_size"].as_u64().unwrap() >= mine);

    // Raw bytes, several MiB, exactly what `mailvault show` prints.
    let raw = web.get(
        &format!("/api/v1/messages/{big}/raw"),
        &[("authorization", &alice)],
    );
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("message/rfc822"));
    assert!(raw.body.len() > 3 << 20);
    assert!(
        raw.body == a.vault.ok(&["show", &big.to_string()]),
        "raw differs from show"
    );

    // Status is for auditors, the trail for auditors of everything.
    assert_eq!(
        web.get("/api/v1/status", &[("authorization", &alice)]).status,
        403
    );
    let status = web.get("/api/v1/status", &[("authorization", &pm)]);
    assert_eq!(status.status, 200);
    assert!(status.json()["last_seq"].as_u64().unwrap() > big);
    assert_eq!(web.get("/api/v1/audit", &[("authorization", &pm)]).status, 403);
    let trail = web.get(
        "/api/v1/audit?action=search&user=alice&limit=1",
        &[("authorization", &root)],
    );
    assert_eq!(trail.status, 200, "{}", trail.text());
    let trail = trail.json();
    assert_eq!(trail["events"].as_array().unwrap().len(), 1);
    assert_eq!(trail["events"][0]["target"], "web invoice");
    let cursor = trail["next_cursor"].as_str().unwrap();
    let next = web
        .get(
            &format!("/api/v1/audit?action=search&user=alice&limit=1&cursor={cursor}"),
            &[("authorization", &root)],
        )
        .json();
    assert_eq!(next["events"][0]["target"], "web merger");

    // Every search, view and download is in the trail, as alice, from the web.
    let events = audit(&a.vault);
    let by = |action: &str, target: &str| {
        events
            .iter()
            .any(|e| e["actor"] == "alice" && e["action"] == action && e["target"] == target)
    };
    assert!(by("search", "web invoice"), "{events:#?}");
    assert!(by("view", &format!("web seq {mine}")));
    assert!(by("raw", &format!("web seq {big}")));
    assert!(by("download", &format!("web seq {mine} attachment 1")));
    assert!(events.iter().any(|e| e["action"] == "proof"
        && e["target"]
            .as_str()
            .unwrap()
            .starts_with(&format!("web seq {mine} checkpoint "))));
    assert!(events.iter().any(|e| e["action"] == "login"
        && e["actor"] == "alice"
        && e["target"].as_str().unwrap().starts_with("web via=token id=")));
    // Refused reads leave no view of carol's message.
    assert!(!by("view", &format!("web seq {carols}")));
    drop(a.server);
}

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
    let events = audit(&a.vault);
    assert!(events
        .iter()
        .any(|e| e["action"] == "login" && e["actor"] == "alice" && e["target"] == "web"));
    assert!(events.iter().any(|e| e["action"] == "user-token"));
}

/// Sends one request over a plain socket and returns the status line's code.
fn raw_request(addr: SocketAddr, head: &str) -> u16 {
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    socket.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn hostile_input_gets_a_clear_error_and_the_server_goes_on() {
    let a = archive(&[]);
    let web = &a.web;
    let alice = bearer(&token(&a.vault, "alice"));
    let auth = [("authorization", alice.as_str())];
    let bad = web.get("/api/v1/search?q=from:alice+(invoice", &auth);
    assert_eq!(bad.status, 400);
    let bad = bad.json();
    assert_eq!(bad["error"], "bad-query");
    // `from:alice (invoice` is 19 characters: the missing `)` is found at its end.
    assert_eq!(bad["position"], 20, "{bad}");
    assert!(
        bad["detail"].as_str().unwrap().contains("the '(' at position 12"),
        "{bad}"
    );
    for (path, says) in [
        ("/api/v1/search?q=invoice&cursor=garbage", "cursor"),
        ("/api/v1/search?q=invoice&limit=99999999999999999999999", "limit"),
        ("/api/v1/search?q=invoice&limit=501", "limit"),
        ("/api/v1/search?q=invoice&limit=0", "limit"),
        ("/api/v1/search?q=invoice&sort=sideways", "sort"),
        ("/api/v1/search?q=invoice&qq=1", "qq"),
        ("/api/v1/search", "q is missing"),
        ("/api/v1/messages/1/attachments/x", "attachment"),
    ] {
        let refused = web.get(path, &auth);
        assert_eq!(refused.status, 400, "{path}: {}", refused.text());
        assert!(
            refused.json()["detail"].as_str().unwrap().contains(says),
            "{path}: {}",
            refused.text()
        );
    }
    // 60 KiB of query: a JSON 400; 1 MiB: beyond what a URI may be, refused by the HTTP layer.
    let long = format!("/api/v1/search?q={}", "a".repeat(60 << 10));
    let refused = web.get(&long, &auth);
    assert_eq!(refused.status, 400);
    assert!(refused.json()["detail"].as_str().unwrap().contains("at most"));
    let addr = a.server.web.unwrap();
    let huge = format!(
        "GET /api/v1/search?q={} HTTP/1.1\r\nHost: x\r\nAuthorization: {alice}\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let code = raw_request(addr, &huge);
    assert!(code == 414 || code == 400, "{code}");
    // A body beyond the limit is refused before anything reads it: its length alone gets
    // the 413 (sending the body too would race the server's close of the connection).
    let big_form = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        (1 << 20) + 20
    );
    assert_eq!(raw_request(addr, &big_form), 413);
    // Still up, still answering.
    assert_eq!(web.get("/api/v1/search?q=invoice", &auth).json()["total"], 1);
    assert_eq!(web.get("/api/v1/nothing-here", &auth).status, 404);
}

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
    // Plain HTTP on the HTTPS port gets no answer.
    assert_eq!(
        raw_request(
            addr,
            "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        0
    );
}
