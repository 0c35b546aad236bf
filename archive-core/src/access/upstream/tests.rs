//! Pass-through against a scripted IMAP server on loopback (TLS and STARTTLS, certificates from
//! a test CA): what is sent, in which order, and how each answer is judged. The real thing
//! (Dovecot) is tested end to end in tests/testsuite/upstream.rs.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::*;
use crate::access::test_support::{self, store_with_users};
use crate::access::{LoginGate, LoginRefused, Role};
use crate::Store;

/// A test CA and a certificate for 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    server: Arc<ServerConfig>,
}

fn pki() -> Pki {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

/// What the scripted server does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Script {
    /// Greets, does STARTTLS if asked, answers LOGIN OK for the expected credentials and
    /// NO [AUTHENTICATIONFAILED] otherwise, then LOGOUT.
    Normal,
    /// Like `Normal`, with an untagged line imap-codec cannot parse before each tagged answer.
    Chatty,
    /// Answers STARTTLS OK with a command-injection line in the same packet.
    InjectAfterStartTls,
    /// Answers STARTTLS with BAD.
    RefuseStartTls,
    /// Answers LOGIN with NO [UNAVAILABLE].
    Unavailable,
    /// Accepts the connection and says nothing.
    Silent,
}

/// A scripted upstream on a free loopback port, serving connections in a thread.
struct Fake {
    url: String,
    ca: PathBuf,
    /// Every command received (without its tag; literals joined in), in order.
    seen: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Fake {
    /// `accept` is LOGIN's arguments exactly as the right credentials are encoded.
    fn start(starttls: bool, script: Script, accept: &str) -> Fake {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, accept) = (seen.clone(), accept.to_string());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                let (server, log, accept) = (pki.server.clone(), log.clone(), accept.clone());
                std::thread::spawn(move || {
                    let _ = serve(tcp, server, starttls, script, &accept, &log);
                });
            }
        });
        let scheme = if starttls { "imap" } else { "imaps" };
        Fake {
            url: format!("{scheme}://127.0.0.1:{port}"),
            ca,
            seen,
            _dir: dir,
        }
    }

    fn config(&self) -> AuthConfig {
        AuthConfig {
            upstream: Some(self.url.clone()),
            upstream_ca: Some(self.ca.clone()),
            upstream_timeout_secs: 2,
            domains: vec!["example.com".into()],
            aliases: [(
                "alice@example.com".to_string(),
                vec!["A.Smith@Example.org".to_string()],
            )]
            .into(),
            ..AuthConfig::default()
        }
    }

    fn pass_through(&self) -> PassThrough {
        PassThrough::new(&self.config()).unwrap().unwrap()
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn logins(&self) -> usize {
        self.seen().iter().filter(|c| c.starts_with("LOGIN")).count()
    }
}

/// The server side of one connection.
enum Io {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Io {
    fn send(&mut self, text: &str) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.write_all(text.as_bytes()),
            Io::Tls(s) => s.write_all(text.as_bytes()).and_then(|_| s.flush()),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.read_exact(buf),
            Io::Tls(s) => s.read_exact(buf),
        }
    }

    /// One line without its CRLF (byte by byte: nothing may be read past it before STARTTLS).
    fn line(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8];
        while !line.ends_with(b"\r\n") {
            self.read_exact(&mut byte)?;
            line.push(byte[0]);
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

fn serve(
    tcp: TcpStream,
    server: Arc<ServerConfig>,
    starttls: bool,
    script: Script,
    accept: &str,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    if script == Script::Silent {
        std::thread::sleep(Duration::from_secs(5));
        return Ok(());
    }
    let tls = |tcp: TcpStream| -> std::io::Result<Io> {
        let conn = ServerConnection::new(server.clone()).map_err(std::io::Error::other)?;
        Ok(Io::Tls(Box::new(StreamOwned::new(conn, tcp))))
    };
    let mut io = if starttls { Io::Plain(tcp) } else { tls(tcp)? };
    let caps = if starttls {
        "IMAP4rev1 STARTTLS LOGINDISABLED"
    } else {
        "IMAP4rev1"
    };
    io.send(&format!("* OK [CAPABILITY {caps}] fake ready\r\n"))?;
    loop {
        let line = io.line()?;
        let (tag, command) = line.split_once(' ').unwrap_or((&line, ""));
        let tag = tag.to_string();
        let mut command = command.to_string();
        // A synchronizing literal: agree, then read it and the rest of the line.
        while let Some(open) = command.rfind('{').filter(|_| command.ends_with('}')) {
            let n: usize = command[open + 1..command.len() - 1].parse().unwrap();
            io.send("+ go ahead\r\n")?;
            let mut literal = vec![0u8; n];
            io.read_exact(&mut literal)?;
            command = format!("{command}\r\n{}{}", String::from_utf8_lossy(&literal), io.line()?);
        }
        seen.lock().unwrap().push(command.clone());
        if script == Script::Chatty {
            io.send("* XUNKNOWN [not (parseable\r\n")?;
        }
        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "STARTTLS" => match script {
                Script::RefuseStartTls => io.send(&format!("{tag} BAD no TLS here\r\n"))?,
                Script::InjectAfterStartTls => {
                    io.send(&format!("{tag} OK begin TLS\r\n* injected\r\n"))?;
                    io = match io {
                        Io::Plain(tcp) => tls(tcp)?,
                        already => already,
                    };
                }
                _ => {
                    io.send(&format!("{tag} OK begin TLS\r\n"))?;
                    io = match io {
                        Io::Plain(tcp) => tls(tcp)?,
                        already => already,
                    };
                }
            },
            "LOGIN" if script == Script::Unavailable => {
                io.send(&format!("{tag} NO [UNAVAILABLE] auth backend down\r\n"))?
            }
            "LOGIN" if command["LOGIN ".len().min(command.len())..] == *accept => {
                io.send(&format!("{tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"))?
            }
            "LOGIN" => io.send(&format!(
                "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
            ))?,
            "LOGOUT" => {
                io.send(&format!("* BYE Logging out\r\n{tag} OK Logout completed.\r\n"))?;
                return Ok(());
            }
            _ => io.send(&format!("{tag} BAD unexpected\r\n"))?,
        }
    }
}

