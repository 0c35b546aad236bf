//! The bundle file as the verifier reads it: positional reads through a buffer of each
//! handle's own. Handles on the one open file are cheap clones, so the ZIP's central
//! directory (two entries per message) is parsed and held once for the messages and both
//! listings; and a seek that lands inside the buffer reads nothing again, so an entry's header
//! and its data usually come with one read. A handle may be a window on part of the file (a
//! volume stored in a container): positions are then relative to the window, which ends
//! where the volume does.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

/// Bytes read at a time (a typical message entry and its proof fit).
const BUFFER: usize = 16 * 1024;

/// A read handle on the bundle file with its own position and buffer.
pub(super) struct BundleFile {
    file: Arc<File>,
    /// The window's start in the file and its length (the whole file: 0 and its length).
    base: u64,
    len: u64,
    pos: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`; `buf` holds what was read there.
    buf_start: u64,
}

impl BundleFile {
    pub(super) fn open(path: &Path) -> std::io::Result<BundleFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(BundleFile {
            file: Arc::new(file),
            base: 0,
            len,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        })
    }

    /// A handle on `len` bytes of this one's from `start` on (clamped to this window).
    pub(super) fn window(&self, start: u64, len: u64) -> BundleFile {
        let start = start.min(self.len);
        BundleFile {
            file: self.file.clone(),
            base: self.base + start,
            len: len.min(self.len - start),
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// The buffered bytes from the position on, if the position is inside the buffer.
    fn buffered(&self) -> Option<&[u8]> {
        let at = usize::try_from(self.pos.checked_sub(self.buf_start)?).ok()?;
        self.buf.get(at..).filter(|rest| !rest.is_empty())
    }
}

impl Clone for BundleFile {
    fn clone(&self) -> BundleFile {
        BundleFile {
            file: self.file.clone(),
            base: self.base,
            len: self.len,
            pos: self.pos,
            buf: Vec::new(),
            buf_start: 0,
        }
    }
}

impl Read for BundleFile {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        // Nothing beyond the window's end.
        let left = usize::try_from(self.len.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let out_len = out.len().min(left);
        let out = &mut out[..out_len];
        if out.is_empty() {
            return Ok(0);
        }
        if self.buffered().is_none() {
            if out.len() >= BUFFER {
                let n = read_at(&self.file, out, self.base + self.pos)?;
                self.pos += n as u64;
                return Ok(n);
            }
            let want = BUFFER.min(left);
            self.buf.resize(want, 0);
            let n = read_at(&self.file, &mut self.buf, self.base + self.pos)?;
            self.buf.truncate(n);
            self.buf_start = self.pos;
        }
        let Some(rest) = self.buffered() else {
            return Ok(0);
        };
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BundleFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        Ok(self.pos)
    }
}

/// Reads at `offset` without moving a shared file position, retrying an interrupted read.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    loop {
        #[cfg(unix)]
        let r = std::os::unix::fs::FileExt::read_at(file, buf, offset);
        #[cfg(windows)]
        let r = std::os::windows::fs::FileExt::seek_read(file, buf, offset);
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads and seeks through clones give the file's bytes at every position.
    #[test]
    fn clones_read_the_file_at_their_own_positions() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bundle.zip");
        std::fs::write(&path, &bytes).expect("write");
        let mut a = BundleFile::open(&path).expect("open");
        let mut b = a.clone();
        for (start, len) in [
            (0usize, 10usize),
            (5, 30),
            (16_380, 20),
            (99_990, 50),
            (40_000, 40_000),
            (7, 1),
        ] {
            for r in [&mut a, &mut b] {
                r.seek(SeekFrom::Start(start as u64)).expect("seek");
                let mut got = Vec::new();
                r.by_ref().take(len as u64).read_to_end(&mut got).expect("read");
                assert_eq!(got, bytes[start..(start + len).min(bytes.len())]);
            }
            let mut one = [0u8; 1];
            a.seek(SeekFrom::End(-1)).expect("seek from the end");
            a.read_exact(&mut one).expect("last byte");
            assert_eq!(one[0], bytes[bytes.len() - 1]);
            assert_eq!(a.read(&mut one).expect("at the end"), 0);
        }
    }

    /// A window reads only its bytes, at positions of its own, and ends where it ends.
    #[test]
    fn a_window_reads_its_part_of_the_file_only() {
        let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("container.zip");
        std::fs::write(&path, &bytes).expect("write");
        let file = BundleFile::open(&path).expect("open");
        let mut w = file.window(1_000, 30_000);
        let mut all = Vec::new();
        w.read_to_end(&mut all).expect("read");
        assert_eq!(all, bytes[1_000..31_000]);
        w.seek(SeekFrom::End(-10)).expect("seek from the window's end");
        let mut tail = Vec::new();
        w.read_to_end(&mut tail).expect("read");
        assert_eq!(tail, bytes[30_990..31_000]);
        // A window of a window, and one reaching past the end, clamped.
        let mut inner = w.window(100, 50);
        let mut got = Vec::new();
        inner.read_to_end(&mut got).expect("read");
        assert_eq!(got, bytes[1_100..1_150]);
        let mut past = file.window(49_990, 1_000);
        let mut got = Vec::new();
        past.read_to_end(&mut got).expect("read");
        assert_eq!(got, bytes[49_990..]);
    }
}
