//! The bundle's external anchors (`anchors/<size>/…`): a copy of an earlier (or the same)
//! checkpoint of the archive, and what witnesses and time-stamping authorities said about it.
//! The anchored checkpoint must be signed by the archive's key and be a prefix of the
//! bundle's tree (its `consistency/<size>.json`); each cosignature must verify with a
//! witness key — a pinned one (`--witness`) or, unpinned, one the bundle names in
//! `anchors/witness-keys.txt`; each RFC 3161 time-stamp token must be the TSA's signature over
//! exactly that `checkpoint.txt` (`crate::timestamp`), by a pinned certificate (`--tsa-cert`)
//! or, unpinned and said so, by the certificate it carries.

use std::collections::BTreeMap;

use super::{consistency_file, hashes, read_json, read_small, Bundle, ConsistencyProof, Options, Report};
use crate::bundle::{is_anchor_file, ANCHORS_DIR, MAX_ANCHORS, WITNESS_KEYS};
use crate::cosignature::WitnessKey;
use crate::merkle::{verify_consistency, Hash};
use crate::note::{Checkpoint, VerifierKey};

/// Files looked at in one anchor directory.
const MAX_FILES: usize = 64;
/// Witness keys read from the bundle.
const MAX_KEYS: usize = 64;

/// What one anchor directory holds.
#[derive(Default)]
struct Anchor {
    files: Vec<String>,
}

