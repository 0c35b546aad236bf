//! `[storage.s3] cache_size`: offloaded segments evicted locally (a stub in place of the
//! file) and read back from the bucket — IMAP FETCH over TLS and `show` byte-exact, a forged
//! cached frame found and fetched again, a missing object a clear error that leaves the rest
//! serving, `verify` reading the evicted segments from the bucket, `search` (snippets),
//! `proof` and `audit` from the command line, a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use archive_core::log::evicted::EvictedSegment;
use archive_core::log::record::{encode_frame, Codec, FrameHeader, Leaf, RecordKind, FRAME_HEADER_LEN};

use super::weed::{write_credentials, Weed};
use super::{deliver_messages, wait_for, BUCKET};
use crate::intake::lmtp_send;
use crate::util::{python_json, Server, Vault};

const PASSWORD: &[u8] = b"correct horse battery\n";

/// Fetches each UID given (BODY.PEEK[]) over IMAPS as `archive`; one JSON object per UID:
/// the bytes (hex), or the tagged answer when there are none.
const FETCH: &str = r#"
import imaplib, json, ssl, sys
port = int(sys.argv[1])
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=tls)
m.login("archive", "correct horse battery")
m.select("INBOX", readonly=True)
for uid in sys.argv[2:]:
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
    body = next((d[1] for d in data if isinstance(d, tuple)), None)
    print(json.dumps({"uid": int(uid), "typ": typ,
                      "hex": body.hex() if body is not None else None,
                      "text": [d.decode(errors="replace") for d in data if isinstance(d, bytes)]}), flush=True)
m.logout()
"#;

/// A serve configuration: 1 MiB segments, every offloaded segment beyond one byte evicted,
/// no in-memory read cache (every read goes to the log, or the bucket).
fn config(vault: &Vault, weed: &Weed) -> PathBuf {
    let dir = vault.dir.parent().unwrap();
    let credentials = write_credentials(dir);
    let s3 = weed.settings(BUCKET);
    let path = dir.join("mailvault.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nsegment_mib = 1\nread_cache_mib = 0\n\n[storage.s3]\nendpoint = {:?}\nbucket = {:?}\n\
             retention = {:?}\ncredentials_file = {:?}\ncache_size = 1\n",
            s3.endpoint, s3.bucket, s3.retention, credentials
        ),
    )
    .unwrap();
    path
}

/// The stubs in the log directory.
fn stubs(vault: &Vault) -> Vec<EvictedSegment> {
    let mut out: Vec<EvictedSegment> = std::fs::read_dir(vault.dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "evicted"))
        .map(|p| EvictedSegment::read(&p).unwrap())
        .collect();
    out.sort_by_key(|s| s.first_seq);
    out
}

fn fetch(server: &Server, uids: &[u64]) -> Vec<serde_json::Value> {
    let mut args = vec![server.imaps.port().to_string()];
    args.extend(uids.iter().map(u64::to_string));
    python_json(FETCH, &args)
}

fn metric(server: &Server, name: &str) -> u64 {
    let text = crate::metrics::get(server.admin.unwrap(), "/metrics").1;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// The subject line a delivered message starts with.
fn subject_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes.split(|b| *b == b'\r').next().unwrap()).into_owned()
}

/// The cache file holding the frame at `offset` of `segment`.
fn cached(vault: &Vault, segment: u64, offset: u64) -> PathBuf {
    vault
        .dir
        .join("cache/ranges")
        .join(format!("{segment:020}-{offset:020}"))
}

/// Record `donor`'s frame relabelled as record `seq` (its leaf's seq changed, the frame's
/// checksum made right): a frame every check but the leaf hash accepts — the content hash
/// in the leaf is the donor's, and matches the donor's content.
fn forged(donor: &[u8], seq: u64) -> Vec<u8> {
    let header_bytes: [u8; FRAME_HEADER_LEN] = donor[..FRAME_HEADER_LEN].try_into().unwrap();
    let header = FrameHeader::parse(&header_bytes).unwrap();
    let body = header.open(&header_bytes, &donor[FRAME_HEADER_LEN..]).unwrap();
    let mut leaf = Leaf::decode(body.leaf).unwrap();
    leaf.seq = seq;
    let codec = match header.codec {
        0 => Codec::Raw,
        1 => Codec::Zstd,
        _ => Codec::ZstdDictionary,
    };
    encode_frame(
        RecordKind::Message,
        codec,
        &body.chain,
        &leaf.encode(),
        body.payload,
    )
    .unwrap()
}

