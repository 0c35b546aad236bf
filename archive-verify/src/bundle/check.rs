//! `verify-bundle`: checks an export bundle offline — every file against the leaves, every
//! leaf against the signed checkpoint, the listings against the messages, and for a range
//! export that the range is complete — and says per message and overall what holds.
//!
//! Everything in the bundle is hostile input: small files are read with a size cap, messages
//! and the range's leaves are streamed, and nothing allocates by a number the bundle states.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};
use zip::ZipArchive;

use super::reader::BundleFile;
use super::row::{csv_header, MessageRow, HEADER_PREFIX_MAX};
use super::*;
use crate::leaf::{Leaf, LeafBody};
use crate::merkle::{leaf_hash, root_from_range, verify_consistency, verify_inclusion, Hash};
use crate::note::{Checkpoint, VerifierKey};

/// Largest manifest, checkpoint, proof document or README read.
const SMALL_FILE_MAX: u64 = 1 << 20;
/// Largest line of `range/leaves.jsonl` (a leaf with a huge envelope, base64).
const LEAF_LINE_MAX: u64 = 64 << 20;
/// Problems kept in a report; the rest are counted.
const MAX_PROBLEMS: usize = 1000;

/// What the recipient brings besides the bundle.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The archive's key as obtained from its operator; without it, the key in the bundle is
    /// used and the report says that this proves integrity, not origin.
    pub key: Option<VerifierKey>,
    /// A checkpoint (signed note) of this archive the recipient kept from earlier.
    pub older_checkpoint: Option<String>,
}

/// The verdict on one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageVerdict {
    /// Record sequence number.
    pub seq: u64,
    /// What is wrong with it; `None` when it is authentic.
    pub problem: Option<String>,
}

/// What verification found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// The signed checkpoint, when its signature verified.
    pub checkpoint: Option<Checkpoint>,
    /// One verdict per message file or proof in the bundle, by seq.
    pub messages: Vec<MessageVerdict>,
    /// Everything found wrong (the first [`MAX_PROBLEMS`]).
    pub problems: Vec<String>,
    /// Problems beyond those kept.
    pub more_problems: u64,
    /// What the verdict does not cover, in words (an unpinned key, a filter's completeness).
    pub caveats: Vec<String>,
    /// What was proven beyond each message's authenticity (range completeness, consistency).
    pub proven: Vec<String>,
}

impl Report {
    /// Whether nothing was found wrong.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
            && self.more_problems == 0
            && self.messages.iter().all(|m| m.problem.is_none())
    }

    fn problem(&mut self, what: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(what.into());
        } else {
            self.more_problems += 1;
        }
    }
}

