//! Reading records without the write lock: for the command line (which may run next to a
//! server that owns the store), the indexer, and recovery.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::evicted::{list_log, EvictedSegment, SegmentSource};
use super::record::{Codec, FrameHeader, Leaf, LeafBody, RecordKind, FRAME_HEADER_LEN};
use super::remote::RemoteReads;
use super::segment::{segment_file_name, ScanStop, SegmentReader};
use crate::index::kv::Location;
use crate::{Error, Result};

/// Largest content a record may claim; guards allocations against a damaged length.
pub const MAX_CONTENT_LEN: u64 = 4 << 30;

/// A record read from the log, frame checked.
#[derive(Debug, Clone)]
pub struct Record {
    /// The decoded leaf.
    pub leaf: Leaf,
    /// The leaf bytes as stored (what the chain and the tree hash).
    pub leaf_bytes: Vec<u8>,
    /// The chain hash stored with the record.
    pub chain: [u8; 32],
    /// Where the frame is.
    pub location: Location,
    codec: Codec,
    payload: Vec<u8>,
}

impl Record {
    /// Decodes a checked frame at a known location.
    pub(crate) fn from_frame(
        header: &FrameHeader,
        header_bytes: &[u8; FRAME_HEADER_LEN],
        body: &[u8],
        segment: u64,
        offset: u64,
        path: &Path,
        expected_seq: u64,
    ) -> Result<Record> {
        let corrupt = |reason: String| Error::Corrupt {
            seq: expected_seq,
            segment: path.to_path_buf(),
            offset,
            reason,
        };
        let frame = header.open(header_bytes, body).map_err(corrupt)?;
        let leaf = Leaf::decode(frame.leaf).map_err(|e| corrupt(format!("leaf does not decode: {e}")))?;
        if leaf.seq != expected_seq {
            return Err(corrupt(format!(
                "holds seq {} where seq {expected_seq} belongs (records missing, duplicated or reordered)",
                leaf.seq
            )));
        }
        if leaf.kind() as u8 != header.kind {
            return Err(corrupt("frame kind differs from leaf kind".into()));
        }
        Ok(Record {
            location: Location {
                segment,
                offset,
                len: header.frame_len(),
                kind: leaf.kind(),
            },
            chain: frame.chain,
            codec: frame.codec,
            payload: frame.payload.to_vec(),
            leaf_bytes: frame.leaf.to_vec(),
            leaf,
        })
    }

    /// Seq of the record.
    pub fn seq(&self) -> u64 {
        self.leaf.seq
    }

    /// Kind of the record.
    pub fn kind(&self) -> RecordKind {
        self.leaf.kind()
    }

    /// Bytes the record occupies on disk (frame).
    pub fn stored_len(&self) -> u64 {
        self.location.len
    }

    /// The raw message bytes of a message record, decompressed and checked against the
    /// content hash in the leaf. `None` for other kinds.
    pub fn content(&self, dictionaries: &dyn Dictionaries) -> Option<std::result::Result<Vec<u8>, String>> {
        if self.kind() != RecordKind::Message {
            return None;
        }
        let (hash, len) = self.leaf.content()?;
        Some(decode_payload(self.codec, &self.payload, hash, len, dictionaries))
    }

    /// The dictionary of a dictionary record, checked against its hash. `None` for other kinds.
    pub fn dictionary(&self) -> Option<std::result::Result<Dictionary, String>> {
        let LeafBody::Dictionary {
            content_hash,
            content_len,
        } = self.leaf.body
        else {
            return None;
        };
        Some(
            decode_payload(
                self.codec,
                &self.payload,
                content_hash,
                content_len,
                &NoDictionaries,
            )
            .map(|bytes| Dictionary {
                hash: content_hash,
                bytes: Arc::new(bytes),
            }),
        )
    }
}

/// Finds the zstd dictionaries that `Codec::ZstdDictionary` payloads name by seq.
pub trait Dictionaries {
    /// The dictionary stored in record `seq`: its blake3 hash and bytes.
    fn dictionary(&self, seq: u64) -> std::result::Result<Dictionary, String>;
}

/// A zstd dictionary from the log, identified by the blake3 hash of its bytes.
#[derive(Clone, Debug)]
pub struct Dictionary {
    /// blake3 of the bytes (as in the dictionary record's leaf).
    pub hash: [u8; 32],
    /// The dictionary.
    pub bytes: Arc<Vec<u8>>,
}

