//! Evicted segments: a sealed segment whose offload receipt is durable in the log may leave
//! the local disk (`[storage.s3] cache_size`). Its file is replaced by a small stub,
//! `<20-digit first seq>.evicted` in the log directory (docs/FORMAT.md §Evicted segments),
//! that says where the bytes went (bucket, key, version), what they are (length, BLAKE3) and
//! where each record's frame lies in them, with the record's leaf hash, so that a reader can
//! fetch one frame by a range read and check it before use, without the rest of the log.
//!
//! Nothing of the log is deleted: the bytes stay in WORM storage under the receipt, and the
//! stub is written (durably) before the local copy goes.

use std::path::{Path, PathBuf};

use base64::Engine;

use super::merkle::{leaf_hash, Hash};
use super::record::{LeafBody, OffloadReceipt, RecordKind};
use super::segment::{
    list_segments, numbered_files, segment_file_name, ScanStop, SegmentReader, SEGMENT_HEADER_LEN,
};
use crate::{Error, IoContext, Result};

/// The `format` line of every stub.
pub const STUB_FORMAT: &str = "mailvault-evicted-segment/1";
/// Bytes of one entry of a stub's frame table: offset, length (u64 BE each), leaf hash.
const FRAME_ENTRY_LEN: usize = 48;
/// The largest stub read (a 4 GiB segment of 100-byte records would need more; none is that).
const MAX_STUB_LEN: u64 = 256 << 20;

/// File name of the stub of the evicted segment whose first record has `first_seq`.
pub fn stub_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.evicted")
}

/// Where a record's frame lies in an evicted segment, and its leaf hash (RFC 6962, as in the
/// tree): what a fetched frame is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameEntry {
    /// Offset of the frame in the segment (and so in the object).
    pub offset: u64,
    /// Length of the frame.
    pub len: u64,
    /// `SHA-256(0x00 ‖ leaf)`.
    pub leaf_hash: Hash,
}

/// What a stub says about an evicted segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvictedSegment {
    /// The segment's number: the seq of its first record.
    pub first_seq: u64,
    /// The receipt in the log that names the object.
    pub receipt_seq: u64,
    /// The receipt itself (bucket, key, version, length, BLAKE3, retain-until).
    pub receipt: OffloadReceipt,
    /// The chain hash of the segment's last record (for `verify` without the bytes).
    pub last_chain: [u8; 32],
    /// The offload receipts among this segment's records: the segment each names, and the
    /// receipt's seq (so the offload thread's start-up scan need not fetch the segment).
    pub receipts: Vec<(u64, u64)>,
    /// One entry per record, seq `first_seq + i` at index `i`.
    pub frames: Vec<FrameEntry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StubFile {
    format: String,
    segment: u64,
    receipt_seq: u64,
    bucket: String,
    key: String,
    version_id: String,
    retain_until: i64,
    segment_len: u64,
    segment_blake3: String,
    records: u64,
    last_chain: String,
    receipts: Vec<(u64, u64)>,
    frames: String,
}

