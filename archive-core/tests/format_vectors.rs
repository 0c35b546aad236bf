//! The on-disk format of docs/FORMAT.md against the test vectors in fixtures/vectors/.
//!
//! Every vector is checked twice: the implementation must reproduce it byte for byte, and an
//! independent re-derivation written here from FORMAT.md alone (sha2, blake3, crc32c and
//! ed25519-dalek called directly, frames parsed by hand) must agree with it too. So neither the
//! code nor the document can drift from the vectors without a test failing.
//!
//! Regenerate the vectors with `cargo run -p archive-core --example format_vectors --
//! fixtures/vectors` (except rfc6962.json, which is published reference data).

use std::path::{Path, PathBuf};

use archive_core::log::checkpoint::{Checkpoint, LogKey, VerifierKey};
use archive_core::log::evicted::EvictedSegment;
use archive_core::log::merkle::{
    empty_root, leaf_hash, stored_hash_count, stored_hash_index, verify_consistency, verify_inclusion,
    HashSource, MemoryTree,
};
use archive_core::log::record::{
    chain_next, encode_frame, Codec, FrameHeader, Leaf, LeafBody, RecordKind, FRAME_HEADER_LEN,
};
use archive_core::log::segment::{segment_file_name, segment_header};
use archive_core::log::tree::{TreeFile, TreeFileReader};
use archive_core::verify::verify_log;
use archive_core::{Envelope, Recipient, Store, StoreConfig};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

// ── Loading ─────────────────────────────────────────────────────────────────────────────────

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/vectors")
}

fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).expect("hex")
}

fn h32(v: &Value) -> [u8; 32] {
    hx(v).try_into().expect("32 bytes")
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}"))
}

fn hashes(v: &Value) -> Vec<[u8; 32]> {
    arr(v).iter().map(h32).collect()
}

/// The vector log's records (leaves.json), in seq order.
fn records() -> Vec<Value> {
    arr(&load("leaves.json")["records"]).clone()
}

fn leaf_bytes() -> Vec<Vec<u8>> {
    records().iter().map(|r| hx(&r["leaf_hex"])).collect()
}

// ── FORMAT.md, re-implemented independently ─────────────────────────────────────────────────

mod spec {
    use super::*;

    pub fn be32(n: usize) -> [u8; 4] {
        u32::try_from(n).expect("fits in u32").to_be_bytes()
    }

    pub fn lv(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&be32(b.len()));
        out.extend_from_slice(b);
    }

    /// Envelope encoding, from the JSON fields of envelopes.json.
    pub fn envelope(v: &Value) -> Vec<u8> {
        let mut out = vec![0x01];
        lv(&mut out, &hx(&v["mail_from_hex"]));
        lv(&mut out, &hx(&v["mail_params_hex"]));
        let rcpts = arr(&v["rcpt_to"]);
        out.extend_from_slice(&be32(rcpts.len()));
        for r in rcpts {
            lv(&mut out, &hx(&r["address_hex"]));
            lv(&mut out, &hx(&r["params_hex"]));
        }
        let originals = arr(&v["original_recipients_hex"]);
        out.extend_from_slice(&be32(originals.len()));
        for o in originals {
            lv(&mut out, &hx(o));
        }
        for field in ["protocol", "client", "helo", "tls", "source"] {
            lv(&mut out, text(&v[field]).as_bytes());
        }
        out
    }

    /// Leaf encoding, from the JSON fields of leaves.json.
    pub fn leaf(r: &Value) -> Vec<u8> {
        let kind = match text(&r["kind"]) {
            "message" => 1u8,
            "arrival" => 2,
            "audit" => 3,
            "checkpoint" => 4,
            "dictionary" => 5,
            k => panic!("unknown kind {k}"),
        };
        let mut out = vec![0x01, kind];
        out.extend_from_slice(&num(&r["seq"]).to_be_bytes());
        out.extend_from_slice(&r["time_us"].as_i64().expect("i64").to_be_bytes());
        match kind {
            1 | 2 => {
                out.extend_from_slice(&hx(&r["content_hash_hex"]));
                out.extend_from_slice(&num(&r["content_len"]).to_be_bytes());
                if kind == 2 {
                    out.extend_from_slice(&num(&r["first_seq"]).to_be_bytes());
                }
                out.extend_from_slice(&hx(&r["envelope_hex"]));
            }
            3 => out.extend_from_slice(text(&r["event"]).as_bytes()),
            4 => out.extend_from_slice(text(&r["note"]).as_bytes()),
            _ => {
                out.extend_from_slice(&hx(&r["content_hash_hex"]));
                out.extend_from_slice(&num(&r["content_len"]).to_be_bytes());
            }
        }
        out
    }

    /// Offload (6) leaf, from the JSON fields of offload.json's `record`.
    pub fn offload_leaf(r: &Value) -> Vec<u8> {
        let mut out = vec![0x01, 6];
        out.extend_from_slice(&num(&r["seq"]).to_be_bytes());
        out.extend_from_slice(&r["time_us"].as_i64().expect("i64").to_be_bytes());
        out.extend_from_slice(&num(&r["segment"]).to_be_bytes());
        out.extend_from_slice(&num(&r["segment_len"]).to_be_bytes());
        out.extend_from_slice(&hx(&r["segment_blake3_hex"]));
        out.extend_from_slice(&r["retain_until"].as_i64().expect("i64").to_be_bytes());
        for name in ["bucket", "key", "version_id"] {
            lv(&mut out, text(&r[name]).as_bytes());
        }
        out
    }

    pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0x00]);
        h.update(leaf);
        h.finalize().into()
    }

    pub fn node_hash(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0x01]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    }

    /// Largest power of two strictly smaller than n (n >= 2).
    fn k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// RFC 6962 MTH over leaf hashes.
    pub fn mth(d: &[[u8; 32]]) -> [u8; 32] {
        match d.len() {
            0 => Sha256::digest([]).into(),
            1 => d[0],
            n => node_hash(&mth(&d[..k(n)]), &mth(&d[k(n)..])),
        }
    }

    /// RFC 6962 PATH(m, D[n]).
    pub fn path(m: usize, d: &[[u8; 32]]) -> Vec<[u8; 32]> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = k(n);
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    /// RFC 6962 PROOF(m, D[n]).
    pub fn consistency(m: usize, d: &[[u8; 32]]) -> Vec<[u8; 32]> {
        fn subproof(m: usize, d: &[[u8; 32]], b: bool) -> Vec<[u8; 32]> {
            let n = d.len();
            if m == n {
                return if b { vec![] } else { vec![mth(d)] };
            }
            let k = k(n);
            if m <= k {
                let mut p = subproof(m, &d[..k], b);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = subproof(m - k, &d[k..], false);
                p.push(mth(&d[..k]));
                p
            }
        }
        if m == 0 || m == d.len() {
            return vec![];
        }
        subproof(m, d, true)
    }

    /// The tree.hashes order: after leaf i's hash, the hashes of the subtrees it completes,
    /// bottom-up. Returns (level, index, hash) in file order.
    pub fn post_order(d: &[[u8; 32]]) -> Vec<(u32, u64, [u8; 32])> {
        let mut out = Vec::new();
        let mut stack: Vec<(u32, u64, [u8; 32])> = Vec::new();
        for (i, leaf) in d.iter().enumerate() {
            let mut cur = (0u32, i as u64, *leaf);
            out.push(cur);
            while let Some(&(level, index, hash)) = stack.last() {
                if level != cur.0 {
                    break;
                }
                stack.pop();
                cur = (level + 1, index / 2, node_hash(&hash, &cur.2));
                out.push(cur);
            }
            stack.push(cur);
        }
        out
    }

    pub fn blake3_chain(prev: &[u8; 32], leaf: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(prev);
        h.update(leaf);
        h.finalize().into()
    }

    #[derive(Debug)]
    pub struct Frame {
        pub body_len: u32,
        pub kind: u8,
        pub codec: u8,
        pub crc: u32,
        pub chain: [u8; 32],
        pub leaf: Vec<u8>,
        pub payload: Vec<u8>,
    }

    /// Parses one frame that spans all of `b`, checking everything FORMAT.md says a reader checks.
    pub fn frame(b: &[u8]) -> Result<Frame, String> {
        if b.len() < 16 {
            return Err("shorter than the header".into());
        }
        if &b[0..4] != b"MVR1" {
            return Err("bad magic".into());
        }
        let body_len = u32::from_be_bytes(b[4..8].try_into().unwrap());
        if 16 + body_len as usize != b.len() {
            return Err(format!(
                "body_len {body_len} but {} bytes after the header",
                b.len() - 16
            ));
        }
        let (kind, codec) = (b[8], b[9]);
        if b[10] != 0 || b[11] != 0 {
            return Err("reserved bytes not zero".into());
        }
        let crc = u32::from_be_bytes(b[12..16].try_into().unwrap());
        let mut covered = b[4..12].to_vec();
        covered.extend_from_slice(&b[16..]);
        if crc32c::crc32c(&covered) != crc {
            return Err("CRC-32C mismatch".into());
        }
        if !(1..=6).contains(&kind) || codec > 2 {
            return Err("unknown kind or codec".into());
        }
        if body_len < 36 {
            return Err("body shorter than chain + leaf length".into());
        }
        let chain: [u8; 32] = b[16..48].try_into().unwrap();
        let leaf_len = u32::from_be_bytes(b[48..52].try_into().unwrap()) as usize;
        if 52 + leaf_len > b.len() {
            return Err("leaf runs past the frame".into());
        }
        Ok(Frame {
            body_len,
            kind,
            codec,
            crc,
            chain,
            leaf: b[52..52 + leaf_len].to_vec(),
            payload: b[52 + leaf_len..].to_vec(),
        })
    }

    /// Splits the frames of a segment file (after its 16-byte header).
    pub fn split_segment(file: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut at = 16;
        while at < file.len() {
            let len = 16 + u32::from_be_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
            frames.push(file[at..at + len].to_vec());
            at += len;
        }
        assert_eq!(at, file.len(), "segment ends inside a frame");
        frames
    }
}

