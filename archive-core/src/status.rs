//! What a status page shows beyond the store's counters, read cheaply from the data
//! directory: the outcome of the last `mailvault verify` (`<data>/verify-last.json`, which
//! the binary's `cmd::verify::LastRun` writes; `serve` runs no verification of its own) and
//! the bytes the log and the derived indexes take on disk (file sizes, no reading), and
//! their ratio to the raw mail (cached: see [`OnDiskCache`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::Layout;

/// What the last verify run found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct LastVerify {
    /// Unix time (seconds) the run finished.
    pub finished: u64,
    /// `intact`, `tampered` or `unsigned`.
    pub result: String,
    /// Whether the log verified intact.
    pub intact: bool,
    /// Records checked.
    pub records: u64,
}

/// The last verify outcome recorded in `layout`, if there is a readable one.
pub fn last_verify(layout: &Layout) -> Option<LastVerify> {
    let text = std::fs::read(&layout.last_verify).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Bytes on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// The log's segment files.
    pub log_bytes: u64,
    /// The key-value index and the tree cache.
    pub index_bytes: u64,
    /// The full-text index.
    pub search_bytes: u64,
}

/// The bytes of the files in `layout` (missing files count 0).
pub fn disk_usage(layout: &Layout) -> DiskUsage {
    let file = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let dir = |d: &std::path::Path| {
        std::fs::read_dir(d).map_or(0, |entries| {
            entries.filter_map(|e| e.ok()).map(|e| file(&e.path())).sum()
        })
    };
    DiskUsage {
        log_bytes: dir(&layout.log_dir),
        index_bytes: file(&layout.kv_index) + file(&layout.tree),
        search_bytes: dir(&crate::search::index_dir(layout)),
    }
}

/// How long the figures of [`OnDiskCache`] are reused: a status page reloaded over and over
/// costs one directory listing and one pass over the search index's `size` column per period.
pub const ON_DISK_REFRESH: Duration = Duration::from_secs(10);

/// The archive's size on disk against its raw mail, as `mailvault status` and bench/ingest
/// count it: the log plus the key-value index and the tree cache, over the raw bytes of the
/// distinct messages. The full-text index is derived (rebuilt by `reindex`) and apart.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OnDisk {
    /// Distinct messages in the search index (every message, whoever asks).
    pub messages: u64,
    /// Their raw bytes (each distinct message once: arrivals of the same bytes add nothing).
    pub raw_bytes: u64,
    /// The files on disk.
    pub usage: DiskUsage,
    /// The log plus the key-value index and the tree cache.
    pub on_disk_bytes: u64,
    /// `on_disk_bytes / raw_bytes`; `None` while there is no message.
    pub ratio: Option<f64>,
    /// The search index's applied seq the message figures are from: messages received after
    /// it are on disk but not counted yet (the ratio reads high while the index lags).
    pub as_of_seq: u64,
}

/// Distinct messages and their raw bytes: the search index's documents (one per distinct
/// message; an arrival replaces its message's document) and their `size` fast field. One
/// pass over a column of 8-byte values, no stored document read.
pub fn raw_messages(searcher: &tantivy::Searcher) -> crate::error::Result<(u64, u64)> {
    let (mut messages, mut bytes) = (0u64, 0u64);
    for segment in searcher.segment_readers() {
        let sizes = segment.fast_fields().u64("size")?;
        for doc in segment.doc_ids_alive() {
            messages += 1;
            bytes = bytes.saturating_add(sizes.first(doc).unwrap_or(0));
        }
    }
    Ok((messages, bytes))
}

/// [`OnDisk`] from `usage` and the distinct messages' count and raw bytes.
pub fn on_disk(usage: DiskUsage, messages: u64, raw_bytes: u64, as_of_seq: u64) -> OnDisk {
    let on_disk_bytes = usage.log_bytes.saturating_add(usage.index_bytes);
    OnDisk {
        messages,
        raw_bytes,
        usage,
        on_disk_bytes,
        ratio: (raw_bytes > 0).then(|| on_disk_bytes as f64 / raw_bytes as f64),
        as_of_seq,
    }
}

/// The last [`OnDisk`] figures and when they were taken: reused for [`ON_DISK_REFRESH`].
#[derive(Default)]
pub struct OnDiskCache {
    last: Mutex<Option<(Instant, OnDisk)>>,
}

impl OnDiskCache {
    /// The cached figures if younger than `refresh`, else `compute`'s (cached when they
    /// could be taken). Concurrent callers of a stale cache wait for one computation.
    pub fn get(
        &self,
        refresh: Duration,
        compute: impl FnOnce() -> crate::error::Result<OnDisk>,
    ) -> crate::error::Result<OnDisk> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, figures)) = *last {
            if at.elapsed() < refresh {
                return Ok(figures);
            }
        }
        let figures = compute()?;
        *last = Some((Instant::now(), figures));
        Ok(figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_leaves_the_search_index_out_and_the_cache_is_reused_until_stale() {
        let usage = DiskUsage {
            log_bytes: 300,
            index_bytes: 100,
            search_bytes: 1000,
        };
        let figures = on_disk(usage, 2, 200, 7);
        assert_eq!((figures.on_disk_bytes, figures.ratio), (400, Some(2.0)));
        assert_eq!(on_disk(usage, 0, 0, 7).ratio, None);

        let cache = OnDiskCache::default();
        let mut computed = 0;
        for _ in 0..3 {
            let got = cache.get(Duration::from_secs(3600), || {
                computed += 1;
                Ok(figures)
            });
            assert_eq!(got.ok(), Some(figures));
        }
        assert_eq!(computed, 1, "fresh figures are reused");
        let _ = cache.get(Duration::ZERO, || {
            computed += 1;
            Ok(figures)
        });
        assert_eq!(computed, 2, "stale figures are taken again");
    }
}
