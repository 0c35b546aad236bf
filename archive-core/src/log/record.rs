//! Records: the hashed leaf (what the chain and the Merkle tree commit to) and the frame that
//! carries a leaf and its payload on disk. Byte layouts are specified in docs/FORMAT.md.

pub use archive_verify::leaf::{chain_next, Leaf, LeafBody, OffloadReceipt, RecordKind, LEAF_VERSION};

use crate::{Error, Result};

/// First bytes of every frame; lets recovery tell a torn tail from damage further in.
pub const FRAME_MAGIC: [u8; 4] = *b"MVR1";
/// Bytes of the fixed frame header.
pub const FRAME_HEADER_LEN: usize = 16;
/// Bytes of a frame body before the leaf: chain hash (32) and leaf length (4).
const BODY_PREFIX_LEN: usize = 36;
/// Largest frame body the format can express.
pub const MAX_BODY_LEN: u64 = u32::MAX as u64;

/// How the payload of a frame is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// The payload is the content itself.
    Raw = 0,
    /// The payload is one zstd frame that decompresses to the content.
    Zstd = 1,
    /// The payload is the seq of a dictionary record (u64 BE) and one zstd frame compressed
    /// with that dictionary.
    ZstdDictionary = 2,
}

impl Codec {
    fn from_byte(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::ZstdDictionary),
            _ => None,
        }
    }
}

/// The fixed header of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes after the header.
    pub body_len: u32,
    /// Kind byte (must equal the leaf's kind).
    pub kind: u8,
    /// Codec byte of the payload.
    pub codec: u8,
    /// CRC-32C of header bytes 4..12 and the body.
    pub crc: u32,
}

impl FrameHeader {
    /// Parses the 16 header bytes; `None` when the magic or reserved bytes are wrong.
    pub fn parse(b: &[u8; FRAME_HEADER_LEN]) -> Option<FrameHeader> {
        if b[0..4] != FRAME_MAGIC || b[10] != 0 || b[11] != 0 {
            return None;
        }
        Some(FrameHeader {
            body_len: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            kind: b[8],
            codec: b[9],
            crc: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    /// Total frame length on disk.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.body_len)
    }
}

/// A frame's decoded body, with the CRC already checked.
#[derive(Debug)]
pub struct FrameBody<'a> {
    /// The chain hash `h_seq` stored with the record.
    pub chain: [u8; 32],
    /// The leaf bytes.
    pub leaf: &'a [u8],
    /// The payload (compressed content for messages, empty otherwise).
    pub payload: &'a [u8],
    /// How the payload is stored.
    pub codec: Codec,
}

impl FrameHeader {
    /// Checks the CRC and kind/codec bytes and splits `body` (exactly `body_len` bytes).
    pub fn open<'a>(&self, header: &[u8; FRAME_HEADER_LEN], body: &'a [u8]) -> Result<FrameBody<'a>, String> {
        let mut crc = crc32c::crc32c(&header[4..12]);
        crc = crc32c::crc32c_append(crc, body);
        if crc != self.crc {
            return Err(format!(
                "frame checksum mismatch (stored {:08x}, computed {crc:08x})",
                self.crc
            ));
        }
        let codec = Codec::from_byte(self.codec).ok_or_else(|| format!("unknown codec {}", self.codec))?;
        if RecordKind::from_byte(self.kind).is_none() {
            return Err(format!("unknown record kind {}", self.kind));
        }
        if body.len() < BODY_PREFIX_LEN {
            return Err("frame body shorter than its fixed part".into());
        }
        let mut chain = [0u8; 32];
        chain.copy_from_slice(&body[..32]);
        let leaf_len = u32::from_be_bytes([body[32], body[33], body[34], body[35]]) as usize;
        let rest = &body[BODY_PREFIX_LEN..];
        if leaf_len > rest.len() {
            return Err(format!("leaf length {leaf_len} exceeds the frame"));
        }
        let (leaf, payload) = rest.split_at(leaf_len);
        Ok(FrameBody {
            chain,
            leaf,
            payload,
            codec,
        })
    }
}

/// Builds a complete frame: header, chain hash, leaf, payload.
pub fn encode_frame(
    kind: RecordKind,
    codec: Codec,
    chain: &[u8; 32],
    leaf: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>> {
    let body_len = BODY_PREFIX_LEN as u64 + leaf.len() as u64 + payload.len() as u64;
    if body_len > MAX_BODY_LEN {
        return Err(Error::TooLarge {
            what: "record",
            size: body_len,
            limit: MAX_BODY_LEN,
        });
    }
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body_len as usize);
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.push(kind as u8);
    out.push(codec as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.extend_from_slice(chain);
    out.extend_from_slice(&(leaf.len() as u32).to_be_bytes());
    out.extend_from_slice(leaf);
    out.extend_from_slice(payload);
    let mut crc = crc32c::crc32c(&out[4..12]);
    crc = crc32c::crc32c_append(crc, &out[FRAME_HEADER_LEN..]);
    out[12..16].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_detects_any_flipped_bit() {
        let frame = encode_frame(RecordKind::Audit, Codec::Raw, &[1; 32], b"leafbytes", b"").unwrap();
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x10;
            let mut h = [0u8; FRAME_HEADER_LEN];
            h.copy_from_slice(&bad[..FRAME_HEADER_LEN]);
            let ok = FrameHeader::parse(&h)
                .filter(|fh| fh.frame_len() == bad.len() as u64)
                .map(|fh| fh.open(&h, &bad[FRAME_HEADER_LEN..]).is_ok())
                .unwrap_or(false);
            assert!(!ok, "flip at byte {i} went unnoticed");
        }
    }
}
