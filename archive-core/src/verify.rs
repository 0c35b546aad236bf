//! `mailvault verify`: recompute everything from the raw bytes — frames, the blake3 chain,
//! content hashes, the Merkle tree, every checkpoint signature — and name the first record
//! that does not match. Trusts no derived state and needs only the public key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::log::checkpoint::{SignedCheckpoint, VerifierKey};
use crate::log::evicted::{list_log, EvictedSegment, FrameEntry, SegmentSource};
use crate::log::merkle::{leaf_hash, Frontier, Hash};
use crate::log::reader::{decode_payload, Dictionaries, Dictionary, NoDictionaries};
use crate::log::record::{chain_next, Codec, Leaf, LeafBody, OffloadReceipt, RecordKind};
use crate::log::remote::RemoteReads;
use crate::log::segment::{ScanStop, SegmentReader};
use crate::Result;
use std::sync::{Arc, Mutex};

/// The first thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The record at fault (or the one that should have been there).
    pub seq: u64,
    /// Segment file.
    pub segment: PathBuf,
    /// Byte offset in the segment.
    pub offset: u64,
    /// What does not match.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seq {}: {} (segment {}, offset {})",
            self.seq,
            self.reason,
            self.segment.display(),
            self.offset
        )
    }
}

/// What verification saw.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Records checked.
    pub records: u64,
    /// Records by kind.
    pub by_kind: HashMap<&'static str, u64>,
    /// Segment files.
    pub segments: u64,
    /// Bytes of raw message content checked.
    pub content_bytes: u64,
    /// Bytes of segment files read.
    pub stored_bytes: u64,
    /// Root of the whole tree.
    pub root: Hash,
    /// The newest checkpoint in the log: its seq and tree size.
    pub last_checkpoint: Option<(u64, u64)>,
    /// Pinned checkpoints that matched, by tree size.
    pub pinned_ok: Vec<u64>,
    /// Offload receipts, each checked against its local segment file, in log order.
    pub offloads: Vec<(u64, OffloadReceipt)>,
    /// What was done with each evicted segment (read from the bucket, or only its stub).
    pub evicted: Vec<String>,
    /// Evicted segments whose bytes were not read (no remote given).
    pub evicted_unread: u64,
    /// Messages whose content could not be checked: compressed with a dictionary that is in
    /// an evicted segment that was not read.
    pub contents_unchecked: u64,
    /// The first problem, if any. `None` means intact.
    pub problem: Option<Problem>,
}

impl Report {
    /// Records after the newest checkpoint, not yet covered by a signature.
    pub fn unsigned_tail(&self) -> u64 {
        self.records - self.last_checkpoint.map_or(0, |(seq, _)| seq)
    }
}

/// Verifies the log in `log_dir` against `key`, and against each pinned checkpoint (a
/// checkpoint an auditor kept): the log must contain that tree as a prefix.
pub fn verify_log(log_dir: &Path, key: &VerifierKey, pinned: &[SignedCheckpoint]) -> Result<Report> {
    verify_log_with(log_dir, key, pinned, &RemoteReads::new(log_dir, None, None))
}

/// [`verify_log`], reading evicted segments through `evicted` (streamed from the bucket, not
/// cached) — or, without a remote, taking their leaf hashes from their stubs and saying so.
pub fn verify_log_with(
    log_dir: &Path,
    key: &VerifierKey,
    pinned: &[SignedCheckpoint],
    evicted: &RemoteReads,
) -> Result<Report> {
    let mut v = Verifier {
        key,
        report: Report::default(),
        frontier: Frontier::default(),
        chain: [0; 32],
        last_time: i64::MIN,
        contents: HashMap::new(),
        pinned: pinned.to_vec(),
        dictionaries: SeenDictionaries::default(),
        last_kind: None,
        finished_segments: HashMap::new(),
        unread: Vec::new(),
    };
    v.pinned.sort_by_key(|p| p.checkpoint.size);
    if let Err(problem) = v.run(log_dir, evicted)? {
        v.report.problem = Some(problem);
    }
    v.report.root = v.frontier.root();
    Ok(v.report)
}

