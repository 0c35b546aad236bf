//! The IMAP front door over real loopback sockets, driven by Python's imaplib
//! (`imap_client.py`): a temp store with fixture mail, the server in-process on free ports,
//! and a script that checks what real clients see.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

mod common;

use archive_core::access::{LoginGate, Role, UserRecord, Users};
use archive_core::log::record::LeafBody;
use archive_core::{Envelope, OnDuplicate, Store, StoreConfig};
use archive_imap::ImapConfig;
use common::read_line;

/// Adds users (name, password, role) to the store's users file, as `mailvault user add` does.
fn add_users(store_dir: &Path, users: &[(&str, &str, Role)]) {
    Users::update(store_dir, |all| {
        for (name, password, role) in users {
            all.add(UserRecord::new(name, role.clone(), password)?)?;
        }
        Ok(())
    })
    .unwrap();
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope::lmtp(from, to)
}

/// This host's address on its default route, if it has one that is not loopback (connecting
/// a UDP socket sends nothing).
fn non_loopback_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9")
        .or_else(|_| s.connect("8.8.8.8:53"))
        .ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn regular_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_sees_a_read_only_archive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let key = path.join("signing.key");
    Store::create(&path, &key).unwrap();
    let store = Arc::new(Store::open(&path, &key, StoreConfig::default()).unwrap());
    let append = |file: &Path, env: Envelope| {
        let raw = std::fs::read(file).unwrap();
        store
            .append_message(&env, &raw, OnDuplicate::RecordArrival)
            .unwrap()
    };

    // Erika: two messages to her and a blind copy of Alice's report; Alice: the report
    // (sent) and an undated note (received).
    let search = fixtures().join("search");
    let rechnung = append(
        &search.join("de-rechnung.eml"),
        envelope("hans.mueller@example.de", &["erika@example.com"]),
    );
    let report = append(
        &search.join("en-report.eml"),
        envelope("alice@example.com", &["bob@example.org", "carol@example.net"]),
    );
    let gruesse = append(
        &search.join("de-gruesse.eml"),
        envelope("p.mueller@example.ch", &["erika@example.com"]),
    );
    let blind = append(
        &search.join("en-report.eml"),
        envelope("alice@example.com", &["erika@example.com"]),
    );
    let note = append(
        &search.join("no-date.eml"),
        envelope("owl@example.org", &["alice@example.com"]),
    );

    // Edge: every edge, journal and malformed fixture and a sample of the corpus, by
    // envelope only.
    let mut edge_files = regular_files(&fixtures().join("edge"));
    edge_files.extend(regular_files(&fixtures().join("journal")));
    for sub in ["malformed", "rfc", "thirdparty"] {
        let dir = fixtures().join("malformed/mail-parser/eml").join(sub);
        edge_files.extend(
            regular_files(&dir)
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "eml")),
        );
    }
    edge_files.extend(
        regular_files(&fixtures().join("corpus/spamassassin"))
            .into_iter()
            .step_by(25),
    );
    let mut manifest = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &edge_files {
        let a = append(f, envelope("sender@example.net", &["edge@example.org"]));
        // The same bytes twice are one message, under the first delivery's UID.
        if seen.insert(a.first_seq) {
            manifest.push(format!("{}\t{}", a.seq, f.display()));
        }
    }
    let records_before = store.stats().last_seq;

    add_users(
        &path,
        &[
            ("erika", "erika-pw", Role::user(["erika@example.com"]).unwrap()),
            ("alice", "alice-pw", Role::user(["alice@example.com"]).unwrap()),
            ("edge", "edge-password", Role::user(["edge@example.org"]).unwrap()),
            ("root", "root-password", Role::auditor_all()),
            (
                "de-audit",
                "de-password",
                Role::auditor_of(["example.de"]).unwrap(),
            ),
        ],
    );
    let gate = Arc::new(LoginGate::new(&path));
    // The scripts log in on the plain port too (tests/access.rs covers LOGINDISABLED).
    let config = ImapConfig {
        plain: Some("127.0.0.1:0".parse().unwrap()),
        allow_plaintext_login: true,
        tls: Some("127.0.0.1:0".parse().unwrap()),
        ..ImapConfig::default()
    };
    let listening = archive_imap::start(
        Arc::clone(&store),
        Arc::clone(&gate),
        config,
        &dir.path().join("tls"),
    )
    .await
    .unwrap();

    // A plain listener reached over a non-loopback address: passwords only after STARTTLS.
    let nonlocal_ip = non_loopback_ip();
    let nonlocal = match nonlocal_ip {
        Some(_) => Some(
            archive_imap::start(
                Arc::clone(&store),
                Arc::clone(&gate),
                ImapConfig {
                    plain: Some("0.0.0.0:0".parse().unwrap()),
                    tls: None,
                    ..ImapConfig::default()
                },
                &dir.path().join("tls"),
            )
            .await
            .unwrap(),
        ),
        None => {
            eprintln!("no non-loopback address: LOGINDISABLED before STARTTLS is not checked");
            None
        }
    };
    let nonlocal_env = match (&nonlocal, nonlocal_ip) {
        (Some(l), Some(ip)) => format!("{ip} {}", l.plain.unwrap().port()),
        _ => String::new(),
    };

    // IDLE: the script creates `append-now` while idling; this appends mail for Erika.
    let signal = dir.path().join("append-now");
    let appended_at = dir.path().join("appended");
    let idle_store = Arc::clone(&store);
    let (sig, done) = (signal.clone(), appended_at.clone());
    let idle_mail = std::fs::read(search.join("de-gruesse.eml"))
        .unwrap()
        .into_iter()
        .chain(b"X-Idle: new\r\n".iter().copied())
        .collect::<Vec<u8>>();
    let appender = std::thread::spawn(move || {
        for _ in 0..600 {
            if sig.exists() {
                let a = idle_store
                    .append_message(
                        &envelope("p.mueller@example.ch", &["erika@example.com"]),
                        &idle_mail,
                        OnDuplicate::RecordArrival,
                    )
                    .unwrap();
                std::fs::write(&done, a.seq.to_string()).unwrap();
                return Some(a.seq);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    });

    let manifest_path = dir.path().join("manifest.tsv");
    std::fs::write(&manifest_path, manifest.join("\n")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/imap_client.py");
    let plain = listening.plain.unwrap();
    let tls = listening.tls.unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("IMAP_PORT", plain.port().to_string())
            .env("IMAPS_PORT", tls.port().to_string())
            .env("FIXTURES", fixtures())
            .env("MANIFEST", &manifest_path)
            .env("SIGNAL", &signal)
            .env("APPENDED", &appended_at)
            .env("NONLOCAL", nonlocal_env)
            .env(
                "UIDS",
                format!(
                    "rechnung={} report={} gruesse={} blind={} note={}",
                    rechnung.seq, report.seq, gruesse.seq, blind.seq, note.seq
                ),
            )
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    require_success("imap_client.py", &output);
    assert!(
        appender.join().unwrap().is_some(),
        "the IDLE mail was never appended"
    );
    listening.shutdown().await;
    if let Some(l) = nonlocal {
        l.shutdown().await;
    }

    // Nothing but the IDLE mail and audit records was appended: no write reached the log.
    let mut audit = Vec::new();
    let mut messages_after = 0;
    for seq in records_before + 1..=store.stats().last_seq {
        match store.read_record_unscoped(seq).unwrap().leaf.body {
            LeafBody::Audit { event } => {
                let e: archive_core::audit::AuditEvent = serde_json::from_slice(&event).unwrap();
                audit.push(e);
            }
            LeafBody::Message { .. } | LeafBody::Arrival { .. } => messages_after += 1,
            _ => {}
        }
    }
    assert_eq!(messages_after, 1, "only the IDLE test mail may be new");
    // Accesses only: the STOREs the script sent left no trace (nothing changed).
    for e in &audit {
        assert!(
            ["login", "login-failed", "select", "examine", "view", "search"].contains(&e.action.as_str()),
            "{e:?}"
        );
    }
    let has = |actor: &str, action: &str| audit.iter().any(|e| e.actor == actor && e.action == action);
    assert!(has("erika", "login"));
    assert!(has("erika", "select"));
    assert!(has("erika", "view"));
    assert!(has("erika", "search"));
    assert!(has("mallory", "login-failed"));
    assert!(audit.iter().any(|e| e.origin == "127.0.0.1"));
    assert!(audit
        .iter()
        .filter(|e| e.action.starts_with("login"))
        .all(|e| e.target.starts_with("imap")));
    // Each login is recorded once (by the login gate), not again by the front door.
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.actor == "alice" && e.action == "login")
            .count(),
        2,
        "{audit:#?}"
    );
    // FETCH 1:* BODY.PEEK[] by Erika is one event naming all her UIDs.
    // (Each append is its own group commit, so a checkpoint separates their seqs.)
    assert!(rechnung.seq + 1 < gruesse.seq && gruesse.seq + 1 < blind.seq);
    let all_three = format!("uids {},{},{}", rechnung.seq, gruesse.seq, blind.seq);
    assert!(
        audit
            .iter()
            .any(|e| e.actor == "erika" && e.action == "view" && e.target.ends_with(&all_three)),
        "{audit:#?}"
    );
}

