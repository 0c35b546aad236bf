//! `mailvault verify`: recompute everything; exit 0 intact, 1 tampered, 2 usage/IO error.

use std::path::PathBuf;
use std::process::ExitCode;

use archive_core::verify::verify_log;

use super::{existing_layout, read_checkpoint_file, verifier_key, CmdResult};
use crate::Cli;

/// Exit code when the log does not verify.
const EXIT_TAMPERED: u8 = 1;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint kept earlier (repeatable): the log must still contain that tree.
    #[arg(long)]
    checkpoint: Vec<PathBuf>,
    /// The public key to trust (key string or file), instead of the one stored with the log.
    #[arg(long)]
    pubkey: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let layout = existing_layout(cli)?;
    let key = verifier_key(&layout, args.pubkey.as_deref())?;
    let pinned = args
        .checkpoint
        .iter()
        .map(|p| read_checkpoint_file(p, &key))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = verify_log(&layout.log_dir, &key, &pinned)?;
    if let Some(problem) = &report.problem {
        println!("TAMPERED: {problem}");
        println!("{} records before it verified", report.records);
        return Ok(ExitCode::from(EXIT_TAMPERED));
    }
    let kinds = ["message", "arrival", "audit", "checkpoint", "dictionary"]
        .iter()
        .map(|k| format!("{} {k}", report.by_kind.get(k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "OK: {} records ({kinds}) in {} segments",
        report.records, report.segments
    );
    println!("tree root {}", base64_root(&report.root));
    match report.last_checkpoint {
        Some((seq, size)) => println!(
            "latest checkpoint at seq {seq} covers {size} records; {} records after it not yet signed",
            report.unsigned_tail()
        ),
        None if report.records > 0 => println!("no checkpoint in the log yet: nothing is signed"),
        None => {}
    }
    for size in &report.pinned_ok {
        println!("pinned checkpoint of size {size}: consistent");
    }
    Ok(ExitCode::SUCCESS)
}

fn base64_root(root: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(root)
}
