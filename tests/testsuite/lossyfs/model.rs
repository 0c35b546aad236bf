//! What the simulated disk holds. Every file and directory has a *volatile* state (what
//! programs see now, like the page cache and the dentry cache) and a *durable* state (what
//! survives a power cut). Changes go to the volatile state and are queued, in order, as
//! pending operations of their inode; an fsync of the inode (fdatasync too; fsync of a
//! directory for its entries) makes its pending operations durable. A power cut keeps the
//! durable state and, when it tears, a random prefix of each inode's pending operations (the
//! last kept write possibly torn, or zeros: its length reached the disk, its bytes did not).
//!
//! The durable bytes of file inode N live in `objects/N` (written at fsync, never before);
//! pending writes stay in memory. The durable namespace lives in memory while mounted and is
//! written out as a plain directory tree (the *image*, files hard-linked to their objects) when
//! the disk stops: that tree is what the next mount, or a person debugging, sees.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::Rng;

/// Inode number of the root directory (FUSE's).
pub const ROOT: u64 = 1;

/// One change to a file not yet durable.
#[derive(Clone, Debug)]
enum FileOp {
    Write { at: u64, data: Vec<u8> },
    SetLen(u64),
}

/// One change to a directory's entries not yet durable.
#[derive(Clone, Debug)]
enum DirOp {
    Link(OsString, u64),
    Unlink(OsString),
    Rename(OsString, OsString),
}

/// Operations queued on an inode since its last fsync, oldest first, numbered.
#[derive(Debug)]
struct Pending<T> {
    ops: Vec<T>,
    /// Number of `ops[0]`.
    first: u64,
    /// Operations numbered below this are covered by an fsync in flight: they may not change.
    frozen: u64,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending {
            ops: Vec::new(),
            first: 0,
            frozen: 0,
        }
    }
}

impl<T> Pending<T> {
    /// Number of the next operation.
    fn end(&self) -> u64 {
        self.first + self.ops.len() as u64
    }

    /// Takes the operations numbered below `end` (those still pending).
    fn take_until(&mut self, end: u64) -> Vec<T> {
        let n = end.saturating_sub(self.first).min(self.ops.len() as u64) as usize;
        self.first += n as u64;
        self.ops.drain(..n).collect()
    }
}

#[derive(Debug)]
pub struct FileNode {
    /// Length programs see.
    pub len: u64,
    /// Length of the durable bytes (`objects/N`).
    durable_len: u64,
    pending: Pending<FileOp>,
}

#[derive(Debug)]
pub struct DirNode {
    /// Entries programs see.
    pub entries: BTreeMap<OsString, u64>,
    durable: BTreeMap<OsString, u64>,
    pending: Pending<DirOp>,
    /// The directory holding this one (volatile), for "..".
    pub parent: u64,
}

#[derive(Debug)]
pub enum Body {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Debug)]
pub struct Node {
    pub body: Body,
    /// Permission bits programs see.
    pub mode: u32,
    durable_mode: u32,
    /// Volatile names of this inode.
    pub nlink: u32,
    pub mtime: SystemTime,
}

/// Counts over a mount, for the test's figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// fsyncs (files and directories) that made something durable.
    pub fsyncs: u64,
    /// Pending operations a cut dropped, kept, and tore (kept in part, or as zeros).
    pub dropped_ops: u64,
    pub kept_ops: u64,
    pub torn_writes: u64,
    pub zeroed_writes: u64,
    /// Bytes of pending writes a cut dropped.
    pub dropped_bytes: u64,
    /// Reads answered with EIO (injected faults).
    pub failed_reads: u64,
    /// fsyncs answered with EIO whose writes were lost (injected faults).
    pub lost_fsyncs: u64,
}

/// How a power cut treats what was not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    /// All of it is lost.
    DropAll,
    /// A random prefix of each inode's pending operations reached the disk, the last one
    /// possibly torn (a random prefix of its bytes) or as zeros.
    Prefix,
    /// Every directory change reached the disk, no unsynced file data did: files created or
    /// renamed without an fsync of their data are there, empty or short (a journaling file
    /// system that logs metadata only, after a crash).
    DataLost,
}

