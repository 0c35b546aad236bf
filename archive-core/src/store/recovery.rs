//! Opening a log for writing after any kind of stop, clean or not.
//!
//! Only the last segment can hold unacknowledged bytes: everything before it was fsynced
//! when it was sealed, and every sealed segment ends with a checkpoint. In the last segment,
//! what follows the newest checkpoint was never acknowledged (a group commit acknowledges
//! only after the checkpoint over its batch is durable): complete records nobody was told
//! about, and a torn write. Those bytes are cut off and kept in a quarantine file, never
//! signed. Anything else that does not read — above all an unreadable record followed by the
//! record that continues the chain — is damage, and opening refuses rather than cut
//! acknowledged mail.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::log::checkpoint::VerifierKey;
use crate::log::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::log::record::{Leaf, LeafBody};
use crate::log::segment::{
    contains_chain_continuation, contains_signed_checkpoint, contains_valid_frame, list_segments,
    segment_file_name, ScanStop, SegmentReader, SEGMENT_HEADER_LEN,
};
use crate::{Error, IoContext, Result};

/// The state of the log's end, as recovered.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// The last segment (first seq, path, length after recovery), if any.
    pub segment: Option<(u64, PathBuf, u64)>,
    /// Seq of the last record (0 for an empty log).
    pub last_seq: u64,
    /// Chain hash after the last record.
    pub chain: [u8; 32],
    /// Receive time of the last record.
    pub last_time_us: i64,
    /// The newest checkpoint record: its seq and note.
    pub checkpoint: Option<(u64, SignedCheckpoint)>,
    /// What recovery cut off the end of the log, if anything.
    pub cut: Option<Cut>,
}

/// Bytes recovery cut off the last segment, kept in a quarantine file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The segment they were cut from.
    pub segment: PathBuf,
    /// Where the cut starts: the end of the newest checkpoint (or of the last record, for a
    /// store from before signed acknowledgements).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// Complete records among them (first and last seq): written, never acknowledged.
    pub unsigned_records: Option<(u64, u64)>,
    /// Bytes of an incomplete record at the end (a torn write).
    pub torn_bytes: u64,
    /// The quarantine file that holds the cut bytes.
    pub kept_in: PathBuf,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self
            .segment
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        write!(
            f,
            "{} bytes cut from {name} at offset {}",
            self.bytes, self.offset
        )?;
        if let Some((first, last)) = self.unsigned_records {
            write!(
                f,
                ": records {first}..{last} written but never signed nor acknowledged"
            )?;
        }
        if self.torn_bytes > 0 {
            let sep = if self.unsigned_records.is_some() {
                " and"
            } else {
                ":"
            };
            write!(f, "{sep} {} bytes of a torn write", self.torn_bytes)?;
        }
        write!(f, "; kept in {}", self.kept_in.display())
    }
}

/// A record's seq, chain hash and receive time: the log's state right after it.
type After = (u64, [u8; 32], i64);

/// What one segment scan learned.
struct Scan {
    last: Option<After>,
    /// Where the last good record ends.
    last_end: u64,
    checkpoint: Option<(u64, SignedCheckpoint)>,
    /// Where the newest checkpoint record of this segment ends, and the state after it.
    checkpoint_end: Option<(u64, After)>,
    stop: Option<ScanStop>,
    file_len: u64,
}

