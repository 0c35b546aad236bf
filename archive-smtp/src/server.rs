//! Listeners: accept loops with an allow-list and session limits, and graceful shutdown —
//! stop accepting, let sessions finish their transaction, then return.
//!
//! Session limits, per listener: `max_sessions` in all; `max_sessions_per_client` from one
//! client (an IPv4 address, or an IPv6 /64); and clients outside `allow` together at most half
//! of `max_sessions`, so the relays in `allow` always find a free slot.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use archive_core::access::LoginGate;
use archive_core::tls::ReloadableCertificate;
use archive_core::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::IntakeConfig;
use crate::metrics::Metrics;
use crate::session::{Context, Protocol, Session};

/// A running intake: its listeners' addresses and a handle to wait for it.
pub struct Intake {
    /// Each listener's protocol and the address it is bound to.
    pub listening: Vec<(Protocol, SocketAddr)>,
    /// Live counters.
    pub metrics: Arc<Metrics>,
    loops: JoinSet<()>,
    /// What new sessions get: replaced by [`Intake::reload`].
    context: watch::Sender<Arc<Context>>,
    certificate: Arc<ReloadableCertificate>,
    tls_dir: PathBuf,
}

/// Why the intake could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The `[intake]` configuration is inconsistent (the text names the key).
    #[error("{0}")]
    Config(String),
    #[error("intake TLS: {0}")]
    Tls(#[from] archive_core::tls::TlsError),
    #[error("intake.{listener}: cannot listen on {addr}: {source}")]
    Listen {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Intake {
    /// Binds the configured listeners and starts accepting. `tls_dir` holds the self-signed
    /// certificate when none is configured; relay logins (AUTH) go through `gate`. Sessions
    /// end when `shutdown` turns true.
    pub async fn start(
        store: Arc<Store>,
        config: IntakeConfig,
        gate: Arc<LoginGate>,
        tls_dir: &Path,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Intake, StartError> {
        config.validate().map_err(StartError::Config)?;
        let certificate = ReloadableCertificate::load(&crate::tls::certificate_source(&config, tls_dir))?;
        let tls = Some(crate::tls::acceptor(&certificate)?);
        let metrics = Arc::new(Metrics::default());
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let ctx = Arc::new(Context {
            store,
            config: config.clone(),
            tls,
            metrics: metrics.clone(),
            gate,
            auth_permits: Arc::new(Semaphore::new(cores)),
        });
        let (context, contexts) = watch::channel(ctx);
        let mut intake = Intake {
            listening: Vec::new(),
            metrics,
            loops: JoinSet::new(),
            context,
            certificate,
            tls_dir: tls_dir.to_path_buf(),
        };
        for (protocol, addr) in [(Protocol::Lmtp, config.lmtp), (Protocol::Smtp, config.smtp)] {
            let Some(addr) = addr else { continue };
            let listen = |source| StartError::Listen {
                listener: protocol.name(),
                addr,
                source,
            };
            let listener = TcpListener::bind(addr).await.map_err(listen)?;
            let local = listener.local_addr().map_err(listen)?;
            intake.listening.push((protocol, local));
            intake.loops.spawn(accept_loop(
                listener,
                protocol,
                contexts.clone(),
                shutdown.clone(),
            ));
        }
        Ok(intake)
    }

    /// Where STARTTLS's certificate comes from now.
    pub fn certificate(&self) -> archive_core::tls::CertificateOrigin {
        self.certificate.origin()
    }

    /// Applies a changed `[intake]` to sessions that start from now on (sessions in progress
    /// keep what they started with) and loads the certificate again (renewed files, or other
    /// ones). The listeners stay where they are: `lmtp` and `smtp` take a restart. On error
    /// nothing changes.
    pub fn reload(&self, config: IntakeConfig) -> Result<(), StartError> {
        config.validate().map_err(StartError::Config)?;
        self.certificate
            .reload(&crate::tls::certificate_source(&config, &self.tls_dir))?;
        self.context.send_modify(|ctx| {
            let old: &Context = ctx;
            *ctx = Arc::new(Context {
                store: old.store.clone(),
                config,
                tls: old.tls.clone(),
                metrics: old.metrics.clone(),
                gate: old.gate.clone(),
                auth_permits: old.auth_permits.clone(),
            });
        });
        Ok(())
    }

    /// Waits for the accept loops (and their sessions) to end after shutdown; sessions still
    /// open after `grace` are dropped (their transactions were not acknowledged).
    pub async fn wait(mut self, grace: Duration) {
        let _ = tokio::time::timeout(grace, async { while self.loops.join_next().await.is_some() {} }).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    protocol: Protocol,
    contexts: watch::Receiver<Arc<Context>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    let slots = Arc::new(Slots::default());
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                // The configuration as it is now: a reload applies from the next session on.
                let ctx = contexts.borrow().clone();
                admit(tcp, peer, protocol, &ctx, &slots, &mut sessions, &shutdown);
            }
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

fn admit(
    tcp: TcpStream,
    peer: SocketAddr,
    protocol: Protocol,
    ctx: &Arc<Context>,
    slots: &Arc<Slots>,
    sessions: &mut JoinSet<()>,
    shutdown: &watch::Receiver<bool>,
) {
    let config = &ctx.config;
    let client = crate::journal::canonical_ip(peer.ip());
    let trusted = config.allow.iter().any(|net| net.contains(&client));
    let slot = if !trusted && config.relay_users.is_empty() {
        Err("554 5.7.1 this client may not use the archive\r\n")
    } else {
        slots.take(slots.clone(), client, trusted, config)
    };
    let slot = match slot {
        Ok(slot) => slot,
        Err(text) => {
            tracing::info!(%peer, protocol = protocol.name(), reply = text.trim_end(), "session refused");
            // A fresh socket's send buffer takes these few bytes at once; the accept loop
            // never waits for a client.
            let _ = tcp.try_write(text.as_bytes());
            return;
        }
    };
    ctx.metrics.session(protocol);
    let _ = tcp.set_nodelay(true);
    let session = Session::new(ctx.clone(), protocol, peer, tcp, trusted);
    let shutdown = shutdown.clone();
    sessions.spawn(async move {
        let _slot = slot;
        session.run(shutdown).await;
    });
}

/// The sessions of one listener, counted in all, per client, and for clients outside `allow`.
#[derive(Debug, Default)]
struct Slots {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    untrusted: usize,
    /// Only clients with a session are present, so at most `max_sessions` entries.
    per_client: HashMap<IpAddr, usize>,
}

/// A taken slot, given back when the session ends.
#[derive(Debug)]
struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
    trusted: bool,
}

impl Slots {
    /// Takes a slot for `client`, or says why not (the reply for the client).
    fn take(
        &self,
        this: Arc<Slots>,
        client: IpAddr,
        trusted: bool,
        config: &IntakeConfig,
    ) -> Result<Slot, &'static str> {
        const BUSY: &str = "421 4.7.0 too many sessions, try again later\r\n";
        const BUSY_CLIENT: &str = "421 4.7.0 too many sessions from your address, try again later\r\n";
        let key = client_key(client);
        let mut counts = self.lock();
        if counts.total >= config.max_sessions {
            return Err(BUSY);
        }
        if !trusted && counts.untrusted >= (config.max_sessions / 2).max(1) {
            return Err(BUSY);
        }
        let mine = counts.per_client.entry(key).or_insert(0);
        if *mine >= config.max_sessions_per_client {
            return Err(BUSY_CLIENT);
        }
        *mine += 1;
        counts.total += 1;
        counts.untrusted += usize::from(!trusted);
        Ok(Slot {
            slots: this,
            client: key,
            trusted,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: every change is one step.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        counts.total -= 1;
        counts.untrusted -= usize::from(!self.trusted);
        if let Some(n) = counts.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&self.client);
            }
        }
    }
}

/// What counts as one client: an IPv4 address, or an IPv6 /64 (one host usually holds a whole
/// /64, so counting single IPv6 addresses would limit nothing).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_cannot_take_every_slot_and_slots_come_back() {
        let config = IntakeConfig {
            max_sessions: 6,
            max_sessions_per_client: 2,
            ..IntakeConfig::default()
        };
        let slots = Arc::new(Slots::default());
        let take = |ip: &str, trusted| slots.take(slots.clone(), ip.parse().unwrap(), trusted, &config);
        let a1 = take("192.0.2.1", true).unwrap();
        let _a2 = take("192.0.2.1", true).unwrap();
        assert!(take("192.0.2.1", true).unwrap_err().contains("from your address"));
        // An IPv6 /64 is one client.
        let _b1 = take("2001:db8::1", false).unwrap();
        let _b2 = take("2001:db8::2", false).unwrap();
        assert!(take("2001:db8::3", false)
            .unwrap_err()
            .contains("from your address"));
        // Outside `allow`: at most half of all slots (3), whoever asks.
        let _c = take("198.51.100.7", false).unwrap();
        let refused = take("198.51.100.8", false).unwrap_err();
        assert!(
            refused.starts_with("421") && !refused.contains("your address"),
            "{refused}"
        );
        let _d = take("192.0.2.9", true).unwrap();
        assert!(take("192.0.2.10", true).is_err(), "all six are taken");
        drop(a1);
        let _a3 = take("192.0.2.1", true).unwrap();
        let counts = slots.lock();
        assert_eq!(
            (counts.total, counts.untrusted, counts.per_client.len()),
            (6, 3, 4)
        );
    }
}
