//! The store's promises, tested against real files: durable group-committed appends, crash
//! safety under kill -9, recovery, segment sealing, arrivals, and derived state that is
//! rebuilt identically from the log.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use archive_core::index::kv::Role;
use archive_core::log::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use archive_core::log::reader::LogReader;
use archive_core::log::record::RecordKind;
use archive_core::store::Layout;
use archive_core::verify::verify_log;
use archive_core::{OnDuplicate, Store, StoreConfig};
use common::{create, envelope, temp_dir};

/// Opens the store again right after a `close`. The write lock is a `flock` on `LOCK`, held
/// by an open file description: a child process that another test of this binary forks in
/// that instant holds a copy of the descriptor until its `exec`, and with it the lock. On a
/// loaded machine that can take a moment, so a lock held over a reopen is waited for briefly.
fn open(store: &Path, config: StoreConfig) -> Store {
    when_unlocked(|| Store::open(store, &store.join("signing.key"), config.clone()))
}

/// `take` (an open or a reindex) once no forked child holds the lock any more (see [`open`]).
fn when_unlocked(mut take: impl FnMut() -> archive_core::Result<Store>) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match take() {
            Err(archive_core::Error::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result.expect("open"),
        }
    }
}

/// Appends `message(n)` for each `n`, each from a@x to b@y.
fn append_numbered(store: &Store, numbers: impl IntoIterator<Item = u64>) {
    for n in numbers {
        store
            .append_message(&envelope("a@x", &["b@y"]), &message(n), OnDuplicate::Skip)
            .unwrap();
    }
}

fn message(n: u64) -> Vec<u8> {
    format!(
        "From: sender{n}@example.com\r\nTo: rcpt{n}@example.org\r\nMessage-ID: <m{n}@example.com>\r\n\
         Subject: test {n}\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn assert_verifies(store: &Path) -> archive_core::verify::Report {
    let layout = Layout::new(store);
    let report = verify_log(&layout.log_dir, &layout.verifier_key().unwrap(), &[]).unwrap();
    assert_eq!(report.problem, None, "verify found a problem");
    report
}

#[test]
fn concurrent_appends_are_all_durable_and_share_fsyncs() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let store = Arc::new(open(&path, StoreConfig::default()));
    let threads = 32;
    let per_thread = 25u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let n = t * 1000 + i;
                        let a = store
                            .append_message(
                                &envelope("a@x", &["b@y"]),
                                &message(n),
                                OnDuplicate::RecordArrival,
                            )
                            .unwrap();
                        (a.seq, n)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acked: Vec<(u64, u64)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let stats = store.stats();
    assert_eq!(acked.len() as u64, threads * per_thread);
    // Every message, plus the dictionary record trained along the way.
    assert!(stats.appends >= threads * per_thread);
    assert!(
        stats.fsyncs < stats.appends,
        "group commit: {} fsyncs for {} appends",
        stats.fsyncs,
        stats.appends
    );
    for (seq, n) in &acked {
        assert_eq!(store.read_message_unscoped(*seq).unwrap(), message(*n));
    }
    let mut seqs: Vec<u64> = acked.iter().map(|a| a.0).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), acked.len(), "every append got its own seq");
    Arc::try_unwrap(store).ok().unwrap().close().unwrap();
    let report = assert_verifies(&path);
    assert_eq!(report.by_kind.get("message"), Some(&(threads * per_thread)));
}