/// A decompression context and the dictionary it holds (`None`: plain zstd).
type CachedDecompressor = (Option<[u8; 32]>, zstd::bulk::Decompressor<'static>);

thread_local! {
    /// This thread's last decompression context, by dictionary hash: setting one up costs
    /// more than decompressing a typical message.
    static DECOMPRESSOR: RefCell<Option<CachedDecompressor>> = const { RefCell::new(None) };
}

/// How far a zstd frame is trusted to expand before its output proves it. The stated length
/// comes from the record (damaged or forged, it could claim gigabytes for a few bytes of
/// frame), so it is allocated up front only up to this multiple of the frame's size; beyond
/// that (a lying length, or uncommonly compressible mail) the output is streamed and memory
/// grows only as bytes actually come out.
const TRUSTED_EXPANSION: usize = 64;

/// Decompresses one zstd frame with this thread's context for `dictionary`.
fn decompress(
    frame: &[u8],
    len: usize,
    dictionary: Option<&Dictionary>,
) -> std::result::Result<Vec<u8>, String> {
    if len > frame.len().saturating_mul(TRUSTED_EXPANSION) {
        return decompress_streamed(frame, len, dictionary);
    }
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let want = dictionary.map(|d| d.hash);
        if slot.as_ref().is_none_or(|(h, _)| *h != want) {
            let d = match dictionary {
                Some(d) => zstd::bulk::Decompressor::with_dictionary(&d.bytes),
                None => zstd::bulk::Decompressor::new(),
            }
            .map_err(|e| format!("dictionary unusable: {e}"))?;
            *slot = Some((want, d));
        }
        let (_, d) = slot.as_mut().ok_or("no decompressor")?;
        d.decompress(frame, len)
            .map_err(|e| format!("payload does not decompress: {e}"))
    })
}

/// Decompresses one zstd frame whose stated length `len` is far above what its size makes
/// likely: at most `len` bytes, each allocated only once the frame has produced it.
fn decompress_streamed(
    frame: &[u8],
    len: usize,
    dictionary: Option<&Dictionary>,
) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let decoder = match dictionary {
        Some(d) => zstd::stream::read::Decoder::with_dictionary(frame, &d.bytes),
        None => zstd::stream::read::Decoder::with_buffer(frame),
    }
    .map_err(|e| format!("dictionary unusable: {e}"))?;
    let mut out = Vec::new();
    decoder
        .take(len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("payload does not decompress: {e}"))?;
    if out.len() > len {
        return Err(format!("payload decompresses to more than {len} bytes"));
    }
    Ok(out)
}

/// Decodes a payload and checks its length and blake3 hash.
pub fn decode_payload(
    codec: Codec,
    payload: &[u8],
    hash: [u8; 32],
    len: u64,
    dictionaries: &dyn Dictionaries,
) -> std::result::Result<Vec<u8>, String> {
    if len > MAX_CONTENT_LEN {
        return Err(format!("content length {len} exceeds {MAX_CONTENT_LEN}"));
    }
    let bytes = match codec {
        Codec::Raw => payload.to_vec(),
        Codec::Zstd => decompress(payload, len as usize, None)?,
        Codec::ZstdDictionary => {
            let (seq, frame) = payload
                .split_first_chunk::<8>()
                .ok_or("payload too short for a dictionary reference")?;
            let dict = dictionaries.dictionary(u64::from_be_bytes(*seq))?;
            decompress(frame, len as usize, Some(&dict))?
        }
    };
    if bytes.len() as u64 != len {
        return Err(format!("content is {} bytes, the leaf says {len}", bytes.len()));
    }
    if *blake3::hash(&bytes).as_bytes() != hash {
        return Err("content does not match its blake3 hash".into());
    }
    Ok(bytes)
}

/// For payloads that cannot reference a dictionary.
pub struct NoDictionaries;

impl Dictionaries for NoDictionaries {
    fn dictionary(&self, seq: u64) -> std::result::Result<Dictionary, String> {
        Err(format!(
            "a dictionary (seq {seq}) is referenced where none may be"
        ))
    }
}

/// Dictionaries already read, by seq; shared by a reader's lookups.
#[derive(Default)]
pub struct DictionaryCache(Mutex<HashMap<u64, Dictionary>>);

