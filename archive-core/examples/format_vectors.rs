//! Generates the on-disk format test vectors in `fixtures/vectors/` (see docs/FORMAT.md).
//!
//! ```sh
//! cargo run -p archive-core --example format_vectors -- fixtures/vectors
//! ```
//!
//! Everything is built from fixed inputs through the crate's public API: a fixed Ed25519 seed,
//! fixed receive times, fixed envelopes, message and dictionary bytes. Frames use codec 0
//! (raw) so their bytes do not depend on the zstd version, except the `zstd_frame` and
//! `zstd_dictionary_frame` vectors, which tests check only by parsing and decompressing. `rfc6962.json` is not generated: it holds
//! published reference data (see the file itself). `archive-core/tests/format_vectors.rs`
//! checks every vector against the implementation and against independent re-derivations.

use std::path::{Path, PathBuf};

use archive_core::log::checkpoint::{Checkpoint, LogKey};
use archive_core::log::evicted::{stub_file_name, EvictedSegment};
use archive_core::log::merkle::{
    empty_root, leaf_hash, stored_hash_count, stored_hash_index, HashSource, MemoryTree,
};
use archive_core::log::record::{
    chain_next, encode_frame, Codec, Leaf, LeafBody, OffloadReceipt, RecordKind,
};
use archive_core::log::segment::{segment_file_name, segment_header};
use archive_core::log::tree::TreeFile;
use archive_core::store::StoreIdentity;
use archive_core::{Envelope, Recipient};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// The log's origin (and key name): the format `mailvault init` uses, with a fixed id.
const ORIGIN: &str = "mailvault.invalid/00112233445566778899aabbccddeeff";
/// Ed25519 seed of the vector key. Never use a known seed for a real store.
const SEED: [u8; 32] = [7u8; 32];
/// 2024-01-01T00:00:00Z in microseconds since the Unix epoch.
const T0: i64 = 1_704_067_200_000_000;

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn envelopes() -> Vec<(&'static str, Envelope)> {
    vec![
        (
            "smtp",
            Envelope {
                mail_from: b"alice@example.org".to_vec(),
                mail_params: b"BODY=8BITMIME SIZE=184".to_vec(),
                rcpt_to: vec![
                    Recipient {
                        address: b"bob@example.net".to_vec(),
                        params: vec![],
                    },
                    Recipient {
                        address: "j\u{fc}rgen@b\u{fc}ro.example".as_bytes().to_vec(),
                        params: b"NOTIFY=NEVER".to_vec(),
                    },
                ],
                original_recipients: vec![],
                protocol: "esmtp".into(),
                client: "192.0.2.25:41234".into(),
                helo: "mx.example.org".into(),
                tls: "TLSv1.3 TLS_AES_128_GCM_SHA256".into(),
                source: String::new(),
            },
        ),
        (
            "journal",
            Envelope {
                // The null sender `<>`; an address that is not UTF-8 (Latin-1 0xE9).
                mail_from: vec![],
                mail_params: vec![],
                rcpt_to: vec![Recipient {
                    address: b"journal@archive.example".to_vec(),
                    params: vec![],
                }],
                original_recipients: vec![b"carol@example.com".to_vec(), b"ren\xe9@example.com".to_vec()],
                protocol: "lmtp".into(),
                client: "[2001:db8::7]:2525".into(),
                helo: "exchange.example.com".into(),
                tls: String::new(),
                source: String::new(),
            },
        ),
        (
            "import",
            Envelope::imported("Maildir/cur/1704067260.M1P2.host:2,S", b"dave@example.org"),
        ),
        ("empty", Envelope::default()),
    ]
}

fn envelope(name: &str) -> Envelope {
    envelopes()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, e)| e)
        .expect("known envelope")
}

