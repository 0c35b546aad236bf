//! The model behind FUSE: each kernel request becomes one model operation under the model's
//! lock. fsyncs are answered by a flusher thread after a device latency, so that an
//! acknowledgement sent before its fsync completed has a window in which a cut loses it, as
//! on a real disk; the flusher makes durable only what was written before the fsync call.

use std::ffi::OsStr;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use super::model::{Body, Errno, Model};

/// How long the kernel may cache names and attributes. Only this mount changes the files,
/// through the kernel, so its caches stay true; a cut unmounts, which drops them.
const TTL: Duration = Duration::from_secs(1);

/// Largest write the kernel sends in one request: a longer write(2) arrives as several, so a
/// cut can keep some of them.
const MAX_WRITE: u32 = 128 << 10;

pub type Shared = Arc<Mutex<Model>>;

pub fn lock(model: &Shared) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(|p| p.into_inner())
}

/// An fsync waiting for the simulated device.
pub struct FlushJob {
    ino: u64,
    target: u64,
    datasync: bool,
    due: Instant,
    reply: ReplyEmpty,
}

/// Answers fsyncs in order, each after its due time: what was written before the fsync
/// becomes durable, unless the power failed meanwhile (then EIO, and nothing).
pub fn flusher(model: Shared, jobs: Receiver<FlushJob>) {
    for job in jobs {
        let wait = job.due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let mut m = lock(&model);
        if !m.powered {
            job.reply.error(libc::EIO);
            continue;
        }
        match m.fsync(job.ino, job.target, job.datasync) {
            Ok(()) => job.reply.ok(),
            Err(e) => {
                eprintln!("lossyfs: fsync of inode {} failed: {e}", job.ino);
                job.reply.error(libc::EIO);
            }
        }
    }
}

pub struct LossyFuse {
    pub model: Shared,
    pub flush: Sender<FlushJob>,
    pub fsync_latency: Duration,
}

/// Answers an attribute request with `result`.
fn reply_attr(reply: ReplyAttr, result: Result<FileAttr, Errno>) {
    match result {
        Ok(a) => reply.attr(&TTL, &a),
        Err(e) => reply.error(e),
    }
}

fn attr(ino: u64, model: &Model) -> Result<FileAttr, Errno> {
    let node = model.node(ino)?;
    let (kind, size) = match &node.body {
        Body::File(f) => (FileType::RegularFile, f.len),
        Body::Dir(_) => (FileType::Directory, 4096),
    };
    Ok(FileAttr {
        ino,
        size,
        blocks: size.div_ceil(512),
        atime: node.mtime,
        mtime: node.mtime,
        ctime: node.mtime,
        crtime: node.mtime,
        kind,
        perm: node.mode as u16,
        nlink: node.nlink.max(1),
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    })
}