impl DictionaryCache {
    /// The cached dictionary of record `seq`, or the one `load` reads (then cached).
    pub fn get_or_load(
        &self,
        seq: u64,
        load: impl FnOnce() -> Result<Record>,
    ) -> std::result::Result<Dictionary, String> {
        if let Some(d) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&seq) {
            return Ok(d.clone());
        }
        let record = load().map_err(|e| format!("dictionary seq {seq}: {e}"))?;
        let dict = record
            .dictionary()
            .ok_or_else(|| format!("seq {seq} is a {} record, not a dictionary", record.kind().name()))??;
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq, dict.clone());
        Ok(dict)
    }
}

/// Read-only access to a log directory.
pub struct LogReader {
    log_dir: PathBuf,
    segments: Vec<(u64, PathBuf)>,
    /// Every segment, local or evicted, by first seq.
    sources: Vec<(u64, SegmentSource)>,
    evicted: Arc<RemoteReads>,
    dictionaries: DictionaryCache,
}

impl Dictionaries for LogReader {
    fn dictionary(&self, seq: u64) -> std::result::Result<Dictionary, String> {
        self.dictionaries.get_or_load(seq, || self.read(seq))
    }
}

impl LogReader {
    /// Lists the segments of `log_dir`. Evicted segments are known by their stubs, but not
    /// read: a record in one is an [`Error::Remote`] (see [`LogReader::open_with`]).
    pub fn open(log_dir: &Path) -> Result<LogReader> {
        LogReader::open_with(log_dir, Arc::new(RemoteReads::new(log_dir, None, None)))
    }

    /// Lists the segments of `log_dir`; evicted ones are read through `evicted`.
    pub fn open_with(log_dir: &Path, evicted: Arc<RemoteReads>) -> Result<LogReader> {
        let sources = list_log(log_dir)?;
        let segments = sources
            .iter()
            .filter_map(|(n, s)| match s {
                SegmentSource::Local(p) => Some((*n, p.clone())),
                SegmentSource::Evicted(_) => None,
            })
            .collect();
        Ok(LogReader {
            log_dir: log_dir.to_path_buf(),
            segments,
            sources,
            evicted,
            dictionaries: DictionaryCache::default(),
        })
    }

    /// Segment files on the local disk, by first seq.
    pub fn segments(&self) -> &[(u64, PathBuf)] {
        &self.segments
    }

    /// Every segment, local or evicted (its stub), by first seq.
    pub fn sources(&self) -> &[(u64, SegmentSource)] {
        &self.sources
    }

    /// The evicted segments' stubs and reads.
    pub fn evicted(&self) -> &Arc<RemoteReads> {
        &self.evicted
    }

