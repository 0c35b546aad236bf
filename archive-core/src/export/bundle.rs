//! Writes an export bundle (archive_verify::bundle is the format and its checker): messages
//! byte-exact, each with its inclusion proof, listings, and for a range every leaf of it with
//! the range proof. One forward pass over the log; listings and leaves go to anonymous
//! temporary files and are copied in at the end, so memory stays flat whatever the size.
//! Messages are deflated (and hashed, and their rows made) on worker threads while this one
//! reads the log and proves; they are written in log order, a bounded number in flight.

use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};

use archive_verify::bundle::row::{csv_header, MessageRow, HEADER_PREFIX_MAX};
use archive_verify::bundle::{
    anchor_entry, consistency_file, index_meta, message_file, proof_file, readme, ConsistencyProof,
    InclusionProof, Manifest, RangeLeaf, RangeProof, Selection, CHECKPOINT, FORMAT, MANIFEST, MESSAGES_CSV,
    MESSAGES_JSON, RANGE_LEAVES, RANGE_PROOF, README, WITNESS_KEYS,
};
use archive_verify::gdpdu;
use archive_verify::merkle::{leaf_hash, range_proof_subtrees, root_from_range, verify_inclusion};
use archive_verify::pipeline::{default_threads, Ordered, WorkerLost};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::log::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::log::merkle::HashSource;
use crate::log::reader::{LogReader, Record};
use crate::log::record::RecordKind;
use crate::log::tree::TreeFileReader;
use crate::store::Layout;
use crate::{Error, Result};

/// What to export.
#[derive(Clone, Debug)]
pub struct BundleRequest {
    /// The selection as the manifest states it (a range, or a filter with its query).
    pub selection: Selection,
    /// For a filter: the message seqs it found, ascending. Ignored for a range.
    pub seqs: Vec<u64>,
    /// Who exports, as the archive knows them.
    pub exported_by: String,
    /// Where the archive is operated (GDPdU's data supplier location).
    pub location: String,
    /// Older tree sizes to include consistency proofs from (a recipient's earlier checkpoints).
    pub consistency_from: Vec<u64>,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The manifest in the bundle.
    pub manifest: Manifest,
    /// Bytes of message content written.
    pub content_bytes: u64,
}

/// The signed checkpoint exports prove against: the newest in the log, verified.
pub fn latest_checkpoint(layout: &Layout, log: &LogReader) -> Result<SignedCheckpoint> {
    match log.latest_checkpoint()? {
        Some((_, note)) => Ok(layout.verifier_key()?.verify_note(&note)?),
        None => Err(Error::Rejected(
            "the log has no checkpoint yet: nothing can be proven".into(),
        )),
    }
}