/// Prints a client script's output (shown when the test fails) and requires its success.
fn require_success(script: &str, output: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
}

/// An empty store with `users`, served on a free plain loopback port with `limits` applied.
async fn serve_with_limits(
    dir: &Path,
    users: &[(&str, &str, Role)],
    limits: impl FnOnce(&mut archive_imap::ImapLimits),
) -> archive_imap::Listening {
    let path = dir.join("store");
    let key = path.join("signing.key");
    Store::create(&path, &key).unwrap();
    add_users(&path, users);
    let store = Arc::new(Store::open(&path, &key, StoreConfig::default()).unwrap());
    let mut config = ImapConfig {
        plain: Some("127.0.0.1:0".parse().unwrap()),
        allow_plaintext_login: true,
        tls: None,
        ..ImapConfig::default()
    };
    limits(&mut config.limits);
    archive_imap::start(store, Arc::new(LoginGate::new(&path)), config, &dir.join("tls"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_and_login_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let listening = serve_with_limits(dir.path(), &[], |limits| {
        limits.max_connections_per_ip = 2;
        limits.login_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = listening.plain.unwrap();
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(read_line(&mut first).await.starts_with("* OK [CAPABILITY"));
    assert!(read_line(&mut second).await.starts_with("* OK"));
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_line(&mut third).await, "* BYE too many connections\r\n");

    // Not logging in: BYE after the login timeout, and the slot is free again.
    let started = std::time::Instant::now();
    let bye = tokio::time::timeout(Duration::from_secs(5), read_line(&mut first))
        .await
        .unwrap();
    assert!(bye.starts_with("* BYE"), "{bye}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop((first, second));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut again = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(read_line(&mut again).await.starts_with("* OK"));
    listening.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_one_user_are_limited() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let users = [
        (
            "erika",
            "erika-password",
            Role::user(["erika@example.com"]).unwrap(),
        ),
        ("hans", "hans-password", Role::user(["hans@example.de"]).unwrap()),
    ];
    let listening = serve_with_limits(dir.path(), &users, |limits| {
        limits.max_connections_per_user = 2;
    })
    .await;
    let addr = listening.plain.unwrap();
    // Logs in on a new connection; returns it and the tagged answer.
    let login = |user: &'static str| async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(read_line(&mut tcp).await.starts_with("* OK"));
        let command = format!("a LOGIN {user} {user}-password\r\n");
        tcp.write_all(command.as_bytes()).await.unwrap();
        let answer = read_line(&mut tcp).await;
        (tcp, answer)
    };
    let (mut first, answer) = login("erika").await;
    assert!(answer.starts_with("a OK"), "{answer}");
    let (_second, answer) = login("erika").await;
    assert!(answer.starts_with("a OK"), "{answer}");
    // Refused with a reason, and the connection is closed (as LOGOUT: BYE, tagged, close).
    let (mut third, answer) = login("erika").await;
    assert_eq!(answer, "* BYE too many sessions of this user\r\n");
    let answer = read_line(&mut third).await;
    assert!(answer.starts_with("a NO [LIMIT]"), "{answer}");
    assert_eq!(read_line(&mut third).await, "", "closed");
    // Other users are not affected.
    let (_hans, answer) = login("hans").await;
    assert!(answer.starts_with("a OK"), "{answer}");
    // A logout frees its place.
    first.write_all(b"b LOGOUT\r\n").await.unwrap();
    while !read_line(&mut first).await.is_empty() {}
    // (The place is freed as the session ends, which may be just after the socket closes.)
    let mut answer = String::new();
    for _ in 0..40 {
        answer = login("erika").await.1;
        if answer.starts_with("a OK") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answer.starts_with("a OK"), "{answer}");
    listening.shutdown().await;
}

/// One FETCH of more bytes than the reading threads may run ahead (they stop and are started
/// again, many times), read slowly: every message arrives once, in order, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_fetch_comes_in_order_and_exact() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let messages: Vec<(&str, Vec<u8>)> = (0..300)
        .map(|i| {
            let body = format!("line {i} of a long message\r\n").repeat(700);
            let raw = format!("Subject: part {i}\r\nTo: reader@example.org\r\n\r\n{body}");
            ("reader@example.org", raw.into_bytes())
        })
        .collect();
    let served = serve(
        &messages,
        &[(
            "reader",
            "reader-password",
            Role::user(["reader@example.org"]).unwrap(),
        )],
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", served.plain_port()))
        .await
        .unwrap();
    assert!(read_line(&mut tcp).await.starts_with("* OK"));
    tcp.write_all(b"a LOGIN reader reader-password\r\nb EXAMINE INBOX\r\n")
        .await
        .unwrap();
    while !read_line(&mut tcp).await.starts_with("b OK") {}
    tcp.write_all(b"c UID FETCH 1:* (UID BODY.PEEK[])\r\n")
        .await
        .unwrap();
    // Read in small pieces with pauses, like a slow client.
    let mut received = Vec::new();
    let mut piece = [0u8; 16 << 10];
    while !received.ends_with(b"c OK FETCH completed\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut piece))
            .await
            .unwrap_or_else(|_| {
                let tail = &received[received.len().saturating_sub(200)..];
                panic!("no complete answer; it ends {:?}", String::from_utf8_lossy(tail))
            })
            .unwrap();
        assert!(n > 0, "connection closed");
        received.extend_from_slice(&piece[..n]);
        if received.len() % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut rest = &received[..];
    for (i, ((_, raw), uid)) in messages.iter().zip(&served.uids).enumerate() {
        let head = format!("* {} FETCH (UID {uid} BODY[] {{{}}}\r\n", i + 1, raw.len());
        assert!(
            rest.starts_with(head.as_bytes()),
            "message {}: {:?}",
            i + 1,
            String::from_utf8_lossy(&rest[..80.min(rest.len())])
        );
        rest = &rest[head.len()..];
        assert_eq!(&rest[..raw.len()], &raw[..], "message {}", i + 1);
        rest = &rest[raw.len()..];
        assert!(rest.starts_with(b")\r\n"));
        rest = &rest[3..];
    }
    assert_eq!(rest, b"c OK FETCH completed\r\n");
    served.listening.shutdown().await;
}

/// A message for the SORT/THREAD test, padded so that sizes differ by `pad`.
fn sort_message(headers: &str, pad: usize) -> Vec<u8> {
    format!("{headers}To: reader@example.org\r\n\r\n{}\r\n", "x".repeat(pad)).into_bytes()
}

/// A store in a temp dir with messages and users, served on free loopback ports: plain (with
/// STARTTLS) and implicit TLS. Shut `listening` down at the end of the test.
struct Served {
    _dir: tempfile::TempDir,
    listening: archive_imap::Listening,
    /// The UID (log seq) of each message, in the order given.
    uids: Vec<u64>,
    /// The store being served, for mail that arrives while a client is connected.
    store: Arc<Store>,
}

impl Served {
    fn plain_port(&self) -> u16 {
        self.listening.plain.unwrap().port()
    }

    fn tls_port(&self) -> u16 {
        self.listening.tls.unwrap().port()
    }
}

/// Archives `messages` (envelope recipient, raw bytes) in order, adds `users`, and serves them.
async fn serve(messages: &[(&str, Vec<u8>)], users: &[(&str, &str, Role)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let key = path.join("signing.key");
    Store::create(&path, &key).unwrap();
    let store = Arc::new(Store::open(&path, &key, StoreConfig::default()).unwrap());
    let uids = messages
        .iter()
        .map(|(rcpt, raw)| {
            store
                .append_message(
                    &envelope("sender@example.net", &[*rcpt]),
                    raw,
                    OnDuplicate::RecordArrival,
                )
                .unwrap()
                .seq
        })
        .collect();
    add_users(&path, users);
    // The scripts log in on the plain port too (tests/access.rs covers LOGINDISABLED).
    let config = ImapConfig {
        plain: Some("127.0.0.1:0".parse().unwrap()),
        allow_plaintext_login: true,
        tls: Some("127.0.0.1:0".parse().unwrap()),
        ..ImapConfig::default()
    };
    let listening = archive_imap::start(
        Arc::clone(&store),
        Arc::new(LoginGate::new(&path)),
        config,
        &dir.path().join("tls"),
    )
    .await
    .unwrap();
    Served {
        _dir: dir,
        listening,
        uids,
        store,
    }
}

/// Runs a client script of this directory against a served archive with `UIDS` set, and
/// requires its success.
async fn run_script(script: &str, served: &Served, uids: &[u64]) {
    run_script_with(script, served, uids, &[]).await
}

/// [`run_script`] with more environment variables for the script.
async fn run_script_with(script: &str, served: &Served, uids: &[u64], vars: &[(&str, &str)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(script);
    let mut command = Command::new("python3");
    command
        .envs(vars.iter().copied())
        .arg(path)
        .env("IMAP_PORT", served.plain_port().to_string())
        .env(
            "UIDS",
            uids.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
        );
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    require_success(script, &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_sorts_and_threads() {
    let messages = [
        sort_message(
            "From: Aaron Zed <zed@example.org>\r\nSubject: Plans\r\n\
             Date: Wed, 3 Jan 2024 10:00:00 +0000\r\nMessage-ID: <t1@x>\r\n",
            400,
        ),
        sort_message(
            "From: amy@example.org\r\nSubject: Re: Plans\r\n\
             Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <t2@x>\r\nReferences: <t1@x>\r\n",
            100,
        ),
        sort_message(
            "From: Bob <bob@example.org>\r\nSubject: [list] apples\r\nCc: cc@example.org\r\n\
             Date: Tue, 2 Jan 2024 10:00:00 +0000\r\nMessage-ID: <t3@x>\r\n",
            300,
        ),
        // No Date: sorts by its receive time, which is now.
        sort_message(
            "From: Carl <carl@example.org>\r\nSubject: Re: apples (fwd)\r\n\
             Message-ID: <t4@x>\r\nIn-Reply-To: <t3@x>\r\n",
            200,
        ),
        sort_message(
            "From: Dan <dan@example.org>\r\nSubject: RE: plans\r\n\
             Date: Thu, 4 Jan 2024 10:00:00 +0000\r\nMessage-ID: <t5@x>\r\n",
            500,
        ),
    ];
    let messages: Vec<(&str, Vec<u8>)> = messages
        .into_iter()
        .map(|raw| ("reader@example.org", raw))
        .collect();
    let served = serve(
        &messages,
        &[("reader", "reader-pw", Role::user(["reader@example.org"]).unwrap())],
    )
    .await;
    run_script("imap_sort_client.py", &served, &served.uids).await;
    served.listening.shutdown().await;
}

/// A small message to `to`.
fn note(to: &str, subject: &str, body: &str) -> Vec<u8> {
    note_from("Writer <writer@example.net>", to, subject, body)
}

/// A small message from `from` to `to`.
fn note_from(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// ESEARCH (RFC 4731) and ESORT (RFC 5267 §3) answers, and the refusal of options this
/// server does not offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_gets_esearch_answers() {
    let reader = "reader@example.org";
    let served = serve(
        &[
            (reader, note(reader, "kiwi report", "alpha")),
            (reader, note(reader, "plans", "a kiwi smoothie")),
            (
                "other@example.org",
                note("other@example.org", "kiwi for someone else", "beta"),
            ),
            (reader, note(reader, "apples", "gamma")),
            (reader, note(reader, "kiwi again", "delta")),
            (reader, note(reader, "pears", "epsilon")),
        ],
        &[("reader", "reader-pw", Role::user([reader]).unwrap())],
    )
    .await;
    let mut uids = served.uids.clone();
    uids.remove(2);
    run_script("imap_esearch_client.py", &served, &uids).await;
    served.listening.shutdown().await;
}

/// SEARCH bounds (issue #10): 100 nested ORs work in SEARCH, SORT and THREAD; deeper nesting
/// and thousands of distinct keys get a clear refusal; the session and others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_searches_deep_and_wide() {
    let reader = "reader@example.org";
    let mut messages: Vec<(&str, Vec<u8>)> = (0..12)
        .map(|i| {
            let from = format!("a{i}@example.org");
            (
                reader,
                note_from(&from, reader, &format!("note {i}"), "a kiwi inside"),
            )
        })
        .collect();
    messages.push((
        reader,
        note_from("zed@example.org", reader, "from zed", "kiwi again"),
    ));
    let served = serve(
        &messages,
        &[("reader", "reader-pw", Role::user([reader]).unwrap())],
    )
    .await;
    run_script("imap_search_limits_client.py", &served, &served.uids).await;
    served.listening.shutdown().await;
}

/// Runs the system curl with `args`; a missing curl fails the test with what to install.
async fn curl(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "30"])
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run curl ({e}): the IMAP tests need the curl binary (apt-get install curl)")
            })
    })
    .await
    .unwrap()
}

/// curl's output, which must be a success.
fn curl_ok(args: &[String], output: &std::process::Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "curl {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_the_archive() {
    let reader = "reader@example.org";
    let first = note(reader, "first for curl", "one");
    let secret = note("other@example.org", "not for the reader", "a secret body");
    let second = note(reader, "second for curl", "two");
    let served = serve(
        &[
            (reader, first.clone()),
            ("other@example.org", secret.clone()),
            (reader, second.clone()),
        ],
        &[
            ("reader", "reader-pw", Role::user([reader]).unwrap()),
            ("other", "other-pw", Role::user(["other@example.org"]).unwrap()),
        ],
    )
    .await;
    let (first_uid, secret_uid, second_uid) = (served.uids[0], served.uids[1], served.uids[2]);
    let imap = format!("imap://127.0.0.1:{}", served.plain_port());
    let imaps = format!("imaps://127.0.0.1:{}", served.tls_port());
    let user = || vec!["-u".to_string(), "reader:reader-pw".to_string()];
    let version = curl(vec!["--version".into()]).await;
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(
        version.contains(" imap ") && version.contains(" imaps "),
        "this curl cannot speak IMAP/IMAPS: {version}"
    );

    // LIST.
    let args = [user(), vec![format!("{imap}/")]].concat();
    let listing = String::from_utf8_lossy(&curl_ok(&args, &curl(args.clone()).await)).into_owned();
    assert!(listing.contains("INBOX") && listing.contains("Sent"), "{listing}");

    // A custom UID SEARCH in a mailbox (curl SELECTs it first).
    let args = [
        user(),
        vec![format!("{imap}/INBOX"), "-X".into(), "UID SEARCH ALL".into()],
    ]
    .concat();
    let found = String::from_utf8_lossy(&curl_ok(&args, &curl(args.clone()).await)).into_owned();
    assert_eq!(found.trim_end(), format!("* SEARCH {first_uid} {second_uid}"));

    // A message by UID is the stored bytes exactly; curl says which FETCH it sent.
    let args = [user(), vec!["-v".into(), format!("{imap}/INBOX;UID={first_uid}")]].concat();
    let output = curl(args.clone()).await;
    assert_eq!(curl_ok(&args, &output), first);
    let trace = String::from_utf8_lossy(&output.stderr);
    assert!(
        trace.contains(&format!("UID FETCH {first_uid} BODY[]")),
        "{trace}"
    );

    // Implicit TLS, and STARTTLS required on the plain port (self-signed: -k).
    let args = [
        user(),
        vec!["-k".into(), format!("{imaps}/INBOX;UID={second_uid}")],
    ]
    .concat();
    assert_eq!(curl_ok(&args, &curl(args.clone()).await), second);
    let args = [
        user(),
        vec![
            "-v".into(),
            "-k".into(),
            "--ssl-reqd".into(),
            format!("{imap}/INBOX;UID={first_uid}"),
        ],
    ]
    .concat();
    let output = curl(args.clone()).await;
    assert_eq!(curl_ok(&args, &output), first);
    assert!(String::from_utf8_lossy(&output.stderr).contains("STARTTLS"));

    // A wrong password fails.
    let output = curl(vec![
        "-u".into(),
        "reader:wrong".into(),
        format!("{imap}/INBOX;UID={first_uid}"),
    ])
    .await;
    assert!(!output.status.success(), "a wrong password was accepted");
    assert!(output.stdout.is_empty());

    // Another user's message cannot be had by guessing its UID, in any mailbox.
    for mailbox in ["INBOX", "Sent"] {
        let output = curl([user(), vec![format!("{imap}/{mailbox};UID={secret_uid}")]].concat()).await;
        let got = &output.stdout;
        assert!(
            !got.windows(13).any(|w| w == b"a secret body"),
            "{mailbox}: {}",
            String::from_utf8_lossy(got)
        );
        // curl's "remote file not found": the FETCH answered nothing.
        assert_eq!(output.status.code(), Some(78), "{mailbox}: {output:?}");
    }
    // The owner can.
    let args = vec![
        "-u".into(),
        "other:other-pw".into(),
        format!("{imap}/INBOX;UID={secret_uid}"),
    ];
    assert_eq!(curl_ok(&args, &curl(args.clone()).await), secret);
    served.listening.shutdown().await;
}

/// BINARY and BINARY.SIZE (RFC 3516, issue #14): quoted-printable and base64 decoded as RFC
/// 2045 says and as Dovecot answers, partial fetches answered with their origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_fetches_binary_as_rfc_3516_says() {
    let reader = "reader@example.org";
    let qp = "From: a@example.net\r\nTo: reader@example.org\r\nSubject: qp\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
line with trailing blanks   \r\nsoft break = \r\nnext=\r\njoined\r\ntab\t\r\nend\r\n";
    let parts = "From: a@example.net\r\nTo: reader@example.org\r\nSubject: parts\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n\
 aGV*sb G8g\r\n\td2!9y bGQ=\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: BASE64\r\n\r\n\
YQ==YQ==\r\nYWI=\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
not hex =ZZ\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\
begin 644 x\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
8bit ä =C3=A4=e4 \r\nbare\nlf=\nsoft\r\n\
--b--\r\n";
    let served = serve(
        &[
            (reader, qp.as_bytes().to_vec()),
            (reader, parts.as_bytes().to_vec()),
        ],
        &[("reader", "reader-pw", Role::user([reader]).unwrap())],
    )
    .await;
    run_script("imap_binary_client.py", &served, &served.uids).await;
    served.listening.shutdown().await;
}

