//! The store: one log directory with its key, its derived indexes and its background threads.
//! `Store` is what front doors hold; it has exactly one write verb per record kind, and every
//! one of them appends.

mod audited;
mod compression;
mod durability;
mod export;
mod indexer;
pub mod layout;
mod read_cache;
mod recovery;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::envelope::Envelope;
use crate::index::kv::{HeaderTerms, IndexEntry, KvIndex, Role};
use crate::log::checkpoint::{LogKey, SignedCheckpoint};
use crate::log::merkle::{Hash, HashSource};
use crate::log::reader::{
    read_at_via, record_content, Dictionaries, Dictionary, DictionaryCache, LogReader, Record, SegmentFiles,
};
use crate::log::record::{Codec, LeafBody, RecordKind};
use crate::log::remote::RemoteReads;
use crate::log::tree::TreeFile;
use crate::search::text_index::TextIndex;
use crate::search::{catch_up, Budget, Principal, Query, SearchOptions, SearchResults};
use crate::{Error, IoContext, Result};
pub use audited::AuditedAccess;
use compression::Compression;
use durability::{Batch, Durability};
pub use layout::{Layout, StoreIdentity};
pub use recovery::Cut;
pub use writer::Rewound;
use writer::{ActiveSegment, Writer, Written};

/// Tunables of a store; the defaults suit a single-machine archive.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// A segment is sealed once it reaches this many bytes (a record is never split).
    pub segment_size: u64,
    /// A checkpoint is appended after this many records…
    pub checkpoint_every: u64,
    /// …or this long after the last one, whichever comes first (if anything was appended).
    pub checkpoint_interval: Duration,
    /// zstd level for message payloads.
    pub zstd_level: i32,
    /// Size of the zstd dictionary trained from the store's mail (0: no dictionary).
    pub dictionary_size: usize,
    /// Messages to collect as samples before (re)training a dictionary.
    pub dictionary_samples: usize,
    /// Raw bytes after which a fresh dictionary is trained from recent mail.
    pub dictionary_refresh_bytes: u64,
    /// Whether this process keeps the full-text index caught up.
    pub search_indexing: SearchIndexing,
    /// Bytes of decoded message contents kept for repeated reads (`read_cache.rs`).
    pub read_cache_bytes: usize,
    /// Where evicted segments are read from (object storage), if anywhere.
    pub remote: Option<RemoteConfig>,
}

/// Object storage for the records of evicted segments (`log::evicted`), and the size of the
/// local cache of frames fetched from it (`<data>/cache/ranges/`).
#[derive(Clone)]
pub struct RemoteConfig {
    /// What reaches the bucket (the binary's, over archive-s3).
    pub segments: Arc<dyn crate::log::remote::RemoteSegments>,
    /// Bytes the range cache may hold (0: no cache).
    pub range_cache_bytes: u64,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("range_cache_bytes", &self.range_cache_bytes)
            .finish_non_exhaustive()
    }
}

impl RemoteConfig {
    /// The reads of evicted segments of the store at `layout` this configures (none
    /// configured: stubs are known, their records are errors naming where the bytes are).
    pub fn reads(remote: Option<&RemoteConfig>, layout: &Layout) -> Result<Arc<RemoteReads>> {
        let Some(r) = remote else {
            return Ok(Arc::new(RemoteReads::new(&layout.log_dir, None, None)));
        };
        let cache = if r.range_cache_bytes > 0 {
            Some(crate::log::remote::RangeCache::open(
                &layout.range_cache,
                r.range_cache_bytes,
            )?)
        } else {
            None
        };
        Ok(Arc::new(RemoteReads::new(
            &layout.log_dir,
            Some(r.segments.clone()),
            cache,
        )))
    }
}

/// Who brings the full-text index up to date with the log. It is derived state either way:
/// each open of a store in `Live` mode catches it up in the background.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SearchIndexing {
    /// A background thread indexes every durable record (servers, searches).
    #[default]
    Live,
    /// This process leaves the index where it is (bulk import: the log is written at full
    /// speed, and the next `Live` open indexes the backlog in large batches).
    Deferred,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            segment_size: 64 << 20,
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            zstd_level: 5,
            dictionary_size: 128 << 10,
            dictionary_samples: 256,
            read_cache_bytes: 64 << 20,
            dictionary_refresh_bytes: 1 << 30,
            search_indexing: SearchIndexing::Live,
            remote: None,
        }
    }
}

/// Appends in one session after which closing the store compacts its index.
const COMPACT_AFTER_APPENDS: u64 = 1000;

/// A message hashed, compressed and its indexed headers parsed, ready to be written.
struct Prepared {
    content_hash: [u8; 32],
    content_len: u64,
    envelope: Vec<u8>,
    codec: Codec,
    payload: Vec<u8>,
    headers: HeaderTerms,
}

/// What to do when a message's exact bytes are already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Record the delivery as an `arrival` (journal intake: every delivery counts).
    RecordArrival,
    /// Append nothing (import of a file already archived).
    Skip,
}

/// The outcome of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Seq of the new record; for a skipped duplicate, of the record holding the bytes.
    pub seq: u64,
    /// `Message`, `Arrival`, or `None` when a duplicate was skipped.
    pub kind: Option<RecordKind>,
    /// blake3 of the raw bytes.
    pub content_hash: [u8; 32],
    /// The message record holding the bytes.
    pub first_seq: u64,
}

/// Counters for status output and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Records appended since open (all kinds).
    pub appends: u64,
    /// fsyncs of segment data done for acknowledgements since open.
    pub fsyncs: u64,
    /// Seq of the last record.
    pub last_seq: u64,
    /// Seq the key-value index has applied.
    pub indexed_seq: u64,
    /// Seq the search index has applied (searchable; the committed payload may be older
    /// where only records without a document followed).
    pub search_indexed_seq: u64,
    /// Times the log went back to its last durable record after a failed fsync.
    pub rewinds: u64,
}

/// The store's state for readiness checks and scraped gauges: a few locks, and one record
/// read (that of the oldest record not yet searchable) while the search index lags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Why the store cannot acknowledge appends now, if it cannot: the writer is poisoned (a
    /// failed write that could not be undone), a rewind is under way or failed, the newest
    /// group-commit fsync failed (until one succeeds), or the key-value index stopped.
    pub trouble: Option<String>,
    /// Records after the newest checkpoint: not yet under a signature.
    pub unsigned_records: u64,
    /// Time since this process wrote the newest checkpoint, or since it opened the store if
    /// it has written none (monotonic clock).
    pub checkpoint_age: Duration,
    /// Durable records the search index has not applied yet.
    pub search_lag_records: u64,
    /// How long ago the oldest of those records was received; `None` when the search index
    /// is caught up, or when that record is not in the key-value index yet (it is, a moment
    /// after it became durable).
    pub search_lag: Option<Duration>,
}

