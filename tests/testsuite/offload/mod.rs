//! Offload of sealed segments to S3 Object Lock against a real SeaweedFS (`weed.rs`), with
//! the real binary: receipts in the log (one per segment, also across crashes), `status`,
//! metrics, `verify --s3`, and the object store's own WORM guarantees (`worm.rs`).

mod evict;
mod restore;
mod weed;
mod worm;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use archive_s3::{Bucket, Put, S3Settings};

use crate::intake::lmtp_send;
use crate::util::{incompressible_message, Server, Vault};
use weed::{free_port, runtime, settings_for, write_credentials, Weed};

const BUCKET: &str = "archive";

/// A serve configuration: segments of `segment_mib`, `[storage.s3]` from `s3` (credentials
/// from a 0600 file in the vault's parent directory).
fn config(vault: &Vault, s3: &S3Settings, segment_mib: u64) -> PathBuf {
    let dir = vault.dir.parent().unwrap();
    let credentials = write_credentials(dir);
    let path = dir.join("mailvault.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nsegment_mib = {segment_mib}\n\n[storage.s3]\nendpoint = {:?}\nbucket = {:?}\n\
             prefix = {:?}\nretention = {:?}\npart_mib = {}\ncredentials_file = {:?}\n",
            s3.endpoint, s3.bucket, s3.prefix, s3.retention, s3.part_mib, credentials
        ),
    )
    .unwrap();
    path
}

/// Delivers `count` distinct messages of about 4/3 × `noise` bytes each over LMTP; every one
/// must be acknowledged.
fn deliver(server: &Server, from: usize, count: usize, noise: usize) {
    deliver_messages(server, from, count, noise);
}

/// [`deliver`], returning the messages.
fn deliver_messages(server: &Server, from: usize, count: usize, noise: usize) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for i in from..from + count {
        let message = incompressible_message(&format!("offload {i}"), noise);
        assert!(
            lmtp_send(server.lmtp, &message).is_some(),
            "message {i} was not acknowledged"
        );
        sent.push(message);
    }
    sent
}

/// Numbers of the sealed segments (all but the newest).
fn sealed(vault: &Vault) -> Vec<u64> {
    let mut numbers: Vec<u64> = vault
        .segments()
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    numbers.pop();
    numbers
}

/// The offload receipts in the log, in log order.
fn receipts(vault: &Vault) -> Vec<serde_json::Value> {
    vault
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "offload")
        .map(|r| r["offload"].clone())
        .collect()
}

/// Receipts per segment number.
fn receipts_per_segment(vault: &Vault) -> BTreeMap<u64, usize> {
    let mut count = BTreeMap::new();
    for r in receipts(vault) {
        *count.entry(r["segment"].as_u64().unwrap()).or_default() += 1;
    }
    count
}

fn status(vault: &Vault) -> serde_json::Value {
    serde_json::from_slice(&vault.ok(&["status", "--json"])).unwrap()
}