#[test]
fn a_second_delivery_is_an_arrival_and_the_bytes_are_stored_once() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default());
    let first = store
        .append_message(
            &envelope("a@x", &["b@y"]),
            &message(1),
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    let again = store
        .append_message(
            &envelope("a@x", &["bcc@z"]),
            &message(1),
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    let skipped = store
        .append_message(&envelope("a@x", &["c@y"]), &message(1), OnDuplicate::Skip)
        .unwrap();
    assert_eq!(first.kind, Some(RecordKind::Message));
    assert_eq!(again.kind, Some(RecordKind::Arrival));
    assert_eq!(again.first_seq, first.seq);
    assert_eq!(skipped.kind, None);
    assert_eq!(skipped.seq, first.seq);
    assert_eq!(store.read_message_unscoped(again.seq).unwrap(), message(1));
    // The envelope-only recipient of the second delivery is indexed under the arrival.
    assert_eq!(
        store.by_address(Role::Recipient, "bcc@z").unwrap(),
        vec![again.seq]
    );
    store.close().unwrap();
    let report = assert_verifies(&path);
    assert_eq!(report.by_kind.get("message"), Some(&1));
    assert_eq!(report.by_kind.get("arrival"), Some(&1));
    assert_eq!(report.content_bytes, message(1).len() as u64);
}

#[test]
fn appends_never_change_bytes_already_written_and_sealed_segments_are_read_only() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let config = StoreConfig {
        segment_size: 2048,
        ..StoreConfig::default()
    };
    let mut before: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    for round in 0..3u64 {
        let store = open(&path, config.clone());
        append_numbered(&store, (0..20).map(|i| round * 100 + i));
        store.close().unwrap();
        let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
        for (path, old) in &before {
            let now = std::fs::read(path).unwrap();
            assert!(now.starts_with(old), "{} changed below its end", path.display());
        }
        before = log
            .segments()
            .iter()
            .map(|(_, p)| (p.clone(), std::fs::read(p).unwrap()))
            .collect();
    }
    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    let segments = log.segments();
    assert!(
        segments.len() > 3,
        "small segment size must roll: {}",
        segments.len()
    );
    for (i, (first, seg)) in segments.iter().enumerate() {
        let mode = std::fs::metadata(seg).unwrap().permissions().mode() & 0o777;
        if i + 1 < segments.len() {
            assert_eq!(mode, 0o400, "sealed segment {} is read-only", seg.display());
            // A sealed segment ends with a checkpoint.
            let next_first = segments[i + 1].0;
            let last = log.read(next_first - 1).unwrap();
            assert_eq!(last.kind(), RecordKind::Checkpoint, "segment starting at {first}");
        }
    }
    let report = assert_verifies(&path);
    assert_eq!(report.by_kind.get("message"), Some(&60));
}

#[test]
fn torn_tail_is_cut_at_open_and_damage_before_valid_records_is_refused() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default());
    append_numbered(&store, 0..5);
    store.close().unwrap();
    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    let segment = log.segments()[0].1.clone();

    // A torn write: half a frame of an unacknowledged record at the end; then zeros at the
    // end (a crash after the file grew but before its data reached disk). Each is cut into a
    // quarantine file, and the cut is an audit record (with the checkpoint of its commit).
    for garbage in [&b"x"[..], &[0u8; 300][..]] {
        let intact = std::fs::read(&segment).unwrap();
        let last = assert_verifies(&path).records;
        let garbage = if garbage == b"x" {
            &intact[16..16 + 40]
        } else {
            garbage
        };
        let mut torn = intact.clone();
        torn.extend_from_slice(garbage);
        std::fs::write(&segment, &torn).unwrap();
        let store = open(&path, StoreConfig::default());
        assert_eq!(
            store.stats().last_seq,
            last + 2,
            "every record survives; the cut is audited"
        );
        let cut = store.recovered().expect("a cut").clone();
        assert_eq!(
            (cut.offset, cut.torn_bytes, cut.unsigned_records),
            (intact.len() as u64, garbage.len() as u64, None)
        );
        assert_eq!(std::fs::read(&cut.kept_in).unwrap(), garbage);
        store.close().unwrap();
        assert!(
            std::fs::read(&segment).unwrap().starts_with(&intact),
            "the tail was cut, nothing else"
        );
        assert_verifies(&path);
    }
    let intact = std::fs::read(&segment).unwrap();

    // Damage inside the log, with valid records after it: refuse, change nothing.
    let mut damaged = intact.clone();
    damaged[20] ^= 0xff;
    std::fs::write(&segment, &damaged).unwrap();
    let err = Store::open(&path, &path.join("signing.key"), StoreConfig::default())
        .err()
        .expect("open must refuse a damaged log");
    assert!(err.to_string().contains("seq 1"), "{err}");
    assert_eq!(std::fs::read(&segment).unwrap(), damaged, "nothing was cut");
}

