//! The anchors part of `mailvault verify`: every `<data>/anchors/<size>/checkpoint.txt` that
//! has time-stamp tokens must be signed by the log's key for tree size `<size>` (and is then
//! pinned: the log must still contain that tree), and every `timestamp-<tsa>.tsr` beside it
//! must verify for those exact bytes against the TSA's configured certificate.

use std::path::{Path, PathBuf};

use anyhow::Context;
use archive_core::store::Layout;
use archive_verify::note::{SignedCheckpoint, VerifierKey};
use archive_verify::timestamp::{self, PinnedCertificates};

use crate::config::Config;

/// The time-stamped checkpoints of a store, read but not yet checked against the log.
pub struct Anchors {
    /// The anchored checkpoints, to pin in the log verification.
    pub checkpoints: Vec<SignedCheckpoint>,
    tokens: Vec<Token>,
}

struct Token {
    file: PathBuf,
    tsa: String,
    size: u64,
    note: Vec<u8>,
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
            let pins = crate::cmd::serve::anchor_tsa::load_pins(&config.anchoring)?;
            by_name.extend(config.anchoring.tsa.into_iter().map(|t| t.name).zip(pins));
        }
        let mut fallback = PinnedCertificates::none();
        for path in extra {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            fallback
                .add_pem(&pem)
                .with_context(|| format!("--tsa-cert {}", path.display()))?;
        }
        Ok(TsaPins { by_name, fallback })
    }

    fn for_tsa(&self, name: &str) -> &PinnedCertificates {
        self.by_name
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&self.fallback, |(_, pins)| pins)
    }
}

impl Anchors {
    /// Reads the anchor directories that hold tokens. `Err(Some(reason))`: a checkpoint.txt
    /// that is not the log's signed checkpoint of its directory's size (tampering, named).
    pub fn read(layout: &Layout, key: &VerifierKey) -> anyhow::Result<Result<Anchors, String>> {
        let mut anchors = Anchors {
            checkpoints: Vec::new(),
            tokens: Vec::new(),
        };
        let root = layout.dir.join("anchors");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(Ok(anchors));
        };
        let mut dirs: Vec<(u64, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", root.display()))?;
            if let Some(size) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                dirs.push((size, entry.path()));
            }
        }
        dirs.sort();
        for (size, dir) in dirs {
            let mut tokens: Vec<(String, PathBuf)> = Vec::new();
            for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
                let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(tsa) = name
                    .strip_prefix("timestamp-")
                    .and_then(|n| n.strip_suffix(".tsr"))
                {
                    tokens.push((tsa.to_string(), entry.path()));
                }
            }
            if tokens.is_empty() {
                continue;
            }
            tokens.sort();
            let file = dir.join("checkpoint.txt");
            let note = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let signed = match std::str::from_utf8(&note)
                .map_err(|e| e.to_string())
                .and_then(|text| key.verify_note(text).map_err(|e| e.to_string()))
            {
                Ok(signed) if signed.checkpoint.size == size => signed,
                Ok(signed) => {
                    return Ok(Err(format!(
                        "{} is the checkpoint of tree size {}, not {size}",
                        file.display(),
                        signed.checkpoint.size
                    )))
                }
                Err(e) => {
                    return Ok(Err(format!(
                        "{} is not signed by this log's key {} ({e})",
                        file.display(),
                        key.encode()
                    )))
                }
            };
            anchors.checkpoints.push(signed);
            for (tsa, file) in tokens {
                anchors.tokens.push(Token {
                    file,
                    tsa,
                    size,
                    note: note.clone(),
                });
            }
        }
        Ok(Ok(anchors))
    }

    /// Checks every token; prints one line per token. `Err(reason)`: the first token that
    /// does not verify, named.
    pub fn check_tokens(&self, pins: &TsaPins) -> anyhow::Result<Result<(), String>> {
        for token in &self.tokens {
            let bytes = read_bounded(&token.file)?;
            let pins = pins.for_tsa(&token.tsa);
            match timestamp::check_timestamp_file(&bytes, &token.note, pins) {
                Ok(verdict) => println!(
                    "{}: records 1..={} time-stamped by {} at {} ({})",
                    token.file.display(),
                    token.size,
                    token.tsa,
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
                        token.file.display()
                    )))
                }
            }
        }
        Ok(Ok(()))
    }
}

/// A token file, refusing one larger than any real token.
fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(timestamp::MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}