// ── Envelopes ───────────────────────────────────────────────────────────────────────────────

fn envelope_from(v: &Value) -> Envelope {
    Envelope {
        mail_from: hx(&v["mail_from_hex"]),
        mail_params: hx(&v["mail_params_hex"]),
        rcpt_to: arr(&v["rcpt_to"])
            .iter()
            .map(|r| Recipient {
                address: hx(&r["address_hex"]),
                params: hx(&r["params_hex"]),
            })
            .collect(),
        original_recipients: arr(&v["original_recipients_hex"]).iter().map(hx).collect(),
        protocol: text(&v["protocol"]).into(),
        client: text(&v["client"]).into(),
        helo: text(&v["helo"]).into(),
        tls: text(&v["tls"]).into(),
        source: text(&v["source"]).into(),
    }
}

#[test]
fn envelope_encodings() {
    let doc = load("envelopes.json");
    let vectors = arr(&doc["vectors"]);
    assert!(vectors.len() >= 4);
    for v in vectors {
        let name = text(&v["name"]);
        let expected = hx(&v["encoding_hex"]);
        assert_eq!(spec::envelope(v), expected, "{name}: independent encoding");
        let env = envelope_from(v);
        assert_eq!(env.encode(), expected, "{name}: Envelope::encode");
        assert_eq!(
            Envelope::decode(&expected).unwrap(),
            env,
            "{name}: Envelope::decode"
        );
    }
}

// ── Leaves ──────────────────────────────────────────────────────────────────────────────────

fn leaf_from(r: &Value) -> Leaf {
    let body = match text(&r["kind"]) {
        "message" => LeafBody::Message {
            content_hash: h32(&r["content_hash_hex"]),
            content_len: num(&r["content_len"]),
            envelope: hx(&r["envelope_hex"]),
        },
        "arrival" => LeafBody::Arrival {
            content_hash: h32(&r["content_hash_hex"]),
            content_len: num(&r["content_len"]),
            first_seq: num(&r["first_seq"]),
            envelope: hx(&r["envelope_hex"]),
        },
        "audit" => LeafBody::Audit {
            event: text(&r["event"]).as_bytes().to_vec(),
        },
        "checkpoint" => LeafBody::Checkpoint {
            note: text(&r["note"]).as_bytes().to_vec(),
        },
        "dictionary" => LeafBody::Dictionary {
            content_hash: h32(&r["content_hash_hex"]),
            content_len: num(&r["content_len"]),
        },
        k => panic!("unknown kind {k}"),
    };
    Leaf {
        seq: num(&r["seq"]),
        time_us: r["time_us"].as_i64().expect("i64"),
        body,
    }
}

