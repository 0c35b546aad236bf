//! Segment bytes through every reader of the log (archive-core/src/log/: segment.rs,
//! record.rs, reader.rs) and through `verify_log`. Segments are the only source of truth;
//! a damaged or hostile one (a restored backup, a disk fault) must give an error that names
//! the offset, never a panic, and never an allocation sized by a length field
//! (`CappedAllocator` aborts above 256 MiB).
//!
//! Input: one flag byte, then the segment file.
//! - bit 0: repair the frame checksums first. Random bytes almost never carry a valid
//!   CRC-32C, so without this the fuzzer would stop at the CRC check; with it, it reaches
//!   the leaf decoder, the payload codecs and the content checks.
//!
//! The file is named after the first seq its header states (as the writer names it), in a
//! log directory of its own; the key is the vector store's (fixtures/vectors), so the
//! vector segments among the seeds verify completely.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use archive_core::log::checkpoint::VerifierKey;
use archive_core::log::reader::LogReader;
use archive_core::log::record::{FrameHeader, RecordKind, FRAME_HEADER_LEN, FRAME_MAGIC};
use archive_core::log::segment::{
    contains_valid_frame, segment_file_name, SegmentReader, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use archive_core::Error;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: mailvault_fuzz::CappedAllocator = mailvault_fuzz::CappedAllocator;

/// The verifier key of the vector store (fixtures/vectors/checkpoint.json).
const VECTOR_KEY: &str =
    "mailvault.invalid/00112233445566778899aabbccddeeff+d18a79ce+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs";

fn log_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = mailvault_fuzz::scratch_dir().join("log");
        std::fs::create_dir_all(&dir).expect("a log directory");
        dir
    })
}

fn key() -> &'static VerifierKey {
    static KEY: OnceLock<VerifierKey> = OnceLock::new();
    KEY.get_or_init(|| VerifierKey::parse(VECTOR_KEY).expect("the vector verifier key"))
}

/// Rewrites the CRC of every frame that starts where the previous one ended.
fn repair_checksums(bytes: &mut [u8]) {
    let mut at = SEGMENT_HEADER_LEN as usize;
    while at + FRAME_HEADER_LEN <= bytes.len() && bytes[at..at + 4] == FRAME_MAGIC {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h.copy_from_slice(&bytes[at..at + FRAME_HEADER_LEN]);
        let Some(header) = FrameHeader::parse(&h) else {
            return;
        };
        let Some(end) = usize::try_from(header.frame_len())
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|end| *end <= bytes.len())
        else {
            return;
        };
        let mut crc = crc32c::crc32c(&bytes[at + 4..at + 12]);
        crc = crc32c::crc32c_append(crc, &bytes[at + FRAME_HEADER_LEN..end]);
        bytes[at + 12..at + 16].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
}

/// Errors about a place in a segment must say where.
fn check_error(e: &Error) {
    let text = e.to_string();
    match e {
        Error::Corrupt { .. } | Error::Unreadable { .. } => {
            assert!(text.contains(" at offset "), "no offset in {text:?}")
        }
        // Header-level problems name the file; the header is at offset 0.
        Error::Format { .. } | Error::Io { .. } => {}
        other => panic!("unexpected error kind for a damaged segment: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, segment)) = data.split_first() else {
        return;
    };
    let mut bytes = segment.to_vec();
    if flags & 1 == 1 {
        repair_checksums(&mut bytes);
    }
    let first_seq = match bytes.get(..SEGMENT_HEADER_LEN as usize) {
        Some(h) if h[..8] == SEGMENT_MAGIC => u64::from_be_bytes(h[8..16].try_into().unwrap_or_default()),
        _ => 1,
    };
    let dir = log_dir();
    for entry in std::fs::read_dir(dir).expect("list the log directory").flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    let path = dir.join(segment_file_name(first_seq));
    std::fs::write(&path, &bytes).expect("write the segment");

    let _ = contains_valid_frame(&bytes);

    // Frame by frame, as recovery scans a segment.
    if let Ok(mut reader) = SegmentReader::open(&path) {
        for _ in 0..bytes.len() {
            match reader.next_frame(true) {
                Ok(Some(Ok(frame))) => {
                    let _ = frame.open();
                }
                Ok(Some(Err(_))) | Ok(None) => break,
                Err(e) => {
                    check_error(&e);
                    break;
                }
            }
        }
    }

    // Record by record, as the indexer and the command line read the log.
    let log = match LogReader::open(dir) {
        Ok(log) => log,
        Err(e) => return check_error(&e),
    };
    match log.records_from(first_seq) {
        Ok(records) => {
            for record in records.take(bytes.len()) {
                match record {
                    Ok(r) => {
                        let _ = r.content(&log);
                        let _ = r.dictionary();
                        let _ = r.leaf.envelope();
                        if r.kind() == RecordKind::Message {
                            let _ = log.message_bytes(r.seq()).map_err(|e| check_error(&e));
                        }
                    }
                    Err(e) => check_error(&e),
                }
            }
        }
        Err(e) => check_error(&e),
    }

    // Everything recomputed from the raw bytes, as `mailvault verify` does.
    match archive_core::verify::verify_log(dir, key(), &[]) {
        Ok(report) => {
            if let Some(p) = report.problem {
                assert!(
                    p.offset <= bytes.len() as u64,
                    "problem offset {} past the file",
                    p.offset
                );
            }
        }
        Err(e) => check_error(&e),
    }
});
