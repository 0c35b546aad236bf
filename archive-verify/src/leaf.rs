//! Leaves: the bytes the blake3 chain and the Merkle tree commit to, one per record
//! (docs/FORMAT.md §Leaf). The frames that carry leaves on disk are archive-core's business; a
//! verifier needs only leaves.

use crate::envelope::{Cursor, Envelope};
use crate::Result;

/// Version byte at the start of every leaf.
pub const LEAF_VERSION: u8 = 1;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// A delivered message: envelope and the raw bytes.
    Message = 1,
    /// A later delivery of bytes already stored: envelope and a reference to the content.
    Arrival = 2,
    /// An access event.
    Audit = 3,
    /// A signed tree head over every record before it.
    Checkpoint = 4,
    /// A zstd dictionary that later message payloads are compressed with.
    Dictionary = 5,
    /// A receipt: a sealed segment is stored in WORM object storage (S3 Object Lock).
    Offload = 6,
}

impl RecordKind {
    /// The kind for a kind byte.
    pub fn from_byte(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::Message,
            2 => RecordKind::Arrival,
            3 => RecordKind::Audit,
            4 => RecordKind::Checkpoint,
            5 => RecordKind::Dictionary,
            6 => RecordKind::Offload,
            _ => return None,
        })
    }

    /// Lower-case name, as printed by `mailvault log`.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Message => "message",
            RecordKind::Arrival => "arrival",
            RecordKind::Audit => "audit",
            RecordKind::Checkpoint => "checkpoint",
            RecordKind::Dictionary => "dictionary",
            RecordKind::Offload => "offload",
        }
    }
}

/// What a leaf commits to beyond seq and time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafBody {
    /// See [`RecordKind::Message`]; `envelope` is the canonical envelope encoding.
    Message {
        content_hash: [u8; 32],
        content_len: u64,
        envelope: Vec<u8>,
    },
    /// See [`RecordKind::Arrival`]; `first_seq` is the message record holding the bytes.
    Arrival {
        content_hash: [u8; 32],
        content_len: u64,
        first_seq: u64,
        envelope: Vec<u8>,
    },
    /// See [`RecordKind::Audit`]; the event as JSON.
    Audit { event: Vec<u8> },
    /// See [`RecordKind::Checkpoint`]; the signed note text.
    Checkpoint { note: Vec<u8> },
    /// See [`RecordKind::Dictionary`]; blake3 and length of the dictionary bytes (the payload).
    Dictionary {
        content_hash: [u8; 32],
        content_len: u64,
    },
    /// See [`RecordKind::Offload`].
    Offload(OffloadReceipt),
}

/// Longest bucket name, object key and version id an offload leaf may carry (S3 allows 63,
/// 1024 and, in practice, well under 1024 bytes).
pub const OFFLOAD_NAME_MAX: usize = 1024;

/// Where a sealed segment was stored, and under which retention: the body of an offload leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffloadReceipt {
    /// The segment's number: the seq of its first record (its file name).
    pub segment: u64,
    /// The segment file's length in bytes.
    pub segment_len: u64,
    /// BLAKE3 of the whole segment file.
    pub segment_hash: [u8; 32],
    /// The object's COMPLIANCE retain-until date, seconds since the Unix epoch (UTC).
    pub retain_until: i64,
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The object version the upload created (empty if the store reported none).
    pub version_id: String,
}

impl OffloadReceipt {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.segment.to_be_bytes());
        out.extend_from_slice(&self.segment_len.to_be_bytes());
        out.extend_from_slice(&self.segment_hash);
        out.extend_from_slice(&self.retain_until.to_be_bytes());
        for text in [&self.bucket, &self.key, &self.version_id] {
            out.extend_from_slice(&(text.len() as u32).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }

    fn decode(r: &mut Cursor) -> Result<OffloadReceipt> {
        let segment = r.u64()?;
        let segment_len = r.u64()?;
        let segment_hash = r.hash()?;
        let retain_until = r.u64()? as i64;
        let mut name = |field: &str| -> Result<String> {
            let text = r.text()?;
            if text.len() > OFFLOAD_NAME_MAX {
                return Err(r.malformed(format!("offload {field} longer than {OFFLOAD_NAME_MAX}")));
            }
            Ok(text)
        };
        let bucket = name("bucket")?;
        let key = name("key")?;
        let version_id = name("version id")?;
        Ok(OffloadReceipt {
            segment,
            segment_len,
            segment_hash,
            retain_until,
            bucket,
            key,
            version_id,
        })
    }
}

/// The hashed part of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Sequence number: 1 for the first record, +1 for each after. Leaf index is `seq - 1`.
    pub seq: u64,
    /// Receive time, microseconds since the Unix epoch (UTC); never decreases along the log.
    pub time_us: i64,
    /// Kind-specific content.
    pub body: LeafBody,
}

impl Leaf {
    /// The record kind of this leaf.
    pub fn kind(&self) -> RecordKind {
        match self.body {
            LeafBody::Message { .. } => RecordKind::Message,
            LeafBody::Arrival { .. } => RecordKind::Arrival,
            LeafBody::Audit { .. } => RecordKind::Audit,
            LeafBody::Checkpoint { .. } => RecordKind::Checkpoint,
            LeafBody::Dictionary { .. } => RecordKind::Dictionary,
            LeafBody::Offload(_) => RecordKind::Offload,
        }
    }

