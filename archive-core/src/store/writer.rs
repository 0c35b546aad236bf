//! The append path. One writer, behind one mutex, owns the end of the log: it numbers records,
//! chains and frames them, writes each frame at the end of the active segment, extends the
//! Merkle tree, seals segments at the size limit and appends signed checkpoints.
//! Durability (fsync) happens outside this lock, see `durability.rs`; after a failed fsync
//! the writer goes back to the last durable point ([`Writer::rewind`]).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::index::kv::{HeaderTerms, IndexEntry, Location};
use crate::log::checkpoint::{Checkpoint, LogKey, SignedCheckpoint};
use crate::log::merkle::{leaf_hash, HashSource};
use crate::log::record::{chain_next, encode_frame, Codec, Leaf, LeafBody, RecordKind};
use crate::log::segment::{list_segments, segment_file_name, segment_header};
use crate::log::tree::TreeFile;
use crate::store::durability::SyncedFile;
use crate::store::recovery::quarantine;
use crate::store::StoreConfig;
use crate::{Error, IoContext, Result};

/// The segment records are appended to.
pub(crate) struct ActiveSegment {
    /// Seq of the segment's first record (names the file).
    pub first_seq: u64,
    pub path: PathBuf,
    pub file: Arc<SyncedFile>,
    pub len: u64,
    /// Records in this segment.
    pub records: u64,
}

impl ActiveSegment {
    /// Creates a new segment file durably: file, header, fsync, directory fsync. A failed
    /// attempt (a full disk) removes what it made, and a file of that name left by an earlier
    /// failed attempt (shorter than a header: it never held a record) is replaced, so the
    /// next append tries again instead of failing on "file exists" until a restart.
    fn create(log_dir: &std::path::Path, first_seq: u64) -> Result<ActiveSegment> {
        let path = log_dir.join(segment_file_name(first_seq));
        let header = segment_header(first_seq);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() < header.len() as u64) {
            std::fs::remove_file(&path).at(&path)?;
        }
        let made = (|| {
            let mut file = OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .at(&path)?;
            file.write_all(&header).at(&path)?;
            file.sync_all().at(&path)?;
            File::open(log_dir).and_then(|d| d.sync_all()).at(log_dir)?;
            Ok(file)
        })();
        let file = match made {
            Ok(f) => f,
            Err(e) => {
                if !matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
                {
                    // Best effort: recovery also removes a segment without a whole header.
                    let _ = std::fs::remove_file(&path);
                }
                return Err(e);
            }
        };
        Ok(ActiveSegment {
            first_seq,
            path,
            file: Arc::new(SyncedFile::new(file)),
            len: header.len() as u64,
            records: 0,
        })
    }

    /// Reopens the last segment for appending (append mode: the OS puts every write at the end).
    pub fn reopen(first_seq: u64, path: PathBuf, len: u64, last_seq: u64) -> Result<ActiveSegment> {
        let file = OpenOptions::new().append(true).open(&path).at(&path)?;
        Ok(ActiveSegment {
            first_seq,
            path,
            file: Arc::new(SyncedFile::new(file)),
            len,
            records: (last_seq + 1).saturating_sub(first_seq),
        })
    }

    /// Appends one frame; on a failed or short write the file is cut back so no partial frame
    /// stays in front of later records.
    fn append(&mut self, frame: &[u8]) -> std::result::Result<(), AppendError> {
        let mut f: &File = self.file.file();
        if let Err(e) = f.write_all(frame) {
            if let Err(cut) = self.file.file().set_len(self.len) {
                return Err(AppendError::Uncut(format!(
                    "{}: write failed ({e}) and the partial record could not be removed ({cut})",
                    self.path.display()
                )));
            }
            return Err(AppendError::Io(Error::io(&self.path, e)));
        }
        self.len += frame.len() as u64;
        self.records += 1;
        Ok(())
    }

    /// Seals the segment: fsync, then read-only for everyone.
    fn seal(&self) -> Result<()> {
        self.file.sync(true).at(&self.path)?;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o400)).at(&self.path)
    }
}

/// A failed append: either cleanly undone, or leaving bytes that make the store unusable.
enum AppendError {
    Io(Error),
    Uncut(String),
}

impl From<AppendError> for Error {
    fn from(e: AppendError) -> Error {
        match e {
            AppendError::Io(e) => e,
            AppendError::Uncut(why) => Error::Unusable(why),
        }
    }
}