#[test]
fn leaf_encodings_and_hashes() {
    let doc = load("leaves.json");
    let envelopes = load("envelopes.json");
    let envelope_hex = |name: &str| {
        arr(&envelopes["vectors"])
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| hx(&v["encoding_hex"]))
            .unwrap_or_else(|| panic!("no envelope {name}"))
    };
    let records = arr(&doc["records"]);
    let mut kinds = std::collections::BTreeSet::new();
    let all = records.iter().chain(arr(&doc["extra"]));
    for r in all {
        let seq = num(&r["seq"]);
        let leaf = hx(&r["leaf_hex"]);
        kinds.insert(text(&r["kind"]).to_string());
        assert_eq!(spec::leaf(r), leaf, "seq {seq}: independent encoding");
        let parsed = leaf_from(r);
        assert_eq!(parsed.encode(), leaf, "seq {seq}: Leaf::encode");
        assert_eq!(Leaf::decode(&leaf).unwrap(), parsed, "seq {seq}: Leaf::decode");
        // Fixed prefix: version, kind, seq, time.
        assert_eq!(leaf[0], 1);
        assert_eq!(u64::from(leaf[1]), num(&r["kind_byte"]));
        assert_eq!(u64::from_be_bytes(leaf[2..10].try_into().unwrap()), seq);
        assert_eq!(
            i64::from_be_bytes(leaf[10..18].try_into().unwrap()),
            r["time_us"].as_i64().unwrap()
        );
        let lh = h32(&r["leaf_hash_hex"]);
        assert_eq!(spec::leaf_hash(&leaf), lh, "seq {seq}: SHA-256(0x00 || leaf)");
        assert_eq!(leaf_hash(&leaf), lh, "seq {seq}: merkle::leaf_hash");
        if let Some(name) = r["envelope"].as_str() {
            assert_eq!(
                hx(&r["envelope_hex"]),
                envelope_hex(name),
                "seq {seq}: envelope {name}"
            );
        }
        if r["kind"] == "dictionary" {
            assert_eq!(
                leaf.len(),
                58,
                "seq {seq}: a dictionary leaf has no variable part"
            );
        }
        if r["kind"] == "message" || r["kind"] == "dictionary" {
            let content = hx(&r["content_hex"]);
            assert_eq!(*blake3::hash(&content).as_bytes(), h32(&r["content_hash_hex"]));
            assert_eq!(content.len() as u64, num(&r["content_len"]));
        }
        if r["kind"] == "arrival" {
            let first = &records[num(&r["first_seq"]) as usize - 1];
            assert_eq!(first["kind"], "message");
            assert_eq!(first["content_hash_hex"], r["content_hash_hex"]);
            assert_eq!(first["content_len"], r["content_len"]);
        }
    }
    assert_eq!(kinds.len(), 5, "every kind has a vector");
    // Seqs are 1, 2, 3, … and times never decrease.
    for (i, r) in records.iter().enumerate() {
        assert_eq!(num(&r["seq"]), i as u64 + 1);
        if i > 0 {
            assert!(r["time_us"].as_i64() >= records[i - 1]["time_us"].as_i64());
        }
    }
}

// ── Chain ───────────────────────────────────────────────────────────────────────────────────

#[test]
fn blake3_chain() {
    let doc = load("chain.json");
    let h0 = h32(&doc["h0_hex"]);
    assert_eq!(h0, [0u8; 32]);
    let chain = arr(&doc["chain"]);
    let leaves = leaf_bytes();
    assert_eq!(chain.len(), leaves.len());
    assert!(chain.len() >= 5);
    let (mut ours, mut theirs) = (h0, h0);
    for (c, leaf) in chain.iter().zip(&leaves) {
        ours = spec::blake3_chain(&ours, leaf);
        theirs = chain_next(&theirs, leaf);
        let expected = h32(&c["chain_hex"]);
        assert_eq!(ours, expected, "seq {}: blake3(h_prev || leaf)", c["seq"]);
        assert_eq!(theirs, expected, "seq {}: chain_next", c["seq"]);
    }
}

// ── Frames ──────────────────────────────────────────────────────────────────────────────────

#[test]
fn frames_parse_by_hand_and_encode_identically() {
    let doc = load("frames.json");
    let chain = load("chain.json");
    let records = records();
    let frames = arr(&doc["frames"]);
    assert_eq!(frames.len(), records.len());
    for (i, f) in frames.iter().enumerate() {
        let seq = num(&f["seq"]);
        assert_eq!(seq, i as u64 + 1);
        let bytes = hx(&f["frame_hex"]);
        let p = spec::frame(&bytes).unwrap_or_else(|e| panic!("seq {seq}: {e}"));
        assert_eq!(u64::from(p.body_len), num(&f["body_len"]), "seq {seq}");
        assert_eq!(p.crc.to_be_bytes().to_vec(), hx(&f["crc32c_hex"]), "seq {seq}");
        assert_eq!(u64::from(p.kind), num(&f["kind_byte"]), "seq {seq}");
        assert_eq!(u64::from(p.codec), num(&f["codec"]), "seq {seq}");
        assert_eq!(p.codec, 0, "seq {seq}: vector frames are raw");
        assert_eq!(p.chain, h32(&chain["chain"][i]["chain_hex"]), "seq {seq}: chain");
        assert_eq!(p.chain, h32(&f["chain_hex"]), "seq {seq}: chain");
        assert_eq!(p.leaf, hx(&records[i]["leaf_hex"]), "seq {seq}: leaf");
        assert_eq!(p.leaf.len() as u64, num(&f["leaf_len"]), "seq {seq}");
        assert_eq!(p.leaf[1], p.kind, "seq {seq}: frame kind = leaf kind");
        assert_eq!(p.payload, hx(&f["payload_hex"]), "seq {seq}: payload");
        if records[i]["kind"] == "message" || records[i]["kind"] == "dictionary" {
            assert_eq!(
                p.payload,
                hx(&records[i]["content_hex"]),
                "seq {seq}: raw payload is the content"
            );
        } else {
            assert!(
                p.payload.is_empty(),
                "seq {seq}: only messages and dictionaries carry a payload"
            );
        }

        let kind = RecordKind::from_byte(p.kind).unwrap();
        let encoded = encode_frame(kind, Codec::Raw, &p.chain, &p.leaf, &p.payload).unwrap();
        assert_eq!(encoded, bytes, "seq {seq}: encode_frame");
        let header: [u8; FRAME_HEADER_LEN] = bytes[..FRAME_HEADER_LEN].try_into().unwrap();
        let fh = FrameHeader::parse(&header).expect("header parses");
        assert_eq!(fh.frame_len(), bytes.len() as u64);
        let body = fh.open(&header, &bytes[FRAME_HEADER_LEN..]).expect("frame opens");
        assert_eq!(
            (body.chain, body.leaf, body.payload),
            (p.chain, &p.leaf[..], &p.payload[..])
        );
        assert_eq!(body.codec, Codec::Raw);
    }
    // A frame of every kind is present.
    for kind in ["message", "arrival", "audit", "checkpoint", "dictionary"] {
        assert!(frames.iter().any(|f| f["kind"] == kind), "{kind} frame");
    }
}