/// Verifies the bundle at `path`. An `Err` means the file could not be read at all (exit
/// status 2); a file that is not a well-formed bundle is an invalid [`Report`].
pub fn verify_bundle(path: &Path, options: &Options) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut zip = match open_zip(path)? {
        Ok(zip) => zip,
        Err(e) => {
            report.problem(format!("not a readable ZIP file: {e}"));
            return Ok(report);
        }
    };
    let inventory = Inventory::of(&zip, &mut report);
    let Some(manifest) = read_manifest(&mut zip, &mut report) else {
        return Ok(report);
    };
    report.manifest = Some(manifest.clone());
    let Some(key) = choose_key(&manifest, options, &mut report) else {
        return Ok(report);
    };
    let Some(checkpoint) = read_checkpoint(&mut zip, &key, &manifest, &mut report) else {
        return Ok(report);
    };
    report.checkpoint = Some(checkpoint.clone());
    if let Some(older) = &options.older_checkpoint {
        check_older(&mut zip, &key, older, &checkpoint, &mut report);
    }
    check_messages(&mut zip, &inventory, &checkpoint, &mut report);
    if manifest.message_count != inventory.messages.len() as u64 {
        report.problem(format!(
            "{MANIFEST} says {} messages, the bundle holds {}",
            manifest.message_count,
            inventory.messages.len()
        ));
    }
    match &manifest.selection {
        Selection::Range { .. } => check_range(&mut zip, &manifest, &inventory, &checkpoint, &mut report),
        Selection::Filter { query, .. } => report.caveats.push(format!(
            "a filtered export (query {query:?}): each message is proven to be in the archive, but \
             that the query found every matching message cannot be proven offline"
        )),
    }
    match read_small(&mut zip, crate::gdpdu::INDEX_NAME) {
        Ok(text) if text == crate::gdpdu::index_xml(&index_meta(&manifest)).as_bytes() => {}
        Ok(_) => report.problem(format!(
            "{} is not the GDPdU description this bundle's manifest and listing give: it was edited",
            crate::gdpdu::INDEX_NAME
        )),
        Err(e) => report.problem(format!("{}: {e}", crate::gdpdu::INDEX_NAME)),
    }
    match read_small(&mut zip, crate::gdpdu::DTD_NAME) {
        Ok(text) if text == crate::gdpdu::DTD.as_bytes() => {}
        Ok(_) => report.problem(format!(
            "{} is not the published GDPdU DTD",
            crate::gdpdu::DTD_NAME
        )),
        Err(e) => report.problem(format!("{}: {e}", crate::gdpdu::DTD_NAME)),
    }
    match read_small(&mut zip, README) {
        Ok(text) if text == readme(&manifest).as_bytes() => {}
        Ok(_) => report.problem(format!(
            "{README} is not the text this bundle's manifest gives: it was edited"
        )),
        Err(e) => report.problem(format!("{README}: {e}")),
    }
    Ok(report)
}

/// The bundle as read (see reader.rs: buffered, and clones share the central directory).
type Bundle = ZipArchive<BundleFile>;

fn open_zip(path: &Path) -> std::io::Result<Result<Bundle, zip::result::ZipError>> {
    Ok(ZipArchive::new(BundleFile::open(path)?))
}

/// The bundle's file names, sorted into what they are.
struct Inventory {
    messages: BTreeSet<u64>,
    proofs: BTreeSet<u64>,
}

impl Inventory {
    fn of(zip: &Bundle, report: &mut Report) -> Inventory {
        let fixed: HashSet<&str> = [
            MANIFEST,
            CHECKPOINT,
            README,
            MESSAGES_CSV,
            MESSAGES_JSON,
            RANGE_LEAVES,
            RANGE_PROOF,
            crate::gdpdu::INDEX_NAME,
            crate::gdpdu::DTD_NAME,
        ]
        .into();
        let mut seen = HashSet::new();
        let mut inv = Inventory {
            messages: BTreeSet::new(),
            proofs: BTreeSet::new(),
        };
        for name in zip.file_names() {
            let name = match name {
                Ok(name) => name,
                Err(e) => {
                    report.problem(format!("a file name in the ZIP is unreadable: {e}"));
                    continue;
                }
            };
            let name: &str = &name;
            if !seen.insert(name.to_string()) {
                // Two entries of one name: tools disagree about which one they extract.
                report.problem(format!("the ZIP holds {name:?} twice"));
                continue;
            }
            if fixed.contains(name) || name.ends_with('/') {
                continue;
            }
            if let Some(seq) = numbered(name, MESSAGES_DIR, ".eml") {
                inv.messages.insert(seq);
            } else if let Some(seq) = numbered(name, PROOFS_DIR, ".json") {
                inv.proofs.insert(seq);
            } else if numbered(name, CONSISTENCY_DIR, ".json").is_none() {
                report.problem(format!(
                    "unexpected file {name:?}: not part of a mailvault bundle"
                ));
            }
        }
        inv
    }
}

