//! Listeners, connection limits and shutdown. Each accepted socket becomes one task running
//! `session::run`; STARTTLS hands the socket back here to be wrapped in TLS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use archive_core::Store;
use imap_next::imap_types::core::Text;
use imap_next::imap_types::response::{Code, Greeting, GreetingKind};
use imap_next::server::{Options, Server};
use imap_next::stream::Stream;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::command::capabilities;
use crate::config::ImapConfig;
use crate::envelope_cache::EnvelopeCache;
use crate::protocol::Protocol;
use crate::session::{self, Conn, Session, UserSessions};
use archive_core::access::LoginGate;

/// Running listeners; dropping this does not stop them, [`Listening::shutdown`] does.
pub struct Listening {
    /// Bound address of the plain listener (port 0 in the config becomes the real port).
    pub plain: Option<SocketAddr>,
    /// Bound address of the implicit-TLS listener.
    pub tls: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Listening {
    /// Stops accepting and closes every connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// What every connection shares.
struct Shared {
    store: Arc<Store>,
    gate: Arc<LoginGate>,
    config: ImapConfig,
    acceptor: TlsAcceptor,
    connections: Mutex<HashMap<IpAddr, usize>>,
    envelopes: Arc<EnvelopeCache>,
    user_sessions: Arc<UserSessions>,
}

/// Counts a connection against the limits for as long as it lives.
struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.shared.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

impl Shared {
    fn take_slot(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = c.values().sum();
        let mine = c.get(&ip).copied().unwrap_or(0);
        let l = &self.config.limits;
        if total >= l.max_connections || mine >= l.max_connections_per_ip {
            return None;
        }
        *c.entry(ip).or_insert(0) += 1;
        Some(Slot {
            shared: Arc::clone(self),
            ip,
        })
    }
}

/// Binds the configured listeners and serves until [`Listening::shutdown`]. The self-signed
/// certificate (if none is configured) lives in `tls_dir`. Needs a multi-threaded tokio
/// runtime (store calls use `block_in_place`).
pub async fn start(
    store: Arc<Store>,
    gate: Arc<LoginGate>,
    config: ImapConfig,
    tls_dir: &Path,
) -> Result<Listening, String> {
    config.validate()?;
    let acceptor = crate::tls::acceptor(&config, tls_dir)?;
    let (stop, stopped) = watch::channel(false);
    let plain_addr = config.plain;
    let tls_addr = config.tls;
    let envelopes = Arc::new(EnvelopeCache::new(config.limits.envelope_cache_mib << 20));
    let user_sessions = Arc::new(UserSessions::new(config.limits.max_connections_per_user));
    let shared = Arc::new(Shared {
        store,
        gate,
        config,
        acceptor,
        connections: Mutex::new(HashMap::new()),
        envelopes,
        user_sessions,
    });
    let mut listening = Listening {
        plain: None,
        tls: None,
        stop,
        tasks: Vec::new(),
    };
    for (addr, implicit_tls) in [(plain_addr, false), (tls_addr, true)] {
        let Some(addr) = addr else { continue };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("imap: cannot listen on {addr}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| format!("imap: {addr}: {e}"))?;
        if implicit_tls {
            listening.tls = Some(bound);
        } else {
            listening.plain = Some(bound);
        }
        tracing::info!(%bound, tls = implicit_tls, "imap listening");
        listening.tasks.push(tokio::spawn(accept_loop(
            listener,
            implicit_tls,
            Arc::clone(&shared),
            stopped.clone(),
        )));
    }
    Ok(listening)
}

async fn accept_loop(
    listener: TcpListener,
    implicit_tls: bool,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (mut tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "imap accept failed");
                continue;
            }
        };
        // Responses are written as they are ready; Nagle's algorithm would hold the last
        // small write of each one until the client's delayed ACK (up to 40 ms a command).
        let _ = tcp.set_nodelay(true);
        let Some(slot) = shared.take_slot(peer.ip()) else {
            let _ = tcp.write_all(b"* BYE too many connections\r\n").await;
            continue;
        };
        let shared = Arc::clone(&shared);
        let mut stop = stop.clone();
        connections.spawn(async move {
            tokio::select! {
                _ = connection(tcp, peer, implicit_tls, &shared) => {}
                _ = stop.changed() => {}
            }
            drop(slot);
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

async fn connection(tcp: TcpStream, peer: SocketAddr, implicit_tls: bool, shared: &Shared) {
    let stream = if implicit_tls {
        match shared.acceptor.accept(tcp).await {
            Ok(tls) => crate::tls::session_stream(tls),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "imap TLS handshake failed");
                return;
            }
        }
    } else {
        Stream::insecure(tcp)
    };
    let mut session = Session {
        store: Arc::clone(&shared.store),
        gate: Arc::clone(&shared.gate),
        envelopes: Arc::clone(&shared.envelopes),
        user_sessions: Arc::clone(&shared.user_sessions),
        peer,
        limits: shared.config.limits.clone(),
        tls: implicit_tls,
        starttls: !implicit_tls,
        // Loopback is as private as TLS (and is how local tools and tests connect).
        login_needs_tls: !implicit_tls && !peer.ip().is_loopback(),
        user: None,
        selected: None,
        idle_tag: None,
        auth_tag: None,
    };
    let mut conn = Conn::new(
        protocol(&session, "mailvault archive ready (read-only IMAP)"),
        stream,
    );
    while let Some(done) = session::run(&mut session, conn).await {
        // STARTTLS: the plain-text state machine (and anything pipelined into it) is
        // dropped; TLS starts on the bare socket with a new one.
        let tcp: TcpStream = done.stream.into();
        let tls = match shared.acceptor.accept(tcp).await {
            Ok(tls) => tls,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "imap STARTTLS handshake failed");
                return;
            }
        };
        session.tls = true;
        session.starttls = false;
        conn = Conn::new(protocol(&session, "TLS active"), crate::tls::session_stream(tls));
    }
}

/// A protocol state machine whose greeting announces the current capabilities.
fn protocol(session: &Session, text: &str) -> Protocol {
    let mut options = Options::default();
    options.max_literal_size = session.limits.max_literal_bytes;
    options.max_command_size = session.limits.max_command_bytes;
    // Bare-LF clients exist (scripts, netcat); accepting them costs nothing here.
    options.crlf_relaxed = true;
    let greeting = Greeting {
        kind: GreetingKind::Ok,
        code: Some(Code::Capability(capabilities(session))),
        text: Text::try_from(text.to_string()).unwrap_or_else(|_| Text::unvalidated("ready")),
    };
    Protocol::new(Server::new(options, greeting))
}
