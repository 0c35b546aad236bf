//! `[storage.s3]`: every sealed segment goes to S3 Object Lock (COMPLIANCE), and its receipt
//! into the log. One thread of its own, with its own small async runtime for the S3 client:
//! intake never waits for it, and it only reads sealed segment files (mode 0400, never
//! written again) and appends receipts.
//!
//! Exactly one receipt per segment, also across crashes: the receipts in the log are read at
//! start; before every upload the object key is asked for (HEAD), so an object uploaded by a
//! run that died before its receipt became durable is recorded, not uploaded again; uploads
//! are create-only (`If-None-Match: *`) where the store supports it. A failure is logged,
//! counted, kept in `<data>/offload-status.json` for `mailvault status`, and retried with
//! exponential backoff; the segment stays in the backlog until it has its receipt.
//!
//! With `cache_size`, local copies of offloaded segments beyond that size are then evicted,
//! oldest first (`evict.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use archive_core::log::evicted::SegmentSource;
use archive_core::log::record::{LeafBody, OffloadReceipt};
use archive_core::log::segment::{list_segments, segment_file_name};
use archive_core::Store;
use archive_s3::{Bucket, ObjectInfo, Put, S3Settings};

mod evict;

/// How often the log directory is looked at for newly sealed segments.
const INTERVAL: Duration = Duration::from_secs(2);
/// The first wait after a failure; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub const BACKLOG: &str = "mailvault_offload_backlog_segments";
pub const FAILURES: &str = "mailvault_offload_failures_total";
pub const OFFLOADED: &str = "mailvault_offload_segments_total";
pub const EVICTED: &str = "mailvault_offload_evicted_segments_total";

/// Describes the offload metrics (with the recorder, once per process).
pub fn describe() {
    metrics::describe_gauge!(
        BACKLOG,
        "Sealed segments without an offload receipt yet (waiting or failing)."
    );
    metrics::describe_counter!(
        FAILURES,
        "Offload attempts that failed (each is retried with backoff)."
    );
    metrics::describe_counter!(
        OFFLOADED,
        "Segments offloaded and receipted since the server started."
    );
    metrics::describe_counter!(
        EVICTED,
        "Offloaded segments whose local copy was replaced by a stub (cache_size) since the server started."
    );
}

/// Where the server keeps what `mailvault status` shows about offloading.
pub fn status_path(data: &Path) -> PathBuf {
    data.join("offload-status.json")
}

/// What the thread last reported (`<data>/offload-status.json`, replaced atomically).
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    updated_at: String,
    bucket: String,
    backlog_segments: u64,
    offloaded_since_start: u64,
    failures_total: u64,
    /// Whether the last attempt failed and a retry is waiting.
    retrying: bool,
    last_error: Option<String>,
    last_error_at: Option<String>,
    last_offloaded_segment: Option<u64>,
    /// Local copies replaced by stubs since the start (`cache_size`).
    evicted_since_start: u64,
}

/// The running offload thread.
pub struct OffloadThread {
    stop: mpsc::Sender<()>,
    /// Also set at stop: an upload in flight gives up at once.
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl OffloadThread {
    /// Starts the thread when `[storage.s3]` is configured; credentials are read now, so a
    /// bad credentials file stops the start with its reason.
    pub fn start(store: Arc<Store>, settings: Option<&S3Settings>) -> anyhow::Result<Option<OffloadThread>> {
        let Some(settings) = settings else {
            return Ok(None);
        };
        let bucket = Bucket::connect(settings).context("storage.s3")?;
        let retention = settings.retention_period().map_err(anyhow::Error::msg)?;
        let cache_size = settings
            .cache_size
            .as_ref()
            .map(|s| {
                s.bytes()
                    .map_err(|e| anyhow::anyhow!("storage.s3.cache_size: {e}"))
            })
            .transpose()?;
        let settings = settings.clone();
        let (stop, stopped) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("mailvault-offload".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "offload: cannot start its runtime; nothing is offloaded");
                        return;
                    }
                };
                let mut offloader = Offloader {
                    store,
                    bucket,
                    settings,
                    retention,
                    cache_size,
                    runtime,
                    receipted: None,
                    identity_published: false,
                    report: Report::default(),
                    stopping: flag,
                };
                offloader.run(&stopped);
            })
            .context("starting the offload thread")?;
        tracing::info!("offload of sealed segments to S3 Object Lock on");
        Ok(Some(OffloadThread {
            stop,
            stopping,
            thread,
        }))
    }

    /// Stops the thread (an upload in flight is abandoned: the next start HEADs it).
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

