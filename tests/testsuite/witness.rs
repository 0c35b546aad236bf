//! Witness cosigning (C2SP tlog-witness, `cosignature/v1`): a real test witness on a loopback
//! port (witness_server.rs) cosigns the archive's checkpoints; the cosignatures are stored,
//! verified by `mailvault verify`, by tlog-scales (an independent Python implementation), and
//! by verify-bundle in an export; a rolled-back archive is refused by the witness and raises
//! the alarm.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::export::{copy_dir, rewrite};
use crate::intake::lmtp_send;
use crate::util::Vault;
use crate::witness_server::TestWitness;

/// A store with its key made, and the log's verifier key.
fn vault() -> (Vault, String) {
    let vault = Vault::new();
    vault.ok(&["init"]);
    let key = vault.public_key();
    (vault, key)
}

fn config(dir: &Path, url: &str, vkey: &str) -> PathBuf {
    let path = dir.join("mailvault.toml");
    std::fs::write(
        &path,
        format!(
            "[anchoring]\ninterval_secs = 1\nwitness_timeout_secs = 10\n\n[[anchoring.witnesses]]\nname = \"w1\"\nurl = \"{}\"\nkey = \"{}\"\n",
            url, vkey
        ),
    )
    .unwrap();
    path
}

/// Tree sizes with a stored cosignature of w1.
fn cosigned(data: &Path) -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(data.join("anchors"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("cosignature-w1.txt").is_file())
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    sizes.sort_unstable();
    sizes
}

fn wait_for(what: &str, server: &crate::util::Server, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within a minute\n{}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The independent check: tlog-scales verifies the archive's signature and the witness's
/// cosignature/v1 on the stored checkpoint (tests/testsuite/witness_check.py).
fn tlog_scales_check(
    checkpoint: &Path,
    cosignature: &Path,
    log_key: &str,
    witness_key: &str,
) -> serde_json::Value {
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/testsuite/witness_check.py"
    ))
    .unwrap();
    let out = crate::util::python_json(
        &script,
        &[
            checkpoint.display().to_string(),
            cosignature.display().to_string(),
            log_key.to_string(),
            witness_key.to_string(),
        ],
    );
    out.into_iter().last().expect("a verdict line")
}