/// The seq a freshly written record got, and the writer's generation then (see
/// `durability.rs`: a rewind after a failed fsync starts a new one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Written {
    pub seq: u64,
    pub generation: u64,
}

/// The log's state right after a record known to be durable: where [`Writer::rewind`] goes
/// back to. It is always the end of a checkpoint (every group commit ends with one) or of the
/// log as recovery found it.
#[derive(Clone, Debug, Default)]
pub(crate) struct DurablePoint {
    /// The record (0: none).
    pub seq: u64,
    pub chain: [u8; 32],
    pub time_us: i64,
    /// The segment holding it (first seq, path, length up to the end of the record), if any,
    /// and whether records were being appended to it (else it was sealed).
    pub segment: Option<(u64, PathBuf, u64)>,
    pub appending: bool,
    pub latest_checkpoint: Option<(u64, SignedCheckpoint)>,
    pub since_checkpoint: u64,
}

/// What a rewind cut: records after the durable point, kept in quarantine files.
#[derive(Clone, Debug)]
pub struct Rewound {
    /// The last durable record, where the log continues.
    pub to_seq: u64,
    /// Records cut (first and last seq), none if only bytes of a failed write were there.
    pub records: Option<(u64, u64)>,
    /// Bytes cut, and the quarantine files holding them.
    pub bytes: u64,
    pub kept_in: Vec<PathBuf>,
    /// Why the log went back.
    pub cause: String,
}

impl std::fmt::Display for Rewound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; the log went back to record {}", self.cause, self.to_seq)?;
        if let Some((first, last)) = self.records {
            write!(f, ", records {first}..{last} (never acknowledged) cut")?;
        }
        write!(f, ", {} bytes kept in", self.bytes)?;
        for path in &self.kept_in {
            write!(f, " {}", path.display())?;
        }
        Ok(())
    }
}