struct Offloader {
    store: Arc<Store>,
    bucket: Bucket,
    settings: S3Settings,
    retention: Duration,
    /// Local copies of offloaded segments beyond this many bytes are evicted.
    cache_size: Option<u64>,
    runtime: tokio::runtime::Runtime,
    /// Segments with a receipt in the log (read once, then kept up to date).
    receipted: Option<BTreeMap<u64, Receipted>>,
    /// Whether the bucket is known to hold the store's identity object.
    identity_published: bool,
    report: Report,
    stopping: Arc<AtomicBool>,
}

impl Offloader {
    fn run(&mut self, stopped: &mpsc::Receiver<()>) {
        self.report.bucket = self.settings.bucket.clone();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let wait = match self.round().and_then(|()| self.evict()) {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    self.report.retrying = false;
                    INTERVAL
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::error!(error = %error, retry_in_secs = backoff.as_secs(), "offload failed; retrying");
                    metrics::counter!(FAILURES).increment(1);
                    self.report.failures_total += 1;
                    self.report.retrying = true;
                    self.report.last_error = Some(error);
                    self.report.last_error_at = Some(now_text());
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            self.write_report();
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            match stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Offloads every sealed segment without a receipt, oldest first; stops at the first
    /// failure (the caller backs off) or when asked to stop.
    fn round(&mut self) -> anyhow::Result<()> {
        let log_dir = self.store.layout().log_dir.clone();
        if !self.identity_published {
            self.publish_identity()?;
        }
        if self.receipted.is_none() {
            self.receipted = Some(receipts_in_log(&self.store)?);
        }
        let segments = list_segments(&log_dir)?;
        // Every segment but the newest is sealed: the writer seals one (checkpoint, fsync,
        // mode 0400) before it creates the next.
        let sealed = &segments[..segments.len().saturating_sub(1)];
        let receipted = self.receipted.as_ref().expect("read above");
        let pending: Vec<(u64, PathBuf)> = sealed
            .iter()
            .filter(|(n, _)| !receipted.contains_key(n))
            .cloned()
            .collect();
        self.set_backlog(pending.len() as u64);
        for (i, (first, path)) in pending.iter().enumerate() {
            if self.stopping.load(Ordering::Relaxed) {
                return Ok(());
            }
            let upload = offload_segment(
                &self.bucket,
                &self.settings,
                self.store.origin(),
                self.retention,
                *first,
                path,
            );
            let stopping = self.stopping.clone();
            let receipt = self.runtime.block_on(async move {
                tokio::select! {
                    r = upload => r.map(Some),
                    () = until_set(&stopping) => Ok(None),
                }
            });
            let Some(receipt) = receipt.with_context(|| format!("segment {}", segment_file_name(*first)))?
            else {
                return Ok(());
            };
            let seq = self
                .store
                .append_offload(receipt.clone())
                .with_context(|| format!("segment {}: recording the receipt", segment_file_name(*first)))?;
            tracing::info!(
                segment = *first,
                seq,
                key = %receipt.key,
                version = %receipt.version_id,
                retain_until = %date(receipt.retain_until),
                "segment offloaded; receipt in the log"
            );
            if let Some(r) = self.receipted.as_mut() {
                r.insert(
                    *first,
                    Receipted {
                        seq,
                        receipt: Some(receipt),
                    },
                );
            }
            metrics::counter!(OFFLOADED).increment(1);
            self.report.offloaded_since_start += 1;
            self.report.last_offloaded_segment = Some(*first);
            self.set_backlog((pending.len() - i - 1) as u64);
        }
        Ok(())
    }

    /// Puts the store's identity (origin, public key) next to its segments, once, so that
    /// the bucket describes itself to a restore (`cmd/bucket_identity.rs`).
    fn publish_identity(&mut self) -> anyhow::Result<()> {
        let public = self.store.layout().verifier_key()?.encode();
        let identity = crate::cmd::bucket_identity::BucketIdentity::new(self.store.origin(), &public);
        let until = unix_now() + self.retention.as_secs() as i64;
        let publish = crate::cmd::bucket_identity::publish(&self.bucket, &self.settings, &identity, until);
        let stopping = self.stopping.clone();
        let published = self.runtime.block_on(async move {
            tokio::select! {
                r = publish => r.map(|()| true),
                () = until_set(&stopping) => Ok(false),
            }
        });
        self.identity_published = published.context("the store's identity object")?;
        Ok(())
    }

    fn set_backlog(&mut self, n: u64) {
        metrics::gauge!(BACKLOG).set(n as f64);
        if self.report.backlog_segments != n {
            self.report.backlog_segments = n;
            self.write_report();
        }
    }

    fn write_report(&mut self) {
        self.report.updated_at = now_text();
        let path = status_path(&self.store.layout().dir);
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&self.report)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "offload: cannot write the status file");
        }
    }
}

