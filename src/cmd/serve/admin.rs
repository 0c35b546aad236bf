//! The admin listener of `serve`: installs the Prometheus recorder behind the `metrics`
//! facade (the libraries record events through it), and answers `/metrics`, `/healthz` and
//! `/readyz` (archive_web::admin) from the store's state, read when asked.
//!
//! Events (messages, fsyncs, commands, login failures) are counted where they happen, in the
//! libraries. State that is cheap to read (checkpoint age, search index lag, sessions open,
//! disk free, the last `mailvault verify`) is read at scrape time instead of being kept up to
//! date on the hot paths.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use archive_core::Store;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds of the fsync histogram (seconds).
const FSYNC_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Bucket bounds of the records-per-fsync histogram: powers of two up to a large batch.
const COMMIT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];
/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the process's metrics recorder and describes every metric; once per process,
/// before the store opens and the front doors start (their handles bind to it then).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(archive_smtp::metrics::ACK_SECONDS.into()),
            archive_smtp::metrics::ACK_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(archive_core::metrics::FSYNC_SECONDS.into()),
                FSYNC_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(archive_core::metrics::COMMIT_RECORDS.into()),
                COMMIT_BUCKETS,
            )
        })
        .context("metrics buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    archive_core::metrics::describe();
    archive_smtp::metrics::describe();
    archive_imap::metrics::describe();
    super::anchoring::witness::describe();
    super::offload::describe();
    describe_gauges();
    // Login failures are rare: their series exist from the start, so a rate() over them
    // has a first sample of 0 instead of starting at the first failure.
    for door in ["imap", "smtp", "lmtp"] {
        for reason in ["failed", "rate_limited", "unavailable"] {
            counter!(archive_core::metrics::LOGIN_FAILURES, "door" => door, "reason" => reason).absolute(0);
        }
    }
    Ok(handle)
}

/// Folds histogram samples into buckets now and then, so memory stays bounded between
/// scrapes (or without any).
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

const CHECKPOINT_AGE: &str = "mailvault_checkpoint_age_seconds";
const UNSIGNED: &str = "mailvault_checkpoint_unsigned_records";
const SEARCH_LAG_RECORDS: &str = "mailvault_search_index_lag_records";
const SEARCH_LAG_SECONDS: &str = "mailvault_search_index_lag_seconds";
const IMAP_SESSIONS: &str = "mailvault_imap_sessions";
const DISK_FREE: &str = "mailvault_disk_free_bytes";
const DISK_RESERVE: &str = "mailvault_disk_reserve_bytes";
const READY: &str = "mailvault_ready";
const FSYNCS: &str = "mailvault_store_fsyncs_total";
const APPENDS: &str = "mailvault_store_records_appended_total";
const REWINDS: &str = "mailvault_store_rewinds_total";
const LAST_SEQ: &str = "mailvault_store_last_seq";
const VERIFY_TIME: &str = "mailvault_verify_last_run_timestamp_seconds";
const VERIFY_OK: &str = "mailvault_verify_last_success";
const VERIFY_RECORDS: &str = "mailvault_verify_last_records";

fn describe_gauges() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_gauge!(
        CHECKPOINT_AGE,
        Unit::Seconds,
        "Seconds since this server wrote the newest signed checkpoint (or started, if it wrote none)."
    );
    describe_gauge!(
        UNSIGNED,
        "Records after the newest checkpoint, not yet under a signature."
    );
    describe_gauge!(
        SEARCH_LAG_RECORDS,
        "Durable records the full-text search index has not applied yet."
    );
    describe_gauge!(
        SEARCH_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest durable record not yet searchable (0 when caught up)."
    );
    describe_gauge!(
        IMAP_SESSIONS,
        "IMAP connections open, by state (waiting: not logged in yet; authenticated)."
    );
    describe_gauge!(
        DISK_FREE,
        Unit::Bytes,
        "Free bytes (for unprivileged users) on the file system of the data directory."
    );
    describe_gauge!(
        DISK_RESERVE,
        Unit::Bytes,
        "Free space below which /readyz answers 503 ([admin] disk_reserve_mib)."
    );
    describe_gauge!(
        READY,
        "1 when /readyz answers 200 (the store can acknowledge mail and the listeners are up), else 0."
    );
    describe_counter!(
        FSYNCS,
        "fsyncs of the log's active segment made for acknowledgements (group commits)."
    );
    describe_counter!(APPENDS, "Records appended to the log since the server started.");
    describe_counter!(
        REWINDS,
        "Times the log went back to its last durable record after a failed fsync."
    );
    describe_gauge!(LAST_SEQ, "Sequence number of the log's last record.");
    describe_gauge!(
        VERIFY_TIME,
        Unit::Seconds,
        "When `mailvault verify` last finished on this data directory (Unix time)."
    );
    describe_gauge!(
        VERIFY_OK,
        "1 if the last `mailvault verify` found the log intact, 0 if it did not."
    );
    describe_gauge!(VERIFY_RECORDS, "Records the last `mailvault verify` checked.");
}