#[test]
fn compressed_frames_decompress_to_their_content() {
    let doc = load("frames.json");
    let records = records();
    for (name, codec) in [("zstd_frame", 1u8), ("zstd_dictionary_frame", 2)] {
        let z = &doc[name];
        let seq = num(&z["seq"]);
        let record = &records[seq as usize - 1];
        let bytes = hx(&z["frame_hex"]);
        let p = spec::frame(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((p.kind, p.codec), (1, codec), "{name}");
        assert_eq!(u64::from(p.codec), num(&z["codec"]), "{name}");
        assert_eq!(p.leaf, hx(&record["leaf_hex"]), "{name}");
        assert_eq!(p.chain, h32(&z["chain_hex"]), "{name}");
        assert_eq!(
            p.chain,
            spec::blake3_chain(
                &h32(&load("chain.json")["chain"][seq as usize - 2]["chain_hex"]),
                &p.leaf
            ),
            "{name}"
        );
        let content = if codec == 1 {
            zstd::stream::decode_all(&p.payload[..]).expect("a zstd frame")
        } else {
            // u64 seq of a dictionary record, then a zstd frame made with its bytes.
            let dict_seq = u64::from_be_bytes(p.payload[..8].try_into().unwrap());
            assert_eq!(dict_seq, num(&z["dictionary_seq"]));
            let dict = &records[dict_seq as usize - 1];
            assert_eq!(dict["kind"], "dictionary");
            assert!(dict_seq < seq, "a dictionary precedes its use");
            let mut d = zstd::bulk::Decompressor::with_dictionary(&hx(&dict["content_hex"])).unwrap();
            d.decompress(&p.payload[8..], num(&record["content_len"]) as usize)
                .expect("decompresses with the dictionary")
        };
        assert_eq!(content, hx(&z["content_hex"]), "{name}");
        assert_eq!(content, hx(&record["content_hex"]), "{name}");
        // The content hash is over the raw bytes, never the compressed ones.
        assert_eq!(
            *blake3::hash(&content).as_bytes(),
            h32(&record["content_hash_hex"])
        );
        assert_ne!(
            *blake3::hash(&p.payload).as_bytes(),
            h32(&record["content_hash_hex"])
        );
        let header: [u8; FRAME_HEADER_LEN] = bytes[..FRAME_HEADER_LEN].try_into().unwrap();
        let body = FrameHeader::parse(&header)
            .unwrap()
            .open(&header, &bytes[FRAME_HEADER_LEN..])
            .expect("opens");
        assert_eq!(body.codec as u8, codec);
    }
}

// ── Merkle tree ─────────────────────────────────────────────────────────────────────────────

#[test]
fn merkle_roots_and_proofs() {
    let doc = load("merkle.json");
    let leaves = leaf_bytes();
    let lh: Vec<[u8; 32]> = leaves.iter().map(|l| spec::leaf_hash(l)).collect();
    assert_eq!(lh, hashes(&doc["leaf_hashes_hex"]));
    let mut tree = MemoryTree::default();
    for l in &leaves {
        tree.push_leaf(l);
    }
    let roots = arr(&doc["roots"]);
    assert_eq!(roots.len(), 11, "sizes 0..=10");
    for r in roots {
        let size = num(&r["size"]) as usize;
        let root = h32(&r["root_hex"]);
        assert_eq!(spec::mth(&lh[..size]), root, "size {size}: MTH");
        assert_eq!(
            tree.root(size as u64).unwrap(),
            root,
            "size {size}: HashSource::root"
        );
    }
    assert_eq!(h32(&roots[0]["root_hex"]), empty_root());

    for v in arr(&doc["inclusion"]) {
        let (seq, index, size) = (num(&v["seq"]), num(&v["leaf_index"]), num(&v["tree_size"]));
        assert_eq!(index, seq - 1, "leaf index = seq - 1");
        let proof = hashes(&v["proof_hex"]);
        let root = h32(&v["root_hex"]);
        let leaf = h32(&v["leaf_hash_hex"]);
        assert_eq!(leaf, lh[index as usize]);
        assert_eq!(
            spec::path(index as usize, &lh[..size as usize]),
            proof,
            "PATH({index}, {size})"
        );
        assert_eq!(tree.inclusion_proof(index, size).unwrap(), proof);
        assert_eq!(root, spec::mth(&lh[..size as usize]));
        assert!(verify_inclusion(&leaf, index, size, &proof, &root));
        assert!(!verify_inclusion(
            &lh[(index as usize + 1) % 10],
            index,
            size,
            &proof,
            &root
        ));
    }

    for v in arr(&doc["consistency"]) {
        let (old, new) = (num(&v["old_size"]), num(&v["new_size"]));
        let proof = hashes(&v["proof_hex"]);
        let (old_root, new_root) = (h32(&v["old_root_hex"]), h32(&v["new_root_hex"]));
        assert_eq!(old_root, spec::mth(&lh[..old as usize]));
        assert_eq!(new_root, spec::mth(&lh[..new as usize]));
        assert_eq!(
            spec::consistency(old as usize, &lh[..new as usize]),
            proof,
            "PROOF({old}, {new})"
        );
        assert_eq!(tree.consistency_proof(old, new).unwrap(), proof);
        assert!(verify_consistency(old, &old_root, new, &new_root, &proof));
        assert!(!verify_consistency(old, &new_root, new, &new_root, &proof));
    }
}

#[test]
fn tree_hashes_file_layout() {
    let doc = load("merkle.json");
    let t = &doc["tree_hashes"];
    let size = num(&t["tree_size"]);
    let lh = hashes(&doc["leaf_hashes_hex"]);
    assert_eq!(size as usize, lh.len());
    let file = hx(&t["file_hex"]);
    let entries = arr(&t["entries"]);
    assert_eq!(entries.len() as u64, stored_hash_count(size));
    assert_eq!(entries.len() as u64, 2 * size - u64::from(size.count_ones()));
    assert_eq!(file.len(), 32 * entries.len());

    let order = spec::post_order(&lh);
    assert_eq!(order.len(), entries.len());
    for (pos, (e, (level, index, hash))) in entries.iter().zip(&order).enumerate() {
        assert_eq!(num(&e["position"]), pos as u64);
        assert_eq!(num(&e["level"]), u64::from(*level), "position {pos}");
        assert_eq!(num(&e["index"]), *index, "position {pos}");
        assert_eq!(h32(&e["hash_hex"]), *hash, "position {pos}");
        assert_eq!(&file[pos * 32..pos * 32 + 32], hash, "position {pos}");
        // The documented formula: with m the subtree's last leaf, 2m - popcount(m) + level.
        let m = ((index + 1) << level) - 1;
        assert_eq!(2 * m - u64::from(m.count_ones()) + u64::from(*level), pos as u64);
        assert_eq!(stored_hash_index(*level, *index), pos as u64);
        // A stored hash is the root of its complete subtree.
        let lo = (*index << level) as usize;
        assert_eq!(spec::mth(&lh[lo..lo + (1usize << level)]), *hash);
    }

    // The store's own TreeFile writes exactly these bytes, and reads proofs back from them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tree.hashes");
    {
        let mut tf = TreeFile::open(&path, 0).unwrap();
        for l in &lh {
            tf.push(*l);
        }
        tf.sync().unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap(), file);
    std::fs::write(&path, &file).unwrap();
    let reader = TreeFileReader::open(&path).unwrap();
    assert!(reader.covers(size));
    for s in 1..=size {
        assert_eq!(reader.root(s).unwrap(), spec::mth(&lh[..s as usize]));
    }
}

#[test]
fn mailvault_proof_document() {
    let doc = load("merkle.json");
    let stdout = text(&doc["mailvault_proof_stdout"]);
    let p: Value = serde_json::from_str(stdout).unwrap();
    // Field order as printed.
    let keys: Vec<&str> = [
        "seq",
        "leaf_index",
        "tree_size",
        "leaf",
        "leaf_hash",
        "proof",
        "checkpoint",
    ]
    .to_vec();
    let mut at = 0;
    for k in &keys {
        let pos = stdout
            .find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("no {k}"));
        assert!(pos >= at, "{k} out of order");
        at = pos;
    }
    let (seq, index, size) = (num(&p["seq"]), num(&p["leaf_index"]), num(&p["tree_size"]));
    assert_eq!(index, seq - 1);
    let leaf = B64.decode(text(&p["leaf"])).unwrap();
    assert_eq!(leaf, leaf_bytes()[index as usize]);
    let lh: [u8; 32] = B64.decode(text(&p["leaf_hash"])).unwrap().try_into().unwrap();
    assert_eq!(lh, spec::leaf_hash(&leaf));
    let proof: Vec<[u8; 32]> = arr(&p["proof"])
        .iter()
        .map(|h| B64.decode(text(h)).unwrap().try_into().unwrap())
        .collect();
    // The auditor's check: the note's signature, then the path up to the note's root.
    let key = VerifierKey::parse(text(&load("checkpoint.json")["key"]["verifier_key"])).unwrap();
    let signed = key.verify_note(text(&p["checkpoint"])).unwrap();
    assert_eq!(signed.checkpoint.size, size);
    assert!(verify_inclusion(
        &lh,
        index,
        size,
        &proof,
        &signed.checkpoint.root
    ));
}