#[test]
fn a_witness_cosigns_checkpoints_and_every_verifier_accepts_the_cosignature() {
    let (vault, log_key) = vault();
    let witness = TestWitness::start("witness.test/w1", &log_key);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &witness.url, &witness.vkey);
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let (seq, _) =
        lmtp_send(server.lmtp, b"Subject: witnessed\r\n\r\nto be witnessed\r\n").expect("delivered");
    wait_for("a cosignature covering the delivery", &server, || {
        cosigned(&vault.dir).last().is_some_and(|&s| s >= seq)
    });
    assert_eq!(server.stop(), Some(0));
    let size = *cosigned(&vault.dir).last().unwrap();
    let anchor = vault.dir.join("anchors").join(size.to_string());
    assert_eq!(witness.cosigned_size(), Some(size));
    // Every request got a 200 (a fresh witness, our sizes in step with it).
    assert!(
        witness.requests().iter().all(|r| r.2 == 200),
        "{:?}",
        witness.requests()
    );

    // Independent: tlog-scales (Python) checks both signatures on the stored note.
    let verdict = tlog_scales_check(
        &anchor.join("checkpoint.txt"),
        &anchor.join("cosignature-w1.txt"),
        &log_key,
        &witness.vkey,
    );
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["size"], size);
    assert_eq!(verdict["cosigned_by"], "witness.test/w1");

    // mailvault verify: the anchored checkpoint is in the log, the cosignature verifies.
    let (code, report) = vault.verify(&["--witness", &witness.vkey]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains(&format!(
            "anchor of size {size}: cosigned by witness witness.test/w1"
        )),
        "{report}"
    );

    // The export carries the anchor; verify-bundle checks it against the pinned witness key.
    let bundle = work.path().join("bundle.zip");
    vault.export_range(seq, &bundle);
    let names = zip_names(&bundle);
    let cosig_entry = format!("anchors/{size}/cosignature-w1.txt");
    assert!(names.contains(&cosig_entry), "{names:?}");
    assert!(
        names.contains(&format!("anchors/{size}/checkpoint.txt")),
        "{names:?}"
    );
    let check = |bundle: &Path, extra: &[&str]| {
        let out = vault.run(
            &[
                &["verify-bundle", bundle.to_str().unwrap(), "--key", &log_key],
                extra,
            ]
            .concat(),
        );
        (out.status.code(), text(&out))
    };
    let (code, out) = check(&bundle, &["--witness", &witness.vkey]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("records 1..={size} witnessed by w1 (witness.test/w1)")),
        "{out}"
    );
    // Unpinned: valid, checked with the bundle's own copy of the key, and said so.
    let (code, out) = check(&bundle, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no witness key pinned"), "{out}");

    // Another witness's key pinned: the cosignature is not by it.
    let stranger = TestWitness::start("witness.test/w1", &log_key);
    let (code, out) = check(&bundle, &["--witness", &stranger.vkey]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&cosig_entry), "{out}");

    // One byte of the cosignature changed in the bundle.
    let tampered = work.path().join("tampered.zip");
    let target = cosig_entry.clone();
    rewrite(
        &bundle,
        &tampered,
        |name, bytes| {
            Some(match name == target {
                true => flip_signature_byte(bytes),
                false => bytes,
            })
        },
        &[],
    );
    let (code, out) = check(&tampered, &["--witness", &witness.vkey]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("INVALID  {cosig_entry}")), "{out}");

    // Without the consistency proof, the anchored tree is not tied to the bundle's.
    let unproven = work.path().join("unproven.zip");
    let proof_entry = format!("consistency/{size}.json");
    assert!(names.contains(&proof_entry), "{names:?}");
    rewrite(
        &bundle,
        &unproven,
        |name, bytes| (name != proof_entry).then_some(bytes),
        &[],
    );
    let (code, out) = check(&unproven, &["--witness", &witness.vkey]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("INVALID  {proof_entry}: missing")), "{out}");

    // And in the data directory: `mailvault verify` names it.
    let stored = anchor.join("cosignature-w1.txt");
    let bytes = std::fs::read(&stored).unwrap();
    std::fs::write(&stored, flip_signature_byte(bytes)).unwrap();
    let (code, report) = vault.verify(&["--witness", &witness.vkey]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains(&format!("TAMPERED: anchors/{size}/cosignature-w1.txt")),
        "{report}"
    );
}

/// Changes one bit of the Ed25519 signature inside a cosignature line's base64.
fn flip_signature_byte(bytes: Vec<u8>) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let line = String::from_utf8(bytes).unwrap();
    let (head, blob) = line.trim_end().rsplit_once(' ').unwrap();
    let mut raw = b64.decode(blob).unwrap();
    raw[40] ^= 0x01;
    format!("{head} {}\n", b64.encode(raw)).into_bytes()
}

