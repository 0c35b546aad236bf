//! `mailvault serve`: one process for intake and read-only IMAP (and the web UI when it
//! lands). Creates the store on first start in the built-in default ./mailvault-data (or with
//! `--create`); SIGTERM/SIGINT stop accepting, let transactions in flight finish, write a
//! checkpoint and exit 0; SIGHUP reloads what can change live (`reload`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use archive_core::access::{LoginGate, PassThrough};
use archive_core::tls::CertificateOrigin;
use archive_core::Store;
use archive_smtp::Intake;

mod admin;
pub mod anchoring;
mod audit_spool;
pub mod offload;
mod reload;

use super::CmdResult;
use crate::config::Config;
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (TOML; see `mailvault config example`).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    listeners: ListenerArgs,
    /// Create the store (and its signing key) if there is none at --data. Without it, only
    /// the built-in default ./mailvault-data is created on first start.
    #[arg(long)]
    create: bool,
}

/// The command line's listener options, which override the configuration file (`serve`, and
/// `doctor`, which must see the listeners `serve` would open).
#[derive(clap::Args, Debug)]
pub struct ListenerArgs {
    /// LMTP listener address, or `none` (overrides intake.lmtp).
    #[arg(long, value_parser = parse_listener)]
    lmtp: Option<Listener>,
    /// SMTP listener address, or `none` (overrides intake.smtp).
    #[arg(long, value_parser = parse_listener)]
    smtp: Option<Listener>,
    /// IMAP (STARTTLS) listener address, or `none` (overrides imap.plain).
    #[arg(long, value_parser = parse_listener)]
    imap: Option<Listener>,
    /// IMAP over TLS listener address, or `none` (overrides imap.tls).
    #[arg(long, value_parser = parse_listener)]
    imaps: Option<Listener>,
    /// Web listener address (login, JSON API), or `none` (overrides web.listen).
    #[arg(long, value_parser = parse_listener)]
    web: Option<Listener>,
    /// Admin listener address (/metrics, /healthz, /readyz), or `none` (overrides
    /// admin.listen).
    #[arg(long, value_parser = parse_listener)]
    admin: Option<Listener>,
}

/// A listener address from the command line; `None` disables it.
#[derive(Clone, Debug)]
pub struct Listener(Option<SocketAddr>);

fn parse_listener(s: &str) -> Result<Listener, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Listener(None));
    }
    s.parse()
        .map(|a| Listener(Some(a)))
        .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:2525 (or `none`)"))
}

/// Stack of each runtime thread (async workers and blocking FETCH/store threads).
const IO_THREAD_STACK: usize = 8 << 20;

/// The configuration `serve` runs with: the file (or the defaults) with the command line's
/// listener options on top, validated.
fn load_config(args: &Args) -> anyhow::Result<Config> {
    resolve_config(args.config.as_deref(), &args.listeners)
}

