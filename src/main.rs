//! `mailvault`: the one binary. Parses the command line, opens the store, and hands each
//! subcommand to its module under `cmd/`. Errors print as one line and exit non-zero.

/// jemalloc, not glibc's malloc: `serve` allocates on many threads (tokio's, the blocking
/// pool's, the indexers') and frees on others, where glibc's arenas spend time on contention
/// and consolidation (a tenth of the web API's extra CPU per search in `perf`). In bench/web
/// (2026-12-07, 1M messages, means of six runs each) a search got ~6 % cheaper in-process
/// (1 thread: 273/s against 257/s) and over the API (1 client: 222/s against 211/s).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod cmd;
mod config;
mod import;
mod logging;
mod remote_segments;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Revision-proof mail archive: append-only, hash-chained, signed.
#[derive(Parser, Debug)]
#[command(name = "mailvault", version, about)]
pub struct Cli {
    /// Store directory.
    #[arg(
        long,
        global = true,
        env = "MAILVAULT_DATA",
        default_value = "./mailvault-data"
    )]
    data: PathBuf,

    /// Signing key file (default: <data>/signing.key).
    #[arg(long, global = true, env = "MAILVAULT_KEY")]
    key: Option<PathBuf>,

    /// Whether `--data` is the built-in default (neither the option nor MAILVAULT_DATA was
    /// given): only there may `serve` create a store without `--create`.
    #[arg(skip)]
    data_is_default: bool,

    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The signing key path in effect.
    pub fn key_path(&self) -> PathBuf {
        self.key
            .clone()
            .unwrap_or_else(|| archive_core::store::Layout::new(&self.data).default_key)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the archive: SMTP/LMTP intake and IMAP on loopback by default; creates the store on
    /// first start only in ./mailvault-data (elsewhere `init` first, or `--create`).
    Serve(cmd::serve::Args),
    /// Check a deployment (store, key, disk, listeners, certificates, users, Postfix) and say
    /// what to fix; exit 1 when a check fails.
    Doctor(cmd::doctor::Args),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create a store and its signing key (refuses to overwrite either).
    Init,
    /// Archive messages, mbox files, Maildirs and MH folders (told apart by content).
    Import(cmd::import::Args),
    /// List records: seq, kind, receive time, content hash, size, envelope sender.
    Log(cmd::log::Args),
    /// List the access trail (audit records): who did what, on what, from where.
    Audit(cmd::audit::Args),
    /// Write a stored message to stdout, byte-exact.
    Show(cmd::show::Args),
    /// Recompute everything from the raw bytes; exit 0 intact, 1 tampered, 2 usage/IO error.
    Verify(cmd::verify::Args),
    /// Print the latest signed checkpoint.
    Checkpoint,
    /// Export a range or a search as a bundle that verifies offline (docs/COMPLIANCE.md).
    Export(cmd::export::Args),
    /// Check an export bundle offline; exit 0 valid, 1 invalid, 2 usage/IO error.
    VerifyBundle(cmd::verify_bundle::Args),
    /// Print an inclusion proof of a record, as JSON.
    Proof(cmd::proof::Args),
    /// Key operations.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Counts, bytes, on-disk ratio, latest checkpoint.
    Status(cmd::status::Args),
    /// Rebuild the derived indexes from the log.
    Reindex(cmd::reindex::Args),
    /// Rebuild a store on a new machine from its object-storage copy (--from-s3), verified.
    Restore(cmd::restore::Args),
    /// Search the archive (query language: docs/SEARCH.md); one line or JSON object per hit.
    Search(cmd::search::Args),
    /// Local users of the IMAP and web front doors (Argon2id passwords; disabled, never deleted).
    User {
        #[command(subcommand)]
        command: cmd::user::Command,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print a documented configuration file with every default.
    Example,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Print the public key, for auditors to pin.
    Show,
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`mailvault log | head`) instead of failing on a broken pipe.
    // SAFETY: restoring a default signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.data_is_default = matches.value_source("data") == Some(ValueSource::DefaultValue);
    let result = match &cli.command {
        Command::Serve(args) => cmd::serve::run(&cli, args),
        Command::Doctor(args) => cmd::doctor::run(&cli, args),
        Command::Config {
            command: ConfigCommand::Example,
        } => cmd::config::example(),
        Command::Init => cmd::init::run(&cli),
        Command::Import(args) => cmd::import::run(&cli, args),
        Command::Log(args) => cmd::log::run(&cli, args),
        Command::Audit(args) => cmd::audit::run(&cli, args),
        Command::Show(args) => cmd::show::run(&cli, args),
        Command::Verify(args) => cmd::verify::run(&cli, args),
        Command::Checkpoint => cmd::checkpoint::run(&cli),
        Command::Export(args) => cmd::export::run(&cli, args),
        Command::VerifyBundle(args) => cmd::verify_bundle::run(&cli, args),
        Command::Proof(args) => cmd::proof::run(&cli, args),
        Command::Key {
            command: KeyCommand::Show,
        } => cmd::key::show(&cli),
        Command::Status(args) => cmd::status::run(&cli, args),
        Command::Reindex(args) => cmd::reindex::run(&cli, args),
        Command::Restore(args) => cmd::restore::run(&cli, args),
        Command::Search(args) => cmd::search::run(&cli, args),
        Command::User { command } => cmd::user::run(&cli, command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes (a cause the message already quotes, like
            // the I/O error in "PATH: ERROR", is not repeated).
            let mut line = format!("mailvault: {e}");
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !line.contains(&cause) {
                    line.push_str(&format!(": {cause}"));
                }
            }
            eprintln!("{line}");
            ExitCode::from(cmd::EXIT_FAILURE)
        }
    }
}