pub(crate) struct Shared {
    pub layout: Layout,
    key: LogKey,
    config: StoreConfig,
    writer: Mutex<Writer>,
    pub durability: Durability,
    pub index: KvIndex,
    /// The full-text index (derived; its own thread keeps it caught up).
    pub text: TextIndex,
    compression: Compression,
    dictionaries: DictionaryCache,
    /// Decoded contents of messages read lately.
    read_cache: read_cache::ReadCache,
    /// Segment files open for reads.
    pub(crate) segments: SegmentFiles,
    /// Message lists of the views sessions hold, shared between them.
    pub views: crate::views::SharedViews,
    indexed: Mutex<IndexProgress>,
    indexed_changed: Condvar,
    appends: std::sync::atomic::AtomicU64,
    /// The highest seq of a message or arrival record written (the log's last seq at open):
    /// the search index holds nothing else, so a search waits for it only up to here. A
    /// search right after an audit record (every web request writes one) does not wait for
    /// the indexer to step over it.
    content_written: std::sync::atomic::AtomicU64,
    /// Rewinds after failed fsyncs, and those whose audit record is not written yet.
    rewinds: std::sync::atomic::AtomicU64,
    rewinds_to_audit: Mutex<Vec<Rewound>>,
    /// The status pages' size figures, recomputed at most every few seconds.
    on_disk: crate::status::OnDiskCache,
    _lock: File,
}

#[derive(Default)]
struct IndexProgress {
    applied: u64,
    failure: Option<String>,
}

impl Dictionaries for Shared {
    fn dictionary(&self, seq: u64) -> std::result::Result<Dictionary, String> {
        self.dictionary_of(seq, true)
    }
}

impl Shared {
    /// The dictionary record `seq`, found through the key-value index. With
    /// `wait_for_index`, one that is durable but not applied yet is waited for: a durable
    /// message the search index already holds can use it, as searches wait for the
    /// key-value index only up to the last content record. The indexer's own lookups must
    /// not wait (for themselves).
    fn dictionary_of(&self, seq: u64, wait_for_index: bool) -> std::result::Result<Dictionary, String> {
        self.dictionaries.get_or_load(seq, || {
            let location = match self.index.location(seq)? {
                Some(location) => location,
                None if wait_for_index && seq <= self.durability.synced() => {
                    self.wait_indexed(seq)?;
                    self.index.location(seq)?.ok_or(Error::NoSuchRecord(seq))?
                }
                None => return Err(Error::NoSuchRecord(seq)),
            };
            self.segments.read_at(&location, seq)
        })
    }
}

impl crate::log::remote::LeafHashes for Shared {
    fn leaf_hash(&self, seq: u64) -> Option<Hash> {
        let w = self.writer();
        (seq >= 1 && seq <= w.tree.size())
            .then(|| w.tree.complete_subtree(0, seq - 1).ok())
            .flatten()
    }
}

impl Shared {
    /// The log, read-only, with evicted segments read as the store reads them.
    pub(crate) fn log_reader(&self) -> Result<LogReader> {
        LogReader::open_with(&self.layout.log_dir, self.segments.evicted().clone())
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn progress(&self) -> MutexGuard<'_, IndexProgress> {
        self.indexed.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn note_indexed(&self, applied: u64) {
        self.writer().pending_content.retain(|_, seq| *seq > applied);
        let mut p = self.progress();
        p.applied = applied;
        p.failure = None;
        self.indexed_changed.notify_all();
    }

    pub(crate) fn note_index_failure(&self, why: String) {
        self.progress().failure = Some(why);
        self.indexed_changed.notify_all();
    }

    /// The writer's index entries after `applied` up to `target` (see `FreshEntries`).
    pub(crate) fn take_fresh(&self, applied: u64, target: u64) -> Vec<IndexEntry> {
        self.writer().fresh.take(applied, target)
    }

    /// The writer, ready to append: if it was poisoned (a failed fsync, a write that could
    /// not be undone), it first goes back to the last durable point.
    fn usable_writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let mut w = self.writer();
        if let Some(why) = w.poisoned.clone() {
            self.rewind(&mut w).map_err(|e| {
                Error::Unusable(format!(
                    "{why}; going back to the last durable record failed: {e}"
                ))
            })?;
        }
        Ok(w)
    }

    /// Rewinds the poisoned writer `w` to the durable point (see `Writer::rewind`). The
    /// audit record saying so is the first record after the point: every acknowledgement
    /// from then on makes it durable too. (It is not waited for here, in the group commit
    /// that may have called this; if it cannot be written, the checkpoint timer retries.)
    fn rewind(&self, w: &mut Writer) -> Result<()> {
        let generation = w.generation;
        // First stop acknowledgements: a group commit whose fsync is in flight must not move
        // the durable point after it was read here (it could acknowledge what this cuts).
        self.durability
            .fail(w.poisoned.as_deref().unwrap_or("the log's end is in doubt"));
        let rewound = w.rewind(&self.durability.point(), &self.layout.quarantine)?;
        self.segments.forget_after(rewound.to_seq);
        // Under the writer lock: nobody appends in the new generation before waiters learn
        // that the old one ended.
        self.durability.rewound(generation);
        self.rewinds.fetch_add(1, Ordering::Relaxed);
        let written = serde_json::to_vec(&crate::audit::AuditEvent::recovery_rewind(&rewound))
            .map_err(|e| Error::Internal(format!("audit event: {e}")))
            .and_then(|event| {
                w.write(
                    LeafBody::Audit { event },
                    (Codec::Raw, &[]),
                    None,
                    &self.config,
                    &self.key,
                )
            });
        if written.is_err() {
            self.rewinds_to_audit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(rewound);
        }
        Ok(())
    }

    /// Waits until `written` is durable and under a signed checkpoint. The group commit's
    /// leader appends a checkpoint over everything written so far, then fsyncs: the records
    /// and the signature over them become durable in the same fsync, so nothing is
    /// acknowledged that recovery could find unsigned (it quarantines such records: never
    /// acknowledged). A failed fsync rewinds the log to the last durable point at once.
    fn wait_durable(&self, written: Written) -> Result<()> {
        self.durability.wait(
            written,
            || {
                let mut w = self.usable_writer()?;
                w.checkpoint_batch(&self.key)?;
                let point = w.durable_point();
                Ok(w.segment.as_ref().map(|s| Batch {
                    file: s.file.clone(),
                    point,
                    generation: w.generation,
                }))
            },
            |generation| {
                let mut w = self.writer();
                if w.generation == generation {
                    w.poisoned
                        .get_or_insert_with(|| "an fsync of the log failed".into());
                    // On failure the writer stays poisoned: the next append (or the
                    // checkpoint timer) tries again.
                    let _ = self.rewind(&mut w);
                }
            },
        )
    }

    /// Appends an audit event; returns its seq once durable.
    fn append_audit(&self, event: &crate::audit::AuditEvent) -> Result<u64> {
        let written = self.write_audit(event)?;
        self.wait_durable(written)?;
        Ok(written.seq)
    }

    /// Writes an audit record; durable once [`Shared::wait_durable`] says so.
    fn write_audit(&self, event: &crate::audit::AuditEvent) -> Result<Written> {
        let event = serde_json::to_vec(event).map_err(|e| Error::Internal(format!("audit event: {e}")))?;
        let written = self.usable_writer()?.write(
            LeafBody::Audit { event },
            (Codec::Raw, &[]),
            None,
            &self.config,
            &self.key,
        )?;
        self.appends.fetch_add(1, Ordering::Relaxed);
        Ok(written)
    }