// ── Checkpoints and keys ────────────────────────────────────────────────────────────────────

#[test]
fn key_strings() {
    let doc = load("checkpoint.json");
    let k = &doc["key"];
    let name = text(&k["name"]);
    let seed: [u8; 32] = h32(&k["seed_hex"]);
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    assert_eq!(public, h32(&k["public_key_hex"]));
    // Key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4].
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, 0x01]);
    h.update(public);
    let id = &h.finalize()[..4];
    assert_eq!(id, &hx(&k["key_id_hex"])[..]);
    let typed = |key: &[u8; 32]| {
        let mut v = vec![0x01];
        v.extend_from_slice(key);
        B64.encode(v)
    };
    let verifier = format!("{name}+{}+{}", hex::encode(id), typed(&public));
    assert_eq!(verifier, text(&k["verifier_key"]));
    let private = format!("PRIVATE+KEY+{name}+{}+{}\n", hex::encode(id), typed(&seed));
    assert_eq!(private, text(&k["private_key_file"]));

    // The implementation: from the seed, parsing, and the key file it writes and reads.
    let key = LogKey::from_seed(name, seed).unwrap();
    assert_eq!(key.verifier().encode(), verifier);
    assert_eq!(key.verifier().key_id().to_vec(), id.to_vec());
    assert_eq!(VerifierKey::parse(&verifier).unwrap(), key.verifier());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.key");
    key.write_new(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), private);
    let other = dir.path().join("vector.key");
    std::fs::write(&other, &private).unwrap();
    assert_eq!(LogKey::read(&other).unwrap().verifier(), key.verifier());
}

#[test]
fn signed_checkpoint_notes() {
    let doc = load("checkpoint.json");
    let k = &doc["key"];
    let name = text(&k["name"]);
    let public =
        ed25519_dalek::VerifyingKey::from_bytes(&h32(&k["public_key_hex"])).expect("valid public key");
    let id = hx(&k["key_id_hex"]);
    let key = LogKey::from_seed(name, h32(&k["seed_hex"])).unwrap();
    let verifier = VerifierKey::parse(text(&k["verifier_key"])).unwrap();
    let merkle = load("merkle.json");
    let records = records();
    let cps = arr(&doc["checkpoints"]);
    assert!(!cps.is_empty());
    for c in cps {
        let (seq, size) = (num(&c["seq"]), num(&c["tree_size"]));
        assert_eq!(
            size,
            seq - 1,
            "a checkpoint at seq s covers the s - 1 records before it"
        );
        let root = h32(&c["root_hex"]);
        assert_eq!(root, h32(&merkle["roots"][size as usize]["root_hex"]));
        let origin = text(&c["origin"]);
        assert_eq!(origin, name);
        // Body: origin, decimal size, base64 root, each ending in a newline.
        let body = format!("{origin}\n{size}\n{}\n", B64.encode(root));
        assert_eq!(body, text(&c["body"]));
        let sig: [u8; 64] = hx(&c["signature_hex"]).try_into().unwrap();
        public
            .verify_strict(body.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig))
            .expect("Ed25519 signature over the body");
        let mut blob = id.clone();
        blob.extend_from_slice(&sig);
        let line = format!("\u{2014} {name} {}\n", B64.encode(&blob));
        assert_eq!(line, text(&c["signature_line"]));
        let note = format!("{body}\n{line}");
        assert_eq!(note, text(&c["note"]));
        // The checkpoint record's leaf carries the note verbatim.
        assert_eq!(records[seq as usize - 1]["kind"], "checkpoint");
        assert_eq!(text(&records[seq as usize - 1]["note"]), note);

        // The implementation signs identically (Ed25519 is deterministic) and accepts it.
        let cp = Checkpoint {
            origin: origin.into(),
            size,
            root,
        };
        assert_eq!(cp.body(), body);
        assert_eq!(key.sign(&cp).note, note);
        assert_eq!(verifier.verify_note(&note).unwrap().checkpoint, cp);
        assert_eq!(Checkpoint::parse_body(&body).unwrap(), cp);
    }
}