/// A segment's receipt in the log: its seq, and the receipt (`None` while it is known only
/// from an evicted segment's stub; read when needed).
pub(super) struct Receipted {
    pub seq: u64,
    pub receipt: Option<OffloadReceipt>,
}

/// The segments the log's offload receipts name. Local segments are read; an evicted
/// segment's stub lists its own receipt and the receipts among its records, so nothing is
/// fetched from the bucket.
fn receipts_in_log(store: &Store) -> anyhow::Result<BTreeMap<u64, Receipted>> {
    let log = store.log_reader()?;
    let mut receipted = BTreeMap::new();
    for (first, source) in log.sources() {
        match source {
            SegmentSource::Local(_) => {
                for record in log.records_of_segment(*first, *first)? {
                    let record = record?;
                    let seq = record.seq();
                    if let LeafBody::Offload(r) = record.leaf.body {
                        receipted.insert(
                            r.segment,
                            Receipted {
                                seq,
                                receipt: Some(r),
                            },
                        );
                    }
                }
            }
            SegmentSource::Evicted(_) => {
                let stub = log
                    .evicted()
                    .stub(*first)?
                    .with_context(|| format!("the stub of evicted segment {first} went away"))?;
                for (segment, seq) in &stub.receipts {
                    receipted.entry(*segment).or_insert(Receipted {
                        seq: *seq,
                        receipt: None,
                    });
                }
                receipted.insert(
                    *first,
                    Receipted {
                        seq: stub.receipt_seq,
                        receipt: Some(stub.receipt.clone()),
                    },
                );
            }
        }
    }
    Ok(receipted)
}