    /// Appends the audit records of rewinds that could not write theirs.
    fn audit_rewinds(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.rewinds_to_audit.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, rewound) in pending.iter().enumerate() {
            if let Err(e) = self.append_audit(&crate::audit::AuditEvent::recovery_rewind(rewound)) {
                self.rewinds_to_audit
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .splice(0..0, pending[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(())
    }

    fn wait_indexed(&self, seq: u64) -> Result<()> {
        let mut p = self.progress();
        if p.applied < seq {
            // Not while holding the progress lock: the indexer takes it after the durability one.
            drop(p);
            self.durability.await_index();
            p = self.progress();
        }
        while p.applied < seq {
            if let Some(why) = &p.failure {
                return Err(Error::Index(why.clone()));
            }
            p = self.indexed_changed.wait(p).unwrap_or_else(|p| p.into_inner());
        }
        Ok(())
    }

    fn checkpoint(&self) -> Result<Option<u64>> {
        let mut w = self.usable_writer()?;
        let written = w.checkpoint(&self.config, &self.key)?;
        drop(w);
        if let Some(written) = written {
            self.wait_durable(written)?;
        }
        Ok(written.map(|w| w.seq))
    }
}

/// An open store, for appending and reading. One process at a time may hold it.
pub struct Store {
    shared: Arc<Shared>,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// What this open's recovery cut off the log, if anything.
    recovered: Option<Cut>,
}

impl Store {
    /// Creates a new store in `dir` with a new signing key at `key_path`. Refuses to overwrite
    /// an existing store or key.
    pub fn create(dir: &Path, key_path: &Path) -> Result<StoreIdentity> {
        use std::os::unix::fs::DirBuilderExt;
        let layout = Layout::new(dir);
        if layout.exists() {
            return Err(Error::Exists {
                path: dir.to_path_buf(),
                what: "a store",
            });
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .at(dir)?;
        if key_path.exists() {
            return Err(Error::Exists {
                path: key_path.to_path_buf(),
                what: "a key",
            });
        }
        let identity = StoreIdentity::generate()?;
        let key = LogKey::generate(&identity.origin)?;
        key.write_new(key_path)?;
        std::fs::write(&layout.public_key, format!("{}\n", key.verifier().encode())).at(&layout.public_key)?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&layout.log_dir)
            .at(&layout.log_dir)?;
        // The identity file is written last: its presence marks a complete store.
        layout.write_identity(&identity)?;
        Ok(identity)
    }

    /// Opens the store in `dir`, creating it first if there is none (the embedded default).
    pub fn open_or_create(dir: &Path, key_path: &Path, config: StoreConfig) -> Result<Store> {
        if !Layout::new(dir).exists() {
            Store::create(dir, key_path)?;
        }
        Store::open(dir, key_path, config)
    }

    /// Opens an existing store for writing: takes the write lock, recovers the log's tail,
    /// brings the tree and the key-value index up to date, starts the background threads.
    pub fn open(dir: &Path, key_path: &Path, config: StoreConfig) -> Result<Store> {
        let layout = Layout::new(dir);
        let identity = layout.identity()?;
        let key = LogKey::read(key_path)?;
        if key.name() != identity.origin {
            return Err(Error::WrongKey {
                key: key_path.to_path_buf(),
                key_log: key.name().to_string(),
                store_log: identity.origin.clone(),
            });
        }
        let lock = take_write_lock(&layout)?;

        let mut identity = identity;
        let tail = recovery::recover(
            &layout.log_dir,
            &layout.quarantine,
            &key.verifier(),
            !identity.signed_acknowledgements,
        )?;
        if !identity.signed_acknowledgements {
            // From now on every acknowledgement waits for its checkpoint.
            identity.signed_acknowledgements = true;
            layout.write_identity(&identity)?;
        }
        let evicted = RemoteConfig::reads(config.remote.as_ref(), &layout)?;
        let tree = open_tree(&layout, &tail, &evicted)?;
        let index = open_index(&layout, &identity.origin, &tail, &evicted)?;
        let segment = match &tail.segment {
            Some((first, path, len)) if writable(path) => {
                Some(ActiveSegment::reopen(*first, path.clone(), *len, tail.last_seq)?)
            }
            _ => None,
        };
        let since_checkpoint = tail.last_seq - tail.checkpoint.as_ref().map_or(0, |(seq, _)| *seq);
        let writer = Writer {
            log_dir: layout.log_dir.clone(),
            segment,
            next_seq: tail.last_seq + 1,
            chain: tail.chain,
            last_time_us: tail.last_time_us,
            tree,
            pending_content: HashMap::new(),
            fresh: Default::default(),
            since_checkpoint,
            last_checkpoint_at: Instant::now(),
            last_tree_sync_at: Instant::now(),
            latest_checkpoint: tail.checkpoint,
            poisoned: None,
            generation: 0,
        };
        let durable = writer.durable_point();
        let text = TextIndex::open(
            &crate::search::index_dir(&layout),
            &identity.origin,
            tail.last_seq,
        )?;
        let shared = Arc::new(Shared {
            compression: Compression::new(&config, None),
            dictionaries: DictionaryCache::default(),
            read_cache: read_cache::ReadCache::new(config.read_cache_bytes),
            segments: SegmentFiles::new(&layout.log_dir, evicted),
            views: Default::default(),
            layout,
            key,
            config,
            writer: Mutex::new(writer),
            durability: Durability::new(durable),
            indexed: Mutex::new(IndexProgress {
                applied: index.applied_seq()?,
                failure: None,
            }),
            index,
            text,
            indexed_changed: Condvar::new(),
            appends: Default::default(),
            content_written: std::sync::atomic::AtomicU64::new(tail.last_seq),
            rewinds: Default::default(),
            rewinds_to_audit: Default::default(),
            on_disk: Default::default(),
            _lock: lock,
        });
        // Fetched frames of evicted segments are checked against the tree too.
        let tree: std::sync::Weak<dyn crate::log::remote::LeafHashes> = Arc::downgrade(&shared) as _;
        shared.segments.evicted().set_tree(tree);
        // Catch up synchronously: duplicate detection and reads rely on the index. The search
        // index catches up on its thread, so a server answers while a backlog is indexed
        // (searches wait for it).
        indexer::index_until(&shared, &mut indexer::Cursor::default(), tail.last_seq)?;
        if let Some(seq) = shared.index.latest_dictionary()? {
            let dictionary = shared.dictionary(seq).map_err(|reason| Error::Format {
                path: shared.layout.log_dir.clone(),
                reason: format!("the compression dictionary in record {seq} cannot be read: {reason}"),
            })?;
            shared.compression.activate(seq, dictionary);
        }
        let store = Store {
            shared,
            background: Mutex::new(Vec::new()),
            recovered: tail.cut.clone(),
        };
        store.start_background()?;
        if let Some(cut) = &store.recovered {
            // Recovery acts on the evidence: the trail says what it cut and where it is kept.
            store.append_audit(&crate::audit::AuditEvent::recovery_cut(cut))?;
        }
        Ok(store)
    }

    /// What recovery cut off the end of the log when this store was opened (never
    /// acknowledged records and torn bytes, kept in a quarantine file), if anything.
    pub fn recovered(&self) -> Option<&Cut> {
        self.recovered.as_ref()
    }

    fn start_background(&self) -> Result<()> {
        let mut threads = self.background.lock().unwrap_or_else(|p| p.into_inner());
        let shared = self.shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("mailvault-indexer".into())
                .spawn(move || indexer::run(&shared))
                .map_err(|e| Error::System(format!("cannot start the indexer thread: {e}")))?,
        );
        if self.shared.config.search_indexing == SearchIndexing::Live {
            let shared = self.shared.clone();
            let (started_tx, started) = std::sync::mpsc::sync_channel(1);
            let thread = std::thread::Builder::new()
                .name("mailvault-search".into())
                .spawn(move || catch_up::run(&shared, started_tx))
                .map_err(|e| Error::System(format!("cannot start the search indexer thread: {e}")))?;
            match started.recv() {
                Ok(Ok(())) => threads.push(thread),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(Error::Search("the search indexer thread did not start".into())),
            }
        }
        let shared = self.shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("mailvault-committer".into())
                .spawn(move || {
                    while let Some(written) = shared.durability.next_commit_wanted() {
                        // A failure reaches the record's own waiter, which then leads the
                        // commit itself and reports it.
                        let _ = shared.wait_durable(written);
                    }
                })
                .map_err(|e| Error::System(format!("cannot start the committer thread: {e}")))?,
        );
        let shared = self.shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("mailvault-checkpointer".into())
                .spawn(move || checkpoint_timer(&shared))
                .map_err(|e| Error::System(format!("cannot start the checkpoint thread: {e}")))?,
        );
        Ok(())
    }