fn envelope_json(name: &str, e: &Envelope) -> Value {
    json!({
        "name": name,
        "mail_from_hex": h(&e.mail_from),
        "mail_params_hex": h(&e.mail_params),
        "rcpt_to": e.rcpt_to.iter().map(|r| json!({
            "address_hex": h(&r.address),
            "params_hex": h(&r.params),
        })).collect::<Vec<_>>(),
        "original_recipients_hex": e.original_recipients.iter().map(|r| h(r)).collect::<Vec<_>>(),
        "protocol": e.protocol,
        "client": e.client,
        "helo": e.helo,
        "tls": e.tls,
        "source": e.source,
        "encoding_hex": h(&e.encode()),
    })
}

const CONTENT_A: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: Bob <bob@example.net>\r\n\
Subject: Quarterly report\r\n\
Message-ID: <q1-2024@example.org>\r\n\
Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\
\r\n\
The numbers are in.\r\n";

const CONTENT_C: &[u8] = b"From: Ren\xe9 <rene@example.com>\r\n\
To: Carol <carol@example.com>\r\n\
Subject: =?ISO-8859-1?Q?R=E9union?=\r\n\
Message-ID: <r-7@example.com>\r\n\
Content-Type: text/plain; charset=ISO-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
\xc0 demain.\r\n";

/// Message B compresses well, for the zstd frame vector.
fn content_b() -> Vec<u8> {
    let mut m = b"From: Dave <dave@example.org>\r\n\
To: team@example.org\r\n\
Subject: Status\r\n\
Message-ID: <status-1@example.org>\r\n\
\r\n"
        .to_vec();
    for i in 1..=20 {
        m.extend_from_slice(format!("Line {i:02}: all systems nominal.\r\n").as_bytes());
    }
    m
}

/// A zstd dictionary in "raw content" form (no magic number: zstd uses the bytes as shared
/// history). The store trains formatted dictionaries; raw content keeps the vector's bytes
/// independent of the zstd version's trainer.
fn dictionary_bytes() -> Vec<u8> {
    let mut d = b"From: To: Subject: Status\r\nMessage-ID: <@example.org>\r\n\r\n".to_vec();
    for i in 1..=20 {
        d.extend_from_slice(format!("Line {i:02}: all systems nominal.\r\n").as_bytes());
    }
    d
}

fn dictionary(time_us: i64, bytes: &[u8]) -> Rec {
    Rec {
        time_us,
        body: LeafBody::Dictionary {
            content_hash: blake3::hash(bytes).into(),
            content_len: bytes.len() as u64,
        },
        content: Some(bytes.to_vec()),
        envelope_name: None,
    }
}

struct Rec {
    time_us: i64,
    body: LeafBody,
    /// Raw message bytes (message records), the referenced bytes (arrival records) or the
    /// dictionary (dictionary records).
    content: Option<Vec<u8>>,
    envelope_name: Option<&'static str>,
}

fn message(time_us: i64, content: &[u8], env: &'static str) -> Rec {
    Rec {
        time_us,
        body: LeafBody::Message {
            content_hash: blake3::hash(content).into(),
            content_len: content.len() as u64,
            envelope: envelope(env).encode(),
        },
        content: Some(content.to_vec()),
        envelope_name: Some(env),
    }
}

fn arrival(time_us: i64, content: &[u8], first_seq: u64, env: &'static str) -> Rec {
    Rec {
        time_us,
        body: LeafBody::Arrival {
            content_hash: blake3::hash(content).into(),
            content_len: content.len() as u64,
            first_seq,
            envelope: envelope(env).encode(),
        },
        content: Some(content.to_vec()),
        envelope_name: Some(env),
    }
}

fn audit(time_us: i64, event: &str) -> Rec {
    Rec {
        time_us,
        body: LeafBody::Audit {
            event: event.as_bytes().to_vec(),
        },
        content: None,
        envelope_name: None,
    }
}

/// One record of the vector log, fully derived.
struct Built {
    seq: u64,
    rec: Rec,
    leaf: Vec<u8>,
    chain: [u8; 32],
    frame: Vec<u8>,
    codec: Codec,
    payload: Vec<u8>,
}

