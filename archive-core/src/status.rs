//! What a status page shows beyond the store's counters, read cheaply from the data
//! directory: the outcome of the last `mailvault verify` (`<data>/verify-last.json`, which
//! the binary's `cmd::verify::LastRun` writes; `serve` runs no verification of its own) and
//! the bytes the log and the derived indexes take on disk (file sizes, no reading).

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