impl LossyFuse {
    /// The model, if the power is on (else every request fails with EIO).
    fn powered(&self) -> Result<MutexGuard<'_, Model>, Errno> {
        let m = lock(&self.model);
        if m.powered {
            Ok(m)
        } else {
            Err(libc::EIO)
        }
    }

    fn entry(&self, reply: ReplyEntry, op: impl FnOnce(&mut Model) -> Result<u64, Errno>) {
        let result = self.powered().and_then(|mut m| {
            let ino = op(&mut m)?;
            attr(ino, &m)
        });
        match result {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(e),
        }
    }

    fn empty(&self, reply: ReplyEmpty, op: impl FnOnce(&mut Model) -> Result<(), Errno>) {
        match self.powered().and_then(|mut m| op(&mut m)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// Queues an fsync of `ino` for the flusher.
    fn sync(&self, ino: u64, datasync: bool, reply: ReplyEmpty) {
        let target = match self.powered().and_then(|mut m| {
            if m.take_lost_fsync(ino) || !datasync && m.full_fsync_fails(ino) {
                return Err(libc::EIO);
            }
            m.fsync_target(ino)
        }) {
            Ok(t) => t,
            Err(e) => return reply.error(e),
        };
        let job = FlushJob {
            ino,
            target,
            datasync,
            due: Instant::now() + self.fsync_latency,
            reply,
        };
        if let Err(unsent) = self.flush.send(job) {
            unsent.0.reply.error(libc::EIO);
        }
    }
}

impl Filesystem for LossyFuse {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        let _ = config.set_max_write(MAX_WRITE);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        self.entry(reply, |m| m.lookup(parent, name));
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        reply_attr(reply, self.powered().and_then(|m| attr(ino, &m)));
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let result = self.powered().and_then(|mut m| {
            if let Some(mode) = mode {
                m.set_mode(ino, mode)?;
            }
            if let Some(len) = size {
                m.set_len(ino, len)?;
            }
            attr(ino, &m)
        });
        reply_attr(reply, result);
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(libc::EPERM);
        }
        self.entry(reply, |m| m.create_file(parent, name, mode & !umask));
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.entry(reply, |m| m.mkdir(parent, name, mode & !umask));
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, |m| m.remove(parent, name, false));
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, |m| m.remove(parent, name, true));
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return reply.error(libc::EINVAL);
        }
        let no_replace = flags & libc::RENAME_NOREPLACE != 0;
        self.empty(reply, |m| m.rename(parent, name, newparent, newname, no_replace));
    }

    fn link(&mut self, _req: &Request<'_>, ino: u64, newparent: u64, newname: &OsStr, reply: ReplyEntry) {
        self.entry(reply, |m| m.link(ino, newparent, newname).map(|()| ino));
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let result = self.powered().and_then(|mut m| {
            if let Body::Dir(_) = m.node(ino)?.body {
                return Err(libc::EISDIR);
            }
            if flags & libc::O_TRUNC != 0 {
                m.set_len(ino, 0)?;
            }
            Ok(m.has_read_faults(ino))
        });
        match result {
            // A file with injected read faults bypasses the page cache, so each read reaches
            // the model exactly as the program asked for it (no readahead into the fault).
            Ok(faulty) => reply.opened(0, if faulty { fuser::consts::FOPEN_DIRECT_IO } else { 0 }),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.powered().and_then(|mut m| {
            let ino = m.create_file(parent, name, mode & !umask)?;
            attr(ino, &m)
        });
        match result {
            Ok(a) => reply.created(&TTL, &a, 0, 0, 0),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        match self.powered().and_then(|mut m| m.read(ino, offset as u64, size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        match self.powered().and_then(|mut m| m.write(ino, offset as u64, data)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, datasync: bool, reply: ReplyEmpty) {
        self.sync(ino, datasync, reply);
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.powered().and_then(|m| m.node(ino).map(|_| ())) {
            Ok(()) => reply.opened(0, 0),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let listing = self.powered().and_then(|m| {
            let Body::Dir(d) = &m.node(ino)?.body else {
                return Err(libc::ENOTDIR);
            };
            let mut out = vec![
                (ino, FileType::Directory, OsStr::new(".").to_os_string()),
                (d.parent, FileType::Directory, OsStr::new("..").to_os_string()),
            ];
            for (name, child) in &d.entries {
                let kind = match m.node(*child)?.body {
                    Body::Dir(_) => FileType::Directory,
                    Body::File(_) => FileType::RegularFile,
                };
                out.push((*child, kind, name.clone()));
            }
            Ok(out)
        });
        match listing {
            Ok(entries) => {
                for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(child, i as i64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, datasync: bool, reply: ReplyEmpty) {
        self.sync(ino, datasync, reply);
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        reply.statfs(1 << 28, 1 << 27, 1 << 27, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, _mask: i32, reply: ReplyEmpty) {
        self.empty(reply, |m| m.node(ino).map(|_| ()));
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(libc::EOPNOTSUPP);
        }
        self.empty(reply, |m| {
            let end = (offset + length) as u64;
            match &m.node(ino)?.body {
                Body::File(f) if f.len < end => m.set_len(ino, end),
                Body::File(_) => Ok(()),
                Body::Dir(_) => Err(libc::EISDIR),
            }
        });
    }
}
