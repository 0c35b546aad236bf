//! Reading evicted segments (`evicted.rs`) back from object storage. The core has no network
//! code: [`RemoteSegments`] is what it asks of whoever can reach the bucket (the binary
//! implements it over archive-s3: range GETs of the version the receipt names).
//!
//! Every frame that comes back — from the bucket or from the local range cache — is checked
//! before use as a local read is (frame CRC, seq, kind) and against its leaf hash: the stub
//! records each record's RFC 6962 leaf hash, the one the tree and the signed checkpoints
//! commit to. Message contents are then checked against the content hash in the leaf when
//! decoded, as always. A cached range that fails the check is discarded and fetched again.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::evicted::{stub_file_name, EvictedSegment};
use super::merkle::{leaf_hash, Hash};
use super::reader::Record;
use super::record::{FrameHeader, FRAME_HEADER_LEN};
use super::segment::segment_file_name;
use crate::metrics;
use crate::{Error, IoContext, Result};

/// Why a fetch from object storage failed.
#[derive(Debug)]
pub enum RemoteError {
    /// The object version the receipt names is not in the bucket.
    Missing,
    /// The request failed (unreachable, refused, timed out, a short answer).
    Failed(String),
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Missing => f.write_str("the object version is missing from the bucket"),
            RemoteError::Failed(why) => f.write_str(why),
        }
    }
}

/// What the core asks of object storage for evicted segments. Implementations bound each
/// request in time; they need not check the bytes (the core does).
pub trait RemoteSegments: Send + Sync {
    /// Bytes `[start, end)` of the object holding `segment` (the version its receipt names).
    fn fetch(
        &self,
        segment: &EvictedSegment,
        start: u64,
        end: u64,
    ) -> std::result::Result<Vec<u8>, RemoteError>;
    /// The whole object, streamed (for `verify`: read once, not cached).
    fn stream(&self, segment: &EvictedSegment) -> std::result::Result<Box<dyn Read + Send>, RemoteError>;
    /// Told when a cached range failed its check and was discarded (to log it).
    fn discarded(&self, _segment: &EvictedSegment, _offset: u64, _reason: &str) {}
}

/// The leaf hashes of the log's Merkle tree, which the signed checkpoints commit to (the
/// store's tree, trusted as far as its newest checkpoint at open): a second, independent
/// source to check a fetched leaf against, besides the stub.
pub trait LeafHashes: Send + Sync {
    /// The leaf hash of record `seq`, if the tree has it.
    fn leaf_hash(&self, seq: u64) -> Option<Hash>;
}

/// Evicted segments of one log: their stubs, the remote to read them from (if any) and the
/// local range cache (if any). Shared by the store's reads and its log walks.
pub struct RemoteReads {
    log_dir: PathBuf,
    remote: Option<Arc<dyn RemoteSegments>>,
    cache: Option<RangeCache>,
    stubs: Mutex<HashMap<u64, Arc<EvictedSegment>>>,
    /// The store's tree, once the store is open (a `Weak`: the store owns these reads).
    tree: std::sync::OnceLock<Weak<dyn LeafHashes>>,
}

/// The most bytes a log walk fetches in one request (several frames at once).
const RUN_BYTES: u64 = 8 << 20;
/// Most stubs kept parsed; beyond it the map starts over (a stub's frame table is 48 bytes a
/// record, and reads of many old segments at once are rare).
const MAX_STUBS: usize = 64;

impl RemoteReads {
    /// Evicted segments of the log in `log_dir`, read through `remote` and `cache`.
    pub fn new(
        log_dir: &Path,
        remote: Option<Arc<dyn RemoteSegments>>,
        cache: Option<RangeCache>,
    ) -> RemoteReads {
        RemoteReads {
            log_dir: log_dir.to_path_buf(),
            remote,
            cache,
            stubs: Mutex::new(HashMap::new()),
            tree: std::sync::OnceLock::new(),
        }
    }

    /// Checks every frame read from now on against `tree`'s leaf hashes too.
    pub fn set_tree(&self, tree: Weak<dyn LeafHashes>) {
        let _ = self.tree.set(tree);
    }