struct Verifier<'a> {
    key: &'a VerifierKey,
    report: Report,
    frontier: Frontier,
    chain: [u8; 32],
    last_time: i64,
    /// content hash → seq of the message record holding it (for arrival references).
    /// content hash → (seq, length) of the message record holding it.
    contents: HashMap<[u8; 32], (u64, u64)>,
    pinned: Vec<SignedCheckpoint>,
    dictionaries: SeenDictionaries,
    /// Kind of the last record checked (a sealed segment must end with a checkpoint).
    last_kind: Option<RecordKind>,
    /// Segments read to their end before the current one: the ones an offload receipt may
    /// name.
    finished_segments: HashMap<u64, Finished>,
    /// Seq ranges of evicted segments whose records were not read.
    unread: Vec<(u64, u64)>,
}

/// A segment read to its end: its file, or (evicted) the length and BLAKE3 of what was read.
enum Finished {
    File(PathBuf),
    Known(u64, [u8; 32]),
}

/// Hashes what passes through.
struct HashingReader {
    inner: Box<dyn std::io::Read + Send>,
    hashed: Arc<Mutex<(blake3::Hasher, u64)>>,
}

impl std::io::Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut h = self.hashed.lock().unwrap_or_else(|p| p.into_inner());
        h.0.update(&buf[..n]);
        h.1 += n as u64;
        Ok(n)
    }
}

/// Dictionary records verified so far; a payload may only use an earlier one.
#[derive(Default)]
struct SeenDictionaries(HashMap<u64, Dictionary>);

impl Dictionaries for SeenDictionaries {
    fn dictionary(&self, seq: u64) -> std::result::Result<Dictionary, String> {
        self.0.get(&seq).cloned().ok_or_else(|| {
            format!("payload refers to dictionary seq {seq}, which is not an earlier dictionary record")
        })
    }
}

type Checked = std::result::Result<(), Problem>;

