//! Writes an export (archive_verify::bundle is the format and its checker): [`Export`] reads
//! the checkpoint once and plans the volumes — one bundle, or several when the selection is
//! larger than `per_volume`, so no ZIP directory grows without bound — and writes each in one
//! forward pass over its part of the log (`writer.rs`): messages byte-exact, each with its
//! inclusion proof, listings, and for a range every leaf of it with the range proof.

use std::io::{Seek, Write};

/// Lower-case hex, as bundles write hashes.
pub use archive_verify::bundle::row::hex;
/// What an export selects (re-exported for the front doors that build a [`BundleRequest`]).
pub use archive_verify::bundle::Selection as ExportSelection;
use archive_verify::bundle::{
    anchor_entry, consistency_file, index_meta, readme, ConsistencyProof, InclusionProof, Manifest,
    Selection, Volume, CHECKPOINT, FORMAT, MANIFEST, README, WITNESS_KEYS,
};
use archive_verify::gdpdu;
use archive_verify::merkle::{leaf_hash, verify_inclusion};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::writer::Writer;
use crate::log::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::log::merkle::HashSource;
use crate::log::reader::LogReader;
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
    /// Records (a range) or messages (a filter) per volume: a larger selection is written as
    /// several bundles, so that the writer's and the verifier's memory — a ZIP's directory is
    /// held until its end — stays bounded. 0: one bundle, whatever its size.
    pub per_volume: u64,
}

/// Records or messages per volume unless asked otherwise: a ZIP directory of 20,000 entries
/// (a few MB in memory); a volume of typical mail is then hundreds of MB.
pub const DEFAULT_PER_VOLUME: u64 = 10_000;

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

/// Writes the bundle for `request` to `out` (a new file: the caller renames it into place);
/// the request must fit one volume.
pub fn write_bundle<W: Write + Seek>(layout: &Layout, request: &BundleRequest, out: W) -> Result<Exported> {
    Export::open(layout, request)?.write_only_volume(out)
}

/// An export being written: the checkpoint all its volumes prove against, read once, so
/// that they belong together even while the archive grows between them.
pub struct Export<'a> {
    layout: &'a Layout,
    request: &'a BundleRequest,
    public_key: String,
    log: LogReader,
    tree: TreeFileReader,
    signed: SignedCheckpoint,
    exported_at: String,
    /// Names the export in its volumes.
    export_id: String,
    /// The selection's records: first and last.
    first: u64,
    last: u64,
    volumes: u64,
}