/// Writes the bundle for `request` to `out` (a new file: the caller renames it into place).
pub fn write_bundle<W: Write + Seek>(layout: &Layout, request: &BundleRequest, out: W) -> Result<Exported> {
    let key = layout.verifier_key()?;
    let log = LogReader::open(&layout.log_dir)?;
    let signed = latest_checkpoint(layout, &log)?;
    let size = signed.checkpoint.size;
    let tree = TreeFileReader::open(&layout.tree)?;
    if !tree.covers(size) {
        return Err(Error::Rejected(format!(
            "the tree cache does not reach size {size}: run `mailvault reindex`"
        )));
    }
    let (first, last, range) = match &request.selection {
        Selection::Range {
            first_seq, last_seq, ..
        } => (*first_seq, *last_seq, true),
        Selection::Filter { .. } => match (request.seqs.first(), request.seqs.last()) {
            (Some(f), Some(l)) => (*f, *l, false),
            _ => {
                return Err(Error::Rejected(
                    "the query found no messages: nothing to export".into(),
                ))
            }
        },
    };
    if first == 0 || first > last {
        return Err(Error::Rejected(format!(
            "{first}..={last} is not a range of records"
        )));
    }
    if last > size {
        return Err(Error::Rejected(format!(
            "record {last} is not covered by a checkpoint yet (the newest covers 1..={size}); try again in a moment"
        )));
    }
    let mut writer = Writer {
        zip: ZipWriter::new(TailBuffer::new(out)),
        log: &log,
        tree: &tree,
        checkpoint: &signed,
        csv: spool()?,
        json: spool()?,
        leaves: if range { Some(spool()?) } else { None },
        messages: 0,
        content_bytes: 0,
        workers: Ordered::new(default_threads(), IN_FLIGHT_JOBS, IN_FLIGHT_BYTES),
        batch: Vec::new(),
        batch_bytes: 0,
    };
    writer
        .csv
        .write_all(csv_header().as_bytes())
        .map_err(spool_error)?;
    let mut wanted = request.seqs.iter().copied().peekable();
    for record in log.records_from(first)? {
        let record = record?;
        let seq = record.seq();
        if seq > last {
            break;
        }
        if let Some(leaves) = writer.leaves.as_mut() {
            let line = RangeLeaf {
                seq,
                leaf: B64.encode(&record.leaf_bytes),
            };
            serde_json::to_writer(&mut *leaves, &line).map_err(|e| Error::Internal(e.to_string()))?;
            leaves.write_all(b"\n").map_err(spool_error)?;
        }
        let is_message = matches!(record.kind(), RecordKind::Message | RecordKind::Arrival);
        let selected = if range {
            is_message
        } else {
            while wanted.next_if(|&s| s < seq).is_some() {}
            wanted.next_if_eq(&seq).is_some() && is_message
        };
        if selected {
            writer.message(&record)?;
        }
    }
    if let Some(missing) = wanted.next() {
        return Err(Error::Rejected(format!(
            "record {missing} is not a message the log holds"
        )));
    }
    writer.drain()?;
    writer.finish_listings()?;
    if range {
        writer.range_proof(request, first, last)?;
    }
    // The newest external anchors the bundle's tree extends (each witness's and TSA's), with
    // the proofs that it does.
    let mut consistency_from = request.consistency_from.clone();
    let anchored_sizes = crate::anchors::anchors_for_export(layout, size)?;
    for &anchored in &anchored_sizes {
        for file in crate::anchors::anchor_files(layout, anchored)? {
            let bytes = crate::anchors::read_anchor(layout, anchored, &file)?;
            writer.file(&anchor_entry(anchored, &file), &bytes)?;
        }
        if anchored > 0 && anchored < size && !consistency_from.contains(&anchored) {
            consistency_from.push(anchored);
        }
    }
    if !anchored_sizes.is_empty() {
        let keys = crate::anchors::witness_keys(layout)?;
        if !keys.is_empty() {
            let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
            writer.file(WITNESS_KEYS, text.as_bytes())?;
        }
    }
    for &old in &consistency_from {
        if old > size {
            return Err(Error::Rejected(format!(
                "cannot prove size {old} consistent with the bundle's smaller size {size}"
            )));
        }
        let proof = tree.consistency_proof(old, size)?;
        let doc = ConsistencyProof {
            old_size: old,
            tree_size: size,
            proof: proof.iter().map(|h| B64.encode(h)).collect(),
        };
        writer.json_file(&consistency_file(old), &doc)?;
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        generator: format!("mailvault {}", env!("CARGO_PKG_VERSION")),
        origin: signed.checkpoint.origin.clone(),
        public_key: key.encode(),
        exported_at: jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        exported_by: request.exported_by.clone(),
        location: request.location.clone(),
        selection: request.selection.clone(),
        tree_size: size,
        message_count: writer.messages,
        completeness: match range {
            true => format!("complete: every record of seq {first}..={last}, proven by the range proof"),
            false => {
                "authenticity of each message only: a filter's completeness cannot be proven offline".into()
            }
        },
    };
    writer.file(
        gdpdu::INDEX_NAME,
        gdpdu::index_xml(&index_meta(&manifest)).as_bytes(),
    )?;
    writer.file(gdpdu::DTD_NAME, gdpdu::DTD.as_bytes())?;
    writer.file(CHECKPOINT, signed.note.as_bytes())?;
    writer.file(README, readme(&manifest).as_bytes())?;
    writer.json_file(MANIFEST, &manifest)?;
    let content_bytes = writer.content_bytes;
    writer
        .zip
        .finish()
        .map_err(zip_error)?
        .flush()
        .map_err(write_error)?;
    Ok(Exported {
        manifest,
        content_bytes,
    })
}

struct Writer<'a, W: Write + Seek> {
    zip: ZipWriter<TailBuffer<W>>,
    log: &'a LogReader,
    tree: &'a TreeFileReader,
    checkpoint: &'a SignedCheckpoint,
    csv: BufWriter<std::fs::File>,
    json: BufWriter<std::fs::File>,
    leaves: Option<BufWriter<std::fs::File>>,
    messages: u64,
    content_bytes: u64,
    /// Batches of messages being deflated, hashed and listed, in log order.
    workers: Ordered<Result<Deflated>>,
    /// Messages not yet handed to a worker, and their bytes.
    batch: Vec<Pending>,
    batch_bytes: usize,
}