    /// Rebuilds the derived state (tree cache, key-value index, search index) from the log.
    pub fn reindex(dir: &Path, key_path: &Path, config: StoreConfig) -> Result<Store> {
        let layout = Layout::new(dir);
        layout.identity()?;
        // Take the lock before deleting anything a running server might be using.
        let lock = take_write_lock(&layout)?;
        for derived in [&layout.kv_index, &layout.tree] {
            match std::fs::remove_file(derived) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(derived, e)),
            }
        }
        let search = crate::search::index_dir(&layout);
        match std::fs::remove_dir_all(&search) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&search, e)),
        }
        drop(lock);
        Store::open(dir, key_path, config)
    }

    /// The store's paths.
    pub fn layout(&self) -> &Layout {
        &self.shared.layout
    }

    /// The log, read-only, with evicted segments read as the store reads them.
    pub fn log_reader(&self) -> Result<LogReader> {
        self.shared.log_reader()
    }

    /// The reads of evicted segments (stubs, remote, range cache).
    pub fn evicted_reads(&self) -> &Arc<RemoteReads> {
        self.shared.segments.evicted()
    }

    /// Replaces the local file of sealed segment `stub.first_seq` by its stub (see
    /// [`crate::log::evicted::EvictedSegment::evict`]) and closes the store's descriptor of
    /// it, so its space is freed. Never the segment being written.
    pub fn evict_segment(&self, stub: &crate::log::evicted::EvictedSegment) -> Result<()> {
        let active = self.shared.writer().segment.as_ref().map(|s| s.first_seq);
        if active.is_some_and(|a| a <= stub.first_seq) {
            return Err(Error::Rejected(format!(
                "segment {} is the one being written; only sealed segments are evicted",
                stub.first_seq
            )));
        }
        stub.evict(&self.shared.layout.log_dir)?;
        self.shared.segments.forget(stub.first_seq);
        Ok(())
    }

    /// The log's origin (checkpoint origin line and key name).
    pub fn origin(&self) -> &str {
        self.shared.key.name()
    }

    /// Appends a delivered message; returns once it (and everything before it) is durable.
    /// Bytes already stored become an `arrival` record or nothing, as `on_duplicate` says.
    pub fn append_message(
        &self,
        envelope: &Envelope,
        raw: &[u8],
        on_duplicate: OnDuplicate,
    ) -> Result<Appended> {
        let mut appended = self.append_messages(&[(envelope, raw)], on_duplicate)?;
        appended
            .pop()
            .ok_or_else(|| Error::Internal("one message to append, none appended".into()))
    }

    /// Appends messages in order under one hold of the writer and returns once all of them are
    /// durable: one fsync for the batch. For bulk import; if it fails part-way, records before
    /// the failure may still become durable (a re-import finds them as duplicates).
    pub fn append_messages(
        &self,
        batch: &[(&Envelope, &[u8])],
        on_duplicate: OnDuplicate,
    ) -> Result<Vec<Appended>> {
        // Hash, compress and parse before taking the lock: concurrent callers use every core,
        // and the indexer gets the entries from the writer instead of reading the log back.
        let prepared = batch
            .iter()
            .map(|(envelope, raw)| {
                let (codec, payload) = self.shared.compression.compress(raw)?;
                Ok(Prepared {
                    content_hash: blake3::hash(raw).into(),
                    content_len: raw.len() as u64,
                    envelope: envelope.encode(),
                    codec,
                    payload,
                    headers: HeaderTerms::parse(raw),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut appended = Vec::with_capacity(prepared.len());
        let generation = {
            let mut w = self.shared.usable_writer()?;
            for p in prepared {
                appended.push(self.append_locked(&mut w, p, on_duplicate)?);
            }
            w.generation
        };
        // A skipped duplicate is acknowledged once the record holding its bytes is durable.
        let last = appended.iter().map(|a| a.seq).max().unwrap_or(0);
        self.shared.wait_durable(Written {
            seq: last,
            generation,
        })?;
        for (a, (_, raw)) in appended.iter().zip(batch) {
            if a.kind == Some(RecordKind::Message) {
                if let Some(samples) = self.shared.compression.observe(raw) {
                    // The message is archived; a failure here only delays better compression.
                    let _ = self.add_dictionary(&samples);
                }
            }
        }
        Ok(appended)
    }

    /// Writes one prepared message (or its arrival, or nothing for a skipped duplicate).
    fn append_locked(&self, w: &mut Writer, p: Prepared, on_duplicate: OnDuplicate) -> Result<Appended> {
        let Prepared {
            content_hash,
            content_len,
            envelope,
            codec,
            payload,
            headers,
        } = p;
        let existing = match w.pending_content.get(&content_hash) {
            Some(seq) => Some(*seq),
            None => self.shared.index.first_with_content(&content_hash)?,
        };
        let (body, codec, payload, headers, kind) = match (existing, on_duplicate) {
            (Some(first_seq), OnDuplicate::Skip) => {
                return Ok(Appended {
                    seq: first_seq,
                    kind: None,
                    content_hash,
                    first_seq,
                })
            }
            (Some(first_seq), OnDuplicate::RecordArrival) => (
                LeafBody::Arrival {
                    content_hash,
                    content_len,
                    first_seq,
                    envelope,
                },
                Codec::Raw,
                Vec::new(),
                None,
                RecordKind::Arrival,
            ),
            (None, _) => (
                LeafBody::Message {
                    content_hash,
                    content_len,
                    envelope,
                },
                codec,
                payload,
                Some(headers),
                RecordKind::Message,
            ),
        };
        let written = w.write(
            body,
            (codec, &payload),
            headers,
            &self.shared.config,
            &self.shared.key,
        )?;
        self.shared.appends.fetch_add(1, Ordering::Relaxed);
        // Before the append is acknowledged: a search after it waits for this record.
        self.shared
            .content_written
            .fetch_max(written.seq, Ordering::AcqRel);
        if existing.is_none() {
            w.pending_content.insert(content_hash, written.seq);
        }
        Ok(Appended {
            seq: written.seq,
            kind: Some(kind),
            content_hash,
            first_seq: existing.unwrap_or(written.seq),
        })
    }

    /// Trains a dictionary from `samples`, appends it as a record, and makes new messages
    /// use it.
    fn add_dictionary(&self, samples: &[Vec<u8>]) -> Result<()> {
        let compression = &self.shared.compression;
        let Some(bytes) = compression.train(samples) else {
            return Ok(());
        };
        let hash: [u8; 32] = blake3::hash(&bytes).into();
        let body = LeafBody::Dictionary {
            content_hash: hash,
            content_len: bytes.len() as u64,
        };
        let written = self.shared.usable_writer().and_then(|mut w| {
            w.write(
                body,
                (Codec::Raw, &bytes),
                None,
                &self.shared.config,
                &self.shared.key,
            )
        });
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                compression.abandon();
                return Err(e);
            }
        };
        let seq = written.seq;
        self.shared.appends.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.shared.wait_durable(written) {
            compression.abandon();
            return Err(e);
        }
        compression.activate(
            seq,
            Dictionary {
                hash,
                bytes: Arc::new(bytes),
            },
        );
        Ok(())
    }

    /// Appends an audit event; returns its seq once durable.
    pub fn append_audit(&self, event: &crate::audit::AuditEvent) -> Result<u64> {
        self.shared.append_audit(event)
    }

    /// Appends an offload receipt (a sealed segment is stored in WORM object storage);
    /// returns its seq once durable, under a signed checkpoint like any acknowledged record.
    /// The caller keeps it to one receipt per segment: the store does not look.
    pub fn append_offload(&self, receipt: crate::log::record::OffloadReceipt) -> Result<u64> {
        let written = self.shared.usable_writer()?.write(
            LeafBody::Offload(receipt),
            (Codec::Raw, &[]),
            None,
            &self.shared.config,
            &self.shared.key,
        )?;
        self.shared.appends.fetch_add(1, Ordering::Relaxed);
        self.shared.wait_durable(written)?;
        Ok(written.seq)
    }

    /// Appends a signed checkpoint now if anything was appended since the last one; returns
    /// the newest checkpoint.
    pub fn checkpoint(&self) -> Result<Option<(u64, SignedCheckpoint)>> {
        self.shared.checkpoint()?;
        Ok(self.latest_checkpoint())
    }

    /// The newest checkpoint record: its seq and signed note.
    pub fn latest_checkpoint(&self) -> Option<(u64, SignedCheckpoint)> {
        self.shared.writer().latest_checkpoint.clone()
    }

    /// Reads any record, whoever may see it: for verification, export and the local
    /// command line, which act as the archive's operator. Front doors never call this: a
    /// principal reads through [`Store::view_message`], which checks the record itself.
    /// Waits for the index if the record is very fresh.
    pub fn read_record_unscoped(&self, seq: u64) -> Result<Record> {
        self.read_record(seq)
    }

    /// Reads a record for the store's own use (views look up arrivals, reads for a principal
    /// go on to check the record).
    pub(crate) fn read_record(&self, seq: u64) -> Result<Record> {
        let generation = {
            let w = self.shared.writer();
            if seq == 0 || seq > w.written_seq() {
                return Err(Error::NoSuchRecord(seq));
            }
            w.generation
        };
        self.shared.wait_durable(Written { seq, generation })?;
        self.shared.wait_indexed(seq)?;
        let location = self.shared.index.location(seq)?.ok_or(Error::NoSuchRecord(seq))?;
        self.shared.segments.read_at(&location, seq)
    }

    /// The exact bytes of a message or arrival record, whoever may see them: for export and
    /// the local command line only (see [`Store::read_record_unscoped`]).
    pub fn read_message_unscoped(&self, seq: u64) -> Result<Vec<u8>> {
        self.content_of(self.read_record(seq)?)
    }

    /// The exact bytes of a message or arrival `record` (an arrival's are its message's).
    pub(crate) fn content_of(&self, record: Record) -> Result<Vec<u8>> {
        let cache = &self.shared.read_cache;
        if let Some(cached) = cache.get(record.seq()) {
            return Ok(cached.content.to_vec());
        }
        let (seq, time_us) = (record.seq(), record.leaf.time_us);
        let LeafBody::Arrival { first_seq, .. } = &record.leaf.body else {
            let content = record_content(&record, &*self.shared)?;
            cache.insert(seq, time_us, std::sync::Arc::from(&content[..]));
            return Ok(content);
        };
        // An arrival's bytes are its message's: one copy kept, under both records.
        let content: std::sync::Arc<[u8]> = match cache.get(*first_seq) {
            Some(cached) => cached.content,
            None => {
                let message = self.read_record(*first_seq)?;
                let content: std::sync::Arc<[u8]> = record_content(&message, &*self.shared)?.into();
                cache.insert(message.seq(), message.leaf.time_us, content.clone());
                content
            }
        };
        cache.insert(seq, time_us, content.clone());
        Ok(content.to_vec())
    }

    /// The content and receive time of record `seq` if the read cache holds them: a read
    /// that needs nothing else (its access checked already) skips the index and the log.
    pub(crate) fn cached_content(&self, seq: u64) -> Option<(Vec<u8>, i64)> {
        self.shared
            .read_cache
            .get(seq)
            .map(|c| (c.content.to_vec(), c.time_us))
    }

    /// The message record first holding bytes with this blake3 hash.
    pub fn first_with_content(&self, hash: &[u8; 32]) -> Result<Option<u64>> {
        if let Some(seq) = self.shared.writer().pending_content.get(hash) {
            return Ok(Some(*seq));
        }
        self.shared.index.first_with_content(hash)
    }

    /// Message records with this Message-ID, ascending.
    pub fn by_message_id(&self, id: &str) -> Result<Vec<u64>> {
        self.sync_content_index()?;
        self.shared.index.by_message_id(id)
    }

    /// Message and arrival records where `address` is a sender or recipient, ascending.
    pub fn by_address(&self, role: Role, address: &str) -> Result<Vec<u64>> {
        self.sync_content_index()?;
        self.shared.index.by_address(role, address)
    }

    /// The view lists sessions share (`crate::views`).
    pub(crate) fn shared_views(&self) -> &crate::views::SharedViews {
        &self.shared.views
    }

    /// The key-value index with every durable record applied, and the seq up to which that
    /// holds (for views, `crate::views`: a view as of that seq misses nothing at or below it).
    pub(crate) fn synced_index(&self) -> Result<(u64, &KvIndex)> {
        let synced = self.shared.durability.synced();
        self.shared.wait_indexed(synced)?;
        Ok((synced, &self.shared.index))
    }

    /// Full-text search as `principal` (see docs/SEARCH.md); waits until every durable
    /// record is searchable. Hits are per message and filtered to what the principal may see.
    /// It runs within [`crate::search::DEFAULT_TIME_LIMIT`].
    pub fn search(
        &self,
        principal: &Principal,
        query: &Query,
        options: &SearchOptions,
    ) -> Result<SearchResults> {
        self.search_within(principal, query, options, &Budget::default())
    }

    /// [`Store::search`] within `budget`: past its deadline or once its flag is set, the
    /// search stops with [`Error::SearchStopped`].
    pub fn search_within(
        &self,
        principal: &Principal,
        query: &Query,
        options: &SearchOptions,
        budget: &Budget,
    ) -> Result<SearchResults> {
        // Snippets read hits back through the key-value index (locations of dictionaries).
        self.wait_searchable_within(Some(budget))?;
        self.shared
            .text
            .search(principal, query, options, budget, &|summary| {
                let read = self
                    .shared
                    .segments
                    .read_at(&summary.location(), summary.seq)
                    .and_then(|record| record_content(&record, &*self.shared));
                crate::search::snippet_source(read, self.shared.segments.evicted())
            })
    }

    /// What `principal` may see of the message whose record is `seq`, without its bytes
    /// (the scope is part of the index query): `None` for a message outside their scope and
    /// for one that does not exist alike. Waits, within the search time limit, until every
    /// durable record is searchable.
    pub fn hit_for(&self, principal: &Principal, seq: u64) -> Result<Option<crate::search::Hit>> {
        self.wait_searchable_within(Some(&Budget::default()))?;
        self.shared.text.hit_of(principal, seq)
    }

    /// The seqs (message records) of every message `query` matches as `principal`, in no
    /// particular order, within `budget`: what IMAP SEARCH needs, without building hits.
    pub fn matching_seqs(&self, principal: &Principal, query: &Query, budget: &Budget) -> Result<Vec<u64>> {
        self.wait_searchable_within(Some(budget))?;
        self.shared.text.matching_seqs(principal, query, budget)
    }

    /// Waits until every durable message and arrival record (what the search index holds) is
    /// in the search index, which a `Live` store catches up in the background.
    pub fn wait_searchable(&self) -> Result<()> {
        self.wait_searchable_within(None)
    }

    /// [`Store::wait_searchable`], stopped by `budget`'s deadline or cancellation.
    fn wait_searchable_within(&self, budget: Option<&Budget>) -> Result<()> {
        let content = self.sync_content_index()?;
        if self.shared.config.search_indexing == SearchIndexing::Deferred {
            return Err(Error::Search(
                "this store was opened with search indexing deferred; searching needs \
                 SearchIndexing::Live"
                    .into(),
            ));
        }
        self.shared.text.wait_applied(content, budget)
    }

    /// Waits until the key-value index holds every durable message and arrival record;
    /// returns the seq it waited for. The records after the last of them (audit and
    /// checkpoint records: every web request and IMAP command writes one) are not waited
    /// for: a search or lookup would otherwise wait for the indexer to step over the
    /// previous requests' records, on every request.
    fn sync_content_index(&self) -> Result<u64> {
        let synced = self.shared.durability.synced();
        let content = self.shared.content_written.load(Ordering::Acquire);
        let target = synced.min(content);
        self.shared.wait_indexed(target)?;
        Ok(target)
    }

    /// Inclusion proof of record `seq` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>> {
        let w = self.shared.writer();
        if size > w.tree.size() || seq == 0 {
            return Err(Error::Rejected(format!(
                "tree size {size} is beyond the log ({})",
                w.tree.size()
            )));
        }
        w.tree.inclusion_proof(seq - 1, size)
    }

    /// Consistency proof from the tree of `old` leaves to the tree of `new` leaves.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        let w = self.shared.writer();
        if new > w.tree.size() {
            return Err(Error::Rejected(format!(
                "tree size {new} is beyond the log ({})",
                w.tree.size()
            )));
        }
        w.tree.consistency_proof(old, new)
    }

    /// Root of the tree of the first `size` records.
    pub fn root(&self, size: u64) -> Result<Hash> {
        self.shared.writer().tree.root(size)
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            appends: self.shared.appends.load(Ordering::Relaxed),
            fsyncs: self.shared.durability.fsyncs.load(Ordering::Relaxed),
            last_seq: self.shared.writer().written_seq(),
            indexed_seq: self.shared.progress().applied,
            search_indexed_seq: self.shared.text.applied(),
            rewinds: self.shared.rewinds.load(Ordering::Relaxed),
        }
    }

    /// Bytes on disk and their ratio to the raw mail, at most [`crate::status::ON_DISK_REFRESH`]
    /// old (a directory listing and a pass over the search index's size column when stale).
    pub fn on_disk(&self) -> Result<crate::status::OnDisk> {
        self.shared.on_disk.get(crate::status::ON_DISK_REFRESH, || {
            let searcher = self.shared.text.searcher();
            let as_of = self.shared.text.applied();
            let (messages, raw) = crate::status::raw_messages(&searcher)?;
            let usage = crate::status::disk_usage(&self.shared.layout);
            Ok(crate::status::on_disk(usage, messages, raw, as_of))
        })
    }

    /// The state readiness checks and metrics read (see [`Health`]).
    pub fn health(&self) -> Health {
        let (poisoned, unsigned_records, checkpoint_age) = {
            let w = self.shared.writer();
            (
                w.poisoned.clone(),
                w.since_checkpoint,
                w.last_checkpoint_at.elapsed(),
            )
        };
        let trouble = poisoned
            .map(|why| format!("the log's writer is stopped: {why}"))
            .or_else(|| self.shared.durability.trouble())
            .or_else(|| {
                let failure = self.shared.progress().failure.clone();
                failure.map(|why| format!("the key-value index stopped: {why}"))
            });
        let synced = self.shared.durability.synced();
        let searchable = self.shared.text.applied();
        let search_lag_records = synced.saturating_sub(searchable);
        let search_lag = if search_lag_records == 0 {
            None
        } else {
            self.received_at(searchable + 1).map(|received| {
                std::time::SystemTime::now()
                    .duration_since(received)
                    .unwrap_or_default()
            })
        };
        Health {
            trouble,
            unsigned_records,
            checkpoint_age,
            search_lag_records,
            search_lag,
        }
    }

    /// When record `seq` was received, if the key-value index knows where it is (never
    /// waits for the index).
    fn received_at(&self, seq: u64) -> Option<std::time::SystemTime> {
        let location = self.shared.index.location(seq).ok().flatten()?;
        let record = self.shared.segments.read_at(&location, seq).ok()?;
        let micros = u64::try_from(record.leaf.time_us).ok()?;
        std::time::UNIX_EPOCH.checked_add(Duration::from_micros(micros))
    }

    /// Clean shutdown: a final checkpoint, the index caught up and made durable, the tree
    /// cache written. Also done on drop, where errors cannot be reported.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()?;
        // After a bulk load the index file is mostly free pages (see `KvIndex::compact`);
        // rewriting it costs about as much as the load's own index work did.
        let bulk = self.shared.appends.load(Ordering::Relaxed) >= COMPACT_AFTER_APPENDS;
        if let (true, Some(shared)) = (bulk, Arc::get_mut(&mut self.shared)) {
            shared.index.compact()?;
        }
        Ok(())
    }

    fn shutdown(&self) -> Result<()> {
        let threads: Vec<_> = std::mem::take(&mut *self.background.lock().unwrap_or_else(|p| p.into_inner()));
        if threads.is_empty() {
            return Ok(());
        }
        // The trail records every rewind, also one whose record the timer has not written.
        let _ = self.shared.audit_rewinds();
        let checkpoint = self.shared.checkpoint();
        self.shared.durability.shut_down();
        for t in threads {
            let _ = t.join();
        }
        let tree = self.shared.writer().tree.sync();
        let search = self.shared.text.finish();
        checkpoint?;
        tree?;
        search?;
        if let Some(why) = self.shared.progress().failure.clone() {
            return Err(Error::Index(why));
        }
        if let Some(why) = self.shared.text.failure() {
            return Err(Error::Search(why));
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Takes the store's write lock (an advisory lock on `LOCK`, released when the file closes,
/// so a crashed process never leaves a stale lock behind).
fn take_write_lock(layout: &Layout) -> Result<File> {
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&layout.lock)
        .at(&layout.lock)?;
    if lock.try_lock().is_err() {
        return Err(Error::Locked(layout.dir.clone()));
    }
    Ok(lock)
}

fn writable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o200 != 0)
}

