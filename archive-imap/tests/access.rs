//! Who gets to talk to the IMAP front door, over real loopback sockets: plaintext LOGIN by
//! listener configuration, never by peer address; connections not logged in kept in their own
//! pool and deadline, so they cannot keep users out (issue #10, defects 7 and 10).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

mod common;

use archive_core::access::{LoginGate, Role, UserRecord, Users};
use archive_core::{Store, StoreConfig};
use archive_imap::{ImapConfig, Listening};
use common::read_line;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// An empty store with users erika (erika-password) and hans (hans-password), served as
/// `config` says (listeners on free loopback ports).
async fn serve(dir: &Path, config: impl FnOnce(&mut ImapConfig)) -> Listening {
    let path = dir.join("store");
    let key = path.join("signing.key");
    Store::create(&path, &key).unwrap();
    Users::update(&path, |all| {
        for name in ["erika", "hans"] {
            let role = Role::user([format!("{name}@example.com")]).unwrap();
            all.add(UserRecord::new(name, role, &format!("{name}-password"))?)?;
        }
        Ok(())
    })
    .unwrap();
    let store = Arc::new(Store::open(&path, &key, StoreConfig::default()).unwrap());
    let mut imap = ImapConfig {
        plain: Some("127.0.0.1:0".parse().unwrap()),
        tls: None,
        ..ImapConfig::default()
    };
    config(&mut imap);
    archive_imap::start(store, Arc::new(LoginGate::new(&path)), imap, &dir.join("tls"))
        .await
        .unwrap()
}

/// A connection to `server` from loopback address `from` (127.0.0.x: all of 127/8 is this
/// host on Linux, and each is its own client network).
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// Sends `command` tagged `tag` and returns the tagged answer (untagged lines skipped).
async fn command(tcp: &mut TcpStream, tag: &str, command: &str) -> String {
    tcp.write_all(format!("{tag} {command}\r\n").as_bytes())
        .await
        .unwrap();
    loop {
        let line = read_line(tcp).await;
        if line.is_empty() || line.starts_with(&format!("{tag} ")) {
            return line;
        }
    }
}

/// A logged-in session from `from`.
async fn login_from(from: &str, server: SocketAddr, user: &str) -> (TcpStream, String) {
    let mut tcp = connect_from(from, server).await;
    let greeting = read_line(&mut tcp).await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let answer = command(&mut tcp, "a", &format!("LOGIN {user} {user}-password")).await;
    (tcp, answer)
}

const PLAINTEXT_CLIENT: &str = r#"
import imaplib, ssl, sys
port = int(sys.argv[1])
m = imaplib.IMAP4("127.0.0.1", port)
assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities, m.capabilities
assert "AUTH=PLAIN" not in m.capabilities, m.capabilities
try:
    m.login("erika", "erika-password")
    raise SystemExit("LOGIN accepted in plain text over loopback")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
m.starttls(ssl_context=tls)
assert "LOGINDISABLED" not in m.capabilities, m.capabilities
typ, _ = m.login("erika", "erika-password")
assert typ == "OK", typ
m.logout()
print("ok")
"#;

/// The defect: a plain listener took passwords in the clear from any loopback peer (a
/// local proxy forwarding remote clients, a listener on 127.0.0.2). Now only the listener's
/// `allow_plaintext_login` decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_login_follows_the_listener_not_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let listening = serve(dir.path(), |_| {}).await;
    let port = listening.plain.unwrap().port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", PLAINTEXT_CLIENT, &port])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    listening.shutdown().await;

    // Allowed explicitly: LOGIN in the clear works.
    let dir = tempfile::tempdir().unwrap();
    let listening = serve(dir.path(), |c| c.allow_plaintext_login = true).await;
    let (_session, answer) = login_from("127.0.0.1", listening.plain.unwrap(), "erika").await;
    assert!(answer.starts_with("a OK"), "{answer}");
    listening.shutdown().await;
}