/// Batches in flight on the worker threads at most (beyond the oldest), and their bytes.
const IN_FLIGHT_JOBS: usize = 8;
const IN_FLIGHT_BYTES: usize = 8 << 20;
/// A batch is handed to a worker at this many messages or bytes: one job, one deflate state
/// and one small ZIP per batch rather than per message.
const BATCH_MESSAGES: usize = 32;
const BATCH_BYTES: usize = 512 << 10;

/// A message read and proven, for a worker to deflate.
struct Pending {
    seq: u64,
    time_us: i64,
    bytes: Vec<u8>,
    /// BLAKE3 of `bytes`, when the log reader checked it already.
    checked: Option<[u8; 32]>,
    proof: Vec<u8>,
}

/// A batch as a worker hands it back: a small ZIP of its message and proof entries, in
/// order, copied into the bundle as they are; the rows of its messages; their bytes.
struct Deflated {
    zip: Vec<u8>,
    csv: String,
    json: String,
    messages: u64,
    content_bytes: u64,
}

/// Deflates, hashes and lists a batch (on a worker thread). One ZipWriter for the batch, so
/// its deflate state is set up once, not per message.
fn deflate_batch(batch: Vec<Pending>) -> Result<Deflated> {
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut done = Deflated {
        zip: Vec::new(),
        csv: String::new(),
        json: String::new(),
        messages: 0,
        content_bytes: 0,
    };
    for m in batch {
        zip.start_file(message_file(m.seq), entry_options(m.bytes.len() as u64))
            .map_err(zip_error)?;
        zip.write_all(&m.bytes).map_err(write_error)?;
        // Compact JSON, stored: a fresh deflate state per 1.3 KB proof cost more than the
        // bytes it saved (1.3 → 0.9 KB).
        zip.start_file(
            proof_file(m.seq),
            entry_options(m.proof.len() as u64).compression_method(CompressionMethod::Stored),
        )
        .map_err(zip_error)?;
        zip.write_all(&m.proof).map_err(write_error)?;
        let blake3: [u8; 32] = m.checked.unwrap_or_else(|| blake3::hash(&m.bytes).into());
        let sha256: [u8; 32] = Sha256::digest(&m.bytes).into();
        let prefix = &m.bytes[..m.bytes.len().min(HEADER_PREFIX_MAX)];
        let row = MessageRow::new(m.seq, m.time_us, prefix, m.bytes.len() as u64, &blake3, &sha256);
        done.csv.push_str(&row.csv_record());
        done.json.push_str(&row.json());
        done.json.push_str(",\n");
        done.messages += 1;
        done.content_bytes += m.bytes.len() as u64;
    }
    done.zip = zip.finish().map_err(zip_error)?.into_inner();
    Ok(done)
}

