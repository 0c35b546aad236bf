//! Pass-through logins against a real Dovecot (Debian `dovecot-imapd`, installed by .ci/run):
//! `mailvault serve` with `[auth] upstream` pointing at a private Dovecot on loopback, which
//! checks the passwords from a passwd-file; Python's imaplib logs in to mailvault with the
//! Dovecot credentials and reads the mail journaled to the login address and its alias.
//!
//! Each test runs its own Dovecot (`dovecot -F -c DIR/dovecot.conf`, everything under a temp
//! dir, free loopback ports, TLS with a certificate from a test CA that mailvault is told to
//! trust with `upstream_ca`). Dovecot is stopped on drop, panics included.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{private_daemon_dir, python_json, user_ids, Vault};

/// The Dovecot accounts: (login, password). The first password needs IMAP quoting (space,
/// quote, backslash); the second is not ASCII, so mailvault must send it as a literal.
pub(crate) const ALICE: (&str, &str) = ("alice@example.com", r#"sun "shine" \42"#);
const BOB: (&str, &str) = ("bob@example.com", "pässwört-42");
const CAROL: (&str, &str) = ("carol@example.com", "carol's password");

/// The mail user Dovecot's mail processes run as (Dovecot refuses uid 0).
const MAIL_USER: &str = "mail";

/// A free loopback port (bound, read, closed).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private Dovecot IMAP server: STARTTLS on `imap`, implicit TLS on `imaps`, the accounts
/// above in a passwd-file, and `ca` the PEM file of the CA that signed its certificate.
pub(crate) struct Dovecot {
    child: Option<Child>,
    pub(crate) imap: SocketAddr,
    pub(crate) imaps: SocketAddr,
    pub(crate) ca: PathBuf,
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Dovecot {
    pub(crate) fn start() -> Dovecot {
        Dovecot::start_with(true)
    }

    /// With `tls` false: no TLS at all (no STARTTLS on `imap`, no `imaps` listener), and
    /// plain-text LOGIN allowed (Dovecot trusts loopback connections).
    pub(crate) fn start_with(tls: bool) -> Dovecot {
        let binary = Path::new("/usr/sbin/dovecot");
        let libexec = Path::new("/usr/lib/dovecot");
        assert!(
            binary.is_file() && libexec.join("imap").is_file() && libexec.join("imap-login").is_file(),
            "Dovecot's IMAP server is not installed: `apt-get install dovecot-imapd` (.ci/run does)"
        );
        // Dovecot switches to the mail user for its unprivileged processes.
        let tmp = private_daemon_dir("Dovecot");
        let (uid, gid) = user_ids(MAIL_USER).unwrap_or_else(|| panic!("no user {MAIL_USER:?}"));
        let root = tmp.path().to_path_buf();
        for d in ["run", "state", "mail"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        std::os::unix::fs::chown(root.join("mail"), Some(uid), Some(gid)).unwrap();

        let (ca_pem, cert_pem, key_pem) = test_pki();
        let ca = root.join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        std::fs::write(root.join("cert.pem"), cert_pem).unwrap();
        std::fs::write(root.join("key.pem"), key_pem).unwrap();
        let passwd: String = [ALICE, BOB, CAROL]
            .iter()
            .map(|(user, pw)| format!("{user}:{{PLAIN}}{pw}::::::\n"))
            .collect();
        std::fs::write(root.join("passwd"), passwd).unwrap();

        let (imap, imaps) = (free_port(), if tls { free_port() } else { 0 });
        let d = root.display();
        let ssl = if tls {
            format!(
                "ssl = required\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\nssl_min_protocol = TLSv1.2"
            )
        } else {
            "ssl = no\ndisable_plaintext_auth = no".to_string()
        };
        let config = format!(
            "# Private Dovecot for a mailvault pass-through test.
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
auth_verbose = yes
{ssl}
auth_mechanisms = plain
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = {imaps_ssl}
  }}
}}
",
            imaps_ssl = if tls { "yes" } else { "no" }
        );
        let config_path = root.join("dovecot.conf");
        std::fs::write(&config_path, config).unwrap();
        let stderr = std::fs::File::create(root.join("stderr.log")).unwrap();
        let child = Command::new(binary)
            .arg("-F")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start dovecot");
        let mut dovecot = Dovecot {
            child: Some(child),
            imap: SocketAddr::from(([127, 0, 0, 1], imap)),
            imaps: SocketAddr::from(([127, 0, 0, 1], imaps)),
            ca,
            root,
            _tmp: tmp,
        };
        let until = Instant::now() + Duration::from_secs(30);
        let listeners = if tls {
            vec![dovecot.imap, dovecot.imaps]
        } else {
            vec![dovecot.imap]
        };
        for addr in listeners {
            while TcpStream::connect(addr).is_err() {
                let exited = dovecot.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                assert!(
                    exited.is_none() && Instant::now() < until,
                    "dovecot did not listen on {addr} ({exited:?}):\n{}",
                    dovecot.logs()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        dovecot
    }

    /// dovecot.log and Dovecot's stderr.
    pub(crate) fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.root.join(name)).unwrap_or_default();
        read("dovecot.log") + &read("stderr.log")
    }

    /// SIGTERM (the master stops its children), SIGKILL after 10 s; waits for the master.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The port is free once the master is gone: nothing answers there any more.
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// (CA certificate, server certificate for 127.0.0.1, server key), PEM.
fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailvault test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// A mailvault configuration passing logins through to `upstream`.
fn write_config(vault: &Vault, upstream: &str, ca: &Path) -> PathBuf {
    let path = vault.dir.with_file_name("mailvault.toml");
    let text = format!(
        r#"[auth]
upstream = "{upstream}"
upstream_ca = "{}"
domains = ["example.com"]

[auth.aliases]
"alice@example.com" = ["a.smith@example.org"]
"#,
        ca.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Logs in to mailvault's IMAPS port as each (step, login, password, how) in the JSON list of
/// argv[3] and prints, per step, the outcome and for a success the subjects in INBOX. `how` is
/// `login` (LOGIN) or `plain` (AUTHENTICATE PLAIN, UTF-8).
const CLIENT: &str = r#"
import imaplib, json, smtplib, ssl, sys
imaps_port, steps = int(sys.argv[1]), json.loads(sys.argv[2])
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE

for step, login, password, how in steps:
    m = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=tls)
    try:
        if how == "plain":
            blob = b"\0" + login.encode() + b"\0" + password.encode()
            m.authenticate("PLAIN", lambda _: blob)
        else:
            m.login(login, password)
    except imaplib.IMAP4.error as e:
        print(json.dumps({"step": step, "ok": False, "text": str(e)}), flush=True)
        m.logout()
        continue
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = sorted(d[1].decode().strip() for d in data if isinstance(d, tuple))
    print(json.dumps({"step": step, "ok": True, "subjects": subjects}), flush=True)
    m.logout()
"#;

/// Sends one message per (recipient, subject) over SMTP.
const SEND: &str = r#"
import json, smtplib, sys
smtp_port, mails = int(sys.argv[1]), json.loads(sys.argv[2])
for rcpt, subject in mails:
    with smtplib.SMTP("127.0.0.1", smtp_port) as s:
        raw = f"From: max@example.net\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nHallo.\r\n"
        s.sendmail("max@example.net", [rcpt], raw.encode())
print("[]")
"#;

/// Runs the client for `steps`; returns step name → JSON outcome.
fn log_in(
    imaps: SocketAddr,
    steps: &[(&str, &str, &str, &str)],
) -> std::collections::HashMap<String, serde_json::Value> {
    let steps = serde_json::to_string(steps).unwrap();
    python_json(CLIENT, &[imaps.port().to_string(), steps])
        .into_iter()
        .map(|v| (v["step"].as_str().unwrap().to_string(), v))
        .collect()
}

fn send(smtp: SocketAddr, mails: &[(&str, &str)]) {
    let mails = serde_json::to_string(mails).unwrap();
    python_json(SEND, &[smtp.port().to_string(), mails]);
}

/// The audit events of the log, as (actor, action, target).
fn audit_events(vault: &Vault) -> Vec<(String, String, String)> {
    vault
        .records()
        .iter()
        .filter(|r| r["kind"] == "audit")
        .map(|r| {
            let a = &r["audit"];
            let s = |k: &str| {
                a[k].as_str()
                    .unwrap_or_else(|| panic!("audit.{k} in {r}"))
                    .to_string()
            };
            (s("actor"), s("action"), s("target"))
        })
        .collect()
}

fn has(events: &[(String, String, String)], actor: &str, action: &str, target: &str) -> bool {
    events
        .iter()
        .any(|(a, b, c)| a == actor && b == action && c == target)
}

#[test]
fn pass_through_logins_over_imaps_see_the_login_address_and_its_aliases() {
    let mut dovecot = Dovecot::start();
    let vault = Vault::new();
    vault.ok(&["init"]);
    let config = write_config(&vault, &format!("imaps://{}", dovecot.imaps), &dovecot.ca);
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    send(
        server.smtp,
        &[
            ("alice@example.com", "to alice"),
            ("a.smith@example.org", "to her alias"),
            ("bob@example.com", "to bob"),
            ("carol@example.com", "to carol"),
        ],
    );

    let steps = log_in(
        server.imaps,
        &[
            ("alice", ALICE.0, ALICE.1, "login"),
            ("alice-wrong", ALICE.0, "sun shine 42", "login"),
            ("bob-utf8", BOB.0, BOB.1, "plain"),
            ("unknown-domain", "alice@example.org", ALICE.1, "login"),
            ("alice-again", "Alice@Example.com", ALICE.1, "login"),
        ],
    );
    let alice = &steps["alice"];
    assert_eq!(alice["ok"], true, "{steps:#?}\n{}", dovecot.logs());
    assert_eq!(
        alice["subjects"],
        serde_json::json!(["Subject: to alice", "Subject: to her alias"])
    );
    assert_eq!(steps["alice-wrong"]["ok"], false);
    assert!(
        steps["alice-wrong"]["text"]
            .as_str()
            .unwrap()
            .contains("AUTHENTICATIONFAILED"),
        "{steps:#?}"
    );
    assert_eq!(steps["bob-utf8"]["ok"], true, "{steps:#?}\n{}", dovecot.logs());
    assert_eq!(
        steps["bob-utf8"]["subjects"],
        serde_json::json!(["Subject: to bob"])
    );
    assert_eq!(steps["unknown-domain"]["ok"], false);
    // Another spelling is another login for the cache: asked upstream again, same user.
    assert_eq!(steps["alice-again"]["ok"], true, "{steps:#?}");
    assert_eq!(steps["alice-again"]["subjects"], alice["subjects"]);

    // Dovecot goes away: no verdict is not a wrong password.
    dovecot.stop();
    let steps = log_in(
        server.imaps,
        &[
            ("carol-down", CAROL.0, CAROL.1, "login"),
            ("alice-other-password", ALICE.0, "another password", "login"),
            // The spelling "alice@example.com" left the cache with alice-wrong's rejection;
            // "Alice@Example.com" was remembered by alice-again.
            ("alice-cached", "Alice@Example.com", ALICE.1, "login"),
        ],
    );
    for step in ["carol-down", "alice-other-password"] {
        let text = steps[step]["text"].as_str().unwrap_or_default();
        assert!(
            steps[step]["ok"] == false && text.contains("UNAVAILABLE"),
            "{step}: {steps:#?}"
        );
    }
    // Within cache_secs, the password Dovecot accepted minutes ago still works.
    assert_eq!(steps["alice-cached"]["ok"], true, "{steps:#?}");

    assert_eq!(server.stop(), Some(0));
    let events = audit_events(&vault);
    let expected = [
        ("alice@example.com", "login", "imap via=upstream"),
        (
            "alice@example.com",
            "login-failed",
            "imap reason=upstream-rejected",
        ),
        ("bob@example.com", "login", "imap via=upstream"),
        ("alice@example.org", "login-failed", "imap reason=unknown-user"),
        (
            "carol@example.com",
            "login-failed",
            "imap reason=upstream-unavailable",
        ),
        (
            "alice@example.com",
            "login-failed",
            "imap reason=upstream-unavailable",
        ),
        ("alice@example.com", "login", "imap via=upstream-cache"),
    ];
    for (actor, action, target) in expected {
        assert!(
            has(&events, actor, action, target),
            "{actor} {action} {target}: {events:#?}"
        );
    }
    assert_eq!(vault.verify(&[]).0, 0);
}

#[test]
fn pass_through_over_starttls_sends_the_password_only_inside_tls() {
    let dovecot = Dovecot::start();
    let vault = Vault::new();
    vault.ok(&["init"]);
    let config = write_config(&vault, &format!("imap://{}", dovecot.imap), &dovecot.ca);
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    send(server.smtp, &[("carol@example.com", "to carol")]);
    let steps = log_in(
        server.imaps,
        &[
            ("carol", CAROL.0, CAROL.1, "login"),
            ("carol-wrong", CAROL.0, "not carol's password", "login"),
        ],
    );
    assert_eq!(steps["carol"]["ok"], true, "{steps:#?}\n{}", dovecot.logs());
    assert_eq!(
        steps["carol"]["subjects"],
        serde_json::json!(["Subject: to carol"])
    );
    assert!(steps["carol-wrong"]["text"]
        .as_str()
        .unwrap()
        .contains("AUTHENTICATIONFAILED"));
    // Dovecot saw both attempts inside TLS (its log is written asynchronously: wait for it).
    let until = Instant::now() + Duration::from_secs(10);
    let attempts = loop {
        let attempts: Vec<String> = dovecot
            .logs()
            .lines()
            .filter(|l| l.contains("imap-login:") && l.contains("user=<carol@example.com>"))
            .map(str::to_string)
            .collect();
        if attempts.len() >= 2 || Instant::now() > until {
            break attempts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(attempts.len(), 2, "{}", dovecot.logs());
    for line in &attempts {
        assert!(line.contains(", TLS"), "{line}");
    }
    assert_eq!(server.stop(), Some(0));
    let events = audit_events(&vault);
    assert!(has(&events, CAROL.0, "login", "imap via=upstream"), "{events:#?}");
    assert!(
        has(&events, CAROL.0, "login-failed", "imap reason=upstream-rejected"),
        "{events:#?}"
    );
}

#[test]
fn a_bad_upstream_configuration_stops_the_start_naming_the_key() {
    let vault = Vault::new();
    let config = vault.dir.with_file_name("mailvault.toml");
    for (text, says) in [
        ("[auth]\nupstream = \"mail.example.com:143\"\ndomains = [\"example.com\"]\n", "auth.upstream"),
        ("[auth]\nupstream = \"imaps://mail.example.com\"\n", "auth.domains"),
        (
            "[auth]\nupstream = \"imaps://mail.example.com\"\ndomains = [\"example.com\"]\nupstream_ca = \"/nonexistent/ca.pem\"\n",
            "auth.upstream_ca",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = vault.run(&["serve", "--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
}
