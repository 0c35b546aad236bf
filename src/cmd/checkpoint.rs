//! `mailvault checkpoint`: the latest signed checkpoint, as text.

use std::process::ExitCode;

use super::{open_log, CmdResult};
use crate::Cli;

pub fn run(cli: &Cli) -> CmdResult {
    let log = open_log(cli)?;
    match log.latest_checkpoint()? {
        Some((_, note)) => {
            print!("{note}");
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("the log has no checkpoint yet (one is written when records are appended)"),
    }
}