/// Errors of file system operations, as errno values.
pub type Errno = i32;

pub struct Model {
    objects: PathBuf,
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// False after a power cut: every operation fails with EIO.
    pub powered: bool,
    read_faults: Vec<(u64, Range<u64>)>,
    /// Files whose fsync(2) (not fdatasync) fails with EIO.
    full_fsync_faults: Vec<u64>,
    /// Files whose next fsyncs (fsync or fdatasync) fail, and how many more will: each loses
    /// the writes it should have made durable.
    lost_fsyncs: Vec<(u64, u32)>,
    pub stats: Stats,
}

impl Model {
    fn new_ino(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    fn object(&self, ino: u64) -> PathBuf {
        self.objects.join(ino.to_string())
    }

    pub fn node(&self, ino: u64) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> &mut Node {
        self.nodes.get_mut(&ino).expect("inode exists")
    }

    fn dir(&self, ino: u64) -> Result<&DirNode, Errno> {
        match &self.node(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut DirNode, Errno> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::Dir(d)) => Ok(d),
            Some(Body::File(_)) => Err(libc::ENOTDIR),
            None => Err(libc::ENOENT),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut FileNode, Errno> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::File(f)) => Ok(f),
            Some(Body::Dir(_)) => Err(libc::EISDIR),
            None => Err(libc::ENOENT),
        }
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?.entries.get(name).copied().ok_or(libc::ENOENT)
    }

    /// The inode at `path` (relative to the root), as programs see it now.
    pub fn resolve(&self, path: &Path) -> Result<u64, Errno> {
        path.iter().try_fold(ROOT, |ino, name| self.lookup(ino, name))
    }

    fn add_entry(&mut self, parent: u64, name: &OsStr, child: u64) -> Result<(), Errno> {
        let d = self.dir_mut(parent)?;
        if d.entries.contains_key(name) {
            return Err(libc::EEXIST);
        }
        d.entries.insert(name.to_os_string(), child);
        d.pending.ops.push(DirOp::Link(name.to_os_string(), child));
        Ok(())
    }

    /// Creates an empty file.
    pub fn create_file(&mut self, parent: u64, name: &OsStr, mode: u32) -> Result<u64, Errno> {
        self.dir(parent)?;
        let ino = self.new_ino();
        self.add_entry(parent, name, ino)?;
        self.nodes.insert(ino, Node::file(mode));
        Ok(ino)
    }

    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> Result<u64, Errno> {
        self.dir(parent)?;
        let ino = self.new_ino();
        self.add_entry(parent, name, ino)?;
        self.nodes.insert(ino, Node::dir(parent, mode));
        Ok(ino)
    }

    /// A second name for a file.
    pub fn link(&mut self, ino: u64, parent: u64, name: &OsStr) -> Result<(), Errno> {
        if !matches!(self.node(ino)?.body, Body::File(_)) {
            return Err(libc::EPERM);
        }
        self.add_entry(parent, name, ino)?;
        self.node_mut(ino).nlink += 1;
        Ok(())
    }

    /// Removes a name: a file's (`dir` false) or an empty directory's (`dir` true).
    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.node(ino)?.body, dir) {
            (Body::Dir(d), true) if !d.entries.is_empty() => return Err(libc::ENOTEMPTY),
            (Body::Dir(_), true) | (Body::File(_), false) => {}
            (Body::Dir(_), false) => return Err(libc::EISDIR),
            (Body::File(_), true) => return Err(libc::ENOTDIR),
        }
        let d = self.dir_mut(parent)?;
        d.entries.remove(name);
        d.pending.ops.push(DirOp::Unlink(name.to_os_string()));
        let node = self.node_mut(ino);
        node.nlink = node.nlink.saturating_sub(1);
        Ok(())
    }

    /// Renames within one directory (atomically, as journaling file systems do). Across
    /// directories: EXDEV, which nothing in mailvault's stack needs.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        if parent != new_parent {
            return Err(libc::EXDEV);
        }
        let ino = self.lookup(parent, name)?;
        if name == new_name {
            return Ok(());
        }
        if let Ok(target) = self.lookup(parent, new_name) {
            if no_replace {
                return Err(libc::EEXIST);
            }
            match (&self.node(ino)?.body, &self.node(target)?.body) {
                (Body::File(_), Body::Dir(_)) => return Err(libc::EISDIR),
                (Body::Dir(_), Body::File(_)) => return Err(libc::ENOTDIR),
                (Body::Dir(_), Body::Dir(t)) if !t.entries.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
            let t = self.node_mut(target);
            t.nlink = t.nlink.saturating_sub(1);
        }
        let d = self.dir_mut(parent)?;
        d.entries.remove(name);
        d.entries.insert(new_name.to_os_string(), ino);
        d.pending
            .ops
            .push(DirOp::Rename(name.to_os_string(), new_name.to_os_string()));
        Ok(())
    }

    pub fn set_mode(&mut self, ino: u64, mode: u32) -> Result<(), Errno> {
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        node.mode = mode & 0o7777;
        Ok(())
    }

    pub fn write(&mut self, ino: u64, at: u64, data: &[u8]) -> Result<(), Errno> {
        let f = self.file_mut(ino)?;
        let end = at + data.len() as u64;
        f.len = f.len.max(end);
        // A write that continues the last one joins it (unless an fsync already covers it):
        // sequential writes stay one operation, which a cut may keep in part.
        let last_number = f.pending.end().wrapping_sub(1);
        match f.pending.ops.last_mut() {
            Some(FileOp::Write {
                at: last_at,
                data: last,
            }) if last_number >= f.pending.frozen && *last_at + last.len() as u64 == at => {
                last.extend_from_slice(data);
            }
            _ => f.pending.ops.push(FileOp::Write {
                at,
                data: data.to_vec(),
            }),
        }
        self.node_mut(ino).mtime = SystemTime::now();
        Ok(())
    }

    pub fn set_len(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        let f = self.file_mut(ino)?;
        f.len = len;
        f.pending.ops.push(FileOp::SetLen(len));
        self.node_mut(ino).mtime = SystemTime::now();
        Ok(())
    }

    /// Registers an injected fault: reads of `range` of `ino` fail with EIO.
    pub fn fail_reads(&mut self, ino: u64, range: Range<u64>) {
        self.read_faults.push((ino, range));
    }

    /// Registers an injected fault: fsync(2) of `ino` fails with EIO (fdatasync works).
    pub fn fail_full_fsyncs(&mut self, ino: u64) {
        self.full_fsync_faults.push(ino);
    }

    pub fn full_fsync_fails(&self, ino: u64) -> bool {
        self.full_fsync_faults.contains(&ino)
    }

    /// Registers an injected fault: the next `count` fsyncs of `ino` fail with EIO and the
    /// writes each covers never become durable, as when a disk's write-back fails (Linux
    /// then reports the error once and later fsyncs of the file succeed).
    pub fn lose_fsyncs(&mut self, ino: u64, count: u32) {
        self.lost_fsyncs.push((ino, count));
    }

    /// Whether this fsync of `ino` is one that fails; if so, the operations it covers are
    /// dropped.
    pub fn take_lost_fsync(&mut self, ino: u64) -> bool {
        let Some(i) = self.lost_fsyncs.iter().position(|(i, n)| *i == ino && *n > 0) else {
            return false;
        };
        self.lost_fsyncs[i].1 -= 1;
        self.stats.lost_fsyncs += 1;
        if let Some(Body::File(f)) = self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            let end = f.pending.end();
            let dropped = f.pending.take_until(end);
            self.stats.dropped_ops += dropped.len() as u64;
        }
        true
    }

    pub fn has_read_faults(&self, ino: u64) -> bool {
        self.read_faults.iter().any(|(i, _)| *i == ino)
    }

    /// Bytes `at..at+size` of a file as programs see them: durable bytes with the pending
    /// operations replayed over them. A read that starts in an injected fault fails with EIO;
    /// one that reaches a fault stops short of it (as a disk's bad sector does).
    pub fn read(&mut self, ino: u64, at: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let mut end = at.saturating_add(u64::from(size));
        for (_, bad) in self.read_faults.iter().filter(|(i, _)| *i == ino) {
            if bad.contains(&at) {
                self.stats.failed_reads += 1;
                return Err(libc::EIO);
            }
            if bad.start > at {
                end = end.min(bad.start);
            }
        }
        let object = self.object(ino);
        let Body::File(f) = &self.node(ino)?.body else {
            return Err(libc::EISDIR);
        };
        let end = end.min(f.len);
        if at >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - at) as usize];
        let durable_end = end.min(f.durable_len);
        if at < durable_end {
            File::open(&object)
                .and_then(|o| o.read_exact_at(&mut buf[..(durable_end - at) as usize], at))
                .map_err(|_| libc::EIO)?;
        }
        for op in &f.pending.ops {
            match op {
                FileOp::Write { at: w, data } => {
                    let from = at.max(*w);
                    let to = end.min(w + data.len() as u64);
                    if from < to {
                        buf[(from - at) as usize..(to - at) as usize]
                            .copy_from_slice(&data[(from - w) as usize..(to - w) as usize]);
                    }
                }
                FileOp::SetLen(len) => {
                    if *len < end {
                        let from = (*len).max(at);
                        buf[(from - at) as usize..].fill(0);
                    }
                }
            }
        }
        Ok(buf)
    }

    /// Number up to which (exclusive) an fsync of `ino` called now must make operations
    /// durable; those operations may no longer change.
    pub fn fsync_target(&mut self, ino: u64) -> Result<u64, Errno> {
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        Ok(match &mut node.body {
            Body::File(f) => {
                f.pending.frozen = f.pending.end();
                f.pending.frozen
            }
            Body::Dir(d) => d.pending.end(),
        })
    }

    /// Completes an fsync: the operations before `target` become durable (and, unless
    /// `datasync`, the permission bits).
    pub fn fsync(&mut self, ino: u64, target: u64, datasync: bool) -> io::Result<()> {
        self.stats.fsyncs += 1;
        self.persist(ino, target, None)?;
        if !datasync {
            let node = self.node_mut(ino);
            node.durable_mode = node.mode;
        }
        Ok(())
    }

    /// Makes `ino`'s pending operations before `end` durable; then, if `torn` is given, a
    /// part of the next one.
    fn persist(&mut self, ino: u64, end: u64, torn: Option<Torn>) -> io::Result<()> {
        let object = self.object(ino);
        let node = self.node_mut(ino);
        match &mut node.body {
            Body::File(f) => {
                let mut ops = f.pending.take_until(end);
                if let Some(torn) = torn {
                    if let Some(next) = f.pending.ops.first().cloned() {
                        ops.extend(torn.apply(next));
                    }
                }
                if ops.is_empty() {
                    return Ok(());
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&object)?;
                for op in ops {
                    match op {
                        FileOp::Write { at, data } => {
                            file.write_all_at(&data, at)?;
                            f.durable_len = f.durable_len.max(at + data.len() as u64);
                        }
                        FileOp::SetLen(len) => {
                            file.set_len(len)?;
                            f.durable_len = len;
                        }
                    }
                }
                // The object may be longer than the durable length only through a torn
                // write past it; keep them equal.
                file.set_len(f.durable_len)?;
            }
            Body::Dir(d) => {
                for op in d.pending.take_until(end) {
                    match op {
                        DirOp::Link(name, child) => {
                            d.durable.insert(name, child);
                        }
                        DirOp::Unlink(name) => {
                            d.durable.remove(&name);
                        }
                        DirOp::Rename(from, to) => {
                            if let Some(child) = d.durable.remove(&from) {
                                d.durable.insert(to, child);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes everything pending to the durable state, as a clean shutdown does.
    pub fn sync_all(&mut self) -> io::Result<()> {
        let inos: Vec<u64> = self.nodes.keys().copied().collect();
        for ino in inos {
            let node = self.node_mut(ino);
            node.durable_mode = node.mode;
            let end = match &node.body {
                Body::File(f) => f.pending.end(),
                Body::Dir(d) => d.pending.end(),
            };
            self.persist(ino, end, None)?;
        }
        Ok(())
    }

    /// The power fails: from now on every operation fails, and what was not synced is lost
    /// as `tear` says.
    pub fn cut(&mut self, tear: Tear, rng: &mut Rng) -> io::Result<()> {
        self.powered = false;
        let mut inos: Vec<u64> = self.nodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let is_dir = matches!(self.node_mut(ino).body, Body::Dir(_));
            let (first, ops): (u64, Vec<Option<u64>>) = match &self.node_mut(ino).body {
                Body::File(f) => (
                    f.pending.first,
                    f.pending
                        .ops
                        .iter()
                        .map(|op| match op {
                            FileOp::Write { data, .. } => Some(data.len() as u64),
                            FileOp::SetLen(_) => None,
                        })
                        .collect(),
                ),
                Body::Dir(d) => (d.pending.first, d.pending.ops.iter().map(|_| None).collect()),
            };
            if ops.is_empty() {
                continue;
            }
            let kept = match tear {
                Tear::DropAll => 0,
                Tear::Prefix => rng.below(ops.len() as u64 + 1) as usize,
                Tear::DataLost if is_dir => ops.len(),
                Tear::DataLost => 0,
            };
            let mut torn = None;
            if let (Tear::Prefix, Some(Some(len))) = (tear, ops.get(kept)) {
                if *len > 0 && rng.below(2) == 0 {
                    let keep = rng.below(*len);
                    let zeros = rng.below(4) == 0;
                    if zeros {
                        self.stats.zeroed_writes += 1;
                    } else {
                        self.stats.torn_writes += 1;
                    }
                    torn = Some(Torn { keep, zeros });
                }
            }
            self.stats.kept_ops += kept as u64;
            self.stats.dropped_ops += (ops.len() - kept) as u64;
            self.stats.dropped_bytes += ops[kept..].iter().flatten().sum::<u64>();
            self.persist(ino, first + kept as u64, torn)?;
        }
        Ok(())
    }
}

/// The part of a write a cut keeps: its first `keep` bytes, or that many zeros.
#[derive(Clone, Copy, Debug)]
struct Torn {
    keep: u64,
    zeros: bool,
}

impl Torn {
    fn apply(self, op: FileOp) -> Option<FileOp> {
        match op {
            FileOp::Write { at, mut data } if self.keep > 0 => {
                data.truncate(self.keep as usize);
                if self.zeros {
                    data.fill(0);
                }
                Some(FileOp::Write { at, data })
            }
            FileOp::Write { .. } | FileOp::SetLen(_) => None,
        }
    }
}

impl Node {
    fn file(mode: u32) -> Node {
        Node {
            body: Body::File(FileNode {
                len: 0,
                durable_len: 0,
                pending: Pending::default(),
            }),
            mode: mode & 0o7777,
            durable_mode: mode & 0o7777,
            nlink: 1,
            mtime: SystemTime::now(),
        }
    }

    fn dir(parent: u64, mode: u32) -> Node {
        Node {
            body: Body::Dir(DirNode {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
                pending: Pending::default(),
                parent,
            }),
            mode: mode & 0o7777,
            durable_mode: mode & 0o7777,
            nlink: 1,
            mtime: SystemTime::now(),
        }
    }
}

mod image;
#[cfg(test)]
mod tests;
