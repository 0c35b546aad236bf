//! `[[anchoring.tsa]]`: RFC 3161 time-stamps of checkpoints. Each anchoring round asks every
//! configured time-stamping authority to stamp the newest checkpoint (the SHA-256 of its note)
//! unless that TSA's token for it is already on disk; the answer is checked against the
//! configured certificate *before* it is kept, then written once as
//! `<data>/anchors/<size>/timestamp-<name>.tsr` beside `checkpoint.txt` (docs/FORMAT.md).
//! A TSA that fails is logged and counted, and asked again next round.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use archive_core::anchors;
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
    let mut failed = Vec::new();
    for (tsa, pins) in settings.tsa.iter().zip(&pins) {
        let name = anchors::timestamp_file(&tsa.name);
        if anchors::anchor_dir(layout, size).join(&name).exists() {
            continue;
        }
        let stored = stamp(tsa, pins, note).and_then(|token| {
            anchors::write_checkpoint(layout, size, note)?;
            anchors::write_anchor(layout, size, &name, &token)?;
            Ok(())
        });
        match stored {
            Ok(()) => {
                tracing::info!(tsa = %tsa.name, tree_size = size, file = %name, "checkpoint time-stamped");
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
