//! External anchors of checkpoints: what witnesses and time-stamping authorities returned for
//! a checkpoint, kept beside a copy of it in `<data>/anchors/<size>/` (docs/FORMAT.md
//! §Anchors). Files there are write-once: written through a fsynced temporary file, linked
//! into place only if the name is free (an existing file is left alone), the directory
//! fsynced; nothing here overwrites or deletes an anchor.
//!
//! - `checkpoint.txt`: the archive-signed note of tree size `<size>`, as in the log;
//! - `cosignature-<witness>.txt`: the `cosignature/v1` line(s) a witness returned for it;
//! - `timestamp-<tsa>.tsr`: an RFC 3161 answer of a time-stamping authority.
//!
//! Besides the size directories, `anchors/witness-keys.txt` lists the verifier key of every
//! witness the server was configured with, one per line, so that `verify` and `export` can
//! name the keys the cosignatures were checked with (they are not pinned by that: an auditor
//! pins keys they got from the witness's operator).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::store::Layout;
use crate::{Error, IoContext, Result};

/// The checkpoint copy in an anchor directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.txt";
/// The list of witness keys the server was configured with.
pub const WITNESS_KEYS_FILE: &str = "witness-keys.txt";
/// Largest anchor file read back (a cosignature is a line, a time-stamp a few KiB).
pub const ANCHOR_FILE_MAX: u64 = 64 << 10;
/// Largest `witness-keys.txt` read back.
const KEYS_FILE_MAX: u64 = 1 << 20;

/// The file of witness `name`'s cosignature.
pub fn cosignature_file(name: &str) -> String {
    format!("cosignature-{name}.txt")
}

/// The file of time-stamping authority `name`'s token.
pub fn timestamp_file(name: &str) -> String {
    format!("timestamp-{name}.tsr")
}

pub use archive_verify::bundle::{is_anchor_file, is_valid_anchor_name};

/// The anchors directory of a store.
pub fn anchors_dir(layout: &Layout) -> PathBuf {
    layout.dir.join("anchors")
}

/// The directory of the anchors of tree size `size`.
pub fn anchor_dir(layout: &Layout, size: u64) -> PathBuf {
    anchors_dir(layout).join(size.to_string())
}

/// Tree sizes that have an anchor directory, ascending (names that are not a canonical
/// decimal number are not anchors and are passed over).
pub fn anchored_sizes(layout: &Layout) -> Result<Vec<u64>> {
    let dir = anchors_dir(layout);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut sizes = Vec::new();
    for entry in entries {
        let entry = entry.at(&dir)?;
        if let Some(size) = entry.file_name().to_str().and_then(canonical_size) {
            if entry.file_type().at(&entry.path())?.is_dir() {
                sizes.push(size);
            }
        }
    }
    sizes.sort_unstable();
    Ok(sizes)
}

fn canonical_size(name: &str) -> Option<u64> {
    if name.is_empty() || (name.starts_with('0') && name != "0") || !name.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    name.parse().ok()
}

/// The anchors an export of tree `size` carries: for every witness and TSA, the newest
/// anchored size at or below `size` that holds its file (a witness that is down does not lose
/// its older cosignature to a TSA's newer token), ascending, at most
/// [`MAX_ANCHORS`](archive_verify::bundle::MAX_ANCHORS) of the newest.
pub fn anchors_for_export(layout: &Layout, size: u64) -> Result<Vec<u64>> {
    let mut newest: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for anchored in anchored_sizes(layout)?.into_iter().filter(|&s| s <= size) {
        for file in anchor_files(layout, anchored)? {
            if file != CHECKPOINT_FILE {
                newest.insert(file, anchored); // ascending sizes: the newest stays
            }
        }
    }
    let mut sizes: Vec<u64> = newest.into_values().collect();
    sizes.sort_unstable();
    sizes.dedup();
    let keep = sizes.len().saturating_sub(archive_verify::bundle::MAX_ANCHORS);
    Ok(sizes.split_off(keep))
}

/// The newest anchored tree size holding file `name` (e.g. a witness's cosignature).
pub fn newest_with(layout: &Layout, name: &str) -> Result<Option<u64>> {
    for size in anchored_sizes(layout)?.into_iter().rev() {
        if anchor_dir(layout, size).join(name).is_file() {
            return Ok(Some(size));
        }
    }
    Ok(None)
}

