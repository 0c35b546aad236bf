//! `mailvault show SEQ`: the stored message, byte-exact, on stdout.

use std::io::Write;
use std::process::ExitCode;

use super::{open_log_with, CmdResult};
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Record sequence number (a message or arrival record).
    seq: u64,
    /// The serve configuration: a message in a segment evicted to S3 (`[storage.s3]
    /// cache_size`) is read from its bucket.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let log = open_log_with(cli, args.config.as_deref())?;
    let bytes = log.message_bytes(args.seq)?;
    // Reading a message is an access: recorded before the bytes leave.
    super::record_read(cli, "raw", format!("cli seq {}", args.seq));
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
