//! Tamper evidence: every kind of change to the log makes `verify` exit 1 and name the seq;
//! a kept checkpoint exposes a rewritten or rolled-back history.

use std::path::{Path, PathBuf};

use archive_core::log::record::{chain_next, encode_frame, Codec, Leaf, LeafBody, RecordKind};

use crate::util::{files_under, fixtures, frames, make_writable, Vault};

/// A store holding messages 1..=10, checkpoint 11, messages 12..=21, checkpoint 22.
fn two_imports() -> Vault {
    let vault = Vault::new();
    let corpus = files_under(&fixtures().join("corpus/spamassassin"));
    let staging = vault.dir.with_file_name("staging");
    for (round, chunk) in corpus.chunks(10).take(2).enumerate() {
        let d = staging.join(round.to_string());
        std::fs::create_dir_all(&d).unwrap();
        for f in chunk {
            std::fs::copy(f, d.join(f.file_name().unwrap())).unwrap();
        }
        vault.import(&[&d]);
    }
    let kinds: Vec<String> = String::from_utf8(vault.ok(&["log", "--json"]))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds.len(), 22);
    assert_eq!(kinds[10], "checkpoint");
    assert_eq!(kinds[21], "checkpoint");
    assert_eq!(vault.verify(&[]).0, 0);
    vault
}

fn segment(vault: &Vault) -> (PathBuf, Vec<u8>) {
    let segs = vault.segments();
    assert_eq!(segs.len(), 1);
    make_writable(&segs[0]);
    let bytes = std::fs::read(&segs[0]).unwrap();
    (segs[0].clone(), bytes)
}

fn assert_tampered_at(vault: &Vault, seq: u64) -> String {
    let (code, out) = vault.verify(&[]);
    assert_eq!(code, 1, "verify must report tampering: {out}");
    assert!(
        out.contains(&format!("seq {seq}:")),
        "verify must name seq {seq}: {out}"
    );
    out
}

/// A decoded frame, for an attacker who rewrites the log with the crate's own encoder.
struct Frame {
    kind: RecordKind,
    codec: Codec,
    leaf: Vec<u8>,
    payload: Vec<u8>,
}

fn decode(segment: &[u8]) -> Vec<Frame> {
    frames(segment)
        .into_iter()
        .map(|(at, len)| {
            let f = &segment[at..at + len];
            let leaf_len = u32::from_be_bytes(f[48..52].try_into().unwrap()) as usize;
            Frame {
                kind: RecordKind::from_byte(f[8]).unwrap(),
                codec: if f[9] == 1 { Codec::Zstd } else { Codec::Raw },
                leaf: f[52..52 + leaf_len].to_vec(),
                payload: f[52 + leaf_len..].to_vec(),
            }
        })
        .collect()
}