/// Polls `done` every 500 ms until it holds; panics with `what` and the server's log after
/// `patience`.
fn wait_for(patience: Duration, what: &str, server: &Server, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !done() {
        if Instant::now() > deadline {
            let log = server.log.lock().unwrap().clone();
            panic!("timed out waiting for {what}; server log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until every segment sealed now has a receipt; returns those segments.
fn wait_offloaded(vault: &Vault, server: &Server, at_least: usize) -> Vec<u64> {
    let mut segments = Vec::new();
    wait_for(
        Duration::from_secs(120),
        "receipts for every sealed segment",
        server,
        || {
            segments = sealed(vault);
            let receipted = receipts_per_segment(vault);
            segments.len() >= at_least && segments.iter().all(|n| receipted.contains_key(n))
        },
    );
    segments
}

/// Exactly one receipt per segment in `segments` and none for others; exactly one object
/// version per key in the bucket.
fn assert_exactly_once(vault: &Vault, weed: &Weed, segments: &[u64]) {
    let per_segment = receipts_per_segment(vault);
    for n in segments {
        assert_eq!(
            per_segment.get(n),
            Some(&1),
            "receipts of segment {n}: {per_segment:?}"
        );
    }
    // Segments only: the store's identity object sits next to them.
    let versions: Vec<_> = weed
        .versions(BUCKET)
        .into_iter()
        .filter(|(key, _)| key.contains("/log/"))
        .collect();
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, _) in &versions {
        *per_key.entry(key.as_str()).or_default() += 1;
    }
    assert!(
        per_key.values().all(|n| *n == 1),
        "an object was uploaded twice: {versions:?}"
    );
    assert_eq!(
        per_key.len(),
        per_segment.len(),
        "{versions:?} vs {per_segment:?}"
    );
}

#[test]
fn sealed_segments_get_one_receipt_each_and_verify_s3_reads_the_recorded_versions() {
    let weed = Weed::start();
    weed.create_locked_bucket(BUCKET);
    let vault = Vault::new();
    let config = config(&vault, &weed.settings(BUCKET), 1);
    let config = config.to_str().unwrap();
    let server = vault.serve(&["--config", config]);
    // About 5 MiB in 1 MiB segments (three messages each): three sealed at least.
    deliver(&server, 0, 12, 300_000);
    let segments = wait_offloaded(&vault, &server, 3);
    let s = status(&vault);
    assert_eq!(s["offload"]["backlog_segments"], 0, "{s:#}");
    assert!(s["offload"]["offloaded_segments"].as_u64().unwrap() >= 3, "{s:#}");
    let metrics = crate::metrics::get(server.admin.unwrap(), "/metrics").1;
    assert!(
        metrics.contains("mailvault_offload_backlog_segments 0"),
        "{metrics}"
    );
    assert_eq!(server.stop(), Some(0), "a clean stop");
    assert_exactly_once(&vault, &weed, &segments);
    let text = String::from_utf8(vault.ok(&["log"])).unwrap();
    assert!(text.contains("segment 1 -> s3://archive/"), "{text}");

    let (code, out) = vault.verify(&["--config", config, "--s3"]);
    assert_eq!(code, 0, "{out}");
    for n in &segments {
        assert!(out.contains(&format!("S3 OK: segment {n} (receipt seq")), "{out}");
    }
    assert!(out.contains("locked (COMPLIANCE) until"), "{out}");

    // Behind our back, other bytes at segment 1's key: a new latest version. The recorded
    // version is still there, and that one is what verify reads.
    let first = &receipts(&vault)[0];
    let key = first["key"].as_str().unwrap().to_string();
    let recorded = first["version_id"].as_str().unwrap().to_string();
    let client = weed.client();
    let newer = runtime().block_on(async {
        client
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"not a segment"))
            .send()
            .await
            .unwrap()
            .version_id()
            .unwrap()
            .to_string()
    });
    assert_ne!(newer, recorded);
    let (code, out) = vault.verify(&["--config", config, "--s3"]);
    assert_eq!(
        code, 0,
        "verify --s3 must read the recorded version, not the latest: {out}"
    );

    // A bucket without the objects (another store's, of the same name): each segment named.
    let empty = Weed::start();
    empty.create_locked_bucket(BUCKET);
    let elsewhere = config_at(&vault, &empty.settings(BUCKET), "elsewhere.toml");
    let (code, out) = vault.verify(&["--config", elsewhere.to_str().unwrap(), "--s3"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("S3 TAMPERED: segment 1 (receipt seq") && out.contains("missing from the bucket"),
        "{out}"
    );
}

/// A configuration like `config`'s, under another file name.
fn config_at(vault: &Vault, s3: &S3Settings, name: &str) -> PathBuf {
    let path = config(vault, s3, 1);
    let renamed = path.with_file_name(name);
    std::fs::rename(&path, &renamed).unwrap();
    renamed
}

#[test]
fn with_s3_unreachable_intake_goes_on_status_shows_the_backlog_and_offload_catches_up() {
    let port = free_port();
    let vault = Vault::new();
    let config = config(&vault, &settings_for(port, BUCKET), 1);
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    deliver(&server, 0, 9, 300_000);
    wait_for(
        Duration::from_secs(60),
        "a failure and the backlog in status",
        &server,
        || {
            let s = status(&vault);
            s["offload"]["backlog_segments"].as_u64().unwrap_or(0) >= 2
                && s["offload"]["server"]["failures_total"].as_u64().unwrap_or(0) >= 1
        },
    );
    let text = String::from_utf8(vault.ok(&["status"])).unwrap();
    assert!(text.contains("offload     last error"), "{text}");
    assert!(receipts(&vault).is_empty());
    let metrics = crate::metrics::get(server.admin.unwrap(), "/metrics").1;
    assert!(
        !metrics.contains("mailvault_offload_failures_total 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("mailvault_offload_failures_total"), "{metrics}");

    let weed = Weed::start_on(port);
    weed.create_locked_bucket(BUCKET);
    let segments = wait_offloaded(&vault, &server, 2);
    let s = status(&vault);
    assert_eq!(s["offload"]["backlog_segments"], 0, "{s:#}");
    assert_eq!(s["offload"]["server"]["retrying"], false, "{s:#}");
    // Intake went on meanwhile and goes on.
    deliver(&server, 100, 1, 1000);
    assert_eq!(server.stop(), Some(0), "a clean stop");
    assert_exactly_once(&vault, &weed, &segments);
}

#[test]
fn an_object_uploaded_by_a_run_that_died_before_its_receipt_is_recorded_not_uploaded_again() {
    let port = free_port();
    let vault = Vault::new();
    let settings = settings_for(port, BUCKET);
    let config = config(&vault, &settings, 1);
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    deliver(&server, 0, 9, 300_000);
    wait_for(Duration::from_secs(60), "two sealed segments", &server, || {
        sealed(&vault).len() >= 2
    });
    assert_eq!(server.stop(), Some(0), "a clean stop");
    // What a run killed between its upload and its receipt leaves: segment 1 in the bucket.
    let weed = Weed::start_on(port);
    weed.create_locked_bucket(BUCKET);
    let origin = status(&vault)["origin"].as_str().unwrap().to_string();
    let key = settings.segment_key(&origin, "00000000000000000001.seg");
    let mut with_credentials = settings.clone();
    with_credentials.credentials_file = Some(weed.credentials_file());
    let bucket = Bucket::connect(&with_credentials).unwrap();
    let segment = vault.segments()[0].clone();
    let until = 4_000_000_000;
    let Put::Created { version_id, .. } = runtime()
        .block_on(bucket.put_file(&segment, &key, until))
        .unwrap()
    else {
        panic!("the key was free");
    };

    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let segments = wait_offloaded(&vault, &server, 2);
    assert_eq!(server.stop(), Some(0), "a clean stop");
    let first = &receipts(&vault)[0];
    assert_eq!(first["segment"], 1);
    assert_eq!(
        first["version_id"],
        version_id.as_str(),
        "the object found was recorded"
    );
    assert_eq!(first["retain_until"], "2096-10-02T07:06:40Z");
    assert_exactly_once(&vault, &weed, &segments);
    let (code, out) = vault.verify(&["--config", config.to_str().unwrap(), "--s3"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn kill9_during_multipart_uploads_leaves_exactly_one_receipt_per_segment() {
    let weed = Weed::start();
    weed.create_locked_bucket(BUCKET);
    let vault = Vault::new();
    let mut settings = weed.settings(BUCKET);
    // 6 MiB segments in 5 MiB parts: every upload is a multipart one.
    settings.part_mib = 5;
    let config = config(&vault, &settings, 6);
    let config = config.to_str().unwrap();
    let server = vault.serve(&["--config", config]);
    // About 27 MiB: three sealed segments at least; the kill comes while they go up.
    deliver(&server, 0, 20, 1_000_000);
    server.kill9();
    let server = vault.serve(&["--config", config]);
    let segments = wait_offloaded(&vault, &server, 3);
    assert_eq!(server.stop(), Some(0), "a clean stop");
    assert_exactly_once(&vault, &weed, &segments);
    let (code, out) = vault.verify(&["--config", config, "--s3"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_credentials_file_others_can_read_stops_the_start_with_a_clear_message() {
    use std::os::unix::fs::PermissionsExt;
    let vault = Vault::new();
    let config = config(&vault, &settings_for(free_port(), BUCKET), 1);
    let credentials = vault.dir.parent().unwrap().join("s3.credentials");
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = vault.run_bounded(&[
        "serve",
        "--create",
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
        "--admin",
        "none",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mode 0644") && stderr.contains("must be 0600"),
        "{stderr}"
    );
    assert!(!stderr.contains(weed::SECRET_KEY), "{stderr}");
}
