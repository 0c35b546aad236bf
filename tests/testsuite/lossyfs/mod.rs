//! lossyfs: a FUSE file system that behaves like a disk losing power (the LazyFS idea, in
//! Rust on `fuser`). Programs on the mount see an ordinary file system; underneath, only what
//! they fsynced (fdatasync too; directory entries after an fsync of the directory) is
//! durable. [`Mounted::cut`] is the power failure: every request fails from that instant,
//! and what was not synced is lost, or, with [`Tear::Prefix`], survives as a random prefix
//! of each file's and directory's unsynced operations, the last write possibly torn. The
//! next mount of the same [`Disk`] sees what survived. Reads of chosen byte ranges can be
//! made to fail with EIO ([`Mounted::fail_reads`]), as from a bad sector.
//!
//! The durable state is a plain directory tree on the host (the *image*, [`Disk::image`]):
//! prepare a store there before the first mount, or inspect one after a failed test. See
//! `model.rs` for the rules and `fuse.rs` for the kernel side.

mod fuse;
pub mod model;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use model::{Stats, Tear};

/// A fresh disk in a temp dir (kept under the target dir), with a store that `mailvault
/// init` made on its image (so its identity and key predate any cut), and a config file with
/// 1 MiB segments (so that a few large messages seal one).
pub struct StoreDisk {
    /// Holds the directory (removed when dropped).
    _tmp: tempfile::TempDir,
    pub disk: Disk,
    /// Where the disk is mounted.
    pub mnt: PathBuf,
    /// The store on the image (before a mount, for set-up).
    pub on_image: crate::util::Vault,
    /// The store through the mount point.
    pub vault: crate::util::Vault,
    /// `--config` for small segments.
    pub small_segments: String,
}

impl StoreDisk {
    pub fn new(prefix: &str) -> StoreDisk {
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let disk = Disk::new(&tmp.path().join("disk"));
        let mnt = tmp.path().join("mnt");
        let config = tmp.path().join("mailvault.toml");
        std::fs::write(&config, "[store]\nsegment_mib = 1\n").unwrap();
        let on_image = crate::util::Vault::at(disk.image().join("data"));
        on_image.ok(&["init"]);
        StoreDisk {
            vault: crate::util::Vault::at(mnt.join("data")),
            small_segments: config.to_str().unwrap().to_string(),
            _tmp: tmp,
            disk,
            mnt,
            on_image,
        }
    }

    /// Mounts the disk (default options).
    pub fn mount(&self) -> Mounted {
        self.disk.mount(&self.mnt, Options::default())
    }
}

/// A small deterministic random generator (xorshift64*), so a failing run can be repeated
/// from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A seed from the environment (`LOSSYFS_SEED`) or the clock.
    pub fn seed() -> u64 {
        std::env::var("LOSSYFS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A simulated disk: its image (the durable tree) and the objects directory the mounted file
/// system keeps durable file bytes in (hard links into the image, so on the same host file
/// system).
pub struct Disk {
    image: PathBuf,
    objects: PathBuf,
}

/// What the disk does on fsync.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How long an fsync takes (a device cache flush).
    pub fsync_latency: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fsync_latency: Duration::from_millis(1),
        }
    }
}

impl Disk {
    /// A disk in `dir` (created), empty.
    pub fn new(dir: &Path) -> Disk {
        let disk = Disk {
            image: dir.join("image"),
            objects: dir.join("objects"),
        };
        std::fs::create_dir_all(&disk.image).expect("disk image directory");
        disk
    }

