//! `mailvault show SEQ`: the stored message, byte-exact, on stdout.

use std::io::Write;
use std::process::ExitCode;

use super::{open_log, CmdResult};
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Record sequence number (a message or arrival record).
    seq: u64,
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let log = open_log(cli)?;
    let bytes = log.message_bytes(args.seq)?;
    // Reading a message is an access: recorded before the bytes leave.
    super::record_read(cli, "raw", format!("cli seq {}", args.seq));
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