fn scan(path: &Path, first: u64) -> Result<Scan> {
    let mut reader = SegmentReader::open(path)?;
    if reader.first_seq != first {
        return Err(Error::Corrupt {
            seq: first,
            segment: path.to_path_buf(),
            offset: 0,
            reason: format!("segment header says it starts at seq {}", reader.first_seq),
        });
    }
    let mut out = Scan {
        last: None,
        last_end: SEGMENT_HEADER_LEN,
        checkpoint: None,
        checkpoint_end: None,
        stop: None,
        file_len: reader.file_len(),
    };
    let mut expected = first;
    while let Some(item) = reader.next_frame(true)? {
        let frame = match item {
            Ok(f) => f,
            Err(stop) => {
                out.stop = Some(stop);
                break;
            }
        };
        let body = match frame.open() {
            Ok(b) => b,
            Err(reason) => {
                out.stop = Some(ScanStop::Damaged {
                    offset: frame.offset,
                    reason,
                });
                break;
            }
        };
        let corrupt = |reason: String| Error::Corrupt {
            seq: expected,
            segment: path.to_path_buf(),
            offset: frame.offset,
            reason,
        };
        let leaf = Leaf::decode(body.leaf).map_err(|e| corrupt(e.to_string()))?;
        if leaf.seq != expected {
            return Err(corrupt(format!("holds seq {}", leaf.seq)));
        }
        if let LeafBody::Checkpoint { note } = &leaf.body {
            let note = String::from_utf8_lossy(note).into_owned();
            let text = note
                .split_once("\n\n")
                .map(|(t, _)| format!("{t}\n"))
                .unwrap_or_default();
            let checkpoint = Checkpoint::parse_body(&text).map_err(|e| corrupt(e.to_string()))?;
            out.checkpoint = Some((leaf.seq, SignedCheckpoint { checkpoint, note }));
            out.checkpoint_end = Some((reader.offset(), (leaf.seq, body.chain, leaf.time_us)));
        }
        out.last = Some((leaf.seq, body.chain, leaf.time_us));
        out.last_end = reader.offset();
        expected += 1;
    }
    Ok(out)
}