/// The files of the anchor of `size`, sorted by name (temporary files of a write in progress
/// are not listed).
pub fn anchor_files(layout: &Layout, size: u64) -> Result<Vec<String>> {
    let dir = anchor_dir(layout, size);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).at(&dir)? {
        let entry = entry.at(&dir)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !name.starts_with('.') && entry.file_type().at(&entry.path())?.is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Reads anchor file `name` of `size` (at most [`ANCHOR_FILE_MAX`] bytes).
pub fn read_anchor(layout: &Layout, size: u64, name: &str) -> Result<Vec<u8>> {
    read_bounded(&anchor_dir(layout, size).join(name), ANCHOR_FILE_MAX)
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).at(path)?;
    let mut out = Vec::new();
    file.take(max + 1).read_to_end(&mut out).at(path)?;
    if out.len() as u64 > max {
        return Err(Error::Format {
            path: path.to_path_buf(),
            reason: format!("larger than {max} bytes: not an anchor file"),
        });
    }
    Ok(out)
}

/// Writes anchor file `name` of tree size `size` once; returns `false` (and writes nothing)
/// when the file exists already.
pub fn write_anchor(layout: &Layout, size: u64, name: &str, bytes: &[u8]) -> Result<bool> {
    if !is_anchor_file(name) {
        return Err(Error::Rejected(format!("{name:?} is not an anchor file name")));
    }
    let top = anchors_dir(layout);
    let dir = anchor_dir(layout, size);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).at(&dir)?;
        sync_dir(&top)?;
        sync_dir(&layout.dir)?;
    }
    write_once(&dir, name, bytes)
}

/// Writes `checkpoint.txt` of size `size` once and checks that the kept one is `note`: an
/// anchor (cosignature, token) is stored only beside the very note it vouches for.
pub fn write_checkpoint(layout: &Layout, size: u64, note: &str) -> Result<()> {
    write_anchor(layout, size, CHECKPOINT_FILE, note.as_bytes())?;
    if read_anchor(layout, size, CHECKPOINT_FILE)? != note.as_bytes() {
        return Err(Error::Rejected(format!(
            "anchors/{size}/{CHECKPOINT_FILE} is not this checkpoint's note: the anchors directory disagrees with the log"
        )));
    }
    Ok(())
}

/// Creates `dir/name` with `bytes` unless it exists: a fsynced temporary file hard-linked to
/// the name (which fails, atomically, if the name is taken), then the directory fsynced.
fn write_once(dir: &Path, name: &str, bytes: &[u8]) -> Result<bool> {
    let path = dir.join(name);
    if path.exists() {
        return Ok(false);
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// The witness keys listed in `anchors/witness-keys.txt` (lines as written; empty when there
/// is no such file).
pub fn witness_keys(layout: &Layout) -> Result<Vec<String>> {
    let path = anchors_dir(layout).join(WITNESS_KEYS_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = read_bounded(&path, KEYS_FILE_MAX)?;
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Adds witness keys to `anchors/witness-keys.txt` (kept: a key once configured stays listed,
/// since cosignatures made with it stay in the anchors). Replaced atomically.
pub fn record_witness_keys(layout: &Layout, keys: &[String]) -> Result<()> {
    let mut all = witness_keys(layout)?;
    let before = all.len();
    for key in keys {
        if !all.contains(key) {
            all.push(key.clone());
        }
    }
    if all.len() == before {
        return Ok(());
    }
    let top = anchors_dir(layout);
    std::fs::create_dir_all(&top).at(&top)?;
    let path = top.join(WITNESS_KEYS_FILE);
    let tmp = top.join(format!(".{WITNESS_KEYS_FILE}.{}.tmp", std::process::id()));
    let text: String = all.iter().map(|k| format!("{k}\n")).collect();
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&path, e));
    }
    sync_dir(&top)
}

/// A rollback or fork of the archive's history that a witness caught (its size, or its tree,
/// is not one the log extends). Kept in `<data>/anchoring-alarms/witness-<name>.json` for
/// `mailvault status`, replaced at each detection, removed when the witness cosigns again.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WitnessAlarm {
    /// The witness's configured name.
    pub witness: String,
    /// `rollback` (the witness saw a larger tree) or `fork` (a different tree).
    pub kind: String,
    /// The tree size the witness has cosigned.
    pub witness_size: u64,
    /// The log's tree size when it was detected.
    pub log_size: u64,
    /// When (RFC 3339 UTC).
    pub detected_at: String,
    /// What happened, in words.
    pub detail: String,
}

/// The alarms directory of a store.
pub fn alarms_dir(layout: &Layout) -> PathBuf {
    layout.dir.join("anchoring-alarms")
}

fn alarm_file(layout: &Layout, witness: &str) -> PathBuf {
    alarms_dir(layout).join(format!("witness-{witness}.json"))
}

/// Records (replaces) the alarm of its witness.
pub fn record_alarm(layout: &Layout, alarm: &WitnessAlarm) -> Result<()> {
    if !is_valid_anchor_name(&alarm.witness) {
        return Err(Error::Rejected(format!(
            "{:?} is not a witness name",
            alarm.witness
        )));
    }
    let dir = alarms_dir(layout);
    std::fs::create_dir_all(&dir).at(&dir)?;
    let path = alarm_file(layout, &alarm.witness);
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let text = serde_json::to_vec_pretty(alarm).map_err(|e| Error::Internal(e.to_string()))?;
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&path, e));
    }
    sync_dir(&dir)
}