    /// Content hash and length for message and arrival records.
    pub fn content(&self) -> Option<([u8; 32], u64)> {
        match &self.body {
            LeafBody::Message {
                content_hash,
                content_len,
                ..
            }
            | LeafBody::Arrival {
                content_hash,
                content_len,
                ..
            } => Some((*content_hash, *content_len)),
            _ => None,
        }
    }

    /// The decoded envelope of message and arrival records.
    pub fn envelope(&self) -> Option<Result<Envelope>> {
        match &self.body {
            LeafBody::Message { envelope, .. } | LeafBody::Arrival { envelope, .. } => {
                Some(Envelope::decode(envelope))
            }
            _ => None,
        }
    }

    /// The leaf bytes: what the chain and the Merkle tree hash.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.push(LEAF_VERSION);
        out.push(self.kind() as u8);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_us.to_be_bytes());
        match &self.body {
            LeafBody::Message {
                content_hash,
                content_len,
                envelope,
            } => {
                out.extend_from_slice(content_hash);
                out.extend_from_slice(&content_len.to_be_bytes());
                out.extend_from_slice(envelope);
            }
            LeafBody::Arrival {
                content_hash,
                content_len,
                first_seq,
                envelope,
            } => {
                out.extend_from_slice(content_hash);
                out.extend_from_slice(&content_len.to_be_bytes());
                out.extend_from_slice(&first_seq.to_be_bytes());
                out.extend_from_slice(envelope);
            }
            LeafBody::Audit { event } => out.extend_from_slice(event),
            LeafBody::Checkpoint { note } => out.extend_from_slice(note),
            LeafBody::Dictionary {
                content_hash,
                content_len,
            } => {
                out.extend_from_slice(content_hash);
                out.extend_from_slice(&content_len.to_be_bytes());
            }
            LeafBody::Offload(receipt) => receipt.encode_into(&mut out),
        }
        out
    }

    /// Parses leaf bytes.
    pub fn decode(bytes: &[u8]) -> Result<Leaf> {
        let mut r = Cursor::new("leaf", bytes);
        let version = r.u8()?;
        if version != LEAF_VERSION {
            return Err(r.malformed(format!("unknown leaf version {version}")));
        }
        let kind_byte = r.u8()?;
        let kind = RecordKind::from_byte(kind_byte)
            .ok_or_else(|| r.malformed(format!("unknown record kind {kind_byte}")))?;
        let seq = r.u64()?;
        let time_us = r.u64()? as i64;
        let body = match kind {
            RecordKind::Message => LeafBody::Message {
                content_hash: r.hash()?,
                content_len: r.u64()?,
                envelope: r.rest().to_vec(),
            },
            RecordKind::Arrival => LeafBody::Arrival {
                content_hash: r.hash()?,
                content_len: r.u64()?,
                first_seq: r.u64()?,
                envelope: r.rest().to_vec(),
            },
            RecordKind::Audit => LeafBody::Audit {
                event: r.rest().to_vec(),
            },
            RecordKind::Checkpoint => LeafBody::Checkpoint {
                note: r.rest().to_vec(),
            },
            RecordKind::Dictionary => LeafBody::Dictionary {
                content_hash: r.hash()?,
                content_len: r.u64()?,
            },
            RecordKind::Offload => LeafBody::Offload(OffloadReceipt::decode(&mut r)?),
        };
        if !r.rest().is_empty() {
            return Err(r.malformed("trailing bytes".into()));
        }
        Ok(Leaf { seq, time_us, body })
    }
}

/// `h_n = blake3(h_{n-1} ‖ leaf_n)`, with `h_0` all zero bytes.
pub fn chain_next(prev: &[u8; 32], leaf: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_round_trips_for_every_kind() {
        let bodies = [
            LeafBody::Message {
                content_hash: [7; 32],
                content_len: 1234,
                envelope: Envelope::imported("x.eml", b"a@b").encode(),
            },
            LeafBody::Arrival {
                content_hash: [8; 32],
                content_len: 99,
                first_seq: 3,
                envelope: Envelope::default().encode(),
            },
            LeafBody::Audit {
                event: br#"{"action":"login"}"#.to_vec(),
            },
            LeafBody::Checkpoint {
                note: b"origin\n1\nAAAA\n".to_vec(),
            },
            LeafBody::Offload(OffloadReceipt {
                segment: 1,
                segment_len: 4096,
                segment_hash: [9; 32],
                retain_until: 1_900_000_000,
                bucket: "archive".into(),
                key: "mv/00000000000000000001.seg".into(),
                version_id: "v1".into(),
            }),
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            let leaf = Leaf {
                seq: i as u64 + 1,
                time_us: 1_700_000_000_000_000,
                body,
            };
            assert_eq!(Leaf::decode(&leaf.encode()).unwrap(), leaf);
        }
    }

    #[test]
    fn an_offload_leaf_with_trailing_bytes_or_a_huge_name_is_refused() {
        let leaf = Leaf {
            seq: 9,
            time_us: 0,
            body: LeafBody::Offload(OffloadReceipt {
                segment: 1,
                segment_len: 1,
                segment_hash: [0; 32],
                retain_until: 0,
                bucket: "b".into(),
                key: "k".into(),
                version_id: String::new(),
            }),
        };
        let mut bytes = leaf.encode();
        bytes.push(0);
        assert!(Leaf::decode(&bytes).is_err());
        let mut long = leaf.clone();
        if let LeafBody::Offload(r) = &mut long.body {
            r.key = "k".repeat(OFFLOAD_NAME_MAX + 1);
        }
        assert!(Leaf::decode(&long.encode()).is_err());
    }
}
