//! SMTP and LMTP session input through the real intake: `archive_smtp::Intake` on loopback
//! ports over a store in the scratch directory (created once per process), one connection
//! per input. Everything a relay can reach runs: command parsing (smtp-proto), DATA and BDAT
//! receivers, dot-unstuffing, size and recipient limits, AUTH PLAIN, journal decoding
//! (recipient-encoded addresses, Exchange journal reports) and the durable append.
//!
//! The first input byte picks the listener and the client, the rest is sent as is:
//! - bit 0: LMTP (set) or SMTP;
//! - bit 1: an untrusted client (outside `allow`, so it must AUTH PLAIN as `relay` with
//!   password `fuzz-password`) or a trusted one.
//!
//! A panic in any server task aborts the process (libfuzzer-sys's panic hook).
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use archive_core::access::LoginGate;
use archive_smtp::config::{JournalSource, JournalStyle};
use archive_smtp::{Intake, IntakeConfig, Protocol};
use libfuzzer_sys::fuzz_target;
use mailvault_fuzz::{archive, connect_from, fresh_loopback_ip, play, run_session, runtime, RELAY};
use tokio::sync::watch;

#[global_allocator]
static ALLOCATOR: mailvault_fuzz::CappedAllocator = mailvault_fuzz::CappedAllocator;

/// The LMTP and SMTP listeners, started once.
struct Listeners {
    lmtp: SocketAddr,
    smtp: SocketAddr,
    /// Keeps the intake running (it stops when this sends `true` or is dropped).
    _shutdown: watch::Sender<bool>,
}

fn listeners() -> &'static Listeners {
    static L: OnceLock<Listeners> = OnceLock::new();
    L.get_or_init(|| {
        let a = archive();
        let config = IntakeConfig {
            lmtp: Some("127.0.0.1:0".parse().expect("an address")),
            smtp: Some("127.0.0.1:0".parse().expect("an address")),
            // Trusted: 127.0.0.1 only; the fuzzer's other loopback addresses must AUTH.
            allow: vec!["127.0.0.1/32".parse().expect("a CIDR")],
            relay_users: vec![RELAY.into()],
            // Both journal styles are reachable: reports from the trusted client are
            // unwrapped, the relay's mail has its recipients decoded.
            journal_source: vec![
                JournalSource {
                    style: JournalStyle::Exchange,
                    listener: None,
                    clients: vec!["127.0.0.1/32".parse().expect("a CIDR")],
                    auth_user: None,
                    mail_from: Vec::new(),
                },
                JournalSource {
                    style: JournalStyle::RecipientEncoded,
                    listener: None,
                    clients: Vec::new(),
                    auth_user: Some(RELAY.into()),
                    mail_from: Vec::new(),
                },
            ],
            // Small enough that the fuzzer can cross them with a 4 KiB input.
            max_message_size: 2048,
            max_recipients: 8,
            ..IntakeConfig::default()
        };
        let (tx, rx) = watch::channel(false);
        let tls_dir = mailvault_fuzz::scratch_dir().join("smtp-tls");
        let intake = runtime()
            .block_on(Intake::start(
                Arc::clone(&a.store),
                config,
                Arc::new(LoginGate::new(&a.dir)),
                &tls_dir,
                rx,
            ))
            .expect("start the intake");
        let find = |p: Protocol| {
            intake
                .listening
                .iter()
                .find(|(q, _)| *q == p)
                .map(|(_, addr)| *addr)
                .expect("a listener")
        };
        let (lmtp, smtp) = (find(Protocol::Lmtp), find(Protocol::Smtp));
        // The accept loops live on in the runtime; the handle is only for waiting on them.
        std::mem::forget(intake);
        Listeners {
            lmtp,
            smtp,
            _shutdown: tx,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let l = listeners();
    let server = if mode & 1 == 1 { l.lmtp } else { l.smtp };
    let source = if mode & 2 == 2 {
        fresh_loopback_ip()
    } else {
        Ipv4Addr::LOCALHOST
    };
    run_session("smtp", async {
        let stream = connect_from(source, server).await.expect("connect to the intake");
        play(stream, input).await;
    });
});