#[test]
fn deleted_derived_state_is_rebuilt_and_answers_identically() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/corpus/spamassassin");
    let mut files: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.truncate(120);
    let store = open(&path, StoreConfig::default());
    let mut seqs = Vec::new();
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        seqs.push((
            store
                .append_message(&envelope("j@x", &["u@y"]), &raw, OnDuplicate::Skip)
                .unwrap(),
            raw,
        ));
    }
    let ids = ["<m1@example.com>"];
    let answers = |store: &Store| {
        let mut out = Vec::new();
        for (a, raw) in &seqs {
            out.push(format!(
                "{:?}",
                store.first_with_content(&a.content_hash).unwrap()
            ));
            assert_eq!(&store.read_message_unscoped(a.seq).unwrap(), raw);
        }
        for id in ids {
            out.push(format!("{:?}", store.by_message_id(id).unwrap()));
        }
        for (role, addr) in [
            (Role::Recipient, "u@y"),
            (Role::Sender, "j@x"),
            (Role::Recipient, "zzzz@example.com"),
        ] {
            out.push(format!("{:?}", store.by_address(role, addr).unwrap()));
        }
        // Header addresses and Message-IDs of real mail.
        let raw = &seqs[0].1;
        let parsed = mail_parser::MessageParser::new().parse_headers(raw).unwrap();
        if let Some(id) = parsed.message_id() {
            let hits = store.by_message_id(id).unwrap();
            assert!(hits.contains(&seqs[0].0.seq));
            out.push(format!("{hits:?}"));
        }
        out
    };
    let before = answers(&store);
    let last_before = store.stats().last_seq;
    let root_before = store.root(last_before).unwrap();
    store.close().unwrap();

    let layout = Layout::new(&path);
    std::fs::remove_file(&layout.kv_index).unwrap();
    std::fs::remove_file(&layout.tree).unwrap();
    let store = open(&path, StoreConfig::default());
    assert_eq!(answers(&store), before);
    assert_eq!(
        store.root(last_before).unwrap(),
        root_before,
        "tree rebuilt from the log"
    );
    store.close().unwrap();

    let store = when_unlocked(|| Store::reindex(&path, &path.join("signing.key"), StoreConfig::default()));
    assert_eq!(answers(&store), before);
    store.close().unwrap();
}

#[test]
fn checkpoints_extend_each_other_and_prove_inclusion() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let mut checkpoints = Vec::new();
    let mut sizes = Vec::new();
    for round in 0..3u64 {
        let store = open(&path, StoreConfig::default());
        append_numbered(&store, (0..(7 + round * 5)).map(|i| round * 100 + i));
        let (_, cp) = store.checkpoint().unwrap().expect("a checkpoint");
        checkpoints.push(cp.checkpoint.clone());
        sizes.push(cp.checkpoint.size);
        // Every record up to the checkpoint is provably in it.
        let record = store.read_record_unscoped(3).unwrap();
        let proof = store.inclusion_proof(3, cp.checkpoint.size).unwrap();
        assert!(verify_inclusion(
            &leaf_hash(&record.leaf_bytes),
            2,
            cp.checkpoint.size,
            &proof,
            &cp.checkpoint.root
        ));
        for earlier in &checkpoints {
            let proof = store.consistency_proof(earlier.size, cp.checkpoint.size).unwrap();
            assert!(verify_consistency(
                earlier.size,
                &earlier.root,
                cp.checkpoint.size,
                &cp.checkpoint.root,
                &proof
            ));
        }
        store.close().unwrap();
    }
    assert!(sizes.windows(2).all(|w| w[0] < w[1]));
    let key = Layout::new(&path).verifier_key().unwrap();
    let pinned: Vec<_> = checkpoints
        .iter()
        .map(|c| {
            key.verify_note(
                &archive_core::log::checkpoint::LogKey::read(&path.join("signing.key"))
                    .unwrap()
                    .sign(c)
                    .note,
            )
            .unwrap()
        })
        .collect();
    let report = verify_log(&Layout::new(&path).log_dir, &key, &pinned).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.pinned_ok.len(), 3);
}