impl<W: Write + Seek> Writer<'_, W> {
    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.zip
            .start_file(name, entry_options(bytes.len() as u64))
            .map_err(zip_error)?;
        self.zip.write_all(bytes).map_err(write_error)
    }

    fn json_file<T: serde::Serialize>(&mut self, name: &str, doc: &T) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(doc).map_err(|e| Error::Internal(e.to_string()))?;
        text.push(b'\n');
        self.file(name, &text)
    }

    /// One message: its bytes, its inclusion proof, its listing rows. The proof is made here
    /// (it reads the tree cache); the rest on a worker, written out by [`Self::take`].
    fn message(&mut self, record: &Record) -> Result<()> {
        let seq = record.seq();
        // Content checked against the leaf's hash by the reader (an arrival's lives at its first seq).
        // A message record's content was just checked against its leaf's BLAKE3: no second pass.
        let (bytes, checked) = match record.content(self.log) {
            Some(content) => (
                content.map_err(|reason| Error::Corrupt {
                    seq,
                    segment: self.log.segment_path(record.location.segment),
                    offset: record.location.offset,
                    reason,
                })?,
                record.leaf.content().map(|(hash, _)| hash),
            ),
            None => (self.log.message_bytes(seq)?, None),
        };
        let mut proof = serde_json::to_vec(&self.inclusion(&record.leaf_bytes, seq)?)
            .map_err(|e| Error::Internal(e.to_string()))?;
        proof.push(b'\n');
        self.batch_bytes += bytes.len();
        self.batch.push(Pending {
            seq,
            time_us: record.leaf.time_us,
            bytes,
            checked,
            proof,
        });
        if self.batch.len() >= BATCH_MESSAGES || self.batch_bytes >= BATCH_BYTES {
            self.submit()?;
        }
        Ok(())
    }

    /// Hands the batch to a worker, first writing out what the workers finished if as much
    /// as allowed is in flight.
    fn submit(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        while self.workers.full() {
            self.take()?;
        }
        let batch = std::mem::take(&mut self.batch);
        let weight = std::mem::take(&mut self.batch_bytes);
        self.workers
            .submit(weight, move || deflate_batch(batch))
            .map_err(worker_error)
    }

    /// Writes the oldest batch back from the workers: its entries, copied as they are, and
    /// its rows.
    fn take(&mut self) -> Result<bool> {
        let Some(done) = self.workers.wait_next() else {
            return Ok(false);
        };
        let done = done.map_err(worker_error)??;
        let mut batch = zip::ZipArchive::new(std::io::Cursor::new(done.zip)).map_err(zip_error)?;
        for i in 0..batch.len() {
            let entry = batch.by_index_raw(i).map_err(zip_error)?;
            self.zip.raw_copy_file(entry).map_err(zip_error)?;
        }
        self.csv.write_all(done.csv.as_bytes()).map_err(spool_error)?;
        // Each row came with ",\n" after it: the separator goes before every row but the first.
        let json = done.json.strip_suffix(",\n").unwrap_or(&done.json);
        if self.messages > 0 && !json.is_empty() {
            self.json.write_all(b",\n").map_err(spool_error)?;
        }
        self.json.write_all(json.as_bytes()).map_err(spool_error)?;
        self.messages += done.messages;
        self.content_bytes += done.content_bytes;
        Ok(true)
    }

    /// Writes every message still with the workers.
    fn drain(&mut self) -> Result<()> {
        self.submit()?;
        while self.take()? {}
        Ok(())
    }

    /// Copies the listings in.
    fn finish_listings(&mut self) -> Result<()> {
        let close = if self.messages > 0 { "\n]\n" } else { "]\n" };
        self.json.write_all(close.as_bytes()).map_err(spool_error)?;
        self.zip
            .start_file(MESSAGES_CSV, entry_options(0))
            .map_err(zip_error)?;
        copy_spool(&mut self.csv, &mut self.zip, b"")?;
        self.zip
            .start_file(MESSAGES_JSON, entry_options(0))
            .map_err(zip_error)?;
        copy_spool(&mut self.json, &mut self.zip, b"[\n")
    }

    /// The range's leaves, the subtrees outside it and, for a time range, its boundary records.
    fn range_proof(&mut self, request: &BundleRequest, first: u64, last: u64) -> Result<()> {
        let size = self.checkpoint.checkpoint.size;
        let subtrees = range_proof_subtrees(first - 1, last, size)
            .into_iter()
            .map(|(a, b)| self.tree.range_hash(a, b))
            .collect::<Result<Vec<_>>>()?;
        let Some(mut leaves) = self.leaves.take() else {
            return Ok(());
        };
        // Check the proof before handing it out, re-reading the leaves as the verifier will.
        let file = rewound(&mut leaves)?;
        let hashes = BufReader::new(file)
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| serde_json::from_str::<RangeLeaf>(&l).ok())
            .filter_map(|l| B64.decode(l.leaf).ok())
            .map(|leaf| leaf_hash(&leaf));
        let root = root_from_range(first - 1, last, size, hashes, subtrees.iter().copied());
        if root != Some(self.checkpoint.checkpoint.root) {
            return Err(stale_tree());
        }
        self.zip
            .start_file(RANGE_LEAVES, entry_options(0))
            .map_err(zip_error)?;
        copy_spool(&mut leaves, &mut self.zip, b"")?;
        let (since, until) = match &request.selection {
            Selection::Range { since, until, .. } => (since.is_some(), until.is_some()),
            Selection::Filter { .. } => (false, false),
        };
        let before = match since && first > 1 {
            true => Some(self.inclusion(&self.log.read(first - 1)?.leaf_bytes, first - 1)?),
            false => None,
        };
        let after = match until && last < size {
            true => Some(self.inclusion(&self.log.read(last + 1)?.leaf_bytes, last + 1)?),
            false => None,
        };
        let doc = RangeProof {
            first_seq: first,
            last_seq: last,
            tree_size: size,
            subtrees: subtrees.iter().map(|h| B64.encode(h)).collect(),
            before,
            after,
        };
        self.json_file(RANGE_PROOF, &doc)
    }

    /// The inclusion proof of record `seq` in the bundle's checkpoint.
    fn inclusion(&self, leaf_bytes: &[u8], seq: u64) -> Result<InclusionProof> {
        checked_inclusion_proof(self.tree, &self.checkpoint.checkpoint, leaf_bytes, seq)
    }
}