/// The configuration file `config` (or the defaults) with `listeners` on top, validated: what
/// `serve` runs with, for `doctor` to check.
pub fn resolve_config(config: Option<&Path>, listeners: &ListenerArgs) -> anyhow::Result<Config> {
    let mut config = match config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(Listener(a)) = listeners.lmtp {
        config.intake.lmtp = a;
    }
    if let Some(Listener(a)) = listeners.smtp {
        config.intake.smtp = a;
    }
    if let Some(Listener(a)) = listeners.imap {
        config.imap.plain = a;
    }
    if let Some(Listener(a)) = listeners.imaps {
        config.imap.tls = a;
    }
    if let Some(Listener(a)) = listeners.web {
        config.web.listen = a;
    }
    if let Some(Listener(a)) = listeners.admin {
        config.admin.listen = a;
    }
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// Where the front doors keep their self-signed certificates.
pub fn tls_dir(cli: &Cli) -> PathBuf {
    cli.data.join("tls")
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    // SIGHUP means "reload" here, never "die", also before its handler is installed below
    // (opening a large store takes a while).
    // SAFETY: setting a signal disposition; no handler code runs.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let config = load_config(args)?;
    let log = crate::logging::init(&config.server.log, config.server.log_format)?;
    // Before the store opens: S3 credentials that cannot be used (a credentials file others
    // can read) are a configuration error like any other.
    if let Some(s3) = &config.storage.s3 {
        s3.credentials().context("storage.s3")?;
    }
    // Before the store opens: a bad CA file is a configuration error like any other.
    let pass_through = PassThrough::new(&config.auth).map_err(anyhow::Error::msg)?;
    if let Some(p) = &pass_through {
        tracing::info!(upstream = %p.upstream(), "pass-through logins");
    }

    // Before anything records: the front doors bind their counters to it as they start.
    let metrics_handle = match config.admin.listen {
        Some(_) => Some(admin::install()?),
        None => None,
    };
    let created = super::ensure_store(cli, args.create || cli.data_is_default, "mailvault serve")?;
    // Records of segments evicted to S3 are read back from the bucket.
    let store_config = archive_core::StoreConfig {
        remote: crate::remote_segments::remote_config(config.storage.s3.as_ref())?,
        ..config.store_config()
    };
    let store = Arc::new(Store::open(&cli.data, &cli.key_path(), store_config)?);
    tracing::info!(data = %cli.data.display(), origin = store.origin(), "store open");
    if created.is_some() {
        announce_new_store(cli, &store)?;
    }
    if let Some(cut) = store.recovered() {
        tracing::warn!(%cut, "recovery cut what was never acknowledged off the log's end (audited)");
    }
    // The start comes first in the trail, before any front door takes a connection; it
    // names the listeners as configured (port 0: a free port, logged as `listening`).
    let configured = [
        ("lmtp", config.intake.lmtp),
        ("smtp", config.intake.smtp),
        ("imap", config.imap.plain),
        ("imaps", config.imap.tls),
        ("web", config.web.listen),
        ("admin", config.admin.listen),
    ];
    let listeners: Vec<String> = configured
        .iter()
        .filter_map(|(name, addr)| addr.map(|a| format!("{name}={a}")))
        .collect();
    store
        .append_audit(&server_event("start", listeners.join(" ")))
        .context("recording the start in the audit trail")?;
    // Audit events that `mailvault user …` and others left while a server owned the log.
    let spool = audit_spool::SpoolThread::start(store.clone())?;
    // Checkpoints leaving the machine (`[anchoring]`: hook, witnesses); needs a restart to change.
    let anchoring = anchoring::AnchoringThread::start(store.clone(), &config.anchoring)?;
    // Sealed segments to S3 Object Lock (`[storage.s3]`); needs a restart to change.
    let offload = offload::OffloadThread::start(store.clone(), config.storage.s3.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mailvault-io")
        // Parsing and encoding are bounded in depth (MIME and THREAD nest at most 100
        // levels), so no stack grows with what a sender chose; this is headroom over
        // tokio's 2 MiB for those 100 levels of imap-codec's recursive encoder. Address
        // space only: pages are touched as used.
        .thread_stack_size(IO_THREAD_STACK)
        .build()
        .context("starting the async runtime")?;
    let tls_dir = tls_dir(cli);
    let mut reloader = reload::Reloader::new(args, &cli.data, log, config);
    let metrics = runtime.block_on(async {
        // Handlers first: a SIGTERM that arrives as soon as we announce the listeners must
        // already mean a clean stop, not the default of dying on the spot.
        let mut signals = Signals::install()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // One gate for every front door: a name's or a client's failed logins count the
        // same whether they were tried over IMAP or SMTP AUTH.
        let gate = Arc::new(LoginGate::with_pass_through(&cli.data, pass_through));
        let config = reloader.running();
        let intake = Intake::start(
            store.clone(),
            config.intake.clone(),
            gate.clone(),
            &tls_dir,
            stopped,
        )
        .await?;
        for (protocol, addr) in &intake.listening {
            tracing::info!(protocol = %protocol.name(), %addr, "listening");
        }
        let imap = archive_imap::start(store.clone(), gate.clone(), config.imap.clone(), &tls_dir).await?;
        for (protocol, addr) in [("imap", imap.plain), ("imaps", imap.tls)] {
            if let Some(addr) = addr {
                tracing::info!(protocol = %protocol, %addr, "listening");
            }
        }
        let web = archive_web::start(store.clone(), gate, config.web.clone(), &tls_dir).await?;
        if let Some(web) = &web {
            tracing::info!(protocol = %"web", addr = %web.addr, "listening");
        }
        let phase = admin::Phase::default();
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_server = match (config.admin.listen, metrics_handle) {
            (Some(addr), Some(handle)) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("admin.listen: cannot listen on {addr}"))?;
                let local = listener.local_addr().context("admin.listen")?;
                tokio::spawn(admin::upkeep(handle.clone()));
                let probe = Arc::new(admin::ServeProbe {
                    store: store.clone(),
                    data: cli.data.clone(),
                    disk_reserve: config.admin.disk_reserve_mib.saturating_mul(1 << 20),
                    phase: phase.clone(),
                    imap_sessions: Box::new(imap.sessions_probe()),
                    handle,
                });
                // Up until the front doors have stopped: /readyz says "shutting down" meanwhile.
                let shutdown = async move {
                    let _ = admin_stopped.await;
                };
                tracing::info!(protocol = %"admin", addr = %local, "listening");
                Some(tokio::spawn(archive_web::admin::serve(listener, probe, shutdown)))
            }
            _ => None,
        };
        phase.running();
        log_certificates(&intake, &imap, web.as_ref());
        if created.is_some() {
            announce_next_step(cli);
        }
        let metrics = intake.metrics.clone();
        while signals.next().await == Signal::Reload {
            reloader.reload(&intake, &imap, web.as_ref());
        }
        tracing::info!("shutting down: no new sessions; finishing transactions in flight");
        phase.stopping();
        let _ = stop.send(true);
        imap.shutdown().await;
        if let Some(web) = web {
            web.shutdown().await;
        }
        let grace = Duration::from_secs(reloader.running().server.shutdown_grace_secs);
        intake.wait(grace).await;
        let _ = admin_stop.send(());
        if let Some(server) = admin_server {
            // Connections still open (a scrape in progress) are not waited for long.
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
        anyhow::Ok(metrics)
    })?;
    drop(runtime);
    let m = metrics.snapshot();
    let stats = store.stats();
    tracing::info!(
        accepted = m.accepted,
        rejected = m.rejected,
        bytes = m.bytes,
        sessions = m.sessions,
        fsyncs = stats.fsyncs,
        appends = stats.appends,
        "intake stopped"
    );
    spool.stop();
    if let Some(offload) = offload {
        offload.stop();
    }
    if let Some(anchoring) = anchoring {
        anchoring.stop();
    }
    // A log that cannot take records now (a full disk) is not written at stop: the stop
    // stays clean (everything acknowledged is under a checkpoint), without its record.
    match store.health().trouble {
        Some(why) => tracing::error!(%why, "the stop is not in the audit trail: the log takes no records"),
        None => {
            if let Err(e) = store.append_audit(&server_event("stop", "clean".into())) {
                tracing::error!(error = %e, "the stop is not in the audit trail");
            }
        }
    }
    match Arc::try_unwrap(store) {
        Ok(store) => store.close()?,
        // A blocking append still holds the store: checkpoint now, the rest closes on drop.
        Err(store) => {
            store.checkpoint()?;
        }
    }
    tracing::info!("checkpoint written; bye");
    Ok(ExitCode::SUCCESS)
}

/// A `start` or `stop` record of this server: `target` after its version.
fn server_event(action: &str, target: String) -> archive_core::audit::AuditEvent {
    archive_core::audit::AuditEvent::new(
        "mailvault",
        action,
        format!("version {} {target}", env!("CARGO_PKG_VERSION")),
        "local",
    )
}

/// Which certificate each front door offers: the operator needs to know whether clients see
/// a self-signed one, and for which names.
fn log_certificates(intake: &Intake, imap: &archive_imap::Listening, web: Option<&archive_web::Listening>) {
    let web = web.and_then(|w| w.certificate()).map(|c| ("web", c));
    for (door, origin) in [("intake", intake.certificate()), ("imap", imap.certificate())]
        .into_iter()
        .chain(web)
    {
        let made = matches!(origin, CertificateOrigin::SelfSigned { made: true, .. });
        if made {
            tracing::info!(%door, certificate = %origin, "made a self-signed TLS certificate; clients will ask to trust it (a real one: docs/OPERATIONS.md §TLS certificates)");
        } else {
            tracing::info!(%door, certificate = %origin, "TLS certificate");
        }
    }
}

/// What a first start made, and what to do next: the operator reads this once.
fn announce_new_store(cli: &Cli, store: &Store) -> anyhow::Result<()> {
    let public = store.layout().verifier_key()?.encode();
    tracing::info!(
        data = %cli.data.display(),
        origin = store.origin(),
        "created a new store (first start)"
    );
    tracing::info!(
        key = %cli.key_path().display(),
        "created the signing key: back it up now, apart from the store's backups; without it \
         the archive cannot accept mail (docs/OPERATIONS.md §The signing key)"
    );
    tracing::info!(%public, "public key: give it to auditors to pin (`mailvault key show`)");
    Ok(())
}

/// The step after a first start, said last, after the listeners and certificates.
fn announce_next_step(cli: &Cli) {
    let data = if cli.data_is_default {
        String::new()
    } else {
        format!("--data {} ", cli.data.display())
    };
    tracing::info!("next: add a user, `mailvault {data}user add NAME --address NAME@example.com` (it works while the server runs)");
}

/// What a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    /// SIGTERM, SIGINT: a clean stop.
    Stop,
    /// SIGHUP: read the configuration, certificates and users again.
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP, installed before the listeners are announced.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            // A stream that ended (only when the runtime does) is left out, never spun on.
            Some(()) = self.hup.recv() => Signal::Reload,
        }
    }
}