    /// The check of a frame: [`check_frame`], and the tree's leaf hash where there is a tree.
    fn check(&self, stub: &EvictedSegment, seq: u64, bytes: &[u8]) -> std::result::Result<Record, String> {
        let record = check_frame(stub, seq, bytes)?;
        if let Some(tree) = self.tree.get().and_then(Weak::upgrade) {
            if tree
                .leaf_hash(seq)
                .is_some_and(|h| h != leaf_hash(&record.leaf_bytes))
            {
                return Err("the leaf is not the one the log's tree holds for this seq".into());
            }
        }
        Ok(record)
    }

    /// Whether a remote is configured.
    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The stub of segment `first`, if that segment is evicted.
    pub fn stub(&self, first: u64) -> Result<Option<Arc<EvictedSegment>>> {
        if let Some(s) = self.stubs.lock().unwrap_or_else(|p| p.into_inner()).get(&first) {
            return Ok(Some(s.clone()));
        }
        let path = self.log_dir.join(stub_file_name(first));
        let stub = match EvictedSegment::read(&path) {
            Ok(s) => Arc::new(s),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let mut stubs = self.stubs.lock().unwrap_or_else(|p| p.into_inner());
        if stubs.len() >= MAX_STUBS {
            stubs.clear();
        }
        stubs.insert(first, stub.clone());
        Ok(Some(stub))
    }

    fn remote(&self, stub: &EvictedSegment, seq: u64) -> Result<&dyn RemoteSegments> {
        self.remote.as_deref().ok_or_else(|| Error::Remote {
            seq,
            segment: segment_file_name(stub.first_seq),
            place: stub.place(),
            reason:
                "no [storage.s3] is configured to read it from (give the serve configuration with --config)"
                    .into(),
        })
    }

    /// Record `seq` of the evicted segment `stub`: from the range cache, or fetched (one range
    /// read of its frame) and then cached; checked before use either way.
    pub fn read_record(&self, stub: &EvictedSegment, seq: u64) -> Result<Record> {
        let entry = *stub.frame(seq).ok_or(Error::NoSuchRecord(seq))?;
        if let Some(cache) = &self.cache {
            if let Some(bytes) = cache.get(stub.first_seq, entry.offset, entry.len) {
                match self.check(stub, seq, &bytes) {
                    Ok(record) => {
                        ::metrics::counter!(metrics::RANGE_CACHE_HITS).increment(1);
                        return Ok(record);
                    }
                    Err(reason) => {
                        ::metrics::counter!(metrics::RANGE_CACHE_DISCARDED).increment(1);
                        cache.discard(stub.first_seq, entry.offset);
                        if let Some(remote) = &self.remote {
                            remote.discarded(stub, entry.offset, &reason);
                        }
                    }
                }
            }
            ::metrics::counter!(metrics::RANGE_CACHE_MISSES).increment(1);
        }
        let bytes = self.fetch(stub, seq, entry.offset, entry.offset + entry.len)?;
        let record = self
            .check(stub, seq, &bytes)
            .map_err(|reason| bucket_copy_damaged(stub, seq, entry.offset, reason))?;
        if let Some(cache) = &self.cache {
            cache.put(stub.first_seq, entry.offset, &bytes);
        }
        Ok(record)
    }

    /// Records `from..` of `stub`, as many as one request of at most 8 MiB brings (at least
    /// one), each checked; not cached (log walks read each record once).
    pub(crate) fn read_run(&self, stub: &EvictedSegment, from: u64) -> Result<Vec<Record>> {
        let first = *stub.frame(from).ok_or(Error::NoSuchRecord(from))?;
        let mut end = first.offset + first.len;
        let mut last = from;
        while let Some(next) = stub.frame(last + 1) {
            if next.offset + next.len - first.offset > RUN_BYTES {
                break;
            }
            end = next.offset + next.len;
            last += 1;
        }
        let bytes = self.fetch(stub, from, first.offset, end)?;
        let mut records = Vec::with_capacity((last - from + 1) as usize);
        for seq in from..=last {
            let e = stub.frame(seq).ok_or(Error::NoSuchRecord(seq))?;
            let at = (e.offset - first.offset) as usize;
            let frame = &bytes[at..at + e.len as usize];
            records.push(
                self.check(stub, seq, frame)
                    .map_err(|r| bucket_copy_damaged(stub, seq, e.offset, r))?,
            );
        }
        Ok(records)
    }

    /// The whole object of `stub`, streamed (not cached).
    pub fn stream(&self, stub: &EvictedSegment) -> Result<Box<dyn Read + Send>> {
        let remote = self.remote(stub, stub.first_seq)?;
        remote
            .stream(stub)
            .map_err(|e| remote_error(stub, stub.first_seq, e))
    }

    fn fetch(&self, stub: &EvictedSegment, seq: u64, start: u64, end: u64) -> Result<Vec<u8>> {
        let remote = self.remote(stub, seq)?;
        ::metrics::counter!(metrics::REMOTE_FETCHES).increment(1);
        let bytes = remote
            .fetch(stub, start, end)
            .map_err(|e| remote_error(stub, seq, e))?;
        if bytes.len() as u64 != end - start {
            return Err(remote_error(
                stub,
                seq,
                RemoteError::Failed(format!("asked for {} bytes, got {}", end - start, bytes.len())),
            ));
        }
        ::metrics::counter!(metrics::REMOTE_FETCHED_BYTES).increment(bytes.len() as u64);
        Ok(bytes)
    }
}

fn remote_error(stub: &EvictedSegment, seq: u64, e: RemoteError) -> Error {
    Error::Remote {
        seq,
        segment: segment_file_name(stub.first_seq),
        place: stub.place(),
        reason: e.to_string(),
    }
}

fn bucket_copy_damaged(stub: &EvictedSegment, seq: u64, offset: u64, reason: String) -> Error {
    Error::Corrupt {
        seq,
        segment: PathBuf::from(stub.place()),
        offset,
        reason: format!("the bucket's copy does not check: {reason}"),
    }
}

/// Checks the frame of record `seq` of `stub` as a local read does, and its leaf against the
/// leaf hash the stub records.
fn check_frame(stub: &EvictedSegment, seq: u64, bytes: &[u8]) -> std::result::Result<Record, String> {
    let entry = stub.frame(seq).ok_or("not in the segment")?;
    if bytes.len() as u64 != entry.len || bytes.len() < FRAME_HEADER_LEN {
        return Err(format!("{} bytes where the frame has {}", bytes.len(), entry.len));
    }
    let mut header_bytes = [0u8; FRAME_HEADER_LEN];
    header_bytes.copy_from_slice(&bytes[..FRAME_HEADER_LEN]);
    let header = FrameHeader::parse(&header_bytes)
        .filter(|h| h.frame_len() == entry.len)
        .ok_or("no frame header of the recorded length")?;
    let record = Record::from_frame(
        &header,
        &header_bytes,
        &bytes[FRAME_HEADER_LEN..],
        stub.first_seq,
        entry.offset,
        Path::new(&stub.place()),
        seq,
    )
    .map_err(|e| e.to_string())?;
    if leaf_hash(&record.leaf_bytes) != entry.leaf_hash {
        return Err("the leaf is not the one the stub records for this seq".into());
    }
    Ok(record)
}

/// Frames fetched from evicted segments, kept on local disk (`<data>/cache/ranges/`), one
/// file per frame, written atomically (a temporary file renamed); bounded in bytes, least
/// recently used out first. Every hit is checked again before use ([`RemoteReads`]).
pub struct RangeCache {
    dir: PathBuf,
    budget: u64,
    state: Mutex<CacheState>,
    tmp_counter: AtomicU64,
}

struct CacheState {
    entries: lru::LruCache<(u64, u64), u64>,
    held: u64,
}

impl RangeCache {
    /// The cache in `dir` (created if missing), holding at most `budget` bytes; what an
    /// earlier run left there is taken over, oldest first out.
    pub fn open(dir: &Path, budget: u64) -> Result<RangeCache> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .at(dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            match parse_name(&name) {
                Some(key) => {
                    let meta = entry.metadata().at(&entry.path())?;
                    found.push((meta.modified().ok(), key, meta.len()));
                }
                // Temporary files of a run that stopped mid-write, and strangers.
                None => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        found.sort();
        let cache = RangeCache {
            dir: dir.to_path_buf(),
            budget,
            state: Mutex::new(CacheState {
                entries: lru::LruCache::unbounded(),
                held: 0,
            }),
            tmp_counter: AtomicU64::new(0),
        };
        {
            let mut s = cache.lock();
            for (_, key, len) in found {
                s.entries.put(key, len);
                s.held += len;
            }
        }
        cache.shrink();
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, segment: u64, offset: u64) -> PathBuf {
        self.dir.join(format!("{segment:020}-{offset:020}"))
    }

    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.lock().held
    }