/// The end of the log.
pub(crate) struct Writer {
    pub log_dir: PathBuf,
    pub segment: Option<ActiveSegment>,
    pub next_seq: u64,
    pub chain: [u8; 32],
    pub last_time_us: i64,
    pub tree: TreeFile,
    /// Content hashes written but not yet in the key-value index → seq of their message.
    pub pending_content: HashMap<[u8; 32], u64>,
    /// Index entries of records written but not yet taken by the indexer.
    pub fresh: FreshEntries,
    pub since_checkpoint: u64,
    pub last_checkpoint_at: Instant,
    pub last_tree_sync_at: Instant,
    pub latest_checkpoint: Option<(u64, SignedCheckpoint)>,
    /// Set when the log may be in an unknown state (a failed fsync or an uncut partial write):
    /// nothing is appended until [`Writer::rewind`] succeeds.
    pub poisoned: Option<String>,
    /// Bumped by every rewind.
    pub generation: u64,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Writer {
    /// Last seq written (not necessarily durable yet).
    pub fn written_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(why) => Err(Error::Unusable(why.clone())),
            None => Ok(()),
        }
    }

    /// Writes one record at the end of the log. The caller holds the writer lock. `headers`
    /// are the header terms of a message record's content, parsed by the caller.
    pub fn write(
        &mut self,
        body: LeafBody,
        (codec, payload): (Codec, &[u8]),
        headers: Option<HeaderTerms>,
        config: &StoreConfig,
        key: &LogKey,
    ) -> Result<Written> {
        self.check_usable()?;
        self.roll_if_full(config, key)?;
        let written = self.append_leaf(body, codec, payload, headers)?;
        if self.since_checkpoint >= config.checkpoint_every {
            // The record is written either way; a checkpoint that fails here is tried again
            // by the timer and its error reported at close.
            let _ = self.checkpoint_unchecked(key);
        }
        Ok(written)
    }

    /// Numbers, chains, frames and appends one record; extends the tree; keeps its index
    /// entry for the indexer.
    fn append_leaf(
        &mut self,
        body: LeafBody,
        codec: Codec,
        payload: &[u8],
        headers: Option<HeaderTerms>,
    ) -> Result<Written> {
        let seq = self.next_seq;
        // Receive times never go backwards along the log, even if the clock does.
        let time_us = now_us().max(self.last_time_us);
        let leaf = Leaf { seq, time_us, body };
        let kind = leaf.kind();
        let encoded = leaf.encode();
        let chain = chain_next(&self.chain, &encoded);
        let frame = encode_frame(kind, codec, &chain, &encoded, payload)?;
        let segment = match self.segment.as_mut() {
            Some(s) => s,
            None => self.segment.insert(ActiveSegment::create(&self.log_dir, seq)?),
        };
        let location = Location {
            segment: segment.first_seq,
            offset: segment.len,
            len: frame.len() as u64,
            kind,
        };
        if let Err(e) = segment.append(&frame) {
            if let AppendError::Uncut(why) = &e {
                self.poisoned = Some(why.clone());
            }
            return Err(e.into());
        }
        self.next_seq += 1;
        self.chain = chain;
        self.last_time_us = time_us;
        self.tree.push(leaf_hash(&encoded));
        self.fresh.push(IndexEntry::new(&leaf, chain, location, headers));
        if kind != RecordKind::Checkpoint {
            self.since_checkpoint += 1;
        }
        Ok(Written {
            seq,
            generation: self.generation,
        })
    }

    /// Starts a new segment when the active one reached the size limit; the full one ends with
    /// a checkpoint and is sealed.
    fn roll_if_full(&mut self, config: &StoreConfig, key: &LogKey) -> Result<()> {
        let full = self
            .segment
            .as_ref()
            .is_some_and(|s| s.records > 0 && s.len >= config.segment_size);
        if !full {
            return Ok(());
        }
        if self.since_checkpoint > 0 {
            self.checkpoint_unchecked(key)?;
        }
        // Recovery trusts sealed segments entirely, and the tree as far as it was synced.
        self.tree.sync()?;
        if let Some(s) = self.segment.take() {
            if let Err(e) = s.seal() {
                // The segment's last records may not be on disk, and it will never be the
                // last segment again (where recovery looks for a torn tail): reopen first.
                self.poisoned = Some(format!("sealing {} failed: {e}", s.path.display()));
                return Err(e);
            }
        }
        self.segment = Some(ActiveSegment::create(&self.log_dir, self.next_seq)?);
        Ok(())
    }

    /// The log's state after the last record written: durable once the active segment is
    /// fsynced.
    pub fn durable_point(&self) -> DurablePoint {
        DurablePoint {
            seq: self.written_seq(),
            chain: self.chain,
            time_us: self.last_time_us,
            segment: self
                .segment
                .as_ref()
                .map(|s| (s.first_seq, s.path.clone(), s.len)),
            appending: self.segment.is_some(),
            latest_checkpoint: self.latest_checkpoint.clone(),
            since_checkpoint: self.since_checkpoint,
        }
    }

    /// Goes back to `point` after a failed fsync (or a write that could not be undone): what
    /// follows it in the log was never acknowledged and may not be on disk as written. Those
    /// bytes are copied to quarantine files in `quarantine_dir`, then cut (segments begun
    /// after the point are removed, the point's segment is cut at the point and made durable
    /// so), the tree and the writer's state return to the point, and a new generation starts.
    /// On error the writer stays poisoned; a later call tries again.
    pub fn rewind(&mut self, point: &DurablePoint, quarantine_dir: &std::path::Path) -> Result<Rewound> {
        let cause = self
            .poisoned
            .clone()
            .unwrap_or_else(|| "the log's end was in doubt".into());
        let mut kept_in = Vec::new();
        let mut bytes = 0;
        // Newest first: a rewind that fails part-way leaves a log recovery can open.
        for (first, path) in list_segments(&self.log_dir)?.into_iter().rev() {
            if first <= point.seq || point.segment.as_ref().is_some_and(|(f, _, _)| *f == first) {
                continue;
            }
            bytes += std::fs::metadata(&path).at(&path)?.len();
            kept_in.push(quarantine(&path, 0, quarantine_dir)?);
            std::fs::remove_file(&path).at(&path)?;
        }
        self.segment = None;
        if let Some((first, path, len)) = &point.segment {
            let file_len = std::fs::metadata(path).at(path)?.len();
            // A segment sealed before the point stays as it is; one appended to after it (and
            // perhaps sealed since) is cut back and made writable again. Cut and fsynced
            // also when an earlier attempt cut it already: that attempt's fsync may have failed.
            if file_len > *len || point.appending {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).at(path)?;
                if file_len > *len {
                    bytes += file_len - len;
                    kept_in.push(quarantine(path, *len, quarantine_dir)?);
                }
                let file = OpenOptions::new().write(true).open(path).at(path)?;
                file.set_len(*len).at(path)?;
                file.sync_all().at(path)?;
            }
            if point.appending {
                self.segment = Some(ActiveSegment::reopen(*first, path.clone(), *len, point.seq)?);
            }
        }
        File::open(&self.log_dir)
            .and_then(|d| d.sync_all())
            .at(&self.log_dir)?;
        self.tree.rewind(point.seq)?;
        let records = (self.next_seq > point.seq + 1).then(|| (point.seq + 1, self.next_seq - 1));
        self.next_seq = point.seq + 1;
        self.chain = point.chain;
        self.last_time_us = self.last_time_us.max(point.time_us);
        self.latest_checkpoint = point.latest_checkpoint.clone();
        self.since_checkpoint = point.since_checkpoint;
        self.fresh.discard_after(point.seq);
        self.pending_content.retain(|_, seq| *seq <= point.seq);
        self.poisoned = None;
        self.generation += 1;
        Ok(Rewound {
            to_seq: point.seq,
            records,
            bytes,
            kept_in,
            cause,
        })
    }

    /// Appends the checkpoint of a group commit: over every record written, unless the last
    /// record already is a checkpoint.
    pub fn checkpoint_batch(&mut self, key: &LogKey) -> Result<()> {
        self.check_usable()?;
        if self.since_checkpoint > 0 {
            self.checkpoint_unchecked(key)?;
        }
        Ok(())
    }

    /// Appends a signed checkpoint over every record so far, unless the last record already
    /// is one. Returns its seq.
    pub fn checkpoint(&mut self, config: &StoreConfig, key: &LogKey) -> Result<Option<Written>> {
        self.check_usable()?;
        if self.since_checkpoint == 0 || self.next_seq == 1 {
            return Ok(None);
        }
        self.roll_if_full(config, key)?;
        let seq = if self.since_checkpoint == 0 {
            self.latest_checkpoint.as_ref().map(|c| c.0)
        } else {
            Some(self.checkpoint_unchecked(key)?)
        };
        Ok(seq.map(|seq| Written {
            seq,
            generation: self.generation,
        }))
    }

    fn checkpoint_unchecked(&mut self, key: &LogKey) -> Result<u64> {
        let size = self.next_seq - 1;
        let root = self.tree.current_root();
        // A checkpoint that does not extend the previous one is never signed.
        if let Some((_, prev)) = &self.latest_checkpoint {
            let p = &prev.checkpoint;
            if p.size > size || self.tree.root(p.size)? != p.root {
                return Err(Error::Verification(format!(
                    "refusing to sign: the tree of size {size} does not extend the checkpoint of size {}",
                    p.size
                )));
            }
        }
        let signed = key.sign(&Checkpoint {
            origin: key.name().to_string(),
            size,
            root,
        });
        let note = signed.note.clone().into_bytes();
        let written = self.append_leaf(LeafBody::Checkpoint { note }, Codec::Raw, &[], None)?;
        self.latest_checkpoint = Some((written.seq, signed));
        self.since_checkpoint = 0;
        self.last_checkpoint_at = Instant::now();
        Ok(written.seq)
    }
}