#[test]
fn opening_twice_is_refused() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default());
    let err = Store::open(&path, &path.join("signing.key"), StoreConfig::default())
        .err()
        .unwrap();
    assert!(matches!(err, archive_core::Error::Locked(_)), "{err}");
    drop(store);
    open(&path, StoreConfig::default()).close().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Crash safety: a child process (this test binary, re-executed) appends from several threads
// and prints each acknowledged seq; the parent kills it with SIGKILL at random moments.

const CHILD_ENV: &str = "MAILVAULT_CRASH_CHILD";
const CRASH_TEST: &str = "kill9_never_loses_an_acknowledged_append";

fn crash_child(store: &Path) {
    let cycle: u64 = std::env::var("MAILVAULT_CRASH_CYCLE").unwrap().parse().unwrap();
    let store = Arc::new(open(
        store,
        StoreConfig {
            checkpoint_every: 37,
            segment_size: 16 << 10,
            ..StoreConfig::default()
        },
    ));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let body = format!(
                        "Subject: crash {cycle}/{t}/{i}\r\n\r\n{}\r\n",
                        "x".repeat((i % 50) as usize * 40)
                    );
                    let a = store
                        .append_message(
                            &envelope("a@x", &["b@y"]),
                            body.as_bytes(),
                            OnDuplicate::RecordArrival,
                        )
                        .unwrap();
                    let line = format!("ack {} {}\n", a.seq, blake3::hash(body.as_bytes()).to_hex());
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

/// A cheap random number per call (no dependency needed for jitter).
fn jitter(max_ms: u64) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    Duration::from_millis(h.finish() % max_ms.max(1))
}

#[test]
fn kill9_never_loses_an_acknowledged_append() {
    if let Ok(store) = std::env::var(CHILD_ENV) {
        crash_child(Path::new(&store));
        return;
    }
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let cycles = 20;
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .env("MAILVAULT_CRASH_CYCLE", cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("ack ") {
                    let (seq, hash) = rest.split_once(' ').unwrap();
                    let _ = tx.send((seq.parse::<u64>().unwrap(), hash.to_string()));
                }
            }
        });
        // Kill at a random moment: mostly while appending, sometimes during open/recovery.
        if cycle % 4 != 3 {
            let _ = rx.recv_timeout(Duration::from_secs(20));
        }
        std::thread::sleep(jitter(60));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        for (seq, hash) in rx.try_iter() {
            acked.insert(seq, hash);
        }
        // Reopen (recovery) and check every acknowledged record, then verify the whole log.
        let store = open(&path, StoreConfig::default());
        for (seq, hash) in &acked {
            let bytes = store
                .read_message_unscoped(*seq)
                .unwrap_or_else(|e| panic!("acked seq {seq} lost: {e}"));
            assert_eq!(&blake3::hash(&bytes).to_hex().to_string(), hash, "seq {seq}");
        }
        drop(store);
        assert_verifies(&path);
    }
    assert!(
        acked.len() > 50,
        "the children acknowledged only {} appends",
        acked.len()
    );
}

