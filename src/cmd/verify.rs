//! `mailvault verify`: recompute everything; exit 0 intact, 1 tampered, 2 usage/IO error,
//! 3 unsigned records (records after the newest checkpoint while no server is writing).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use archive_core::verify::verify_log_with;

use anyhow::Context;

use super::verify_anchors::{check_anchors, TsaPins};
use super::{existing_layout, verifier_key, CmdResult};
use crate::Cli;

/// Exit code when the log does not verify.
const EXIT_TAMPERED: u8 = 1;
/// Exit code when records follow the newest checkpoint and no server is writing them: they
/// were never acknowledged (a crash; the next open quarantines them) or were added without
/// the key.
const EXIT_UNSIGNED: u8 = 3;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint kept earlier (repeatable): the log must still contain that tree.
    #[arg(long)]
    checkpoint: Vec<PathBuf>,
    /// The public key to trust (key string or file), instead of the one stored with the log.
    #[arg(long)]
    pubkey: Option<String>,
    /// A witness's verifier key (key string or file; repeatable): stored cosignatures must
    /// verify with these. Without it, with the keys in `<data>/anchors/witness-keys.txt`.
    #[arg(long, value_name = "KEY")]
    witness: Vec<String>,
    /// The serve configuration: time-stamp tokens under <data>/anchors/ are checked against
    /// the certificates of its [[anchoring.tsa]], and segments evicted to S3 are read from
    /// the bucket of its [storage.s3] (without it, only their stubs' leaf hashes are checked).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A TSA certificate or CA (PEM, repeatable) to check tokens of TSAs the configuration
    /// does not name.
    #[arg(long = "tsa-cert")]
    tsa_cert: Vec<PathBuf>,
    /// Also check the bucket's copy (`[storage.s3]` of --config): every offloaded segment's
    /// object version is there, byte-identical, locked in COMPLIANCE mode long enough.
    #[arg(long, requires = "config")]
    s3: bool,
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let layout = existing_layout(cli)?;
    let key = verifier_key(&layout, args.pubkey.as_deref())?;
    let mut pinned = Vec::new();
    for path in &args.checkpoint {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading checkpoint {}", path.display()))?;
        // A kept checkpoint the log's key does not sign: the log, or its key, was replaced.
        match key.verify_note(&text) {
            Ok(signed) => pinned.push(signed),
            Err(e) => {
                println!(
                    "TAMPERED: pinned checkpoint {} is not signed by this log's key {} ({e})",
                    path.display(),
                    key.encode()
                );
                return Ok(ExitCode::from(EXIT_TAMPERED));
            }
        }
    }
    let witnesses = args
        .witness
        .iter()
        .map(|k| super::witness_key(k).context("--witness"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tsa_pins = TsaPins::load(args.config.as_deref(), &args.tsa_cert)?;
    let anchors = match check_anchors(&layout, &key, &witnesses, &tsa_pins)? {
        Ok(anchors) => anchors,
        Err(problem) => {
            println!("TAMPERED: {problem}");
            LastRun::record(&layout, "tampered", 0);
            audit_run(&layout, "tampered", 0);
            return Ok(ExitCode::from(EXIT_TAMPERED));
        }
    };
    let user_pinned: Vec<u64> = pinned.iter().map(|p| p.checkpoint.size).collect();
    // Each anchored checkpoint must be a tree the log really has.
    pinned.extend(anchors.checkpoints.iter().cloned());
    // Evicted segments are streamed from the bucket of --config's [storage.s3], if given.
    let evicted = super::evicted_reads(&layout, args.config.as_deref())?;
    let report = verify_log_with(&layout.log_dir, &key, &pinned, &evicted)?;
    if let Some(problem) = &report.problem {
        println!("TAMPERED: {problem}");
        println!("{} records before it verified", report.records);
        LastRun::record(&layout, "tampered", report.records);
        audit_run(&layout, "tampered", report.records);
        return Ok(ExitCode::from(EXIT_TAMPERED));
    }
    let quarantined = layout.quarantined()?;
    // Offload receipts only where there are some (a store without [storage.s3] has none).
    let offloads = report.by_kind.contains_key("offload");
    let kinds = [
        "message",
        "arrival",
        "audit",
        "checkpoint",
        "dictionary",
        "offload",
        "evicted",
    ]
    .iter()
    .filter(|k| **k != "offload" || offloads)
    .filter(|k| **k != "evicted" || report.by_kind.contains_key("evicted"))
    .map(|k| format!("{} {k}", report.by_kind.get(k).copied().unwrap_or(0)))
    .collect::<Vec<_>>()
    .join(", ");
    println!(
        "OK: {} records ({kinds}) in {} segments",
        report.records, report.segments
    );
    println!("tree root {}", base64_root(&report.root));
    for line in &report.evicted {
        println!("{line}");
    }
    if report.contents_unchecked > 0 {
        println!(
            "{} messages compressed with a dictionary in an evicted segment not read: their contents are unchecked",
            report.contents_unchecked
        );
    }
    if let Some((seq, size)) = report.last_checkpoint {
        println!("latest checkpoint at seq {seq} covers {size} records");
    }
    for size in report.pinned_ok.iter().filter(|s| user_pinned.contains(s)) {
        println!("pinned checkpoint of size {size}: consistent");
    }
    for line in &anchors.lines {
        println!("{line}");
    }
    for (path, bytes) in &quarantined {
        println!(
            "quarantine: {} ({bytes} bytes cut off the log's end at recovery, never acknowledged)",
            path.display()
        );
    }
    if args.s3 {
        let config = crate::config::Config::load(args.config.as_deref().context("--s3 needs --config")?)?;
        let settings = config
            .storage
            .s3
            .context("--s3: the configuration has no [storage.s3]")?;
        if !super::verify_s3::check_bucket(&settings, &report.offloads)? {
            LastRun::record(&layout, "tampered", report.records);
            audit_run(&layout, "tampered", report.records);
            return Ok(ExitCode::from(EXIT_TAMPERED));
        }
    }
    let unsigned = report.unsigned_tail();
    if unsigned > 0 {
        let first = report.records - unsigned + 1;
        if server_is_writing(&layout) {
            // A running server signs what it writes with its next group commit.
            println!("{unsigned} records after it are being written by the running server (seq {first}..)");
        } else {
            println!(
                "UNSIGNED: records {first}..{} follow the newest checkpoint and no server is writing: \
                 they were never acknowledged (the next start moves them to quarantine) or were added \
                 without the signing key",
                report.records
            );
            LastRun::record(&layout, "unsigned", report.records);
            audit_run(&layout, "unsigned", report.records);
            return Ok(ExitCode::from(EXIT_UNSIGNED));
        }
    }
    LastRun::record(&layout, "intact", report.records);
    audit_run(&layout, "intact", report.records);
    Ok(ExitCode::SUCCESS)
}

/// The `verify` audit record (records checked, verdict), always by way of the audit spool:
/// verify must not change the log it reports on — opening the store for writing would run
/// recovery (quarantining the unsigned tail just reported) or append to a log just found
/// tampered. The next writer of the store takes the record in (a running server within
/// seconds; `mailvault audit` lists it as pending until then). A store the verifier may
/// not write to (a read-only copy) keeps no record: said on stderr, and the exit code stays
/// that of the verification.
fn audit_run(layout: &archive_core::store::Layout, verdict: &str, records: u64) {
    let event = archive_core::audit::AuditEvent::new(
        &super::cli_actor(),
        "verify",
        format!("records {records} verdict {verdict}"),
        "local",
    );
    if let Err(e) = archive_core::audit::spool(layout, &event) {
        eprintln!("mailvault: note: this run has no audit record ({e})");
    }
}

/// The outcome of the last verify run that finished, kept in the data directory
/// (`Layout::last_verify`) for the server's metrics: `serve` runs no verification of its own
/// (a full one reads the whole log), so monitoring sees when an operator's or a cron job's
/// `mailvault verify` last ran and what it found. A pinned checkpoint the key does not sign
/// and usage or I/O errors record nothing.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LastRun {
    /// Unix time (seconds) the run finished.
    pub finished: u64,
    /// `intact`, `tampered` or `unsigned` (exit 0, 1, 3).
    pub result: String,
    /// The log verified intact (exit 0).
    pub intact: bool,
    /// Records checked.
    pub records: u64,
}

impl LastRun {
    /// Reads the last outcome in `data`, if there is a readable one.
    pub fn read(data: &Path) -> Option<LastRun> {
        let layout = archive_core::store::Layout::new(data);
        let text = std::fs::read(&layout.last_verify).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes the outcome (atomically: a temporary file renamed). A store the verifier may
    /// not write to (a read-only copy, another user's) keeps no record: said on stderr, and
    /// the exit code stays that of the verification.
    fn record(layout: &archive_core::store::Layout, result: &str, records: u64) {
        let finished = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let run = LastRun {
            finished,
            result: result.into(),
            intact: result == "intact",
            records,
        };
        let path = &layout.last_verify;
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(&run)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            eprintln!(
                "mailvault: note: the result was not recorded in {} ({e}); the server's metrics do not show this run",
                path.display()
            );
        }
    }
}

/// Whether a server holds the store's write lock right now.
fn server_is_writing(layout: &archive_core::store::Layout) -> bool {
    std::fs::File::open(&layout.lock).is_ok_and(|f| f.try_lock().is_err())
}

fn base64_root(root: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(root)
}
