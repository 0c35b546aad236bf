//! Exports written as volumes (`export --per-volume N`): each volume is a bundle of its own,
//! all prove against one checkpoint, and `verify-bundle` given them together proves the whole
//! export — and names a volume that is missing, given twice, from another export, or edited.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::export::{archive, entry, export, last_seq, lmtp_window, rewrite, text};
use crate::util::sha256_hex;

fn verify_all(files: &[PathBuf], extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .arg("verify-bundle")
        .args(files)
        .args(extra)
        .env_remove("MAILVAULT_DATA")
        .output()
        .expect("run verify-bundle")
}

/// The volume files an export to `out` wrote, in order; the directory holds nothing else.
fn volumes(dir: &Path, stem: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(stem))
        .collect();
    files.sort();
    files
}

fn manifest(bundle: &Path) -> serde_json::Value {
    serde_json::from_slice(&entry(bundle, "bundle.json")).unwrap()
}

/// The seqs of the messages a bundle holds.
fn message_seqs(bundle: &Path) -> Vec<u64> {
    let zip = zip::ZipArchive::new(std::fs::File::open(bundle).unwrap()).unwrap();
    let mut seqs: Vec<u64> = zip
        .file_names()
        .filter_map(|n| {
            n.ok()?
                .strip_prefix("messages/")?
                .strip_suffix(".eml")?
                .parse()
                .ok()
        })
        .collect();
    seqs.sort();
    seqs
}

fn without(files: &[PathBuf], index: usize) -> Vec<PathBuf> {
    let mut rest = files.to_vec();
    rest.remove(index);
    rest
}

#[test]
fn a_range_export_in_volumes_is_proven_whole_and_a_missing_or_foreign_volume_is_named() {
    let archive = archive();
    let dir = tempfile::tempdir().unwrap();
    let last = last_seq(&archive);
    let per = 7;
    let out = dir.path().join("range.zip");
    let (last_text, per_text) = (last.to_string(), per.to_string());
    let selection = [
        "export",
        "--from-seq",
        "1",
        "--to-seq",
        &last_text,
        "--per-volume",
        &per_text,
        "--out",
    ];
    let export_to = |out: &Path| {
        archive
            .vault
            .run(&[&selection[..], &[out.to_str().unwrap()]].concat())
    };
    let exported = export_to(&out);
    assert_eq!(exported.status.code(), Some(0), "{}", text(&exported));
    let count = last.div_ceil(per);
    assert!(count >= 3, "{last} records make too few volumes for this test");
    let files = volumes(dir.path(), "range.");
    assert!(
        !out.exists(),
        "an export of volumes writes no file of the plain name"
    );
    let all: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(all.len(), files.len(), "temporary files left: {all:?}");
    assert_eq!(files.len() as u64, count, "{files:?}");
    let width = count.to_string().len();
    assert_eq!(
        files[0].file_name().unwrap().to_str().unwrap(),
        format!("range.{:0width$}-of-{count}.zip", 1)
    );

    // A volume's name taken: refused before anything is written, the file left as it was.
    let blocked_dir = tempfile::tempdir().unwrap();
    let taken = blocked_dir.path().join(format!("b.{:0width$}-of-{count}.zip", 2));
    std::fs::write(&taken, b"someone else's").unwrap();
    let refused = export_to(&blocked_dir.path().join("b.zip"));
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("exists"), "{}", text(&refused));
    let left: Vec<_> = std::fs::read_dir(blocked_dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"someone else's");

    // Every volume is whole on its own terms: its part of the range, the same checkpoint and
    // export, and together the parts hold every message of the range exactly once.
    let mut held = Vec::new();
    let mut export_ids = BTreeSet::new();
    for (i, file) in files.iter().enumerate() {
        let m = manifest(file);
        let v = &m["volume"];
        let first = 1 + i as u64 * per;
        assert_eq!(v["index"], i as u64 + 1);
        assert_eq!(v["count"], count);
        assert_eq!(v["first_seq"], first);
        assert_eq!(v["last_seq"], last.min(first + per - 1));
        assert_eq!(m["selection"]["first_seq"], 1);
        assert_eq!(m["selection"]["last_seq"], last);
        export_ids.insert(v["export_id"].as_str().unwrap().to_string());
        held.extend(message_seqs(file));
    }
    assert_eq!(export_ids.len(), 1, "{export_ids:?}");
    let expected: Vec<u64> = archive.messages.iter().map(|(s, _)| *s).collect();
    assert_eq!(held, expected);

    // Every volume has its own audit record naming its file and SHA-256.
    let trail = String::from_utf8(archive.vault.ok(&["audit", "--action", "export", "--json"])).unwrap();
    let targets: Vec<String> = trail
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["target"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(targets.len() as u64, count, "{trail}");
    for (file, target) in files.iter().zip(&targets) {
        let sha256 = sha256_hex(&std::fs::read(file).unwrap());
        assert!(target.contains(&format!("sha256 {sha256}")), "{target}");
        assert!(target.contains(file.to_str().unwrap()), "{target}");
    }

    // All volumes together, with the archive gone: valid and complete.
    let key = archive.key.clone();
    let messages = archive.messages.len();
    std::fs::remove_dir_all(&archive.vault.dir).unwrap();
    let report = verify_all(&files, &["--key", &key]);
    let said = text(&report);
    assert_eq!(report.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("VALID: {messages} messages authentic")),
        "{said}"
    );
    assert!(
        said.contains(&format!("the {count} volumes of export"))
            && said.contains(&format!("every record from 1 to {last} ({messages} messages)")),
        "{said}"
    );
    let json = verify_all(&files, &["--key", &key, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["bundles"].as_array().unwrap().len() as u64, count);
    assert_eq!(json["messages"].as_array().unwrap().len(), messages);

    // A volume missing: named, with its number, and the rest still checked message by message.
    let report = verify_all(&without(&files, 1), &["--key", &key]);
    let said = text(&report);
    assert_eq!(report.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("has {count} volumes; volume 2 not given")),
        "{said}"
    );
    assert!(!said.contains("INVALID  message"), "{said}");
    // One volume alone: its messages are authentic, the export is not whole.
    let report = verify_all(&files[..1], &["--key", &key]);
    let said = text(&report);
    assert_eq!(report.status.code(), Some(1), "{said}");
    assert!(said.contains("not given"), "{said}");
    assert!(
        said.contains(&format!("ok       message {}", expected[0])),
        "{said}"
    );
    // The same volume twice.
    let mut twice = files.clone();
    twice.push(files[0].clone());
    let said = text(&verify_all(&twice, &["--key", &key]));
    assert!(
        said.contains("volume 1 of export") && said.contains("given twice"),
        "{said}"
    );

    // A volume of another export of the same range in place of one: its own export is not
    // whole, and neither is this one.
    let other_dir = tempfile::tempdir().unwrap();
    let copy = foreign_volume(&files, other_dir.path());
    let mut swapped = files.clone();
    swapped[1] = copy;
    let report = verify_all(&swapped, &["--key", &key]);
    let said = text(&report);
    assert_eq!(report.status.code(), Some(1), "{said}");
    assert!(said.contains("volume 2 not given"), "{said}");

    // A volume whose manifest claims a different part: its own proofs give it away.
    let shifted = dir.path().join("shifted.zip");
    let last_of_2 = manifest(&files[1])["volume"]["last_seq"].as_u64().unwrap();
    edit_manifest(
        &files[1],
        &shifted,
        &format!("\"last_seq\": {last_of_2}"),
        &format!("\"last_seq\": {}", last_of_2 - 1),
    );
    let mut edited = files.clone();
    edited[1] = shifted;
    let report = verify_all(&edited, &["--key", &key]);
    let said = text(&report);
    assert_eq!(report.status.code(), Some(1), "{said}");
    assert!(said.contains("range/proof.json"), "{said}");
}

