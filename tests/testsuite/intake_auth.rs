//! Relay AUTH over real sockets: only over TLS (or from `allow`), through the store's login
//! gate like IMAP (same answer for every failure, rate limit, audit records), and only for the
//! users named in `intake.relay_users`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;

use crate::intake_abuse::serve_with;
use crate::util::{python_json, Vault};

const AUTH_CLIENT: &str = r#"
import json, smtplib, ssl, sys
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = lambda **kw: print(json.dumps(kw))
s = smtplib.SMTP(host, port, local_hostname="remote-relay.test")
s.ehlo()
code, text = s.docmd("MAIL", "FROM:<x@example.com>")
out(step="mail-before-auth", code=code, text=text.decode())
code, text = s.docmd("AUTH", "PLAIN AHJlbGF5MQB3cm9uZw==")
out(step="auth-before-tls", code=code, text=text.decode())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx); s.ehlo()
for step, name, secret in [("wrong-password", user, "wrong password"),
                           ("unknown-user", "nobody", "wrong password"),
                           ("not-a-relay", "bob", "bobs password")]:
    try:
        s.login(name, secret)
        out(step=step, code=235)
    except smtplib.SMTPAuthenticationError as e:
        out(step=step, code=e.smtp_code, text=e.smtp_error.decode())
code, text = s.login(user, password)
out(step="login", code=code, text=text.decode())
s.mail("relay@example.com"); s.rcpt("archive@vault.example")
code, text = s.data(b"Subject: via an authenticated relay\r\n\r\nhi\r\n")
out(step="data", code=code, text=text.decode())
s.quit()
"#;

/// The audit records of the log, as (actor, action, target).
fn audit_events(vault: &Vault) -> Vec<(String, String, String)> {
    vault
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "audit")
        .map(|r| {
            let a = &r["audit"];
            let text = |k: &str| {
                a[k].as_str()
                    .unwrap_or_else(|| panic!("audit.{k} in {r}"))
                    .to_string()
            };
            (text("actor"), text("action"), text("target"))
        })
        .collect()
}

/// `mailvault audit` lists exactly the log's audit records (`events`, from `log --json`) before the spooled ones,
/// and its filters select by action, actor and time.
fn audit_lists_the_trail_by_time_actor_and_action(vault: &Vault, events: &[(String, String, String)]) {
    let listed = |args: &[&str]| -> Vec<(String, String, String)> {
        let mut all = vec!["audit", "--json"];
        all.extend_from_slice(args);
        String::from_utf8(vault.ok(&all))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            // The reads of this test (`log`, `audit`) wait in the audit spool, listed after
            // the log's records as pending.
            .filter(|v| v["pending"] != true)
            .map(|v| {
                assert!(
                    v["seq"].as_u64().is_some() && v["time"].is_string() && v["origin"].is_string(),
                    "{v}"
                );
                let text = |k: &str| v[k].as_str().unwrap().to_string();
                (text("actor"), text("action"), text("target"))
            })
            .collect()
    };
    assert_eq!(listed(&[]), events);
    let failed: Vec<_> = events.iter().filter(|e| e.1 == "login-failed").cloned().collect();
    assert!(failed.len() >= 3, "{events:?}");
    assert_eq!(listed(&["--action", "login-failed"]), failed);
    let bobs: Vec<_> = events.iter().filter(|e| e.0 == "bob").cloned().collect();
    assert_eq!(listed(&["--user", "bob"]), bobs);
    assert_eq!(listed(&["--user", "bob", "--action", "login"]).len(), 1);
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let day = |d: jiff::civil::Date| d.to_string();
    assert_eq!(
        listed(&[
            "--since",
            &day(today.yesterday().unwrap()),
            "--until",
            &day(today)
        ]),
        events
    );
    assert!(listed(&["--since", &day(today.tomorrow().unwrap())]).is_empty());
    assert!(listed(&["--until", &day(today.yesterday().unwrap())]).is_empty());
    assert!(listed(&["--since", "2999-01-01T00:00:00Z"]).is_empty());
    // Text columns: seq, time, action, actor, origin, target.
    let text = String::from_utf8(vault.ok(&["audit", "--action", "login-failed"])).unwrap();
    assert_eq!(text.lines().count(), failed.len(), "{text}");
    assert!(
        text.lines().any(|l| l.contains("login-failed")
            && l.contains("relay1")
            && l.contains("smtp reason=wrong-password")),
        "{text}"
    );
    let bad = vault.run_in(&["audit", "--since", "yesterday"], None);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("neither a date"));
}

