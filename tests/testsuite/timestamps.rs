//! `[[anchoring.tsa]]`: a real RFC 3161 TSA (`openssl ts -reply` behind tsa_server.py) stamps
//! the newest checkpoint; the token lands in `anchors/<size>/`, OpenSSL itself accepts it,
//! `mailvault verify` checks it and names a tampered one; a broken or foreign TSA is logged
//! and nothing unverified is kept.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::intake::lmtp_send;
use crate::util::Vault;

/// A test TSA: keys made by fixtures/tsa/make-tsa.sh, answering over loopback HTTP.
struct TestTsa {
    dir: tempfile::TempDir,
    server: Child,
    port: u16,
}

impl TestTsa {
    fn start(mode: &str) -> TestTsa {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let made = Command::new("sh")
            .arg(root.join("fixtures/tsa/make-tsa.sh"))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(made.success());
        let mut server = Command::new("python3")
            .arg(root.join("tests/testsuite/tsa_server.py"))
            .arg(dir.path().join("tsa.cnf"))
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .expect(&line);
        TestTsa { dir, server, port }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A serve configuration naming this TSA `name`, pinned to `certificate`.
    fn config(&self, work: &Path, name: &str, certificate: &Path) -> PathBuf {
        let path = work.join("mailvault.toml");
        std::fs::write(
            &path,
            format!(
                "[anchoring]\ninterval_secs = 1\n\n[[anchoring.tsa]]\nname = \"{name}\"\n\
                 url = \"http://127.0.0.1:{}/\"\ncertificate = \"{}\"\n",
                self.port,
                certificate.display()
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for TestTsa {
    fn drop(&mut self) {
        drop(self.server.stdin.take()); // the server stops when its stdin closes
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Token files of `tsa` under `<data>/anchors/`: (tree size, file).
fn tokens(vault: &Vault, tsa: &str) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(vault.dir.join("anchors"))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let size = dir.file_name()?.to_str()?.parse().ok()?;
            let file = dir.join(format!("timestamp-{tsa}.tsr"));
            file.exists().then_some((size, file))
        })
        .collect();
    found.sort();
    found
}

fn wait_for(what: &str, log: &std::sync::Mutex<String>, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: {}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Delivers `message` over LMTP and waits until `tsa` has stamped a checkpoint covering it;
/// returns its seq.
fn deliver_and_await_stamp(vault: &Vault, server: &crate::util::Server, tsa: &str, message: &[u8]) -> u64 {
    let (seq, _) = lmtp_send(server.lmtp, message).expect("delivered");
    wait_for("no token covering the delivery", &server.log, || {
        tokens(vault, tsa).iter().any(|(size, _)| *size >= seq)
    });
    seq
}

#[test]
fn checkpoints_are_time_stamped_checked_by_openssl_and_by_verify() {
    let tsa = TestTsa::start("openssl");
    let vault = Vault::new();
    let work = tempfile::tempdir().unwrap();
    let config = tsa.config(work.path(), "test-tsa", &tsa.ca());
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    deliver_and_await_stamp(
        &vault,
        &server,
        "test-tsa",
        b"Subject: stamped\r\n\r\nto be time-stamped\r\n",
    );
    assert_eq!(server.stop(), Some(0));

    // `status` shows the newest token per TSA.
    let status = String::from_utf8(vault.ok(&["status"])).unwrap();
    let (newest_size, _) = tokens(&vault, "test-tsa").last().cloned().unwrap();
    assert!(
        status.contains(&format!(
            "time-stamp  test-tsa: newest token for {newest_size} records"
        )),
        "{status}"
    );

    // OpenSSL, not only our own code, accepts every stored token for its checkpoint.txt.
    let stored = tokens(&vault, "test-tsa");
    for (_, file) in &stored {
        let checkpoint = file.with_file_name("checkpoint.txt");
        let out = Command::new("openssl")
            .args(["ts", "-verify", "-data"])
            .arg(&checkpoint)
            .arg("-in")
            .arg(file)
            .arg("-CAfile")
            .arg(tsa.ca())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("Verification: OK"),
            "{said}"
        );
    }

    let (code, report) = vault.verify(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    let (size, newest) = stored.last().unwrap();
    assert!(
        report.contains(&format!("records 1..={size} time-stamped by test-tsa at "))
            && report.contains("pinned: CN=mailvault test TSA CA"),
        "{report}"
    );
    // Without the configuration the tokens are valid but said to be unpinned.
    let (code, report) = vault.verify(&[]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("NOT PINNED"), "{report}");

    // One changed byte in a token: verify names it.
    let mut bytes = std::fs::read(newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    crate::util::make_writable(newest);
    std::fs::write(newest, &bytes).unwrap();
    let (code, report) = vault.verify(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains("TAMPERED") && report.contains(&anchor_name(&vault, newest)),
        "{report}"
    );
}

#[test]
fn an_anchored_checkpoint_that_is_not_the_logs_is_named() {
    let tsa = TestTsa::start("openssl");
    let vault = Vault::new();
    let work = tempfile::tempdir().unwrap();
    let config = tsa.config(work.path(), "t1", &tsa.ca());
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    wait_for("no token", &server.log, || !tokens(&vault, "t1").is_empty());
    assert_eq!(server.stop(), Some(0));
    let (_, token) = &tokens(&vault, "t1")[0];
    let checkpoint = token.with_file_name("checkpoint.txt");
    let mut note = std::fs::read(&checkpoint).unwrap();
    note[0] ^= 0x20; // the origin line: the signature no longer matches
    crate::util::make_writable(&checkpoint);
    std::fs::write(&checkpoint, &note).unwrap();
    let (code, report) = vault.verify(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains(&anchor_name(&vault, &checkpoint)), "{report}");
}

/// How verify names a file under `<data>/`: `anchors/<size>/<file>`.
fn anchor_name(vault: &Vault, file: &Path) -> String {
    file.strip_prefix(&vault.dir).unwrap().display().to_string()
}

#[test]
fn a_broken_or_foreign_tsa_is_logged_and_nothing_unverified_is_kept() {
    let broken = TestTsa::start("garbage");
    let foreign = TestTsa::start("openssl");
    let stranger = TestTsa::start("openssl"); // its CA did not issue `foreign`'s certificate
    let vault = Vault::new();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("mailvault.toml");
    std::fs::write(
        &config,
        format!(
            "[anchoring]\ninterval_secs = 1\n\n\
             [[anchoring.tsa]]\nname = \"broken\"\nurl = \"http://127.0.0.1:{}/\"\ncertificate = \"{}\"\n\n\
             [[anchoring.tsa]]\nname = \"foreign\"\nurl = \"http://127.0.0.1:{}/\"\ncertificate = \"{}\"\n",
            broken.port,
            broken.ca().display(),
            foreign.port,
            stranger.ca().display()
        ),
    )
    .unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    wait_for("no failure of both TSAs logged", &server.log, || {
        let log = server.log.lock().unwrap();
        log.contains("time-stamping failed") && log.contains("broken: ") && log.contains("foreign: ")
    });
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("is not pinned and no pinned certificate issued it"),
        "{}",
        server.log.lock().unwrap()
    );
    assert!(lmtp_send(server.lmtp, b"Subject: still here\r\n\r\nx\r\n").is_some());
    assert_eq!(server.stop(), Some(0));
    assert!(tokens(&vault, "broken").is_empty() && tokens(&vault, "foreign").is_empty());
}

#[test]
fn an_unreadable_tsa_certificate_stops_the_start_naming_the_key() {
    let vault = Vault::new();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("mailvault.toml");
    std::fs::write(
        &config,
        "[[anchoring.tsa]]\nname = \"x\"\nurl = \"http://127.0.0.1:9/\"\ncertificate = \"/nonexistent.pem\"\n",
    )
    .unwrap();
    vault.ok(&["init"]);
    // Bounded: a serve that started anyway would never exit by itself.
    let out = vault.run_bounded(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--lmtp",
        "127.0.0.1:0",
        "--smtp",
        "127.0.0.1:0",
        "--imap",
        "127.0.0.1:0",
        "--imaps",
        "127.0.0.1:0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("anchoring.tsa[0].certificate"), "{err}");
}

#[test]
fn bundles_carry_the_tokens_and_verify_bundle_checks_them_offline() {
    let tsa = TestTsa::start("openssl");
    let vault = Vault::new();
    let work = tempfile::tempdir().unwrap();
    let config = tsa.config(work.path(), "test-tsa", &tsa.ca());
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let seq = deliver_and_await_stamp(
        &vault,
        &server,
        "test-tsa",
        b"Subject: bundled\r\n\r\nto be exported\r\n",
    );
    assert_eq!(server.stop(), Some(0));
    let (size, _) = tokens(&vault, "test-tsa").last().cloned().unwrap();

    let bundle = work.path().join("bundle.zip");
    vault.export_range(seq, &bundle);
    let key = vault.public_key();
    let check = |bundle: &Path, extra: &[&str]| {
        let mut args = vec!["verify-bundle", bundle.to_str().unwrap(), "--key", &key];
        args.extend_from_slice(extra);
        let out = vault.run(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let entry = format!("anchors/{size}/timestamp-test-tsa.tsr");
    let ca = tsa.ca();
    let (code, out) = check(&bundle, &["--tsa-cert", ca.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "records 1..={size} existed no later than the time-stamp by test-tsa at "
        )) && out.contains("pinned: CN=mailvault test TSA CA"),
        "{out}"
    );
    // Unpinned: valid, checked against the token's own certificate, and said so.
    let (code, out) = check(&bundle, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no TSA certificate pinned"), "{out}");

    // Another TSA's CA pinned: the token does not lead to it.
    let stranger = TestTsa::start("openssl");
    let other_ca = stranger.ca();
    let (code, out) = check(&bundle, &["--tsa-cert", other_ca.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&entry), "{out}");

    // One byte of the token changed in the bundle, or the token dropped while a TSA is pinned.
    let tampered = work.path().join("tampered.zip");
    crate::export::rewrite(
        &bundle,
        &tampered,
        |name, mut bytes| {
            if name == entry {
                let last = bytes.len() - 1;
                bytes[last] ^= 0x01;
            }
            Some(bytes)
        },
        &[],
    );
    let (code, out) = check(&tampered, &["--tsa-cert", ca.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("INVALID  {entry}")), "{out}");
    let dropped = work.path().join("dropped.zip");
    crate::export::rewrite(
        &bundle,
        &dropped,
        |name, bytes| (name != entry).then_some(bytes),
        &[],
    );
    let (code, out) = check(&dropped, &["--tsa-cert", ca.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("carry no time-stamp token"), "{out}");
}

#[test]
fn a_bundle_keeps_an_older_cosignature_when_only_the_tsa_went_on() {
    let tsa = TestTsa::start("openssl");
    let vault = Vault::new();
    vault.ok(&["init"]);
    let key = vault.public_key();
    let witness = crate::witness_server::TestWitness::start("witness.test/w1", &key);
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("mailvault.toml");
    std::fs::write(
        &config,
        format!(
            "[anchoring]\ninterval_secs = 1\nwitness_timeout_secs = 5\n\n\
             [[anchoring.witnesses]]\nname = \"w1\"\nurl = \"{}\"\nkey = \"{}\"\n\n\
             [[anchoring.tsa]]\nname = \"test-tsa\"\nurl = \"http://127.0.0.1:{}/\"\ncertificate = \"{}\"\n",
            witness.url,
            witness.vkey,
            tsa.port,
            tsa.ca().display()
        ),
    )
    .unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let (first, _) = lmtp_send(server.lmtp, b"Subject: one\r\n\r\nwitnessed\r\n").expect("delivered");
    wait_for("no cosignature", &server.log, || {
        witness.cosigned_size().is_some_and(|s| s >= first)
    });
    let cosigned = witness.cosigned_size().unwrap();
    // The witness goes away; the TSA stamps what comes after.
    drop(witness);
    let second = deliver_and_await_stamp(
        &vault,
        &server,
        "test-tsa",
        b"Subject: two\r\n\r\nonly stamped\r\n",
    );
    assert_eq!(server.stop(), Some(0));
    let (stamped, _) = tokens(&vault, "test-tsa").last().cloned().unwrap();
    assert!(stamped > cosigned, "{stamped} {cosigned}");

    let bundle = work.path().join("bundle.zip");
    vault.export_range(second, &bundle);
    let ca = tsa.ca();
    let out = vault.run(&[
        "verify-bundle",
        bundle.to_str().unwrap(),
        "--key",
        &key,
        "--tsa-cert",
        ca.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("records 1..={cosigned} witnessed by w1"))
            && text.contains(&format!(
                "records 1..={stamped} existed no later than the time-stamp by test-tsa"
            )),
        "{text}"
    );
}
