//! The anchors part of `mailvault verify`: every `<data>/anchors/<size>/checkpoint.txt` must
//! be signed by the log's key for tree size `<size>` (and is then pinned: the log must still
//! contain that tree); every `cosignature-<witness>.txt` beside it must verify for that note
//! with a witness key (pinned with `--witness`, else those in `anchors/witness-keys.txt`), and
//! every `timestamp-<tsa>.tsr` for those exact bytes with the TSA's certificate.

use std::path::{Path, PathBuf};

use anyhow::Context;
use archive_core::anchors;
use archive_core::store::Layout;
use archive_verify::cosignature::WitnessKey;
use archive_verify::note::{SignedCheckpoint, VerifierKey};
use archive_verify::timestamp::{self, PinnedCertificates};

use crate::config::Config;

/// The anchors of a store, checked.
pub struct Anchors {
    /// The anchored checkpoints (each must be a tree the log has: checked as pinned ones).
    pub checkpoints: Vec<SignedCheckpoint>,
    /// What was found, one line each.
    pub lines: Vec<String>,
}

/// The certificates of `--tsa-cert` PEM files.
pub fn pins_from_files(paths: &[PathBuf]) -> anyhow::Result<PinnedCertificates> {
    let mut pins = PinnedCertificates::none();
    for path in paths {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        pins.add_pem(&pem)
            .with_context(|| format!("--tsa-cert {}", path.display()))?;
    }
    Ok(pins)
}

/// Where the pins come from: `[[anchoring.tsa]]` of a configuration file (each TSA's own
/// certificate) and `--tsa-cert` files (for any TSA the configuration does not name).
pub struct TsaPins {
    by_name: Vec<(String, PinnedCertificates)>,
    fallback: PinnedCertificates,
}

impl TsaPins {
    /// Reads the configuration's TSA certificates and the extra PEM files.
    pub fn load(config: Option<&Path>, extra: &[PathBuf]) -> anyhow::Result<TsaPins> {
        let mut by_name = Vec::new();
        if let Some(path) = config {
            let config = Config::load(path)?;
            let pins = crate::cmd::serve::anchoring::tsa::load_pins(&config.anchoring)?;
            by_name.extend(config.anchoring.tsa.into_iter().map(|t| t.name).zip(pins));
        }
        Ok(TsaPins {
            by_name,
            fallback: pins_from_files(extra)?,
        })
    }

    fn for_tsa(&self, name: &str) -> &PinnedCertificates {
        self.by_name
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&self.fallback, |(_, pins)| pins)
    }
}

/// Checks every anchor directory. `Ok(Err(reason))`: tampering, naming the file.
pub fn check_anchors(
    layout: &Layout,
    key: &VerifierKey,
    witnesses: &[WitnessKey],
    tsa_pins: &TsaPins,
) -> anyhow::Result<Result<Anchors, String>> {
    let recorded;
    let (keys, source) = if witnesses.is_empty() {
        recorded = anchors::witness_keys(layout)?
            .iter()
            .map(|k| WitnessKey::parse(k))
            .collect::<Result<Vec<_>, _>>()
            .context("anchors/witness-keys.txt")?;
        (&recorded[..], "recorded in anchors/witness-keys.txt, not pinned")
    } else {
        (witnesses, "pinned")
    };
    let mut found = Anchors {
        checkpoints: Vec::new(),
        lines: Vec::new(),
    };
    for size in anchors::anchored_sizes(layout)? {
        let at = |file: &str| format!("anchors/{size}/{file}");
        let note_bytes = anchors::read_anchor(layout, size, anchors::CHECKPOINT_FILE)?;
        let note = String::from_utf8_lossy(&note_bytes).into_owned();
        let signed = match key.verify_note(&note) {
            Ok(s) if s.checkpoint.size == size => s,
            Ok(s) => {
                return Ok(Err(format!(
                    "{} is the checkpoint of tree size {}, not {size}",
                    at(anchors::CHECKPOINT_FILE),
                    s.checkpoint.size
                )))
            }
            Err(e) => {
                return Ok(Err(format!(
                    "{} is not signed by this log's key {} ({e})",
                    at(anchors::CHECKPOINT_FILE),
                    key.encode()
                )))
            }
        };
        found.checkpoints.push(signed);
        for file in anchors::anchor_files(layout, size)? {
            let line = if let Some(tsa) = file
                .strip_prefix("timestamp-")
                .and_then(|n| n.strip_suffix(".tsr"))
            {
                let token = anchors::read_anchor(layout, size, &file)?;
                match timestamp::check_timestamp_file(&token, &note_bytes, tsa_pins.for_tsa(tsa)) {
                    Ok(verdict) => format!(
                        "{}: records 1..={size} time-stamped by {tsa} at {} ({})",
                        at(&file),
                        verdict.gen_time,
                        match &verdict.pinned_by {
                            Some(pin) => format!("pinned: {pin}"),
                            None => format!(
                                "NOT PINNED: signed by {}; no certificate configured for this TSA",
                                verdict.signer
                            ),
                        }
                    ),
                    Err(e) => {
                        return Ok(Err(format!(
                            "time-stamp token {} does not verify: {e}",
                            at(&file)
                        )))
                    }
                }
            } else if file.starts_with("cosignature-") {
                match check_cosignatures(layout, size, &file, &note, keys, source)? {
                    Ok(lines) => lines,
                    Err(problem) => return Ok(Err(problem)),
                }
            } else {
                continue;
            };
            found.lines.push(line);
        }
    }
    Ok(Ok(found))
}

/// The cosignature lines of one `cosignature-<witness>.txt`, each by a known witness key.
fn check_cosignatures(
    layout: &Layout,
    size: u64,
    file: &str,
    note: &str,
    keys: &[WitnessKey],
    source: &str,
) -> anyhow::Result<Result<String, String>> {
    let at = format!("anchors/{size}/{file}");
    let text = anchors::read_anchor(layout, size, file)?;
    let text = String::from_utf8_lossy(&text);
    if text.lines().next().is_none() {
        return Ok(Err(format!("{at}: empty")));
    }
    let mut found = Vec::new();
    for line in text.lines() {
        let id = line
            .strip_prefix("\u{2014} ")
            .and_then(|r| r.split_once(' '))
            .and_then(|(name, blob)| Some((name, cosignature_key_id(blob)?)));
        let Some(witness) =
            id.and_then(|(name, id)| keys.iter().find(|k| k.name == name && k.key_id() == id))
        else {
            return Ok(Err(format!(
                "{at}: a cosignature by no witness key given ({source}): {line:?}"
            )));
        };
        match witness.verify_cosignature(&format!("{note}{line}\n")) {
            Ok(cosigned) => found.push(format!(
                "anchor of size {size}: cosigned by witness {} at {} (key {source}); the log has this tree",
                witness.name,
                jiff::Timestamp::from_second(i64::try_from(cosigned.time).unwrap_or(i64::MAX))
                    .map_or_else(|_| cosigned.time.to_string(), |t| t.to_string())
            )),
            Err(e) => return Ok(Err(format!("{at}: {e}"))),
        }
    }
    Ok(Ok(found.join("\n")))
}

/// The key ID at the start of a cosignature's base64 blob.
fn cosignature_key_id(blob: &str) -> Option<[u8; 4]> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(blob).ok()?;
    raw.get(..4)?.try_into().ok()
}