/// The inclusion proof of record `seq` (with these leaf bytes) in `checkpoint`'s tree, from
/// the tree cache, checked before it is handed out: a stale cache is a reindex away from
/// fixed, a wrong proof would be evidence against us.
pub fn checked_inclusion_proof(
    tree: &TreeFileReader,
    checkpoint: &Checkpoint,
    leaf_bytes: &[u8],
    seq: u64,
) -> Result<InclusionProof> {
    let path = tree.inclusion_proof(seq - 1, checkpoint.size)?;
    checked_proof(path, checkpoint, leaf_bytes, seq)
}

/// The inclusion proof document `mailvault proof` prints and the web API serves: an export
/// bundle's inclusion proof (docs/FORMAT.md) with the signed checkpoint it leads to.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProofDocument {
    #[serde(flatten)]
    pub inclusion: InclusionProof,
    /// The signed checkpoint the proof leads to.
    pub checkpoint: String,
}

/// Checks the audit path `path` of record `seq` (with these leaf bytes) against
/// `checkpoint` and returns it as an [`InclusionProof`].
pub fn checked_proof(
    path: Vec<archive_verify::merkle::Hash>,
    checkpoint: &Checkpoint,
    leaf_bytes: &[u8],
    seq: u64,
) -> Result<InclusionProof> {
    let size = checkpoint.size;
    let leaf = leaf_hash(leaf_bytes);
    if !verify_inclusion(&leaf, seq - 1, size, &path, &checkpoint.root) {
        return Err(stale_tree());
    }
    Ok(InclusionProof {
        seq,
        leaf_index: seq - 1,
        tree_size: size,
        leaf: B64.encode(leaf_bytes),
        leaf_hash: B64.encode(leaf),
        proof: path.iter().map(|h| B64.encode(h)).collect(),
    })
}

/// A deflated entry of `len` bytes.
fn entry_options(len: u64) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .large_file(len >= u32::MAX as u64)
}

fn stale_tree() -> Error {
    Error::Rejected(
        "the tree cache disagrees with the signed checkpoint: run `mailvault verify`, then `mailvault reindex`".into(),
    )
}

/// An anonymous temporary file (gone when closed) for what is copied into the ZIP at the end.
fn spool() -> Result<BufWriter<std::fs::File>> {
    tempfile::tempfile().map(BufWriter::new).map_err(spool_error)
}

/// The spooled file, flushed and rewound for reading.
fn rewound(spool: &mut BufWriter<std::fs::File>) -> Result<std::fs::File> {
    spool.flush().map_err(spool_error)?;
    let mut file = spool.get_ref().try_clone().map_err(spool_error)?;
    file.seek(SeekFrom::Start(0)).map_err(spool_error)?;
    Ok(file)
}

/// Writes `head` and then the spool's content to the ZIP entry being written.
fn copy_spool<W: Write + Seek>(
    spool: &mut BufWriter<std::fs::File>,
    zip: &mut ZipWriter<TailBuffer<W>>,
    head: &[u8],
) -> Result<()> {
    let mut file = rewound(spool)?;
    zip.write_all(head).map_err(write_error)?;
    std::io::copy(&mut file, zip).map_err(write_error)?;
    Ok(())
}

/// Bytes kept in memory before they are written out.
const TAIL_MAX: usize = 1 << 20;

