//! `mailvault export` and `verify-bundle`: bundles verify offline with the data directory
//! gone, by our verifier and by an independent Python script; every kind of tampering is
//! detected and named; range exports are provably complete; a kept checkpoint exposes a
//! rewritten history.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::intake::lmtp_send;
use crate::util::{files_under, fixtures, incompressible_message, sha256_hex, Vault};

/// An archive of real mail: 10 imported messages; over LMTP a new message, the same bytes
/// again (an arrival record) and a 3 MB message; 10 more imported. Checkpoints between.
pub(crate) struct Archive {
    pub(crate) vault: Vault,
    /// The checkpoint note after the first import (a recipient may have kept it).
    early_checkpoint: String,
    /// Every message and arrival record: (seq, kind).
    pub(crate) messages: Vec<(u64, String)>,
    pub(crate) key: String,
}

pub(crate) fn archive() -> Archive {
    let vault = Vault::new();
    let corpus = files_under(&fixtures().join("corpus/spamassassin"));
    let staging = vault.dir.with_file_name("staging");
    let import_chunk = |round: usize, files: &[PathBuf]| {
        let d = staging.join(round.to_string());
        std::fs::create_dir_all(&d).unwrap();
        for f in files {
            std::fs::copy(f, d.join(f.file_name().unwrap())).unwrap();
        }
        vault.import(&[&d]);
    };
    import_chunk(0, &corpus[..10]);
    let early_checkpoint = String::from_utf8(vault.ok(&["checkpoint"])).unwrap();
    let server = vault.serve(&[]);
    let body = b"From: Jane <jane@example.com>\r\nTo: a@example.com\r\nSubject: twice, \"quoted\"\r\n\r\nsame bytes\r\n";
    let (first, _) = lmtp_send(server.lmtp, body).expect("delivered");
    let (again, _) = lmtp_send(server.lmtp, body).expect("delivered again");
    assert!(again > first);
    lmtp_send(server.lmtp, &incompressible_message("big one", 3 << 20)).expect("3 MB delivered");
    assert_eq!(server.stop(), Some(0));
    import_chunk(1, &corpus[10..20]);
    let messages: Vec<(u64, String)> = vault
        .records()
        .iter()
        .filter(|r| r["kind"] == "message" || r["kind"] == "arrival")
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(messages.iter().any(|(_, k)| k == "arrival"), "{messages:?}");
    let key = vault.public_key();
    Archive {
        vault,
        early_checkpoint,
        messages,
        key,
    }
}

/// `verify-bundle BUNDLE` with nothing else to go by (no data directory).
pub(crate) fn verify_bundle_here(bundle: &Path) -> Output {
    verify_bundle(bundle, &[])
}

fn verify_bundle(bundle: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .arg("verify-bundle")
        .arg(bundle)
        .args(extra)
        .env_remove("MAILVAULT_DATA")
        .output()
        .expect("run verify-bundle")
}

pub(crate) fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

pub(crate) fn export(archive: &Archive, args: &[&str], out: &Path) {
    let mut all = vec!["export", "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    archive.vault.ok(&all);
}

/// The time window of the LMTP deliveries, RFC 3339: from the first delivery to before the
/// first message after them (of the second import).
pub(crate) fn lmtp_window(archive: &Archive) -> (String, String) {
    let records = archive.vault.records();
    let lmtp: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["sender"] == "c@example.com")
        .collect();
    assert_eq!(lmtp.len(), 3, "{records:?}");
    let since = lmtp[0]["time"].as_str().unwrap().to_string();
    let after_last_lmtp = records
        .iter()
        .find(|r| r["seq"].as_u64() > lmtp[2]["seq"].as_u64() && r["kind"] == "message")
        .unwrap();
    (since, after_last_lmtp["time"].as_str().unwrap().to_string())
}

pub(crate) fn last_seq(archive: &Archive) -> u64 {
    archive.messages.last().unwrap().0
}