impl EvictedSegment {
    /// Seq of the segment's last record.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.frames.len() as u64 - 1
    }

    /// The frame of record `seq`, if it is in this segment.
    pub fn frame(&self, seq: u64) -> Option<&FrameEntry> {
        seq.checked_sub(self.first_seq)
            .and_then(|i| self.frames.get(usize::try_from(i).ok()?))
    }

    /// Where the bytes are, for messages: `s3://bucket/key (version v)`.
    pub fn place(&self) -> String {
        format!(
            "s3://{}/{} (version {})",
            self.receipt.bucket,
            self.receipt.key,
            if self.receipt.version_id.is_empty() {
                "-"
            } else {
                &self.receipt.version_id
            }
        )
    }

    /// Builds the stub of the sealed segment file at `path`, whose receipt (record
    /// `receipt_seq`) is `receipt`: every frame read and checked, and the file's length and
    /// BLAKE3 compared with the receipt's (a file that is not the uploaded one is refused).
    pub fn describe(path: &Path, receipt_seq: u64, receipt: &OffloadReceipt) -> Result<EvictedSegment> {
        let refuse = |reason: String| Error::Format {
            path: path.to_path_buf(),
            reason,
        };
        let (len, hash) = crate::verify::file_blake3(path).at(path)?;
        if len != receipt.segment_len || hash != receipt.segment_hash {
            return Err(refuse(format!(
                "the file is not the one its receipt (seq {receipt_seq}) names: {len} bytes, the receipt {}",
                receipt.segment_len
            )));
        }
        let mut reader = SegmentReader::open(path)?;
        if reader.first_seq != receipt.segment {
            return Err(refuse(format!(
                "the segment starts at seq {}, its receipt names segment {}",
                reader.first_seq, receipt.segment
            )));
        }
        let mut frames = Vec::new();
        let mut last_chain = [0u8; 32];
        let mut last_kind = None;
        let mut receipts = Vec::new();
        while let Some(frame) = reader.next_frame(true)? {
            let frame = match frame {
                Ok(f) => f,
                Err(ScanStop::Torn { offset, .. } | ScanStop::Damaged { offset, .. }) => {
                    return Err(refuse(format!("no clean frame at offset {offset}")))
                }
            };
            let body = frame
                .open()
                .map_err(|r| refuse(format!("offset {}: {r}", frame.offset)))?;
            let leaf = super::record::Leaf::decode(body.leaf)
                .map_err(|e| refuse(format!("offset {}: {e}", frame.offset)))?;
            if leaf.seq != receipt.segment + frames.len() as u64 {
                return Err(refuse(format!(
                    "offset {}: seq {} out of order",
                    frame.offset, leaf.seq
                )));
            }
            if let LeafBody::Offload(r) = &leaf.body {
                receipts.push((r.segment, leaf.seq));
            }
            last_kind = Some(leaf.kind());
            last_chain = body.chain;
            frames.push(FrameEntry {
                offset: frame.offset,
                len: frame.header.frame_len(),
                leaf_hash: leaf_hash(body.leaf),
            });
        }
        // A sealed segment ends with its checkpoint; anything else is not sealed.
        if last_kind != Some(RecordKind::Checkpoint) {
            return Err(refuse(
                "the segment does not end with a checkpoint: not sealed".into(),
            ));
        }
        Ok(EvictedSegment {
            first_seq: receipt.segment,
            receipt_seq,
            receipt: receipt.clone(),
            last_chain,
            receipts,
            frames,
        })
    }

    /// The stub's bytes (JSON; the frame table base64 of 48-byte entries).
    pub fn encode(&self) -> Vec<u8> {
        let mut table = Vec::with_capacity(self.frames.len() * FRAME_ENTRY_LEN);
        for f in &self.frames {
            table.extend_from_slice(&f.offset.to_be_bytes());
            table.extend_from_slice(&f.len.to_be_bytes());
            table.extend_from_slice(&f.leaf_hash);
        }
        let r = &self.receipt;
        let stub = StubFile {
            format: STUB_FORMAT.into(),
            segment: self.first_seq,
            receipt_seq: self.receipt_seq,
            bucket: r.bucket.clone(),
            key: r.key.clone(),
            version_id: r.version_id.clone(),
            retain_until: r.retain_until,
            segment_len: r.segment_len,
            segment_blake3: to_hex(&r.segment_hash),
            records: self.frames.len() as u64,
            last_chain: to_hex(&self.last_chain),
            receipts: self.receipts.clone(),
            frames: base64::engine::general_purpose::STANDARD.encode(table),
        };
        let mut out = serde_json::to_vec_pretty(&stub).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Parses a stub; every entry is checked to lie inside the segment, in order.
    pub fn decode(bytes: &[u8]) -> std::result::Result<EvictedSegment, String> {
        let stub: StubFile = serde_json::from_slice(bytes).map_err(|e| format!("not a stub: {e}"))?;
        if stub.format != STUB_FORMAT {
            return Err(format!("unknown stub format {:?}", stub.format));
        }
        let hash32 = |name: &str, text: &str| -> std::result::Result<[u8; 32], String> {
            let mut out = [0u8; 32];
            if text.len() != 64 {
                return Err(format!("{name}: not 64 hex digits"));
            }
            for (i, b) in out.iter_mut().enumerate() {
                *b = u8::from_str_radix(text.get(2 * i..2 * i + 2).unwrap_or("-"), 16)
                    .map_err(|_| format!("{name}: not 64 hex digits"))?;
            }
            Ok(out)
        };
        let table = base64::engine::general_purpose::STANDARD
            .decode(stub.frames.as_bytes())
            .map_err(|e| format!("frames: {e}"))?;
        if !table.len().is_multiple_of(FRAME_ENTRY_LEN)
            || (table.len() / FRAME_ENTRY_LEN) as u64 != stub.records
        {
            return Err(format!(
                "frames: {} bytes for {} records",
                table.len(),
                stub.records
            ));
        }
        let mut frames = Vec::with_capacity(table.len() / FRAME_ENTRY_LEN);
        let mut end = SEGMENT_HEADER_LEN;
        for entry in table.chunks_exact(FRAME_ENTRY_LEN) {
            let u64_at = |i: usize| u64::from_be_bytes(entry[i..i + 8].try_into().unwrap_or_default());
            let mut leaf_hash = [0u8; 32];
            leaf_hash.copy_from_slice(&entry[16..]);
            let f = FrameEntry {
                offset: u64_at(0),
                len: u64_at(8),
                leaf_hash,
            };
            if f.offset != end || f.len == 0 || f.len > super::record::MAX_BODY_LEN + 16 {
                return Err(format!(
                    "frames: entry at offset {} does not follow the one before",
                    f.offset
                ));
            }
            end = f.offset + f.len;
            frames.push(f);
        }
        if frames.is_empty() || end != stub.segment_len {
            return Err("frames: the table does not cover the segment".into());
        }
        Ok(EvictedSegment {
            first_seq: stub.segment,
            receipt_seq: stub.receipt_seq,
            receipt: OffloadReceipt {
                segment: stub.segment,
                segment_len: stub.segment_len,
                segment_hash: hash32("segment_blake3", &stub.segment_blake3)?,
                retain_until: stub.retain_until,
                bucket: stub.bucket,
                key: stub.key,
                version_id: stub.version_id,
            },
            last_chain: hash32("last_chain", &stub.last_chain)?,
            receipts: stub.receipts,
            frames,
        })
    }

    /// Reads the stub at `path`.
    pub fn read(path: &Path) -> Result<EvictedSegment> {
        let len = std::fs::metadata(path).at(path)?.len();
        if len > MAX_STUB_LEN {
            return Err(Error::Format {
                path: path.to_path_buf(),
                reason: format!("a stub of {len} bytes is larger than any stub is"),
            });
        }
        let bytes = std::fs::read(path).at(path)?;
        let stub = EvictedSegment::decode(&bytes).map_err(|reason| Error::Format {
            path: path.to_path_buf(),
            reason,
        })?;
        let named =
            path.file_name().and_then(|n| n.to_str()) == Some(stub_file_name(stub.first_seq).as_str());
        if !named {
            return Err(Error::Format {
                path: path.to_path_buf(),
                reason: format!("the stub describes segment {}, not this name's", stub.first_seq),
            });
        }
        Ok(stub)
    }

    /// Replaces the local file of this segment by its stub: the stub is written to a
    /// temporary file, fsynced and renamed into place (and the directory fsynced) before
    /// the segment file is removed. The caller has checked the bucket's copy.
    pub fn evict(&self, log_dir: &Path) -> Result<()> {
        use std::io::Write;
        let stub = log_dir.join(stub_file_name(self.first_seq));
        let tmp = stub.with_extension("evicted.tmp");
        let mut file = std::fs::File::create(&tmp).at(&tmp)?;
        file.write_all(&self.encode()).at(&tmp)?;
        file.sync_all().at(&tmp)?;
        drop(file);
        std::fs::rename(&tmp, &stub).at(&stub)?;
        sync_dir(log_dir)?;
        let segment = log_dir.join(segment_file_name(self.first_seq));
        std::fs::remove_file(&segment).at(&segment)?;
        sync_dir(log_dir)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Where a segment's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentSource {
    /// The segment file (`…seg`).
    Local(PathBuf),
    /// Its stub (`…evicted`): the bytes are in object storage.
    Evicted(PathBuf),
}

/// Every segment of a log directory, local or evicted, by first seq. Where both a file and
/// a stub exist (an eviction stopped between the two steps) the file is used.
pub fn list_log(log_dir: &Path) -> Result<Vec<(u64, SegmentSource)>> {
    let mut out: Vec<(u64, SegmentSource)> = list_segments(log_dir)?
        .into_iter()
        .map(|(n, p)| (n, SegmentSource::Local(p)))
        .collect();
    for (n, stub) in list_stubs(log_dir)? {
        if out.iter().all(|(m, _)| *m != n) {
            out.push((n, SegmentSource::Evicted(stub)));
        }
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// The stubs of a log directory, by first seq (files misnamed are not stubs).
pub fn list_stubs(log_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = numbered_files(log_dir, ".evicted")?
        .into_iter()
        .filter_map(|(n, path)| Some((n?, path)))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stub_reads_back_and_a_table_that_does_not_tile_the_segment_is_refused() {
        let stub = EvictedSegment {
            first_seq: 7,
            receipt_seq: 40,
            receipt: OffloadReceipt {
                segment: 7,
                segment_len: 16 + 100 + 50,
                segment_hash: [3; 32],
                retain_until: 4_000_000_000,
                bucket: "b".into(),
                key: "p/o/log/00000000000000000007.seg".into(),
                version_id: "v1".into(),
            },
            last_chain: [9; 32],
            receipts: vec![(1, 30)],
            frames: vec![
                FrameEntry {
                    offset: 16,
                    len: 100,
                    leaf_hash: [1; 32],
                },
                FrameEntry {
                    offset: 116,
                    len: 50,
                    leaf_hash: [2; 32],
                },
            ],
        };
        let bytes = stub.encode();
        assert_eq!(EvictedSegment::decode(&bytes).unwrap(), stub);
        assert_eq!(stub.frame(8).unwrap().offset, 116);
        assert!(stub.frame(9).is_none() && stub.frame(6).is_none());
        let mut short = stub.clone();
        short.receipt.segment_len += 1;
        assert!(EvictedSegment::decode(&short.encode()).is_err());
        let mut gap = stub.clone();
        gap.frames[1].offset += 1;
        gap.receipt.segment_len += 1;
        assert!(EvictedSegment::decode(&gap.encode()).is_err());
    }
}