// ── Segments and a whole store ──────────────────────────────────────────────────────────────

/// Writes the vector store (segments, identity, keys, no derived state) into `dir`.
fn write_store(dir: &Path) {
    let doc = load("segment.json");
    std::fs::create_dir_all(dir.join("log")).unwrap();
    for seg in arr(&doc["segments"]) {
        std::fs::write(
            dir.join("log").join(text(&seg["file_name"])),
            hx(&seg["file_hex"]),
        )
        .unwrap();
    }
    for (name, contents) in doc["store_files"].as_object().unwrap() {
        std::fs::write(dir.join(name), text(contents)).unwrap();
    }
}

fn verifier() -> VerifierKey {
    VerifierKey::parse(text(&load("checkpoint.json")["key"]["verifier_key"])).unwrap()
}

#[test]
fn segment_files() {
    let doc = load("segment.json");
    let frames = load("frames.json");
    let records = records();
    let segs = arr(&doc["segments"]);
    let mut expected_first = 1;
    for seg in segs {
        let (first, last) = (num(&seg["first_seq"]), num(&seg["last_seq"]));
        assert_eq!(first, expected_first, "segments are contiguous");
        expected_first = last + 1;
        let name = text(&seg["file_name"]);
        assert_eq!(name, format!("{first:020}.seg"));
        assert_eq!(name, segment_file_name(first));
        let file = hx(&seg["file_hex"]);
        let mut header = b"MVSEG001".to_vec();
        header.extend_from_slice(&first.to_be_bytes());
        assert_eq!(hx(&seg["header_hex"]), header);
        assert_eq!(segment_header(first).to_vec(), header);
        assert_eq!(&file[..16], &header[..]);
        let split = spec::split_segment(&file);
        assert_eq!(split.len() as u64, last - first + 1);
        let mut offset = 16;
        for (i, (frame, at)) in split.iter().zip(arr(&seg["frames"])).enumerate() {
            let seq = first + i as u64;
            assert_eq!(num(&at["seq"]), seq);
            assert_eq!(num(&at["offset"]), offset);
            offset += frame.len() as u64;
            assert_eq!(
                *frame,
                hx(&frames["frames"][seq as usize - 1]["frame_hex"]),
                "seq {seq}"
            );
            let p = spec::frame(frame).unwrap();
            assert_eq!(p.leaf, hx(&records[seq as usize - 1]["leaf_hex"]));
        }
        // Every segment of the vector log ends with a checkpoint (a sealed segment must).
        assert_eq!(records[last as usize - 1]["kind"], "checkpoint");
    }
}

// ── Offload receipts and eviction stubs ─────────────────────────────────────────────────────

/// Segment 1 of segment.json (records 1–4), the segment offload.json's receipt names.
fn segment_1() -> Vec<u8> {
    hx(&load("segment.json")["segments"][0]["file_hex"])
}

#[test]
fn offload_record_by_hand() {
    let r = &load("offload.json")["record"];
    let chain = load("chain.json");
    // The leaf, re-encoded from FORMAT.md's table; it names segment 1 by length and BLAKE3.
    let leaf = hx(&r["leaf_hex"]);
    assert_eq!(spec::offload_leaf(r), leaf);
    let segment = segment_1();
    assert_eq!(num(&r["segment"]), 1);
    assert_eq!(num(&r["segment_len"]), segment.len() as u64);
    assert_eq!(h32(&r["segment_blake3_hex"]), *blake3::hash(&segment).as_bytes());
    assert_eq!(
        jiff::Timestamp::from_second(r["retain_until"].as_i64().unwrap())
            .unwrap()
            .to_string(),
        text(&r["retain_until_utc"])
    );
    assert_eq!(spec::leaf_hash(&leaf), h32(&r["leaf_hash_hex"]));
    // Record 11 continues the vector log's chain.
    let h10 = h32(&chain["chain"][9]["chain_hex"]);
    assert_eq!(h32(&r["previous_chain_hex"]), h10);
    assert_eq!(spec::blake3_chain(&h10, &leaf), h32(&r["chain_hex"]));
    // Its frame, parsed by hand: kind 6, raw, no payload.
    let bytes = hx(&r["frame_hex"]);
    let p = spec::frame(&bytes).unwrap();
    assert_eq!((p.kind, p.codec), (6, 0));
    assert_eq!(u64::from(p.kind), num(&r["kind_byte"]));
    assert_eq!(p.chain, h32(&r["chain_hex"]));
    assert_eq!(p.leaf, leaf);
    assert!(p.payload.is_empty(), "an offload record has no payload");

    // The implementation decodes and encodes the same bytes.
    let decoded = Leaf::decode(&leaf).unwrap();
    let LeafBody::Offload(receipt) = &decoded.body else {
        panic!("not an offload leaf: {decoded:?}");
    };
    assert_eq!(
        (decoded.seq, decoded.time_us),
        (11, r["time_us"].as_i64().unwrap())
    );
    assert_eq!(
        (
            receipt.bucket.as_str(),
            receipt.key.as_str(),
            receipt.version_id.as_str()
        ),
        (text(&r["bucket"]), text(&r["key"]), text(&r["version_id"]))
    );
    assert_eq!(decoded.encode(), leaf);
    assert_eq!(
        encode_frame(RecordKind::Offload, Codec::Raw, &p.chain, &leaf, &[]).unwrap(),
        bytes
    );
    // An offload leaf ends with its last field: a byte more is refused.
    let mut longer = leaf.clone();
    longer.push(0);
    assert!(Leaf::decode(&longer).is_err());
}