/// `dir<n>ext` with `n` a canonical decimal number ≥ 1.
fn numbered(name: &str, dir: &str, ext: &str) -> Option<u64> {
    let digits = name.strip_prefix(dir)?.strip_suffix(ext)?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads a small file whole, refusing more than [`SMALL_FILE_MAX`] bytes.
fn read_small(zip: &mut Bundle, name: &str) -> Result<Vec<u8>, String> {
    let file = zip.by_name(name).map_err(|e| match e {
        zip::result::ZipError::FileNotFound => "missing".to_string(),
        e => format!("unreadable: {e}"),
    })?;
    let mut out = Vec::new();
    file.take(SMALL_FILE_MAX + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("unreadable: {e}"))?;
    if out.len() as u64 > SMALL_FILE_MAX {
        return Err(format!("larger than {SMALL_FILE_MAX} bytes"));
    }
    Ok(out)
}

fn read_json<T: serde::de::DeserializeOwned>(zip: &mut Bundle, name: &str) -> Result<T, String> {
    let bytes = read_small(zip, name)?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not the expected JSON: {e}"))
}

fn read_manifest(zip: &mut Bundle, report: &mut Report) -> Option<Manifest> {
    match read_json::<Manifest>(zip, MANIFEST) {
        Ok(m) if m.format == FORMAT => Some(m),
        Ok(m) => {
            report.problem(format!(
                "{MANIFEST}: format {:?} is not {FORMAT:?} (a newer mailvault may read it)",
                m.format
            ));
            None
        }
        Err(e) => {
            report.problem(format!("{MANIFEST}: {e}"));
            None
        }
    }
}

fn choose_key(manifest: &Manifest, options: &Options, report: &mut Report) -> Option<VerifierKey> {
    let bundled = VerifierKey::parse(&manifest.public_key);
    match (&options.key, bundled) {
        (Some(pinned), Ok(bundled)) if *pinned == bundled => Some(pinned.clone()),
        (Some(pinned), Ok(bundled)) => {
            report.problem(format!(
                "the bundle names key {}, not the key you pinned ({}): it is not from that archive",
                bundled.encode(),
                pinned.encode()
            ));
            Some(pinned.clone())
        }
        (Some(pinned), Err(e)) => {
            report.problem(format!("{MANIFEST}: public_key: {e}"));
            Some(pinned.clone())
        }
        (None, Ok(bundled)) => {
            report.caveats.push(format!(
                "no key pinned (--key): the signature was checked with the key the bundle itself \
                 names ({}); that proves the bundle is intact, not that it comes from the archive \
                 you think — compare that key with the one the archive's operator gave you",
                bundled.encode()
            ));
            Some(bundled)
        }
        (None, Err(e)) => {
            report.problem(format!("{MANIFEST}: public_key: {e}"));
            None
        }
    }
}

fn read_checkpoint(
    zip: &mut Bundle,
    key: &VerifierKey,
    manifest: &Manifest,
    report: &mut Report,
) -> Option<Checkpoint> {
    let note = match read_small(zip, CHECKPOINT) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            report.problem(format!("{CHECKPOINT}: {e}"));
            return None;
        }
    };
    match key.verify_note(&note) {
        Ok(signed) => {
            let cp = signed.checkpoint;
            if cp.size != manifest.tree_size {
                report.problem(format!(
                    "{MANIFEST} says tree size {}, the signed checkpoint {}",
                    manifest.tree_size, cp.size
                ));
            }
            if cp.origin != manifest.origin {
                report.problem(format!(
                    "{MANIFEST} names archive {:?}, the signed checkpoint {:?}",
                    manifest.origin, cp.origin
                ));
            }
            Some(cp)
        }
        Err(e) => {
            report.problem(format!("{CHECKPOINT}: {e}"));
            None
        }
    }
}

