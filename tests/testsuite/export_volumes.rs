//! Exports written as volumes (`export --per-volume N`): one file holding each volume, a
//! bundle of its own, all proving against one checkpoint. `verify-bundle` of the file, or of
//! the volumes unpacked, proves the whole export — and names a volume that is missing, given
//! twice, from another export, edited, compressed, or a file slipped into the container.

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

/// Entry names of a ZIP, in order.
fn entries(zip_file: &Path) -> Vec<String> {
    let zip = zip::ZipArchive::new(std::fs::File::open(zip_file).unwrap()).unwrap();
    zip.file_names().map(|n| n.unwrap().to_string()).collect()
}

/// The volumes of a container, unpacked into `dir` as an auditor's unzip would, in order.
fn unpack(container: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(container).unwrap()).unwrap();
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        if let Some(file) = name.strip_prefix("volumes/") {
            let path = dir.join(file);
            let mut out = std::fs::File::create(&path).unwrap();
            std::io::copy(&mut entry, &mut out).unwrap();
            files.push(path);
        }
    }
    files
}

/// `src` rewritten with the entries `keep` keeps, stored as they were, and `add`.
fn restore_container(src: &Path, dst: &Path, keep: impl Fn(&str) -> bool, add: &[(&str, &[u8])]) {
    let mut input = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut output = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    for i in 0..input.len() {
        let entry = input.by_index_raw(i).unwrap();
        if keep(&entry.name().unwrap()) {
            output.raw_copy_file(entry).unwrap();
        }
    }
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in add {
        output.start_file(*name, stored).unwrap();
        std::io::Write::write_all(&mut output, bytes).unwrap();
    }
    output.finish().unwrap();
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
    // One file: a README and every volume, stored, in order; nothing else in the directory.
    let width = count.to_string().len();
    let mut expected_entries = vec!["README.txt".to_string()];
    expected_entries.extend((1..=count).map(|i| format!("volumes/range.{i:0width$}-of-{count}.zip")));
    assert_eq!(entries(&out), expected_entries);
    let all: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(all.len(), 1, "temporary files left: {all:?}");

    // The file name taken: refused, the file left as it was.
    let refused = export_to(&out);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("exists"), "{}", text(&refused));

    // Unpacked, every volume is whole on its own terms: its part of the range, the same
    // checkpoint and export, and together the parts hold every message exactly once.
    let unpacked = tempfile::tempdir().unwrap();
    let files = unpack(&out, unpacked.path());
    assert_eq!(files.len() as u64, count);
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

    // One audit record for the export, naming the file, its volumes and its SHA-256.
    let trail = String::from_utf8(archive.vault.ok(&["audit", "--action", "export", "--json"])).unwrap();
    let records: Vec<serde_json::Value> = trail.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 1, "{trail}");
    let target = records[0]["target"].as_str().unwrap();
    assert!(
        target.contains(&format!("sha256 {}", sha256_hex(&std::fs::read(&out).unwrap()))),
        "{target}"
    );
    assert!(target.contains(&format!("{count} volumes")), "{target}");

    // The file, and the unpacked volumes together, with the archive gone: valid and complete.
    let key = archive.key.clone();
    let messages = archive.messages.len();
    std::fs::remove_dir_all(&archive.vault.dir).unwrap();
    for given in [std::slice::from_ref(&out), &files[..]] {
        let report = verify_all(given, &["--key", &key]);
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
    }
    let json = verify_all(std::slice::from_ref(&out), &["--key", &key, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["valid"], true);
    let bundles = json["bundles"].as_array().unwrap();
    assert_eq!(
        bundles.iter().filter(|b| b["volume"].is_object()).count() as u64,
        count
    );
    assert_eq!(json["messages"].as_array().unwrap().len(), messages);

    // The container changed: a volume left out, a volume compressed, a file slipped in.
    let second = &expected_entries[2];
    type Change<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: [(&str, Change, String); 3] = [
        (
            "a volume left out",
            Box::new(|dst| restore_container(&out, dst, |n| n != second.as_str(), &[])),
            "volume 2 not given".to_string(),
        ),
        (
            "volumes compressed",
            Box::new(|dst| rewrite(&out, dst, |_, b| Some(b), &[])),
            format!("{second}: compressed"),
        ),
        (
            "a file slipped in",
            Box::new(|dst| restore_container(&out, dst, |_| true, &[("volumes/../x.zip", b"PK")])),
            "unexpected file \"volumes/../x.zip\" in the container".to_string(),
        ),
    ];
    for (what, change, expected) in cases {
        let changed = dir.path().join("changed.zip");
        change(&changed);
        let report = verify_all(std::slice::from_ref(&changed), &["--key", &key]);
        let said = text(&report);
        assert_eq!(report.status.code(), Some(1), "{what}: {said}");
        assert!(
            said.contains(&expected),
            "{what}: expected {expected:?} in\n{said}"
        );
        std::fs::remove_file(&changed).unwrap();
    }

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
    let window = dir.path().join("window.zip");
    export(
        &archive,
        &["--since", &since, "--until", &until, "--per-volume", "1"],
        &window,
    );
    let unpacked = tempfile::tempdir().unwrap();
    let files = unpack(&window, unpacked.path());
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
    let report = verify_all(&[window], &["--key", &archive.key]);
    let said = text(&report);
    assert_eq!(report.status.code(), Some(0), "{said}");
    assert!(said.contains("complete: the"), "{said}");

    // A filter, one message per volume: together valid; one left out is named.
    let filter = dir.path().join("filter.zip");
    export(
        &archive,
        &["--query", "subject:twice", "--per-volume", "1"],
        &filter,
    );
    let files = unpack(&filter, unpacked.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let report = verify_all(&[filter], &["--key", &archive.key]);
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
