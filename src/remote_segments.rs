//! Evicted segments read back from S3: archive-core's `RemoteSegments` over archive-s3. Range
//! GETs of the object version a segment's receipt names, on a small runtime of their own (two
//! threads), so a caller on any thread — an IMAP FETCH worker, the indexer, the command line —
//! just waits for the answer, within a time limit. The core checks every byte that comes back.

use std::collections::HashMap;
use std::io::Read;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use archive_core::log::evicted::EvictedSegment;
use archive_core::log::remote::{RemoteError, RemoteSegments};
use archive_core::store::RemoteConfig;
use archive_s3::{Bucket, S3Settings};

/// Time a range read may take: this, plus a second per MiB asked for.
const FETCH_TIME: Duration = Duration::from_secs(30);
/// Time one chunk of a streamed object may take to arrive.
const CHUNK_TIME: Duration = Duration::from_secs(120);

/// Reads evicted segments from the buckets their receipts name (endpoint and credentials
/// from `[storage.s3]`).
pub struct S3Segments {
    /// `Option` only so that drop can shut it down without blocking (the last holder of the
    /// store may be an async task).
    runtime: Option<tokio::runtime::Runtime>,
    settings: S3Settings,
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
}

impl Drop for S3Segments {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl S3Segments {
    /// The reads for `settings` (credentials are read now: a bad file fails here).
    pub fn new(settings: &S3Settings) -> anyhow::Result<S3Segments> {
        settings.credentials().context("storage.s3")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mailvault-s3-read")
            .enable_all()
            .build()
            .context("starting the S3 reads' runtime")?;
        Ok(S3Segments {
            runtime: Some(runtime),
            settings: settings.clone(),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn bucket(&self, name: &str) -> Result<Arc<Bucket>, RemoteError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.get(name) {
            return Ok(b.clone());
        }
        let mut settings = self.settings.clone();
        settings.bucket = name.to_string();
        let bucket = Arc::new(Bucket::connect(&settings).map_err(|e| RemoteError::Failed(e.to_string()))?);
        buckets.insert(name.to_string(), bucket.clone());
        Ok(bucket)
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, RemoteError> {
        self.runtime
            .as_ref()
            .ok_or_else(|| RemoteError::Failed("the S3 reads are shut down".into()))
    }
}

impl RemoteSegments for S3Segments {
    fn fetch(&self, segment: &EvictedSegment, start: u64, end: u64) -> Result<Vec<u8>, RemoteError> {
        let bucket = self.bucket(&segment.receipt.bucket)?;
        let (key, version) = (segment.receipt.key.clone(), segment.receipt.version_id.clone());
        let limit = FETCH_TIME + Duration::from_secs((end - start) >> 20);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime()?.spawn(async move {
            let answer = tokio::time::timeout(limit, bucket.get_range(&key, &version, start, end)).await;
            let _ = tx.send(answer);
        });
        match rx.recv() {
            Ok(Ok(Ok(Some(bytes)))) => Ok(bytes),
            Ok(Ok(Ok(None))) => Err(RemoteError::Missing),
            Ok(Ok(Err(e))) => Err(RemoteError::Failed(e.to_string())),
            Ok(Err(_)) => Err(RemoteError::Failed(format!(
                "no answer within {} s",
                limit.as_secs()
            ))),
            Err(_) => Err(RemoteError::Failed("the S3 reads stopped".into())),
        }
    }

    fn stream(&self, segment: &EvictedSegment) -> Result<Box<dyn Read + Send>, RemoteError> {
        let bucket = self.bucket(&segment.receipt.bucket)?;
        let (key, version) = (segment.receipt.key.clone(), segment.receipt.version_id.clone());
        // A few chunks ahead at most: memory stays bounded whatever the object's size.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Option<Vec<u8>>, RemoteError>>(4);
        self.runtime()?.spawn(async move {
            let mut stream = match bucket.get_stream(&key, &version).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    let _ = tx.send(Err(RemoteError::Missing));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(RemoteError::Failed(e.to_string())));
                    return;
                }
            };
            loop {
                let chunk = stream
                    .next_chunk()
                    .await
                    .map_err(|e| RemoteError::Failed(e.to_string()));
                let end = !matches!(chunk, Ok(Some(_)));
                // The reader went away (a blocking send is fine: this runtime is ours).
                if tx.send(chunk).is_err() || end {
                    return;
                }
            }
        });
        // The first answer says whether the object is there at all.
        let first = match rx.recv_timeout(CHUNK_TIME) {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(RemoteError::Failed("no answer in time".into())),
        };
        Ok(Box::new(ChunkReader {
            rx,
            done: first.is_none(),
            chunk: first.unwrap_or_default(),
            at: 0,
        }))
    }

    fn discarded(&self, segment: &EvictedSegment, offset: u64, reason: &str) {
        tracing::warn!(
            segment = segment.first_seq,
            offset,
            reason,
            "a cached range of an evicted segment failed its check: discarded, fetched again"
        );
    }
}

/// A streamed object as `Read`.
struct ChunkReader {
    rx: Receiver<Result<Option<Vec<u8>>, RemoteError>>,
    chunk: Vec<u8>,
    at: usize,
    done: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv_timeout(CHUNK_TIME) {
                Ok(Ok(Some(c))) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Ok(Ok(None)) => self.done = true,
                Ok(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "S3: no data in time",
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(std::io::Error::other("S3: the download stopped"))
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The store's reads of evicted segments for `[storage.s3]` (none without it).
pub fn remote_config(settings: Option<&S3Settings>) -> anyhow::Result<Option<RemoteConfig>> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let range_cache_bytes = settings
        .range_cache_size
        .bytes()
        .map_err(|e| anyhow::anyhow!("storage.s3.range_cache_size: {e}"))?;
    Ok(Some(RemoteConfig {
        segments: Arc::new(S3Segments::new(settings)?),
        range_cache_bytes,
    }))
}