fn check_older(zip: &mut Bundle, key: &VerifierKey, older: &str, current: &Checkpoint, report: &mut Report) {
    let old = match key.verify_note(older) {
        Ok(signed) => signed.checkpoint,
        Err(e) => {
            report.problem(format!("the older checkpoint you gave: {e}"));
            return;
        }
    };
    if old.size > current.size {
        report.problem(format!(
            "the bundle's checkpoint (size {}) is older than the one you kept (size {}): the \
             archive showed you a longer history before",
            current.size, old.size
        ));
        return;
    }
    let proof: Vec<Hash> = if old.size == current.size || old.size == 0 {
        Vec::new()
    } else {
        let name = consistency_file(old.size);
        match read_json::<ConsistencyProof>(zip, &name) {
            Ok(p) if p.old_size == old.size && p.tree_size == current.size => match hashes(&p.proof) {
                Some(h) => h,
                None => {
                    report.problem(format!("{name}: a hash is not 32 bytes of base64"));
                    return;
                }
            },
            Ok(_) => {
                report.problem(format!("{name}: it is for other tree sizes"));
                return;
            }
            Err(e) => {
                report.problem(format!(
                    "{name}: {e} — the bundle cannot show that it extends your checkpoint of size {}; \
                     ask for an export with --consistency-from {}",
                    old.size, old.size
                ));
                return;
            }
        }
    };
    if verify_consistency(old.size, &old.root, current.size, &current.root, &proof) {
        report.proven.push(format!(
            "the archive's tree of size {} extends the checkpoint of size {} you kept: nothing \
             you were shown before was changed or removed",
            current.size, old.size
        ));
    } else {
        report.problem(format!(
            "the bundle's checkpoint (size {}) is NOT consistent with the checkpoint of size {} you \
             kept: the archive's history was rewritten",
            current.size, old.size
        ));
    }
}

fn hashes(b64: &[String]) -> Option<Vec<Hash>> {
    b64.iter().map(|h| decode_hash(h)).collect()
}

fn decode_hash(b64: &str) -> Option<Hash> {
    B64.decode(b64).ok()?.try_into().ok()
}

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

