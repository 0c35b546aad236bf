//! Segment files: the log is a directory of them, named by the seq of their first record.
//! A segment is appended to at its end only, sealed (fsynced, mode 0400) at a size limit, and
//! never written again. This module reads them frame by frame and tells a torn tail (an
//! incomplete write at the very end, never acknowledged) from damage (anything else).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::checkpoint::VerifierKey;
use super::record::{chain_next, FrameBody, FrameHeader, Leaf, LeafBody, FRAME_HEADER_LEN, FRAME_MAGIC};
use crate::{Error, IoContext, Result};

/// Magic and version at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MVSEG001";
/// Bytes of the segment header: magic and the first record's seq.
pub const SEGMENT_HEADER_LEN: u64 = 16;

/// File name of the segment whose first record has `first_seq`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// Segment header bytes.
pub fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..].copy_from_slice(&first_seq.to_be_bytes());
    h
}

/// The segment files of a log directory, sorted by first seq.
pub fn list_segments(log_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for (first, path) in numbered_files(log_dir, ".seg")? {
        let first = first.ok_or_else(|| Error::Format {
            path: path.clone(),
            reason: "segment file name is not a 20-digit sequence number".into(),
        })?;
        out.push((first, path));
    }
    out.sort();
    Ok(out)
}

/// The files of a log directory ending in `suffix`, each with the 20-digit sequence number
/// its name starts with (`None` when it does not); none when the directory is missing.
pub(crate) fn numbered_files(log_dir: &Path, suffix: &str) -> Result<Vec<(Option<u64>, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(log_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(log_dir, e)),
    };
    for entry in entries {
        let entry = entry.at(log_dir)?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
            continue;
        };
        let number = Some(stem)
            .filter(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        out.push((number, entry.path()));
    }
    Ok(out)
}

/// One frame read from a segment.
#[derive(Debug)]
pub struct RawFrame {
    /// Byte offset of the frame in its segment file.
    pub offset: u64,
    /// The 16 header bytes.
    pub header_bytes: [u8; FRAME_HEADER_LEN],
    /// The parsed header.
    pub header: FrameHeader,
    /// The body (`header.body_len` bytes).
    pub body: Vec<u8>,
}

impl RawFrame {
    /// Checks the CRC and splits the body.
    pub fn open(&self) -> Result<FrameBody<'_>, String> {
        self.header.open(&self.header_bytes, &self.body)
    }
}

/// Why a scan stopped before a clean end of file.
#[derive(Debug)]
pub enum ScanStop {
    /// The file ends inside a frame: `available` bytes of it are present at `offset`.
    Torn { offset: u64, available: u64 },
    /// The bytes at `offset` are not a valid frame.
    Damaged { offset: u64, reason: String },
}

/// What a segment is read from: its file, or (an evicted segment, for `verify`) a stream of
/// the object holding it, which can only be read forward.
enum SegmentInput {
    File(File),
    Stream(Box<dyn Read + Send>),
}

impl Read for SegmentInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            SegmentInput::File(f) => f.read(buf),
            SegmentInput::Stream(s) => s.read(buf),
        }
    }
}

impl Seek for SegmentInput {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match self {
            SegmentInput::File(f) => f.seek(pos),
            SegmentInput::Stream(_) => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "a streamed segment is read forward only",
            )),
        }
    }
}

/// Reads a segment's frames in order.
pub struct SegmentReader {
    path: PathBuf,
    reader: BufReader<SegmentInput>,
    offset: u64,
    file_len: u64,
    /// Seq of the segment's first record, from its header.
    pub first_seq: u64,
}

impl SegmentReader {
    /// Opens a segment and checks its header.
    pub fn open(path: &Path) -> Result<SegmentReader> {
        let file = File::open(path).at(path)?;
        let file_len = file.metadata().at(path)?.len();
        SegmentReader::from_input(path, SegmentInput::File(file), file_len)
    }

    /// Reads a segment of `len` bytes from a stream (an evicted segment's object; `name`
    /// says where it is in errors). Frames are read with their bodies only (no skipping).
    pub fn from_stream(name: &Path, stream: Box<dyn Read + Send>, len: u64) -> Result<SegmentReader> {
        SegmentReader::from_input(name, SegmentInput::Stream(stream), len)
    }

    /// Reads what is left of the input, for a stream whose every byte must pass (a hash is
    /// taken as it goes); returns how many bytes that was.
    pub fn read_rest(&mut self) -> Result<u64> {
        std::io::copy(&mut self.reader, &mut std::io::sink())
            .map_err(|e| Error::unreadable(&self.path, self.offset, e))
    }