#[test]
fn a_trained_dictionary_is_a_record_and_messages_read_back_through_it() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let config = StoreConfig {
        dictionary_samples: 40,
        dictionary_size: 16 << 10,
        ..StoreConfig::default()
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/corpus/spamassassin");
    let mut files: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut stored = Vec::new();
    for round in 0..2 {
        // Reopening must pick the dictionary up again from the log.
        let store = open(&path, config.clone());
        for f in files.iter().skip(round * 60).take(60) {
            let raw = std::fs::read(f).unwrap();
            let a = store
                .append_message(&envelope("j@x", &["u@y"]), &raw, OnDuplicate::Skip)
                .unwrap();
            stored.push((a.seq, raw));
        }
        for (seq, raw) in &stored {
            assert_eq!(&store.read_message_unscoped(*seq).unwrap(), raw, "seq {seq}");
        }
        store.close().unwrap();
    }
    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    let dictionaries: Vec<u64> = log
        .records_from(1)
        .unwrap()
        .map(|r| r.unwrap())
        .filter(|r| r.kind() == RecordKind::Dictionary)
        .map(|r| r.seq())
        .collect();
    assert!(!dictionaries.is_empty(), "a dictionary was trained");
    for (seq, raw) in &stored {
        assert_eq!(&log.message_bytes(*seq).unwrap(), raw);
    }
    assert_verifies(&path);

    // A changed dictionary is caught (its hash in the leaf), before any message uses it.
    let first_dictionary = dictionaries[0];
    let segment = log.segments()[0].1.clone();
    let record = log.read(first_dictionary).unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = (record.location.offset + record.location.len - 100) as usize;
    bytes[at] ^= 0x55;
    std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&segment, &bytes).unwrap();
    let layout = Layout::new(&path);
    let report = verify_log(&layout.log_dir, &layout.verifier_key().unwrap(), &[]).unwrap();
    assert_eq!(report.problem.map(|p| p.seq), Some(first_dictionary));
}

#[test]
fn a_corrupted_tree_cache_is_rebuilt_and_the_next_checkpoint_still_extends_the_last() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default());
    append_numbered(&store, 0..40);
    let (_, first) = store.checkpoint().unwrap().unwrap();
    store.close().unwrap();
    // Scribble over every hash the cache holds, the ones the checkpoint covers included.
    let tree = Layout::new(&path).tree;
    let mut bytes = std::fs::read(&tree).unwrap();
    for b in bytes.iter_mut() {
        *b ^= 0xa5;
    }
    std::fs::write(&tree, &bytes).unwrap();

    let store = open(&path, StoreConfig::default());
    append_numbered(&store, 40..50);
    let (_, second) = store.checkpoint().unwrap().unwrap();
    let c1 = &first.checkpoint;
    let c2 = &second.checkpoint;
    let proof = store.consistency_proof(c1.size, c2.size).unwrap();
    assert!(verify_consistency(c1.size, &c1.root, c2.size, &c2.root, &proof));
    // Proofs for early records come from the rebuilt cache too.
    let record = store.read_record_unscoped(2).unwrap();
    let path2 = store.inclusion_proof(2, c2.size).unwrap();
    assert!(verify_inclusion(
        &leaf_hash(&record.leaf_bytes),
        1,
        c2.size,
        &path2,
        &c2.root
    ));
    store.close().unwrap();
    assert_verifies(&path);
}