/// Adds a local user with one address and `password` (stdin of `mailvault user add`).
pub(crate) fn add_user(vault: &Vault, name: &str, address: &str, password: &str) {
    let added = vault.run_in(
        &["user", "add", name, "--address", address],
        Some(format!("{password}\n").as_bytes()),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
}

#[test]
fn clients_outside_the_allow_list_must_authenticate_over_tls_through_the_login_gate() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    // Relay accounts are local users named in intake.relay_users; bob is a user, not a relay.
    add_user(&vault, "relay1", "relay1@relay.invalid", "relay secret");
    add_user(&vault, "bob", "bob@example.com", "bobs password");
    let config = vault.dir.with_file_name("auth.toml");
    // Loopback is not allowed here, so the test client counts as a remote relay.
    std::fs::write(
        &config,
        "[intake]\nallow = [\"192.0.2.0/24\"]\nrelay_users = [\"relay1\"]\n",
    )
    .unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let steps = python_json(
        AUTH_CLIENT,
        &[
            "127.0.0.1".into(),
            server.smtp.port().to_string(),
            "relay1".into(),
            "relay secret".into(),
        ],
    );
    let step = |name: &str| steps.iter().find(|s| s["step"] == name).unwrap().clone();
    let code = |name: &str| step(name)["code"].as_u64().unwrap();
    assert_eq!(code("mail-before-auth"), 530);
    assert_eq!(code("auth-before-tls"), 538);
    assert_eq!(code("wrong-password"), 535);
    // Nobody learns whether a name exists, or that a password was right for a non-relay.
    assert_eq!(
        step("unknown-user"),
        json_with_step(&step("wrong-password"), "unknown-user")
    );
    assert_eq!(
        step("not-a-relay"),
        json_with_step(&step("wrong-password"), "not-a-relay")
    );
    assert_eq!(code("login"), 235);
    assert_eq!(code("data"), 250);
    assert_eq!(server.stop(), Some(0));
    let message = vault
        .records()
        .into_iter()
        .find(|r| r["kind"] == "message")
        .unwrap();
    assert_eq!(message["envelope"]["protocol"], "ESMTPSA");
    // Every verified attempt is an audit record, as at the IMAP door.
    let events = audit_events(&vault);
    let origin_free: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    for expected in [
        ("relay1", "login-failed", "smtp reason=wrong-password"),
        ("nobody", "login-failed", "smtp reason=unknown-user"),
        ("bob", "login", "smtp"),
        ("bob", "login-failed", "smtp reason=not-a-relay"),
        ("relay1", "login", "smtp"),
    ] {
        assert!(origin_free.contains(&expected), "{expected:?} not in {events:?}");
    }
    audit_lists_the_trail_by_time_actor_and_action(&vault, &events);

    // Without relay users, a client outside the allow-list is refused at once.
    let config = vault.dir.with_file_name("closed.toml");
    std::fs::write(&config, "[intake]\nallow = [\"192.0.2.0/24\"]\n").unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let mut s = TcpStream::connect(server.smtp).unwrap();
    let mut greeting = String::new();
    BufReader::new(&mut s).read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("554 5.7.1"), "{greeting}");
    assert_eq!(server.stop(), Some(0));
}

/// `step` with its "step" field renamed: two answers compared for everything else.
fn json_with_step(step: &serde_json::Value, name: &str) -> serde_json::Value {
    let mut step = step.clone();
    step["step"] = name.into();
    step
}

/// Failed AUTH PLAIN attempts over STARTTLS until the server says to wait; prints each reply.
const AUTH_FAILURES: &str = r#"
import base64, json, smtplib, ssl, sys
port, user, tries = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, local_hostname="guesser.test")
s.starttls(context=ctx); s.ehlo()
for i in range(tries):
    token = base64.b64encode(("\0%s\0guess %d" % (user, i)).encode()).decode()
    code, text = s.docmd("AUTH", "PLAIN " + token)
    print(json.dumps(dict(code=code, text=text.decode())), flush=True)
    if code != 535:
        break
token = base64.b64encode(b"\0relay1\0relay secret").decode()
code, text = s.docmd("AUTH", "PLAIN " + token)
print(json.dumps(dict(code=code, text=text.decode(), right=True)), flush=True)
"#;

#[test]
fn failed_relay_logins_are_rate_limited_and_audited() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    add_user(&vault, "relay1", "relay1@relay.invalid", "relay secret");
    let server = serve_with(
        &vault,
        "[intake]\nallow = [\"192.0.2.0/24\"]\nrelay_users = [\"relay1\"]\n",
    );
    let replies = python_json(
        AUTH_FAILURES,
        &[server.smtp.port().to_string(), "relay1".into(), "60".into()],
    );
    let (last, failures) = replies.split_last().unwrap();
    let (limited, failures) = failures.split_last().unwrap();
    assert!(
        !failures.is_empty() && failures.iter().all(|r| r["code"] == 535),
        "{replies:?}"
    );
    assert_eq!(limited["code"], 454, "the gate's limit answers: {replies:?}");
    assert!(
        limited["text"].as_str().unwrap().contains("try again"),
        "{limited}"
    );
    assert_eq!(last["code"], 454, "even the right password waits: {last}");
    assert_eq!(server.stop(), Some(0));
    let events = audit_events(&vault);
    let failed = events
        .iter()
        .filter(|(actor, action, target)| {
            actor == "relay1" && action == "login-failed" && target == "smtp reason=wrong-password"
        })
        .count();
    assert_eq!(
        failed,
        failures.len(),
        "one audit record per verified attempt: {events:?}"
    );
    assert!(!events.iter().any(|(_, action, _)| action == "login"));
}