#[test]
fn accepted_rejected_and_quoted_over_tls() {
    // Space, quote and backslash: a quoted string with escapes, never a hand-built one.
    let fake = Fake::start(false, Script::Normal, r#"alice@example.com "pa ss\"w\\ord""#);
    let pt = fake.pass_through();
    let passed = pt.authenticate("alice@example.com", r#"pa ss"w\ord"#).unwrap();
    assert_eq!(passed.via, "upstream");
    assert_eq!(passed.who.name, "alice@example.com");
    assert_eq!(
        passed.who.principal,
        Principal::user(["alice@example.com", "a.smith@example.org"]).unwrap()
    );
    assert_eq!(
        pt.authenticate("alice@example.com", "wrong"),
        Err(UpstreamRefusal::Rejected)
    );
    assert_eq!(
        fake.seen(),
        [
            r#"LOGIN alice@example.com "pa ss\"w\\ord""#,
            "LOGOUT",
            "LOGIN alice@example.com wrong",
            "LOGOUT"
        ]
    );
}

#[test]
fn a_password_that_needs_a_literal_waits_for_the_continuation() {
    let fake = Fake::start(false, Script::Normal, "alice@example.com {9}\r\npässwort");
    let pt = fake.pass_through();
    assert!(pt.authenticate("alice@example.com", "pässwort").is_ok());
}

#[test]
fn the_cache_spares_the_upstream_but_only_for_the_same_password() {
    let fake = Fake::start(false, Script::Normal, "alice@example.com secret99");
    let pt = fake.pass_through();
    assert_eq!(
        pt.authenticate("alice@example.com", "secret99").unwrap().via,
        "upstream"
    );
    assert_eq!(
        pt.authenticate("alice@example.com", "secret99").unwrap().via,
        "upstream-cache"
    );
    assert_eq!(fake.logins(), 1);
    // Another password is asked about (and, rejected, evicts the cached one).
    assert_eq!(
        pt.authenticate("alice@example.com", "other"),
        Err(UpstreamRefusal::Rejected)
    );
    assert_eq!(
        pt.authenticate("alice@example.com", "secret99").unwrap().via,
        "upstream"
    );
    assert_eq!(fake.logins(), 3);

    let mut config = fake.config();
    config.cache_secs = 0;
    let uncached = PassThrough::new(&config).unwrap().unwrap();
    uncached.authenticate("alice@example.com", "secret99").unwrap();
    assert_eq!(
        uncached
            .authenticate("alice@example.com", "secret99")
            .unwrap()
            .via,
        "upstream"
    );
    assert_eq!(fake.logins(), 5);
}

#[test]
fn starttls_comes_first_and_the_password_only_after_it() {
    let fake = Fake::start(true, Script::Normal, "alice@example.com secret99");
    assert!(fake
        .pass_through()
        .authenticate("alice@example.com", "secret99")
        .is_ok());
    assert_eq!(
        fake.seen(),
        ["STARTTLS", "LOGIN alice@example.com secret99", "LOGOUT"]
    );

    for script in [Script::RefuseStartTls, Script::InjectAfterStartTls] {
        let fake = Fake::start(true, script, "alice@example.com secret99");
        let refused = fake.pass_through().authenticate("alice@example.com", "secret99");
        let Err(UpstreamRefusal::Unavailable(why)) = refused else {
            panic!("{script:?}: {refused:?}");
        };
        assert!(why.contains("no password was sent"), "{script:?}: {why}");
        assert!(why.starts_with(&fake.url), "{why}");
        assert_eq!(fake.seen(), ["STARTTLS"], "{script:?}");
    }
}

#[test]
fn unknown_untagged_lines_are_ignored() {
    use imap_codec::decode::Decoder;
    assert!(imap_codec::ResponseCodec::new()
        .decode(b"* XUNKNOWN [not (parseable\r\n")
        .is_err());
    let fake = Fake::start(true, Script::Chatty, "alice@example.com secret99");
    assert!(fake
        .pass_through()
        .authenticate("alice@example.com", "secret99")
        .is_ok());
}

#[test]
fn no_unavailable_is_no_verdict() {
    let fake = Fake::start(false, Script::Unavailable, "alice@example.com secret99");
    let refused = fake.pass_through().authenticate("alice@example.com", "secret99");
    let Err(UpstreamRefusal::Unavailable(why)) = refused else {
        panic!("{refused:?}");
    };
    assert!(why.contains("NO [UNAVAILABLE]"), "{why}");
    assert!(!why.contains("secret99"));
}

#[test]
fn an_untrusted_certificate_gets_no_password() {
    let fake = Fake::start(false, Script::Normal, "alice@example.com secret99");
    let other_ca = fake._dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, pki().ca_pem).unwrap();
    let mut config = fake.config();
    config.upstream_ca = Some(other_ca);
    let refused = PassThrough::new(&config)
        .unwrap()
        .unwrap()
        .authenticate("alice@example.com", "secret99");
    let Err(UpstreamRefusal::Unavailable(why)) = refused else {
        panic!("{refused:?}");
    };
    assert!(why.contains("certificate"), "{why}");
    assert!(fake.seen().is_empty());
}

#[test]
fn a_silent_or_absent_server_is_unavailable_in_time() {
    let fake = Fake::start(false, Script::Silent, "");
    let started = Instant::now();
    let refused = fake.pass_through().authenticate("alice@example.com", "secret99");
    assert!(
        matches!(&refused, Err(UpstreamRefusal::Unavailable(why)) if why.contains("timed out")),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = fake.config();
    config.upstream = Some(format!("imaps://127.0.0.1:{closed}"));
    let refused = PassThrough::new(&config)
        .unwrap()
        .unwrap()
        .authenticate("alice@example.com", "secret99");
    assert!(
        matches!(&refused, Err(UpstreamRefusal::Unavailable(why)) if why.contains("connecting")),
        "{refused:?}"
    );
}

#[test]
fn logins_map_to_addresses_in_the_domains_only() {
    let fake = Fake::start(false, Script::Normal, "");
    let pt = fake.pass_through();
    assert_eq!(
        pt.address_of("Alice@Example.COM").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(pt.address_of("alice@example.org"), None);
    assert_eq!(pt.address_of("alice@sub.example.com"), None);
    assert_eq!(pt.address_of("alice"), None);
    assert_eq!(pt.address_of("al ice@example.com"), None);
    let mut config = fake.config();
    config.bare_login_domain = Some("Example.com".into());
    let pt = PassThrough::new(&config).unwrap().unwrap();
    assert_eq!(pt.address_of("Alice").as_deref(), Some("alice@example.com"));
    assert_eq!(
        pt.address_of("alice@example.com").as_deref(),
        Some("alice@example.com")
    );
}

#[test]
fn the_configuration_is_checked_and_errors_name_the_key() {
    let good = AuthConfig {
        upstream: Some("imaps://mail.example.com".into()),
        domains: vec!["example.com".into()],
        ..AuthConfig::default()
    };
    good.validate().unwrap();
    AuthConfig::default().validate().unwrap();
    let cases: Vec<(AuthConfig, &str)> = vec![
        (
            AuthConfig {
                domains: vec!["example.com".into()],
                ..AuthConfig::default()
            },
            "auth.domains is set but auth.upstream is not",
        ),
        (
            AuthConfig {
                upstream: Some("http://mail.example.com".into()),
                ..good.clone()
            },
            "auth.upstream:",
        ),
        (
            AuthConfig {
                domains: vec![],
                ..good.clone()
            },
            "auth.domains: list the mail domains",
        ),
        (
            AuthConfig {
                domains: vec!["exa mple.com".into()],
                ..good.clone()
            },
            "auth.domains: domain",
        ),
        (
            AuthConfig {
                bare_login_domain: Some("example.org".into()),
                ..good.clone()
            },
            "auth.bare_login_domain: example.org is not one of auth.domains",
        ),
        (
            AuthConfig {
                aliases: [("bob@example.org".to_string(), vec![])].into(),
                ..good.clone()
            },
            "auth.aliases: bob@example.org is not in auth.domains",
        ),
        (
            AuthConfig {
                aliases: [("bob@example.com".to_string(), vec!["nope".to_string()])].into(),
                ..good.clone()
            },
            "auth.aliases.\"bob@example.com\": address \"nope\"",
        ),
        (
            AuthConfig {
                aliases: [
                    ("Bob@example.com".to_string(), vec![]),
                    ("bob@example.com".to_string(), vec![]),
                ]
                .into(),
                ..good.clone()
            },
            "auth.aliases: bob@example.com is listed twice",
        ),
        (
            AuthConfig {
                upstream_timeout_secs: 0,
                ..good.clone()
            },
            "auth.upstream_timeout_secs",
        ),
        (
            AuthConfig {
                cache_secs: 86400,
                ..good.clone()
            },
            "auth.cache_secs",
        ),
    ];
    for (config, says) in cases {
        let e = config.validate().unwrap_err();
        assert!(e.starts_with(says), "{says}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let e = PassThrough::new(&AuthConfig {
        upstream_ca: Some(dir.path().join("missing.pem")),
        ..good
    })
    .unwrap_err();
    assert!(e.starts_with("auth.upstream_ca:"), "{e}");
}

/// The action, target and actor of the newest record, which must be an audit record.
fn last_audit(store: &Store) -> (String, String, String) {
    let event = test_support::last_audit(store);
    (event.action, event.target, event.actor)
}

#[test]
fn the_gate_asks_the_users_file_first_and_audits_every_outcome() {
    let fake = Fake::start(false, Script::Normal, "bob@example.com upstream-pw");
    let dir = tempfile::tempdir().unwrap();
    let users = [
        (
            "alice",
            "local password",
            Role::user(["alice@example.com"]).unwrap(),
        ),
        (
            "csmith",
            "local password",
            Role::user(["carol@example.com"]).unwrap(),
        ),
    ];
    let (data, store) = store_with_users(dir.path(), &users);
    let gate = LoginGate::with_pass_through(&data, Some(fake.pass_through()));
    let client: IpAddr = "192.0.2.7".parse().unwrap();
    let login = |name: &str, pw: &str| gate.login(&store, name, pw, client, "imap");

    // A local user is decided locally, by name or by address, and never asked upstream.
    assert_eq!(login("alice", "local password").unwrap().name, "alice");
    assert_eq!(last_audit(&store).1, "imap");
    assert!(matches!(
        login("alice@example.com", "upstream-pw"),
        Err(LoginRefused::Failed)
    ));
    assert_eq!(last_audit(&store).1, "imap reason=wrong-password");
    // Outside the domains: unknown, not asked.
    assert!(matches!(
        login("bob@example.org", "upstream-pw"),
        Err(LoginRefused::Failed)
    ));
    assert_eq!(last_audit(&store).1, "imap reason=unknown-user");
    // A spelling of a local user's address (spaces around it) is not pass-through's either.
    assert!(matches!(
        login(" carol@example.com ", "upstream-pw"),
        Err(LoginRefused::Failed)
    ));
    assert!(fake.seen().is_empty());

    let who = login("Bob@example.com", "wrong").unwrap_err();
    assert!(matches!(who, LoginRefused::Failed), "{who:?}");
    assert_eq!(
        last_audit(&store),
        (
            "login-failed".into(),
            "imap reason=upstream-rejected".into(),
            "Bob@example.com".into()
        )
    );
    let who = login("bob@example.com", "upstream-pw").unwrap();
    assert_eq!(who.principal, Principal::user(["bob@example.com"]).unwrap());
    assert_eq!(
        last_audit(&store),
        (
            "login".into(),
            "imap via=upstream".into(),
            "bob@example.com".into()
        )
    );
    login("bob@example.com", "upstream-pw").unwrap();
    assert_eq!(last_audit(&store).1, "imap via=upstream-cache");
    store.close().unwrap();
}

#[test]
fn an_unavailable_upstream_is_audited_as_such_and_locks_no_name_out() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fake = Fake::start(false, Script::Normal, "");
    let mut config = fake.config();
    config.upstream = Some(format!("imaps://127.0.0.1:{closed}"));
    let dir = tempfile::tempdir().unwrap();
    let (data, store) = store_with_users(dir.path(), &[]);
    let gate = LoginGate::with_pass_through(&data, PassThrough::new(&config).unwrap());
    // More than one network may fail for a name before it is slowed down there.
    for _ in 0..crate::access::limiter::FREE_FAILURES + 1 {
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let refused = gate.login(&store, "bob@example.com", "pw", client, "imap");
        assert!(
            matches!(&refused, Err(LoginRefused::Unavailable(why)) if why.contains("connecting")),
            "{refused:?}"
        );
        assert_eq!(last_audit(&store).1, "imap reason=upstream-unavailable");
    }
    store.close().unwrap();
}