/// Re-chains and re-frames every record, as a forger without the signing key would.
fn rewrite(path: &Path, original: &[u8], records: &[Frame]) {
    let mut out = original[..16].to_vec();
    let mut chain = [0u8; 32];
    for r in records {
        chain = chain_next(&chain, &r.leaf);
        out.extend(encode_frame(r.kind, r.codec, &chain, &r.leaf, &r.payload).unwrap());
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn flipped_byte_in_a_compressed_payload() {
    let vault = two_imports();
    let (path, mut bytes) = segment(&vault);
    let (at, len) = frames(&bytes)[4];
    bytes[at + len - 10] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    assert_tampered_at(&vault, 5);
}

#[test]
fn flipped_byte_in_a_record_header() {
    let vault = two_imports();
    let (path, mut bytes) = segment(&vault);
    let (at, _) = frames(&bytes)[6];
    bytes[at + 8] ^= 0x03; // the kind byte
    std::fs::write(&path, &bytes).unwrap();
    assert_tampered_at(&vault, 7);
    bytes[at + 8] ^= 0x03;
    bytes[at + 5] ^= 0x40; // the length
    std::fs::write(&path, &bytes).unwrap();
    assert_tampered_at(&vault, 7);
}

#[test]
fn flipped_byte_in_a_checkpoint_signature_even_with_frames_and_chain_redone() {
    let vault = two_imports();
    let (path, bytes) = segment(&vault);
    let mut records = decode(&bytes);
    let leaf = Leaf::decode(&records[10].leaf).unwrap();
    let LeafBody::Checkpoint { note } = leaf.body else {
        panic!("seq 11 is a checkpoint")
    };
    let mut note = String::from_utf8(note).unwrap();
    let sig_at = note.rfind(' ').unwrap() + 10;
    let flipped = if &note[sig_at..sig_at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    note.replace_range(sig_at..sig_at + 1, flipped);
    records[10].leaf = Leaf {
        body: LeafBody::Checkpoint {
            note: note.into_bytes(),
        },
        ..leaf
    }
    .encode();
    rewrite(&path, &bytes, &records);
    let out = assert_tampered_at(&vault, 11);
    assert!(out.contains("signature"), "{out}");
}

#[test]
fn last_segment_truncated_mid_record() {
    let vault = two_imports();
    let (path, bytes) = segment(&vault);
    let (at, len) = *frames(&bytes).last().unwrap();
    std::fs::write(&path, &bytes[..at + len / 2]).unwrap();
    assert_tampered_at(&vault, 22);
}

#[test]
fn a_whole_record_deleted() {
    let vault = two_imports();
    let (path, bytes) = segment(&vault);
    let (at, len) = frames(&bytes)[3];
    let mut cut = bytes[..at].to_vec();
    cut.extend_from_slice(&bytes[at + len..]);
    std::fs::write(&path, cut).unwrap();
    assert_tampered_at(&vault, 4);
}

#[test]
fn two_records_swapped() {
    let vault = two_imports();
    let (path, bytes) = segment(&vault);
    let f = frames(&bytes);
    let (a, alen) = f[3];
    let (b, blen) = f[4];
    let mut swapped = bytes[..a].to_vec();
    swapped.extend_from_slice(&bytes[b..b + blen]);
    swapped.extend_from_slice(&bytes[a..a + alen]);
    swapped.extend_from_slice(&bytes[b + blen..]);
    std::fs::write(&path, swapped).unwrap();
    assert_tampered_at(&vault, 4);
}

#[test]
fn a_rechained_forgery_made_without_the_key() {
    let vault = two_imports();
    let (path, bytes) = segment(&vault);
    let mut records = decode(&bytes);
    // Replace message 3 with other content, with a correct content hash, leaf, chain and CRC.
    let forged = b"From: ceo@example.com\r\nSubject: nothing to see\r\n\r\nreplaced\r\n".to_vec();
    let leaf = Leaf::decode(&records[2].leaf).unwrap();
    let LeafBody::Message { envelope, .. } = leaf.body else {
        panic!("seq 3 is a message")
    };
    records[2].leaf = Leaf {
        body: LeafBody::Message {
            content_hash: *blake3::hash(&forged).as_bytes(),
            content_len: forged.len() as u64,
            envelope,
        },
        ..leaf
    }
    .encode();
    records[2].codec = Codec::Raw;
    records[2].payload = forged;
    rewrite(&path, &bytes, &records);
    let out = assert_tampered_at(&vault, 11);
    assert!(out.contains("1..10"), "names the altered range: {out}");
}

#[test]
fn a_kept_checkpoint_exposes_a_rewritten_or_rolled_back_history() {
    let honest = two_imports();
    let cp = honest.dir.with_file_name("kept-checkpoint.txt");
    std::fs::write(&cp, honest.ok(&["checkpoint"])).unwrap();
    let pubkey = String::from_utf8(honest.ok(&["key", "show"])).unwrap();
    let cp_arg = cp.display().to_string();
    assert_eq!(honest.verify(&["--checkpoint", &cp_arg]).0, 0);

    // The key holder replaces the store with a different history of the same and of greater
    // length: same identity and key, other messages.
    for extra in [0usize, 15] {
        let forged = Vault::new();
        std::fs::create_dir_all(forged.dir.join("log")).unwrap();
        for f in ["store.json", "signing.key", "signing.pub"] {
            std::fs::copy(honest.dir.join(f), forged.dir.join(f)).unwrap();
        }
        let other = forged.dir.with_file_name("other");
        std::fs::create_dir_all(&other).unwrap();
        for (i, f) in files_under(&fixtures().join("corpus/spamassassin"))
            .iter()
            .rev()
            .take(20 + extra)
            .enumerate()
        {
            std::fs::copy(f, other.join(format!("{i:03}.eml"))).unwrap();
        }
        forged.import(&[&other]);
        assert_eq!(forged.verify(&[]).0, 0, "on its own the forgery is a valid log");
        let (code, out) = forged.verify(&["--checkpoint", &cp_arg, "--pubkey", pubkey.trim()]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("rewritten") || out.contains("removed"), "{out}");
    }

    // Truncation (rollback to a shorter log) is caught too.
    let short = Vault::new();
    std::fs::create_dir_all(short.dir.join("log")).unwrap();
    for f in ["store.json", "signing.key", "signing.pub"] {
        std::fs::copy(honest.dir.join(f), short.dir.join(f)).unwrap();
    }
    let few = short.dir.with_file_name("few");
    std::fs::create_dir_all(&few).unwrap();
    for f in files_under(&fixtures().join("corpus/spamassassin"))
        .iter()
        .take(5)
    {
        std::fs::copy(f, few.join(f.file_name().unwrap())).unwrap();
    }
    short.import(&[&few]);
    let (code, out) = short.verify(&["--checkpoint", &cp_arg]);
    assert_eq!(code, 1, "{out}");

    // An honest, longer history passes.
    let more = honest.dir.with_file_name("more");
    std::fs::create_dir_all(&more).unwrap();
    for f in files_under(&fixtures().join("corpus/spamassassin"))
        .iter()
        .skip(100)
        .take(7)
    {
        std::fs::copy(f, more.join(f.file_name().unwrap())).unwrap();
    }
    honest.import(&[&more]);
    let (code, out) = honest.verify(&["--checkpoint", &cp_arg, "--pubkey", pubkey.trim()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pinned checkpoint of size 21: consistent"), "{out}");
}

#[test]
fn a_log_rewritten_under_a_new_key_fails_against_a_kept_checkpoint() {
    let honest = two_imports();
    let cp = honest.dir.with_file_name("kept-checkpoint.txt");
    std::fs::write(&cp, honest.ok(&["checkpoint"])).unwrap();
    // The whole store replaced by one with its own key and signing.pub: on its own it verifies.
    let replaced = Vault::new();
    let other = replaced.dir.with_file_name("other");
    std::fs::create_dir_all(&other).unwrap();
    for f in files_under(&fixtures().join("corpus/spamassassin"))
        .iter()
        .take(3)
    {
        std::fs::copy(f, other.join(f.file_name().unwrap())).unwrap();
    }
    replaced.import(&[&other]);
    assert_eq!(replaced.verify(&[]).0, 0);
    // The auditor's kept checkpoint is not signed by the key the store now carries: tampering
    // (exit 1), not a usage error.
    let (code, out) = replaced.verify(&["--checkpoint", &cp.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TAMPERED") && out.contains("not signed by this log's key"),
        "{out}"
    );
    // An unreadable checkpoint file is still a usage/I-O error.
    let (code, _) = replaced.verify(&["--checkpoint", "/nonexistent/kept.txt"]);
    assert_eq!(code, 2);
}

/// A record appended after the newest checkpoint by someone without the key (correct chain
/// and CRC, built from FORMAT.md) is its own failure class in `verify`, and the next start
/// moves it to quarantine — audited, listed by `status`, never signed.
#[test]
fn an_unsigned_record_is_reported_then_quarantined_never_signed() {
    let vault = two_imports();
    let (path, bytes) = segment(&vault);
    let records = decode(&bytes);
    let last = records.last().unwrap();
    let leaf = Leaf::decode(&last.leaf).unwrap();
    let chain = records
        .iter()
        .fold([0u8; 32], |chain, r| chain_next(&chain, &r.leaf));
    let forged_body = b"From: ceo@example.com\r\nSubject: backdated\r\n\r\nplanted\r\n".to_vec();
    let planted = Leaf {
        seq: leaf.seq + 1,
        time_us: leaf.time_us + 1,
        body: LeafBody::Message {
            content_hash: *blake3::hash(&forged_body).as_bytes(),
            content_len: forged_body.len() as u64,
            envelope: archive_core::Envelope::lmtp("ceo@example.com", &["auditor@example.com"]).encode(),
        },
    }
    .encode();
    let frame = encode_frame(
        RecordKind::Message,
        Codec::Raw,
        &chain_next(&chain, &planted),
        &planted,
        &forged_body,
    )
    .unwrap();
    let mut with_forgery = bytes.clone();
    with_forgery.extend_from_slice(&frame);
    std::fs::write(&path, &with_forgery).unwrap();

    let (code, out) = vault.verify(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("UNSIGNED: records 23..23"), "{out}");

    let server = vault.serve(&[]);
    let log = server.log.clone();
    assert_eq!(server.stop(), Some(0));
    let log = log.lock().unwrap().clone();
    assert!(log.contains("recovery cut"), "{log}");
    let (code, out) = vault.verify(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("quarantine: "), "{out}");
    let status: serde_json::Value = serde_json::from_slice(&vault.ok(&["status", "--json"])).unwrap();
    let kept = status["quarantine"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{status}");
    assert_eq!(std::fs::read(kept[0]["path"].as_str().unwrap()).unwrap(), frame);
    let records = vault.records();
    let cut = records
        .iter()
        .find(|r| r["kind"] == "audit")
        .expect("an audit record");
    assert_eq!(
        cut["seq"], 23,
        "the recovery's record takes the forgery's place: {cut}"
    );
    assert!(
        records
            .iter()
            .filter(|r| r["kind"] == "message")
            .all(|r| r["blake3"] != blake3::hash(&forged_body).to_hex().as_str()),
        "the forgery is not in the log"
    );
}

/// A store whose log holds the audit records of `user add` and `user disable` (appended
/// directly: no server runs), each with its checkpoint.
fn audited_vault() -> (Vault, Vec<serde_json::Value>) {
    let vault = Vault::new();
    vault.ok(&["init"]);
    vault.ok_in(
        &["user", "add", "alice", "--address", "alice@example.com"],
        Some(b"a long enough password\n"),
    );
    vault.ok(&["user", "disable", "alice"]);
    let records = vault.records();
    assert_eq!(vault.verify(&[]).0, 0);
    (vault, records)
}

fn seq_of_audit(records: &[serde_json::Value], action: &str) -> u64 {
    records
        .iter()
        .find(|r| r["kind"] == "audit" && r["audit"]["action"] == action)
        .unwrap_or_else(|| panic!("no {action} record: {records:#?}"))["seq"]
        .as_u64()
        .unwrap()
}

#[test]
fn an_altered_audit_record_is_detected_by_verify() {
    let (vault, records) = audited_vault();
    let seq = seq_of_audit(&records, "user-add");
    let (path, original) = segment(&vault);
    // A flipped byte inside the event's JSON (the last byte of the leaf).
    let mut bytes = original.clone();
    let (at, _) = frames(&bytes)[seq as usize - 1];
    let leaf_len = u32::from_be_bytes(bytes[at + 48..at + 52].try_into().unwrap()) as usize;
    bytes[at + 52 + leaf_len - 2] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    assert_tampered_at(&vault, seq);

    // The same event rewritten to blame someone else, with leaf, chain and CRCs redone
    // without the key: the signed checkpoint over it no longer matches.
    let mut frames = decode(&original);
    let leaf = Leaf::decode(&frames[seq as usize - 1].leaf).unwrap();
    let LeafBody::Audit { event } = leaf.body else {
        panic!("seq {seq} is an audit record")
    };
    let mut event: serde_json::Value = serde_json::from_slice(&event).unwrap();
    event["actor"] = serde_json::json!("cli:somebody-else");
    frames[seq as usize - 1].leaf = Leaf {
        body: LeafBody::Audit {
            event: serde_json::to_vec(&event).unwrap(),
        },
        ..leaf
    }
    .encode();
    rewrite(&path, &original, &frames);
    let (code, out) = vault.verify(&[]);
    assert_eq!(code, 1, "verify must report the rewritten audit record: {out}");
    assert!(out.contains("TAMPERED"), "{out}");
}
