//! `mailvault doctor`: checks a deployment the way `serve` would meet it — the store, the
//! signing key, the free space, the listeners, the TLS certificates, the users file and, when
//! an intake address is known, Postfix's journaling to it — and prints one line per check:
//! `ok`, `warn` or `FAIL`, what was found, and after ` — ` how to fix it. Exit 0 without a
//! FAIL, 1 with one.
//!
//! Everything is resolved by the functions `serve` uses (`serve::resolve_config`,
//! `Cli::key_path`, the front doors' `certificate_source`), so doctor checks what `serve`
//! would open, not a copy of its rules. Doctor only reads: it opens no store for writing and
//! makes no certificate.

mod certificates;
mod listeners;
mod postfix;

use std::fmt::Display;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use archive_core::access::Users;
use archive_core::log::checkpoint::LogKey;
use archive_core::store::{Layout, StoreIdentity};

use super::serve::{resolve_config, ListenerArgs};
use super::CmdResult;
use crate::config::Config;
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The configuration file `serve` runs with.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    listeners: ListenerArgs,
    /// The address the relay journals to (archive@vault.example): checks that Postfix copies
    /// mail to it and routes it to the intake (default: the addresses of intake.accept).
    #[arg(long = "intake-address", value_name = "ADDR")]
    intake_addresses: Vec<String>,
    /// Postfix's configuration directory, for a Postfix instance other than the default
    /// (`postconf -c DIR`).
    #[arg(long, value_name = "DIR")]
    postfix_config: Option<PathBuf>,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
    /// Not checked (nothing to check, or a tool is missing).
    Skip,
}

impl Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
            Level::Skip => "skip",
        })
    }
}