/// ENVELOPE address lists (RFC 3501 §7.4.2, issue #14): groups as start and end markers
/// only, source routes in the adl field, comments out of display names, and garbage never
/// sent as what a client reads as a group marker. SEARCH FROM/TO/CC/BCC search these
/// address lists (RFC 3501 §6.4.4, imaptest's search-addresses), not the fields as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_reads_envelope_addresses() {
    let reader = "reader@example.org";
    let messages = [
        "From: a@x\r\nTo: <@route:user@domain>\r\nCc: group2: (foo) ;\r\nSubject: e1\r\n\r\nb\r\n",
        "From: \"Quoted, Name\" <q@x> (comment), Plain (c) Name <p@x>\r\n\
         To: undisclosed-recipients:;\r\nCc: g1: a@b, \"N\" <c@d>;, e@f\r\n\
         Bcc: (only a comment)\r\nSubject: e2\r\n\r\nb\r\n",
        "From: =?utf-8?q?J=C3=BCrgen?= <j@x>\r\nTo: outer: inner: a@b; c@d;\r\n\
         Cc: unterminated: a@b,\r\n c@d\r\nReply-To: , ,;;\r\nSender: <@r1,@r2:u@d>\r\n\
         Subject: e3\r\n\r\nb\r\n",
        "From: garbage\r\nTo: \"just a name\"\r\nCc: a@b (Comment Name)\r\n\
         Bcc: Hans Müller <h@x>\r\nSubject: e4\r\n\r\nb\r\n",
        "From: <user-from (comment)@ (comment) example.org>\r\nTo: x@y\r\nSubject: e5\r\n\r\nb\r\n",
    ];
    let messages: Vec<(&str, Vec<u8>)> = messages.iter().map(|m| (reader, m.as_bytes().to_vec())).collect();
    let served = serve(
        &messages,
        &[("reader", "reader-pw", Role::user([reader]).unwrap())],
    )
    .await;
    run_script("imap_envelope_client.py", &served, &served.uids).await;
    served.listening.shutdown().await;
}

