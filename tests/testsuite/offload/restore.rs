//! Disaster recovery: a store built through `serve` with offload, its data directory deleted,
//! rebuilt by `restore --from-s3` — with the surviving tail, and without it (restored up to the
//! last sealed segment, the lost seqs named) — then `verify` passes and IMAP shows the same
//! mailboxes, UIDVALIDITY, UIDs and bytes as before, for a user and an auditor. And a bucket
//! that is not what the offload thread wrote — an unlocked tampered object, a locked tampered
//! one, a missing segment, a foreign object — is refused, naming the segment, leaving nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::ObjectLockMode;

use super::weed::{runtime, Weed};
use super::{config, config_at, deliver, wait_offloaded, BUCKET};
use crate::intake::lmtp_send;
use crate::util::{incompressible_message, python_json, Server, Vault};

const PASSWORD: &[u8] = b"correct horse battery\n";

/// Every selectable mailbox of a user: UIDVALIDITY, and UID → SHA-256 of the bytes FETCH
/// BODY.PEEK[] returns. One JSON object per mailbox.
const SNAPSHOT: &str = r#"
import hashlib, imaplib, json, re, ssl, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=tls, timeout=120)
m.login(user, password)
typ, lines = m.list()
for line in lines:
    flags, name = re.match(r'\(([^)]*)\) (?:NIL|"[^"]*") (.+)$', line.decode()).groups()
    if "\\Noselect" in flags:
        continue
    name = name.strip('"')
    typ, _ = m.select('"%s"' % name, readonly=True)
    assert typ == "OK", name
    uidvalidity = int(m.response("UIDVALIDITY")[1][0])
    typ, data = m.uid("SEARCH", None, "ALL")
    messages = {}
    for uid in data[0].split():
        typ, data = m.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
        body = [d[1] for d in data if isinstance(d, tuple)][0]
        messages[uid.decode()] = hashlib.sha256(body).hexdigest()
    print(json.dumps(dict(mailbox=name, uidvalidity=uidvalidity, messages=messages)), flush=True)
m.logout()
"#;

/// mailbox → (UIDVALIDITY, UID → SHA-256 of the message).
type Snapshot = BTreeMap<String, (u64, BTreeMap<u64, String>)>;

fn snapshot(server: &Server, user: &str) -> Snapshot {
    let password = std::str::from_utf8(PASSWORD).unwrap().trim().to_string();
    python_json(
        SNAPSHOT,
        &[server.imaps.port().to_string(), user.into(), password],
    )
    .into_iter()
    .map(|v| {
        let messages = v["messages"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(uid, sha)| (uid.parse().unwrap(), sha.as_str().unwrap().to_string()))
            .collect();
        (
            v["mailbox"].as_str().unwrap().to_string(),
            (v["uidvalidity"].as_u64().unwrap(), messages),
        )
    })
    .collect()
}

/// The snapshot with only the UIDs below `first_lost`.
fn before(snapshot: &Snapshot, first_lost: u64) -> Snapshot {
    snapshot
        .iter()
        .map(|(name, (validity, messages))| {
            let kept = messages
                .iter()
                .filter(|(uid, _)| **uid < first_lost)
                .map(|(u, s)| (*u, s.clone()))
                .collect();
            (name.clone(), (*validity, kept))
        })
        .collect()
}

/// A message to erika (her INBOX) of about 4/3 × `noise` bytes.
fn to_erika(subject: &str, noise: usize) -> Vec<u8> {
    let mut m = b"From: max@example.org\r\nTo: erika@example.com\r\n".to_vec();
    m.extend(incompressible_message(subject, noise));
    m
}

/// The store's first seq of every segment file, oldest first.
fn firsts(vault: &Vault) -> Vec<u64> {
    vault
        .segments()
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect()
}

