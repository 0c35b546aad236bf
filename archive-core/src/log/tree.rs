//! The persisted Merkle tree: every complete subtree hash, in post-order, in `tree.hashes`.
//! Derived state (rebuilt from the log when missing or stale), kept so that opening a large
//! archive and answering proofs costs O(log n) reads, not a rehash of every record.
//!
//! New hashes are buffered in memory and written by [`TreeFile::sync`] (from a timer, before a
//! segment is sealed, at close). After the hashes are fsynced, `sync` records their leaf count
//! in the marker file `tree.synced`; on open the tree is trusted up to that count (and never
//! beyond the log's end), and only the records after it are rehashed. Checkpoints are not
//! tied to tree syncs: every group commit appends one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::merkle::{stored_hash_count, stored_hash_index, Frontier, Hash, HashSource};
use crate::{Error, IoContext, Result};

/// The tree's stored hashes: a file prefix and an in-memory tail.
pub struct TreeFile {
    path: PathBuf,
    file: File,
    /// Hashes in the file.
    flushed: u64,
    /// Hashes after `flushed`, not yet written.
    buffer: Vec<Hash>,
    frontier: Frontier,
    /// The leaf count the marker file states (durable hashes).
    marked: u64,
}

impl TreeFile {
    /// Opens (creating if needed) the tree file, trusting at most `trusted_size` leaves of it.
    /// Returns the tree truncated to the trusted prefix (or to less, if the file is shorter);
    /// the caller appends the leaves after `size()`.
    pub fn open(path: &Path, trusted_size: u64) -> Result<TreeFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .at(path)?;
        let stored = file.metadata().at(path)?.len() / 32;
        // The largest leaf count whose hashes are all present, capped at what we may trust.
        let mut size = trusted_size;
        while stored_hash_count(size) > stored {
            size -= 1;
        }
        let flushed = stored_hash_count(size);
        file.set_len(flushed * 32).at(path)?;
        let mut tree = TreeFile {
            path: path.to_path_buf(),
            file,
            flushed,
            buffer: Vec::new(),
            frontier: Frontier::default(),
            marked: 0,
        };
        tree.frontier = tree.frontier_at(size)?;
        // The marker never states more than the file durably holds: hashes beyond the trusted
        // prefix (of records a crash took back) were just cut.
        tree.sync()?;
        Ok(tree)
    }

    /// Rebuilds the frontier of a tree of `size` leaves from stored complete subtrees.
    fn frontier_at(&self, size: u64) -> Result<Frontier> {
        let mut peaks = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                peaks.push((level, self.complete_subtree(level, start >> level)?));
                start += 1 << level;
            }
        }
        Ok(Frontier::from_peaks(size, peaks))
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root of all leaves appended so far.
    pub fn current_root(&self) -> Hash {
        self.frontier.root()
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let completed = self.frontier.push(leaf);
        self.buffer.extend(completed);
    }

    /// Goes back to the tree of the first `size` leaves (a rewind of the log cut the rest),
    /// durably: the marker never states more leaves than the log holds.
    pub fn rewind(&mut self, size: u64) -> Result<()> {
        if size > self.size() {
            return Err(Error::Internal(format!(
                "cannot rewind a tree of {} leaves to {size}",
                self.size()
            )));
        }
        let keep = stored_hash_count(size);
        if keep >= self.flushed {
            self.buffer.truncate((keep - self.flushed) as usize);
        } else {
            self.buffer.clear();
            self.file.set_len(keep * 32).at(&self.path)?;
            self.flushed = keep;
        }
        self.frontier = self.frontier_at(size)?;
        self.sync()
    }

    /// Whether leaves were added since the last [`TreeFile::sync`].
    pub fn has_unsynced(&self) -> bool {
        self.marked != self.size()
    }

    /// Writes buffered hashes, fsyncs the file, then records the leaf count they make durable
    /// in the marker file (written in place, 16 bytes, and fsynced).
    pub fn sync(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            let bytes: Vec<u8> = self.buffer.iter().flatten().copied().collect();
            self.file.write_all_at(&bytes, self.flushed * 32).at(&self.path)?;
            self.flushed += self.buffer.len() as u64;
            self.buffer.clear();
        }
        self.file.sync_data().at(&self.path)?;
        let marker = marker_path(&self.path);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&marker)
            .at(&marker)?;
        f.write_all_at(&encode_marker(self.size()), 0).at(&marker)?;
        f.sync_data().at(&marker)?;
        self.marked = self.size();
        Ok(())
    }
}

/// The marker file of the tree file at `tree`.
fn marker_path(tree: &Path) -> PathBuf {
    tree.with_extension("synced")
}

/// Leaf count, then the first 8 bytes of its blake3 hash: a torn or foreign marker reads as
/// no marker.
fn encode_marker(size: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&size.to_be_bytes());
    out[8..].copy_from_slice(&blake3::hash(&size.to_be_bytes()).as_bytes()[..8]);
    out
}

/// How many leaves of the tree file at `tree` a completed [`TreeFile::sync`] made durable;
/// `None` without a (valid) marker, as in stores written before markers existed.
pub fn synced_size(tree: &Path) -> Option<u64> {
    let bytes = std::fs::read(marker_path(tree)).ok()?;
    let size = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    (bytes.get(..16)? == encode_marker(size)).then_some(size)
}

impl HashSource for TreeFile {
    fn complete_subtree(&self, level: u32, index: u64) -> Result<Hash> {
        let i = stored_hash_index(level, index);
        if i >= self.flushed {
            return self
                .buffer
                .get((i - self.flushed) as usize)
                .copied()
                .ok_or_else(|| Error::Internal(format!("tree has no subtree ({level}, {index})")));
        }
        let mut h = [0u8; 32];
        self.file.read_exact_at(&mut h, i * 32).at(&self.path)?;
        Ok(h)
    }
}

/// Read-only access to a tree file written by a store (possibly by another process), for
/// proofs from the command line. Callers check proofs against a signed root before use.
pub struct TreeFileReader {
    path: PathBuf,
    file: File,
    stored: u64,
}

impl TreeFileReader {
    /// Opens the tree file.
    pub fn open(path: &Path) -> Result<TreeFileReader> {
        let file = File::open(path).at(path)?;
        let stored = file.metadata().at(path)?.len() / 32;
        Ok(TreeFileReader {
            path: path.to_path_buf(),
            file,
            stored,
        })
    }

    /// Whether the file holds every hash of a tree of `size` leaves.
    pub fn covers(&self, size: u64) -> bool {
        stored_hash_count(size) <= self.stored
    }
}

impl HashSource for TreeFileReader {
    fn complete_subtree(&self, level: u32, index: u64) -> Result<Hash> {
        let mut h = [0u8; 32];
        self.file
            .read_exact_at(&mut h, stored_hash_index(level, index) * 32)
            .at(&self.path)?;
        Ok(h)
    }
}