fn kind_name(k: RecordKind) -> &'static str {
    k.name()
}

fn main() {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fixtures/vectors"));
    std::fs::create_dir_all(&out).expect("create output directory");

    let key = LogKey::from_seed(ORIGIN, SEED).expect("valid key name");
    let verifier = key.verifier();
    let b = content_b();

    let dict = dictionary_bytes();
    // The vector log: ten records of every kind, two checkpoints. Records 1–4 form a sealed
    // segment (it ends with the checkpoint over 1..3); records 5–10 the active one.
    let plan: Vec<Option<Rec>> = vec![
        Some(message(T0, CONTENT_A, "smtp")),
        Some(arrival(T0 + 250_000, CONTENT_A, 1, "journal")),
        Some(audit(
            T0 + 1_000_000,
            r#"{"actor":"cli:auditor","action":"view","target":"seq 1","origin":"local"}"#,
        )),
        None, // checkpoint over 1..=3
        Some(dictionary(T0 + 59_000_000, &dict)),
        Some(message(T0 + 60_000_000, &b, "import")),
        Some(message(T0 + 3_600_000_000, CONTENT_C, "journal")),
        Some(arrival(T0 + 3_600_000_001, &b, 6, "smtp")),
        Some(audit(
            T0 + 3_601_000_000,
            r#"{"actor":"carol","action":"download","target":"seq 7","origin":"198.51.100.4"}"#,
        )),
        None, // checkpoint over 1..=9
    ];
    // Checkpoints take the time of the record before them (the writer's clock never goes
    // backwards; a checkpoint written in the same microsecond shares it).
    let checkpoint_times = [T0 + 1_000_000, T0 + 3_602_000_000];

    let mut tree = MemoryTree::default();
    let mut chain = [0u8; 32];
    let mut built: Vec<Built> = Vec::new();
    let mut checkpoints = Vec::new();
    let mut cp_i = 0;
    for (i, rec) in plan.into_iter().enumerate() {
        let seq = i as u64 + 1;
        let rec = match rec {
            Some(r) => r,
            None => {
                let size = seq - 1;
                let cp = Checkpoint {
                    origin: ORIGIN.to_string(),
                    size,
                    root: tree.root(size).expect("root"),
                };
                let signed = key.sign(&cp);
                let time_us = checkpoint_times[cp_i];
                cp_i += 1;
                checkpoints.push((seq, signed.clone()));
                Rec {
                    time_us,
                    body: LeafBody::Checkpoint {
                        note: signed.note.into_bytes(),
                    },
                    content: None,
                    envelope_name: None,
                }
            }
        };
        let leaf = Leaf {
            seq,
            time_us: rec.time_us,
            body: rec.body.clone(),
        };
        let kind = leaf.kind();
        let leaf = leaf.encode();
        chain = chain_next(&chain, &leaf);
        let (codec, payload) = match kind {
            RecordKind::Message | RecordKind::Dictionary => {
                (Codec::Raw, rec.content.clone().unwrap_or_default())
            }
            _ => (Codec::Raw, Vec::new()),
        };
        let frame = encode_frame(kind, codec, &chain, &leaf, &payload).expect("frame");
        tree.push_leaf(&leaf);
        built.push(Built {
            seq,
            rec,
            leaf,
            chain,
            frame,
            codec,
            payload,
        });
    }

    // (a) envelopes
    let envs: Vec<Value> = envelopes().iter().map(|(n, e)| envelope_json(n, e)).collect();
    write(
        &out,
        "envelopes.json",
        json!({
            "description": "Canonical envelope encodings (docs/FORMAT.md, Envelope). Byte fields are given as hex (addresses need not be UTF-8), text fields as strings. encoding_hex is the exact encoding.",
            "vectors": envs,
        }),
    );

    // (b) leaves
    let leaf_json = |bt: &Built| -> Value {
        let l = Leaf::decode(&bt.leaf).expect("decodes");
        let mut v = json!({
            "seq": bt.seq,
            "time_us": bt.rec.time_us,
            "kind": kind_name(l.kind()),
            "kind_byte": l.kind() as u8,
            "leaf_hex": h(&bt.leaf),
            "leaf_hash_hex": h(&leaf_hash(&bt.leaf)),
        });
        let o = v.as_object_mut().expect("object");
        match &bt.rec.body {
            LeafBody::Message {
                content_hash,
                content_len,
                envelope,
            } => {
                o.insert(
                    "content_hex".into(),
                    json!(h(bt.rec.content.as_deref().unwrap_or_default())),
                );
                o.insert("content_hash_hex".into(), json!(h(content_hash)));
                o.insert("content_len".into(), json!(content_len));
                o.insert("envelope".into(), json!(bt.rec.envelope_name));
                o.insert("envelope_hex".into(), json!(h(envelope)));
            }
            LeafBody::Arrival {
                content_hash,
                content_len,
                first_seq,
                envelope,
            } => {
                o.insert("content_hash_hex".into(), json!(h(content_hash)));
                o.insert("content_len".into(), json!(content_len));
                o.insert("first_seq".into(), json!(first_seq));
                o.insert("envelope".into(), json!(bt.rec.envelope_name));
                o.insert("envelope_hex".into(), json!(h(envelope)));
            }
            LeafBody::Audit { event } => {
                o.insert(
                    "event".into(),
                    json!(String::from_utf8(event.clone()).expect("utf-8")),
                );
            }
            LeafBody::Checkpoint { note } => {
                o.insert(
                    "note".into(),
                    json!(String::from_utf8(note.clone()).expect("utf-8")),
                );
            }
            LeafBody::Dictionary {
                content_hash,
                content_len,
            } => {
                o.insert(
                    "content_hex".into(),
                    json!(h(bt.rec.content.as_deref().unwrap_or_default())),
                );
                o.insert("content_hash_hex".into(), json!(h(content_hash)));
                o.insert("content_len".into(), json!(content_len));
            }
            // The vector log has no offload receipt yet; these are its fields if it gets one.
            LeafBody::Offload(r) => {
                o.insert("segment".into(), json!(r.segment));
                o.insert("segment_len".into(), json!(r.segment_len));
                o.insert("segment_hash_hex".into(), json!(h(&r.segment_hash)));
                o.insert("retain_until".into(), json!(r.retain_until));
                o.insert("bucket".into(), json!(r.bucket));
                o.insert("key".into(), json!(r.key));
                o.insert("version_id".into(), json!(r.version_id));
            }
        }
        v
    };
    // A leaf outside the log: a receive time before the epoch (two's complement).
    let early = Leaf {
        seq: 1,
        time_us: -1,
        body: LeafBody::Audit {
            event: br#"{"actor":"x","action":"y","target":"z","origin":"local"}"#.to_vec(),
        },
    };
    let early_bytes = early.encode();
    write(
        &out,
        "leaves.json",
        json!({
            "description": "Leaves of the ten-record vector log (docs/FORMAT.md, Leaf), in seq order, with their RFC 6962 leaf hashes SHA-256(0x00 || leaf). time_us is microseconds since 1970-01-01T00:00:00Z; 1704067200000000 is 2024-01-01T00:00:00Z. Envelopes are named after envelopes.json. `extra` holds leaves that are not part of the log.",
            "records": built.iter().map(leaf_json).collect::<Vec<_>>(),
            "extra": [{
                "seq": 1,
                "time_us": -1,
                "kind": "audit",
                "kind_byte": 3,
                "event": String::from_utf8(early_bytes[18..].to_vec()).expect("utf-8"),
                "leaf_hex": h(&early_bytes),
                "leaf_hash_hex": h(&leaf_hash(&early_bytes)),
            }],
        }),
    );

    // (c) chain
    write(
        &out,
        "chain.json",
        json!({
            "description": "The blake3 chain over the vector log: h_0 = 32 zero bytes, h_n = blake3(h_{n-1} || leaf_n), leaves from leaves.json.",
            "h0_hex": h(&[0u8; 32]),
            "chain": built.iter().map(|bt| json!({"seq": bt.seq, "chain_hex": h(&bt.chain)})).collect::<Vec<_>>(),
        }),
    );

    // (d) frames, plus one zstd frame
    let frame_json = |bt: &Built| -> Value {
        let f = &bt.frame;
        json!({
            "seq": bt.seq,
            "kind": kind_name(Leaf::decode(&bt.leaf).expect("decodes").kind()),
            "kind_byte": f[8],
            "codec": bt.codec as u8,
            "body_len": u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
            "crc32c_hex": h(&f[12..16]),
            "chain_hex": h(&bt.chain),
            "leaf_len": bt.leaf.len(),
            "leaf_hex": h(&bt.leaf),
            "payload_hex": h(&bt.payload),
            "frame_hex": h(f),
        })
    };
    let b6 = &built[5];
    let zstd_payload = zstd::bulk::compress(&b, 19).expect("zstd");
    assert!(zstd_payload.len() < b.len());
    let zstd_frame = encode_frame(
        RecordKind::Message,
        Codec::Zstd,
        &b6.chain,
        &b6.leaf,
        &zstd_payload,
    )
    .expect("frame");
    // Codec 2: the dictionary record's seq, then a zstd frame compressed with its bytes.
    let mut dict_payload = 5u64.to_be_bytes().to_vec();
    dict_payload.extend(
        zstd::bulk::Compressor::with_dictionary(19, &dict)
            .and_then(|mut c| c.compress(&b))
            .expect("zstd with dictionary"),
    );
    assert!(dict_payload.len() < zstd_payload.len());
    let dict_frame = encode_frame(
        RecordKind::Message,
        Codec::ZstdDictionary,
        &b6.chain,
        &b6.leaf,
        &dict_payload,
    )
    .expect("frame");
    write(
        &out,
        "frames.json",
        json!({
            "description": "Complete frames of the vector log (docs/FORMAT.md, Frame), all codec 0 (raw). `zstd_frame` is record 6 stored with codec 1, `zstd_dictionary_frame` the same record stored with codec 2 and the dictionary of record 5: their payload bytes depend on the zstd version and level, so check them by parsing, checking the CRC and decompressing to content_hex, never by comparing frame_hex.",
            "frames": built.iter().map(frame_json).collect::<Vec<_>>(),
            "zstd_frame": {
                "seq": 6,
                "kind": "message",
                "codec": 1,
                "chain_hex": h(&b6.chain),
                "leaf_hex": h(&b6.leaf),
                "content_hex": h(&b),
                "frame_hex": h(&zstd_frame),
            },
            "zstd_dictionary_frame": {
                "seq": 6,
                "kind": "message",
                "codec": 2,
                "dictionary_seq": 5,
                "chain_hex": h(&b6.chain),
                "leaf_hex": h(&b6.leaf),
                "content_hex": h(&b),
                "frame_hex": h(&dict_frame),
            },
        }),
    );

    // (e) Merkle tree
    let leaf_hashes: Vec<[u8; 32]> = built.iter().map(|bt| leaf_hash(&bt.leaf)).collect();
    let mut roots = vec![json!({"size": 0, "root_hex": h(&empty_root())})];
    for size in 1..=10u64 {
        roots.push(json!({"size": size, "root_hex": h(&tree.root(size).expect("root"))}));
    }
    let inclusion = [(3u64, 9u64), (1, 3), (10, 10), (1, 1), (7, 10)]
        .iter()
        .map(|&(seq, size)| {
            let proof = tree.inclusion_proof(seq - 1, size).expect("proof");
            json!({
                "seq": seq,
                "leaf_index": seq - 1,
                "tree_size": size,
                "leaf_hash_hex": h(&leaf_hashes[(seq - 1) as usize]),
                "proof_hex": proof.iter().map(|p| h(p)).collect::<Vec<_>>(),
                "root_hex": h(&tree.root(size).expect("root")),
            })
        })
        .collect::<Vec<_>>();
    let consistency = [(3u64, 9u64), (4, 10), (9, 10), (1, 10), (6, 8)]
        .iter()
        .map(|&(old, new)| {
            let proof = tree.consistency_proof(old, new).expect("proof");
            json!({
                "old_size": old,
                "new_size": new,
                "old_root_hex": h(&tree.root(old).expect("root")),
                "new_root_hex": h(&tree.root(new).expect("root")),
                "proof_hex": proof.iter().map(|p| h(p)).collect::<Vec<_>>(),
            })
        })
        .collect::<Vec<_>>();
    // tree.hashes for the whole log, written by the store's own TreeFile.
    let dir = tempfile::tempdir().expect("tempdir");
    let tree_path = dir.path().join("tree.hashes");
    {
        let mut tf = TreeFile::open(&tree_path, 0).expect("tree file");
        for lh in &leaf_hashes {
            tf.push(*lh);
        }
        tf.sync().expect("sync");
    }
    let tree_file = std::fs::read(&tree_path).expect("read tree file");
    assert_eq!(tree_file.len() as u64, 32 * stored_hash_count(10));
    let mut entries = Vec::new();
    for level in 0..4u32 {
        for index in 0..(10u64 >> level) {
            let pos = stored_hash_index(level, index);
            let hash = tree.complete_subtree(level, index).expect("subtree");
            entries.push((pos, level, index, hash));
        }
    }
    entries.sort();
    let proof_doc = ProofDocument {
        seq: 3,
        leaf_index: 2,
        tree_size: 9,
        leaf: B64.encode(&built[2].leaf),
        leaf_hash: B64.encode(leaf_hashes[2]),
        proof: tree
            .inclusion_proof(2, 9)
            .expect("proof")
            .iter()
            .map(|p| B64.encode(p))
            .collect(),
        checkpoint: checkpoints[1].1.note.clone(),
    };
    write(
        &out,
        "merkle.json",
        json!({
            "description": "The RFC 6962 tree over the vector log's leaves (leaf index = seq - 1): roots for every size, inclusion and consistency proofs (hashes bottom-up, as RFC 6962 PATH and PROOF), the tree.hashes cache file for all ten leaves with the (level, index) of each stored hash, and what `mailvault proof 3` prints for this log.",
            "leaf_hashes_hex": leaf_hashes.iter().map(|l| h(l)).collect::<Vec<_>>(),
            "roots": roots,
            "inclusion": inclusion,
            "consistency": consistency,
            "tree_hashes": {
                "tree_size": 10,
                "file_hex": h(&tree_file),
                "entries": entries.iter().map(|(pos, level, index, hash)| json!({
                    "position": pos,
                    "level": level,
                    "index": index,
                    "hash_hex": h(hash),
                })).collect::<Vec<_>>(),
            },
            "mailvault_proof_stdout": serde_json::to_string_pretty(&proof_doc).expect("json") + "\n",
        }),
    );

    // (f) key and checkpoints
    let key_path = dir.path().join("signing.key");
    key.write_new(&key_path).expect("write key");
    let private_key_file = std::fs::read_to_string(&key_path).expect("read key");
    let vk = verifier.encode();
    let pubkey_b64 = vk.rsplit('+').next().expect("key part");
    let pubkey = B64.decode(pubkey_b64).expect("base64");
    let cps = checkpoints
        .iter()
        .map(|(seq, signed)| {
            let body = signed.checkpoint.body();
            let (_, sig_line) = signed.note.split_once("\n\n").expect("signature block");
            let blob_b64 = sig_line.trim_end().rsplit(' ').next().expect("signature");
            let blob = B64.decode(blob_b64).expect("base64");
            json!({
                "seq": seq,
                "origin": signed.checkpoint.origin,
                "tree_size": signed.checkpoint.size,
                "root_hex": h(&signed.checkpoint.root),
                "body": body,
                "signature_hex": h(&blob[4..]),
                "signature_line": sig_line,
                "note": signed.note,
            })
        })
        .collect::<Vec<_>>();
    write(
        &out,
        "checkpoint.json",
        json!({
            "description": "The vector log's signing key (Ed25519 from a fixed seed: never use a known seed for a real store), its signed-note key ID, verifier key string and private key file, and the two checkpoint notes of the vector log. Ed25519 signatures are deterministic, so the notes are fixed.",
            "key": {
                "name": ORIGIN,
                "seed_hex": h(&SEED),
                "public_key_hex": h(&pubkey[1..]),
                "key_id_hex": h(&verifier.key_id()),
                "verifier_key": vk,
                "private_key_file": private_key_file,
            },
            "checkpoints": cps,
        }),
    );

    // (g) segments and the rest of a store directory
    let segment_file = |first: u64, last: u64| -> (Vec<u8>, Vec<Value>) {
        let mut file = segment_header(first).to_vec();
        let mut offsets = Vec::new();
        for bt in &built[(first - 1) as usize..last as usize] {
            offsets.push(json!({"seq": bt.seq, "offset": file.len()}));
            file.extend_from_slice(&bt.frame);
        }
        (file, offsets)
    };
    let segment = |first: u64, last: u64| -> Value {
        let (file, offsets) = segment_file(first, last);
        json!({
            "file_name": segment_file_name(first),
            "first_seq": first,
            "last_seq": last,
            "header_hex": h(&segment_header(first)),
            "frames": offsets,
            "file_hex": h(&file),
        })
    };
    let identity = StoreIdentity {
        format: 1,
        origin: ORIGIN.to_string(),
        // As written before signed acknowledgements: the vector files stay as they were.
        signed_acknowledgements: false,
    };
    write(
        &out,
        "segment.json",
        json!({
            "description": "The vector log as segment files: 00000000000000000001.seg (records 1-3 and the checkpoint over them, as a sealed segment ends) and 00000000000000000005.seg (records 5-10, ending with the checkpoint over 1..9). `store_files` completes a store directory around them (log/ holds the segments); tree.hashes is in merkle.json.",
            "segments": [segment(1, 4), segment(5, 10)],
            "store_files": {
                "store.json": serde_json::to_string_pretty(&identity).expect("json") + "\n",
                "signing.pub": format!("{vk}\n"),
                "signing.key": private_key_file,
            },
        }),
    );

    // (h) the offload receipt of segment 1 (record 11, after the vector log) and the stub
    // that replaces the segment's file when it is evicted
    let (segment_1, _) = segment_file(1, 4);
    write(
        &out,
        "offload.json",
        offload_vectors(&segment_1, &built[9].chain, dir.path()),
    );

    // The worked example of docs/FORMAT.md: the audit frame of record 3.
    println!("record 3 frame ({} bytes):", built[2].frame.len());
    print!("{}", hexdump(&built[2].frame));
}

