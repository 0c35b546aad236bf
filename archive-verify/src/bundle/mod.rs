//! Export bundles: a ZIP a tax auditor, a regulator or a court checks offline, without trusting
//! the archive, its operators or its code. This module is the format (file names, the manifest,
//! proof documents, the rows of the listings); [`check`] verifies a bundle; archive-core's
//! `export` writes one. docs/FORMAT.md §"Export bundles" specifies the same bytes.
//!
//! What a bundle proves: every `messages/<seq>.eml` is byte for byte the message the archive's
//! log recorded as record `seq` (its blake3 is in the leaf, the leaf is in the tree, the tree
//! root is in a checkpoint signed by the archive's key). A range export proves more: the
//! bundle holds every record of the range, as leaves that rebuild the signed root with the
//! range proof, so a message left out or slipped in is found. A filtered export cannot prove
//! that the filter found everything, and says so.

pub mod check;
mod reader;
pub mod row;

use serde::{Deserialize, Serialize};

/// The `format` of the manifest this code writes and reads.
pub const FORMAT: &str = "mailvault-bundle/1";
/// The manifest.
pub const MANIFEST: &str = "bundle.json";
/// The signed checkpoint every proof in the bundle leads to.
pub const CHECKPOINT: &str = "checkpoint.txt";
/// How to verify, for people (German and English).
pub const README: &str = "README.txt";
/// The listing of the messages, one row each (see [`row`]), described by `index.xml`.
pub const MESSAGES_CSV: &str = crate::gdpdu::CSV_NAME;
/// The same listing as a JSON array, one object per line.
pub const MESSAGES_JSON: &str = "messages.json";
/// Range exports: every leaf of the range, one JSON object per line.
pub const RANGE_LEAVES: &str = "range/leaves.jsonl";
/// Range exports: the subtrees outside the range, and the boundary records of a time range.
pub const RANGE_PROOF: &str = "range/proof.json";
/// Directory of the messages.
pub const MESSAGES_DIR: &str = "messages/";
/// Directory of the per-message inclusion proofs.
pub const PROOFS_DIR: &str = "proofs/";
/// Directory of consistency proofs from older tree sizes the archive was asked for.
pub const CONSISTENCY_DIR: &str = "consistency/";

/// A container's directory of volumes ([`Volume`]): an export of several volumes is one ZIP
/// holding `README.txt` and each volume, a bundle ZIP of its own, stored (not compressed) as
/// `volumes/<name>.zip`, so a verifier reads each in place and an unzipped volume is a bundle.
pub const VOLUMES_DIR: &str = "volumes/";