#[test]
fn a_range_bundle_verifies_offline_without_the_archive_and_by_an_independent_script() {
    let archive = archive();
    let elsewhere = tempfile::tempdir().unwrap();
    let bundle = elsewhere.path().join("range.zip");
    let last = last_seq(&archive).to_string();
    export(&archive, &["--from-seq", "1", "--to-seq", &last], &bundle);
    // An export never overwrites.
    let again = archive.vault.run(&[
        "export",
        "--from-seq",
        "1",
        "--to-seq",
        "2",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("exists"));

    // The export is in the access trail, naming the bundle by its SHA-256.
    let trail = String::from_utf8(archive.vault.ok(&["audit", "--action", "export", "--json"])).unwrap();
    let records: Vec<serde_json::Value> = trail.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 1, "{trail}");
    let sha256 = sha256_hex(&std::fs::read(&bundle).unwrap());
    let target = records[0]["target"].as_str().unwrap();
    assert!(target.contains(&format!("sha256 {sha256}")), "{target}");
    assert!(target.contains(&format!("range 1..={last}")), "{target}");

    // The recipient's copy, with the archive gone.
    let copy = tempfile::tempdir().unwrap();
    let received = copy.path().join("received.zip");
    std::fs::copy(&bundle, &received).unwrap();
    let key = archive.key.clone();
    let messages = archive.messages.clone();
    std::fs::remove_dir_all(&archive.vault.dir).unwrap();
    drop(archive);

    let out = verify_bundle(&received, &["--key", &key]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains(&format!("VALID: {} messages authentic", messages.len())),
        "{report}"
    );
    assert!(
        report.contains("complete: the bundle holds every record from 1 to"),
        "{report}"
    );
    assert!(!report.contains("no key pinned"), "{report}");

    let json = verify_bundle(&received, &["--key", &key, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    let seqs: Vec<u64> = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, messages.iter().map(|(s, _)| *s).collect::<Vec<_>>());

    // Byte-exact: the 3 MB message is in the bundle as delivered.
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&received).unwrap()).unwrap();
    let big = (1..=messages.len())
        .filter_map(|i| {
            let mut f = zip.by_name(&format!("messages/{}.eml", messages[i - 1].0)).ok()?;
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (b.len() > 3 << 20).then_some(b)
        })
        .next()
        .expect("the 3 MB message");
    assert_eq!(big, incompressible_message("big one", 3 << 20));

    // The GDPdU description validates against the published DTD, next to the listing it describes.
    let gdpdu = tempfile::tempdir().unwrap();
    for name in ["index.xml", "gdpdu-01-09-2004.dtd", "messages.csv"] {
        std::fs::write(gdpdu.path().join(name), entry(&received, name)).unwrap();
    }
    let xmllint = Command::new("xmllint")
        .args(["--noout", "--valid", "index.xml"])
        .current_dir(gdpdu.path())
        .output()
        .expect("xmllint (Debian libxml2-utils) is installed");
    assert!(xmllint.status.success(), "{}", text(&xmllint));
    let index = String::from_utf8(entry(&received, "index.xml")).unwrap();
    assert!(
        index.contains(&format!("<To>{}</To>", messages.len() + 1)),
        "{index}"
    );

    // Checked by code that is not ours: Python's hashlib, cryptography and blake3.
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/testsuite/bundle_check.py"
    ))
    .unwrap();
    let lines = crate::util::python_json(&script, &[received.display().to_string(), key.clone()]);
    let summary = lines.last().unwrap();
    assert_eq!(summary["ok"], true, "{lines:?}");
    assert_eq!(summary["messages"].as_u64(), Some(messages.len() as u64));
}

