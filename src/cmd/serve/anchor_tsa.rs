//! `[[anchoring.tsa]]`: RFC 3161 time-stamps of checkpoints. Each anchoring round asks every
//! configured time-stamping authority to stamp the newest checkpoint (the SHA-256 of its note)
//! unless that TSA's token for it is already on disk; the answer is checked against the
//! configured certificate *before* it is kept, then written once as
//! `<data>/anchors/<size>/timestamp-<name>.tsr` beside `checkpoint.txt` (docs/FORMAT.md).
//! A TSA that fails is logged and counted, and asked again next round.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use archive_core::store::Layout;
use archive_verify::timestamp::{self, PinnedCertificates, MAX_RESPONSE_BYTES};

use crate::config::{AnchoringSettings, TsaSettings};

/// A TSA that has not answered within this long is tried again next round.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Tokens stored, by TSA.
pub const TOKENS: &str = "mailvault_anchor_tsa_tokens_total";
/// Rounds in which a TSA gave no token that verified, by TSA.
pub const FAILURES: &str = "mailvault_anchor_tsa_failures_total";
/// Unix time of the last token stored, by TSA.
pub const LAST_SUCCESS: &str = "mailvault_anchor_tsa_last_success_timestamp_seconds";

/// The directory of the anchors of checkpoint `size` (shared with witness cosignatures).
pub fn anchor_dir(layout: &Layout, size: u64) -> PathBuf {
    layout.dir.join("anchors").join(size.to_string())
}

/// The pins each TSA's tokens are checked against; an unreadable certificate names its key.
pub fn load_pins(settings: &AnchoringSettings) -> anyhow::Result<Vec<PinnedCertificates>> {
    settings
        .tsa
        .iter()
        .enumerate()
        .map(|(i, tsa)| {
            let pem = std::fs::read(&tsa.certificate).with_context(|| {
                format!(
                    "anchoring.tsa[{i}].certificate: reading {}",
                    tsa.certificate.display()
                )
            })?;
            let mut pins = PinnedCertificates::none();
            pins.add_pem(&pem)
                .with_context(|| format!("anchoring.tsa[{i}].certificate: {}", tsa.certificate.display()))?;
            Ok(pins)
        })
        .collect()
}

/// Has every configured TSA stamp checkpoint `size` (its signed `note`) that has not yet;
/// the error names each TSA that failed (the others' tokens are kept).
pub fn timestamp_checkpoint(
    settings: &AnchoringSettings,
    layout: &Layout,
    size: u64,
    note: &str,
) -> anyhow::Result<()> {
    let pins = load_pins(settings)?;
    let dir = anchor_dir(layout, size);
    let mut failed = Vec::new();
    for (tsa, pins) in settings.tsa.iter().zip(&pins) {
        let file = dir.join(format!("timestamp-{}.tsr", tsa.name));
        if file.exists() {
            continue;
        }
        match stamp(tsa, pins, note).and_then(|token| store(&dir, note, &file, &token)) {
            Ok(()) => {
                tracing::info!(tsa = %tsa.name, tree_size = size, file = %file.display(), "checkpoint time-stamped");
                metrics::counter!(TOKENS, "tsa" => tsa.name.clone()).increment(1);
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                metrics::gauge!(LAST_SUCCESS, "tsa" => tsa.name.clone()).set(now.as_secs_f64());
            }
            Err(e) => {
                metrics::counter!(FAILURES, "tsa" => tsa.name.clone()).increment(1);
                failed.push(format!("{}: {e:#}", tsa.name));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", failed.join("; "))
    }
}

/// One request to `tsa`: the token (a DER TimeStampResp), verified against `pins`.
fn stamp(tsa: &TsaSettings, pins: &PinnedCertificates, note: &str) -> anyhow::Result<Vec<u8>> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).context("no random nonce")?;
    let nonce = u64::from_be_bytes(nonce);
    let query = timestamp::timestamp_request(note.as_bytes(), nonce)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut response = agent
        .post(&tsa.url)
        .header("Content-Type", "application/timestamp-query")
        .send(&query[..])
        .with_context(|| format!("POST {}", tsa.url))?;
    let status = response.status();
    // One byte past the limit tells an oversized answer from one that fits exactly.
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_vec()
        .with_context(|| format!("reading the answer of {}", tsa.url))?;
    if !status.is_success() {
        anyhow::bail!("{} answered HTTP {status}", tsa.url);
    }
    timestamp::verify_response(&body, note.as_bytes(), Some(nonce), pins)
        .with_context(|| format!("the answer of {} does not verify", tsa.url))?;
    Ok(body)
}

/// Writes `checkpoint.txt` (if not there yet; it must then hold `note`) and the token, each
/// write-once.
fn store(dir: &Path, note: &str, token_file: &Path, token: &[u8]) -> anyhow::Result<()> {
    create_dir_synced(dir)?;
    let checkpoint = dir.join("checkpoint.txt");
    write_once(&checkpoint, note.as_bytes())?;
    let kept = std::fs::read(&checkpoint).with_context(|| format!("reading {}", checkpoint.display()))?;
    if kept != note.as_bytes() {
        anyhow::bail!(
            "{} holds another note than the log's checkpoint of this size; left alone",
            checkpoint.display()
        );
    }
    write_once(token_file, token)
}

/// Creates `dir` and its parent `anchors/`, each made durable in its parent.
fn create_dir_synced(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let anchors = dir.parent().context("anchor directory without parent")?;
    for d in [anchors, dir] {
        if !d.is_dir() {
            match std::fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", d.display())),
            }
            sync_dir(d.parent().context("no parent")?)?;
        }
    }
    Ok(())
}

/// A file written whole or not at all, and never replaced: a temporary file, fsynced, then
/// hard-linked to its name (which fails, leaving the existing file alone, if the name exists).
/// The lead switches this to archive-core's shared anchors writer at merge.
fn write_once(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let dir = path.parent().context("no parent")?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    drop(tmp);
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}