/// Recovers the log in `log_dir`: cuts what was never acknowledged off the last segment
/// (into a file in `quarantine_dir`) and finds the tail state and the newest checkpoint.
/// With `keep_unsigned` (a store from before signed acknowledgements, whose unsigned records
/// may have been acknowledged) only a torn write is cut. `key` is the log's public key.
pub(crate) fn recover(
    log_dir: &Path,
    quarantine_dir: &Path,
    key: &VerifierKey,
    keep_unsigned: bool,
) -> Result<Tail> {
    let mut segments = list_segments(log_dir)?;
    let mut tail = Tail::default();
    // A crash while creating a segment can leave it without a complete header: it never held
    // a record, so it goes.
    if let Some((_, path)) = segments.last() {
        let len = std::fs::metadata(path).at(path)?.len();
        if len < SEGMENT_HEADER_LEN {
            std::fs::remove_file(path).at(path)?;
            std::fs::File::open(log_dir)
                .and_then(|d| d.sync_all())
                .at(log_dir)?;
            segments.pop();
        }
    }
    let Some((last_first, last_path)) = segments.last().cloned() else {
        return Ok(tail);
    };

    let mut last_scan = scan(&last_path, last_first)?;
    let chain_before = |first: u64| -> Result<[u8; 32]> {
        // The chain hash in front of the segment's first record: the previous segment's last.
        match segments.iter().rev().nth(1) {
            Some((f, p)) if *f < first => Ok(scan(p, *f)?.last.map_or([0u8; 32], |l| l.1)),
            _ => Ok([0u8; 32]),
        }
    };
    let mut torn_at = None;
    if let Some(stop) = last_scan.stop.take() {
        let (offset, reason) = match stop {
            ScanStop::Torn { offset, .. } => (offset, "record runs past the end of the file".to_string()),
            ScanStop::Damaged { offset, reason } => (offset, reason),
        };
        let bytes = std::fs::read(&last_path).at(&last_path)?;
        let rest = &bytes[offset as usize..];
        // Unreadable bytes are damage, not what a torn write leaves, when acknowledged
        // records follow them: shown by the record that continues the chain, or by a
        // checkpoint signed with the log's key over more than what was read. Frame-shaped
        // bytes inside a message (an outsider's incompressible mail is stored as sent) can
        // be neither. A store from before signed acknowledgements counts any valid frame.
        let (next_seq, chain) = match last_scan.last {
            Some((seq, chain, _)) => (seq + 1, chain),
            None => (last_first, chain_before(last_first)?),
        };
        let acknowledged_follow = if keep_unsigned {
            contains_valid_frame(rest)
        } else {
            contains_chain_continuation(rest, next_seq, &chain)
                || contains_signed_checkpoint(rest, key, next_seq - 1)
        };
        if acknowledged_follow {
            return Err(Error::Corrupt {
                seq: next_seq,
                segment: last_path,
                offset,
                reason: format!("{reason}; acknowledged records follow, so this is damage, not a torn write (run `mailvault verify`)"),
            });
        }
        torn_at = Some(offset);
    }
    // Where the acknowledged part of the segment ends.
    let keep_to = match (&last_scan.checkpoint_end, keep_unsigned) {
        (_, true) => last_scan.last_end,
        (Some((end, _)), false) => *end,
        // No checkpoint in this segment: the previous segment was sealed after one, so
        // every record here is unsigned.
        (None, false) => SEGMENT_HEADER_LEN,
    };
    if keep_to < last_scan.file_len {
        let unsigned_records = if keep_unsigned {
            None
        } else {
            let first = last_scan
                .checkpoint_end
                .map_or(last_first, |(_, (seq, _, _))| seq + 1);
            last_scan.last.filter(|l| l.0 >= first).map(|l| (first, l.0))
        };
        let kept_in = quarantine(&last_path, keep_to, quarantine_dir)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&last_path)
            .at(&last_path)?;
        file.set_len(keep_to).at(&last_path)?;
        file.sync_all().at(&last_path)?;
        tail.cut = Some(Cut {
            segment: last_path.clone(),
            offset: keep_to,
            bytes: last_scan.file_len - keep_to,
            unsigned_records,
            torn_bytes: torn_at.map_or(0, |t| last_scan.file_len - t),
            kept_in,
        });
        if !keep_unsigned {
            last_scan.last = last_scan.checkpoint_end.map(|(_, state)| state);
        }
        last_scan.file_len = keep_to;
    }
    tail.segment = Some((last_first, last_path, last_scan.file_len));
    let mut last = last_scan.last;
    tail.checkpoint = last_scan.checkpoint;

    // The tail state and the newest checkpoint may sit in earlier segments.
    for (first, path) in segments.iter().rev().skip(1) {
        if last.is_some() && tail.checkpoint.is_some() {
            break;
        }
        let s = scan(path, *first)?;
        if let Some(stop) = s.stop {
            let (offset, reason) = match stop {
                ScanStop::Torn { offset, .. } => (offset, "sealed segment ends inside a record".to_string()),
                ScanStop::Damaged { offset, reason } => (offset, reason),
            };
            return Err(Error::Corrupt {
                seq: s.last.map_or(*first, |l| l.0 + 1),
                segment: path.clone(),
                offset,
                reason,
            });
        }
        if last.is_none() {
            last = s.last;
        }
        if tail.checkpoint.is_none() {
            tail.checkpoint = s.checkpoint;
        }
    }
    if let Some((seq, chain, time)) = last {
        tail.last_seq = seq;
        tail.chain = chain;
        tail.last_time_us = time;
    }
    if tail.last_seq + 1 < last_first {
        return Err(Error::Corrupt {
            seq: tail.last_seq + 1,
            segment: log_dir.to_path_buf(),
            offset: 0,
            reason: format!("records {}..{} are missing", tail.last_seq + 1, last_first - 1),
        });
    }
    Ok(tail)
}

/// Copies the bytes of `segment` from `offset` to its end into a new file in `dir`, durably,
/// before the caller cuts them: recovery never destroys bytes.
pub(crate) fn quarantine(segment: &Path, offset: u64, dir: &Path) -> Result<PathBuf> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at(dir)?;
    let name = segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| segment_file_name(0));
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut from = std::fs::File::open(segment).at(segment)?;
    from.seek(SeekFrom::Start(offset)).at(segment)?;
    // The same spot can be cut more than once a second (rewinds after repeated failed
    // fsyncs): a number tells the files apart.
    let mut n = 0u32;
    let (path, mut to) = loop {
        let suffix = if n == 0 { String::new() } else { format!(".{n}") };
        let path = dir.join(format!("{name}.{offset}.{stamp}{suffix}.cut"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&path)
        {
            Ok(f) => break (path, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(Error::io(&path, e)),
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from.read(&mut buf).at(segment)?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).at(&path)?;
    }
    to.sync_all().at(&path)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    Ok(path)
}