impl Verifier<'_> {
    /// Whether record `seq` is in an evicted segment that was not read.
    fn is_unread(&self, seq: u64) -> bool {
        self.unread.iter().any(|(a, b)| (*a..=*b).contains(&seq))
    }

    fn run(&mut self, log_dir: &Path, evicted: &RemoteReads) -> Result<Checked> {
        let segments = list_log(log_dir)?;
        let mut expected = 1u64;
        for (first, source) in &segments {
            let path = match source {
                SegmentSource::Local(p) | SegmentSource::Evicted(p) => p.clone(),
            };
            let problem = |offset, reason: String| Problem {
                seq: expected,
                segment: path.clone(),
                offset,
                reason,
            };
            if *first != expected {
                return Ok(Err(problem(
                    0,
                    format!("segment starts at seq {first}, but seq {expected} comes next (records missing or reordered)"),
                )));
            }
            if expected > 1 && self.last_kind != Some(RecordKind::Checkpoint) {
                return Ok(Err(problem(
                    0,
                    "the segment before this one does not end with a checkpoint, as every sealed segment does".into(),
                )));
            }
            let finished = match source {
                SegmentSource::Local(path) => {
                    let reader = match SegmentReader::open(path) {
                        Ok(r) => r,
                        Err(crate::Error::Format { reason, .. }) => return Ok(Err(problem(0, reason))),
                        Err(e) => return Err(e),
                    };
                    if let Err(p) = self.read_segment(reader, *first, path, &mut expected, None)? {
                        return Ok(Err(p));
                    }
                    Finished::File(path.clone())
                }
                SegmentSource::Evicted(stub_path) => {
                    let stub = match EvictedSegment::read(stub_path) {
                        Ok(s) if s.first_seq == *first => s,
                        Ok(s) => {
                            return Ok(Err(problem(
                                0,
                                format!("the stub describes segment {}", s.first_seq),
                            )))
                        }
                        Err(crate::Error::Format { reason, .. }) => return Ok(Err(problem(0, reason))),
                        Err(e) => return Err(e),
                    };
                    match self.evicted_segment(&stub, stub_path, evicted, &mut expected)? {
                        Ok(f) => f,
                        Err(p) => return Ok(Err(p)),
                    }
                }
            };
            self.finished_segments.insert(*first, finished);
        }
        if let Some(p) = self.pinned.first() {
            return Ok(Err(Problem {
                seq: expected,
                segment: segments
                    .last()
                    .map(|(_, s)| match s {
                        SegmentSource::Local(p) | SegmentSource::Evicted(p) => p.clone(),
                    })
                    .unwrap_or_default(),
                offset: 0,
                reason: format!(
                    "the log has {} records but a pinned checkpoint covers {}: records were removed (truncation or rollback)",
                    expected - 1,
                    p.checkpoint.size
                ),
            }));
        }
        Ok(Ok(()))
    }

    /// Checks every frame `reader` gives (the segment `first`, at `path`); with `table`, each
    /// frame's place and leaf hash must also be the stub's.
    fn read_segment(
        &mut self,
        mut reader: SegmentReader,
        first: u64,
        path: &Path,
        expected: &mut u64,
        table: Option<&EvictedSegment>,
    ) -> Result<Checked> {
        if reader.first_seq != first {
            return Ok(Err(Problem {
                seq: *expected,
                segment: path.to_path_buf(),
                offset: 0,
                reason: format!("segment header says seq {}, its name {first}", reader.first_seq),
            }));
        }
        self.report.segments += 1;
        self.report.stored_bytes += reader.file_len();
        while let Some(frame) = reader.next_frame(true)? {
            let frame = match frame {
                Ok(f) => f,
                Err(ScanStop::Torn { offset, available }) => {
                    return Ok(Err(Problem {
                        seq: *expected,
                        segment: path.to_path_buf(),
                        offset,
                        reason: format!(
                            "the log ends inside this record ({available} bytes of it present): truncated, \
                             or a crash not yet recovered (opening the store for writing cuts an unacknowledged tail)"
                        ),
                    }))
                }
                Err(ScanStop::Damaged { offset, reason }) => {
                    return Ok(Err(Problem {
                        seq: *expected,
                        segment: path.to_path_buf(),
                        offset,
                        reason,
                    }))
                }
            };
            let offset = frame.offset;
            let problem = |reason: String| Problem {
                seq: *expected,
                segment: path.to_path_buf(),
                offset,
                reason,
            };
            let body = match frame.open() {
                Ok(b) => b,
                Err(reason) => return Ok(Err(problem(reason))),
            };
            if let Some(stub) = table {
                let entry = FrameEntry {
                    offset,
                    len: frame.header.frame_len(),
                    leaf_hash: leaf_hash(body.leaf),
                };
                if stub.frame(*expected) != Some(&entry) {
                    return Ok(Err(problem(
                        "the segment's stub does not describe this record as the bucket holds it".into(),
                    )));
                }
            }
            if let Err(reason) = self.check_record(*expected, frame.header.kind, &body) {
                return Ok(Err(problem(reason)));
            }
            *expected += 1;
        }
        if table.is_some() {
            reader.read_rest()?;
        }
        Ok(Ok(()))
    }

    /// An evicted segment: with a remote, its object streamed and checked like a local file
    /// (and its BLAKE3 against the receipt); without one, only its stub's leaf hashes go into
    /// the tree (the signed checkpoints after it check them) and the report says so.
    fn evicted_segment(
        &mut self,
        stub: &EvictedSegment,
        stub_path: &Path,
        evicted: &RemoteReads,
        expected: &mut u64,
    ) -> Result<std::result::Result<Finished, Problem>> {
        let r = &stub.receipt;
        let name = PathBuf::from(stub.place());
        if evicted.has_remote() {
            let hashed = Arc::new(Mutex::new((blake3::Hasher::new(), 0u64)));
            let stream = evicted.stream(stub)?;
            let reader = SegmentReader::from_stream(
                &name,
                Box::new(HashingReader {
                    inner: stream,
                    hashed: hashed.clone(),
                }),
                r.segment_len,
            )?;
            let before = *expected;
            if let Err(p) = self.read_segment(reader, stub.first_seq, &name, expected, Some(stub))? {
                return Ok(Err(p));
            }
            let (hasher, len) = &*hashed.lock().unwrap_or_else(|p| p.into_inner());
            let hash: [u8; 32] = hasher.finalize().into();
            if *len != r.segment_len || hash != r.segment_hash || *expected != stub.last_seq() + 1 {
                return Ok(Err(Problem {
                    seq: before,
                    segment: name,
                    offset: 0,
                    reason: format!(
                        "the bucket's object ({len} bytes, blake3 {}) is not the segment its receipt names \
                         ({} bytes, blake3 {})",
                        hex(&hash),
                        r.segment_len,
                        hex(&r.segment_hash)
                    ),
                }));
            }
            self.report.evicted.push(format!(
                "segment {} evicted locally: read from {} and verified ({} records, blake3 equal to its receipt's)",
                stub.first_seq,
                stub.place(),
                stub.frames.len()
            ));
            return Ok(Ok(Finished::Known(*len, hash)));
        }
        self.report.segments += 1;
        for entry in &stub.frames {
            self.frontier.push(entry.leaf_hash);
            self.report.records += 1;
            *self.report.by_kind.entry("evicted").or_default() += 1;
            *expected += 1;
            if let Err(reason) = self.check_pinned() {
                return Ok(Err(Problem {
                    seq: *expected - 1,
                    segment: stub_path.to_path_buf(),
                    offset: entry.offset,
                    reason,
                }));
            }
        }
        self.chain = stub.last_chain;
        self.last_kind = Some(RecordKind::Checkpoint);
        self.unread.push((stub.first_seq, stub.last_seq()));
        self.report.evicted.push(format!(
            "segment {} evicted locally ({}): NOT READ — its {} leaf hashes come from its stub and are checked by \
             the signed checkpoints after it; contents, chain and its own checkpoints are unchecked (verify --config \
             FILE reads it from the bucket)",
            stub.first_seq,
            stub.place(),
            stub.frames.len()
        ));
        self.report.evicted_unread += 1;
        Ok(Ok(Finished::Known(r.segment_len, r.segment_hash)))
    }

    fn check_record(
        &mut self,
        seq: u64,
        kind_byte: u8,
        body: &crate::log::record::FrameBody<'_>,
    ) -> std::result::Result<(), String> {
        let leaf = Leaf::decode(body.leaf).map_err(|e| format!("leaf does not decode: {e}"))?;
        if leaf.seq != seq {
            return Err(format!(
                "holds seq {} (records missing, duplicated or reordered)",
                leaf.seq
            ));
        }
        if leaf.kind() as u8 != kind_byte {
            return Err("frame kind differs from the leaf's kind".into());
        }
        let chain = chain_next(&self.chain, body.leaf);
        if chain != body.chain {
            return Err(
                "chain hash does not follow from the previous record (altered, inserted or removed record)"
                    .into(),
            );
        }
        if leaf.time_us < self.last_time {
            return Err("receive time earlier than the previous record's".into());
        }
        match &leaf.body {
            LeafBody::Message {
                content_hash,
                content_len,
                envelope,
            } => {
                crate::Envelope::decode(envelope).map_err(|e| format!("envelope: {e}"))?;
                let dictionary = match body.codec {
                    Codec::ZstdDictionary => body.payload.first_chunk::<8>().map(|s| u64::from_be_bytes(*s)),
                    _ => None,
                };
                if dictionary.is_some_and(|d| self.is_unread(d)) {
                    // Compressed with a dictionary in an evicted segment that was not read.
                    self.report.contents_unchecked += 1;
                } else {
                    decode_payload(
                        body.codec,
                        body.payload,
                        *content_hash,
                        *content_len,
                        &self.dictionaries,
                    )?;
                }
                self.contents.entry(*content_hash).or_insert((seq, *content_len));
                self.report.content_bytes += content_len;
            }
            LeafBody::Arrival {
                content_hash,
                content_len,
                first_seq,
                envelope,
            } => {
                crate::Envelope::decode(envelope).map_err(|e| format!("envelope: {e}"))?;
                if self.contents.get(content_hash) != Some(&(*first_seq, *content_len))
                    && !self.is_unread(*first_seq)
                {
                    return Err(format!(
                        "arrival refers to seq {first_seq}, which does not hold its content"
                    ));
                }
            }
            LeafBody::Audit { event } => {
                serde_json::from_slice::<serde_json::Value>(event)
                    .map_err(|e| format!("audit event is not JSON: {e}"))?;
            }
            LeafBody::Checkpoint { note } => self.check_checkpoint(seq, note)?,
            LeafBody::Offload(receipt) => self.check_offload(seq, receipt)?,
            LeafBody::Dictionary {
                content_hash,
                content_len,
            } => {
                let bytes = decode_payload(
                    body.codec,
                    body.payload,
                    *content_hash,
                    *content_len,
                    &NoDictionaries,
                )?;
                self.dictionaries.0.insert(
                    seq,
                    Dictionary {
                        hash: *content_hash,
                        bytes: std::sync::Arc::new(bytes),
                    },
                );
            }
        }
        let carries_payload = matches!(leaf.kind(), RecordKind::Message | RecordKind::Dictionary);
        if !carries_payload && !body.payload.is_empty() {
            return Err("record carries a payload its kind does not have".into());
        }
        // Only messages are compressed; elsewhere the codec byte (outside the hashes) must be 0.
        if leaf.kind() != RecordKind::Message && body.codec != Codec::Raw {
            return Err(format!("a {} record must be stored raw", leaf.kind().name()));
        }
        self.last_kind = Some(leaf.kind());
        self.chain = chain;
        self.last_time = leaf.time_us;
        self.frontier.push(leaf_hash(body.leaf));
        self.report.records += 1;
        *self.report.by_kind.entry(leaf.kind().name()).or_default() += 1;
        self.check_pinned()?;
        Ok(())
    }

    /// An offload receipt names a segment that was sealed before it, and the segment file
    /// here is the one that was uploaded: same length, same BLAKE3.
    fn check_offload(&mut self, seq: u64, receipt: &OffloadReceipt) -> std::result::Result<(), String> {
        let n = receipt.segment;
        let finished = self.finished_segments.get(&n).ok_or_else(|| {
            format!("offload receipt for segment {n}, which is not a sealed segment before it")
        })?;
        let (len, hash) = match finished {
            Finished::File(path) => {
                file_blake3(path).map_err(|e| format!("offload receipt for segment {n}: {e}"))?
            }
            Finished::Known(len, hash) => (*len, *hash),
        };
        if len != receipt.segment_len || hash != receipt.segment_hash {
            return Err(format!(
                "offload receipt for segment {n}: the segment file ({len} bytes, blake3 {}) is not the one uploaded \
                 ({} bytes, blake3 {})",
                hex(&hash),
                receipt.segment_len,
                hex(&receipt.segment_hash)
            ));
        }
        self.report.offloads.push((seq, receipt.clone()));
        Ok(())
    }

    fn check_checkpoint(&mut self, seq: u64, note: &[u8]) -> std::result::Result<(), String> {
        let note = std::str::from_utf8(note).map_err(|_| "checkpoint note is not UTF-8".to_string())?;
        let signed = self
            .key
            .verify_note(note)
            .map_err(|e| format!("checkpoint: {e}"))?;
        let c = &signed.checkpoint;
        if c.size != seq - 1 {
            return Err(format!(
                "checkpoint states tree size {}, but {} records precede it",
                c.size,
                seq - 1
            ));
        }
        if c.root != self.frontier.root() {
            let from = self.report.last_checkpoint.map_or(1, |(s, _)| s + 1);
            return Err(format!(
                "signed root does not match the records before it: a record in seq {from}..{} was altered or replaced",
                seq - 1
            ));
        }
        self.report.last_checkpoint = Some((seq, c.size));
        Ok(())
    }

    fn check_pinned(&mut self) -> std::result::Result<(), String> {
        while let Some(p) = self.pinned.first() {
            if p.checkpoint.size > self.frontier.size() {
                break;
            }
            if p.checkpoint.size == self.frontier.size() && p.checkpoint.root != self.frontier.root() {
                return Err(format!(
                    "the first {} records differ from the pinned checkpoint: history was rewritten",
                    p.checkpoint.size
                ));
            }
            self.report.pinned_ok.push(p.checkpoint.size);
            self.pinned.remove(0);
        }
        Ok(())
    }
}

/// Length and BLAKE3 of a file, read in 1 MiB pieces.
pub fn file_blake3(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((len, hasher.finalize().into()));
        }
        len += n as u64;
        hasher.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