/// Opens the tree cache, trusting it as far as its last completed sync (stores from before
/// sync markers: up to the newest checkpoint) and never beyond the log, and re-hashes the
/// records after that from the log. A cache that then disagrees with the newest checkpoint is
/// rebuilt from the whole log.
fn open_tree(layout: &Layout, tail: &recovery::Tail, evicted: &Arc<RemoteReads>) -> Result<TreeFile> {
    let checkpoint = tail.checkpoint.as_ref().map(|(_, c)| &c.checkpoint);
    let trusted = match crate::log::tree::synced_size(&layout.tree) {
        Some(synced) => synced.min(tail.last_seq),
        None => checkpoint.map_or(0, |c| c.size),
    };
    let mut tree = rehash_tail(layout, TreeFile::open(&layout.tree, trusted)?, tail, evicted)?;
    if let Some(c) = checkpoint {
        if c.size > tree.size() || tree.root(c.size)? != c.root {
            drop(tree);
            std::fs::remove_file(&layout.tree).at(&layout.tree)?;
            tree = rehash_tail(layout, TreeFile::open(&layout.tree, 0)?, tail, evicted)?;
        }
    }
    Ok(tree)
}

/// Appends the leaf hashes of the records after the tree's size, up to the log's end.
fn rehash_tail(
    layout: &Layout,
    mut tree: TreeFile,
    tail: &recovery::Tail,
    evicted: &Arc<RemoteReads>,
) -> Result<TreeFile> {
    if tree.size() < tail.last_seq {
        let log = LogReader::open_with(&layout.log_dir, evicted.clone())?;
        for record in log.records_from(tree.size() + 1)? {
            let record = record?;
            if record.seq() > tail.last_seq {
                break;
            }
            tree.push(crate::log::merkle::leaf_hash(&record.leaf_bytes));
        }
    }
    if tree.size() != tail.last_seq {
        return Err(Error::Internal(format!(
            "could not rebuild the Merkle tree: {} of {} records",
            tree.size(),
            tail.last_seq
        )));
    }
    tree.sync()?;
    Ok(tree)
}