#[test]
fn evicted_segments_serve_imap_and_show_byte_exact_checked_cached_and_verified() {
    let weed = Weed::start();
    weed.create_locked_bucket(BUCKET);
    let vault = Vault::new();
    let config = config(&vault, &weed);
    let config = config.to_str().unwrap();
    let server = vault.serve(&["--config", config]);
    vault.ok_in(
        &["user", "add", "archive", "--address", "archive@vault.example"],
        Some(PASSWORD),
    );
    // First a message with words in its body (in segment 1: evicted), then about 8 MiB:
    // twelve messages of 400 KB and two of 2.7 MB (each a segment of its own).
    let mut originals: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let worded = WORDED.to_vec();
    assert!(lmtp_send(server.lmtp, &worded).is_some());
    originals.insert(subject_of(&worded), worded);
    for (from, count, noise) in [
        (0, 6, 300_000),
        (6, 1, 2_000_000),
        (7, 6, 300_000),
        (13, 1, 2_000_000),
    ] {
        for m in deliver_messages(&server, from, count, noise) {
            originals.insert(subject_of(&m), m);
        }
    }
    // Every segment but the newest two (the active one, the newest sealed one) evicted.
    wait_for(Duration::from_secs(120), "evicted segments", &server, || {
        stubs(&vault).len() >= 3 && vault.segments().len() <= 2
    });
    let evicted = stubs(&vault);
    for stub in &evicted {
        let file = vault.dir.join("log").join(format!("{:020}.seg", stub.first_seq));
        assert!(!file.exists(), "{} is gone", file.display());
    }
    // Which records are messages, from the log read with the bucket.
    let listing: Vec<serde_json::Value> = String::from_utf8(vault.ok(&["log", "--json", "--config", config]))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let messages: Vec<u64> = listing
        .iter()
        .filter(|r| r["kind"] == "message")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(messages.len(), originals.len(), "{listing:#?}");
    // Each message record's original bytes, by its content hash.
    let by_hash: BTreeMap<String, &Vec<u8>> = originals
        .values()
        .map(|m| (to_hex(blake3::hash(m).as_bytes()), m))
        .collect();
    let by_seq: BTreeMap<u64, Vec<u8>> = listing
        .iter()
        .filter(|r| r["kind"] == "message")
        .map(|r| {
            let hash = r["blake3"].as_str().unwrap();
            (r["seq"].as_u64().unwrap(), by_hash[hash].clone())
        })
        .collect();
    let in_evicted = |seq: u64| evicted.iter().any(|s| s.first_seq <= seq && seq <= s.last_seq());
    let remote: Vec<u64> = messages.iter().copied().filter(|s| in_evicted(*s)).collect();
    assert!(remote.len() >= 5, "messages in evicted segments: {remote:?}");
    // Without the configuration, `log` lists them by seq, and says where they are.
    let bare = String::from_utf8(vault.ok(&["log"])).unwrap();
    assert!(
        bare.contains("evicted") && bare.contains("evicted to s3://archive/"),
        "{bare}"
    );

    // IMAP FETCH over TLS: every message byte-exact, the evicted ones fetched from the bucket.
    for answer in fetch(&server, &messages) {
        let uid = answer["uid"].as_u64().unwrap();
        assert!(
            bytes_of(&answer) == by_seq[&uid],
            "uid {uid}: not the bytes delivered"
        );
    }
    assert!(metric(&server, "mailvault_remote_fetches_total") >= remote.len() as u64);
    assert!(metric(&server, "mailvault_remote_fetched_bytes_total") > 2_000_000);
    // `show` with the configuration: byte-exact too.
    for seq in &remote {
        let bytes = vault.ok(&["show", &seq.to_string(), "--config", config]);
        assert!(bytes == by_seq[seq], "show {seq}: not the bytes delivered");
    }
    // Read again: from the range cache now.
    let hits = metric(&server, "mailvault_range_cache_hits_total");
    fetch(&server, &remote[..1]);
    assert!(metric(&server, "mailvault_range_cache_hits_total") > hits);

    // A cached frame replaced by another record's, relabelled to pass every check but the
    // leaf's: found, discarded, fetched again (two of the same length: remote[0] is the
    // short worded message).
    let (victim, donor) = (remote[1], remote[2]);
    let frame_of = |seq: u64| {
        let stub = evicted
            .iter()
            .find(|s| s.first_seq <= seq && seq <= s.last_seq())
            .unwrap();
        (stub.first_seq, *stub.frame(seq).unwrap())
    };
    let ((vs, ve), (ds, de)) = (frame_of(victim), frame_of(donor));
    let donor_frame = std::fs::read(cached(&vault, ds, de.offset)).unwrap();
    std::fs::write(cached(&vault, vs, ve.offset), forged(&donor_frame, victim)).unwrap();
    let discarded = metric(&server, "mailvault_range_cache_discarded_total");
    let answer = &fetch(&server, &[victim])[0];
    assert_eq!(
        bytes_of(answer),
        by_seq[&victim],
        "the victim's own bytes, not the donor's"
    );
    assert_eq!(
        metric(&server, "mailvault_range_cache_discarded_total"),
        discarded + 1
    );
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("failed its check: discarded, fetched again"),
        "the server log says so"
    );
    // And `show` through the same cache, forged again.
    std::fs::write(cached(&vault, vs, ve.offset), forged(&donor_frame, victim)).unwrap();
    assert_eq!(
        vault.ok(&["show", &victim.to_string(), "--config", config]),
        by_seq[&victim]
    );

    // verify reads the evicted segments from the bucket; without the configuration it says
    // what it did not read.
    let (code, out) = vault.verify(&["--config", config]);
    assert_eq!(code, 0, "{out}");
    for stub in &evicted {
        assert!(
            out.contains(&format!(
                "segment {} evicted locally: read from s3://archive/",
                stub.first_seq
            )),
            "{out}"
        );
    }
    let (code, out) = vault.verify(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NOT READ"), "{out}");
    let status = String::from_utf8(vault.ok(&["status"])).unwrap();
    assert!(status.contains("evicted to object storage"), "{status}");
    assert_eq!(server.stop(), Some(0), "a clean stop");
    // (After the stop: `proof` needs the tree cache the server writes as it stops.)
    cli_reads_of_the_evicted_segment(&vault, config, &evicted[0]);

    // An object missing from the bucket (the stub of the first evicted segment pointed at a
    // key that is not there, its cached frames gone): that message is a clear error, the
    // others still read — after a restart with evicted segments.
    let lost = &evicted[0];
    let stub_path = vault
        .dir
        .join("log")
        .join(format!("{:020}.evicted", lost.first_seq));
    let mut moved = lost.clone();
    moved.receipt.key = format!("{}.elsewhere", lost.receipt.key);
    std::fs::write(&stub_path, moved.encode()).unwrap();
    remove_cached(&vault, lost.first_seq);
    let server = vault.serve(&["--config", config]);
    let lost_seq = *messages
        .iter()
        .find(|s| lost.first_seq <= **s && **s <= lost.last_seq())
        .unwrap();
    let others: Vec<u64> = messages
        .iter()
        .copied()
        .filter(|s| *s != lost_seq && !(lost.first_seq..=lost.last_seq()).contains(s))
        .collect();
    let mut uids = vec![lost_seq];
    uids.extend(&others);
    let answers = fetch(&server, &uids);
    assert_eq!(answers[0]["typ"], "NO", "{}", answers[0]);
    assert!(
        answers[0]["text"].to_string().contains("UNAVAILABLE"),
        "{}",
        answers[0]
    );
    for a in &answers[1..] {
        let uid = a["uid"].as_u64().unwrap();
        assert!(bytes_of(a) == by_seq[&uid], "uid {uid}: not the bytes delivered");
    }
    let log = server.log.lock().unwrap().clone();
    let name = format!("{:020}.seg", lost.first_seq);
    assert!(
        log.contains(&name) && log.contains(&moved.receipt.key) && log.contains("missing from the bucket"),
        "{log}"
    );
    let out = vault.run(&["show", &lost_seq.to_string(), "--config", config]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&name) && stderr.contains(&moved.receipt.key),
        "{stderr}"
    );
    assert_eq!(server.stop(), Some(0), "a clean stop");
}

