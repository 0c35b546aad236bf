//! `mailvault user add|list|passwd|disable|enable|addresses|token`: the local users of the IMAP and
//! web front doors, in `<data>/users.json` (docs/OPERATIONS.md §Users).
//!
//! Works next to a running server: the users file has its own lock, separate from the store's.
//! Every check runs before anything is written, so a refused command changes nothing. There is
//! no `delete`: a user who must lose access is disabled, and the record of them stays.

use std::io::{BufRead, IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{bail, Context};
use archive_core::access::names::normalize_user_name;
use archive_core::access::password::MAX_PASSWORD_BYTES;
use archive_core::access::{hash_password, AuditorDomains, Role, UserRecord, Users};

use super::{existing_layout, CmdResult};
use crate::Cli;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Add a user; the password comes from stdin (first line) or, on a terminal, a prompt.
    Add(AddArgs),
    /// List users: name, role, status, addresses or domains (never password hashes).
    List(ListArgs),
    /// Set a user's password (read like `add` reads it).
    Passwd(PasswdArgs),
    /// Refuse a user's logins from now on; nothing is deleted.
    Disable(NameArg),
    /// Allow a disabled user to log in again.
    Enable(NameArg),
    /// Show a user's addresses, or change them with --add and --remove.
    Addresses(AddressesArgs),
    /// Make a new API token for a user's scripts (web API `Authorization: Bearer`); printed
    /// once, only its hash is kept. `--list` lists the user's tokens, `--revoke ID` ends one.
    Token(TokenArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleArg {
    /// Sees mail to or from their addresses.
    User,
    /// Sees all mail of their domains, or of the whole archive.
    Auditor,
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// Login name: a-z 0-9 . _ @ + - (case-insensitive).
    name: String,
    /// What the user sees.
    #[arg(long, value_enum, default_value_t = RoleArg::User)]
    role: RoleArg,
    /// A mail address whose mail a user sees (repeatable; users need at least one).
    #[arg(long = "address", value_name = "ADDRESS")]
    addresses: Vec<String>,
    /// A domain an auditor sees, subdomains included (repeatable).
    #[arg(long = "domain", value_name = "DOMAIN")]
    domains: Vec<String>,
    /// The auditor sees the whole archive.
    #[arg(long, visible_alias = "all")]
    all_domains: bool,
    /// Read the password from the first line of stdin even on a terminal.
    #[arg(long)]
    password_stdin: bool,
    /// Allow addresses other users have (a shared mailbox such as info@: each of them sees
    /// its mail, nobody can log in with it). Without it such an address is refused.
    #[arg(long)]
    share: bool,
}

#[derive(clap::Args, Debug)]
pub struct AddressesArgs {
    /// Login name.
    name: String,
    /// An address to give the user (repeatable).
    #[arg(long = "add", value_name = "ADDRESS")]
    add: Vec<String>,
    /// An address to take from the user (repeatable); a user keeps at least one.
    #[arg(long = "remove", value_name = "ADDRESS")]
    remove: Vec<String>,
    /// Allow added addresses that other users have (see `user add --share`).
    #[arg(long)]
    share: bool,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// One JSON object per user.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct PasswdArgs {
    /// Login name.
    name: String,
    /// Read the password from the first line of stdin even on a terminal.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// Login name.
    name: String,
    /// List the user's tokens (id, created, revoked) instead of making one.
    #[arg(long, conflicts_with = "revoke")]
    list: bool,
    /// Revoke the token with this id (as `--list` shows it); it stays listed.
    #[arg(long, value_name = "ID")]
    revoke: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct NameArg {
    /// Login name.
    name: String,
}

pub fn run(cli: &Cli, command: &Command) -> CmdResult {
    let dir = existing_layout(cli)?.dir;
    match command {
        Command::Add(args) => add(cli, &dir, args),
        Command::List(args) => list(&dir, args),
        Command::Passwd(args) => passwd(cli, &dir, args),
        Command::Disable(args) => set_disabled(cli, &dir, &args.name, true),
        Command::Enable(args) => set_disabled(cli, &dir, &args.name, false),
        Command::Addresses(args) => addresses(cli, &dir, args),
        Command::Token(args) => match (&args.revoke, args.list) {
            (Some(id), _) => revoke_token(cli, &dir, &args.name, id),
            (None, true) => list_tokens(&dir, &args.name),
            (None, false) => token(cli, &dir, &args.name),
        },
    }
}

/// The audit record of a change made (`user-add`, …): the user's name and what changed, never
/// a password or its hash. Only changes are recorded: a refused command or one that found
/// nothing to change leaves no record. If the record cannot be written the change stands,
/// and the command fails saying so.
fn audited(cli: &Cli, action: &str, target: String) -> anyhow::Result<()> {
    super::record_audit(cli, action, target)
        .context("the change is made, but its audit record could not be written")
}

/// A taken address, with what the operator can do about it.
fn with_hint(e: archive_core::Error) -> anyhow::Error {
    match e {
        archive_core::Error::AddressTaken { is_name: false, .. } => anyhow::anyhow!(
            "{e}: an address logs in one user; `--share` gives it to several (each sees its mail, \
             nobody logs in with it), or take it from the other user with \
             `mailvault user addresses NAME --remove ADDRESS`"
        ),
        e => e.into(),
    }
}

fn add(cli: &Cli, dir: &std::path::Path, args: &AddArgs) -> CmdResult {
    let name = normalize_user_name(&args.name)?;
    let role = role(args)?;
    // Refuse early, before asking for a password; checked again under the lock.
    let users = Users::load(dir)?;
    users.check_name_free(&name)?;
    users
        .check_addresses_free(&name, &args.addresses, args.share)
        .map_err(with_hint)?;
    let password = read_new_password(args.password_stdin)?;
    let user = UserRecord::new(&name, role, &password)?;
    let summary = format!("{} ({})", user.name(), scope(user.role()));
    Users::update(dir, |users| {
        if args.share {
            users.add_sharing(user)
        } else {
            users.add(user)
        }
    })
    .map_err(with_hint)?;
    println!("added {summary}");
    audited(cli, "user-add", summary)?;
    warn_shared(&Users::load(dir)?, &name);
    Ok(ExitCode::SUCCESS)
}

fn addresses(cli: &Cli, dir: &std::path::Path, args: &AddressesArgs) -> CmdResult {
    let name = normalize_user_name(&args.name)?;
    if args.add.is_empty() && args.remove.is_empty() {
        let users = Users::load(dir)?;
        let Some(user) = users.get(&name) else {
            bail!("no user named {name:?}");
        };
        match user.role() {
            Role::User { addresses } => addresses.iter().for_each(|a| println!("{a}")),
            Role::Auditor { .. } => bail!("{name} is an auditor: auditors have domains, not addresses"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let changed = Users::update(dir, |users| {
        users.change_addresses(&name, &args.add, &args.remove, args.share)
    })
    .map_err(with_hint)?;
    let users = Users::load(dir)?;
    let now = match users.get(&name).map(UserRecord::role) {
        Some(Role::User { addresses }) => join(addresses),
        _ => String::new(),
    };
    if changed {
        println!("{name} now has {now} (IMAP clients see new mailboxes: UIDVALIDITY changed)");
        audited(
            cli,
            "user-addresses",
            format!(
                "{name} added [{}] removed [{}] now [{now}]",
                args.add.join(", "),
                args.remove.join(", ")
            ),
        )?;
    } else {
        println!("{name} already has {now}");
    }
    warn_shared(&users, &name);
    Ok(ExitCode::SUCCESS)
}

/// Says on stderr which of `name`'s addresses other users share (nobody logs in with those).
fn warn_shared(users: &Users, name: &str) {
    for (address, owners) in users.shared_addresses() {
        if owners.iter().any(|o| o == name) {
            eprintln!(
                "note: {address} is shared by {}: each sees its mail, nobody logs in with it",
                owners.join(", ")
            );
        }
    }
}

/// The role the flags describe; refuses flags that do not belong to it.
fn role(args: &AddArgs) -> anyhow::Result<Role> {
    match args.role {
        RoleArg::User => {
            if !args.domains.is_empty() || args.all_domains {
                bail!("--domain and --all-domains are for auditors (--role auditor); a user has --address");
            }
            if args.addresses.is_empty() {
                bail!("a user needs at least one --address");
            }
            Ok(Role::user(&args.addresses)?)
        }
        RoleArg::Auditor => {
            if !args.addresses.is_empty() {
                bail!("--address is for users; an auditor has --domain or --all-domains");
            }
            match (args.all_domains, args.domains.is_empty()) {
                (true, false) => bail!("--all-domains and --domain exclude each other"),
                (true, true) => Ok(Role::auditor_all()),
                (false, true) => bail!("an auditor needs --domain D (repeatable) or --all-domains"),
                (false, false) => Ok(Role::auditor_of(&args.domains)?),
            }
        }
    }
}

fn list(dir: &std::path::Path, args: &ListArgs) -> CmdResult {
    let users = Users::load(dir)?;
    if args.json {
        for user in users.iter() {
            println!("{}", json_user(user)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let width = users.iter().map(|u| u.name().len()).max().unwrap_or(0).max(4);
    println!("{:width$}  {:7}  {:8}  SCOPE", "NAME", "ROLE", "STATUS");
    for user in users.iter() {
        let status = if user.disabled() { "disabled" } else { "enabled" };
        let scope = match user.role() {
            Role::User { addresses } => join(addresses),
            Role::Auditor {
                domains: AuditorDomains::Only(domains),
            } => join(domains),
            Role::Auditor {
                domains: AuditorDomains::All,
            } => "all domains".into(),
        };
        println!(
            "{:width$}  {:7}  {status:8}  {scope}",
            user.name(),
            user.role().name()
        );
    }
    for (address, owners) in users.shared_addresses() {
        eprintln!(
            "note: {address} is shared by {}: each sees its mail, nobody logs in with it \
             (`mailvault user addresses NAME --remove {address}` to give it to one)",
            owners.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A user as `list --json` shows it: the file's fields, in the file's order, without the
/// password hash.
#[derive(serde::Serialize)]
struct ListedUser<'a> {
    name: &'a str,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    addresses: Option<&'a std::collections::BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domains: Option<&'a std::collections::BTreeSet<String>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    all_domains: bool,
    disabled: bool,
    created: String,
    updated: String,
}

fn json_user(user: &UserRecord) -> anyhow::Result<String> {
    let (addresses, domains, all_domains) = match user.role() {
        Role::User { addresses } => (Some(addresses), None, false),
        Role::Auditor {
            domains: AuditorDomains::Only(domains),
        } => (None, Some(domains), false),
        Role::Auditor {
            domains: AuditorDomains::All,
        } => (None, None, true),
    };
    Ok(serde_json::to_string(&ListedUser {
        name: user.name(),
        role: user.role().name(),
        addresses,
        domains,
        all_domains,
        disabled: user.disabled(),
        created: user.created().to_string(),
        updated: user.updated().to_string(),
    })?)
}

fn passwd(cli: &Cli, dir: &std::path::Path, args: &PasswdArgs) -> CmdResult {
    let name = normalize_user_name(&args.name)?;
    // Refuse an unknown name before asking for a password; checked again under the lock.
    if Users::load(dir)?.get(&name).is_none() {
        bail!("no user named {name:?}");
    }
    let password = read_new_password(args.password_stdin)?;
    // Hash outside the lock: it takes a while, and other edits should not wait for it.
    let hash = hash_password(&password)?;
    Users::update(dir, |users| users.set_password_hash(&name, hash))?;
    println!("changed the password of {name}");
    audited(cli, "user-passwd", format!("{name} password changed"))?;
    Ok(ExitCode::SUCCESS)
}

fn set_disabled(cli: &Cli, dir: &std::path::Path, name: &str, disabled: bool) -> CmdResult {
    let name = normalize_user_name(name)?;
    let changed = Users::update(dir, |users| users.set_disabled(&name, disabled))?;
    let state = if disabled { "disabled" } else { "enabled" };
    if changed {
        println!("{state} {name}");
        let action = if disabled { "user-disable" } else { "user-enable" };
        audited(cli, action, format!("{name} {state}"))?;
    } else {
        println!("{name} was already {state}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A new API token: printed on stdout (once: the users file keeps only its SHA-256), and
/// the note on stderr. Works while `serve` runs: the gate reads the users file per request.
fn token(cli: &Cli, dir: &std::path::Path, name: &str) -> CmdResult {
    let name = normalize_user_name(name)?;
    let (token, id) = Users::update(dir, |users| users.add_token(&name))?;
    println!("{token}");
    eprintln!(
        "token {id} of {name}: shown only now; scripts send it as `Authorization: Bearer <token>` (docs/API.md)"
    );
    audited(cli, "user-token", format!("{name} token {id}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Revokes one token; the next request with it is refused (the gate reads the users file
/// per request, also under a running `serve`).
fn revoke_token(cli: &Cli, dir: &std::path::Path, name: &str, id: &str) -> CmdResult {
    let name = normalize_user_name(name)?;
    Users::update(dir, |users| users.revoke_token(&name, id))?;
    println!("revoked token {id} of {name}");
    audited(cli, "user-token-revoke", format!("{name} token {id}"))?;
    Ok(ExitCode::SUCCESS)
}

/// A user's tokens: id, when made, and when revoked (never a hash).
fn list_tokens(dir: &std::path::Path, name: &str) -> CmdResult {
    let name = normalize_user_name(name)?;
    let users = Users::load(dir)?;
    let Some(user) = users.get(&name) else {
        bail!("no user named {name:?}");
    };
    println!("{:8}  {:20}  REVOKED", "ID", "CREATED");
    for token in user.tokens() {
        let revoked = token.revoked.map_or_else(|| "-".to_string(), |t| t.to_string());
        println!("{:8}  {:20}  {revoked}", token.id, token.created.to_string());
    }
    Ok(ExitCode::SUCCESS)
}

fn scope(role: &Role) -> String {
    match role {
        Role::User { addresses } => format!("user of {}", join(addresses)),
        Role::Auditor {
            domains: AuditorDomains::Only(domains),
        } => format!("auditor of {}", join(domains)),
        Role::Auditor {
            domains: AuditorDomains::All,
        } => "auditor of all domains".into(),
    }
}

fn join(items: &std::collections::BTreeSet<String>) -> String {
    items.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// The new password: the first line of stdin when it is not a terminal (or `--password-stdin`),
/// else typed twice at a prompt without echo.
fn read_new_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        return first_line_of_stdin();
    }
    let first = terminal::prompt_hidden("New password: ")?;
    let again = terminal::prompt_hidden("Repeat it: ")?;
    if first != again {
        bail!("the two passwords differ; nothing changed");
    }
    Ok(first)
}

fn first_line_of_stdin() -> anyhow::Result<String> {
    // Read a bounded amount: a password longer than the limit is refused anyway.
    let mut line = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_PASSWORD_BYTES as u64 + 2)
        .read_until(b'\n', &mut line)
        .context("reading the password from stdin")?;
    if line.is_empty() {
        bail!("no password on stdin (expected it on the first line)");
    }
    if line.ends_with(b"\n") {
        line.pop();
        if line.ends_with(b"\r") {
            line.pop();
        }
    }
    String::from_utf8(line).map_err(|_| anyhow::anyhow!("the password on stdin is not UTF-8"))
}

/// Reading a line from the terminal with echo off, restoring the terminal afterwards.
mod terminal {
    use std::io::{BufRead, Write};

    /// Restores the saved terminal settings when dropped (also on error paths).
    struct EchoOff(libc::termios);

    impl Drop for EchoOff {
        fn drop(&mut self) {
            // SAFETY: tcsetattr on stdin with settings tcgetattr returned for it.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0);
            }
        }
    }

    pub fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd and we check its
        // result before using it.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            t
        };
        let mut silent = saved;
        silent.c_lflag &= !libc::ECHO;
        silent.c_lflag |= libc::ECHONL;
        // SAFETY: as above, with settings derived from the saved ones.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &silent) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let _restore = EchoOff(saved);
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}
