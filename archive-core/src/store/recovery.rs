//! Opening a log for writing after any kind of stop, clean or not.
//!
//! Only the last segment can hold a torn write (everything before it was fsynced when it was
//! sealed). A torn tail is bytes of a record whose append never returned: they are cut off.
//! Anything else that does not parse, above all a bad record with valid records after it, is
//! damage, and opening refuses rather than cut acknowledged mail.

use std::path::{Path, PathBuf};

use crate::log::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::log::record::{Leaf, LeafBody};
use crate::log::segment::{contains_valid_frame, list_segments, ScanStop, SegmentReader, SEGMENT_HEADER_LEN};
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
    /// A torn tail that was cut: segment, offset, bytes removed.
    pub truncated: Option<(PathBuf, u64, u64)>,
}

/// What one segment scan learned.
struct Scan {
    last: Option<(u64, [u8; 32], i64)>,
    checkpoint: Option<(u64, SignedCheckpoint)>,
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
        checkpoint: None,
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
        }
        out.last = Some((leaf.seq, body.chain, leaf.time_us));
        expected += 1;
    }
    Ok(out)
}

/// Recovers the log in `log_dir`: cuts a torn tail off the last segment and finds the tail
/// state and the newest checkpoint.
pub(crate) fn recover(log_dir: &Path) -> Result<Tail> {
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
    if let Some(stop) = last_scan.stop.take() {
        let (offset, reason) = match stop {
            ScanStop::Torn { offset, .. } => (offset, "record runs past the end of the file".to_string()),
            ScanStop::Damaged { offset, reason } => (offset, reason),
        };
        let bytes = std::fs::read(&last_path).at(&last_path)?;
        let rest = &bytes[offset as usize..];
        // A damaged length field also looks like a record running past the end: only when
        // no valid record follows is it a torn write.
        if contains_valid_frame(rest) {
            let seq = last_scan.last.map_or(last_first, |l| l.0 + 1);
            return Err(Error::Corrupt {
                seq,
                segment: last_path,
                offset,
                reason: format!("{reason}; valid records follow, so this is damage, not a torn write (run `mailvault verify`)"),
            });
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&last_path)
            .at(&last_path)?;
        file.set_len(offset).at(&last_path)?;
        file.sync_all().at(&last_path)?;
        tail.truncated = Some((last_path.clone(), offset, rest.len() as u64));
        last_scan.file_len = offset;
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