#[test]
fn eviction_stub_by_hand() {
    let doc = load("offload.json");
    let (r, stub) = (&doc["record"], &doc["stub"]);
    let segment = segment_1();
    let seg_doc = &load("segment.json")["segments"][0];
    let leaf_hashes = hashes(&load("merkle.json")["leaf_hashes_hex"]);
    let chain = load("chain.json");
    assert_eq!(text(&stub["file_name"]), "00000000000000000001.evicted");

    // The stub read as FORMAT.md describes it: a JSON object, the receipt's fields, and a
    // frame table of 48-byte entries that tiles the segment.
    let file_text = text(&stub["file_text"]);
    assert!(file_text.ends_with("}\n"));
    let v: Value = serde_json::from_str(file_text).unwrap();
    assert_eq!(v["format"], "mailvault-evicted-segment/1");
    assert_eq!(num(&v["segment"]), 1);
    assert_eq!(num(&v["receipt_seq"]), num(&r["seq"]));
    for name in ["bucket", "key", "version_id", "retain_until", "segment_len"] {
        assert_eq!(v[name], r[name], "{name}");
    }
    assert_eq!(v["segment_blake3"], r["segment_blake3_hex"]);
    assert_eq!(num(&v["records"]), 4);
    assert_eq!(v["last_chain"], chain["chain"][3]["chain_hex"], "h_4");
    assert_eq!(v["receipts"], serde_json::json!([]), "segment 1 holds no receipt");
    let table = B64.decode(text(&v["frames"])).unwrap();
    assert_eq!(table.len(), 4 * 48);
    let frames = spec::split_segment(&segment);
    let mut end = 16u64;
    for (i, entry) in table.chunks(48).enumerate() {
        let offset = u64::from_be_bytes(entry[..8].try_into().unwrap());
        let len = u64::from_be_bytes(entry[8..16].try_into().unwrap());
        let hash: [u8; 32] = entry[16..].try_into().unwrap();
        assert_eq!(offset, end, "entry {i} starts where the one before ended");
        assert_eq!(offset, num(&seg_doc["frames"][i]["offset"]));
        assert_eq!(len, frames[i].len() as u64);
        assert_eq!(hash, leaf_hashes[i], "entry {i}: the tree's leaf hash");
        // What a reader does with an entry: a range of the object, checked against it.
        let range = &segment[offset as usize..(offset + len) as usize];
        assert_eq!(spec::leaf_hash(&spec::frame(range).unwrap().leaf), hash);
        let listed = &stub["frames"][i];
        assert_eq!(
            (
                num(&listed["seq"]),
                num(&listed["offset"]),
                num(&listed["length"])
            ),
            (1 + i as u64, offset, len)
        );
        assert_eq!(h32(&listed["leaf_hash_hex"]), hash);
        end = offset + len;
    }
    assert_eq!(end, segment.len() as u64, "the table covers the segment");

    // The store's own code writes exactly these bytes for this segment and receipt, and
    // reads them back.
    let leaf = Leaf::decode(&hx(&r["leaf_hex"])).unwrap();
    let LeafBody::Offload(receipt) = leaf.body else {
        panic!("not an offload leaf");
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(segment_file_name(1));
    std::fs::write(&path, &segment).unwrap();
    let described = EvictedSegment::describe(&path, 11, &receipt).unwrap();
    assert_eq!(String::from_utf8(described.encode()).unwrap(), file_text);
    let decoded = EvictedSegment::decode(file_text.as_bytes()).unwrap();
    assert_eq!(decoded, described);
    assert_eq!(decoded.frame(3).unwrap().leaf_hash, leaf_hashes[2]);
    std::fs::write(dir.path().join(text(&stub["file_name"])), file_text).unwrap();
    assert_eq!(
        EvictedSegment::read(&dir.path().join(text(&stub["file_name"]))).unwrap(),
        described
    );
}

#[test]
fn vector_store_verifies() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path());
    let merkle = load("merkle.json");
    let report = verify_log(&dir.path().join("log"), &verifier(), &[]).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.records, 10);
    assert_eq!(report.segments, 2);
    assert_eq!(report.last_checkpoint, Some((10, 9)));
    assert_eq!(report.root, h32(&merkle["roots"][10]["root_hex"]));

    // Record 6 stored with zstd, or with zstd and the dictionary of record 5, instead of raw:
    // the same log, byte for byte where it is hashed.
    let seg = dir.path().join("log").join(segment_file_name(5));
    let file = std::fs::read(&seg).unwrap();
    let with_frame6 = |frame6: &[u8]| {
        let mut frames = spec::split_segment(&file);
        frames[1] = frame6.to_vec();
        let mut out = segment_header(5).to_vec();
        frames.iter().for_each(|f| out.extend_from_slice(f));
        out
    };
    for name in ["zstd_frame", "zstd_dictionary_frame"] {
        std::fs::write(&seg, with_frame6(&hx(&load("frames.json")[name]["frame_hex"]))).unwrap();
        let report = verify_log(&dir.path().join("log"), &verifier(), &[]).unwrap();
        assert_eq!(report.problem, None, "{name}");
        assert_eq!(report.root, h32(&merkle["roots"][10]["root_hex"]), "{name}");
    }
    // A dictionary reference to a record that is not a dictionary (the checkpoint, seq 4).
    let dict_frame = spec::frame(&hx(&load("frames.json")["zstd_dictionary_frame"]["frame_hex"])).unwrap();
    let mut payload = dict_frame.payload.clone();
    payload[..8].copy_from_slice(&4u64.to_be_bytes());
    let bad = encode_frame(
        RecordKind::Message,
        Codec::ZstdDictionary,
        &dict_frame.chain,
        &dict_frame.leaf,
        &payload,
    )
    .unwrap();
    std::fs::write(&seg, with_frame6(&bad)).unwrap();
    let report = verify_log(&dir.path().join("log"), &verifier(), &[]).unwrap();
    assert_eq!(report.problem.expect("bad dictionary reference").seq, 6);
    std::fs::write(&seg, &file).unwrap();

    // An altered leaf with a recomputed CRC passes the frame check but not the chain.
    let seg1 = dir.path().join("log").join(segment_file_name(1));
    let original = std::fs::read(&seg1).unwrap();
    let mut frames = spec::split_segment(&original);
    let p = spec::frame(&frames[1]).unwrap();
    let mut leaf = p.leaf.clone();
    *leaf.last_mut().unwrap() ^= 0x01;
    frames[1] = encode_frame(RecordKind::Arrival, Codec::Raw, &p.chain, &leaf, &p.payload).unwrap();
    let mut bad = segment_header(1).to_vec();
    frames.iter().for_each(|f| bad.extend_from_slice(f));
    std::fs::write(&seg1, &bad).unwrap();
    let report = verify_log(&dir.path().join("log"), &verifier(), &[]).unwrap();
    let problem = report.problem.expect("tampering found");
    assert_eq!(problem.seq, 2);
    assert!(problem.reason.contains("chain"), "{}", problem.reason);
}