fn zip_names(bundle: &Path) -> Vec<String> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(bundle).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut sink = Vec::new();
            f.read_to_end(&mut sink).unwrap();
            f.name().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_rolled_back_archive_is_refused_by_its_witness_and_raises_the_alarm() {
    let (vault, log_key) = vault();
    let witness = TestWitness::start("witness.test/w1", &log_key);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &witness.url, &witness.vkey);
    let config = config.to_str().unwrap();

    // The witness sees the archive early on; a copy of the store is kept from then.
    let server = vault.serve(&["--config", config]);
    let (seq, _) = lmtp_send(server.lmtp, b"Subject: early\r\n\r\nearly\r\n").expect("delivered");
    wait_for("a first cosignature", &server, || {
        cosigned(&vault.dir).last().is_some_and(|&s| s >= seq)
    });
    assert_eq!(server.stop(), Some(0));
    let copy = work.path().join("old-copy");
    copy_dir(&vault.dir, &copy);
    let early = *cosigned(&copy).last().unwrap();

    // The original goes on; the witness sees its longer tree.
    let server = vault.serve(&["--config", config]);
    let mut last = 0;
    for i in 0..8 {
        let mail = format!("Subject: later {i}\r\n\r\nlater\r\n");
        last = lmtp_send(server.lmtp, mail.as_bytes()).expect("delivered").0;
    }
    wait_for("the witness seeing the longer tree", &server, || {
        witness.cosigned_size().is_some_and(|s| s >= last)
    });
    assert_eq!(server.stop(), Some(0));
    let seen = witness.cosigned_size().unwrap();

    // The old copy is served in its place: a shorter history.
    let old = Vault::at(copy.clone());
    let server = old.serve(&["--config", config]);
    wait_for("the rollback alarm", &server, || {
        server.log.lock().unwrap().contains("ROLLBACK ALARM")
    });
    let log = server.log.lock().unwrap().clone();
    let alarm = log.lines().find(|l| l.contains("ROLLBACK ALARM")).unwrap();
    assert!(alarm.contains("ERROR"), "{alarm}");
    assert!(alarm.contains(&format!("witness_size={seen}")), "{alarm}");
    // The witness refused (409: it cosigned a larger size) and kept its view.
    assert!(
        witness
            .requests()
            .iter()
            .any(|&(old, _, status)| old == early && status == 409),
        "{:?}",
        witness.requests()
    );
    assert_eq!(witness.cosigned_size(), Some(seen));
    // The metric counts it; `status` shows it, in text and JSON, while the server runs.
    let admin = server.admin.expect("admin listener");
    let (_, metrics) = crate::metrics::get(admin, "/metrics");
    assert!(
        metrics.contains("mailvault_witness_rollbacks_total{witness=\"w1\"}"),
        "{metrics}"
    );
    let status = String::from_utf8(old.ok(&["status"])).unwrap();
    assert!(status.contains("ALARM       witness w1: rollback"), "{status}");
    let json: serde_json::Value = serde_json::from_slice(&old.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["witness_alarms"][0]["witness"], "w1", "{json}");
    assert_eq!(json["witness_alarms"][0]["kind"], "rollback", "{json}");
    assert_eq!(json["witness_alarms"][0]["witness_size"], seen, "{json}");

    // The old copy takes new mail until its tree is larger than the one the witness saw: a
    // different history of that size, which the witness's consistency check refuses (422).
    let mut size = 0;
    while size <= seen + 1 {
        size = lmtp_send(server.lmtp, b"Subject: forked\r\n\r\nforked\r\n")
            .expect("delivered")
            .0;
    }
    wait_for("the fork alarm", &server, || {
        server.log.lock().unwrap().contains("kind=fork")
    });
    assert!(
        witness
            .requests()
            .iter()
            .any(|&(old, _, status)| old == seen && status == 422),
        "{:?}",
        witness.requests()
    );
    assert_eq!(witness.cosigned_size(), Some(seen));
    assert_eq!(server.stop(), Some(0));
    // Nothing was cosigned for the rolled-back or forked trees.
    assert_eq!(*cosigned(&copy).last().unwrap(), early);
    let json: serde_json::Value = serde_json::from_slice(&old.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["witness_alarms"][0]["kind"], "fork", "{json}");
}

#[test]
fn an_unreachable_witness_is_logged_counted_and_the_archive_goes_on() {
    let (vault, log_key) = vault();
    let witness = TestWitness::start("witness.test/w1", &log_key);
    // The witness's key, but nobody listening where it is said to be.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &format!("http://{addr}"), &witness.vkey);
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    wait_for("the failure logged", &server, || {
        server
            .log
            .lock()
            .unwrap()
            .contains("witness did not cosign the checkpoint")
    });
    assert!(lmtp_send(server.lmtp, b"Subject: still here\r\n\r\nx\r\n").is_some());
    let (_, metrics) = crate::metrics::get(server.admin.expect("admin listener"), "/metrics");
    assert!(
        metrics.contains("mailvault_witness_failures_total{witness=\"w1\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("mailvault_witness_rollbacks_total{witness=\"w1\"}"),
        "{metrics}"
    );
    assert_eq!(server.stop(), Some(0));
    assert!(cosigned(&vault.dir).is_empty());
    assert!(witness.requests().is_empty());
}