impl<'a> Export<'a> {
    /// Checks the request against the newest checkpoint and plans the volumes.
    pub fn open(layout: &'a Layout, request: &'a BundleRequest) -> Result<Export<'a>> {
        Export::open_with(layout, request, LogReader::open(&layout.log_dir)?)
    }

    /// [`Export::open`], reading the log through `log` (which reads evicted segments as it
    /// was opened to).
    pub fn open_with(layout: &'a Layout, request: &'a BundleRequest, log: LogReader) -> Result<Export<'a>> {
        let public_key = layout.verifier_key()?.encode();
        let signed = latest_checkpoint(layout, &log)?;
        let size = signed.checkpoint.size;
        let tree = TreeFileReader::open(&layout.tree)?;
        if !tree.covers(size) {
            return Err(Error::Rejected(format!(
                "the tree cache does not reach size {size}: run `mailvault reindex`"
            )));
        }
        let (first, last, items) = match &request.selection {
            Selection::Range {
                first_seq, last_seq, ..
            } => (*first_seq, *last_seq, last_seq.saturating_sub(*first_seq) + 1),
            Selection::Filter { .. } => match (request.seqs.first(), request.seqs.last()) {
                (Some(f), Some(l)) => (*f, *l, request.seqs.len() as u64),
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
        let volumes = match request.per_volume {
            0 => 1,
            per => items.div_ceil(per),
        };
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| Error::System(format!("no system randomness: {e}")))?;
        Ok(Export {
            layout,
            request,
            public_key,
            log,
            tree,
            signed,
            exported_at: jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            export_id: archive_verify::bundle::row::hex(&id),
            first,
            last,
            volumes,
        })
    }

    /// Writes the export as one bundle; a selection that needs more volumes is refused.
    pub fn write_only_volume<W: Write + Seek>(&self, out: W) -> Result<Exported> {
        if self.volumes != 1 {
            return Err(Error::Rejected(format!(
                "the selection needs {} volumes of {} records",
                self.volumes, self.request.per_volume
            )));
        }
        self.write_volume(0, out)
    }

    /// How many bundles the export is written as.
    pub fn volumes(&self) -> u64 {
        self.volumes
    }

    /// What the export selects.
    pub fn selection(&self) -> &Selection {
        &self.request.selection
    }

    /// The tree size every volume proves against.
    pub fn tree_size(&self) -> u64 {
        self.signed.checkpoint.size
    }

    /// Volume `index` (from 0): its first and last record, and for a filter its messages.
    fn part(&self, index: u64) -> (u64, u64, &[u64]) {
        let per = self.request.per_volume;
        match &self.request.selection {
            Selection::Range { .. } if self.volumes == 1 => (self.first, self.last, &[]),
            Selection::Range { .. } => {
                let first = self.first + index * per;
                (first, self.last.min(first + (per - 1)), &[])
            }
            Selection::Filter { .. } => {
                let seqs = match self.volumes {
                    1 => &self.request.seqs[..],
                    _ => {
                        let start = usize::try_from(index * per).unwrap_or(usize::MAX);
                        let rest = self.request.seqs.get(start..).unwrap_or(&[]);
                        &rest[..rest.len().min(usize::try_from(per).unwrap_or(usize::MAX))]
                    }
                };
                (
                    seqs.first().copied().unwrap_or(self.first),
                    seqs.last().copied().unwrap_or(self.last),
                    seqs,
                )
            }
        }
    }

    /// Writes volume `index` (from 0) to `out` (a new file: the caller renames it into place).
    pub fn write_volume<W: Write + Seek>(&self, index: u64, out: W) -> Result<Exported> {
        if index >= self.volumes {
            return Err(Error::Internal(format!(
                "volume {index} of an export of {}",
                self.volumes
            )));
        }
        let (first, last, seqs) = self.part(index);
        let range = matches!(self.request.selection, Selection::Range { .. });
        let size = self.signed.checkpoint.size;
        let mut writer = Writer::new(out, &self.log, &self.tree, &self.signed, range)?;
        let mut wanted = seqs.iter().copied().peekable();
        for record in self.log.records_from(first)? {
            let record = record?;
            let seq = record.seq();
            if seq > last {
                break;
            }
            writer.leaf(&record)?;
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
            // The time range's boundary records belong at the export's ends.
            let (before, after) = match &self.request.selection {
                Selection::Range { since, until, .. } => (
                    since.is_some() && first == self.first,
                    until.is_some() && last == self.last,
                ),
                Selection::Filter { .. } => (false, false),
            };
            writer.range_proof(first, last, before, after)?;
        }
        self.write_anchors(&mut writer)?;
        let volume = (self.volumes > 1).then(|| Volume {
            export_id: self.export_id.clone(),
            index: index + 1,
            count: self.volumes,
            first_seq: first,
            last_seq: last,
        });
        let completeness = match (range, &volume) {
            (true, None) => {
                format!("complete: every record of seq {first}..={last}, proven by the range proof")
            }
            (true, Some(v)) => format!(
                "complete: every record of seq {first}..={last}, proven by the range proof; volume {} of {} \
                 of the export of {}..={}, which is complete with all its volumes",
                v.index, v.count, self.first, self.last
            ),
            (false, _) => {
                "authenticity of each message only: a filter's completeness cannot be proven offline".into()
            }
        };
        let manifest = Manifest {
            format: FORMAT.into(),
            generator: format!("mailvault {}", env!("CARGO_PKG_VERSION")),
            origin: self.signed.checkpoint.origin.clone(),
            public_key: self.public_key.clone(),
            exported_at: self.exported_at.clone(),
            exported_by: self.request.exported_by.clone(),
            location: self.request.location.clone(),
            selection: self.request.selection.clone(),
            tree_size: size,
            message_count: writer.messages(),
            completeness,
            volume,
        };
        writer.file(
            gdpdu::INDEX_NAME,
            gdpdu::index_xml(&index_meta(&manifest)).as_bytes(),
        )?;
        writer.file(gdpdu::DTD_NAME, gdpdu::DTD.as_bytes())?;
        writer.file(CHECKPOINT, self.signed.note.as_bytes())?;
        writer.file(README, readme(&manifest).as_bytes())?;
        writer.json_file(MANIFEST, &manifest)?;
        let content_bytes = writer.finish()?;
        Ok(Exported {
            manifest,
            content_bytes,
        })
    }

    /// The newest external anchors the bundle's tree extends (each witness's and TSA's), with
    /// the proofs that it does, and the consistency proofs the recipient asked for.
    fn write_anchors<W: Write + Seek>(&self, writer: &mut Writer<'_, W>) -> Result<()> {
        let size = self.signed.checkpoint.size;
        let mut consistency_from = self.request.consistency_from.clone();
        let anchored_sizes = crate::anchors::anchors_for_export(self.layout, size)?;
        for &anchored in &anchored_sizes {
            for file in crate::anchors::anchor_files(self.layout, anchored)? {
                let bytes = crate::anchors::read_anchor(self.layout, anchored, &file)?;
                writer.file(&anchor_entry(anchored, &file), &bytes)?;
            }
            if anchored > 0 && anchored < size && !consistency_from.contains(&anchored) {
                consistency_from.push(anchored);
            }
        }
        if !anchored_sizes.is_empty() {
            let keys = crate::anchors::witness_keys(self.layout)?;
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
            let proof = self.tree.consistency_proof(old, size)?;
            let doc = ConsistencyProof {
                old_size: old,
                tree_size: size,
                proof: proof.iter().map(|h| B64.encode(h)).collect(),
            };
            writer.json_file(&consistency_file(old), &doc)?;
        }
        Ok(())
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

pub(super) fn stale_tree() -> Error {
    Error::Rejected(
        "the tree cache disagrees with the signed checkpoint: run `mailvault verify`, then `mailvault reindex`".into(),
    )
}