/// Checks every `anchors/` entry; `names` are the bundle's entries under `anchors/`.
pub(super) fn check_anchors(
    zip: &mut Bundle,
    names: &[String],
    key: &VerifierKey,
    checkpoint: &Checkpoint,
    options: &Options,
    report: &mut Report,
) {
    let pinned = &options.witnesses[..];
    let mut anchors: BTreeMap<u64, Anchor> = BTreeMap::new();
    let mut has_keys_file = false;
    for name in names {
        if name == WITNESS_KEYS {
            has_keys_file = true;
            continue;
        }
        let parsed = name
            .strip_prefix(ANCHORS_DIR)
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(size, file)| Some((canonical(size)?, file)))
            .filter(|(_, file)| is_anchor_file(file));
        match parsed {
            Some((size, file)) if anchors.len() < MAX_ANCHORS || anchors.contains_key(&size) => {
                let anchor = anchors.entry(size).or_default();
                if anchor.files.len() < MAX_FILES {
                    anchor.files.push(file.to_string());
                } else {
                    report.problem(format!("{name}: too many files in one anchor"));
                }
            }
            Some(_) => report.problem(format!("{name}: more than {MAX_ANCHORS} anchors")),
            None => report.problem(format!(
                "unexpected file {name:?}: not part of a mailvault bundle"
            )),
        }
    }
    if anchors.is_empty() {
        if !options.tsa_pins.is_empty() {
            report.problem(
                "you pinned TSA certificates (--tsa-cert), but the bundle carries no time-stamp \
                 token: the archive's checkpoints were not time-stamped (or the anchors were removed)"
                    .to_string(),
            );
        }
        if has_keys_file {
            report.problem(format!("{WITNESS_KEYS} without any anchor"));
        }
        if !pinned.is_empty() {
            report.problem(
                "you pinned witness keys (--witness), but the bundle carries no cosignature: the \
                 archive's checkpoints were not witnessed (or the anchors were removed)"
                    .to_string(),
            );
        }
        return;
    }
    let bundled = match has_keys_file {
        true => bundled_keys(zip, report),
        false => Vec::new(),
    };
    let keys: &[WitnessKey] = if pinned.is_empty() { &bundled } else { pinned };
    let mut pinned_seen = vec![false; pinned.len()];
    let mut stamped = 0;
    for (size, anchor) in &anchors {
        stamped += check_anchor(
            zip,
            *size,
            anchor,
            key,
            checkpoint,
            keys,
            &mut pinned_seen,
            options,
            report,
        );
    }
    if stamped > 0 && options.tsa_pins.is_empty() {
        report.caveats.push(
            "no TSA certificate pinned (--tsa-cert): time-stamp tokens were checked against the \
             certificates they carry; compare those with the certificates the TSAs publish"
                .to_string(),
        );
    }
    if stamped == 0 && !options.tsa_pins.is_empty() {
        report.problem(
            "you pinned TSA certificates (--tsa-cert), but the bundle's anchors carry no time-stamp token"
                .to_string(),
        );
    }
    for (k, seen) in pinned.iter().zip(&pinned_seen) {
        if !seen {
            report.problem(format!(
                "no valid cosignature by the witness key you pinned ({}) in the bundle's anchors",
                k.encode()
            ));
        }
    }
    if pinned.is_empty() {
        report.caveats.push(format!(
            "no witness key pinned (--witness): cosignatures were checked with the keys the bundle \
             itself names ({WITNESS_KEYS}); compare them with the keys the witnesses' operators publish"
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn check_anchor(
    zip: &mut Bundle,
    size: u64,
    anchor: &Anchor,
    key: &VerifierKey,
    checkpoint: &Checkpoint,
    keys: &[WitnessKey],
    pinned_seen: &mut [bool],
    options: &Options,
    report: &mut Report,
) -> usize {
    let pinned = &options.witnesses[..];
    let dir = format!("{ANCHORS_DIR}{size}/");
    let cp_name = format!("{dir}checkpoint.txt");
    let note = match read_small(zip, &cp_name) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            report.problem(format!("{cp_name}: {e}"));
            return 0;
        }
    };
    let anchored = match key.verify_note(&note) {
        Ok(signed) if signed.checkpoint.size == size => signed.checkpoint,
        Ok(signed) => {
            report.problem(format!(
                "{cp_name}: it is the checkpoint of size {}, not {size}",
                signed.checkpoint.size
            ));
            return 0;
        }
        Err(e) => {
            report.problem(format!("{cp_name}: {e}"));
            return 0;
        }
    };
    if !prefix_of(zip, &anchored, checkpoint, &cp_name, report) {
        return 0;
    }
    let mut witnessed = Vec::new();
    let mut stamped = Vec::new();
    for file in &anchor.files {
        let name = format!("{dir}{file}");
        if file == "checkpoint.txt" {
            continue;
        }
        if let Some(witness) = file
            .strip_prefix("cosignature-")
            .and_then(|f| f.strip_suffix(".txt"))
        {
            match check_cosignature(zip, &name, &note, keys) {
                Ok(by) => {
                    for (k, time) in by {
                        if let Some(i) = pinned.iter().position(|p| *p == k) {
                            pinned_seen[i] = true;
                        }
                        witnessed.push(format!("{witness} ({}) at {}", k.name, posix_time(time)));
                    }
                }
                Err(e) => report.problem(format!("{name}: {e}")),
            }
        } else if let Some(tsa) = file
            .strip_prefix("timestamp-")
            .and_then(|f| f.strip_suffix(".tsr"))
        {
            let checked = read_small(zip, &name).and_then(|token| {
                crate::timestamp::check_timestamp_file(&token, note.as_bytes(), &options.tsa_pins)
                    .map_err(|e| e.to_string())
            });
            match checked {
                Ok(verdict) => stamped.push(format!(
                    "{tsa} at {} ({})",
                    verdict.gen_time,
                    match &verdict.pinned_by {
                        Some(pin) => format!("pinned: {pin}"),
                        None => format!("not pinned: signed by {}", verdict.signer),
                    }
                )),
                Err(e) => report.problem(format!("{name}: {e}")),
            }
        }
    }
    let above = match size < checkpoint.size {
        true => format!("; records above {size} are signed by the archive only"),
        false => String::new(),
    };
    if !stamped.is_empty() {
        report.proven.push(format!(
            "records 1..={size} existed no later than the time-stamp by {}{above}",
            stamped.join(", ")
        ));
    }
    if !witnessed.is_empty() {
        report.proven.push(format!(
            "records 1..={size} witnessed by {}{above}",
            witnessed.join(", ")
        ));
    }
    stamped.len()
}

/// The anchored checkpoint is the bundle's tree or a prefix of it.
fn prefix_of(
    zip: &mut Bundle,
    anchored: &Checkpoint,
    bundle: &Checkpoint,
    what: &str,
    report: &mut Report,
) -> bool {
    if anchored.size > bundle.size {
        report.problem(format!(
            "{what}: it anchors tree size {}, larger than the bundle's {}",
            anchored.size, bundle.size
        ));
        return false;
    }
    let proof: Vec<Hash> = if anchored.size == bundle.size || anchored.size == 0 {
        Vec::new()
    } else {
        let name = consistency_file(anchored.size);
        match read_json::<ConsistencyProof>(zip, &name) {
            Ok(p) if p.old_size == anchored.size && p.tree_size == bundle.size => match hashes(&p.proof) {
                Some(h) => h,
                None => {
                    report.problem(format!("{name}: a hash is not 32 bytes of base64"));
                    return false;
                }
            },
            Ok(_) => {
                report.problem(format!("{name}: it is for other tree sizes"));
                return false;
            }
            Err(e) => {
                report.problem(format!(
                    "{name}: {e} — needed to tie the anchor {what} to the bundle's tree"
                ));
                return false;
            }
        }
    };
    if !verify_consistency(anchored.size, &anchored.root, bundle.size, &bundle.root, &proof) {
        report.problem(format!(
            "{what}: the anchored tree of size {} is NOT a prefix of the bundle's tree of size {}",
            anchored.size, bundle.size
        ));
        return false;
    }
    true
}

/// Checks a cosignature file against `note`: every line must be a valid cosignature by one
/// of `keys`. Returns the keys and times.
fn check_cosignature(
    zip: &mut Bundle,
    name: &str,
    note: &str,
    keys: &[WitnessKey],
) -> Result<Vec<(WitnessKey, u64)>, String> {
    let bytes = read_small(zip, name)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut by = Vec::new();
    for line in text.lines() {
        let Some((signer, blob)) = line.strip_prefix("\u{2014} ").and_then(|r| r.split_once(' ')) else {
            return Err(format!("not a cosignature line: {line:?}"));
        };
        let id = decode_hash_prefix(blob);
        let Some(k) = keys.iter().find(|k| k.name == signer && Some(k.key_id()) == id) else {
            return Err(format!(
                "the cosignature by {signer} is not by any witness key {}",
                if keys.is_empty() {
                    "(none pinned, none named in the bundle)"
                } else {
                    "given"
                }
            ));
        };
        let at = k
            .verify_cosignature(&format!("{note}{line}\n"))
            .map_err(|e| e.to_string())?;
        by.push((k.clone(), at.time));
    }
    if by.is_empty() {
        return Err("empty".into());
    }
    Ok(by)
}

/// The key ID at the start of a signature blob.
fn decode_hash_prefix(blob: &str) -> Option<[u8; 4]> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(blob).ok()?;
    raw.get(..4)?.try_into().ok()
}

fn bundled_keys(zip: &mut Bundle, report: &mut Report) -> Vec<WitnessKey> {
    let text = match read_small(zip, WITNESS_KEYS) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            report.problem(format!("{WITNESS_KEYS}: {e}"));
            return Vec::new();
        }
    };
    let mut keys = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()).take(MAX_KEYS) {
        match WitnessKey::parse(line) {
            Ok(k) => keys.push(k),
            Err(e) => report.problem(format!("{WITNESS_KEYS}: {e}")),
        }
    }
    keys
}

fn canonical(size: &str) -> Option<u64> {
    if size.is_empty() || size.starts_with('0') || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    size.parse().ok()
}

fn posix_time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(
            || format!("{secs} (POSIX)"),
            |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}
