//! Listeners: accept loops with an allow-list and a session limit, and graceful shutdown —
//! stop accepting, let sessions finish their transaction, then return.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use archive_core::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
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
}

impl Intake {
    /// Binds the configured listeners and starts accepting. `tls_dir` holds the self-signed
    /// certificate when none is configured. Sessions end when `shutdown` turns true.
    pub async fn start(
        store: Arc<Store>,
        config: IntakeConfig,
        tls_dir: &Path,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Intake, String> {
        config.validate()?;
        let tls = Some(crate::tls::acceptor(&config, tls_dir)?);
        let metrics = Arc::new(Metrics::default());
        let ctx = Arc::new(Context {
            store,
            config: config.clone(),
            tls,
            metrics: metrics.clone(),
        });
        let mut intake = Intake {
            listening: Vec::new(),
            metrics,
            loops: JoinSet::new(),
        };
        for (protocol, addr) in [(Protocol::Lmtp, config.lmtp), (Protocol::Smtp, config.smtp)] {
            let Some(addr) = addr else { continue };
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("intake.{}: cannot listen on {addr}: {e}", protocol.name()))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            intake.listening.push((protocol, local));
            intake
                .loops
                .spawn(accept_loop(listener, protocol, ctx.clone(), shutdown.clone()));
        }
        Ok(intake)
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
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                admit(tcp, peer, protocol, &ctx, &mut sessions, &shutdown).await;
            }
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

async fn admit(
    tcp: TcpStream,
    peer: SocketAddr,
    protocol: Protocol,
    ctx: &Arc<Context>,
    sessions: &mut JoinSet<()>,
    shutdown: &watch::Receiver<bool>,
) {
    use tokio::io::AsyncWriteExt;
    let trusted = ctx.config.allow.iter().any(|net| net.contains(&peer.ip()));
    let refuse = if !trusted && ctx.config.auth_users.is_empty() {
        Some("554 5.7.1 this client may not use the archive\r\n")
    } else if sessions.len() >= ctx.config.max_sessions {
        Some("421 4.7.0 too many sessions, try again later\r\n")
    } else {
        None
    };
    if let Some(text) = refuse {
        tracing::info!(%peer, protocol = protocol.name(), reply = text.trim_end(), "session refused");
        let mut tcp = tcp;
        let _ = tcp.write_all(text.as_bytes()).await;
        return;
    }
    Metrics::add(&ctx.metrics.sessions, 1);
    let _ = tcp.set_nodelay(true);
    let session = Session::new(ctx.clone(), protocol, peer, tcp, trusted);
    sessions.spawn(session.run(shutdown.clone()));
}
