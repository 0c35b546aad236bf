//! A client of the C2SP tlog-witness protocol (<https://c2sp.org/tlog-witness>): each round,
//! the newest checkpoint goes to every configured witness that has not cosigned it yet, as
//! `POST <url>/add-checkpoint` with `old <size>`, the consistency proof from that size and the
//! signed note. A 200 answer's `cosignature/v1` lines are checked against the witness's
//! configured key and stored write-once in `<data>/anchors/<size>/` (archive_core::anchors).
//!
//! The size a witness cosigned last is the newest `cosignature-<name>.txt` in the anchors. A
//! 409 answer states the witness's size: we ask once more from there. A witness that has seen
//! a larger tree than ours, or a tree ours does not extend, has caught the archive's history
//! being rolled back or forked: that is logged at ERROR, counted
//! (`mailvault_witness_rollbacks_total`), recorded for `mailvault status`
//! (`<data>/anchoring-alarms/`), and the witness is asked again only after a back-off. Other
//! failures (refusals, server errors, timeouts) are logged and retried with back-off.
//!
//! Every answer is hostile: the body is read up to [`BODY_MAX`] bytes, requests time out, and
//! nothing the witness says is stored unless it verifies.

use std::time::{Duration, Instant};

use anyhow::Context;
use archive_core::anchors::{self, WitnessAlarm};
use archive_core::log::checkpoint::SignedCheckpoint;
use archive_core::Store;
use archive_verify::cosignature::WitnessKey;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::config::{AnchoringSettings, WitnessSettings};

/// Largest answer body read from a witness.
const BODY_MAX: u64 = 64 << 10;
/// Cosignature lines looked at in one answer.
const MAX_LINES: usize = 64;
/// The longest back-off, in rounds (doubling from one round per failure in a row).
const MAX_BACKOFF_ROUNDS: u32 = 64;

/// Counter: cosignatures stored, labelled `witness`.
pub const COSIGNATURES: &str = "mailvault_witness_cosignatures_total";
/// Counter: failed requests (refused, unreachable, malformed answers), labelled `witness`.
pub const FAILURES: &str = "mailvault_witness_failures_total";
/// Counter: rollbacks or forks a witness caught, labelled `witness`.
pub const ROLLBACKS: &str = "mailvault_witness_rollbacks_total";
/// Gauge: 1 while a witness's rollback alarm stands, labelled `witness`.
pub const ALARM: &str = "mailvault_witness_alarm";

/// Describes the metrics above.
pub fn describe() {
    metrics::describe_counter!(
        COSIGNATURES,
        "Witness cosignatures of checkpoints stored, by witness."
    );
    metrics::describe_counter!(
        FAILURES,
        "Requests to a witness that failed (refused, unreachable, a malformed or unverifiable answer), by witness."
    );
    metrics::describe_counter!(
        ROLLBACKS,
        "Times a witness showed it had seen a larger or different tree than the log has now: a rollback or fork of the archive's history."
    );
    metrics::describe_gauge!(
        ALARM,
        "1 while a witness's rollback/fork alarm stands (cleared when it cosigns again), by witness."
    );
}

/// One configured witness and what this server knows about talking to it.
pub struct Witness {
    name: String,
    endpoint: String,
    key: WitnessKey,
    agent: ureq::Agent,
    interval: Duration,
    /// Failures in a row (the back-off doubles with each).
    failures: u32,
    /// No request before this.
    retry_at: Option<Instant>,
}

/// What a witness answered one request.
enum Answer {
    /// 200: the cosignature lines that verified.
    Cosigned(String),
    /// 409: the size of the newest checkpoint it cosigned for our log.
    Conflict(u64),
    /// 422: the consistency proof does not verify against the tree it has.
    ProofRejected,
    /// Anything else.
    Failed(String),
}