#[test]
fn show_of_an_arrival_returns_the_bytes_it_refers_to() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default());
    let first = store
        .append_message(
            &envelope("a@x", &["b@y"]),
            &message(7),
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    let arrival = store
        .append_message(
            &envelope("a@x", &["c@y"]),
            &message(7),
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    store.close().unwrap();
    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    assert_eq!(log.read(arrival.seq).unwrap().kind(), RecordKind::Arrival);
    assert_eq!(log.message_bytes(arrival.seq).unwrap(), message(7));
    assert_eq!(log.message_bytes(first.seq).unwrap(), message(7));
}

#[test]
fn verify_binds_the_codec_byte_of_records_that_are_never_compressed() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default());
    store
        .append_message(&envelope("a@x", &["b@y"]), &message(1), OnDuplicate::Skip)
        .unwrap();
    let audit = store
        .append_audit(&archive_core::audit::AuditEvent {
            actor: "auditor".into(),
            action: "view".into(),
            target: "seq 1".into(),
            origin: "local".into(),
            ..Default::default()
        })
        .unwrap();
    store.close().unwrap();
    assert_verifies(&path);
    // Flip the audit frame's codec byte to "zstd" and fix the frame checksum, as an attacker
    // who knows the format would: the CRC is satisfied, but verify must still object.
    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    let location = log.read(audit).unwrap().location;
    let segment = log.segments()[0].1.clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = location.offset as usize;
    let end = at + location.len as usize;
    bytes[at + 9] = 1;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[at + 4..at + 12]), &bytes[at + 16..end]);
    bytes[at + 12..at + 16].copy_from_slice(&crc.to_be_bytes());
    std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&segment, &bytes).unwrap();
    let layout = Layout::new(&path);
    let report = verify_log(&layout.log_dir, &layout.verifier_key().unwrap(), &[]).unwrap();
    let problem = report.problem.expect("tampered codec byte detected");
    assert_eq!(problem.seq, audit);
    assert!(problem.reason.contains("stored raw"), "{}", problem.reason);
}

#[test]
fn verify_checks_offload_receipts_against_the_local_segment_files() {
    use archive_core::log::record::OffloadReceipt;
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let config = StoreConfig {
        segment_size: 2048,
        ..StoreConfig::default()
    };
    let store = open(&path, config.clone());
    append_numbered(&store, 0..20);
    let (first, sealed) = LogReader::open(&Layout::new(&path).log_dir).unwrap().segments()[0].clone();
    let bytes = std::fs::read(&sealed).unwrap();
    let receipt = |hash: [u8; 32]| OffloadReceipt {
        segment: first,
        segment_len: bytes.len() as u64,
        segment_hash: hash,
        retain_until: 4_000_000_000,
        bucket: "archive".into(),
        key: "k".into(),
        version_id: "v".into(),
    };
    let seq = store
        .append_offload(receipt(blake3::hash(&bytes).into()))
        .unwrap();
    let report = assert_verifies(&path);
    assert_eq!(report.offloads.len(), 1);
    assert_eq!(report.offloads[0].0, seq);
    // A receipt for other bytes than the local segment's is named.
    let bad = store.append_offload(receipt([7; 32])).unwrap();
    store.close().unwrap();
    let layout = Layout::new(&path);
    let report = verify_log(&layout.log_dir, &layout.verifier_key().unwrap(), &[]).unwrap();
    let problem = report.problem.expect("a receipt for other bytes");
    assert_eq!(problem.seq, bad);
    assert!(
        problem.reason.contains("is not the one uploaded"),
        "{}",
        problem.reason
    );
}

/// `Store::audited`: the access's answer comes back with its record in the log, also when the
/// access fails (the attempt is recorded), and a read after the call finds the record.
#[test]
fn an_audited_access_answers_after_its_record_is_written() {
    let dir = temp_dir("store-test");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default());
    let event = |target: &str| archive_core::audit::AuditEvent {
        actor: "auditor".into(),
        action: "search".into(),
        target: target.into(),
        origin: "local".into(),
        ..Default::default()
    };
    let before = store.stats().last_seq;
    let found = store.audited(&event("web invoice"), || Ok(42)).unwrap();
    assert_eq!(found, 42);
    let failed: archive_core::Result<()> = store.audited(&event("web broken"), || {
        Err(archive_core::Error::Rejected("no such thing".into()))
    });
    assert!(failed.unwrap_err().to_string().contains("no such thing"));
    let last = store.stats().last_seq;
    store.close().unwrap();
    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    let audits = (before + 1..=last)
        .filter(|s| log.read(*s).unwrap().kind() == RecordKind::Audit)
        .count();
    assert_eq!(audits, 2, "one record per access, the failed one too");
    assert_verifies(&path);
}