/// Puts one sealed segment in the bucket (or finds it there from an earlier run) and returns
/// its receipt, after HEAD confirmed what the bucket holds.
async fn offload_segment(
    bucket: &Bucket,
    settings: &S3Settings,
    origin: &str,
    retention: Duration,
    first: u64,
    path: &Path,
) -> anyhow::Result<OffloadReceipt> {
    let key = settings.segment_key(origin, &segment_file_name(first));
    let (len, blake3) = archive_s3::blake3_of_file(path)?;
    let receipt = |info: &ObjectInfo| OffloadReceipt {
        segment: first,
        segment_len: len,
        segment_hash: blake3,
        retain_until: info.retain_until.unwrap_or_default(),
        bucket: bucket.name().to_string(),
        key: key.clone(),
        version_id: info.version_id.clone(),
    };
    // An object there already: uploaded by a run that stopped before its receipt.
    if let Some(info) = bucket.head(&key, None).await? {
        return adopt(bucket, &key, info, len, blake3)
            .await
            .map(|info| receipt(&info));
    }
    let retain_until = unix_now() + retention.as_secs() as i64;
    match bucket.put_file(path, &key, retain_until).await? {
        Put::Created {
            version_id,
            etag,
            sha256,
        } => {
            let version = Some(version_id.as_str()).filter(|v| !v.is_empty());
            let info = bucket
                .head(&key, version)
                .await?
                .with_context(|| format!("{key}: uploaded, but HEAD does not find it"))?;
            check_uploaded(&info, len, &etag, &sha256, retain_until)
                .with_context(|| format!("{key}: HEAD after the upload"))?;
            Ok(receipt(&info))
        }
        Put::Exists => {
            let info = bucket
                .head(&key, None)
                .await?
                .with_context(|| format!("{key}: the store said it exists, but HEAD does not find it"))?;
            adopt(bucket, &key, info, len, blake3)
                .await
                .map(|info| receipt(&info))
        }
    }
}

/// What HEAD says after our upload matches what we sent and asked for.
fn check_uploaded(
    info: &ObjectInfo,
    len: u64,
    etag: &str,
    sha256: &str,
    retain_until: i64,
) -> anyhow::Result<()> {
    if info.size != len {
        anyhow::bail!("{} bytes stored, {len} sent", info.size);
    }
    if !etag.is_empty() && !info.etag.is_empty() && info.etag != etag {
        anyhow::bail!("ETag {} differs from the upload's {etag}", info.etag);
    }
    // A whole-object checksum (a multipart one, `…-N`, is over the parts' checksums).
    if let Some(stored) = info.checksum_sha256.as_deref().filter(|c| !c.contains('-')) {
        if stored != sha256 {
            anyhow::bail!("SHA-256 {stored} differs from the segment's {sha256}");
        }
    }
    check_lock(info, retain_until)
}

fn check_lock(info: &ObjectInfo, retain_until: i64) -> anyhow::Result<()> {
    if info.lock_mode.as_deref() != Some("COMPLIANCE") {
        anyhow::bail!(
            "the object is not locked in COMPLIANCE mode (lock: {}); does the bucket have Object Lock enabled?",
            info.lock_mode.as_deref().unwrap_or("none")
        );
    }
    match info.retain_until {
        Some(until) if until >= retain_until => Ok(()),
        other => anyhow::bail!(
            "retained until {}, asked for {}",
            other.map_or_else(|| "no date".into(), date),
            date(retain_until)
        ),
    }
}

/// An object found at the segment's key from an earlier run: it is recorded if it is this
/// segment, byte for byte (streamed and hashed), and locked in COMPLIANCE mode.
async fn adopt(
    bucket: &Bucket,
    key: &str,
    info: ObjectInfo,
    len: u64,
    blake3: [u8; 32],
) -> anyhow::Result<ObjectInfo> {
    if info.size != len {
        anyhow::bail!(
            "{key}: the bucket holds an object of {} bytes there, the segment has {len}: not recorded, not overwritten",
            info.size
        );
    }
    let found = bucket.blake3_of(key, &info.version_id).await?;
    if found != Some((len, blake3)) {
        anyhow::bail!(
            "{key}: the bucket holds other bytes there than the segment's: not recorded, not overwritten"
        );
    }
    check_lock(&info, 0).with_context(|| key.to_string())?;
    tracing::info!(%key, version = %info.version_id, "segment found in the bucket from an earlier run: recorded, not uploaded again");
    Ok(info)
}

/// Returns once `flag` is set (checked every 100 ms).
async fn until_set(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}

fn date(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}