/// 2034-01-01T00:00:00Z in seconds since the Unix epoch: the receipt's retain-until date.
const RETAIN_UNTIL: i64 = 2_019_686_400;
/// The object version the receipt names (an S3 version id is an opaque string).
const VERSION_ID: &str = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo";

/// `offload.json`: record 11, the offload receipt of segment 1 (`segment_1`, the file's
/// bytes) appended after the vector log (whose last chain hash is `chain_10`), and the
/// eviction stub of segment 1 that names it, made by the store's own code in `scratch`.
fn offload_vectors(segment_1: &[u8], chain_10: &[u8; 32], scratch: &Path) -> Value {
    let receipt = OffloadReceipt {
        segment: 1,
        segment_len: segment_1.len() as u64,
        segment_hash: *blake3::hash(segment_1).as_bytes(),
        retain_until: RETAIN_UNTIL,
        bucket: "mailvault-archive".into(),
        key: format!("mailvault/{ORIGIN}/log/{}", segment_file_name(1)),
        version_id: VERSION_ID.into(),
    };
    let time_us = T0 + 3_603_000_000;
    let leaf = Leaf {
        seq: 11,
        time_us,
        body: LeafBody::Offload(receipt.clone()),
    }
    .encode();
    let chain = chain_next(chain_10, &leaf);
    let frame = encode_frame(RecordKind::Offload, Codec::Raw, &chain, &leaf, &[]).expect("frame");

    let log = scratch.join("evicted-log");
    std::fs::create_dir_all(&log).expect("log dir");
    let path = log.join(segment_file_name(1));
    std::fs::write(&path, segment_1).expect("segment file");
    let stub = EvictedSegment::describe(&path, 11, &receipt).expect("stub");
    let stub_text = String::from_utf8(stub.encode()).expect("a stub is JSON");
    let frames: Vec<Value> = stub
        .frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "seq": 1 + i as u64,
                "offset": f.offset,
                "length": f.len,
                "leaf_hash_hex": h(&f.leaf_hash),
            })
        })
        .collect();
    json!({
        "description": "An offload receipt and an eviction stub (docs/FORMAT.md, offload (6) and Evicted segments). `record` is record 11, appended after the ten-record vector log (chain from h_10 of chain.json; not in segment.json's files): the receipt of segment 00000000000000000001.seg of segment.json, stored as `key`, version `version_id`, in `bucket`, locked until `retain_until`. `stub` is the file 00000000000000000001.evicted that replaces that segment's file when it is evicted: its exact bytes as the store writes them, and its frame table decoded (offsets and lengths of segment.json's frames, leaf hashes of merkle.json).",
        "record": {
            "seq": 11,
            "kind": "offload",
            "kind_byte": RecordKind::Offload as u8,
            "time_us": time_us,
            "segment": receipt.segment,
            "segment_len": receipt.segment_len,
            "segment_blake3_hex": h(&receipt.segment_hash),
            "retain_until": receipt.retain_until,
            "retain_until_utc": "2034-01-01T00:00:00Z",
            "bucket": receipt.bucket,
            "key": receipt.key,
            "version_id": receipt.version_id,
            "leaf_hex": h(&leaf),
            "leaf_hash_hex": h(&leaf_hash(&leaf)),
            "previous_chain_hex": h(chain_10),
            "chain_hex": h(&chain),
            "frame_hex": h(&frame),
        },
        "stub": {
            "file_name": stub_file_name(1),
            "file_text": stub_text,
            "frames": frames,
        },
    })
}

/// The document `mailvault proof` prints (src/cmd/proof.rs), field for field.
#[derive(serde::Serialize)]
struct ProofDocument {
    seq: u64,
    leaf_index: u64,
    tree_size: u64,
    leaf: String,
    leaf_hash: String,
    proof: Vec<String>,
    checkpoint: String,
}

fn hexdump(b: &[u8]) -> String {
    let mut s = String::new();
    for (i, chunk) in b.chunks(16).enumerate() {
        let hexes: Vec<String> = chunk.iter().map(|x| format!("{x:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&x| if (0x20..0x7f).contains(&x) { x as char } else { '.' })
            .collect();
        s.push_str(&format!("{:04x}  {:<47}  |{ascii}|\n", i * 16, hexes.join(" ")));
    }
    s
}

fn write(dir: &Path, name: &str, v: Value) {
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(&v).expect("json") + "\n";
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!("wrote {}", path.display());
}