impl Witness {
    /// A witness as configured (the settings were validated at start-up).
    pub fn new(
        w: &WitnessSettings,
        settings: &AnchoringSettings,
        interval: Duration,
    ) -> anyhow::Result<Witness> {
        let key = WitnessKey::parse(&w.key).with_context(|| format!("anchoring.witnesses.{}.key", w.name))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(settings.witness_timeout_secs)))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("mailvault/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        metrics::gauge!(ALARM, "witness" => w.name.clone()).set(0.0);
        Ok(Witness {
            name: w.name.clone(),
            endpoint: format!("{}/add-checkpoint", w.url.trim_end_matches('/')),
            key,
            agent,
            interval,
            failures: 0,
            retry_at: None,
        })
    }

    /// The witness's verifier key string.
    pub fn key_string(&self) -> String {
        self.key.encode()
    }

    /// One round: asks the witness to cosign `signed` unless it has, or is backed off.
    pub fn round(&mut self, store: &Store, signed: &SignedCheckpoint) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match self.cosign(store, signed) {
            Ok(Outcome::AlreadyCosigned) => {}
            Ok(Outcome::Cosigned { time }) => {
                tracing::info!(
                    witness = %self.name,
                    tree_size = signed.checkpoint.size,
                    cosigned_at = time,
                    "witness cosigned the checkpoint"
                );
                metrics::counter!(COSIGNATURES, "witness" => self.name.clone()).increment(1);
                self.failures = 0;
                self.retry_at = None;
                if anchors::clear_alarm(store.layout(), &self.name).unwrap_or(false) {
                    tracing::warn!(witness = %self.name, "witness cosigns again: its rollback alarm is cleared");
                }
                metrics::gauge!(ALARM, "witness" => self.name.clone()).set(0.0);
            }
            Ok(Outcome::Rollback(alarm)) => {
                // Recorded before it is logged: whoever reads the log line finds the alarm in
                // `status` and the metrics.
                let recorded = anchors::record_alarm(store.layout(), &alarm);
                metrics::counter!(ROLLBACKS, "witness" => self.name.clone()).increment(1);
                metrics::gauge!(ALARM, "witness" => self.name.clone()).set(1.0);
                tracing::error!(
                    witness = %self.name,
                    kind = %alarm.kind,
                    witness_size = alarm.witness_size,
                    log_size = alarm.log_size,
                    detail = %alarm.detail,
                    "ROLLBACK ALARM: a witness has seen a larger or different history of this archive than \
                     the log holds now: the store was rolled back or replaced (docs/OPERATIONS.md §Witnesses)"
                );
                if let Err(e) = recorded {
                    tracing::error!(witness = %self.name, error = %e, "the rollback alarm could not be recorded for `mailvault status`");
                }
                self.back_off();
            }
            Err(e) => {
                tracing::error!(
                    witness = %self.name,
                    tree_size = signed.checkpoint.size,
                    error = %format!("{e:#}"),
                    "witness did not cosign the checkpoint (asked again after a back-off)"
                );
                metrics::counter!(FAILURES, "witness" => self.name.clone()).increment(1);
                self.back_off();
            }
        }
    }

    fn back_off(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let rounds = 1u32
            << self
                .failures
                .saturating_sub(1)
                .min(MAX_BACKOFF_ROUNDS.trailing_zeros());
        self.retry_at = Some(Instant::now() + self.interval.saturating_mul(rounds.saturating_sub(1)));
    }

    /// The protocol for one checkpoint.
    fn cosign(&self, store: &Store, signed: &SignedCheckpoint) -> anyhow::Result<Outcome> {
        let layout = store.layout();
        let size = signed.checkpoint.size;
        let file = anchors::cosignature_file(&self.name);
        let ours = anchors::newest_with(layout, &file)?;
        if let Some(last) = ours {
            if last == size {
                return Ok(Outcome::AlreadyCosigned);
            }
            if last > size {
                return Ok(Outcome::Rollback(self.alarm(
                    "rollback",
                    last,
                    size,
                    format!("this data directory holds the witness's cosignature of tree size {last}, but the log has only {size} records"),
                )));
            }
        }
        let old = ours.unwrap_or(0);
        let answer = self.add_checkpoint(store, old, signed)?;
        let answer = match answer {
            Answer::Conflict(theirs) => {
                if let Some(alarm) = self.conflict_alarm(theirs, old, size) {
                    return Ok(Outcome::Rollback(alarm));
                }
                tracing::info!(witness = %self.name, ours = old, theirs, "witness cosigned another size last; asking from its size");
                match self.add_checkpoint(store, theirs, signed)? {
                    Answer::Conflict(again) => match self.conflict_alarm(again, theirs, size) {
                        Some(alarm) => return Ok(Outcome::Rollback(alarm)),
                        None => Answer::Conflict(again),
                    },
                    Answer::ProofRejected => {
                        return Ok(Outcome::Rollback(self.alarm(
                            "fork",
                            theirs,
                            size,
                            format!(
                                "the witness's tree of size {theirs} is not a prefix of this log's tree of size {size}: \
                                 it rejected our consistency proof from its size"
                            ),
                        )))
                    }
                    other => other,
                }
            }
            other => other,
        };
        match answer {
            Answer::Cosigned(lines) => {
                let time = self.store(store, signed, &lines)?;
                Ok(Outcome::Cosigned { time })
            }
            Answer::Conflict(theirs) => anyhow::bail!("409 Conflict again (its size {theirs})"),
            Answer::ProofRejected => anyhow::bail!(
                "422: it rejected the consistency proof from size {old} (our record of what it cosigned)"
            ),
            Answer::Failed(why) => Err(anyhow::anyhow!(why)),
        }
    }

    /// What a 409 stating the witness's size `theirs`, to a request from `asked_from`, shows
    /// about a log of `size` records: a rollback (the witness saw more), a fork (it holds
    /// another tree of the size we asked from), or nothing yet (ask again from its size).
    fn conflict_alarm(&self, theirs: u64, asked_from: u64, size: u64) -> Option<WitnessAlarm> {
        if theirs > size {
            Some(self.alarm(
                "rollback",
                theirs,
                size,
                format!(
                    "the witness cosigned tree size {theirs} of this log; the log has only {size} records"
                ),
            ))
        } else if theirs == asked_from {
            // Same size, other root: the witness holds another tree of that size.
            Some(self.alarm(
                "fork",
                theirs,
                size,
                format!("the witness holds a different tree of size {theirs} than this log"),
            ))
        } else {
            None
        }
    }

    fn alarm(&self, kind: &str, witness_size: u64, log_size: u64, detail: String) -> WitnessAlarm {
        WitnessAlarm {
            witness: self.name.clone(),
            kind: kind.into(),
            witness_size,
            log_size,
            detected_at: jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            detail,
        }
    }

    /// One `add-checkpoint` request from tree size `old`.
    fn add_checkpoint(&self, store: &Store, old: u64, signed: &SignedCheckpoint) -> anyhow::Result<Answer> {
        let size = signed.checkpoint.size;
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            store
                .consistency_proof(old, size)
                .with_context(|| format!("consistency proof from {old} to {size}"))?
        };
        let mut body = format!("old {old}\n");
        for hash in &proof {
            body.push_str(&B64.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&signed.note);
        let mut response = match self
            .agent
            .post(&self.endpoint)
            .content_type("text/plain; charset=utf-8")
            .send(body.as_bytes())
        {
            Ok(r) => r,
            Err(e) => return Ok(Answer::Failed(format!("POST {}: {e}", self.endpoint))),
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(BODY_MAX)
            .read_to_string()
            .unwrap_or_default();
        Ok(match status {
            200 => match self.verified_lines(&signed.note, &text) {
                Ok(lines) => Answer::Cosigned(lines),
                Err(e) => Answer::Failed(format!("200 answer without a valid cosignature: {e}")),
            },
            409 => match text.trim_end_matches('\n').parse::<u64>() {
                Ok(theirs) => Answer::Conflict(theirs),
                Err(_) => Answer::Failed(format!("409 without a tree size: {:?}", excerpt(&text))),
            },
            422 => Answer::ProofRejected,
            _ => Answer::Failed(format!("HTTP {status}: {:?}", excerpt(&text))),
        })
    }

    /// The lines of `answer` that are this witness's valid cosignatures of `note` (others,
    /// from keys we do not know, are ignored as the protocol says).
    fn verified_lines(&self, note: &str, answer: &str) -> anyhow::Result<String> {
        let mut kept = String::new();
        for line in answer.lines().take(MAX_LINES) {
            let ours = line
                .strip_prefix("\u{2014} ")
                .and_then(|rest| rest.split_once(' '))
                .is_some_and(|(name, _)| name == self.key.name);
            if !ours {
                continue;
            }
            let cosigned = format!("{note}{line}\n");
            self.key
                .verify_cosignature(&cosigned)
                .with_context(|| format!("key {}", self.key.encode()))?;
            kept.push_str(line);
            kept.push('\n');
        }
        anyhow::ensure!(
            !kept.is_empty(),
            "no line by its configured key {} in {:?}",
            self.key.encode(),
            excerpt(answer)
        );
        Ok(kept)
    }

    /// Stores the checkpoint and the verified cosignature lines; returns the cosignature time.
    fn store(&self, store: &Store, signed: &SignedCheckpoint, lines: &str) -> anyhow::Result<u64> {
        let layout = store.layout();
        let size = signed.checkpoint.size;
        anchors::write_checkpoint(layout, size, &signed.note)?;
        anchors::write_anchor(
            layout,
            size,
            &anchors::cosignature_file(&self.name),
            lines.as_bytes(),
        )?;
        let time = self
            .key
            .verify_cosignature(&format!("{}{lines}", signed.note))?
            .time;
        Ok(time)
    }
}

/// What one round did.
enum Outcome {
    /// The witness's newest cosignature here is of this checkpoint.
    AlreadyCosigned,
    /// A new cosignature was stored.
    Cosigned { time: u64 },
    /// The witness caught a rollback or fork.
    Rollback(WitnessAlarm),
}

/// The start of a witness's answer, for logs.
fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}
