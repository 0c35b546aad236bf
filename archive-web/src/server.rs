//! The web listener: accepts connections (HTTPS when `[web]` names a certificate, through
//! archive-core's TLS settings like IMAP's), serves each with hyper, and stops on request.
//!
//! Connections are served by hyper directly rather than `axum::serve` for three bounds it
//! does not let us set: a request head may be up to 2 MiB (so an absurd query string reaches
//! the API and gets a JSON 400 naming the limit instead of a bare 431), the head must arrive
//! within 30 s (a client that trickles it holds no slot for long), and at most
//! `max_connections` are open at once, `max_connections_per_ip` of them from one client
//! network. A request's body must arrive within 30 s too ([`read_bodies_in_time`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use archive_core::access::limiter::client_network;
use archive_core::access::{LoginGate, PerUser};
use archive_core::tls::{CertificateOrigin, CertificateSource, ReloadableCertificate, TlsError};
use archive_core::Store;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_sessions::cookie::time;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::auth::{AppState, ClientAddr};
use crate::config::WebConfig;
use crate::search_pool::SearchPool;
use crate::session::{SessionMemory, COOKIE};

/// Largest request head (request line and headers) hyper reads.
const MAX_HEAD_BYTES: usize = 2 << 20;
/// Time a client has to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a client has to send a request's body, from when its head arrived.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body (the login, logout and language forms).
const MAX_BODY_BYTES: usize = 16 * 1024;
/// Time open connections get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the web front door could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("web.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("web TLS certificate: {0}")]
    Tls(#[from] TlsError),
    #[error("web: cannot start the search threads: {0}")]
    Threads(std::io::Error),
}

/// A running web front door.
pub struct Listening {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether it speaks HTTPS.
    pub https: bool,
    certificate: Option<Arc<ReloadableCertificate>>,
    config: WebConfig,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The certificate source of `config` (its configured pair).
fn certificate_source<'a>(config: &'a WebConfig, tls_dir: &'a Path) -> CertificateSource<'a> {
    CertificateSource::from_config(
        &config.tls_certificate,
        &config.tls_key,
        tls_dir,
        "web",
        archive_core::tls::listener_names([&config.listen]),
    )
}

impl Listening {
    /// The certificate in use, for the log; `None` on plain HTTP.
    pub fn certificate(&self) -> Option<CertificateOrigin> {
        self.certificate.as_ref().map(|c| c.origin())
    }