    /// The durable tree: what the next mount will show.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// Mounts the disk at `mountpoint` (created if missing): everything in the image is
    /// durable.
    pub fn mount(&self, mountpoint: &Path, options: Options) -> Mounted {
        assert!(
            Path::new("/dev/fuse").exists(),
            "lossyfs needs /dev/fuse (the FUSE kernel module) and root to mount"
        );
        sweep_dead_mounts();
        std::fs::create_dir_all(mountpoint).expect("mountpoint");
        let model = model::Model::load(&self.image, &self.objects).expect("load the disk image");
        let model = Arc::new(Mutex::new(model));
        let (flush, jobs) = std::sync::mpsc::channel();
        let flusher = {
            let model = Arc::clone(&model);
            std::thread::Builder::new()
                .name("lossyfs-flusher".into())
                .spawn(move || fuse::flusher(model, jobs))
                .expect("flusher thread")
        };
        let fs = fuse::LossyFuse {
            model: Arc::clone(&model),
            flush,
            fsync_latency: options.fsync_latency,
        };
        let mount_options = [
            fuser::MountOption::FSName(FS_NAME.into()),
            fuser::MountOption::Subtype("lossyfs".into()),
        ];
        let session = fuser::spawn_mount2(fs, mountpoint, &mount_options)
            .unwrap_or_else(|e| panic!("mounting lossyfs at {}: {e}", mountpoint.display()));
        Mounted {
            model,
            session: Some(session),
            flusher: Some(flusher),
            mountpoint: mountpoint.to_path_buf(),
            image: self.image.clone(),
        }
    }
}

/// The source name of our mounts in /proc/self/mountinfo.
const FS_NAME: &str = "mailvault-lossyfs";

/// A mounted [`Disk`]. Dropping it (as a panic does) cuts the power and unmounts: no mount
/// outlives its test. Stop the processes using it first.
pub struct Mounted {
    model: fuse::Shared,
    session: Option<fuser::BackgroundSession>,
    flusher: Option<std::thread::JoinHandle<()>>,
    mountpoint: PathBuf,
    image: PathBuf,
}

impl Mounted {
    /// The power fails now: every request from here on fails with EIO, and the image keeps
    /// only what was durable (and what `tear` lets through). Kill the programs using the
    /// mount, then [`Mounted::unmount`].
    pub fn cut(&self, tear: Tear, rng: &mut Rng) {
        let mut m = fuse::lock(&self.model);
        m.cut(tear, rng).expect("apply the cut to the disk");
        m.write_image(&self.image).expect("write the disk image");
    }

    /// Reads of `range` of the file at `path` (relative to the mount) fail with EIO from now
    /// on; opens after this one bypass the page cache, so reads elsewhere in the file work.
    pub fn fail_reads(&self, path: &Path, range: std::ops::Range<u64>) {
        let mut m = fuse::lock(&self.model);
        let ino = m
            .resolve(path)
            .unwrap_or_else(|e| panic!("{}: errno {e}", path.display()));
        m.fail_reads(ino, range);
    }

    /// fsync(2) of the file at `path` fails with EIO from now on, fdatasync(2) still works
    /// (a segment is sealed with fsync, appends are made durable with fdatasync).
    pub fn fail_full_fsyncs(&self, path: &Path) {
        let mut m = fuse::lock(&self.model);
        let ino = m
            .resolve(path)
            .unwrap_or_else(|e| panic!("{}: errno {e}", path.display()));
        m.fail_full_fsyncs(ino);
    }

    /// The next `count` fsyncs (fsync or fdatasync) of the file at `path` fail with EIO, and
    /// the writes each should have made durable are lost.
    pub fn lose_fsyncs(&self, path: &Path, count: u32) {
        let mut m = fuse::lock(&self.model);
        let ino = m
            .resolve(path)
            .unwrap_or_else(|e| panic!("{}: errno {e}", path.display()));
        m.lose_fsyncs(ino, count);
    }

    /// Counts so far.
    pub fn stats(&self) -> Stats {
        fuse::lock(&self.model).stats
    }

    /// Unmounts. A disk still powered is shut down cleanly first (everything written
    /// becomes durable, as an orderly shutdown syncs); after [`Mounted::cut`] the image is
    /// what the cut left.
    pub fn unmount(mut self) -> Stats {
        {
            let mut m = fuse::lock(&self.model);
            if m.powered {
                m.sync_all().expect("sync the disk");
                m.write_image(&self.image).expect("write the disk image");
                m.powered = false;
            }
        }
        self.stop(false);
        self.stats()
    }