/// SORT CC/TO/DISPLAYTO on address fields that start with a group (RFC 5256 §2.2, RFC 5957,
/// issue #14): the group's start marker is the first address, so its name sorts, as in
/// Dovecot (whose answers to the same messages these are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_sorts_by_groups_as_dovecot() {
    let reader = "reader@example.org";
    let messages = [
        "From: a@x\r\nTo: zeta: aaa@b;\r\nCc: zgroup: aaa@b, c@d;\r\nSubject: 1\r\n\r\nb\r\n",
        "From: a@x\r\nTo: \"Mid Name\" <mmm@b>\r\nCc: mmm@b\r\nSubject: 2\r\n\r\nb\r\n",
        "From: a@x\r\nTo: agroup:;\r\nCc: agroup:;\r\nSubject: 3\r\n\r\nb\r\n",
        "From: a@x\r\nTo: empty:;, zzz@b\r\nCc: empty:;, zzz@b\r\nSubject: 4\r\n\r\nb\r\n",
        "From: a@x\r\nTo: \"Bee\" <yyy@b>\r\nCc: yyy@b\r\nSubject: 5\r\n\r\nb\r\n",
        "From: a@x\r\nSubject: 6\r\n\r\nb\r\n",
    ];
    let messages: Vec<(&str, Vec<u8>)> = messages.iter().map(|m| (reader, m.as_bytes().to_vec())).collect();
    let served = serve(
        &messages,
        &[("reader", "reader-pw", Role::user([reader]).unwrap())],
    )
    .await;
    run_script("imap_sort_groups_client.py", &served, &served.uids).await;
    served.listening.shutdown().await;
}