    fn from_input(path: &Path, input: SegmentInput, file_len: u64) -> Result<SegmentReader> {
        let mut reader = BufReader::with_capacity(1 << 20, input);
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        reader.read_exact(&mut header).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::Format {
                path: path.to_path_buf(),
                reason: "segment shorter than its header".into(),
            },
            _ => Error::unreadable(path, 0, e),
        })?;
        if header[..8] != SEGMENT_MAGIC {
            return Err(Error::Format {
                path: path.to_path_buf(),
                reason: "not a mailvault segment (bad magic)".into(),
            });
        }
        let first_seq = u64::from_be_bytes(header[8..].try_into().unwrap_or_default());
        Ok(SegmentReader {
            path: path.to_path_buf(),
            reader,
            offset: SEGMENT_HEADER_LEN,
            file_len,
            first_seq,
        })
    }

    /// The segment's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Length of the file when it was opened.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Positions the reader at `offset` (a frame boundary the caller knows).
    pub fn seek_to(&mut self, offset: u64) -> Result<()> {
        self.reader.seek(SeekFrom::Start(offset)).at(&self.path)?;
        self.offset = offset;
        Ok(())
    }

    /// The next frame; `Ok(Err(stop))` when the rest of the file is not a clean frame sequence.
    /// With `with_body = false` the body is skipped (and not checked), for fast seq lookups.
    pub fn next_frame(&mut self, with_body: bool) -> Result<Option<Result<RawFrame, ScanStop>>> {
        let offset = self.offset;
        let remaining = self.file_len - offset.min(self.file_len);
        if remaining == 0 {
            return Ok(None);
        }
        if remaining < FRAME_HEADER_LEN as u64 {
            return Ok(Some(Err(ScanStop::Torn {
                offset,
                available: remaining,
            })));
        }
        // The length was taken at open; a rewind of the running server may cut the active
        // segment since (what it cuts was never acknowledged). A read that runs into the new
        // end is a torn tail, not an I/O error.
        let torn = ScanStop::Torn {
            offset,
            available: remaining,
        };
        let mut header_bytes = [0u8; FRAME_HEADER_LEN];
        match self.reader.read_exact(&mut header_bytes) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Some(Err(torn))),
            Err(e) => return Err(Error::unreadable(&self.path, offset, e)),
        }
        let Some(header) = FrameHeader::parse(&header_bytes) else {
            return Ok(Some(Err(ScanStop::Damaged {
                offset,
                reason: if header_bytes[..4] == FRAME_MAGIC {
                    "reserved header bytes are not zero".into()
                } else {
                    "no frame magic where a record should start".into()
                },
            })));
        };
        if header.frame_len() > remaining {
            return Ok(Some(Err(torn)));
        }
        let body = if with_body {
            let mut body = vec![0u8; header.body_len as usize];
            match self.reader.read_exact(&mut body) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Some(Err(torn))),
                Err(e) => return Err(Error::unreadable(&self.path, offset, e)),
            }
            body
        } else {
            self.reader
                .seek_relative(i64::from(header.body_len))
                .at(&self.path)?;
            Vec::new()
        };
        self.offset = offset + header.frame_len();
        Ok(Some(Ok(RawFrame {
            offset,
            header_bytes,
            header,
            body,
        })))
    }
}

/// Whether a valid frame (magic, plausible length, good CRC) starts anywhere in `bytes`
/// after position 0.
pub fn contains_valid_frame(bytes: &[u8]) -> bool {
    valid_frames(bytes).next().is_some()
}

/// Whether `bytes` (what follows the last good record, whose chain hash is `chain`) holds,
/// after position 0, the record that continues the log: a valid frame of seq `next_seq`
/// whose chain hash extends `chain`. Only such a record makes unreadable bytes in front of
/// it damage rather than a torn write: a frame-shaped run of bytes inside a message (an
/// outsider's incompressible mail is stored as sent) can never continue the chain.
pub fn contains_chain_continuation(bytes: &[u8], next_seq: u64, chain: &[u8; 32]) -> bool {
    valid_frames(bytes).any(|(h, body)| {
        let Some(header) = FrameHeader::parse(&h) else {
            return false;
        };
        let Ok(frame) = header.open(&h, body) else {
            return false;
        };
        Leaf::decode(frame.leaf).is_ok_and(|leaf| leaf.seq == next_seq)
            && frame.chain == chain_next(chain, frame.leaf)
    })
}

/// Whether `bytes` holds, after position 0, a checkpoint record signed by `key` over more than
/// `signed_before` records: proof that records after an unreadable spot were acknowledged
/// (every acknowledgement waits for such a checkpoint). Nobody without the key can put one
/// into a message, however the message is stored.
pub fn contains_signed_checkpoint(bytes: &[u8], key: &VerifierKey, signed_before: u64) -> bool {
    valid_frames(bytes).any(|(h, body)| {
        let Some(header) = FrameHeader::parse(&h) else {
            return false;
        };
        let Ok(frame) = header.open(&h, body) else {
            return false;
        };
        let Ok(Leaf {
            body: LeafBody::Checkpoint { note },
            ..
        }) = Leaf::decode(frame.leaf)
        else {
            return false;
        };
        std::str::from_utf8(&note)
            .ok()
            .and_then(|note| key.verify_note(note).ok())
            .is_some_and(|signed| signed.checkpoint.size > signed_before)
    })
}

/// Every valid frame (magic, plausible length, good CRC) starting in `bytes` after position 0,
/// as its header and body bytes. Frames may overlap: every offset is tried.
fn valid_frames(bytes: &[u8]) -> impl Iterator<Item = ([u8; FRAME_HEADER_LEN], &[u8])> {
    (1..bytes.len().saturating_sub(FRAME_HEADER_LEN - 1)).filter_map(move |i| {
        if bytes[i..i + 4] != FRAME_MAGIC {
            return None;
        }
        let mut h = [0u8; FRAME_HEADER_LEN];
        h.copy_from_slice(&bytes[i..i + FRAME_HEADER_LEN]);
        let header = FrameHeader::parse(&h)?;
        let end = (i as u64).checked_add(header.frame_len())?;
        if end > bytes.len() as u64 {
            return None;
        }
        let body = &bytes[i + FRAME_HEADER_LEN..end as usize];
        header.open(&h, body).is_ok().then_some((h, body))
    })
}
