//! What opening a store does with the end of the log (issue #11): records after the newest
//! checkpoint were never acknowledged and go to quarantine, unsigned; bytes shaped like
//! frames inside a message never make a torn write look like damage; damage in front of
//! acknowledged records is refused; a segment roll-over that failed half-way is tried again.

mod common;

use std::path::{Path, PathBuf};

use archive_core::log::reader::LogReader;
use archive_core::log::record::{chain_next, encode_frame, Codec, Leaf, LeafBody, RecordKind};
use archive_core::log::segment::segment_file_name;
use archive_core::store::Layout;
use archive_core::verify::verify_log;
use archive_core::{Error, OnDuplicate, Store, StoreConfig};
use common::{create, envelope, temp_dir};

fn open(store: &Path, config: StoreConfig) -> archive_core::Result<Store> {
    Store::open(store, &store.join("signing.key"), config)
}

fn last_segment(store: &Path) -> PathBuf {
    let log = LogReader::open(&Layout::new(store).log_dir).unwrap();
    log.segments().last().unwrap().1.clone()
}

/// The last record of the log: its seq, chain hash and receive time.
fn last_record(store: &Path) -> (u64, [u8; 32], i64) {
    let log = LogReader::open(&Layout::new(store).log_dir).unwrap();
    let last = log.records_from(1).unwrap().map(|r| r.unwrap()).last().unwrap();
    (last.seq(), last.chain, last.leaf.time_us)
}

/// A message record built from docs/FORMAT.md alone, continuing the chain after `after`:
/// what someone with write access to the files, but not the key, can append.
fn forged_message(after: (u64, [u8; 32], i64), raw: &[u8]) -> Vec<u8> {
    let (seq, chain, time_us) = after;
    let leaf = Leaf {
        seq: seq + 1,
        time_us: time_us + 1,
        body: LeafBody::Message {
            content_hash: blake3::hash(raw).into(),
            content_len: raw.len() as u64,
            envelope: envelope("forger@evil.example", &["alice@example.com"]).encode(),
        },
    };
    let encoded = leaf.encode();
    encode_frame(
        RecordKind::Message,
        Codec::Raw,
        &chain_next(&chain, &encoded),
        &encoded,
        raw,
    )
    .unwrap()
}

fn append(store: &Store, raw: &[u8]) -> u64 {
    store
        .append_message(
            &envelope("a@example.org", &["alice@example.com"]),
            raw,
            OnDuplicate::RecordArrival,
        )
        .unwrap()
        .seq
}

fn verifies(store: &Path) -> archive_core::verify::Report {
    let layout = Layout::new(store);
    let report = verify_log(&layout.log_dir, &layout.verifier_key().unwrap(), &[]).unwrap();
    assert_eq!(report.problem, None);
    report
}

#[test]
fn every_acknowledged_record_is_under_a_checkpoint_when_its_append_returns() {
    let dir = temp_dir("recovery");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default()).unwrap();
    for n in 0..5 {
        let seq = append(&store, format!("Subject: {n}\r\n\r\nbody\r\n").as_bytes());
        // Read from the files, not the store: the checkpoint is on disk already.
        let report = verifies(&path);
        let (_, covered) = report.last_checkpoint.expect("a checkpoint");
        assert!(
            covered >= seq,
            "message {seq} acknowledged before a checkpoint covered it"
        );
        assert_eq!(report.unsigned_tail(), 0);
    }
    store.close().unwrap();
}

#[test]
fn records_after_the_newest_checkpoint_are_quarantined_never_signed() {
    let dir = temp_dir("recovery");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default()).unwrap();
    append(&store, b"Subject: real\r\n\r\nreal mail\r\n");
    store.close().unwrap();

    // Someone without the key appends a well-formed record with a correct chain and CRC.
    let segment = last_segment(&path);
    let intact = std::fs::read(&segment).unwrap();
    let forged_raw = b"Subject: forged\r\n\r\nnever delivered\r\n".to_vec();
    let forged = forged_message(last_record(&path), &forged_raw);
    let mut bytes = intact.clone();
    bytes.extend_from_slice(&forged);
    std::fs::write(&segment, &bytes).unwrap();
    let report = verifies(&path);
    assert_eq!(report.unsigned_tail(), 1, "verify sees an unsigned record");
    let forged_seq = report.records;

    let store = open(&path, StoreConfig::default()).unwrap();
    let cut = store.recovered().expect("the unsigned record was cut").clone();
    assert_eq!(cut.unsigned_records, Some((forged_seq, forged_seq)));
    assert_eq!(
        (cut.offset, cut.bytes, cut.torn_bytes),
        (intact.len() as u64, forged.len() as u64, 0)
    );
    assert_eq!(std::fs::read(&cut.kept_in).unwrap(), forged, "kept byte for byte");
    assert_eq!(Layout::new(&path).quarantined().unwrap().len(), 1);
    // Its seq now holds the recovery's audit record; no checkpoint ever covers the forgery.
    let audit = store.read_record_unscoped(forged_seq).unwrap();
    let LeafBody::Audit { event } = &audit.leaf.body else {
        panic!("seq {forged_seq} is not the recovery's audit record");
    };
    let event: serde_json::Value = serde_json::from_slice(event).unwrap();
    assert_eq!(event["action"], "recovery-cut");
    assert!(
        event["target"].as_str().unwrap().contains("never signed"),
        "{event}"
    );
    store.close().unwrap();
    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    for record in log.records_from(1).unwrap() {
        let record = record.unwrap();
        if record.kind() == RecordKind::Message {
            assert_ne!(
                log.message_bytes(record.seq()).unwrap(),
                forged_raw,
                "the forgery is not in the log"
            );
        }
    }
    assert_eq!(verifies(&path).unsigned_tail(), 0);
}

