//! `verify-bundle`: checks an export bundle offline — every file against the leaves, every
//! leaf against the signed checkpoint, the listings against the messages, and for a range
//! export that the range is complete — and says per message and overall what holds.
//!
//! Everything in the bundle is hostile input: small files are read with a size cap, messages
//! and the range's leaves are streamed, and nothing allocates by a number the bundle states.
//! Messages are checked on worker threads (`crate::pipeline`), a bounded number of chunks in
//! flight, and their verdicts handed on in seq order; the report keeps only the failures.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zip::ZipArchive;

mod anchors;
mod container;
mod messages;
mod range;
mod volumes;

use messages::{check_inclusion, check_messages};
pub use volumes::check_volume_set;

use super::reader::BundleFile;
use super::row::{csv_header, MessageRow, HEADER_PREFIX_MAX};
use super::*;
use crate::leaf::Leaf;
use crate::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use crate::note::{Checkpoint, VerifierKey};
use crate::pipeline::{default_threads, Ordered};

/// Largest manifest, checkpoint, proof document or README read.
const SMALL_FILE_MAX: u64 = 1 << 20;
/// Largest line of `range/leaves.jsonl` (a leaf with a huge envelope, base64).
const LEAF_LINE_MAX: u64 = 64 << 20;
/// Problems kept in a report; the rest are counted. The same for failed messages.
const MAX_PROBLEMS: usize = 1000;
/// Messages a worker checks per job.
const CHUNK: usize = 64;

/// What the recipient brings besides the bundle.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The archive's key as obtained from its operator; without it, the key in the bundle is
    /// used and the report says that this proves integrity, not origin.
    pub key: Option<VerifierKey>,
    /// A checkpoint (signed note) of this archive the recipient kept from earlier.
    pub older_checkpoint: Option<String>,
    /// Witness keys as obtained from the witnesses' operators: each must have cosigned an
    /// anchored checkpoint. Without them, cosignatures are checked with the keys the bundle
    /// names, and the report says they were not pinned.
    pub witnesses: Vec<crate::cosignature::WitnessKey>,
    /// Certificates of time-stamping authorities (each the TSA's own or the CA that issued
    /// it), as obtained from the TSAs: every token must lead to one. Without them, tokens are
    /// checked against the certificates they carry, and the report says they were not pinned.
    pub tsa_pins: crate::timestamp::PinnedCertificates,
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
    /// Messages checked: one verdict each per message file or proof in the bundle (the
    /// verdicts go to the caller of [`verify_bundle_with`] as they come, in seq order).
    pub messages: u64,
    /// The verdicts of the messages that failed, the first [`MAX_PROBLEMS`], by seq.
    pub failed_messages: Vec<MessageVerdict>,
    /// Failed messages beyond those kept.
    pub more_failed_messages: u64,
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
            && self.failed_messages.is_empty()
            && self.more_failed_messages == 0
    }

    /// Messages that failed, kept or not.
    pub fn failed_count(&self) -> u64 {
        self.failed_messages.len() as u64 + self.more_failed_messages
    }

    fn verdict(&mut self, verdict: MessageVerdict) {
        self.messages += 1;
        if verdict.problem.is_some() {
            if self.failed_messages.len() < MAX_PROBLEMS {
                self.failed_messages.push(verdict);
            } else {
                self.more_failed_messages += 1;
            }
        }
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
    verify_bundle_with(path, options, &mut |_, _| {})
}

/// [`verify_bundle`], handing each message's verdict to `on_message` in seq order as it is
/// known, with the report so far (its manifest and checkpoint are set by then).
pub fn verify_bundle_with(
    path: &Path,
    options: &Options,
    on_message: &mut dyn FnMut(&Report, &MessageVerdict),
) -> std::io::Result<Report> {
    Ok(match open_zip(BundleFile::open(path)?) {
        Ok(zip) => verify_zip(zip, options, on_message),
        Err(report) => *report,
    })
}