/// Opens the key-value index of the log `origin` whose tail is `tail`. An index that is not
/// this log's is emptied so catch-up rebuilds it: one of another store (origin), one ahead of
/// the log (the log was replaced or cut), or one whose chain hash at its applied seq is not
/// the log's there (another history, e.g. a copy from a store with the same record offsets).
fn open_index(
    layout: &Layout,
    origin: &str,
    tail: &recovery::Tail,
    evicted: &RemoteReads,
) -> Result<KvIndex> {
    let index = KvIndex::open(&layout.kv_index, origin)?;
    let applied = index.applied_seq()?;
    let consistent = applied == 0
        || (applied <= tail.last_seq && {
            let recorded = index.applied_chain()?;
            let actual = if applied == tail.last_seq {
                Some(tail.chain)
            } else {
                index
                    .location(applied)?
                    .and_then(|l| read_at_via(&layout.log_dir, evicted, &l, applied).ok())
                    .map(|record| record.chain)
            };
            recorded.is_some() && recorded == actual
        });
    if !consistent {
        index.clear()?;
    }
    Ok(index)
}

/// Every `checkpoint_interval` while records arrive: appends a checkpoint over records not yet
/// under one (group commits sign their batches; this covers records nobody waits for) and
/// makes the tree's new hashes durable, so a restart rehashes at most that much of the log.
fn checkpoint_timer(shared: &Shared) {
    let tick = shared
        .config
        .checkpoint_interval
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(10));
    loop {
        if shared.durability.sleep(tick) {
            return;
        }
        let due = {
            let w = shared.writer();
            w.since_checkpoint > 0 && w.last_checkpoint_at.elapsed() >= shared.config.checkpoint_interval
        };
        if due {
            // A failure here surfaces on the next append or at close.
            let _ = shared.checkpoint();
        }
        // A writer poisoned by a failed fsync goes back to its durable point even when
        // nothing is appended.
        if shared.writer().poisoned.is_some() {
            // On failure the writer stays poisoned and this is tried again next tick.
            drop(shared.usable_writer());
        }
        let _ = shared.audit_rewinds();
        let mut w = shared.writer();
        if w.tree.has_unsynced() && w.last_tree_sync_at.elapsed() >= shared.config.checkpoint_interval {
            // Derived data: a failure only means a longer rehash at the next open.
            let _ = w.tree.sync();
            w.last_tree_sync_at = Instant::now();
        }
    }
}