    /// Loads the certificate files again (SIGHUP), for new connections. Whether the listener
    /// speaks HTTPS at all takes a restart.
    pub fn reload_certificate(&self, config: &WebConfig, tls_dir: &Path) -> Result<(), TlsError> {
        match &self.certificate {
            Some(certificate) if config.https() => certificate.reload(&certificate_source(config, tls_dir)),
            _ => Ok(()),
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &WebConfig {
        &self.config
    }

    /// Stops accepting, gives open connections a few seconds, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), self.task).await;
    }
}

/// The whole application: pages, login, the API, sessions, limits.
pub fn app(state: AppState) -> Router {
    let config = state.config.clone();
    let sessions = SessionManagerLayer::new(SessionMemory::new(config.max_sessions))
        .with_name(COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(config.https())
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            config.session_idle_secs.min(i64::MAX as u64) as i64,
        )));
    Router::new()
        .route("/", get(crate::login::home))
        .route("/login", get(crate::login::form).post(crate::login::submit))
        .route("/logout", post(crate::login::logout))
        .nest(
            "/api/v1",
            crate::api::router().layer(axum::middleware::map_response(crate::error::api_answers)),
        )
        .merge(crate::pages::router().layer(axum::middleware::map_response(crate::pages::page_errors)))
        .fallback(crate::pages::fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(sessions)
        .layer(axum::middleware::from_fn(read_bodies_in_time))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// A request's body is read whole before anything else, within [`BODY_TIMEOUT`] and
/// [`MAX_BODY_BYTES`]: one that announces more gets its 413 at once, before any session work
/// and without waiting for the body; one that sends more is cut there (413, also the answer,
/// never read, to a client that broke off); one that
/// trickles it gets 408 and the connection closes. Without the deadline a client could hold
/// a connection slot for ever by sending a form one byte at a time. (Our bodies are forms of
/// a few hundred bytes: holding one in memory costs nothing.)
async fn read_bodies_in_time(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use crate::error::ApiError;
    use axum::response::IntoResponse;
    let too_large = || ApiError::too_large(format!("the body is larger than {MAX_BODY_BYTES} bytes"));
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return too_large().into_response();
    }
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return too_large().into_response(),
        Err(_) => {
            let mut late = ApiError::request_timeout(format!(
                "the request's body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ))
            .into_response();
            late.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return late;
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(body),
    ))
    .await
}

/// Headers on every answer: no sniffing, no framing, no referrer to other sites.
/// `same-origin`, not `no-referrer`: under `no-referrer` Chromium sends `Origin: null` with
/// our own form posts (login, logout, language), which the CSRF check must refuse; links
/// leaving the site carry `rel=noreferrer` and go through `/out`, which sends none at all.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let h = response.headers_mut();
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    response
}

/// Binds `config.listen` and serves the web front door until [`Listening::shutdown`].
/// `None` when the listener is switched off.
pub async fn start(
    store: Arc<Store>,
    gate: Arc<LoginGate>,
    config: WebConfig,
    tls_dir: &Path,
) -> Result<Option<Listening>, WebError> {
    let Some(addr) = config.listen else {
        return Ok(None);
    };
    let certificate = if config.https() {
        Some(ReloadableCertificate::load(&certificate_source(
            &config, tls_dir,
        ))?)
    } else {
        None
    };
    let acceptor = match &certificate {
        Some(c) => {
            let mut server = (*c.server_config()?).clone();
            server.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(TlsAcceptor::from(Arc::new(server)))
        }
        None => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| WebError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| WebError::Bind { addr, source })?;
    let state = AppState {
        store,
        gate,
        config: Arc::new(config.clone()),
        searches: Arc::new(
            SearchPool::start(config.search_threads, config.search_queue).map_err(WebError::Threads)?,
        ),
    };
    let (stop, stopped) = watch::channel(false);
    let slots = Slots {
        all: Arc::new(Semaphore::new(config.max_connections)),
        per_network: Arc::new(PerUser::new(config.max_connections_per_ip)),
    };
    let task = tokio::spawn(accept_loop(listener, app(state), acceptor, slots, stopped));
    Ok(Some(Listening {
        addr: local,
        https: certificate.is_some(),
        certificate,
        config,
        stop,
        task,
    }))
}

/// Connection slots: `max_connections` in all, `max_connections_per_ip` per client network
/// (an IPv4 address or an IPv6 /64, as the login limiter counts), so that one network cannot
/// take every slot.
struct Slots {
    all: Arc<Semaphore>,
    per_network: Arc<PerUser>,
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    acceptor: Option<TlsAcceptor>,
    slots: Slots,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "web: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        // Full, in all or for the client's network: the connection is closed at once (dropped).
        let Some(network_slot) = slots.per_network.enter(&client_network(peer.ip()).to_string()) else {
            continue;
        };
        let Ok(slot) = slots.all.clone().try_acquire_owned() else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        let (app, acceptor, stopped) = (app.clone(), acceptor.clone(), stopped.clone());
        connections.spawn(async move {
            let _slots = (slot, network_slot);
            match acceptor {
                None => serve_connection(tcp, peer, app, stopped).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                    if let Ok(Ok(tls)) = handshake {
                        serve_connection(tls, peer, app, stopped).await;
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

/// Serves one connection until it closes or the server stops (then the request in flight
/// finishes and the connection closes).
async fn serve_connection<I>(io: I, peer: SocketAddr, app: Router, mut stopped: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ClientAddr(peer));
        app.clone().oneshot(request.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopped.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
