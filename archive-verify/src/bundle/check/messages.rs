//! The messages of a bundle: each entry's bytes hashed and checked against its leaf and
//! inclusion proof (on worker threads, in chunks), and the listings (`messages.csv`,
//! `messages.json`) compared row by row with what the messages give, in seq order.

use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::*;

/// Compares a listing in the bundle with the one recomputed from the messages, record by
/// record, reading it as it goes.
struct Listing<'a> {
    name: &'static str,
    reader: Option<zip::read::ZipFile<'a, BundleFile>>,
    failed: bool,
    buf: Vec<u8>,
}

impl<'a> Listing<'a> {
    fn open(zip: &'a mut Bundle, name: &'static str, report: &mut Report) -> Listing<'a> {
        let reader = match zip.by_name(name) {
            Ok(f) => Some(f),
            Err(e) => {
                report.problem(format!(
                    "{name}: {}",
                    if matches!(e, zip::result::ZipError::FileNotFound) {
                        "missing".to_string()
                    } else {
                        e.to_string()
                    }
                ));
                None
            }
        };
        let failed = reader.is_none();
        Listing {
            name,
            reader,
            failed,
            buf: Vec::new(),
        }
    }

    /// The next `expected` bytes must be these; `what` names the row for the report.
    fn expect(&mut self, expected: &str, what: &str, report: &mut Report) {
        if self.failed {
            return;
        }
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        self.buf.clear();
        let got = reader
            .by_ref()
            .take(expected.len() as u64)
            .read_to_end(&mut self.buf);
        if got.is_err() || self.buf != expected.as_bytes() {
            report.problem(format!(
                "{}: {what} is not what the messages give (edited, reordered, or a row missing)",
                self.name
            ));
            self.failed = true;
        }
    }

    /// Nothing may follow the last expected byte.
    fn finish(mut self, report: &mut Report) {
        if self.failed {
            return;
        }
        if let Some(reader) = self.reader.as_mut() {
            let mut extra = [0u8; 1];
            if matches!(reader.read(&mut extra), Ok(n) if n > 0) {
                report.problem(format!(
                    "{}: it has rows no message in the bundle accounts for",
                    self.name
                ));
            }
        }
    }
}

pub(super) fn check_messages(
    zip: &mut Bundle,
    inventory: &Arc<Inventory>,
    checkpoint: &Checkpoint,
    report: &mut Report,
    on_message: &mut dyn FnMut(&Report, &MessageVerdict),
) {
    // Listings are read alongside the messages, each through its own handle on the file.
    let (mut csv_zip, mut json_zip) = (zip.clone(), zip.clone());
    let mut csv = Listing::open(&mut csv_zip, MESSAGES_CSV, report);
    let mut json = Listing::open(&mut json_zip, MESSAGES_JSON, report);
    csv.expect(&csv_header(), "the header line", report);
    json.expect("[\n", "the opening bracket", report);
    let threads = default_threads();
    let mut workers: Ordered<Vec<(u64, Result<MessageRow, String>)>> =
        Ordered::new(threads, 2 * threads + 2, usize::MAX);
    let mut seqs = union(inventory.messages.iter(), inventory.proofs.iter());
    let mut first = true;
    let mut lost = false;
    loop {
        let chunk: Vec<u64> = seqs.by_ref().take(CHUNK).collect();
        let done = chunk.is_empty();
        if !done {
            // Each job reads through its own handle (sharing the parsed central directory).
            let (mut zip, inventory, checkpoint) = (zip.clone(), inventory.clone(), checkpoint.clone());
            let submitted = workers.submit(chunk.len(), move || {
                let mut buf = vec![0u8; 64 * 1024];
                chunk
                    .into_iter()
                    .map(|seq| {
                        (
                            seq,
                            check_message(&mut zip, seq, &inventory, &checkpoint, &mut buf),
                        )
                    })
                    .collect()
            });
            lost |= submitted.is_err();
        }
        while !lost && (done || workers.full()) {
            let Some(results) = workers.wait_next() else {
                break;
            };
            let Ok(results) = results else {
                lost = true;
                break;
            };
            for (seq, result) in results {
                let problem = match result {
                    Ok(row) => {
                        csv.expect(&row.csv_record(), &format!("the row of message {seq}"), report);
                        let line = if first {
                            row.json()
                        } else {
                            format!(",\n{}", row.json())
                        };
                        json.expect(&line, &format!("the object of message {seq}"), report);
                        first = false;
                        None
                    }
                    Err(problem) => Some(problem),
                };
                let verdict = MessageVerdict { seq, problem };
                on_message(report, &verdict);
                report.verdict(verdict);
            }
        }
        if done || lost {
            break;
        }
    }
    if lost {
        report.problem("checking the messages failed: a worker thread ended");
        return;
    }
    json.expect(if first { "]\n" } else { "\n]\n" }, "the closing bracket", report);
    csv.finish(report);
    json.finish(report);
}