#[test]
fn time_range_and_filtered_exports_say_what_they_prove() {
    let archive = archive();
    let dir = tempfile::tempdir().unwrap();
    let (since, until) = lmtp_window(&archive);
    let first_lmtp = archive
        .vault
        .records()
        .into_iter()
        .find(|r| r["sender"] == "c@example.com")
        .unwrap()["seq"]
        .clone();
    let bundle = dir.path().join("window.zip");
    export(&archive, &["--since", &since, "--until", &until], &bundle);
    let out = verify_bundle(&bundle, &["--key", &archive.key]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = text(&out);
    assert!(report.contains("VALID: 3 messages authentic"), "{report}");
    assert!(
        report.contains(&format!("every record from {first_lmtp}")),
        "{report}"
    );

    // A filter proves authenticity only, and says so.
    let filtered = dir.path().join("filter.zip");
    export(&archive, &["--query", "subject:twice"], &filtered);
    let out = verify_bundle(&filtered, &["--key", &archive.key]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = text(&out);
    assert!(report.contains("VALID: 2 messages authentic"), "{report}");
    assert!(report.contains("cannot be proven offline"), "{report}");
    assert!(!report.contains("complete:"), "{report}");

    // Nothing selected, or an empty window: a clear refusal, no file.
    let none = dir.path().join("none.zip");
    let out = archive.vault.run(&["export", "--out", none.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("nothing selected"), "{}", text(&out));
    let out = archive.vault.run(&[
        "export",
        "--since",
        "1999-01-01",
        "--until",
        "1999-02-01",
        "--out",
        none.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no record was received"), "{}", text(&out));
    assert!(!none.exists());
}

/// Rewrites a ZIP entry by entry: `change` gets each name and content and returns what to
/// write (`None` drops the entry); `add` entries are appended.
pub(crate) fn rewrite(
    src: &Path,
    dst: &Path,
    change: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>,
    add: &[(String, Vec<u8>)],
) {
    let mut input = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut output = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for i in 0..input.len() {
        let mut entry = input.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if let Some(bytes) = change(&name, bytes) {
            output.start_file(name, options).unwrap();
            output.write_all(&bytes).unwrap();
        }
    }
    for (name, bytes) in add {
        output.start_file(name.as_str(), options).unwrap();
        output.write_all(bytes).unwrap();
    }
    output.finish().unwrap();
}

pub(crate) fn entry(bundle: &Path, name: &str) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(bundle).unwrap()).unwrap();
    let mut f = zip.by_name(name).unwrap();
    let mut b = Vec::new();
    f.read_to_end(&mut b).unwrap();
    b
}

/// What a tampering case does to each entry (name, content): new content, or `None` to drop it.
type Change = Box<dyn Fn(&str, Vec<u8>) -> Option<Vec<u8>>>;

/// A change that replaces the first `from` by `to` in entry `name`.
fn replace_in(name: &'static str, from: &'static str, to: &'static str) -> Change {
    Box::new(move |n, b| {
        Some(match n == name {
            true => String::from_utf8(b).unwrap().replacen(from, to, 1).into_bytes(),
            false => b,
        })
    })
}

fn flip_in_middle(mut bytes: Vec<u8>) -> Vec<u8> {
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    bytes
}

#[test]
fn every_kind_of_tampering_is_detected_and_named() {
    let archive = archive();
    let dir = tempfile::tempdir().unwrap();
    // A range in the middle, holding the arrival and the 3 MB message.
    let arrival = archive.messages.iter().find(|(_, k)| k == "arrival").unwrap().0;
    let first = arrival - 1;
    let last = archive.messages.iter().find(|(s, _)| *s > arrival + 1).unwrap().0;
    let bundle = dir.path().join("b.zip");
    export(
        &archive,
        &["--from-seq", &first.to_string(), "--to-seq", &last.to_string()],
        &bundle,
    );
    assert_eq!(
        verify_bundle(&bundle, &["--key", &archive.key]).status.code(),
        Some(0)
    );
    let outside = archive.messages.iter().find(|(s, _)| *s > last).unwrap().0;
    let wider = dir.path().join("wider.zip");
    export(
        &archive,
        &["--from-seq", &first.to_string(), "--to-seq", &outside.to_string()],
        &wider,
    );

    let eml = format!("messages/{arrival}.eml");
    let big_len = entry(&bundle, &eml).len();
    let proof = format!("proofs/{arrival}.json");
    let leaves = entry(&bundle, "range/leaves.jsonl");
    let leaf_lines: Vec<&[u8]> = leaves.split_inclusive(|b| *b == b'\n').collect();
    type Case = (&'static str, Change, Vec<(String, Vec<u8>)>, String);
    let cases: Vec<Case> = vec![
        (
            "a byte of a message",
            Box::new({
                let eml = eml.clone();
                move |n, b| Some(if n == eml { flip_in_middle(b) } else { b })
            }),
            vec![],
            format!("{eml} is not the archived message"),
        ),
        (
            "a message swapped for a ZIP bomb",
            Box::new({
                let eml = eml.clone();
                move |n, b| Some(if n == eml { vec![b'\n'; 64 << 20] } else { b })
            }),
            vec![],
            format!(
                "{eml} is not the archived message: the archive recorded {big_len} bytes, the file has more"
            ),
        ),
        (
            "a CSV row",
            replace_in("messages.csv", "twice", "thrice"),
            vec![],
            "messages.csv: the row of message".to_string(),
        ),
        (
            "a JSON row",
            replace_in("messages.json", "twice", "thrice"),
            vec![],
            "messages.json: the object of message".to_string(),
        ),
        (
            "a hash of an inclusion proof",
            Box::new({
                let proof = proof.clone();
                move |n, b| {
                    Some(if n == proof {
                        let mut doc: serde_json::Value = serde_json::from_slice(&b).unwrap();
                        doc["proof"][0] = serde_json::Value::String(base64_of(&[7u8; 32]));
                        serde_json::to_vec(&doc).unwrap()
                    } else {
                        b
                    })
                }
            }),
            vec![],
            format!("{proof}: the inclusion proof does not lead to the signed root"),
        ),
        (
            "the checkpoint",
            Box::new(move |n, b| {
                Some(if n == "checkpoint.txt" {
                    let t = String::from_utf8(b).unwrap();
                    let mut lines: Vec<String> = t.split('\n').map(str::to_string).collect();
                    let size: u64 = lines[1].parse().unwrap();
                    lines[1] = (size + 1).to_string();
                    lines.join("\n").into_bytes()
                } else {
                    b
                })
            }),
            vec![],
            "checkpoint.txt: checkpoint signature does not verify".to_string(),
        ),
        (
            "the README's instructions",
            replace_in("README.txt", "--key", "--no-key"),
            vec![],
            "README.txt is not the text".to_string(),
        ),
        (
            "a message dropped with its proof and rows",
            Box::new({
                let (eml, proof) = (eml.clone(), proof.clone());
                move |n, b| {
                    if n == eml || n == proof {
                        return None;
                    }
                    Some(match n {
                        "messages.csv" | "messages.json" => drop_row(b, arrival),
                        "bundle.json" => {
                            let mut m: serde_json::Value = serde_json::from_slice(&b).unwrap();
                            m["message_count"] = (m["message_count"].as_u64().unwrap() - 1).into();
                            serde_json::to_vec(&m).unwrap()
                        }
                        _ => b,
                    })
                }
            }),
            vec![],
            format!("record {arrival} of the range is a message, but {eml} is not in the bundle"),
        ),
        (
            "a message dropped with its leaf too",
            Box::new({
                let (eml, proof) = (eml.clone(), proof.clone());
                let leaf_line = leaf_lines[(arrival - first) as usize].to_vec();
                move |n, b| {
                    if n == eml || n == proof {
                        return None;
                    }
                    Some(if n == "range/leaves.jsonl" {
                        let text = String::from_utf8(b).unwrap();
                        text.replacen(std::str::from_utf8(&leaf_line).unwrap(), "", 1)
                            .into_bytes()
                    } else {
                        b
                    })
                }
            }),
            vec![],
            format!("record {} is where record {arrival} belongs", arrival + 1),
        ),
        (
            "a message from outside the range added",
            Box::new(|_, b| Some(b)),
            vec![
                (
                    format!("messages/{outside}.eml"),
                    entry(&wider, &format!("messages/{outside}.eml")),
                ),
                (
                    format!("proofs/{outside}.json"),
                    entry(&wider, &format!("proofs/{outside}.json")),
                ),
            ],
            format!("messages/{outside}.eml is not a message record of the range"),
        ),
        (
            "the GDPdU description",
            replace_in("index.xml", "<Numeric>", "<AlphaNumeric/><Numeric>"),
            vec![],
            "index.xml is not the GDPdU description".to_string(),
        ),
        (
            "the DTD",
            Box::new(move |n, b| {
                Some(if n == "gdpdu-01-09-2004.dtd" {
                    b"<!ELEMENT DataSet ANY>".to_vec()
                } else {
                    b
                })
            }),
            vec![],
            "gdpdu-01-09-2004.dtd is not the published GDPdU DTD".to_string(),
        ),
        (
            "a file that is not part of a bundle",
            Box::new(|_, b| Some(b)),
            vec![("invoice.pdf".to_string(), b"%PDF".to_vec())],
            "unexpected file \"invoice.pdf\"".to_string(),
        ),
    ];
    for (what, change, add, expected) in cases {
        let tampered = dir.path().join("tampered.zip");
        rewrite(&bundle, &tampered, change, &add);
        let out = verify_bundle(&tampered, &["--key", &archive.key]);
        let report = text(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {report}");
        assert!(
            report.contains(&expected),
            "{what}: expected {expected:?} in\n{report}"
        );
        assert!(report.contains("NOT VALID"), "{what}: {report}");
    }

    // A different archive's key pinned: refused, naming both keys.
    let other = Vault::new();
    other.ok(&["init"]);
    let other_key = other.public_key();
    let out = verify_bundle(&bundle, &["--key", &other_key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not the key you pinned"), "{}", text(&out));
    // Without a pinned key: valid for integrity, with the caveat spelled out.
    let out = verify_bundle(&bundle, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("no key pinned"));
    // Not a ZIP: invalid; no file at all: exit 2.
    let junk = dir.path().join("junk.zip");
    std::fs::write(&junk, b"not a zip at all").unwrap();
    assert_eq!(verify_bundle(&junk, &[]).status.code(), Some(1));
    assert_eq!(
        verify_bundle(&dir.path().join("absent.zip"), &[]).status.code(),
        Some(2)
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The listing without the row of `seq` (CSV: the line starting `seq,`; JSON: its object).
fn drop_row(listing: Vec<u8>, seq: u64) -> Vec<u8> {
    let text = String::from_utf8(listing).unwrap();
    let csv_prefix = format!("{seq},");
    let json_prefix = format!("{{\"seq\":{seq},");
    let mut kept: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| !l.starts_with(&csv_prefix) && !l.trim_start_matches(',').starts_with(&json_prefix))
        .collect();
    // A JSON array whose last object went keeps its shape: the new last object loses its comma.
    if kept.last() == Some(&"]\n") && kept.len() >= 2 {
        let i = kept.len() - 2;
        if let Some(stripped) = kept[i].strip_suffix(",\n") {
            let owned: &'static str = Box::leak(format!("{stripped}\n").into_boxed_str());
            kept[i] = owned;
        }
    }
    kept.concat().into_bytes()
}

#[test]
fn a_kept_checkpoint_proves_the_history_was_only_extended_or_exposes_a_fork() {
    let archive = archive();
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.txt");
    std::fs::write(&kept, &archive.early_checkpoint).unwrap();
    let old_size: u64 = archive.early_checkpoint.lines().nth(1).unwrap().parse().unwrap();
    let last = last_seq(&archive).to_string();

    // Without a consistency proof from that size the bundle cannot show it, and says how to get one.
    let plain = dir.path().join("plain.zip");
    export(&archive, &["--from-seq", "1", "--to-seq", &last], &plain);
    let out = verify_bundle(
        &plain,
        &["--key", &archive.key, "--checkpoint", kept.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("--consistency-from {old_size}")),
        "{}",
        text(&out)
    );

    let proven = dir.path().join("proven.zip");
    export(
        &archive,
        &[
            "--from-seq",
            "1",
            "--to-seq",
            &last,
            "--consistency-from",
            &old_size.to_string(),
        ],
        &proven,
    );
    let out = verify_bundle(
        &proven,
        &["--key", &archive.key, "--checkpoint", kept.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&format!("extends the checkpoint of size {old_size}")));

    // A fork: a copy of the archive (same key) that goes on differently from the original.
    let fork = Vault::new();
    copy_dir(&archive.vault.dir, &fork.dir);
    let message = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("Subject: {text}\r\n\r\n{text}\r\n")).unwrap();
        path
    };
    archive
        .vault
        .import(&[&message("real.eml", "what really arrived")]);
    let kept_later = dir.path().join("later.txt");
    std::fs::write(&kept_later, archive.vault.ok(&["checkpoint"])).unwrap();
    let size_kept: u64 = std::fs::read_to_string(&kept_later)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    fork.import(&[&message("fork1.eml", "rewritten history")]);
    fork.import(&[&message("fork2.eml", "and more of it")]);
    let fork_last = fork.records().iter().rfind(|r| r["kind"] == "message").unwrap()["seq"]
        .as_u64()
        .unwrap();
    let fork_bundle = dir.path().join("fork.zip");
    fork.ok(&[
        "export",
        "--from-seq",
        "1",
        "--to-seq",
        &fork_last.to_string(),
        "--consistency-from",
        &size_kept.to_string(),
        "--out",
        fork_bundle.to_str().unwrap(),
    ]);
    // The fork proves consistency from that size with its own tree, whose root at that size
    // is not the one the recipient kept.
    let out = verify_bundle(
        &fork_bundle,
        &[
            "--key",
            &archive.key,
            "--checkpoint",
            kept_later.to_str().unwrap(),
        ],
    );
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("history was rewritten"), "{report}");
    // The genuine archive's bundle from the same kept checkpoint is fine.
    let genuine = dir.path().join("genuine.zip");
    let real_last = archive
        .vault
        .records()
        .iter()
        .rfind(|r| r["kind"] == "message")
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    export(
        &archive,
        &[
            "--from-seq",
            "1",
            "--to-seq",
            &real_last.to_string(),
            "--consistency-from",
            &size_kept.to_string(),
        ],
        &genuine,
    );
    let out = verify_bundle(
        &genuine,
        &[
            "--key",
            &archive.key,
            "--checkpoint",
            kept_later.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn an_mbox_export_imports_back_byte_identical() {
    let archive = archive();
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("all.mbox");
    let last = last_seq(&archive).to_string();
    export(
        &archive,
        &["--format", "mbox", "--from-seq", "1", "--to-seq", &last],
        &mbox,
    );
    let trail = String::from_utf8(archive.vault.ok(&["audit", "--action", "export"])).unwrap();
    assert!(trail.contains("mbox"), "{trail}");
    let contents = |vault: &Vault| -> std::collections::BTreeSet<String> {
        vault
            .records()
            .iter()
            .filter(|r| r["kind"] == "message")
            .map(|r| r["blake3"].as_str().unwrap().to_string())
            .collect()
    };
    let again = Vault::new();
    let imported = again.import(&[&mbox]);
    // One mbox message per message and arrival record; an arrival's bytes are a duplicate.
    assert_eq!(imported.len(), archive.messages.len(), "{imported:?}");
    assert_eq!(contents(&again), contents(&archive.vault));
    // The 3 MB message, byte for byte.
    let big = again
        .records()
        .iter()
        .find(|r| r["size"].as_u64().unwrap_or(0) > 3 << 20)
        .map(|r| r["seq"].as_u64().unwrap())
        .expect("the big message");
    assert_eq!(
        again.ok(&["show", &big.to_string()]),
        incompressible_message("big one", 3 << 20)
    );
}
