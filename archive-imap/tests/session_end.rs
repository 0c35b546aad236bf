//! Every way the server ends a session says `* BYE <reason>` first (RFC 3501 §7.1.5):
//! shutdown, a connection pushed out of the full waiting pool, a login refused for the
//! logged-in pool or the user's session limit, autologout and the login deadline. And a
//! client that does not read cannot hold a shutdown. Raw sockets over loopback, so the exact
//! lines are seen.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use archive_core::access::{LoginGate, Role, UserRecord, Users};
use archive_core::{Envelope, OnDuplicate, Store, StoreConfig};
use archive_imap::{ImapConfig, ImapLimits, Listening};
use common::read_line;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A store with users erika and hans (passwords `<name>-password`) and `mail` for Erika,
/// served on a free plain loopback port with `limits`.
async fn serve(dir: &Path, mail: &[Vec<u8>], limits: impl FnOnce(&mut ImapLimits)) -> Listening {
    let path = dir.join("store");
    let key = path.join("signing.key");
    Store::create(&path, &key).unwrap();
    Users::update(&path, |all| {
        for (name, address) in [("erika", "erika@example.com"), ("hans", "hans@example.de")] {
            let role = Role::user([address])?;
            all.add(UserRecord::new(name, role, &format!("{name}-password"))?)?;
        }
        Ok(())
    })
    .unwrap();
    let store = Arc::new(Store::open(&path, &key, StoreConfig::default()).unwrap());
    for raw in mail {
        let envelope = Envelope::lmtp("max@example.org", &["erika@example.com"]);
        store
            .append_message(&envelope, raw, OnDuplicate::RecordArrival)
            .unwrap();
    }
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

/// A connection past the greeting.
async fn connect(listening: &Listening) -> TcpStream {
    let mut tcp = TcpStream::connect(listening.plain.unwrap()).await.unwrap();
    let greeting = read_line(&mut tcp).await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    tcp
}

/// Sends a command and reads up to its tagged answer; returns every line.
async fn command(tcp: &mut TcpStream, tag: &str, text: &str) -> Vec<String> {
    tcp.write_all(format!("{tag} {text}\r\n").as_bytes())
        .await
        .unwrap();
    let mut lines = Vec::new();
    loop {
        let l = read_line(tcp).await;
        let done = l.is_empty() || l.starts_with(&format!("{tag} "));
        lines.push(l);
        if done {
            return lines;
        }
    }
}

async fn login(listening: &Listening, user: &str) -> (TcpStream, Vec<String>) {
    let mut tcp = connect(listening).await;
    let answer = command(&mut tcp, "a", &format!("LOGIN {user} {user}-password")).await;
    (tcp, answer)
}

/// The rest of what the server sends until it closes.
async fn rest(tcp: &mut TcpStream) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let l = read_line(tcp).await;
        if l.is_empty() {
            return lines;
        }
        lines.push(l);
    }
}

fn note(subject: &str) -> Vec<u8> {
    format!("From: max@example.org\r\nTo: erika@example.com\r\nSubject: {subject}\r\n\r\nhi\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_bye_to_every_session_and_a_client_that_does_not_read_cannot_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    // 16 MB: more than loopback socket buffers hold, so a FETCH of it to a client that does
    // not read blocks the session mid-response.
    let big = {
        let mut m = note("big");
        m.extend(
            std::iter::repeat_n(
                b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n"
                    .iter()
                    .copied(),
                16 << 20 >> 6,
            )
            .flatten(),
        );
        m
    };
    let listening = serve(dir.path(), &[note("one"), big], |_| {}).await;
    let mut waiting = connect(&listening).await;
    let (mut selected, _) = login(&listening, "erika").await;
    let answer = command(&mut selected, "b", "SELECT INBOX").await;
    assert!(answer.last().unwrap().starts_with("b OK"), "{answer:?}");
    let (mut idling, _) = login(&listening, "hans").await;
    command(&mut idling, "b", "SELECT INBOX").await;
    idling.write_all(b"c IDLE\r\n").await.unwrap();
    assert!(read_line(&mut idling).await.starts_with("+ "));
    let (mut stuck, _) = login(&listening, "erika").await;
    command(&mut stuck, "b", "SELECT INBOX").await;
    // Never read: the session blocks in the middle of the response.
    stuck.write_all(b"c FETCH 2 BODY.PEEK[]\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let shutdown = tokio::spawn(listening.shutdown());
    for (name, tcp) in [
        ("not logged in", &mut waiting),
        ("selected", &mut selected),
        ("idling", &mut idling),
    ] {
        assert_eq!(rest(tcp).await, ["* BYE server shutting down\r\n"], "{name}");
    }
    shutdown.await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_pushed_out_of_the_full_waiting_pool_hears_why() {
    let dir = tempfile::tempdir().unwrap();
    let listening = serve(dir.path(), &[], |l| l.max_unauthenticated = 1).await;
    let mut first = connect(&listening).await;
    let _second = connect(&listening).await;
    assert_eq!(
        rest(&mut first).await,
        ["* BYE too many connections waiting to log in; try again\r\n"]
    );
    listening.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_refused_for_a_full_logged_in_pool_ends_with_bye() {
    let dir = tempfile::tempdir().unwrap();
    let listening = serve(dir.path(), &[], |l| l.max_connections = 1).await;
    let (_erika, answer) = login(&listening, "erika").await;
    assert!(answer[0].starts_with("a OK"), "{answer:?}");
    let (mut hans, answer) = login(&listening, "hans").await;
    assert_eq!(answer[0], "* BYE too many logged-in connections\r\n");
    assert!(answer[1].starts_with("a NO [LIMIT]"), "{answer:?}");
    assert!(rest(&mut hans).await.is_empty(), "closed after the answer");
    // AUTHENTICATE takes the same path.
    let mut plain = connect(&listening).await;
    let answer = command(&mut plain, "a", "AUTHENTICATE PLAIN AGhhbnMAaGFucy1wYXNzd29yZA==").await;
    assert_eq!(answer[0], "* BYE too many logged-in connections\r\n");
    assert!(answer[1].starts_with("a NO [LIMIT]"), "{answer:?}");
    assert!(rest(&mut plain).await.is_empty());
    listening.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autologout_and_the_login_deadline_say_bye() {
    let dir = tempfile::tempdir().unwrap();
    let listening = serve(dir.path(), &[], |l| {
        l.autologout = Duration::from_secs(1);
        l.login_timeout = Duration::from_secs(2);
    })
    .await;
    let mut waiting = connect(&listening).await;
    let (mut idle, _) = login(&listening, "erika").await;
    assert_eq!(rest(&mut idle).await, ["* BYE autologout: idle too long\r\n"]);
    assert_eq!(
        rest(&mut waiting).await,
        ["* BYE login timeout: not logged in in time\r\n"]
    );
    listening.shutdown().await;
}