/// The seqs of two ascending sequences, ascending, each once.
fn union<'a>(
    a: impl Iterator<Item = &'a u64>,
    b: impl Iterator<Item = &'a u64>,
) -> impl Iterator<Item = u64> {
    let (mut a, mut b) = (a.copied().peekable(), b.copied().peekable());
    std::iter::from_fn(move || match (a.peek().copied(), b.peek().copied()) {
        (Some(x), Some(y)) if x == y => {
            b.next();
            a.next()
        }
        (Some(x), Some(y)) if x < y => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// Checks message `seq` against its leaf and the leaf against the checkpoint; returns its row.
fn check_message(
    zip: &mut Bundle,
    seq: u64,
    inventory: &Inventory,
    checkpoint: &Checkpoint,
    buf: &mut [u8],
) -> Result<MessageRow, String> {
    let eml = message_file(seq);
    let proof_name = proof_file(seq);
    if !inventory.messages.contains(&seq) {
        return Err(format!("{eml} is missing (its proof is there)"));
    }
    if !inventory.proofs.contains(&seq) {
        return Err(format!(
            "{proof_name} is missing: {eml} cannot be tied to the archive"
        ));
    }
    let proof: InclusionProof = read_json(zip, &proof_name).map_err(|e| format!("{proof_name}: {e}"))?;
    let leaf = check_inclusion(&proof, seq, checkpoint).map_err(|e| format!("{proof_name}: {e}"))?;
    let Some((content_hash, content_len)) = leaf.content() else {
        return Err(format!(
            "{proof_name}: record {seq} is a {} record, not a message",
            leaf.kind().name()
        ));
    };
    let file = zip.by_name(&eml).map_err(|e| format!("{eml}: unreadable: {e}"))?;
    // Read one byte past what the leaf records, never more: an entry that inflates to
    // gigabytes (a ZIP bomb) costs no more time than the message it replaces.
    let bounded = file.take(content_len.saturating_add(1));
    let (size, b3, sha, prefix) = hash_stream(bounded, buf).map_err(|e| format!("{eml}: unreadable: {e}"))?;
    if size > content_len {
        return Err(format!(
            "{eml} is not the archived message: the archive recorded {content_len} bytes, the file has more"
        ));
    }
    if size != content_len || b3 != content_hash {
        return Err(format!(
            "{eml} is not the archived message: the archive recorded {content_len} bytes with BLAKE3 {}, \
             the file has {size} bytes with BLAKE3 {}",
            row::hex(&content_hash),
            row::hex(&b3)
        ));
    }
    Ok(MessageRow::new(seq, leaf.time_us, &prefix, size, &b3, &sha))
}

/// Checks an inclusion proof of record `seq` in `checkpoint`; returns the decoded leaf.
pub(super) fn check_inclusion(
    proof: &InclusionProof,
    seq: u64,
    checkpoint: &Checkpoint,
) -> Result<Leaf, String> {
    if proof.seq != seq || proof.leaf_index != seq.wrapping_sub(1) {
        return Err(format!("it is the proof of record {}, not of {seq}", proof.seq));
    }
    if proof.tree_size != checkpoint.size {
        return Err(format!(
            "it is for tree size {}, the checkpoint has {}",
            proof.tree_size, checkpoint.size
        ));
    }
    let leaf_bytes = B64
        .decode(&proof.leaf)
        .map_err(|_| "the leaf is not base64".to_string())?;
    let leaf = Leaf::decode(&leaf_bytes).map_err(|e| e.to_string())?;
    if leaf.seq != seq {
        return Err(format!("its leaf is record {}, not {seq}", leaf.seq));
    }
    let path = hashes(&proof.proof).ok_or("a proof hash is not 32 bytes of base64")?;
    if !verify_inclusion(
        &leaf_hash(&leaf_bytes),
        seq - 1,
        checkpoint.size,
        &path,
        &checkpoint.root,
    ) {
        return Err(format!(
            "the inclusion proof does not lead to the signed root: record {seq} is not this leaf in the archive's log"
        ));
    }
    Ok(leaf)
}

/// Size, BLAKE3, SHA-256 and the header prefix of a stream, reading it once through `buf`
/// (one buffer for all messages, not a zeroed 64 KiB one each).
fn hash_stream(mut r: impl Read, buf: &mut [u8]) -> std::io::Result<(u64, Hash, Hash, Vec<u8>)> {
    let mut b3 = blake3::Hasher::new();
    let mut sha = Sha256::new();
    let mut prefix = Vec::new();
    let mut size = 0u64;
    loop {
        let n = r.read(buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        b3.update(chunk);
        sha.update(chunk);
        if prefix.len() < HEADER_PREFIX_MAX {
            let room = HEADER_PREFIX_MAX - prefix.len();
            prefix.extend_from_slice(&chunk[..n.min(room)]);
        }
        size += n as u64;
    }
    Ok((size, b3.finalize().into(), sha.finalize().into(), prefix))
}