    /// The cached frame at `offset` of `segment`, if there is one of `len` bytes.
    pub fn get(&self, segment: u64, offset: u64, len: u64) -> Option<Vec<u8>> {
        self.lock().entries.get(&(segment, offset))?;
        match std::fs::read(self.path(segment, offset)) {
            Ok(bytes) if bytes.len() as u64 == len => Some(bytes),
            _ => {
                self.discard(segment, offset);
                None
            }
        }
    }

    /// Keeps a checked frame (frames larger than a quarter of the budget are not kept).
    pub fn put(&self, segment: u64, offset: u64, bytes: &[u8]) {
        let len = bytes.len() as u64;
        if len > self.budget / 4 {
            return;
        }
        let path = self.path(segment, offset);
        let tmp = self.dir.join(format!(
            "tmp-{}-{}",
            std::process::id(),
            self.tmp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        // A cache: a failed write only means a fetch next time.
        if std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .is_err()
        {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        {
            let mut s = self.lock();
            if let Some(old) = s.entries.put((segment, offset), len) {
                s.held -= old;
            }
            s.held += len;
        }
        self.shrink();
    }

    /// Drops the frame at `offset` of `segment`.
    pub fn discard(&self, segment: u64, offset: u64) {
        let mut s = self.lock();
        if let Some(len) = s.entries.pop(&(segment, offset)) {
            s.held -= len;
        }
        let _ = std::fs::remove_file(self.path(segment, offset));
    }

    /// Removes least recently used frames until the budget holds.
    fn shrink(&self) {
        let mut s = self.lock();
        while s.held > self.budget {
            let Some(((segment, offset), len)) = s.entries.pop_lru() else {
                break;
            };
            s.held -= len;
            let _ = std::fs::remove_file(self.path(segment, offset));
        }
    }
}

/// `<segment:020>-<offset:020>`.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (a, b) = name.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(a) && digits(b)).then(|| Some((a.parse().ok()?, b.parse().ok()?)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_cache_keeps_to_its_budget_least_recently_used_out_first_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RangeCache::open(dir.path(), 300).unwrap();
        cache.put(1, 16, &[1; 70]);
        cache.put(1, 86, &[2; 70]);
        cache.put(2, 16, &[3; 70]);
        assert!(cache.get(1, 16, 70).is_some(), "read: now the most recent");
        cache.put(3, 16, &[4; 70]);
        cache.put(3, 86, &[5; 70]);
        assert!(cache.held() <= 300);
        assert!(cache.get(1, 86, 70).is_none(), "the least recently used went");
        assert_eq!(cache.get(1, 16, 70).unwrap(), vec![1; 70]);
        assert!(
            cache.get(3, 86, 69).is_none(),
            "a length that is not the frame's is no hit"
        );
        cache.put(9, 16, &[0; 100]);
        assert!(
            cache.get(9, 16, 100).is_none(),
            "more than a quarter of the budget is not kept"
        );
        std::fs::write(dir.path().join("tmp-1-1"), b"left over").unwrap();
        drop(cache);
        let again = RangeCache::open(dir.path(), 300).unwrap();
        assert_eq!(again.get(1, 16, 70).unwrap(), vec![1; 70]);
        assert!(!dir.path().join("tmp-1-1").exists());
    }
}