/// What [`verify_path`] hands on as it goes: a message's verdict, or a bundle's report
/// when it is done — each with the bundle's name and its report so far.
pub enum Progress<'a> {
    /// One message's verdict, in seq order within its bundle.
    Message(&'a MessageVerdict),
    /// The bundle is checked; the report is final.
    Done,
}

/// Verifies the file at `path`: a bundle, or a container of an export's volumes (each
/// volume checked in place, one after the other). Returns a report per bundle, named — the
/// container's own first (its entries and README), then its volumes as `path:entry` — for
/// [`check_volume_set`] and the caller, without the message verdicts, which go to
/// `on_progress` as they come. An `Err` means the file could not be read at all.
pub fn verify_path(
    path: &Path,
    options: &Options,
    on_progress: &mut dyn FnMut(&str, &Report, Progress),
) -> std::io::Result<Vec<(String, Report)>> {
    let name = path.display().to_string();
    let file = BundleFile::open(path)?;
    let zip = match open_zip(file.clone()) {
        Ok(zip) => zip,
        Err(report) => {
            on_progress(&name, &report, Progress::Done);
            return Ok(vec![(name, *report)]);
        }
    };
    if container::is_container(&zip) {
        return Ok(container::verify_container(
            &name,
            &file,
            zip,
            options,
            on_progress,
        ));
    }
    let report = verify_zip(zip, options, &mut |r, m| {
        on_progress(&name, r, Progress::Message(m))
    });
    on_progress(&name, &report, Progress::Done);
    Ok(vec![(name, report)])
}

/// Verifies an opened bundle.
fn verify_zip(
    mut zip: Bundle,
    options: &Options,
    on_message: &mut dyn FnMut(&Report, &MessageVerdict),
) -> Report {
    let mut report = Report::default();
    let inventory = Arc::new(Inventory::of(&zip, &mut report));
    let Some(manifest) = read_manifest(&mut zip, &mut report) else {
        return report;
    };
    report.manifest = Some(manifest.clone());
    volumes::check_volume_fields(&manifest, &inventory.messages, &mut report);
    let Some(key) = choose_key(&manifest, options, &mut report) else {
        return report;
    };
    let Some(checkpoint) = read_checkpoint(&mut zip, &key, &manifest, &mut report) else {
        return report;
    };
    report.checkpoint = Some(checkpoint.clone());
    if let Some(older) = &options.older_checkpoint {
        check_older(&mut zip, &key, older, &checkpoint, &mut report);
    }
    anchors::check_anchors(
        &mut zip,
        &inventory.anchors,
        &key,
        &checkpoint,
        options,
        &mut report,
    );
    check_messages(&mut zip, &inventory, &checkpoint, &mut report, on_message);
    if manifest.message_count != inventory.messages.len() as u64 {
        report.problem(format!(
            "{MANIFEST} says {} messages, the bundle holds {}",
            manifest.message_count,
            inventory.messages.len()
        ));
    }
    match &manifest.selection {
        Selection::Range { .. } => {
            range::check_range(&mut zip, &manifest, &inventory, &checkpoint, &mut report)
        }
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
    report
}

/// The bundle as read (see reader.rs: buffered, and clones share the central directory).
type Bundle = ZipArchive<BundleFile>;

/// The ZIP in `file`, or the report of one that is not.
fn open_zip(file: BundleFile) -> Result<Bundle, Box<Report>> {
    ZipArchive::new(file).map_err(|e| {
        let mut report = Report::default();
        report.problem(format!("not a readable ZIP file: {e}"));
        Box::new(report)
    })
}

/// The bundle's file names, sorted into what they are.
struct Inventory {
    messages: BTreeSet<u64>,
    proofs: BTreeSet<u64>,
    /// Entries under `anchors/` (checked by `anchors.rs`).
    anchors: Vec<String>,
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
            anchors: Vec::new(),
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
            } else if name.starts_with(ANCHORS_DIR) {
                inv.anchors.push(name.to_string());
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