/// SEARCH header keys and sent dates (RFC 3501 §6.4.4, issue #14): substrings of decoded,
/// unfolded header fields, any field by HEADER, sent dates on the day as written in the Date
/// header; TEXT and BODY as substrings (candidates from the index, then read) or as words and
/// stems through the index.
/// The expected answers are Dovecot's for the same messages, except where docs/SEARCH.md
/// says otherwise (messages without a usable Date).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_searches_sent_dates_as_written() {
    header_search("dates").await;
}

/// See [`imaplib_searches_sent_dates_as_written`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_searches_header_substrings() {
    header_search("headers").await;
}

/// Serves the messages of the header SEARCH tests and runs the `checks` group of
/// `imap_header_search_client.py` against them.
async fn header_search(checks: &str) {
    let reader = "reader@example.org";
    let messages = [
        "From: \"Hans Müller\" <hans.mueller@example.de>\r\nTo: erika@example.com\r\n\
         Subject: A Beautiful\r\n  World?\r\nX-Extra: Some xtra Value\r\n\
         Date: Sun, 25 Mar 2007 00:00:00 +0200\r\n\r\nHello there. Question? yes\r\n",
        "From: =?utf-8?q?J=C3=BCrgen_Gro=C3=9F?= <jg@example.de>\r\n\
         Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_Z=FCrich?=\r\nCc: group2: (foo) ;\r\n\
         Bcc: secret@example.org\r\nDate: Sat, 24 Mar 2007 23:30:00 -0500\r\n\r\n\
         no question here\r\n",
        "From: x@y\r\nTo:\r\nSubject:\r\nDate: garbage\r\n\r\nbody = with equals\r\n",
        "From: x@y\r\n\r\nnothing\r\n",
        "From: x@y\r\nSubject: named zone\r\nDate: Sun, 25 Mar 2007 23:00:00 EST\r\n\r\nz\r\n",
        "From: x@y\r\nSubject: Re: [list] old (fwd)\r\nDate: Sat, 01 Jan 2000 12:00:00 +0000\r\n\r\n\
         plain words\r\n",
        "From: x@y\r\nTo: \"Erika Mustermann\" <erika@example.com>\r\nSubject: future\r\n\
         Date: Tue, 01 Jan 2030 00:30:00 +0100\r\n\r\nlater\r\n",
    ];
    let mut archived: Vec<(&str, Vec<u8>)> =
        messages.iter().map(|m| (reader, m.as_bytes().to_vec())).collect();
    // Someone else's mail that matches everything above: never found.
    archived.push((
        "other@example.org",
        "Subject: A Beautiful World? =\r\nX-Extra: x\r\nTo: a@b\r\n\
         Date: Sun, 25 Mar 2007 12:00:00 +0000\r\n\r\nQuestion? = hello\r\n"
            .as_bytes()
            .to_vec(),
    ));
    let served = serve(
        &archived,
        &[("reader", "reader-pw", Role::user([reader]).unwrap())],
    )
    .await;
    run_script_with(
        "imap_header_search_client.py",
        &served,
        &served.uids,
        &[("CHECKS", checks)],
    )
    .await;
    served.listening.shutdown().await;
}

