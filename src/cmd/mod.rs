//! One module per subcommand: each parses its own arguments and does one job.

pub mod audit;
pub mod bucket_identity;
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
pub mod restore;
pub mod search;
pub mod serve;
pub mod show;
pub mod status;
pub mod user;
pub mod verify;
pub mod verify_anchors;
pub mod verify_bundle;
pub mod verify_s3;

use std::process::ExitCode;

use anyhow::Context;
use archive_core::audit::AuditEvent;
use archive_core::log::checkpoint::{SignedCheckpoint, VerifierKey};
use archive_core::log::reader::LogReader;
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
    open_log_with(cli, None)
}

/// The log of an existing store, read-only, reading evicted segments from the bucket of
/// `config`'s `[storage.s3]` (through the store's range cache) when a configuration is given.
pub fn open_log_with(cli: &Cli, config: Option<&std::path::Path>) -> anyhow::Result<LogReader> {
    let layout = existing_layout(cli)?;
    let reads = evicted_reads(&layout, config)?;
    Ok(LogReader::open_with(&layout.log_dir, reads)?)
}

/// The reads of evicted segments with `config`'s `[storage.s3]` (none without a
/// configuration, or without that section: a record of an evicted segment is then an error
/// naming where its bytes are).
pub fn evicted_reads(
    layout: &Layout,
    config: Option<&std::path::Path>,
) -> anyhow::Result<std::sync::Arc<archive_core::log::remote::RemoteReads>> {
    let s3 = match config {
        Some(path) => crate::config::Config::load(path)?.storage.s3,
        None => None,
    };
    let remote = crate::remote_segments::remote_config(s3.as_ref())?;
    Ok(archive_core::store::RemoteConfig::reads(remote.as_ref(), layout)?)
}

/// The public key to check signatures with: `pinned` (a key string or a file holding one)
/// if given, else the one stored with the log.
pub fn verifier_key(layout: &Layout, pinned: Option<&str>) -> anyhow::Result<VerifierKey> {
    match pinned {
        Some(p) => pinned_key(p),
        None => Ok(layout.verifier_key()?),
    }
}

/// A public key given on the command line: the key string, or a file holding it.
pub fn pinned_key(given: &str) -> anyhow::Result<VerifierKey> {
    let text = if std::path::Path::new(given).is_file() {
        std::fs::read_to_string(given).with_context(|| format!("reading {given}"))?
    } else {
        given.to_string()
    };
    Ok(VerifierKey::parse(&text)?)
}

/// A witness key given on the command line: the key string, or a file holding it.
pub fn witness_key(given: &str) -> anyhow::Result<archive_verify::cosignature::WitnessKey> {
    let text = if std::path::Path::new(given).is_file() {
        std::fs::read_to_string(given).with_context(|| format!("reading {given}"))?
    } else {
        given.to_string()
    };
    Ok(archive_verify::cosignature::WitnessKey::parse(&text)?)
}

/// Reads a signed checkpoint file and checks its signature.
pub fn read_checkpoint_file(path: &std::path::Path, key: &VerifierKey) -> anyhow::Result<SignedCheckpoint> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
    key.verify_note(&text)
        .with_context(|| format!("checkpoint {}", path.display()))
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

/// Who runs this command, for audit records: `cli:<name>` of the real user id (not `$USER`,
/// which anyone can set), or `cli:uid=<n>` if the system has no name for it.
pub fn cli_actor() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data that getpwuid_r fills; buf outlives its use, and the name
    // pointer is read only when getpwuid_r succeeded and set `found`.
    let name = unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        (rc == 0 && !found.is_null() && !pwd.pw_name.is_null()).then(|| {
            std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned()
        })
    };
    match name {
        Some(name) => format!("cli:{name}"),
        None => format!("cli:uid={uid}"),
    }
}

/// Records a read from the command line (`show`, `log`, `proof`, `audit`) through the audit
/// spool, never by appending: a read must not change the log it reads, which may be one just
/// found tampered (like `verify`'s record, the next writer takes it in). A data directory
/// this user cannot write to keeps no record — said on stderr; the files are readable to the
/// user anyway, so refusing would protect nothing.
pub fn record_read(cli: &Cli, action: &str, target: String) {
    let event = AuditEvent::new(&cli_actor(), action, target, "local");
    if let Err(e) = archive_core::audit::spool(&Layout::new(&cli.data), &event) {
        eprintln!("mailvault: note: this {action} has no audit record ({e})");
    }
}

/// Records `action` on `target` by whoever runs this command, from `local`: appended to the
/// log, or spooled for the running server (`archive_core::audit::record`).
pub fn record_audit(cli: &Cli, action: &str, target: String) -> anyhow::Result<()> {
    let event = AuditEvent::new(&cli_actor(), action, target, "local");
    let layout = Layout::new(&cli.data);
    archive_core::audit::record(&layout, &cli.key_path(), &event)
        .with_context(|| format!("recording the `{action}` audit record"))?;
    Ok(())
}