    /// Unmounts and waits for the session and flusher threads. `lazy`: detach a mount that
    /// stays busy instead of waiting for it.
    fn stop(&mut self, lazy: bool) {
        let Some(session) = self.session.take() else {
            return;
        };
        let target =
            std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes()).expect("mountpoint path");
        let mut unmounted = false;
        for _ in 0..200 {
            // SAFETY: a valid C string; umount2 has no other preconditions.
            if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
                unmounted = true;
                break;
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EBUSY) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !unmounted && lazy {
            // SAFETY: as above.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            // The session thread ends when the last user of the mount goes; do not wait.
            drop(session);
            return;
        }
        assert!(
            unmounted,
            "{} stayed busy: is a process still using it?",
            self.mountpoint.display()
        );
        // Not `BackgroundSession::join`: it unwraps the session's end, and after our own
        // unmount some kernels end the connection with ECONNABORTED instead of ENODEV.
        let session_thread = session.guard;
        match session_thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::ENODEV)) => {}
            Ok(Err(e)) => panic!("the lossyfs session ended with {e}"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.session.is_some() {
            fuse::lock(&self.model).powered = false;
            self.stop(true);
        }
    }
}

/// Detaches our mounts whose file system process is gone (a test process that was killed):
/// their mountpoints answer ENOTCONN. Live mounts, of tests running in parallel, answer.
fn sweep_dead_mounts() {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split(' ').nth(1) != Some(FS_NAME) {
            continue;
        }
        let Some(mountpoint) = left.split(' ').nth(4) else {
            continue;
        };
        // mountinfo escapes spaces and the like as octal; ours have none.
        let dead = std::fs::metadata(mountpoint).err().and_then(|e| e.raw_os_error()) == Some(libc::ENOTCONN);
        if dead {
            if let Ok(c) = std::ffi::CString::new(mountpoint) {
                // SAFETY: a valid C string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("lossyfs")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
    }

    /// Through the kernel: what was fsynced (file and directory) survives a cut, the rest
    /// does not; a clean unmount keeps everything; injected faults fail reads with EIO.
    #[test]
    fn through_the_kernel_only_synced_state_survives_a_cut() {
        let tmp = tmp();
        let disk = Disk::new(tmp.path());
        let mnt = tmp.path().join("mnt");
        let mut rng = Rng::new(7);

        let m = disk.mount(&mnt, Options::default());
        std::fs::create_dir(mnt.join("log")).unwrap();
        std::fs::File::open(&mnt).unwrap().sync_all().unwrap();
        let mut f = std::fs::File::create(mnt.join("log/a")).unwrap();
        f.write_all(b"synced").unwrap();
        f.sync_data().unwrap();
        std::fs::File::open(mnt.join("log")).unwrap().sync_all().unwrap();
        f.write_all(b" and not").unwrap();
        std::fs::write(mnt.join("log/b"), b"never synced").unwrap();
        assert_eq!(std::fs::read(mnt.join("log/a")).unwrap(), b"synced and not");
        drop(f);
        m.cut(Tear::DropAll, &mut rng);
        assert!(std::fs::read(mnt.join("log/a")).is_err(), "the power is off");
        m.unmount();
        assert_eq!(std::fs::read(disk.image().join("log/a")).unwrap(), b"synced");
        assert!(!disk.image().join("log/b").exists());

        let m = disk.mount(&mnt, Options::default());
        assert_eq!(std::fs::read(mnt.join("log/a")).unwrap(), b"synced");
        assert!(!mnt.join("log/b").exists());
        std::fs::write(mnt.join("log/c"), vec![7u8; 3 * 4096]).unwrap();
        m.unmount();

        let m = disk.mount(&mnt, Options::default());
        assert_eq!(std::fs::read(mnt.join("log/c")).unwrap(), vec![7u8; 3 * 4096]);
        m.fail_reads(Path::new("log/c"), 4096..8192);
        use std::os::unix::fs::FileExt;
        let c = std::fs::File::open(mnt.join("log/c")).unwrap();
        let mut buf = vec![0u8; 4096];
        c.read_exact_at(&mut buf, 0).unwrap();
        c.read_exact_at(&mut buf, 8192).unwrap();
        let err = c.read_exact_at(&mut buf, 2048).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        drop(c);
        assert_eq!(m.stats().failed_reads, 1);
        m.unmount();
    }
}