/// The findings, printed as they are made (a slow check shows where it is).
#[derive(Default)]
struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, level: Level, what: impl Display, fix: Option<&dyn Display>) {
        self.failed |= level == Level::Fail;
        match fix {
            Some(fix) => println!("{level:<4}  {what} — {fix}"),
            None => println!("{level:<4}  {what}"),
        }
    }

    fn ok(&mut self, what: impl Display) {
        self.line(Level::Ok, what, None);
    }

    fn skip(&mut self, what: impl Display) {
        self.line(Level::Skip, what, None);
    }

    fn warn(&mut self, what: impl Display, fix: impl Display) {
        self.line(Level::Warn, what, Some(&fix));
    }

    fn fail(&mut self, what: impl Display, fix: impl Display) {
        self.line(Level::Fail, what, Some(&fix));
    }
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let mut r = Report::default();
    let config = match resolve_config(args.config.as_deref(), &args.listeners) {
        Ok(config) => {
            match &args.config {
                Some(path) => r.ok(format!("configuration {} loads", path.display())),
                None => r.ok("configuration: the defaults (no --config)"),
            }
            Some(config)
        }
        Err(e) => {
            r.fail(
                format!("configuration: {e:#}").replace('\n', " "),
                "serve refuses to start with it; fix the key named (docs/CONFIG.md)",
            );
            None
        }
    };
    let layout = Layout::new(&cli.data);
    let identity = check_store(&mut r, cli, &layout);
    check_key(&mut r, cli, &layout, identity.as_ref());
    check_disk(&mut r, &cli.data, config.as_ref());
    if identity.is_some() {
        check_users(&mut r, &cli.data);
    }
    match &config {
        Some(config) => {
            let writer = listeners::store_writer(&layout);
            listeners::check(&mut r, config, writer.as_ref());
            certificates::check(&mut r, cli, config);
            postfix::check(
                &mut r,
                config,
                &args.intake_addresses,
                args.postfix_config.as_deref(),
            );
        }
        None => r.skip("listeners, certificates, Postfix: not checked (the configuration does not load)"),
    }
    Ok(if r.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The effective user id of this process.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `0644`.
fn mode_text(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// The data directory: there, a store, ours, not open to others.
fn check_store(r: &mut Report, cli: &Cli, layout: &Layout) -> Option<StoreIdentity> {
    let dir = cli.data.display();
    let init = format!("`mailvault --data {dir} init` creates a store (or fix --data / MAILVAULT_DATA)");
    let meta = match std::fs::metadata(&cli.data) {
        Ok(meta) if meta.is_dir() => meta,
        Ok(_) => {
            r.fail(format!("data dir {dir} is not a directory"), init);
            return None;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.fail(format!("data dir {dir} does not exist"), init);
            return None;
        }
        Err(e) => {
            r.fail(
                format!("data dir {dir}: {e}"),
                "run doctor as the user serve runs as",
            );
            return None;
        }
    };
    let identity = match layout.identity() {
        Ok(identity) => identity,
        Err(e) => {
            r.fail(format!("data dir {dir}: {e}"), init);
            return None;
        }
    };
    r.ok(format!("store {dir} (origin {})", identity.origin));
    let mode = meta.permissions().mode();
    if meta.uid() != euid() {
        r.warn(
            format!(
                "data dir {dir} is owned by uid {}, doctor runs as uid {}",
                meta.uid(),
                euid()
            ),
            "run doctor as the user serve runs as; that user must own the store",
        );
    }
    if mode & 0o002 != 0 {
        r.fail(
            format!("data dir {dir} is world-writable (mode {})", mode_text(mode)),
            format!("chmod 700 {dir}"),
        );
    } else if mode & 0o007 != 0 {
        r.warn(
            format!(
                "data dir {dir} is open to other users (mode {}): the log holds everyone's mail",
                mode_text(mode)
            ),
            format!("chmod 700 {dir}"),
        );
    } else {
        r.ok(format!("data dir {dir} has mode {}", mode_text(mode)));
    }
    Some(identity)
}

/// The signing key: readable, private, this store's, and kept where nobody can swap it.
fn check_key(r: &mut Report, cli: &Cli, layout: &Layout, identity: Option<&StoreIdentity>) {
    let path = cli.key_path();
    let shown = path.display();
    let key = match LogKey::read(&path) {
        Ok(key) => key,
        Err(archive_core::Error::NoKey(_)) => {
            r.fail(
                format!("no signing key at {shown}"),
                "restore it from its backup, or point --key (MAILVAULT_KEY) at it: serve refuses to start without it (docs/OPERATIONS.md §The signing key)",
            );
            return;
        }
        Err(e) => {
            r.fail(
                format!("signing key: {e}"),
                "it must be readable by the user serve runs as, and be the file `init` wrote",
            );
            return;
        }
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        r.fail(
            format!(
                "signing key {shown} has mode {}: other users can read it",
                mode_text(mode)
            ),
            format!("chmod 600 {shown}"),
        );
    } else {
        r.ok(format!("signing key {shown} has mode {}", mode_text(mode)));
    }
    if meta.uid() != euid() {
        r.warn(
            format!(
                "signing key {shown} is owned by uid {}, doctor runs as uid {}",
                meta.uid(),
                euid()
            ),
            "run doctor as the user serve runs as; that user must own the key",
        );
    }
    if let Some(identity) = identity {
        let stored = layout.verifier_key().map(|k| k.encode());
        if key.name() != identity.origin || stored.as_deref().ok() != Some(key.verifier().encode().as_str()) {
            r.fail(
                format!(
                    "signing key {shown} is the key of log {}, not of this store ({})",
                    key.name(),
                    identity.origin
                ),
                "point --key (MAILVAULT_KEY) at the key `init` made for this store",
            );
        } else {
            r.ok(format!("signing key {shown} is this store's key"));
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(dir) = std::fs::metadata(parent) {
            let dir_mode = dir.permissions().mode();
            // A world-writable directory (without the sticky bit) lets anyone replace the key.
            if dir_mode & 0o002 != 0 && dir_mode & 0o1000 == 0 {
                r.fail(
                    format!(
                        "the signing key's directory {} is world-writable (mode {}): anyone can replace the key",
                        parent.display(),
                        mode_text(dir_mode)
                    ),
                    format!("chmod o-w {}", parent.display()),
                );
            }
        }
    }
    if inside(&path, &cli.data) {
        r.warn(
            format!("signing key {shown} is inside the data directory: backups of the store carry it"),
            "in production keep it elsewhere, readable only by the mailvault user (docs/OPERATIONS.md §The signing key)",
        );
    }
}

/// Whether `path` lies inside `dir` (both resolved; false when either cannot be).
fn inside(path: &Path, dir: &Path) -> bool {
    match (std::fs::canonicalize(path), std::fs::canonicalize(dir)) {
        (Ok(path), Ok(dir)) => path.starts_with(dir),
        _ => false,
    }
}

/// Below this much free space (or a tenth of the file system), doctor warns.
const WARN_FREE_BYTES: u64 = 2 << 30;

/// Free space on the data directory's file system: enough for a new segment and the largest
/// message intake accepts, and a margin.
fn check_disk(r: &mut Report, data: &Path, config: Option<&Config>) {
    let defaults = Config::default();
    let config = config.unwrap_or(&defaults);
    // The store may not exist yet: its parent's file system is where it would be.
    let Some(dir) = data.ancestors().find(|d| d.is_dir() || d.as_os_str().is_empty()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let (free, total) = match free_space(dir) {
        Ok(space) => space,
        Err(e) => {
            r.warn(
                format!("free space of {}: {e}", dir.display()),
                "check the volume by hand (df -h)",
            );
            return;
        }
    };
    let segment = config.store_config().segment_size;
    let message = config.intake.max_message_size as u64;
    let need = segment + message;
    let percent = (free.saturating_mul(100)).checked_div(total).unwrap_or(0);
    let what = format!(
        "{} free ({percent} %) on the file system of {}",
        bytes_text(free),
        dir.display()
    );
    if free < need {
        r.fail(
            format!(
                "{what}: less than a new segment ({}) and one message of the largest size ({})",
                bytes_text(segment),
                bytes_text(message)
            ),
            "free space or move the store to a larger volume: appends fail and intake answers 451 (docs/OPERATIONS.md §When the disk fails)",
        );
    } else if free < WARN_FREE_BYTES || percent < 10 {
        r.warn(
            what,
            format!(
                "add space before it runs out (below {} intake fails)",
                bytes_text(need)
            ),
        );
    } else {
        r.ok(what);
    }
}

/// (bytes available to this user, bytes in all) of the file system holding `dir`.
fn free_space(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    // SAFETY: statvfs writes only into the struct we pass; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = stat.f_frsize as u64;
    Ok((
        (stat.f_bavail as u64).saturating_mul(unit),
        (stat.f_blocks as u64).saturating_mul(unit),
    ))
}

/// `1.5 GiB`, `64 MiB`, `512 bytes`.
fn bytes_text(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else if n >= MIB {
        format!("{:.0} MiB", n as f64 / MIB as f64)
    } else {
        format!("{n} bytes")
    }
}

/// The users file: it parses (a broken one refuses every local login) and is private.
fn check_users(r: &mut Report, data: &Path) {
    match Users::load(data) {
        Ok(users) => {
            let (all, disabled) = users
                .iter()
                .fold((0, 0), |(n, d), u| (n + 1, d + usize::from(u.disabled())));
            r.ok(format!("users file: {all} users ({disabled} disabled)"));
        }
        Err(e) => {
            r.fail(
                format!("users file: {e}"),
                "every local login fails while it does not parse; restore users.json from a backup",
            );
            return;
        }
    }
    let path = data.join("users.json");
    if let Ok(meta) = std::fs::metadata(&path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            r.warn(
                format!(
                    "users file {} has mode {}: it holds password hashes",
                    path.display(),
                    mode_text(mode)
                ),
                format!("chmod 600 {}", path.display()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes_text(512), "512 bytes");
        assert_eq!(bytes_text(64 << 20), "64 MiB");
        assert_eq!(bytes_text(3 << 29), "1.5 GiB");
    }

    #[test]
    fn levels_line_up() {
        assert_eq!(format!("{:<4}|", Level::Ok), "ok  |");
        assert_eq!(format!("{:<4}|", Level::Fail), "FAIL|");
    }
}