/// A new store in a temporary directory, for tests: the directory (removed when dropped),
/// the store's path and its key's.
#[cfg(test)]
pub(crate) fn created_store() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let key = path.join("signing.key");
    Store::create(&path, &key).unwrap();
    (dir, path, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;

    /// The first `n` messages of the SpamAssassin fixture corpus, in name order.
    fn corpus_mail(n: usize) -> Vec<Vec<u8>> {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/corpus/spamassassin");
        let mut files: Vec<_> = std::fs::read_dir(&corpus)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.iter().take(n).map(|f| std::fs::read(f).unwrap()).collect()
    }

    /// The entries the writer hands the indexer must be exactly those the log yields: an index
    /// built live equals one rebuilt from the log, row for row (messages with and without a
    /// dictionary, arrivals, skipped duplicates, audit records, checkpoints, segment rolls).
    #[test]
    fn index_built_from_fresh_entries_equals_index_rebuilt_from_the_log() {
        let mail = corpus_mail(320);
        let (_dir, path, key) = created_store();
        let config = StoreConfig {
            segment_size: 256 << 10,
            checkpoint_every: 97,
            search_indexing: SearchIndexing::Deferred,
            ..StoreConfig::default()
        };
        let store = Store::open(&path, &key, config.clone()).unwrap();
        for (i, raw) in mail.iter().enumerate() {
            let e = Envelope::lmtp(
                &format!("sender{i}@example.org"),
                &[format!("Rcpt{}@Example.COM", i % 7)],
            );
            store.append_message(&e, raw, OnDuplicate::RecordArrival).unwrap();
            if i % 50 == 0 {
                let again = Envelope::lmtp("journal@example.org", &["auditor@example.org"]);
                store
                    .append_message(&again, raw, OnDuplicate::RecordArrival)
                    .unwrap();
                store.append_message(&again, raw, OnDuplicate::Skip).unwrap();
                let event = AuditEvent {
                    actor: "test".into(),
                    action: "view".into(),
                    target: i.to_string(),
                    origin: "local".into(),
                    ..Default::default()
                };
                store.append_audit(&event).unwrap();
            }
        }
        store.close().unwrap();
        // Reopening reads nothing back: close left the index caught up.
        let reopened = Store::open(&path, &key, config.clone()).unwrap();
        let live = reopened.shared.index.dump().unwrap();
        reopened.close().unwrap();
        assert!(
            live.iter()
                .any(|r| r.starts_with("location") && r.ends_with(", 5)")),
            "a dictionary was trained and indexed"
        );
        assert!(
            Layout::new(&path).log_dir.read_dir().unwrap().count() > 2,
            "segments rolled"
        );

        let rebuilt = Store::reindex(&path, &key, config).unwrap();
        assert_eq!(rebuilt.shared.index.dump().unwrap(), live);
        rebuilt.close().unwrap();
    }

    /// A search waits for the key-value index only up to the last message, so a hit's
    /// dictionary can be durable (and its message in the search index) before the key-value
    /// indexer has applied it: reading it then waits for that record instead of failing the
    /// search. The indexer lingers before a batch, so right after the dictionary's commit the
    /// index usually lacks it; a round where the indexer was quicker proves nothing and is
    /// tried again.
    #[test]
    fn a_dictionary_not_in_the_key_value_index_yet_is_waited_for() {
        let samples = corpus_mail(200);
        let (_dir, path, key) = created_store();
        let config = StoreConfig {
            search_indexing: SearchIndexing::Deferred,
            ..StoreConfig::default()
        };
        let store = Store::open(&path, &key, config).unwrap();
        let mut caught_unindexed = false;
        for _ in 0..20 {
            let dictionary_seq = store.shared.writer().written_seq() + 1;
            store.add_dictionary(&samples).unwrap();
            let unindexed = store.shared.index.location(dictionary_seq).unwrap().is_none();
            let read = store.shared.dictionary(dictionary_seq);
            assert!(read.is_ok(), "dictionary {dictionary_seq}: {:?}", read.err());
            if unindexed {
                caught_unindexed = true;
                break;
            }
        }
        assert!(
            caught_unindexed,
            "the key-value indexer applied every dictionary at once"
        );
        store.close().unwrap();
    }

    /// What a failed fsync leaves: records written after the last durable point, across a
    /// segment roll (the full segment sealed). The rewind cuts them into quarantine, unseals
    /// the point's segment, removes the newer one, and appending goes on from the point with
    /// a log that verifies, reopens without recovery and reads back every kept message.
    #[test]
    fn a_rewind_cuts_what_was_not_durable_and_appending_goes_on() {
        let (_dir, path, key) = created_store();
        let config = StoreConfig {
            segment_size: 64 << 10,
            search_indexing: SearchIndexing::Deferred,
            ..StoreConfig::default()
        };
        let layout = Layout::new(&path);
        let store = Store::open(&path, &key, config.clone()).unwrap();
        let envelope = Envelope::lmtp("a@example.org", &["b@example.org"]);
        let message = |i: usize| {
            let mut filler = vec![0u8; 8_000];
            blake3::Hasher::new()
                .update(&i.to_be_bytes())
                .finalize_xof()
                .fill(&mut filler);
            let filler: String = filler.iter().map(|b| format!("{b:02x}")).collect();
            format!("Subject: {i}\r\n\r\n{filler}\r\n").into_bytes()
        };
        let mut kept = Vec::new();
        for i in 0..3 {
            let a = store
                .append_message(&envelope, &message(i), OnDuplicate::RecordArrival)
                .unwrap();
            kept.push((a.seq, message(i)));
        }
        let point = store.shared.durability.point();
        let segments = || crate::log::segment::list_segments(&layout.log_dir).unwrap();
        let segments_at_point = segments();
        {
            let mut w = store.shared.writer();
            for i in 0..10 {
                let event = serde_json::to_vec(&AuditEvent {
                    actor: "test".into(),
                    action: "view".into(),
                    target: "x".repeat(10_000 + i),
                    origin: "local".into(),
                    ..Default::default()
                })
                .unwrap();
                w.write(
                    LeafBody::Audit { event },
                    (Codec::Raw, &[]),
                    None,
                    &config,
                    &store.shared.key,
                )
                .unwrap();
            }
            assert!(
                segments().len() > segments_at_point.len(),
                "a segment was sealed meanwhile"
            );
            w.poisoned = Some("test: an fsync failed".into());
        }
        let after = store
            .append_message(&envelope, &message(3), OnDuplicate::RecordArrival)
            .unwrap();
        // Right after the point: the trail's record of the rewind, then the message.
        assert_eq!(
            after.seq,
            point.seq + 2,
            "appending goes on from the durable point"
        );
        kept.push((after.seq, message(3)));
        assert_eq!(
            segments(),
            segments_at_point,
            "the segment begun after the point is gone"
        );
        assert_eq!(store.stats().rewinds, 1);
        let quarantined: u64 = std::fs::read_dir(&layout.quarantine)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(
            quarantined > 100_000,
            "the cut records are kept: {quarantined} bytes"
        );
        for i in 4..12 {
            let a = store
                .append_message(&envelope, &message(i), OnDuplicate::RecordArrival)
                .unwrap();
            kept.push((a.seq, message(i)));
        }
        store.close().unwrap();

        let report =
            crate::verify::verify_log(&layout.log_dir, &layout.verifier_key().unwrap(), &[]).unwrap();
        assert!(report.problem.is_none(), "{:?}", report.problem);
        assert_eq!(report.unsigned_tail(), 0);
        let store = Store::open(&path, &key, config).unwrap();
        assert!(store.recovered().is_none(), "nothing left for recovery");
        for (seq, raw) in &kept {
            assert_eq!(&store.read_message_unscoped(*seq).unwrap(), raw, "seq {seq}");
        }
        let rewinds: Vec<String> = (1..=store.stats().last_seq)
            .filter_map(|seq| match store.read_record_unscoped(seq).unwrap().leaf.body {
                LeafBody::Audit { event } => Some(String::from_utf8(event).unwrap()),
                _ => None,
            })
            .filter(|e| e.contains("recovery-rewind"))
            .collect();
        assert_eq!(rewinds.len(), 1, "the rewind is in the trail");
        assert!(
            rewinds[0].contains(&format!(
                "went back to record {}, records {}..",
                point.seq,
                point.seq + 1
            )),
            "{}",
            rewinds[0]
        );
        store.close().unwrap();
    }
}