/// Removes the alarm of `witness`; returns whether there was one.
pub fn clear_alarm(layout: &Layout, witness: &str) -> Result<bool> {
    if !is_valid_anchor_name(witness) {
        return Ok(false);
    }
    let path = alarm_file(layout, witness);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// The standing alarms, by witness name (unreadable files are reported as alarms too: an
/// alarm must not vanish because its file was damaged).
pub fn alarms(layout: &Layout) -> Result<Vec<WitnessAlarm>> {
    let dir = alarms_dir(layout);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.at(&dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(witness) = name
            .strip_prefix("witness-")
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let alarm = read_bounded(&entry.path(), KEYS_FILE_MAX)
            .ok()
            .and_then(|b| serde_json::from_slice::<WitnessAlarm>(&b).ok())
            .unwrap_or_else(|| WitnessAlarm {
                witness: witness.to_string(),
                kind: "unknown".into(),
                witness_size: 0,
                log_size: 0,
                detected_at: String::new(),
                detail: format!("the alarm file {} is unreadable", entry.path().display()),
            });
        out.push(alarm);
    }
    out.sort_by(|a, b| a.witness.cmp(&b.witness));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_written_once_and_listed_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert_eq!(anchored_sizes(&layout).unwrap(), Vec::<u64>::new());
        assert!(write_anchor(&layout, 12, CHECKPOINT_FILE, b"first").unwrap());
        assert!(!write_anchor(&layout, 12, CHECKPOINT_FILE, b"second").unwrap());
        assert_eq!(read_anchor(&layout, 12, CHECKPOINT_FILE).unwrap(), b"first");
        assert!(write_anchor(&layout, 3, &cosignature_file("w1"), b"- w1 x\n").unwrap());
        assert!(write_anchor(&layout, 40, &timestamp_file("tsa"), b"der").unwrap());
        // Not anchors: a stray name, a non-canonical number.
        std::fs::create_dir_all(anchors_dir(&layout).join("007")).unwrap();
        std::fs::create_dir_all(anchors_dir(&layout).join("notes")).unwrap();
        assert_eq!(anchored_sizes(&layout).unwrap(), vec![3, 12, 40]);
        assert_eq!(newest_with(&layout, &cosignature_file("w1")).unwrap(), Some(3));
        assert_eq!(
            anchor_files(&layout, 12).unwrap(),
            vec![CHECKPOINT_FILE.to_string()]
        );
        for bad in ["../x", "cosignature-a/b.txt", "cosignature-.x.txt", "other.txt"] {
            assert!(write_anchor(&layout, 5, bad, b"x").is_err(), "{bad}");
        }
        // An export ships each witness's and TSA's newest anchor at or below its tree: w1's at
        // 3 although 12 is newer (it holds no cosignature), the TSA's only once the tree has 40.
        assert_eq!(anchors_for_export(&layout, 39).unwrap(), vec![3]);
        assert!(write_anchor(&layout, 12, &timestamp_file("tsa"), b"der").unwrap());
        assert_eq!(anchors_for_export(&layout, 39).unwrap(), vec![3, 12]);
        assert_eq!(anchors_for_export(&layout, 40).unwrap(), vec![3, 40]);
        assert_eq!(anchors_for_export(&layout, 2).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn alarms_are_recorded_listed_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let alarm = WitnessAlarm {
            witness: "w1".into(),
            kind: "rollback".into(),
            witness_size: 9,
            log_size: 4,
            detected_at: "2026-01-01T00:00:00Z".into(),
            detail: "x".into(),
        };
        record_alarm(&layout, &alarm).unwrap();
        assert_eq!(alarms(&layout).unwrap(), vec![alarm]);
        assert!(clear_alarm(&layout, "w1").unwrap());
        assert!(!clear_alarm(&layout, "w1").unwrap());
        assert!(alarms(&layout).unwrap().is_empty());
    }

    #[test]
    fn witness_keys_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        record_witness_keys(&layout, &["a+1+x".into()]).unwrap();
        record_witness_keys(&layout, &["b+2+y".into(), "a+1+x".into()]).unwrap();
        assert_eq!(witness_keys(&layout).unwrap(), vec!["a+1+x", "b+2+y"]);
    }
}