    /// Path of the segment whose first record is `first_seq`.
    pub fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.log_dir.join(segment_file_name(first_seq))
    }

    /// Opens the cursor of source `idx` at its start (the stub of an evicted segment is read).
    fn cursor(&self, idx: usize) -> Result<Option<Cursor>> {
        let Some((first, source)) = self.sources.get(idx) else {
            return Ok(None);
        };
        Ok(Some(match source {
            SegmentSource::Local(path) => {
                let reader = SegmentReader::open(path)?;
                check_segment_start(&reader, *first)?;
                Cursor::Local(reader)
            }
            SegmentSource::Evicted(path) => {
                let stub = self.evicted.stub(*first)?.ok_or_else(|| Error::Format {
                    path: path.clone(),
                    reason: "the stub of an evicted segment went away".into(),
                })?;
                Cursor::Evicted {
                    stub,
                    buffered: std::collections::VecDeque::new(),
                }
            }
        }))
    }

    /// Records from `seq` onward, in order. Stops quietly at an incomplete last record (a write
    /// in progress, or a crash before recovery); damage anywhere else is an error item.
    pub fn records_from(&self, seq: u64) -> Result<Records<'_>> {
        let seq = seq.max(1);
        let idx = self
            .sources
            .partition_point(|(first, _)| *first <= seq)
            .saturating_sub(1);
        let mut it = Records {
            log: self,
            seg_idx: idx,
            reader: None,
            next_seq: seq,
            failed: false,
            one_segment: false,
        };
        if let Some(cursor) = self.cursor(idx)? {
            let first = self.sources[idx].0;
            let mut at = first;
            match cursor {
                Cursor::Local(mut reader) => {
                    // Skip earlier records of the segment without reading their bodies.
                    while at < seq {
                        match reader.next_frame(false).map_err(|e| e.of_record(at))? {
                            Some(Ok(_)) => at += 1,
                            _ => break,
                        }
                    }
                    it.reader = Some(Cursor::Local(reader));
                }
                evicted => {
                    // The stub says where every record is: nothing to skip.
                    at = seq.max(first);
                    it.reader = Some(evicted);
                }
            }
            it.next_seq = at;
        }
        Ok(it)
    }

    /// Records from `seq` onward, when the caller knows where record `seq` starts (the end of
    /// the record before it): no scanning from the start of the segment.
    pub fn records_at(&self, seq: u64, segment: u64, offset: u64) -> Result<Records<'_>> {
        let Ok(idx) = self.sources.binary_search_by_key(&segment, |(first, _)| *first) else {
            return self.records_from(seq);
        };
        let SegmentSource::Local(path) = &self.sources[idx].1 else {
            return self.records_from(seq);
        };
        let mut reader = SegmentReader::open(path)?;
        check_segment_start(&reader, segment)?;
        reader.seek_to(offset)?;
        Ok(Records {
            log: self,
            seg_idx: idx,
            reader: Some(Cursor::Local(reader)),
            next_seq: seq,
            failed: false,
            one_segment: false,
        })
    }

    /// The records of segment `first` from `seq` on, and none of the next segment (an evicted
    /// one is then not even looked at).
    pub fn records_of_segment(&self, first: u64, seq: u64) -> Result<Records<'_>> {
        let mut records = self.records_from(seq.max(first))?;
        if self.sources.get(records.seg_idx).map(|s| s.0) != Some(first) {
            records.reader = None;
        }
        records.one_segment = true;
        Ok(records)
    }

    /// One record. A record of an evicted segment is one range read (through the cache).
    pub fn read(&self, seq: u64) -> Result<Record> {
        let idx = self
            .sources
            .partition_point(|(first, _)| *first <= seq)
            .saturating_sub(1);
        if let Some((first, SegmentSource::Evicted(_))) = self.sources.get(idx) {
            if let Some(stub) = self.evicted.stub(*first)? {
                if stub.frame(seq).is_some() {
                    return self.evicted.read_record(&stub, seq);
                }
            }
        }
        match self.records_from(seq)?.next() {
            Some(Ok(r)) if r.seq() == seq => Ok(r),
            Some(Err(e)) => Err(e),
            _ => Err(Error::NoSuchRecord(seq)),
        }
    }

    /// The newest checkpoint record in the log: its seq and note (not yet verified). Scans
    /// segments newest first.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        for (first, _) in self.sources.iter().rev() {
            let mut found = None;
            for record in self.records_of_segment(*first, *first)? {
                let record = record?;
                if let LeafBody::Checkpoint { note } = &record.leaf.body {
                    found = Some((record.seq(), String::from_utf8_lossy(note).into_owned()));
                }
            }
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The raw bytes a message or arrival record refers to.
    pub fn message_bytes(&self, seq: u64) -> Result<Vec<u8>> {
        let record = self.read(seq)?;
        let record = match &record.leaf.body {
            LeafBody::Arrival { first_seq, .. } => self.read(*first_seq)?,
            _ => record,
        };
        record_content(&record, self)
    }
}

/// The checked content of a message record, as an archive error.
pub(crate) fn record_content(record: &Record, dictionaries: &dyn Dictionaries) -> Result<Vec<u8>> {
    match record.content(dictionaries) {
        Some(Ok(bytes)) => Ok(bytes),
        Some(Err(reason)) => Err(Error::Corrupt {
            seq: record.seq(),
            segment: PathBuf::from(super::segment::segment_file_name(record.location.segment)),
            offset: record.location.offset,
            reason,
        }),
        None => Err(Error::NotAMessage {
            seq: record.seq(),
            kind: record.kind().name(),
        }),
    }
}

fn check_segment_start(reader: &SegmentReader, expected_first: u64) -> Result<()> {
    if reader.first_seq != expected_first {
        return Err(Error::Corrupt {
            seq: expected_first,
            segment: reader.path().to_path_buf(),
            offset: 0,
            reason: format!(
                "segment header says it starts at seq {}, its name says {expected_first}",
                reader.first_seq
            ),
        });
    }
    Ok(())
}

/// Where a walk of the log is: in a segment file, or in an evicted segment (records fetched
/// in runs of several frames).
enum Cursor {
    Local(SegmentReader),
    Evicted {
        stub: Arc<EvictedSegment>,
        buffered: std::collections::VecDeque<Record>,
    },
}

/// Iterator over records; see [`LogReader::records_from`].
pub struct Records<'a> {
    log: &'a LogReader,
    seg_idx: usize,
    reader: Option<Cursor>,
    next_seq: u64,
    failed: bool,
    /// Ends with the segment it started in.
    one_segment: bool,
}