/// The defect: idle connections that never log in, from a few addresses, filled every slot.
/// Now they have a pool of their own (full: the oldest is pushed out) and a cap per network;
/// users' sessions and new logins go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_many_addresses_cannot_keep_users_out() {
    let dir = tempfile::tempdir().unwrap();
    let listening = serve(dir.path(), |c| {
        c.allow_plaintext_login = true;
        c.limits.max_unauthenticated = 6;
        c.limits.max_unauthenticated_per_ip = 2;
        c.limits.max_connections = 6;
        c.limits.login_timeout = Duration::from_secs(60);
    })
    .await;
    let server = listening.plain.unwrap();
    let (mut erika, answer) = login_from("127.0.0.1", server, "erika").await;
    assert!(answer.starts_with("a OK"), "{answer}");
    assert!(command(&mut erika, "b", "SELECT INBOX").await.starts_with("b OK"));

    // The flood: two idle connections from each of 127.0.0.2–127.0.0.9, more than the
    // waiting pool holds.
    let mut flood = Vec::new();
    for host in 2..10 {
        for _ in 0..2 {
            let mut tcp = connect_from(&format!("127.0.0.{host}"), server).await;
            assert!(read_line(&mut tcp).await.starts_with("* OK"));
            flood.push(tcp);
        }
    }
    // A third from a network with two waiting is refused at once (127.0.0.2's were the
    // oldest, pushed out already; 127.0.0.9's are the newest).
    let mut third = connect_from("127.0.0.9", server).await;
    assert_eq!(
        read_line(&mut third).await,
        "* BYE too many connections waiting to log in\r\n"
    );

    // Erika's session still works, and a new login (pushing out the oldest idle one) too.
    assert!(command(&mut erika, "c", "NOOP").await.starts_with("c OK"));
    let (mut hans, answer) = login_from("127.0.0.1", server, "hans").await;
    assert!(answer.starts_with("a OK"), "{answer}");
    assert!(command(&mut hans, "b", "SELECT INBOX").await.starts_with("b OK"));
    // The oldest idle connections were pushed out: they read why, then EOF.
    assert_eq!(
        read_line(&mut flood[0]).await,
        "* BYE too many connections waiting to log in; try again\r\n"
    );
    assert_eq!(read_line(&mut flood[0]).await, "");
    listening.shutdown().await;
}

/// A full logged-in pool answers a login `NO [LIMIT]` and closes the connection (after a
/// BYE, as Dovecot closes it); a new connection logs in once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_logged_in_pool_refuses_the_login() {
    let dir = tempfile::tempdir().unwrap();
    let listening = serve(dir.path(), |c| {
        c.allow_plaintext_login = true;
        c.limits.max_connections = 1;
    })
    .await;
    let server = listening.plain.unwrap();
    let (mut erika, answer) = login_from("127.0.0.1", server, "erika").await;
    assert!(answer.starts_with("a OK"), "{answer}");
    let (mut hans, answer) = login_from("127.0.0.2", server, "hans").await;
    assert!(answer.starts_with("a NO [LIMIT]"), "{answer}");
    assert_eq!(read_line(&mut hans).await, "", "closed");
    assert!(command(&mut erika, "b", "LOGOUT").await.starts_with("b OK"));
    // (Erika's place is freed as her session ends, just after the socket closes.)
    let mut answer = String::new();
    for _ in 0..40 {
        answer = login_from("127.0.0.2", server, "hans").await.1;
        if answer.starts_with("a OK") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answer.starts_with("a OK"), "{answer}");
    listening.shutdown().await;
}

/// A connection must log in within `login_timeout` of connecting; commands do not extend it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_connection_that_never_logs_in_is_closed_at_the_login_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let listening = serve(dir.path(), |c| {
        c.limits.login_timeout = Duration::from_secs(1);
    })
    .await;
    let mut tcp = connect_from("127.0.0.1", listening.plain.unwrap()).await;
    assert!(read_line(&mut tcp).await.starts_with("* OK"));
    // NOOPs every 200 ms keep it busy; the server still ends it (BYE, then EOF).
    let mut ended = false;
    for i in 0..50 {
        if tcp.write_all(format!("n{i} NOOP\r\n").as_bytes()).await.is_err() {
            ended = true;
            break;
        }
        let line = read_line(&mut tcp).await;
        if line.is_empty() || line.starts_with("* BYE") {
            ended = true;
            break;
        }
        assert!(line.starts_with(&format!("n{i} OK")), "{line}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ended, "still open after 50 NOOPs, 10 s past a 1 s login timeout");
    listening.shutdown().await;
}