/// Buffers the bundle's end in memory. The ZIP writer seeks back after each entry to fill in
/// its CRC and sizes; through a `BufWriter` every such seek is a flush and more system calls,
/// twice per message. Here seeks and writes within the unwritten tail stay in memory, and the
/// file is written in pieces of about [`TAIL_MAX`]; a seek back further (an entry larger than
/// that) goes to the file. `flush` must be called at the end: nothing is written on drop.
struct TailBuffer<W: Write + Seek> {
    inner: W,
    /// Bytes written to `inner`; its position is there.
    flushed: u64,
    /// The bytes from `flushed` on.
    tail: Vec<u8>,
    /// The position of the next write.
    pos: u64,
}

impl<W: Write + Seek> TailBuffer<W> {
    fn new(inner: W) -> TailBuffer<W> {
        TailBuffer {
            inner,
            flushed: 0,
            tail: Vec::with_capacity(TAIL_MAX),
            pos: 0,
        }
    }

    fn end(&self) -> u64 {
        self.flushed + self.tail.len() as u64
    }

    fn write_out(&mut self) -> std::io::Result<()> {
        self.inner.write_all(&self.tail)?;
        self.flushed += self.tail.len() as u64;
        self.tail.clear();
        Ok(())
    }
}

impl<W: Write + Seek> Write for TailBuffer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.pos < self.flushed {
            // Into what is already written: there, and back to where `inner` appends.
            let n = buf.len().min((self.flushed - self.pos) as usize);
            self.inner.seek(SeekFrom::Start(self.pos))?;
            let written = self.inner.write_all(&buf[..n]);
            self.inner.seek(SeekFrom::Start(self.flushed))?;
            written?;
            self.pos += n as u64;
            return Ok(n);
        }
        let at = usize::try_from(self.pos - self.flushed)
            .map_err(|_| std::io::Error::other("seek beyond the end of the bundle"))?;
        if at > self.tail.len() {
            self.tail.resize(at, 0);
        }
        let overlap = buf.len().min(self.tail.len() - at);
        self.tail[at..at + overlap].copy_from_slice(&buf[..overlap]);
        self.tail.extend_from_slice(&buf[overlap..]);
        self.pos += buf.len() as u64;
        if self.tail.len() >= TAIL_MAX && self.pos == self.end() {
            self.write_out()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_out()?;
        self.inner.flush()
    }
}

impl<W: Write + Seek> Seek for TailBuffer<W> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.end().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::other("seek before the start of the bundle"))?;
        Ok(self.pos)
    }
}

fn spool_error(e: std::io::Error) -> Error {
    Error::System(format!("temporary file for the export: {e}"))
}

fn write_error(e: std::io::Error) -> Error {
    Error::System(format!("writing the bundle: {e}"))
}

fn worker_error(e: WorkerLost) -> Error {
    Error::Internal(format!("exporting: {e}"))
}

fn zip_error(e: zip::result::ZipError) -> Error {
    Error::System(format!("writing the bundle: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// The same writes and seeks through a TailBuffer and straight into memory give the same
    /// bytes, also when a seek goes back past what was written out.
    #[test]
    fn tail_buffer_writes_what_a_plain_file_gets() {
        let mut plain = Cursor::new(Vec::new());
        let mut file = tempfile::tempfile().expect("temp file");
        let mut tail = TailBuffer::new(&mut file);
        let mut step = 0u8;
        for len in [10usize, 70_000, 3 * TAIL_MAX / 2, 5, 2 * TAIL_MAX + 3, 100] {
            step = step.wrapping_add(1);
            let header = [step; 30];
            let body: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(step)).collect();
            let patch = [step.wrapping_add(100); 12];
            for w in [&mut plain as &mut dyn WriteSeek, &mut tail as &mut dyn WriteSeek] {
                let start = w.stream_position().expect("position");
                w.write_all(&header).expect("header");
                w.write_all(&body).expect("body");
                let end = w.stream_position().expect("position");
                // As the ZIP writer fills in a local header: back, patch, forward.
                w.seek(SeekFrom::Start(start + 14)).expect("seek back");
                w.write_all(&patch).expect("patch");
                w.seek(SeekFrom::Start(end)).expect("seek forward");
            }
        }
        tail.flush().expect("flush");
        drop(tail);
        let mut written = Vec::new();
        file.seek(SeekFrom::Start(0)).expect("rewind");
        std::io::Read::read_to_end(&mut file, &mut written).expect("read back");
        assert_eq!(written.len(), plain.get_ref().len());
        assert!(written == *plain.get_ref(), "the buffered file differs");
    }

    trait WriteSeek: Write + Seek {}
    impl<T: Write + Seek> WriteSeek for T {}
}