fn check_messages(zip: &mut Bundle, inventory: &Inventory, checkpoint: &Checkpoint, report: &mut Report) {
    // Listings are read alongside the messages, each through its own handle on the file.
    let (mut csv_zip, mut json_zip) = (zip.clone(), zip.clone());
    let mut csv = Listing::open(&mut csv_zip, MESSAGES_CSV, report);
    let mut json = Listing::open(&mut json_zip, MESSAGES_JSON, report);
    csv.expect(&csv_header(), "the header line", report);
    json.expect("[\n", "the opening bracket", report);
    let all: BTreeSet<u64> = inventory.messages.union(&inventory.proofs).copied().collect();
    let mut first = true;
    let mut buf = vec![0u8; 64 * 1024];
    for seq in all {
        let problem = match check_message(zip, seq, inventory, checkpoint, &mut buf) {
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
        report.messages.push(MessageVerdict { seq, problem });
    }
    json.expect(if first { "]\n" } else { "\n]\n" }, "the closing bracket", report);
    csv.finish(report);
    json.finish(report);
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
    let (size, b3, sha, prefix) = hash_stream(file, buf).map_err(|e| format!("{eml}: unreadable: {e}"))?;
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
fn check_inclusion(proof: &InclusionProof, seq: u64, checkpoint: &Checkpoint) -> Result<Leaf, String> {
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

/// Range exports: every leaf of the range rebuilds the signed root with the range proof, and
/// every message record among them has its file in the bundle.
fn check_range(
    zip: &mut Bundle,
    manifest: &Manifest,
    inventory: &Inventory,
    checkpoint: &Checkpoint,
    report: &mut Report,
) {
    let Selection::Range {
        first_seq,
        last_seq,
        since,
        until,
    } = &manifest.selection
    else {
        return;
    };
    let (first, last, size) = (*first_seq, *last_seq, checkpoint.size);
    if first == 0 || first > last || last > size {
        report.problem(format!(
            "{MANIFEST}: range {first}..={last} is not a range of a tree of size {size}"
        ));
        return;
    }
    let proof: RangeProof = match read_json(zip, RANGE_PROOF) {
        Ok(p) => p,
        Err(e) => {
            report.problem(format!("{RANGE_PROOF}: {e}"));
            return;
        }
    };
    if (proof.first_seq, proof.last_seq, proof.tree_size) != (first, last, size) {
        report.problem(format!(
            "{RANGE_PROOF}: it is not the proof of range {first}..={last} in size {size}"
        ));
        return;
    }
    let Some(subtrees) = hashes(&proof.subtrees) else {
        report.problem(format!("{RANGE_PROOF}: a hash is not 32 bytes of base64"));
        return;
    };
    let bounds = match (
        since.as_deref().map(parse_time).transpose(),
        until.as_deref().map(parse_time).transpose(),
    ) {
        (Ok(s), Ok(u)) => (s, u),
        _ => {
            report.problem(format!("{MANIFEST}: since/until is not an RFC 3339 time"));
            return;
        }
    };
    let file = match zip.by_name(RANGE_LEAVES) {
        Ok(f) => f,
        Err(e) => {
            report.problem(format!("{RANGE_LEAVES}: {e}"));
            return;
        }
    };
    let mut walk = RangeWalk {
        reader: BufReader::new(file),
        next_seq: first,
        first,
        last,
        last_time: i64::MIN,
        first_time: None,
        files: inventory.messages.iter().copied().peekable(),
        messages: 0,
        unaccounted: Vec::new(),
        problem: None,
    };
    let root = root_from_range(
        first - 1,
        last,
        size,
        std::iter::from_fn(|| walk.next_hash()),
        subtrees.into_iter(),
    );
    if let Some(p) = walk.problem.take() {
        report.problem(format!("{RANGE_LEAVES}: {p}"));
        return;
    }
    if root != Some(checkpoint.root) {
        report.problem(format!(
            "{RANGE_LEAVES} and {RANGE_PROOF} do not rebuild the signed root: records of {first}..={last} \
             are missing, added, altered or reordered"
        ));
        return;
    }
    // Every message record of the range has its file, and no file is from outside the range.
    walk.files_left_over();
    for problem in walk.unaccounted.drain(..) {
        report.problem(problem);
    }
    let (since, until) = bounds;
    if let Some(since) = since {
        if walk.first_time.is_some_and(|t| t < since) {
            report.problem(format!("record {first} is older than the range's start"));
        }
        if first > 1
            && !boundary_ok(
                proof.before.as_ref(),
                first - 1,
                checkpoint,
                |t| t < since,
                report,
            )
        {
            return;
        }
    }
    if let Some(until) = until {
        if walk.last_time >= until {
            report.problem(format!("record {last} is not older than the range's end"));
        }
        if last < size {
            if !boundary_ok(proof.after.as_ref(), last + 1, checkpoint, |t| t >= until, report) {
                return;
            }
        } else {
            report.caveats.push(format!(
                "the range ends with the checkpoint (record {size}): records received later with a \
                 time before the range's end are not in it"
            ));
        }
    }
    report.proven.push(format!(
        "complete: the bundle holds every record from {first} to {last} ({} messages), no more and no fewer",
        walk.messages
    ));
}

/// A time range's boundary record: proven in the tree, and on the right side of the bound.
fn boundary_ok(
    proof: Option<&InclusionProof>,
    seq: u64,
    checkpoint: &Checkpoint,
    outside: impl Fn(i64) -> bool,
    report: &mut Report,
) -> bool {
    let Some(proof) = proof else {
        report.problem(format!(
            "{RANGE_PROOF}: the boundary record {seq} is missing: the time range is not proven"
        ));
        return false;
    };
    match check_inclusion(proof, seq, checkpoint) {
        Ok(leaf) if outside(leaf.time_us) => true,
        Ok(_) => {
            report.problem(format!(
                "record {seq} next to the range falls inside the time range: the range is cut short"
            ));
            false
        }
        Err(e) => {
            report.problem(format!("{RANGE_PROOF}: boundary record {seq}: {e}"));
            false
        }
    }
}

fn parse_time(text: &str) -> Result<i64, ()> {
    let t: jiff::Timestamp = text.parse().map_err(|_| ())?;
    Ok(t.as_microsecond())
}

/// Reads `range/leaves.jsonl` line by line, yielding leaf hashes and noting the first problem;
/// matches the range's message records with the bundle's message files as it goes (both are
/// in seq order), so memory does not grow with the range.
struct RangeWalk<R: BufRead, F: Iterator<Item = u64>> {
    reader: R,
    next_seq: u64,
    first: u64,
    last: u64,
    last_time: i64,
    first_time: Option<i64>,
    /// The bundle's message files, by seq, not yet matched with a record.
    files: std::iter::Peekable<F>,
    /// Message records in the range.
    messages: u64,
    /// Message records without a file and files without a message record.
    unaccounted: Vec<String>,
    problem: Option<String>,
}

impl<R: BufRead, F: Iterator<Item = u64>> RangeWalk<R, F> {
    /// Accounts for message record `seq`: every file before it has no record in the range.
    fn message_record(&mut self, seq: u64) {
        self.messages += 1;
        while let Some(file) = self.files.next_if(|&f| f < seq) {
            self.unaccounted_file(file);
        }
        if self.files.next_if_eq(&seq).is_none() && self.unaccounted.len() < MAX_PROBLEMS {
            self.unaccounted.push(format!(
                "record {seq} of the range is a message, but {} is not in the bundle",
                message_file(seq)
            ));
        }
    }

    fn files_left_over(&mut self) {
        while let Some(file) = self.files.next() {
            self.unaccounted_file(file);
        }
    }

    fn unaccounted_file(&mut self, seq: u64) {
        if self.unaccounted.len() < MAX_PROBLEMS {
            self.unaccounted.push(format!(
                "{} is not a message record of the range {}..={}",
                message_file(seq),
                self.first,
                self.last
            ));
        }
    }

    fn next_hash(&mut self) -> Option<Hash> {
        if self.problem.is_some() {
            return None;
        }
        let mut line = Vec::new();
        match self
            .reader
            .by_ref()
            .take(LEAF_LINE_MAX)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => {
                if self.next_seq <= self.last {
                    self.problem = Some(format!("it ends before record {}", self.next_seq));
                }
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                self.problem = Some(format!("unreadable: {e}"));
                return None;
            }
        }
        let parsed: Result<RangeLeaf, _> = serde_json::from_slice(&line);
        let outcome = parsed
            .map_err(|e| format!("line {}: not a leaf line: {e}", self.next_seq))
            .and_then(|l| {
                let bytes = B64
                    .decode(&l.leaf)
                    .map_err(|_| format!("record {}: the leaf is not base64", l.seq))?;
                let leaf = Leaf::decode(&bytes).map_err(|e| format!("record {}: {e}", l.seq))?;
                if l.seq != self.next_seq || leaf.seq != self.next_seq {
                    return Err(format!(
                        "record {} is where record {} belongs (a record missing, added or reordered)",
                        leaf.seq, self.next_seq
                    ));
                }
                Ok((leaf, bytes))
            });
        let (leaf, bytes) = match outcome {
            Ok(v) => v,
            Err(p) => {
                self.problem = Some(p);
                return None;
            }
        };
        if leaf.time_us < self.last_time {
            self.problem = Some(format!("record {} is older than the record before it", leaf.seq));
            return None;
        }
        self.last_time = leaf.time_us;
        self.first_time.get_or_insert(leaf.time_us);
        if matches!(leaf.body, LeafBody::Message { .. } | LeafBody::Arrival { .. }) {
            self.message_record(leaf.seq);
        }
        self.next_seq += 1;
        Some(leaf_hash(&bytes))
    }
}
