//! One bundle being written: messages handed to worker threads in batches to be deflated,
//! hashed and listed, and written back in log order, a bounded number in flight; listings and
//! range leaves spooled to anonymous temporary files and copied in at the end, so memory does
//! not grow with the bundle; the range proof checked before it is handed out.

use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};

use archive_verify::bundle::row::{csv_header, MessageRow, HEADER_PREFIX_MAX};
use archive_verify::bundle::{
    message_file, proof_file, InclusionProof, RangeLeaf, RangeProof, MESSAGES_CSV, MESSAGES_JSON,
    RANGE_LEAVES, RANGE_PROOF,
};
use archive_verify::merkle::{leaf_hash, range_proof_subtrees, root_from_range};
use archive_verify::pipeline::{default_threads, Ordered, WorkerLost};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::bundle::{checked_inclusion_proof, stale_tree};
use super::tail_buffer::TailBuffer;
use crate::log::checkpoint::SignedCheckpoint;
use crate::log::merkle::HashSource;
use crate::log::reader::{LogReader, Record};
use crate::log::tree::TreeFileReader;
use crate::{Error, Result};

pub(super) struct Writer<'a, W: Write + Seek> {
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

impl<'a, W: Write + Seek> Writer<'a, W> {
    /// A bundle written to `out`, proving against `checkpoint`; `range`: with the leaves.
    pub(super) fn new(
        out: W,
        log: &'a LogReader,
        tree: &'a TreeFileReader,
        checkpoint: &'a SignedCheckpoint,
        range: bool,
    ) -> Result<Writer<'a, W>> {
        let mut writer = Writer {
            zip: ZipWriter::new(TailBuffer::new(out)),
            log,
            tree,
            checkpoint,
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
        Ok(writer)
    }

    /// Messages written so far.
    pub(super) fn messages(&self) -> u64 {
        self.messages
    }

    /// A record of the range: its leaf, for `range/leaves.jsonl` (nothing for a filter).
    pub(super) fn leaf(&mut self, record: &Record) -> Result<()> {
        let Some(leaves) = self.leaves.as_mut() else {
            return Ok(());
        };
        let line = RangeLeaf {
            seq: record.seq(),
            leaf: B64.encode(&record.leaf_bytes),
        };
        serde_json::to_writer(&mut *leaves, &line).map_err(|e| Error::Internal(e.to_string()))?;
        leaves.write_all(b"\n").map_err(spool_error)
    }

    /// Ends the ZIP and writes it out; returns the bytes of message content written.
    pub(super) fn finish(self) -> Result<u64> {
        self.zip
            .finish()
            .map_err(zip_error)?
            .flush()
            .map_err(write_error)?;
        Ok(self.content_bytes)
    }

    pub(super) fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.zip
            .start_file(name, entry_options(bytes.len() as u64))
            .map_err(zip_error)?;
        self.zip.write_all(bytes).map_err(write_error)
    }

    pub(super) fn json_file<T: serde::Serialize>(&mut self, name: &str, doc: &T) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(doc).map_err(|e| Error::Internal(e.to_string()))?;
        text.push(b'\n');
        self.file(name, &text)
    }

    /// One message: its bytes, its inclusion proof, its listing rows. The proof is made here
    /// (it reads the tree cache); the rest on a worker, written out by [`Self::take`].
    pub(super) fn message(&mut self, record: &Record) -> Result<()> {
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
    pub(super) fn drain(&mut self) -> Result<()> {
        self.submit()?;
        while self.take()? {}
        Ok(())
    }

    /// Copies the listings in.
    pub(super) fn finish_listings(&mut self) -> Result<()> {
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

    /// The range's leaves, the subtrees outside it and, for a time range, its boundary records
    /// (`before`, `after`: the records next to it, where they pin the export's window).
    pub(super) fn range_proof(&mut self, first: u64, last: u64, before: bool, after: bool) -> Result<()> {
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
        let before = match before && first > 1 {
            true => Some(self.inclusion(&self.log.read(first - 1)?.leaf_bytes, first - 1)?),
            false => None,
        };
        let after = match after && last < size {
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

/// A deflated entry of `len` bytes.
fn entry_options(len: u64) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .large_file(len >= u32::MAX as u64)
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