impl Records<'_> {
    fn step(&mut self) -> Result<Option<Record>> {
        loop {
            let is_last = self.seg_idx + 1 == self.log.sources.len();
            let segment = match self.log.sources.get(self.seg_idx) {
                Some((first, _)) => *first,
                None => return Ok(None),
            };
            match self.reader.as_mut() {
                None => return Ok(None),
                Some(Cursor::Evicted { stub, buffered }) => {
                    if buffered.is_empty() && self.next_seq <= stub.last_seq() {
                        buffered.extend(self.log.evicted.read_run(stub, self.next_seq)?);
                    }
                    if let Some(r) = buffered.pop_front() {
                        self.next_seq += 1;
                        return Ok(Some(r));
                    }
                }
                Some(Cursor::Local(reader)) => {
                    match reader.next_frame(true).map_err(|e| e.of_record(self.next_seq))? {
                        Some(Ok(f)) => {
                            let r = Record::from_frame(
                                &f.header,
                                &f.header_bytes,
                                &f.body,
                                segment,
                                f.offset,
                                reader.path(),
                                self.next_seq,
                            )?;
                            self.next_seq += 1;
                            return Ok(Some(r));
                        }
                        Some(Err(ScanStop::Torn { .. })) if is_last => return Ok(None),
                        Some(Err(stop)) => {
                            let (offset, reason) = match stop {
                                ScanStop::Torn { offset, available } => (
                                    offset,
                                    format!("segment ends inside a record ({available} bytes of it present)"),
                                ),
                                ScanStop::Damaged { offset, reason } => (offset, reason),
                            };
                            return Err(Error::Corrupt {
                                seq: self.next_seq,
                                segment: reader.path().to_path_buf(),
                                offset,
                                reason,
                            });
                        }
                        None => {}
                    }
                }
            }
            // The segment is done: on to the next one, which must start where it ended.
            self.seg_idx += 1;
            self.reader = None;
            if self.one_segment {
                return Ok(None);
            }
            if let Some(cursor) = self.log.cursor(self.seg_idx)? {
                let (first, source) = &self.log.sources[self.seg_idx];
                if *first != self.next_seq {
                    let segment = match source {
                        SegmentSource::Local(p) | SegmentSource::Evicted(p) => p.clone(),
                    };
                    return Err(Error::Corrupt {
                        seq: self.next_seq,
                        segment,
                        offset: 0,
                        reason: format!(
                            "segment starts at seq {first}, but seq {} comes next",
                            self.next_seq
                        ),
                    });
                }
                self.reader = Some(cursor);
            }
        }
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(r) => r.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads the frame at a known location (from the key-value index). A record of an evicted
/// segment is an [`Error::Remote`]: this reader has no remote (see [`SegmentFiles`]).
pub fn read_at(log_dir: &Path, location: &Location, expected_seq: u64) -> Result<Record> {
    read_at_via(
        log_dir,
        &RemoteReads::new(log_dir, None, None),
        location,
        expected_seq,
    )
}

/// [`read_at`], reading a record of an evicted segment through `evicted`.
pub fn read_at_via(
    log_dir: &Path,
    evicted: &RemoteReads,
    location: &Location,
    expected_seq: u64,
) -> Result<Record> {
    let path = log_dir.join(segment_file_name(location.segment));
    match File::open(&path) {
        Ok(file) => read_frame(&file, path, location, expected_seq),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            read_evicted(evicted, location, expected_seq, path, e)
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Record `expected_seq` at `location` of a segment whose file is gone: from its stub's
/// remote, or the file's `NotFound` if there is no stub either.
fn read_evicted(
    evicted: &RemoteReads,
    location: &Location,
    expected_seq: u64,
    path: PathBuf,
    not_found: std::io::Error,
) -> Result<Record> {
    match evicted.stub(location.segment)? {
        Some(stub) => evicted.read_record(&stub, expected_seq),
        None => Err(Error::io(path, not_found)),
    }
}

/// Segment files kept open for reading, so that serving a message costs one `pread`, not
/// an `open`, a `pread` and a `close`. Segments only ever grow (sealed ones never change),
/// so a descriptor stays valid for as long as the store is open; an evicted segment's
/// records are read through its stub (`RemoteReads`).
pub struct SegmentFiles {
    log_dir: PathBuf,
    open: Mutex<HashMap<u64, Arc<File>>>,
    evicted: Arc<RemoteReads>,
}

/// Most segment files kept open; beyond it the cache starts over (reads of many old
/// segments at once are rare: search results, exports).
const MAX_OPEN_SEGMENTS: usize = 64;

impl SegmentFiles {
    /// Reads segments of the log in `log_dir`, evicted ones through `evicted`.
    pub fn new(log_dir: &Path, evicted: Arc<RemoteReads>) -> SegmentFiles {
        SegmentFiles {
            log_dir: log_dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
            evicted,
        }
    }

    /// The evicted segments' reads.
    pub fn evicted(&self) -> &Arc<RemoteReads> {
        &self.evicted
    }

    /// Closes the segments that begin after `seq` (a rewind removed them; a segment of the
    /// same name made later must be opened anew).
    pub fn forget_after(&self, seq: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|first, _| *first <= seq);
    }

    /// Closes segment `first` (it was evicted: its file is gone).
    pub fn forget(&self, first: u64) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&first);
    }

    /// Reads the frame at a known location, like [`read_at`]; a record of an evicted segment
    /// through its stub.
    pub fn read_at(&self, location: &Location, expected_seq: u64) -> Result<Record> {
        let path = self.log_dir.join(segment_file_name(location.segment));
        let file = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            match open.get(&location.segment) {
                Some(f) => Arc::clone(f),
                None => {
                    let f = match File::open(&path) {
                        Ok(f) => Arc::new(f),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            drop(open);
                            return read_evicted(&self.evicted, location, expected_seq, path, e);
                        }
                        Err(e) => return Err(Error::io(&path, e)),
                    };
                    if open.len() >= MAX_OPEN_SEGMENTS {
                        open.clear();
                    }
                    open.insert(location.segment, Arc::clone(&f));
                    f
                }
            }
        };
        read_frame(&file, path, location, expected_seq)
    }
}