/// An outsider's incompressible message is stored as sent, so it can carry bytes that look
/// like frames — here a copy of a real frame of this log. A crash in the middle of its
/// append leaves those bytes after the torn point: still a torn write, not damage.
#[test]
fn frames_inside_a_torn_message_do_not_make_it_damage() {
    let dir = temp_dir("recovery");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default()).unwrap();
    append(&store, b"Subject: first\r\n\r\nfirst\r\n");
    store.close().unwrap();
    let segment = last_segment(&path);
    let before = std::fs::read(&segment).unwrap();
    // The first frame of the log, copied into a message padded with noise zstd cannot shrink.
    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    let first = log.read(1).unwrap();
    let frame_copy = before
        [first.location.offset as usize..(first.location.offset + first.location.len) as usize]
        .to_vec();
    let mut raw = b"Subject: carrier\r\n\r\n".to_vec();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        raw.extend_from_slice(&x.to_le_bytes());
    }
    raw.extend_from_slice(&frame_copy);
    raw.extend_from_slice(&[0x55; 64]);

    let store = open(&path, StoreConfig::default()).unwrap();
    let carrier = append(&store, &raw);
    store.close().unwrap();
    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    let record = log.read(carrier).unwrap();
    let end = record.location.offset + record.location.len;
    let written = std::fs::read(&segment).unwrap();
    assert!(
        written[..end as usize]
            .windows(frame_copy.len())
            .filter(|w| *w == frame_copy.as_slice())
            .count()
            >= 2,
        "the message is stored raw, with the copied frame in it"
    );
    // The append is cut short just before its record ends: the copied frame is complete.
    let torn = &written[..end as usize - 10];
    std::fs::write(&segment, torn).unwrap();

    let store =
        open(&path, StoreConfig::default()).expect("a torn write is recovered, whatever the message held");
    let cut = store.recovered().expect("a cut").clone();
    assert_eq!(
        cut.offset,
        before.len() as u64,
        "cut at the end of the last checkpoint"
    );
    assert_eq!(std::fs::read(&cut.kept_in).unwrap(), &torn[before.len()..]);
    store.close().unwrap();
    verifies(&path);
}

#[test]
fn damage_in_front_of_acknowledged_records_is_refused_and_named() {
    let dir = temp_dir("recovery");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default()).unwrap();
    let first = append(&store, b"Subject: one\r\n\r\none\r\n");
    for n in 0..3 {
        append(&store, format!("Subject: more {n}\r\n\r\nmore\r\n").as_bytes());
    }
    store.close().unwrap();
    let segment = last_segment(&path);
    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    let record = log.read(first).unwrap();
    // Two kinds of damage to an acknowledged record: a flipped body byte (bad CRC), and a
    // length field that runs past the end of the file.
    for (at, mask) in [
        (record.location.offset + 40, 0x01u8),
        (record.location.offset + 6, 0x40),
    ] {
        let mut damaged = std::fs::read(&segment).unwrap();
        let original = damaged.clone();
        damaged[at as usize] ^= mask;
        std::fs::write(&segment, &damaged).unwrap();
        match open(&path, StoreConfig::default()) {
            Err(Error::Corrupt {
                seq, segment: named, ..
            }) => {
                assert_eq!(seq, first);
                assert_eq!(named, segment);
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("damage at byte {at} was cut as if torn"),
        }
        assert_eq!(std::fs::read(&segment).unwrap(), damaged, "nothing was cut");
        assert!(Layout::new(&path).quarantined().unwrap().is_empty());
        std::fs::write(&segment, &original).unwrap();
    }
}

