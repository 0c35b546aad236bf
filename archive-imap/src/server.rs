//! Listeners, connection limits and shutdown. Each accepted socket becomes one task running
//! `session::run`; STARTTLS hands the socket back here to be wrapped in TLS. Connection slots
//! are `pool`'s: waiting (not logged in) and authenticated ones in separate pools.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use archive_core::tls::{ReloadableCertificate, TlsError};
use archive_core::Store;
use imap_next::imap_types::core::Text;
use imap_next::imap_types::response::{Code, Greeting, GreetingKind};
use imap_next::server::{Options, Server};
use imap_next::stream::Stream;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::command::capabilities;
use crate::config::ImapConfig;
use crate::envelope_cache::EnvelopeCache;
use crate::pool::{Pools, Refused, Slot};
use crate::protocol::Protocol;
use crate::session::{self, Conn, Session};
use archive_core::access::{LoginGate, PerUser};

/// After a shutdown starts, how long sessions have to finish the command in hand and say BYE
/// (each BYE itself has a shorter write deadline); what is still open then is closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Running listeners; dropping this does not stop them, [`Listening::shutdown`] does.
pub struct Listening {
    /// Bound address of the plain listener (port 0 in the config becomes the real port).
    pub plain: Option<SocketAddr>,
    /// Bound address of the implicit-TLS listener.
    pub tls: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    certificate: Arc<ReloadableCertificate>,
    tls_dir: PathBuf,
    pools: Arc<Pools>,
}

/// Connections open now, by pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    /// Not logged in yet.
    pub waiting: usize,
    /// Logged in.
    pub authenticated: usize,
}

impl Listening {
    /// Connections open now (of both listeners).
    pub fn sessions(&self) -> Sessions {
        self.pools.sessions()
    }

    /// A handle that reads [`Listening::sessions`] from elsewhere (the admin listener), also
    /// after `self` is gone.
    pub fn sessions_probe(&self) -> impl Fn() -> Sessions + Send + Sync + 'static {
        let pools = Arc::clone(&self.pools);
        move || pools.sessions()
    }

    /// Where the TLS certificate comes from now.
    pub fn certificate(&self) -> archive_core::tls::CertificateOrigin {
        self.certificate.origin()
    }

    /// Loads the certificate again as `config` names it (renewed files, other files, or the
    /// self-signed pair): new handshakes use it, sessions already up keep theirs. The rest of
    /// `[imap]` takes a restart. On error the current certificate stays.
    pub fn reload_certificate(&self, config: &ImapConfig) -> Result<(), TlsError> {
        self.certificate
            .reload(&crate::tls::certificate_source(config, &self.tls_dir))
    }

    /// Stops accepting and ends every connection: each session says `* BYE` between
    /// commands; after a few seconds what is still open is closed without one.
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
    pools: Arc<Pools>,
    envelopes: Arc<EnvelopeCache>,
    user_sessions: Arc<PerUser>,
    commands: Arc<crate::metrics::Commands>,
}

/// Why the IMAP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The `[imap]` configuration is inconsistent (the text names the key).
    #[error("{0}")]
    Config(String),
    #[error("imap TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("imap: cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Binds the configured listeners and serves until [`Listening::shutdown`]. The self-signed
