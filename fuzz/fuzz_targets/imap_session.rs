//! IMAP client input through the real server: `archive_imap::start` on a loopback port over
//! a small archive (fuzz/src/lib.rs), one connection per input. Everything a client can
//! reach runs: imap-next's framing and imap-codec's parser, the ESEARCH rewriting of
//! `protocol.rs`, dispatch and every command handler, FETCH over real messages, SEARCH
//! through the full-text index.
//!
//! The first input byte picks where the session starts, the rest is sent as is:
//! - `% 4 == 0`: right after the greeting (the fuzzer logs in itself, or not);
//! - `1`: logged in as a user; `2`: as an auditor, `Archive` selected; `3`: as the user,
//!   INBOX selected.
//!
//! The harness logs in from a new loopback address each time, so the fuzzer's own failed
//! logins (the per-address limit) never keep it out. Should they lock the user name out
//! (10 failures), the harness login fails and the server is started afresh (a new
//! `LoginGate`), on the same store.
//!
//! A panic in any server task aborts the process (libfuzzer-sys's panic hook), so tokio
//! catching task panics hides nothing.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use archive_core::access::LoginGate;
use archive_imap::{ImapConfig, ImapLimits, Listening};
use libfuzzer_sys::fuzz_target;
use mailvault_fuzz::{archive, connect_from, fresh_loopback_ip, play, read_until_line, run_session, runtime};

#[global_allocator]
static ALLOCATOR: mailvault_fuzz::CappedAllocator = mailvault_fuzz::CappedAllocator;

/// The running server; replaced when its login limits lock the harness out.
static SERVER: OnceLock<Mutex<Option<Listening>>> = OnceLock::new();

fn config() -> ImapConfig {
    ImapConfig {
        plain: Some("127.0.0.1:0".parse().expect("an address")),
        tls: None,
        // The harness logs in without TLS.
        allow_plaintext_login: true,
        limits: ImapLimits {
            // Sessions of earlier inputs may still be closing when the next one connects.
            max_connections_per_ip: 1000,
            max_connections_per_user: 1000,
            ..ImapLimits::default()
        },
        ..ImapConfig::default()
    }
}

async fn start() -> Listening {
    let a = archive();
    let tls_dir = mailvault_fuzz::scratch_dir().join("imap-tls");
    archive_imap::start(
        Arc::clone(&a.store),
        Arc::new(LoginGate::new(&a.dir)),
        config(),
        &tls_dir,
    )
    .await
    .expect("start the IMAP server")
}

fn server_addr() -> SocketAddr {
    let slot = SERVER.get_or_init(|| Mutex::new(Some(runtime().block_on(start()))));
    let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    guard.as_ref().and_then(|l| l.plain).expect("a plain listener")
}

fn restart_server() {
    let slot = SERVER.get().expect("started before");
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(old) = guard.take() {
        runtime().block_on(old.shutdown());
    }
    *guard = Some(runtime().block_on(start()));
}

/// Commands the harness sends before the input, by start mode.
fn preamble(mode: u8) -> &'static [&'static str] {
    match mode % 4 {
        0 => &[],
        1 => &["fz1 LOGIN reader fuzz-password"],
        2 => &["fz1 LOGIN auditor fuzz-password", "fz2 SELECT Archive"],
        _ => &["fz1 LOGIN reader fuzz-password", "fz2 SELECT INBOX"],
    }
}

/// Outcome of the harness's own commands.
enum Prepared {
    Ready(tokio::net::TcpStream),
    /// The login was refused (limits): restart the server and skip this input.
    LockedOut,
}

async fn prepare(server: SocketAddr, mode: u8) -> Prepared {
    let source = if mode.is_multiple_of(4) {
        Ipv4Addr::LOCALHOST
    } else {
        fresh_loopback_ip()
    };
    let mut stream = connect_from(source, server)
        .await
        .expect("connect to the IMAP server");
    read_until_line(&mut stream, b"* OK").await.expect("a greeting");
    for (i, line) in preamble(mode).iter().enumerate() {
        use tokio::io::AsyncWriteExt;
        let tag = format!("fz{} ", i + 1);
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("send a harness command");
        let reply = read_until_line(&mut stream, tag.as_bytes())
            .await
            .expect("an answer to a harness command");
        let ok = reply
            .split(|b| *b == b'\n')
            .any(|l| l.starts_with(format!("{tag}OK").as_bytes()));
        if !ok {
            assert!(
                i == 0,
                "harness command {line:?} refused after a good login: {}",
                String::from_utf8_lossy(&reply)
            );
            return Prepared::LockedOut;
        }
    }
    Prepared::Ready(stream)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let server = server_addr();
    let locked_out = run_session("imap", async {
        match prepare(server, mode).await {
            Prepared::Ready(stream) => {
                play(stream, input).await;
                false
            }
            Prepared::LockedOut => true,
        }
    });
    if locked_out {
        restart_server();
    }
});