/// CONDSTORE (RFC 7162 §3.1) on a mailbox whose messages never change: MODSEQ is UID + 1,
/// HIGHESTMODSEQ is UIDNEXT, so it moves with new mail for the user and with nothing else;
/// CHANGEDSINCE and SEARCH MODSEQ find exactly the new mail; STORE UNCHANGEDSINCE fails for
/// messages above the value and changes nothing for the others; the enabling commands,
/// CLOSED, ESEARCH/SORT with MODSEQ. The script asks for mail to arrive while it is
/// connected (`DELIVER <address>` on its stdout; the new UID comes back on its stdin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_syncs_with_condstore() {
    use std::io::{BufRead, Write};
    let reader = "reader@example.org";
    let served = serve(
        &[
            (reader, note(reader, "one", "first")),
            ("other@example.org", note("other@example.org", "theirs", "x")),
            (reader, note(reader, "two", "second")),
            (reader, note(reader, "three", "third")),
        ],
        &[("reader", "reader-pw", Role::user([reader]).unwrap())],
    )
    .await;
    let uids: Vec<u64> = [0, 2, 3].iter().map(|i| served.uids[*i]).collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/imap_condstore_client.py");
    let mut child = Command::new("python3")
        .arg(path)
        .env("IMAP_PORT", served.plain_port().to_string())
        .env(
            "UIDS",
            uids.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let store = Arc::clone(&served.store);
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let mut printed = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rcpt) = line.strip_prefix("DELIVER ") {
                let raw = note(rcpt, "late", "arrived while connected");
                let seq = store
                    .append_message(
                        &envelope("sender@example.net", &[rcpt]),
                        &raw,
                        OnDuplicate::RecordArrival,
                    )
                    .unwrap()
                    .seq;
                writeln!(stdin, "{seq}").unwrap();
                stdin.flush().unwrap();
            } else {
                printed.push_str(&line);
                printed.push('\n');
            }
        }
        let mut output = child.wait_with_output().unwrap();
        output.stdout = printed.into_bytes();
        output
    })
    .await
    .unwrap();
    require_success("imap_condstore_client.py", &output);
    served.listening.shutdown().await;
}