/// Where the server is in its life, for `/readyz`.
#[derive(Clone, Default)]
pub struct Phase(Arc<AtomicU8>);

const STARTING: u8 = 0;
const RUNNING: u8 = 1;
const STOPPING: u8 = 2;

impl Phase {
    /// Every listener is bound and accepting.
    pub fn running(&self) {
        self.0.store(RUNNING, Ordering::Relaxed);
    }

    /// Shutting down: no new sessions.
    pub fn stopping(&self) {
        self.0.store(STOPPING, Ordering::Relaxed);
    }

    fn check(&self) -> Result<(), String> {
        match self.0.load(Ordering::Relaxed) {
            RUNNING => Ok(()),
            STARTING => Err("starting: the listeners are not all bound yet".into()),
            _ => Err("shutting down".into()),
        }
    }
}

/// What the admin endpoints read.
pub struct ServeProbe {
    pub store: Arc<Store>,
    pub data: PathBuf,
    pub disk_reserve: u64,
    pub phase: Phase,
    pub imap_sessions: Box<dyn Fn() -> archive_imap::Sessions + Send + Sync>,
    pub handle: PrometheusHandle,
}

impl ServeProbe {
    fn disk(&self) -> Result<(), String> {
        let free = disk_free(&self.data)
            .map_err(|e| format!("disk: cannot read the free space of {}: {e}", self.data.display()))?;
        if free < self.disk_reserve {
            return Err(format!(
                "disk: {} MiB free in {}, below the reserve of {} MiB ([admin] disk_reserve_mib)",
                free >> 20,
                self.data.display(),
                self.disk_reserve >> 20
            ));
        }
        Ok(())
    }
}

impl archive_web::admin::Probe for ServeProbe {
    fn readiness(&self) -> Result<(), String> {
        self.phase.check()?;
        if let Some(trouble) = self.store.health().trouble {
            return Err(format!("store: {trouble}"));
        }
        self.disk()
    }

    fn metrics(&self) -> String {
        let health = self.store.health();
        gauge!(CHECKPOINT_AGE).set(health.checkpoint_age.as_secs_f64());
        gauge!(UNSIGNED).set(health.unsigned_records as f64);
        gauge!(SEARCH_LAG_RECORDS).set(health.search_lag_records as f64);
        gauge!(SEARCH_LAG_SECONDS).set(health.search_lag.map_or(0.0, |d| d.as_secs_f64()));
        let sessions = (self.imap_sessions)();
        gauge!(IMAP_SESSIONS, "state" => "waiting").set(sessions.waiting as f64);
        gauge!(IMAP_SESSIONS, "state" => "authenticated").set(sessions.authenticated as f64);
        if let Ok(free) = disk_free(&self.data) {
            gauge!(DISK_FREE).set(free as f64);
        }
        gauge!(DISK_RESERVE).set(self.disk_reserve as f64);
        let ready = self.phase.check().is_ok() && health.trouble.is_none() && self.disk().is_ok();
        gauge!(READY).set(if ready { 1.0 } else { 0.0 });
        let stats = self.store.stats();
        counter!(FSYNCS).absolute(stats.fsyncs);
        counter!(APPENDS).absolute(stats.appends);
        counter!(REWINDS).absolute(stats.rewinds);
        gauge!(LAST_SEQ).set(stats.last_seq as f64);
        if let Some(last) = crate::cmd::verify::LastRun::read(&self.data) {
            gauge!(VERIFY_TIME).set(last.finished as f64);
            gauge!(VERIFY_OK).set(if last.intact { 1.0 } else { 0.0 });
            gauge!(VERIFY_RECORDS).set(last.records as f64);
        }
        self.handle.render()
    }
}

/// Free bytes for unprivileged users on the file system holding `path`.
fn disk_free(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the path holds a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of the right type; statvfs fills it on 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let stat = unsafe { stat.assume_init() };
    // The fields are u64 here, narrower on some other platforms.
    #[allow(clippy::unnecessary_cast)]
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}