/// The message with words in its body, delivered first (into segment 1, which is evicted).
const WORDED: &[u8] = b"Subject: harbour minutes\r\nFrom: keeper@example.org\r\n\r\n\
The lighthouse keeper counted forty-two gulls on the northern pier.\r\n";

/// `search` (its snippet), `proof` and `audit` on the command line with the configuration
/// read the evicted segment `first` from the bucket; without it each fails with one line
/// naming the segment and where its bytes are — a search never quietly drops the snippet.
fn cli_reads_of_the_evicted_segment(vault: &Vault, config: &str, first: &EvictedSegment) {
    let out = vault.ok(&["search", "--config", config, "--json", "lighthouse"]);
    let hits: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 1, "{hits:#?}");
    let seq = hits[0]["seq"].as_u64().unwrap();
    assert!(first.first_seq <= seq && seq <= first.last_seq(), "{hits:#?}");
    let snippet = hits[0]["snippet"].as_str().unwrap_or_default();
    assert!(
        snippet.contains("lighthouse keeper counted forty-two gulls"),
        "{hits:#?}"
    );
    let proof: serde_json::Value =
        serde_json::from_slice(&vault.ok(&["proof", &seq.to_string(), "--config", config])).unwrap();
    assert_eq!(proof["seq"], seq, "{proof:#}");
    assert_eq!(
        proof["leaf_hash"],
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            first.frame(seq).unwrap().leaf_hash
        ),
        "the leaf read from the bucket is the stub's: {proof:#}"
    );
    let trail = String::from_utf8(vault.ok(&["audit", "--config", config, "--action", "search"])).unwrap();
    assert!(trail.contains("lighthouse"), "{trail}");

    let segment = format!("{:020}.seg", first.first_seq);
    for args in [
        vec!["search", "--json", "lighthouse"],
        vec!["proof", &seq.to_string()],
        vec!["audit"],
    ] {
        let out = vault.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} without --config: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&segment) && stderr.contains("s3://archive/") && stderr.contains("--config"),
            "{args:?}: {stderr}"
        );
    }
}

/// The bytes of a FETCH answer.
fn bytes_of(answer: &serde_json::Value) -> Vec<u8> {
    let hex = answer["hex"]
        .as_str()
        .unwrap_or_else(|| panic!("no bytes: {answer}"));
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes the cached frames of `segment`.
fn remove_cached(vault: &Vault, segment: u64) {
    let dir: &Path = &vault.dir.join("cache/ranges");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{segment:020}-"))
        {
            std::fs::remove_file(path).unwrap();
        }
    }
}