/// Sends `bytes` and reads lines until one starts with `tag ` (a tagged answer); returns all
/// the lines read.
async fn exchange(tcp: &mut tokio::net::TcpStream, bytes: &[u8], tag: &str) -> Vec<String> {
    use tokio::io::AsyncWriteExt;
    tcp.write_all(bytes).await.unwrap();
    let mut lines = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), read_line(tcp))
            .await
            .expect("an answer within 20 s");
        assert!(!line.is_empty(), "connection closed; read so far: {lines:?}");
        let done = line.starts_with(&format!("{tag} "));
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// LITERAL+ (RFC 7888 §3): a `{n+}` literal is taken without a continuation request, in any
/// argument of any command. One larger than `max_literal_bytes` (or than the longest command)
/// is answered BAD once all of it has arrived, and its bytes are never taken for commands:
/// the session goes on in step with the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_plus_is_taken_without_continuation() {
    let reader = "reader@example.org";
    let served = serve(
        &[(reader, note(reader, "kiwi", "fruit"))],
        &[("reader", "reader-pw", Role::user([reader]).unwrap())],
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", served.plain_port()))
        .await
        .unwrap();
    assert!(read_line(&mut tcp).await.starts_with("* OK"));
    let lines = exchange(&mut tcp, b"a1 LOGIN {6+}\r\nreader {9+}\r\nreader-pw\r\n", "a1").await;
    assert!(lines.len() == 1 && lines[0].starts_with("a1 OK"), "{lines:?}");
    exchange(&mut tcp, b"a2 EXAMINE INBOX\r\n", "a2").await;
    let lines = exchange(&mut tcp, b"a3 SEARCH SUBJECT {4+}\r\nkiwi\r\n", "a3").await;
    assert_eq!(lines[0], "* SEARCH 1\r\n", "{lines:?}");
    assert!(lines[1].starts_with("a3 OK"), "{lines:?}");
    // Literals above the limits, their bytes full of what would be commands.
    for (tag, len) in [("a4", 20_000usize), ("a5", 100_000)] {
        let smuggled: Vec<u8> = b"z NOOP\r\n".iter().copied().cycle().take(len).collect();
        let mut command = format!("{tag} SEARCH SUBJECT {{{len}+}}\r\n").into_bytes();
        command.extend_from_slice(&smuggled);
        command.extend_from_slice(b"\r\n");
        let sent = exchange(&mut tcp, &command, tag).await;
        assert!(
            sent.len() == 1 && sent[0].starts_with(&format!("{tag} BAD")),
            "{sent:?}"
        );
        let lines = exchange(&mut tcp, b"b1 NOOP\r\n", "b1").await;
        assert!(lines.len() == 1 && lines[0].starts_with("b1 OK"), "{lines:?}");
    }
    exchange(&mut tcp, b"c1 LOGOUT\r\n", "c1").await;
    served.listening.shutdown().await;
}
