//! `mailvault verify-bundle FILE [--key PUB] [--checkpoint OLDER]`: checks an export bundle
//! offline — no data directory, no network — and prints a verdict per message and overall.
//! Exit status 0 valid, 1 invalid (the output names what), 2 usage or I/O.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use archive_verify::bundle::check::{verify_bundle_with, MessageVerdict, Options, Report};

use super::CmdResult;
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The bundle (a ZIP written by `mailvault export`).
    file: PathBuf,
    /// The archive's public key as its operator gave it to you (the key string, or a file
    /// holding it); `--key PUB` means the same here (this command needs no signing key).
    /// Without it, the key the bundle names is used, which proves integrity only.
    #[arg(long, value_name = "PUB")]
    pubkey: Option<String>,
    /// A checkpoint of this archive you kept from earlier (a file): the bundle must extend it.
    #[arg(long, value_name = "OLDER")]
    checkpoint: Option<PathBuf>,
    /// A witness's verifier key as its operator publishes it (the key string, or a file
    /// holding it); repeatable. Each must have cosigned the bundle's anchored checkpoint.
    #[arg(long, value_name = "KEY")]
    witness: Vec<String>,
    /// A time-stamping authority's certificate, or the CA that issued it (PEM file, as the
    /// TSA publishes it); repeatable. Every time-stamp token must lead to one.
    #[arg(long = "tsa-cert", value_name = "PEM")]
    tsa_cert: Vec<PathBuf>,
    /// Print one JSON object (verdict, messages, problems) instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let given = args
        .pubkey
        .clone()
        .or_else(|| cli.key.as_ref().map(|k| k.to_string_lossy().into_owned()));
    let key = given
        .as_deref()
        .map(|k| super::pinned_key(k).context("--key"))
        .transpose()?;
    let older_checkpoint = match &args.checkpoint {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading checkpoint {}", path.display()))?,
        ),
        None => None,
    };
    let witnesses = args
        .witness
        .iter()
        .map(|k| super::witness_key(k).context("--witness"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tsa_pins = super::verify_anchors::pins_from_files(&args.tsa_cert)?;
    let options = Options {
        key,
        older_checkpoint,
        witnesses,
        tsa_pins,
    };
    // Verdicts are written as they come (one line each, buffered), not kept: memory does not
    // grow with the number of messages. The JSON object's members are written by hand for that.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed: std::io::Result<()> = Ok(());
    let mut header_done = false;
    let json = args.json;
    let mut on_message = |report: &Report, m: &MessageVerdict| {
        if failed.is_err() {
            return;
        }
        failed = (|| {
            if !header_done {
                header_done = true;
                match json {
                    true => write!(out, "{{\"messages\":[")?,
                    false => header(&mut out, report)?,
                }
            } else if json {
                write!(out, ",")?;
            }
            match (json, &m.problem) {
                (true, problem) => write!(
                    out,
                    "{}",
                    serde_json::json!({"seq": m.seq, "valid": problem.is_none(), "problem": problem})
                ),
                (false, None) => writeln!(out, "ok       message {}", m.seq),
                (false, Some(p)) => writeln!(out, "INVALID  message {}: {p}", m.seq),
            }
        })();
    };
    let report = verify_bundle_with(&args.file, &options, &mut on_message)
        .with_context(|| format!("reading {}", args.file.display()))?;
    failed?;
    let valid = report.is_valid();
    if args.json {
        if !header_done {
            write!(out, "{{\"messages\":[")?;
        }
        // The rest of the object after "messages": each member as serde_json writes it.
        let rest = serde_json::json!({
            "valid": valid,
            "problems": report.problems,
            "more_problems": report.more_problems,
            "proven": report.proven,
            "caveats": report.caveats,
        });
        let rest = rest.to_string();
        let members = rest.strip_prefix('{').unwrap_or(&rest);
        writeln!(out, "],{members}")?;
    } else {
        if !header_done {
            header(&mut out, &report)?;
        }
        for p in &report.problems {
            writeln!(out, "INVALID  {p}")?;
        }
        if report.more_problems > 0 {
            writeln!(out, "INVALID  … and {} more problems", report.more_problems)?;
        }
        for p in &report.proven {
            writeln!(out, "proven   {p}")?;
        }
        for c in &report.caveats {
            writeln!(out, "note     {c}")?;
        }
        match valid {
            true => writeln!(out, "VALID: {} messages authentic", report.messages)?,
            false => writeln!(
                out,
                "NOT VALID: {} of {} messages fail, {} other problems",
                report.failed_count(),
                report.messages,
                report.problems.len() as u64 + report.more_problems
            )?,
        }
    }
    out.flush()?;
    Ok(ExitCode::from(if valid { 0 } else { 1 }))
}

/// What the bundle is and its checkpoint, before the verdicts.
fn header(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    if let Some(m) = &report.manifest {
        writeln!(
            out,
            "bundle of {} ({} messages), exported {} by {}",
            m.origin, m.message_count, m.exported_at, m.exported_by
        )?;
    }
    if let Some(cp) = &report.checkpoint {
        writeln!(out, "checkpoint: tree size {}, signature valid", cp.size)?;
    }
    Ok(())
}