/// certificate (if none is configured) lives in `tls_dir`. Needs a multi-threaded tokio
/// runtime (store calls use `block_in_place`).
pub async fn start(
    store: Arc<Store>,
    gate: Arc<LoginGate>,
    config: ImapConfig,
    tls_dir: &Path,
) -> Result<Listening, StartError> {
    config.validate().map_err(StartError::Config)?;
    let certificate = ReloadableCertificate::load(&crate::tls::certificate_source(&config, tls_dir))?;
    let acceptor = crate::tls::acceptor(&certificate)?;
    let (stop, stopped) = watch::channel(false);
    let plain_addr = config.plain;
    let tls_addr = config.tls;
    let envelopes = Arc::new(EnvelopeCache::new(config.limits.envelope_cache_mib << 20));
    let user_sessions = Arc::new(PerUser::new(config.limits.max_connections_per_user));
    let pools = Pools::new(config.limits.clone());
    let shared = Arc::new(Shared {
        store,
        gate,
        config,
        acceptor,
        pools,
        envelopes,
        user_sessions,
        commands: Arc::new(crate::metrics::Commands::new()),
    });
    let mut listening = Listening {
        plain: None,
        tls: None,
        stop,
        tasks: Vec::new(),
        certificate,
        tls_dir: tls_dir.to_path_buf(),
        pools: Arc::clone(&shared.pools),
    };
    for (addr, implicit_tls) in [(plain_addr, false), (tls_addr, true)] {
        let Some(addr) = addr else { continue };
        let listen = |source| StartError::Listen { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(listen)?;
        let bound = listener.local_addr().map_err(listen)?;
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
        let slot = match shared.pools.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                // Plain text even on the TLS port: nothing else can be said before a handshake
                // this connection will not get. The write is bounded: the socket is new, its
                // buffer empty.
                let why = match refused {
                    Refused::Network => "* BYE too many connections\r\n",
                    Refused::NetworkWaiting => "* BYE too many connections waiting to log in\r\n",
                };
                let _ = tcp.write_all(why.as_bytes()).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        // Sessions end themselves, with a BYE, on shutdown and when pushed out.
        connections.spawn(async move { connection(tcp, peer, implicit_tls, &shared, slot, stop).await });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::info!(
            open = connections.len(),
            "imap shutdown: closing sessions still busy"
        );
    }
    connections.shutdown().await;
}

/// A TLS handshake, bounded by the login deadline, given up on shutdown or push-out (nothing
/// can be said to a peer without TLS yet).
async fn handshake(
    shared: &Shared,
    tcp: TcpStream,
    peer: SocketAddr,
    login_deadline: Instant,
    stop: &mut watch::Receiver<bool>,
    pushed_out: &Notify,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let handshake = tokio::time::timeout_at(login_deadline.into(), shared.acceptor.accept(tcp));
    tokio::select! {
        outcome = handshake => match outcome {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "imap TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "imap TLS handshake timed out");
                None
            }
        },
        _ = stop.wait_for(|stop| *stop) => None,
        _ = pushed_out.notified() => None,
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    shared: &Shared,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
) {
    // The login deadline runs from connect: handshakes and commands before LOGIN count.
    let login_deadline = Instant::now() + shared.config.limits.login_timeout;
    let pushed_out = slot.pushed_out();
    let stream = if implicit_tls {
        match handshake(shared, tcp, peer, login_deadline, &mut stop, &pushed_out).await {
            Some(tls) => crate::tls::session_stream(tls),
            None => return,
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
        // The listener's configuration decides, never the peer's address: a local proxy or
        // a listener on another loopback address says nothing about the path to the user.
        login_needs_tls: !implicit_tls && !shared.config.allow_plaintext_login,
        slot,
        login_deadline,
        user: None,
        selected: None,
        condstore: false,
        idle_tag: None,
        auth_tag: None,
        stop,
        pushed_out,
        commands: Arc::clone(&shared.commands),
    };
    let mut conn = Conn::new(
        Protocol::new(
            server(&session, "mailvault archive ready (read-only IMAP)"),
            session.limits.max_literal_bytes,
        ),
        stream,
    );
    while let Some(done) = session::run(&mut session, conn).await {
        // STARTTLS: the plain-text state machine (and anything pipelined into it) is
        // dropped; TLS starts on the bare socket with a new one.
        let tcp: TcpStream = done.stream.into();
        // STARTTLS comes before LOGIN only, so the login deadline bounds the handshake.
        let pushed_out = Arc::clone(&session.pushed_out);
        let handshake = handshake(shared, tcp, peer, login_deadline, &mut session.stop, &pushed_out);
        let Some(tls) = handshake.await else {
            return;
        };
        session.tls = true;
        session.starttls = false;
        // Nothing is sent now: the client speaks first after STARTTLS (RFC 3501 §6.2.1).
        conn = Conn::new(
            Protocol::after_starttls(server(&session, "TLS active"), session.limits.max_literal_bytes),
            crate::tls::session_stream(tls),
        );
    }
}

/// imap-next's server for a connection, with a greeting that announces the current
/// capabilities.
fn server(session: &Session, text: &str) -> Server {
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
    Server::new(options, greeting)
}