/// Whether `name` is a container's volume entry: `volumes/<name>.zip`, the name of
/// `[A-Za-z0-9._-]` (no directories), at most 128 characters.
pub fn is_volume_entry(name: &str) -> bool {
    name.strip_prefix(VOLUMES_DIR)
        .and_then(|n| n.strip_suffix(".zip"))
        .is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 128
                && !n.starts_with('.')
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// `README.txt` of a container of `count` volumes.
pub fn container_readme(count: usize) -> String {
    format!(
        "mailvault export in {count} volumes

=== English ===
This file holds an export too large for one bundle: {count} volumes under volumes/, each a
complete bundle (a ZIP with its own README.txt, messages, proofs and listings) proven against
the same signed checkpoint. Check all of them at once, without unpacking:
      mailvault verify-bundle THIS.zip --key 'PUBLIC KEY'
It checks every volume, that none is missing and that they belong to one export (for a range
export: that together they hold every record of the range). Or unpack this file and check the
volumes together: mailvault verify-bundle volumes/*.zip --key 'PUBLIC KEY'; each volume's
README.txt tells how to check it without mailvault.

=== Deutsch ===
Diese Datei enthält einen Export, der für ein Paket zu groß ist: {count} Teile unter volumes/,
jeder ein vollständiges Paket (ein ZIP mit eigener README.txt, Nachrichten, Nachweisen und
Listen), alle gegen denselben signierten Checkpoint nachgewiesen. Alle auf einmal prüfen, ohne
Entpacken:
      mailvault verify-bundle DIESE.zip --key 'ÖFFENTLICHER SCHLÜSSEL'
Das prüft jeden Teil, dass keiner fehlt und alle zum selben Export gehören (bei einem
Bereichsexport: dass sie zusammen jeden Datensatz des Bereichs enthalten). Oder entpacken und
die Teile zusammen prüfen: mailvault verify-bundle volumes/*.zip --key 'ÖFFENTLICHER
SCHLÜSSEL'; die README.txt jedes Teils beschreibt die Prüfung ohne mailvault.
"
    )
}

/// Directory of the external anchors of a checkpoint (witness cosignatures, time-stamps):
/// `anchors/<size>/<file>`, the files of the archive's `<data>/anchors/<size>/`.
pub const ANCHORS_DIR: &str = "anchors/";
/// The witness keys the archive was configured with (not pinned: named for the recipient).
pub const WITNESS_KEYS: &str = "anchors/witness-keys.txt";
/// Most anchor directories a bundle carries (and a verifier looks at).
pub const MAX_ANCHORS: usize = 16;

/// Names of witnesses and TSAs, as they appear in anchor file names: `[A-Za-z0-9._-]`, not
/// starting with a dot, at most 64 characters.
pub fn is_valid_anchor_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The files an anchor directory may hold: `checkpoint.txt`, `cosignature-<witness>.txt`,
/// `timestamp-<tsa>.tsr`.
pub fn is_anchor_file(file: &str) -> bool {
    let named = |f: Option<&str>| f.is_some_and(is_valid_anchor_name);
    file == "checkpoint.txt"
        || named(
            file.strip_prefix("cosignature-")
                .and_then(|f| f.strip_suffix(".txt")),
        )
        || named(
            file.strip_prefix("timestamp-")
                .and_then(|f| f.strip_suffix(".tsr")),
        )
}

/// The bundle entry of anchor file `file` of tree size `size`.
pub fn anchor_entry(size: u64, file: &str) -> String {
    format!("{ANCHORS_DIR}{size}/{file}")
}

/// The file of message `seq`.
pub fn message_file(seq: u64) -> String {
    format!("{MESSAGES_DIR}{seq}.eml")
}

/// The inclusion proof file of message `seq`.
pub fn proof_file(seq: u64) -> String {
    format!("{PROOFS_DIR}{seq}.json")
}

/// The consistency proof file from tree size `old`.
pub fn consistency_file(old: u64) -> String {
    format!("{CONSISTENCY_DIR}{old}.json")
}

/// `bundle.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The program that wrote the bundle, with its version.
    pub generator: String,
    /// The archive's log origin (the name in its checkpoints and key).
    pub origin: String,
    /// The archive's verifier key (signed-note format). Only as trustworthy as the channel it
    /// came by: a recipient pins the key they got from the archive's operator (`--key`).
    pub public_key: String,
    /// When the bundle was written (RFC 3339 UTC).
    pub exported_at: String,
    /// Who exported it, as the archive knows them.
    pub exported_by: String,
    /// Where the archive is operated (the GDPdU data supplier's location).
    #[serde(default)]
    pub location: String,
    /// What was exported.
    pub selection: Selection,
    /// Tree size of the checkpoint in `checkpoint.txt`.
    pub tree_size: u64,
    /// Number of messages in `messages/`.
    pub message_count: u64,
    /// What the bundle proves about completeness, in words.
    pub completeness: String,
    /// When the export was written as several bundles ("volumes", so that no file, and no
    /// writer's or verifier's memory, grows with the size of the export): which one this is.
    /// Absent in an export of one file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<Volume>,
}

/// One bundle of an export written as several ([`Manifest::volume`]). Every volume is a whole
/// bundle, proven against the same checkpoint; a range export's volumes cover consecutive
/// parts of its range, a filter's hold consecutive runs of the messages it found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Names the export the volumes belong to (the same in all of them).
    pub export_id: String,
    /// This volume's number, from 1.
    pub index: u64,
    /// How many volumes the export has.
    pub count: u64,
    /// The first record this volume covers: a range export's part starts here; a filter's
    /// messages in this volume are at or after it.
    pub first_seq: u64,
    /// The last record this volume covers.
    pub last_seq: u64,
}

impl Manifest {
    /// The records this bundle covers: its volume's part, or the whole selection (a filter's
    /// span is `None` without volumes: its messages may be anywhere).
    pub fn span(&self) -> Option<(u64, u64)> {
        match (&self.volume, &self.selection) {
            (Some(v), _) => Some((v.first_seq, v.last_seq)),
            (
                None,
                Selection::Range {
                    first_seq, last_seq, ..
                },
            ) => Some((*first_seq, *last_seq)),
            (None, Selection::Filter { .. }) => None,
        }
    }
}

/// What an export selected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Selection {
    /// Every record with `first_seq <= seq <= last_seq`; when the range was asked for as a
    /// time range, `since`/`until` (RFC 3339) are the half-open window `[since, until)`.
    Range {
        first_seq: u64,
        last_seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
    },
    /// The messages a search query found for a principal: authenticity only.
    Filter { query: String, principal: String },
}

impl Selection {
    /// The selection in words: the audit record of an export and `index.xml` say this.
    pub fn describe(&self) -> String {
        match self {
            Selection::Range {
                first_seq,
                last_seq,
                since,
                until,
            } => {
                let mut text = format!("range {first_seq}..={last_seq}");
                if let Some(since) = since {
                    text.push_str(&format!(" since {since}"));
                }
                if let Some(until) = until {
                    text.push_str(&format!(" until {until}"));
                }
                text
            }
            Selection::Filter { query, principal } => format!("query {query:?} as {principal}"),
        }
    }
}

/// What `index.xml` of a bundle with this manifest says.
pub fn index_meta(manifest: &Manifest) -> crate::gdpdu::IndexMeta {
    crate::gdpdu::IndexMeta {
        origin: manifest.origin.clone(),
        location: manifest.location.clone(),
        query: manifest.selection.describe(),
        rows: manifest.message_count,
    }
}

/// `proofs/<seq>.json`: a leaf and its RFC 6962 inclusion proof in the checkpoint's tree.
/// Hashes and the leaf are standard base64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Record sequence number.
    pub seq: u64,
    /// RFC 6962 leaf index: `seq - 1`.
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// The leaf bytes: SHA-256 of `0x00 ‖ leaf` is the leaf hash.
    pub leaf: String,
    /// SHA-256 of `0x00 ‖ leaf`.
    pub leaf_hash: String,
    /// The audit path, bottom-up.
    pub proof: Vec<String>,
}

/// `range/proof.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeProof {
    /// First seq of the range.
    pub first_seq: u64,
    /// Last seq of the range.
    pub last_seq: u64,
    /// Tree size the proof is for.
    pub tree_size: u64,
    /// Hashes of the subtrees outside the range, left to right
    /// (`archive_verify::merkle::range_proof_subtrees`), base64.
    pub subtrees: Vec<String>,
    /// For a time range: the record just before the range, proving it is older than `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<InclusionProof>,
    /// For a time range: the record just after the range, proving it is not older than `until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<InclusionProof>,
}

/// One line of `range/leaves.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeLeaf {
    /// Record sequence number.
    pub seq: u64,
    /// The leaf bytes, base64.
    pub leaf: String,
}

/// `consistency/<old>.json`: RFC 6962 consistency proof from an older tree size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub old_size: u64,
    /// The bundle's tree size.
    pub tree_size: u64,
    /// The proof hashes, base64.
    pub proof: Vec<String>,
}

/// `README.txt` of a bundle with this manifest: the same for every bundle of the same
/// manifest, so the verifier can tell whether someone edited the instructions.
pub fn readme(manifest: &Manifest) -> String {
    let scope_en;
    let scope_de;
    match &manifest.selection {
        Selection::Range {
            first_seq, last_seq, ..
        } => {
            let (first_seq, last_seq) = manifest.span().unwrap_or((*first_seq, *last_seq));
            scope_en = format!(
                "every record from seq {first_seq} to seq {last_seq}; a missing or added record is detected"
            );
            scope_de = format!("alle Datensätze von Nr. {first_seq} bis Nr. {last_seq}; ein fehlender oder hinzugefügter Datensatz wird erkannt");
        }
        Selection::Filter { .. } => {
            scope_en = "the messages a search found; each is proven authentic, but that the search found every matching message cannot be proven offline".to_string();
            scope_de = "die von einer Suche gefundenen Nachrichten; jede ist als echt nachgewiesen, die Vollständigkeit der Suche ist offline nicht beweisbar".to_string();
        }
    }
    let (volume_en, volume_de) = match &manifest.volume {
        None => (String::new(), String::new()),
        Some(v) => (
            format!(
                "\nThis is volume {i} of {n} of the export (records {a} to {b}). Each volume is checked on \
its own, but the export is whole only with all {n}: check the file that holds them all, or
give the volumes to verify-bundle together,
      mailvault verify-bundle VOLUME1.zip VOLUME2.zip ... --key 'PUBLIC KEY'
and it checks that none is missing and that they belong together.\n",
                i = v.index,
                n = v.count,
                a = v.first_seq,
                b = v.last_seq
            ),
            format!(
                "\nDies ist Teil {i} von {n} des Exports (Datensätze {a} bis {b}). Jeder Teil ist für sich \
prüfbar, vollständig ist der Export aber nur mit allen {n} Teilen: die Datei prüfen, die alle
enthält, oder alle Teile zusammen,
      mailvault verify-bundle TEIL1.zip TEIL2.zip ... --key 'ÖFFENTLICHER SCHLÜSSEL'
das prüft auch, dass keiner fehlt und alle zusammengehören.\n",
                i = v.index,
                n = v.count,
                a = v.first_seq,
                b = v.last_seq
            ),
        ),
    };
    format!(
        "mailvault export bundle ({format})
Archive: {origin}
Exported: {at} by {by}
Messages: {count}; checkpoint tree size {size}

=== English ===
This bundle holds {scope_en}.
{volume_en}
How to verify:
1. Obtain the archive's public key from its operator by a channel you trust, e.g. in person
   or in a signed letter. It looks like: {origin}+<8 hex digits>+<base64>
2. With mailvault (no archive needed, no network):
      mailvault verify-bundle THIS.zip --key 'PUBLIC KEY'
   Exit status 0: valid; 1: invalid (the output names what); 2: the file could not be read.
   With an older checkpoint you kept from this archive, add --checkpoint OLD.txt to check
   that the archive's history was only ever extended. If the bundle has anchors/ (witness
   cosignatures), add --witness 'WITNESS KEY' for each witness key its operator gave you;
   for RFC 3161 time-stamps (anchors/*/timestamp-*.tsr), add --tsa-cert TSA.pem with the
   certificate the time-stamping authority publishes (or check each with
   openssl ts -verify -data anchors/N/checkpoint.txt -in anchors/N/timestamp-X.tsr -CAfile TSA.pem).
3. Without mailvault (docs/FORMAT.md of mailvault describes every byte):
   a. checkpoint.txt is a C2SP signed note: verify its Ed25519 signature with the key.
   b. For a message messages/N.eml: proofs/N.json holds the leaf (base64). Its bytes 18 to 49,
      counted from 0 (after version, kind, seq and time), are the BLAKE3 hash of the .eml file; SHA-256 of
      0x00 || leaf is the leaf hash; the RFC 6962 audit path in \"proof\" leads from it to
      the root hash in checkpoint.txt.
   c. messages.csv lists every message with its SHA-256, for checking with any SHA-256 tool;
      index.xml describes messages.csv per the GDPdU description standard
      (gdpdu-01-09-2004.dtd).

=== Deutsch ===
Dieses Paket enthält {scope_de}.
{volume_de}
Prüfung:
1. Den öffentlichen Schlüssel des Archivs auf einem vertrauenswürdigen Weg vom Betreiber
   beschaffen (persönlich, per unterschriebenem Schreiben). Form: {origin}+<8 Hex-Ziffern>+<Base64>
2. Mit mailvault (ohne Archiv, ohne Netz):
      mailvault verify-bundle DIESES.zip --key 'ÖFFENTLICHER SCHLÜSSEL'
   Exit-Status 0: gültig; 1: ungültig (die Ausgabe nennt den Grund); 2: Datei nicht lesbar.
   Mit einem früher erhaltenen Checkpoint dieses Archivs zusätzlich --checkpoint ALT.txt:
   prüft, dass die Historie des Archivs nur fortgeschrieben wurde. Enthält das Paket anchors/
   (Gegensignaturen von Zeugen, \"witnesses\"), zusätzlich --witness 'ZEUGEN-SCHLÜSSEL' für
   jeden Schlüssel, den der Betreiber des Zeugen bekanntgegeben hat; für RFC-3161-Zeitstempel
   (anchors/*/timestamp-*.tsr) zusätzlich --tsa-cert TSA.pem mit dem Zertifikat, das der
   Zeitstempeldienst veröffentlicht (oder jeden einzeln mit openssl ts -verify -data
   anchors/N/checkpoint.txt -in anchors/N/timestamp-X.tsr -CAfile TSA.pem).
3. Ohne mailvault (docs/FORMAT.md von mailvault beschreibt jedes Byte):
   a. checkpoint.txt ist eine C2SP \"signed note\": Ed25519-Signatur mit dem Schlüssel prüfen.
   b. Zu messages/N.eml enthält proofs/N.json das Blatt (leaf). Dessen Bytes 18 bis 49 (ab 0
      gezählt) sind der BLAKE3-Hash der .eml-Datei; SHA-256 von 0x00 || leaf ist der Blatt-Hash; der
      RFC-6962-Prüfpfad in \"proof\" führt von ihm zum Wurzel-Hash in checkpoint.txt.
   c. messages.csv listet jede Nachricht mit SHA-256 (prüfbar mit jedem SHA-256-Werkzeug);
      index.xml beschreibt messages.csv nach dem GDPdU-Beschreibungsstandard
      (gdpdu-01-09-2004.dtd).
",
        format = manifest.format,
        origin = manifest.origin,
        at = manifest.exported_at,
        by = manifest.exported_by,
        count = manifest.message_count,
        size = manifest.tree_size,
    )
}