fn read_frame(file: &File, path: PathBuf, location: &Location, expected_seq: u64) -> Result<Record> {
    let mut buf = vec![0u8; location.len as usize];
    file.read_exact_at(&mut buf, location.offset)
        .map_err(|e| Error::unreadable(&path, location.offset, e).of_record(expected_seq))?;
    let mut header_bytes = [0u8; FRAME_HEADER_LEN];
    if let Some(h) = buf.get(..FRAME_HEADER_LEN) {
        header_bytes.copy_from_slice(h);
    }
    let header = FrameHeader::parse(&header_bytes)
        .filter(|h| h.frame_len() == location.len)
        .ok_or_else(|| Error::Corrupt {
            seq: expected_seq,
            segment: path.clone(),
            offset: location.offset,
            reason: "no frame at the indexed location (index stale: run `mailvault reindex`)".into(),
        })?;
    Record::from_frame(
        &header,
        &header_bytes,
        &buf[FRAME_HEADER_LEN..],
        location.segment,
        location.offset,
        &path,
        expected_seq,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zstd_payload(content: &[u8]) -> (Vec<u8>, [u8; 32]) {
        let frame = zstd::bulk::compress(content, 3).expect("compress");
        (frame, *blake3::hash(content).as_bytes())
    }

    #[test]
    fn content_that_expands_far_beyond_its_frame_is_streamed_exactly() {
        let content = vec![0u8; 4 << 20];
        let (frame, hash) = zstd_payload(&content);
        assert!(
            content.len() > frame.len() * TRUSTED_EXPANSION,
            "the streamed path is taken"
        );
        let decoded = decode_payload(Codec::Zstd, &frame, hash, content.len() as u64, &NoDictionaries);
        assert_eq!(decoded.expect("decodes"), content);
    }

    #[test]
    fn a_length_the_frame_does_not_hold_is_refused_either_way() {
        let content = b"Subject: short\r\n\r\nhello hello hello\r\n".repeat(20);
        let (frame, hash) = zstd_payload(&content);
        // Claims of a few gigabytes (streamed: nothing that size is allocated), one byte
        // more, and one byte less than the frame holds.
        for claimed in [
            MAX_CONTENT_LEN - 1,
            content.len() as u64 + 1,
            content.len() as u64 - 1,
        ] {
            let err = decode_payload(Codec::Zstd, &frame, hash, claimed, &NoDictionaries)
                .expect_err("a wrong length is refused");
            assert!(
                err.contains("bytes") || err.contains("decompress"),
                "{claimed}: {err}"
            );
        }
        let err = decode_payload(Codec::Zstd, &frame, hash, MAX_CONTENT_LEN + 1, &NoDictionaries)
            .expect_err("above the cap");
        assert!(err.contains("exceeds"), "{err}");
    }
}