/// Runs `mailvault --data DIR restore --from-s3 ARGS` → (exit code, stdout + stderr).
fn restore(vault: &Vault, args: &[&str]) -> (i32, String) {
    let mut all = vec!["restore", "--from-s3"];
    all.extend_from_slice(args);
    let out = vault.run(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// What outlives the machine: a backup of the signing key and of users.json, in `dir`.
fn keep_backups(vault: &Vault, dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("signing.key.backup");
    let users = dir.join("users.json.backup");
    std::fs::copy(vault.dir.join("signing.key"), &key).unwrap();
    std::fs::copy(vault.dir.join("users.json"), &users).unwrap();
    (key, users)
}

#[test]
fn disaster_recovery_from_the_bucket_gives_back_the_same_mail_under_the_same_uids() {
    let weed = Weed::start();
    weed.create_locked_bucket(BUCKET);
    let vault = Vault::new();
    vault.ok(&["init"]);
    vault.ok_in(
        &["user", "add", "erika", "--address", "erika@example.com"],
        Some(PASSWORD),
    );
    vault.ok_in(
        &["user", "add", "audrey", "--role", "auditor", "--all"],
        Some(PASSWORD),
    );
    let mut settings = weed.settings(BUCKET);
    settings.part_mib = 5;
    let config = config(&vault, &settings, 1);
    let config = config.to_str().unwrap();
    let server = vault.serve(&["--config", config]);
    // 1 MiB segments: small messages to erika and to nobody, and two of several MiB (one of
    // them above the part size: a multipart upload, and a multi-MiB download).
    deliver(&server, 0, 6, 300_000);
    for (i, noise) in [(0, 2_500_000), (1, 4_500_000)] {
        assert!(lmtp_send(server.lmtp, &to_erika(&format!("large {i}"), noise)).is_some());
    }
    for i in 0..4 {
        assert!(lmtp_send(server.lmtp, &to_erika(&format!("small {i}"), 200_000)).is_some());
    }
    wait_offloaded(&vault, &server, 3);
    // The newest mail stays in the active segment: what a lost disk takes with it.
    for i in 0..2 {
        assert!(lmtp_send(server.lmtp, &to_erika(&format!("late {i}"), 1000)).is_some());
    }
    let user_before = snapshot(&server, "erika");
    let auditor_before = snapshot(&server, "audrey");
    assert!(
        user_before["INBOX"].1.len() >= 8,
        "erika sees her mail: {user_before:?}"
    );
    assert_eq!(server.stop(), Some(0), "a clean stop");
    // The bucket holds the segments with receipts; the first one without is where a restore
    // without the tail ends.
    let receipted = super::receipts_per_segment(&vault);
    let segments = firsts(&vault);
    let sealed: Vec<u64> = segments
        .iter()
        .copied()
        .filter(|n| receipted.contains_key(n))
        .collect();
    let first_lost = *segments.iter().find(|n| !receipted.contains_key(n)).unwrap();
    assert!(sealed.len() >= 3, "{segments:?}");
    assert!(
        user_before["INBOX"].1.keys().any(|uid| *uid >= first_lost),
        "some of erika's mail is in the active segment"
    );

    // The machine is gone. What is left: the bucket, the configuration with its credentials,
    // the key's and users.json's backups — and in the first variant the active segment's disk
    // (here: a copy of the old log/ directory, sealed segments and all).
    let kept = vault.dir.parent().unwrap().join("kept");
    std::fs::create_dir(&kept).unwrap();
    let (key, users) = keep_backups(&vault, &kept);
    let tail = kept.join("log");
    std::fs::create_dir(&tail).unwrap();
    for segment in vault.segments() {
        let to = tail.join(segment.file_name().unwrap());
        std::fs::copy(&segment, &to).unwrap();
    }
    std::fs::remove_dir_all(&vault.dir).unwrap();

    // With the tail: everything comes back.
    let (code, out) = restore(
        &vault,
        &[
            "--config",
            config,
            "--signing-key",
            key.to_str().unwrap(),
            "--tail",
            tail.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("bucket identity") && out.contains("match the signing key"),
        "{out}"
    );
    for n in &sealed {
        assert!(out.contains(&format!("segment {n:020}.seg: ")), "{out}");
    }
    assert!(
        out.contains(&format!("segment {first_lost:020}.seg: from ")),
        "{out}"
    );
    assert!(!out.contains("LOST"), "{out}");
    let (code, verified) = vault.verify(&["--config", config, "--s3"]);
    assert_eq!(code, 0, "{verified}");
    std::fs::copy(&users, vault.dir.join("users.json")).unwrap();
    let server = vault.serve(&["--config", config]);
    assert_eq!(snapshot(&server, "erika"), user_before);
    assert_eq!(snapshot(&server, "audrey"), auditor_before);
    assert_eq!(server.stop(), Some(0));
    let trail = String::from_utf8(vault.ok(&["audit", "--json"])).unwrap();
    assert!(
        trail.contains("\"action\":\"restore\"") && trail.contains("from --tail"),
        "{trail}"
    );

    // Without it: up to the last sealed segment, and the output names what is gone.
    std::fs::remove_dir_all(&vault.dir).unwrap();
    let (code, out) = restore(
        &vault,
        &["--config", config, "--signing-key", key.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("LOST: seq {first_lost} and every later one")),
        "{out}"
    );
    assert!(out.contains(&format!("seq 1..{}", first_lost - 1)), "{out}");
    let (code, verified) = vault.verify(&[]);
    assert_eq!(code, 0, "{verified}");
    std::fs::copy(&users, vault.dir.join("users.json")).unwrap();
    let server = vault.serve(&["--config", config]);
    let user_after = snapshot(&server, "erika");
    assert_eq!(user_after, before(&user_before, first_lost));
    assert_ne!(user_after, user_before, "the late mail is gone");
    assert_eq!(snapshot(&server, "audrey"), before(&auditor_before, first_lost));
    assert_eq!(server.stop(), Some(0));
}

/// Copies the bucket's segment objects of `origin` under `prefix`, each locked, through
/// `change` (which may alter the bytes, leave the lock off, or skip the object).
fn copy_segments(
    weed: &Weed,
    origin: &str,
    prefix: &str,
    mut change: impl FnMut(&str, &mut Vec<u8>) -> Option<bool>,
) {
    let client = weed.client();
    let until = DateTime::from_secs(4_000_000_000);
    runtime().block_on(async {
        let listed = client
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(format!("{origin}/"))
            .send()
            .await
            .unwrap();
        for object in listed.contents() {
            let key = object.key().unwrap();
            let mut bytes = client
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .to_vec();
            let Some(locked) = change(key, &mut bytes) else {
                continue;
            };
            let mut put = client
                .put_object()
                .bucket(BUCKET)
                .key(format!("{prefix}{key}"))
                .body(ByteStream::from(bytes));
            if locked {
                put = put
                    .object_lock_mode(ObjectLockMode::Compliance)
                    .object_lock_retain_until_date(until);
            }
            put.send().await.unwrap();
        }
    });
}

#[test]
fn a_bucket_that_is_not_what_offload_wrote_is_refused_naming_the_segment_and_nothing_is_left() {
    let weed = Weed::start();
    weed.create_locked_bucket(BUCKET);
    let vault = Vault::new();
    let settings = weed.settings(BUCKET);
    let config = config(&vault, &settings, 1);
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    // Three sealed segments at least: one can go missing between two others.
    deliver(&server, 0, 12, 300_000);
    wait_offloaded(&vault, &server, 3);
    assert_eq!(server.stop(), Some(0));
    let origin = super::status(&vault)["origin"].as_str().unwrap().to_string();
    let kept = vault.dir.parent().unwrap().join("kept");
    std::fs::create_dir(&kept).unwrap();
    let key = kept.join("signing.key");
    std::fs::copy(vault.dir.join("signing.key"), &key).unwrap();
    let key = key.to_str().unwrap();
    let second = format!("{:020}.seg", firsts(&vault)[1]);
    let target = Vault::new();

    // A restore that fails leaves no store and no staging directory behind.
    let refused = |prefix: &str, expect: &[&str]| {
        let mut s = settings.clone();
        s.prefix = prefix.to_string();
        let config = config_at(&vault, &s, &format!("{}.toml", prefix.trim_end_matches('/')));
        let (code, out) = restore(
            &target,
            &["--config", config.to_str().unwrap(), "--signing-key", key],
        );
        assert_eq!(code, 2, "{prefix}: {out}");
        for e in expect {
            assert!(out.contains(e), "{prefix}: expected {e:?} in {out}");
        }
        assert!(!target.dir.exists(), "{prefix}: {out}");
        let parent = target.dir.parent().unwrap();
        let left: Vec<_> = std::fs::read_dir(parent).unwrap().collect();
        assert!(left.is_empty(), "{prefix}: left behind: {left:?}");
    };
    let flip = |bytes: &mut Vec<u8>| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
    };

    // Segment 2 tampered and put without a lock: not the offload thread's.
    copy_segments(&weed, &origin, "unlocked/", |key, bytes| {
        if key.ends_with(&second) {
            flip(bytes);
            return Some(false);
        }
        Some(true)
    });
    refused(
        "unlocked/",
        &[&second, "no version of it is locked in COMPLIANCE mode"],
    );

    // Tampered and locked: the log does not verify there.
    copy_segments(&weed, &origin, "locked/", |key, bytes| {
        if key.ends_with(&second) {
            flip(bytes);
        }
        Some(true)
    });
    refused("locked/", &["does not verify", &second]);

    // Missing: a gap between segments 1 and 3.
    copy_segments(&weed, &origin, "gap/", |key, _| {
        (!key.ends_with(&second)).then_some(true)
    });
    refused(
        "gap/",
        &[
            "a gap: seq",
            &format!("and segment {:020}.seg", firsts(&vault)[2]),
        ],
    );

    // Something else among the segments.
    copy_segments(&weed, &origin, "foreign/", |_, _| Some(true));
    runtime().block_on(async {
        weed.client()
            .put_object()
            .bucket(BUCKET)
            .key(format!("foreign/{origin}/log/notes.txt"))
            .body(ByteStream::from_static(b"hello"))
            .send()
            .await
            .unwrap();
    });
    refused("foreign/", &["notes.txt", "a foreign object"]);

    // A target that is not empty is refused before anything is read.
    std::fs::create_dir_all(&target.dir).unwrap();
    std::fs::write(target.dir.join("something"), b"x").unwrap();
    let (code, out) = restore(
        &target,
        &["--config", config.to_str().unwrap(), "--signing-key", key],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not empty"), "{out}");
}
