//! A write buffer for the bundle's ZIP writer that keeps the file's unwritten end in memory,
//! so the writer's seeks back to fill in each entry's header cost no system calls.

use std::io::{Seek, SeekFrom, Write};

/// Bytes kept in memory before they are written out.
const TAIL_MAX: usize = 1 << 20;

/// Buffers the bundle's end in memory. The ZIP writer seeks back after each entry to fill in
/// its CRC and sizes; through a `BufWriter` every such seek is a flush and more system calls,
/// twice per message. Here seeks and writes within the unwritten tail stay in memory, and the
/// file is written in pieces of about [`TAIL_MAX`]; a seek back further (an entry larger than
/// that) goes to the file. `flush` must be called at the end: nothing is written on drop.
pub(super) struct TailBuffer<W: Write + Seek> {
    inner: W,
    /// Bytes written to `inner`; its position is there.
    flushed: u64,
    /// The bytes from `flushed` on.
    tail: Vec<u8>,
    /// The position of the next write.
    pos: u64,
}

impl<W: Write + Seek> TailBuffer<W> {
    pub(super) fn new(inner: W) -> TailBuffer<W> {
        TailBuffer {
            inner,
            flushed: 0,
            tail: Vec::with_capacity(TAIL_MAX),
            pos: 0,
        }
    }

    fn end(&self) -> u64 {
        self.flushed + self.tail.len() as u64
    }

    fn write_out(&mut self) -> std::io::Result<()> {
        self.inner.write_all(&self.tail)?;
        self.flushed += self.tail.len() as u64;
        self.tail.clear();
        Ok(())
    }
}

impl<W: Write + Seek> Write for TailBuffer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.pos < self.flushed {
            // Into what is already written: there, and back to where `inner` appends.
            let n = buf.len().min((self.flushed - self.pos) as usize);
            self.inner.seek(SeekFrom::Start(self.pos))?;
            let written = self.inner.write_all(&buf[..n]);
            self.inner.seek(SeekFrom::Start(self.flushed))?;
            written?;
            self.pos += n as u64;
            return Ok(n);
        }
        let at = usize::try_from(self.pos - self.flushed)
            .map_err(|_| std::io::Error::other("seek beyond the end of the bundle"))?;
        if at > self.tail.len() {
            self.tail.resize(at, 0);
        }
        let overlap = buf.len().min(self.tail.len() - at);
        self.tail[at..at + overlap].copy_from_slice(&buf[..overlap]);
        self.tail.extend_from_slice(&buf[overlap..]);
        self.pos += buf.len() as u64;
        if self.tail.len() >= TAIL_MAX && self.pos == self.end() {
            self.write_out()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_out()?;
        self.inner.flush()
    }
}

impl<W: Write + Seek> Seek for TailBuffer<W> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.end().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::other("seek before the start of the bundle"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// The same writes and seeks through a TailBuffer and straight into memory give the same
    /// bytes, also when a seek goes back past what was written out.
    #[test]
    fn tail_buffer_writes_what_a_plain_file_gets() {
        let mut plain = Cursor::new(Vec::new());
        let mut file = tempfile::tempfile().expect("temp file");
        let mut tail = TailBuffer::new(&mut file);
        let mut step = 0u8;
        for len in [10usize, 70_000, 3 * TAIL_MAX / 2, 5, 2 * TAIL_MAX + 3, 100] {
            step = step.wrapping_add(1);
            let header = [step; 30];
            let body: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(step)).collect();
            let patch = [step.wrapping_add(100); 12];
            for w in [&mut plain as &mut dyn WriteSeek, &mut tail as &mut dyn WriteSeek] {
                let start = w.stream_position().expect("position");
                w.write_all(&header).expect("header");
                w.write_all(&body).expect("body");
                let end = w.stream_position().expect("position");
                // As the ZIP writer fills in a local header: back, patch, forward.
                w.seek(SeekFrom::Start(start + 14)).expect("seek back");
                w.write_all(&patch).expect("patch");
                w.seek(SeekFrom::Start(end)).expect("seek forward");
            }
        }
        tail.flush().expect("flush");
        drop(tail);
        let mut written = Vec::new();
        file.seek(SeekFrom::Start(0)).expect("rewind");
        std::io::Read::read_to_end(&mut file, &mut written).expect("read back");
        assert_eq!(written.len(), plain.get_ref().len());
        assert!(written == *plain.get_ref(), "the buffered file differs");
    }

    trait WriteSeek: Write + Seek {}
    impl<T: Write + Seek> WriteSeek for T {}
}
