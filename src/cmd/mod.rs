//! One module per subcommand: each parses its own arguments and does one job.

pub mod audit;
pub mod checkpoint;
pub mod config;
pub mod doctor;
pub mod export;
pub mod import;
pub mod import_imap;
pub mod init;
pub mod key;
pub mod log;
pub mod proof;
pub mod reindex;
pub mod search;
pub mod serve;
pub mod show;
pub mod status;
pub mod user;
pub mod verify;
pub mod verify_bundle;

use std::process::ExitCode;

use anyhow::Context;
use archive_core::log::checkpoint::{SignedCheckpoint, VerifierKey};
use archive_core::log::reader::LogReader;
use archive_core::log::record::LeafBody;
use archive_core::store::{Layout, StoreIdentity};
use archive_core::Store;

use crate::Cli;

/// Exit code for usage and I/O errors (`verify` reserves 1 for "tampered").
pub const EXIT_FAILURE: u8 = 2;

/// Result of a subcommand.
pub type CmdResult = anyhow::Result<ExitCode>;

/// The store layout, checked to be a store.
pub fn existing_layout(cli: &Cli) -> anyhow::Result<Layout> {
    let layout = Layout::new(&cli.data);
    layout.identity()?;
    Ok(layout)
}

/// Makes sure a store exists for a command that writes one (`serve`, `import`): a missing
/// store is created only when `create` says so (`--create`, or `serve` on the built-in
/// default path); otherwise the command is refused with a hint, so a mistyped `--data` never
/// makes a new store with a new signing key. Returns the identity of a store it created.
pub fn ensure_store(cli: &Cli, create: bool, command: &str) -> anyhow::Result<Option<StoreIdentity>> {
    let layout = Layout::new(&cli.data);
    // An identity file that cannot be looked at (a directory of another user, mode 0700) is
    // an error to report, not a missing store to create.
    match layout.identity.try_exists() {
        Ok(true) => return Ok(None),
        Ok(false) => {}
        Err(e) => anyhow::bail!("{}: {e}", layout.identity.display()),
    }
    if !create {
        anyhow::bail!(
            "no mailvault store in {dir} (mistyped --data?): `mailvault --data {dir} init` \
             creates one, or `{command} --create`",
            dir = cli.data.display()
        );
    }
    Ok(Some(Store::create(&cli.data, &cli.key_path())?))
}

/// The log of an existing store, read-only (works next to a running server).
pub fn open_log(cli: &Cli) -> anyhow::Result<LogReader> {
    let layout = existing_layout(cli)?;
    Ok(LogReader::open(&layout.log_dir)?)
}

/// The public key to check signatures with: `pinned` (a key string or a file holding one)
/// if given, else the one stored with the log.
pub fn verifier_key(layout: &Layout, pinned: Option<&str>) -> anyhow::Result<VerifierKey> {
    match pinned {
        Some(p) => {
            let text = if std::path::Path::new(p).is_file() {
                std::fs::read_to_string(p).with_context(|| format!("reading {p}"))?
            } else {
                p.to_string()
            };
            Ok(VerifierKey::parse(&text)?)
        }
        None => Ok(layout.verifier_key()?),
    }
}

/// Reads a signed checkpoint file and checks its signature.
pub fn read_checkpoint_file(path: &std::path::Path, key: &VerifierKey) -> anyhow::Result<SignedCheckpoint> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
    key.verify_note(&text)
        .with_context(|| format!("checkpoint {}", path.display()))
}

/// The newest checkpoint record in the log: its seq and note. Scans segments newest first.
pub fn latest_checkpoint(log: &LogReader) -> anyhow::Result<Option<(u64, String)>> {
    for (first, _) in log.segments().iter().rev() {
        let mut found = None;
        for record in log.records_from(*first)? {
            let record = record?;
            if record.location.segment != *first {
                break;
            }
            if let LeafBody::Checkpoint { note } = &record.leaf.body {
                found = Some((record.seq(), String::from_utf8_lossy(note).into_owned()));
            }
        }
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// RFC 3339 UTC time of a record.
pub fn format_time(time_us: i64) -> String {
    jiff::Timestamp::from_microsecond(time_us)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("@{time_us}us"))
}

/// Whether to go on after writing a line of output: a closed pipe (`mailvault log | head`) is
/// a normal way to stop reading; any other write error is one.
pub fn written_or_stop(written: std::io::Result<()>) -> anyhow::Result<bool> {
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who runs a command on this machine, as audit records and export manifests name them:
/// `local:` and the login name ($USER, $LOGNAME, else the numeric uid).
pub fn local_principal() -> String {
    let name = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_graphic()))
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }));
    format!("local:{name}")
}