#[test]
fn recovery_cuts_a_torn_tail_and_refuses_damage() {
    let seg_name = segment_file_name(5);
    let original = hx(&load("segment.json")["segments"][1]["file_hex"]);
    let frame7 = hx(&load("frames.json")["frames"][6]["frame_hex"]);
    let offset7 = num(&load("segment.json")["segments"][1]["frames"][2]["offset"]) as usize;
    let open = |dir: &Path| Store::open(dir, &dir.join("signing.key"), StoreConfig::default());

    // Torn tails: a partial header, a partial body. Both are cut on open into a quarantine
    // file, and the cut is audited; nothing before it changes.
    for torn in [&frame7[..10], &frame7[..60]] {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path());
        let path = dir.path().join("log").join(&seg_name);
        let mut bytes = original.clone();
        bytes.extend_from_slice(torn);
        std::fs::write(&path, &bytes).unwrap();
        let store = open(dir.path()).expect("torn tail is recovered");
        assert_eq!(
            store.root(10).unwrap(),
            h32(&load("merkle.json")["roots"][10]["root_hex"])
        );
        let cut = store.recovered().expect("the cut is reported").clone();
        assert_eq!(
            (cut.offset, cut.bytes, cut.torn_bytes),
            (original.len() as u64, torn.len() as u64, torn.len() as u64)
        );
        assert_eq!(
            std::fs::read(&cut.kept_in).unwrap(),
            torn,
            "the cut bytes are kept"
        );
        let audit = store.read_record_unscoped(11).unwrap();
        let LeafBody::Audit { event } = &audit.leaf.body else {
            panic!("record 11 is the recovery's audit record");
        };
        let event: serde_json::Value = serde_json::from_slice(event).unwrap();
        assert_eq!(event["action"], "recovery-cut");
        store.close().unwrap();
        assert!(
            std::fs::read(&path).unwrap().starts_with(&original),
            "cut back to the last whole frame"
        );
    }

    // Damage with valid frames after it: a flipped leaf byte (CRC mismatch), a flipped
    // high bit of body_len (the frame seems to run past the end of the file).
    for at in [offset7 + 60, offset7 + 4] {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path());
        let path = dir.path().join("log").join(&seg_name);
        let mut bytes = original.clone();
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(open(dir.path()).is_err(), "damage at byte {at} must not be cut");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    }
}

// ── RFC 6962 reference vectors ──────────────────────────────────────────────────────────────

// fixtures/vectors/rfc6962.json: copied from github.com/transparency-dev/merkle,
// proof/verify_test.go at commit 02194e9afb6c1d95b5381350007963aa70fff472 (the Certificate
// Transparency reference tree: leaves "", 00, 10, 2021, 3031, 40414243, 5051525354555657,
// 606162636465666768696a6b6c6d6e6f).
#[test]
fn rfc6962_reference_vectors() {
    let doc = load("rfc6962.json");
    let leaves: Vec<Vec<u8>> = arr(&doc["leaves_hex"]).iter().map(hx).collect();
    assert_eq!(leaves.len(), 8);
    let lh: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l)).collect();
    let mut tree = MemoryTree::default();
    for l in &leaves {
        tree.push_leaf(l);
    }
    assert_eq!(
        MemoryTree::default().root(0).unwrap(),
        h32(&doc["empty_root_hex"])
    );
    assert_eq!(empty_root(), h32(&doc["empty_root_hex"]));
    for r in arr(&doc["roots"]) {
        let size = num(&r["size"]);
        let root = h32(&r["root_hex"]);
        assert_eq!(tree.root(size).unwrap(), root, "root of size {size}");
        assert_eq!(spec::mth(&lh[..size as usize]), root, "MTH of size {size}");
    }
    let root = |size: u64| h32(&doc["roots"][size as usize - 1]["root_hex"]);
    for v in arr(&doc["inclusion"]) {
        let (index, size) = (num(&v["leaf_index"]), num(&v["tree_size"]));
        let proof = hashes(&v["proof_hex"]);
        assert_eq!(
            tree.inclusion_proof(index, size).unwrap(),
            proof,
            "inclusion {index} in {size}"
        );
        assert!(verify_inclusion(
            &lh[index as usize],
            index,
            size,
            &proof,
            &root(size)
        ));
        assert!(!verify_inclusion(
            &lh[(index as usize + 1) % 8],
            index,
            size,
            &proof,
            &root(size)
        ));
    }
    for v in arr(&doc["consistency"]) {
        let (old, new) = (num(&v["old_size"]), num(&v["new_size"]));
        let proof = hashes(&v["proof_hex"]);
        assert_eq!(
            tree.consistency_proof(old, new).unwrap(),
            proof,
            "consistency {old} -> {new}"
        );
        assert!(verify_consistency(old, &root(old), new, &root(new), &proof));
        if old < new {
            assert!(!verify_consistency(old, &root(new), new, &root(new), &proof));
        }
    }
}

// ── FORMAT.md itself ────────────────────────────────────────────────────────────────────────

/// The fenced block following `marker` in docs/FORMAT.md, without its fence lines.
fn format_md_block(marker: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/FORMAT.md");
    let md = std::fs::read_to_string(&path).unwrap();
    let start = md
        .find(marker)
        .unwrap_or_else(|| panic!("FORMAT.md has no {marker}"))
        + marker.len();
    let block = &md[start..];
    let block = &block[block.find("```").unwrap() + 3..];
    let block = &block[block.find('\n').unwrap() + 1..];
    block[..block.find("```").unwrap()].to_string()
}

/// The worked hexdump in docs/FORMAT.md is the audit frame of record 3, byte for byte.
#[test]
fn format_md_worked_example_matches_the_vector() {
    let block = format_md_block("<!-- worked-example: frames.json seq 3 -->");
    let mut bytes = Vec::new();
    for line in block.lines() {
        // `0000  4d 56 52 31 …  |MVR1…|`: offset, up to 16 hex bytes, ASCII column.
        let hex_part = line.split('|').next().unwrap();
        let mut words = hex_part.split_whitespace();
        let offset = usize::from_str_radix(words.next().unwrap(), 16).unwrap();
        assert_eq!(offset, bytes.len(), "hexdump offsets");
        bytes.extend(words.map(|w| u8::from_str_radix(w, 16).unwrap()));
    }
    assert_eq!(bytes, hx(&load("frames.json")["frames"][2]["frame_hex"]));
}

/// The key, note and proof examples in docs/FORMAT.md are the vectors'.
#[test]
fn format_md_examples_match_the_vectors() {
    let cp = load("checkpoint.json");
    assert_eq!(
        format_md_block("<!-- example: checkpoint.json key verifier_key -->"),
        format!("{}\n", text(&cp["key"]["verifier_key"]))
    );
    let note = arr(&cp["checkpoints"]).iter().find(|c| c["seq"] == 4).unwrap();
    assert_eq!(
        format_md_block("<!-- example: checkpoint.json checkpoint 4 note -->"),
        text(&note["note"])
    );
    assert_eq!(
        format_md_block("<!-- example: merkle.json mailvault_proof_stdout -->"),
        text(&load("merkle.json")["mailvault_proof_stdout"])
    );
}