/// Entries kept for an indexer that falls this far behind are dropped; it reads those records
/// back from the log instead.
const MAX_FRESH: usize = 100_000;

/// Index entries of the newest records, with consecutive seqs, so the indexer need not read
/// back, decompress and parse what the writer just had in hand.
#[derive(Default)]
pub(crate) struct FreshEntries {
    entries: VecDeque<IndexEntry>,
}

impl FreshEntries {
    /// Drops the entries of records after `seq` (a rewind cut them).
    fn discard_after(&mut self, seq: u64) {
        while self.entries.back().is_some_and(|e| e.seq() > seq) {
            self.entries.pop_back();
        }
    }

    fn push(&mut self, entry: IndexEntry) {
        if self.entries.len() >= MAX_FRESH {
            self.entries.clear();
        }
        self.entries.push_back(entry);
    }

    /// Takes the entries after `applied` up to `target`, in seq order. The first may come
    /// after `applied + 1` (entries were dropped, or the records predate this process).
    pub fn take(&mut self, applied: u64, target: u64) -> Vec<IndexEntry> {
        while self.entries.front().is_some_and(|e| e.seq() <= applied) {
            self.entries.pop_front();
        }
        let end = self.entries.partition_point(|e| e.seq() <= target);
        self.entries.drain(..end).collect()
    }
}