/// A full disk at a segment roll-over leaves a file of the new segment without its header;
/// the next append must replace it, not fail on "file exists" until a restart.
#[test]
fn a_roll_over_that_failed_half_way_is_tried_again() {
    let dir = temp_dir("recovery");
    let path = create(dir.path());
    let config = StoreConfig {
        segment_size: 4096,
        ..StoreConfig::default()
    };
    let store = open(&path, config.clone()).unwrap();
    let mut leftover = None;
    append(&store, b"Subject: first\r\n\r\nfirst\r\n");
    for n in 1..200 {
        let full = std::fs::metadata(last_segment(&path)).unwrap().len() >= config.segment_size;
        if full && leftover.is_none() {
            // What a header write that failed with ENOSPC leaves behind.
            let next = Layout::new(&path)
                .log_dir
                .join(segment_file_name(store.stats().last_seq + 1));
            std::fs::write(&next, b"MVSEG").unwrap();
            leftover = Some(next);
        }
        append(
            &store,
            format!("Subject: {n}\r\n\r\n{}\r\n", "x".repeat(300)).as_bytes(),
        );
    }
    let leftover = leftover.expect("the log rolled over");
    assert_eq!(&std::fs::read(&leftover).unwrap()[..5], b"MVSEG");
    assert!(
        std::fs::metadata(&leftover).unwrap().len() >= 16,
        "the segment got its whole header"
    );
    store.close().unwrap();
    assert_eq!(verifies(&path).by_kind.get("message"), Some(&200));
}

/// The tree cache is derived: whatever a crash or a disk left in it, the store's roots after
/// reopening are the log's.
#[test]
fn the_tree_cache_is_trusted_only_as_far_as_its_last_sync() {
    let dir = temp_dir("recovery");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default()).unwrap();
    for n in 0..20 {
        append(&store, format!("Subject: {n}\r\n\r\nbody {n}\r\n").as_bytes());
    }
    store.close().unwrap();
    let layout = Layout::new(&path);
    let marker = layout.tree.with_extension("synced");
    assert!(marker.exists(), "a sync leaves its marker");
    let expected = verifies(&path);
    let check = |what: &str| {
        let store = open(&path, StoreConfig::default()).unwrap();
        let size = expected.records;
        assert_eq!(store.root(size).unwrap(), expected.root, "{what}");
        store.close().unwrap();
    };
    // Bytes after the synced hashes (a sync that crashed before its marker).
    let mut tree = std::fs::read(&layout.tree).unwrap();
    tree.extend_from_slice(&[0xab; 64 * 32]);
    std::fs::write(&layout.tree, &tree).unwrap();
    check("hashes after the marker are not trusted");
    // A torn or foreign marker: the newest checkpoint bounds the trust instead.
    std::fs::write(&marker, [0x5a; 16]).unwrap();
    check("a bad marker is no marker");
    // A flipped hash inside the trusted part — the stored root of the first 32 leaves, the
    // 63rd hash — makes the root at the newest checkpoint's size differ from the signed one.
    assert!(expected.records >= 32);
    let mut tree = std::fs::read(&layout.tree).unwrap();
    tree[62 * 32 + 5] ^= 0x01;
    std::fs::write(&layout.tree, &tree).unwrap();
    check("a damaged cache is rebuilt");
}

#[test]
fn a_reader_whose_segment_is_cut_behind_it_stops_at_the_cut() {
    // A running server's rewind cuts the active segment (what it cuts was never
    // acknowledged) while `mailvault log` may be reading it: the reader took the file's
    // length at open, and must end at the new end like at a torn tail, not fail.
    let dir = temp_dir("recovery");
    let path = create(dir.path());
    let store = open(&path, StoreConfig::default()).unwrap();
    append(&store, b"Subject: one\r\n\r\nsmall\r\n");
    let mut noise = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while noise.len() < 3 << 20 {
        // Incompressible: the record stays larger than the reader's 1 MiB buffer.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend_from_slice(&noise);
    let big_seq = append(&store, &big);
    store.close().unwrap();

    let log = LogReader::open(&Layout::new(&path).log_dir).unwrap();
    let mut records = log.records_from(1).unwrap();
    let first = records.next().unwrap().unwrap();
    assert_eq!(first.seq(), 1);
    // Cut the segment in the middle of the big record's payload.
    let segment = last_segment(&path);
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - (1 << 20))
        .unwrap();
    let rest: Vec<_> = records.collect();
    let errors: Vec<String> = rest
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let seqs: Vec<u64> = rest
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.seq())
        .collect();
    assert!(seqs.iter().all(|&s| s < big_seq), "{seqs:?}");
}