/// Volume 2 of `files` as a second export of the same selection would have it: the same
/// records under another export id.
fn foreign_volume(files: &[PathBuf], dir: &Path) -> PathBuf {
    let copy = dir.join("other.zip");
    let id = manifest(&files[1])["volume"]["export_id"]
        .as_str()
        .unwrap()
        .to_string();
    edit_manifest(&files[1], &copy, &id, "0123456789abcdef");
    copy
}

/// `src` with the first `from` in its manifest replaced by `to`, as `dst`.
fn edit_manifest(src: &Path, dst: &Path, from: &str, to: &str) {
    rewrite(
        src,
        dst,
        |name, bytes| {
            Some(match name == "bundle.json" {
                true => String::from_utf8(bytes)
                    .unwrap()
                    .replacen(from, to, 1)
                    .into_bytes(),
                false => bytes,
            })
        },
        &[],
    );
}

#[test]
fn time_range_and_filter_exports_in_volumes_verify_together() {
    let archive = archive();
    let dir = tempfile::tempdir().unwrap();
    // The window of the LMTP deliveries, one record per volume: the boundary records are
    // proven only at the export's two ends.
    let (since, until) = lmtp_window(&archive);
    export(
        &archive,
        &["--since", &since, "--until", &until, "--per-volume", "1"],
        &dir.path().join("window.zip"),
    );
    let files = volumes(dir.path(), "window.");
    assert!(files.len() >= 3, "{files:?}");
    for (i, file) in files.iter().enumerate() {
        let proof: serde_json::Value = serde_json::from_slice(&entry(file, "range/proof.json")).unwrap();
        assert_eq!(proof["before"].is_object(), i == 0, "volume {}: {proof}", i + 1);
        assert_eq!(
            proof["after"].is_object(),
            i == files.len() - 1,
            "volume {}: {proof}",
            i + 1
        );
    }
    let report = verify_all(&files, &["--key", &archive.key]);
    let said = text(&report);
    assert_eq!(report.status.code(), Some(0), "{said}");
    assert!(said.contains("complete: the"), "{said}");

    // A filter, one message per volume: together valid; one left out is named.
    export(
        &archive,
        &["--query", "subject:twice", "--per-volume", "1"],
        &dir.path().join("filter.zip"),
    );
    let files = volumes(dir.path(), "filter.");
    assert_eq!(files.len(), 2, "{files:?}");
    let report = verify_all(&files, &["--key", &archive.key]);
    let said = text(&report);
    assert_eq!(report.status.code(), Some(0), "{said}");
    assert!(said.contains("the 2 volumes of export"), "{said}");
    assert!(said.contains("cannot be proven offline"), "{said}");
    let report = verify_all(&files[1..], &["--key", &archive.key]);
    assert_eq!(report.status.code(), Some(1), "{}", text(&report));
    assert!(text(&report).contains("volume 1 not given"), "{}", text(&report));

    // --per-volume 0: one file whatever the size, as a plain bundle.
    let one = dir.path().join("one.zip");
    export(
        &archive,
        &[
            "--from-seq",
            "1",
            "--to-seq",
            &last_seq(&archive).to_string(),
            "--per-volume",
            "0",
        ],
        &one,
    );
    assert!(manifest(&one).get("volume").is_none());
    assert_eq!(
        verify_all(&[one], &["--key", &archive.key]).status.code(),
        Some(0)
    );
}
