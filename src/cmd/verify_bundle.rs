//! `mailvault verify-bundle FILE… [--key PUB] [--checkpoint OLDER]`: checks export bundles
//! offline — no data directory, no network — and prints a verdict per message and overall.
//! Several files, and the volumes inside a container file, are checked one after the other
//! (memory does not grow with their number), then as a set: the volumes of an export must all
//! be there and belong together.
//! Exit status 0 valid, 1 invalid (the output names what), 2 usage or I/O.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use archive_verify::bundle::check::{check_volume_set, verify_path, Options, Progress, Report};

use super::CmdResult;
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The bundle (a ZIP written by `mailvault export`, a bundle or a container of volumes);
    /// for volumes unpacked from a container, all of them.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
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
    let json = args.json;
    let mut several = args.files.len() > 1;
    let mut first_verdict = true;
    let mut reports: Vec<(String, Report)> = Vec::new();
    if json {
        write!(out, "{{\"messages\":[")?;
    }
    for path in &args.files {
        let mut failed: std::io::Result<()> = Ok(());
        // The bundle whose header is out; a container's volumes are named `FILE:volumes/…`.
        let mut headed: Option<String> = None;
        let mut on_progress = |name: &str, report: &Report, progress: Progress| {
            if failed.is_err() {
                return;
            }
            several |= name.contains(':');
            failed = (|| {
                if !json && headed.as_deref() != Some(name) {
                    headed = Some(name.to_string());
                    // A container's own report is only worth a header when it found something.
                    let empty =
                        matches!(progress, Progress::Done) && report.manifest.is_none() && report.is_valid();
                    if !empty {
                        header(&mut out, several.then_some(name), report)?;
                    }
                }
                match (progress, json) {
                    (Progress::Message(m), true) => {
                        if !std::mem::take(&mut first_verdict) {
                            write!(out, ",")?;
                        }
                        let mut verdict = serde_json::json!({"seq": m.seq, "valid": m.problem.is_none(), "problem": m.problem});
                        if several {
                            verdict["file"] = name.into();
                        }
                        write!(out, "{verdict}")
                    }
                    (Progress::Message(m), false) => match &m.problem {
                        None => writeln!(out, "ok       message {}", m.seq),
                        Some(p) => writeln!(out, "INVALID  message {}: {p}", m.seq),
                    },
                    (Progress::Done, true) => Ok(()),
                    (Progress::Done, false) => {
                        findings(&mut out, report)?;
                        if several && (report.manifest.is_some() || !report.is_valid()) {
                            let verdict = if report.is_valid() { "valid" } else { "NOT valid" };
                            writeln!(out, "bundle {name}: {verdict}")?;
                        }
                        Ok(())
                    }
                }
            })();
        };
        let named = verify_path(path, &options, &mut on_progress)
            .with_context(|| format!("reading {}", path.display()))?;
        failed?;
        reports.extend(named);
    }
    let named: Vec<(&str, &Report)> = reports.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let set = check_volume_set(&named);
    let valid = set.is_valid() && reports.iter().all(|(_, r)| r.is_valid());
    let messages: u64 = reports.iter().map(|(_, r)| r.messages).sum();
    let failed: u64 = reports.iter().map(|(_, r)| r.failed_count()).sum();
    if json {
        // Each bundle's findings, named by file when there are several, then the set's.
        let mut problems = Vec::new();
        let mut more_problems = set.more_problems;
        let (mut proven, mut caveats) = (Vec::new(), Vec::new());
        let mut bundles = Vec::new();
        for (name, r) in &reports {
            let named = |text: &String| match several {
                true => format!("{name}: {text}"),
                false => text.clone(),
            };
            problems.extend(r.problems.iter().map(named));
            proven.extend(r.proven.iter().map(named));
            caveats.extend(r.caveats.iter().map(named));
            more_problems += r.more_problems;
            let volume = r.manifest.as_ref().and_then(|m| m.volume.as_ref());
            bundles.push(serde_json::json!({
                "file": name,
                "valid": r.is_valid(),
                "messages": r.messages,
                "volume": volume.map(|v| serde_json::json!({"index": v.index, "count": v.count, "export_id": v.export_id})),
            }));
        }
        problems.extend(set.problems.iter().cloned());
        proven.extend(set.proven.iter().cloned());
        // The rest of the object after "messages": each member as serde_json writes it.
        let rest = serde_json::json!({
            "valid": valid,
            "problems": problems,
            "more_problems": more_problems,
            "proven": proven,
            "caveats": caveats,
            "bundles": bundles,
        });
        let rest = rest.to_string();
        let members = rest.strip_prefix('{').unwrap_or(&rest);
        writeln!(out, "],{members}")?;
    } else {
        if several || !set.problems.is_empty() || !set.proven.is_empty() {
            if several {
                writeln!(out, "== all together")?;
            }
            findings(&mut out, &set)?;
        }
        let others: u64 = reports
            .iter()
            .map(|(_, r)| r.problems.len() as u64 + r.more_problems)
            .sum::<u64>()
            + set.problems.len() as u64
            + set.more_problems;
        match valid {
            true => writeln!(out, "VALID: {messages} messages authentic")?,
            false => writeln!(
                out,
                "NOT VALID: {failed} of {messages} messages fail, {others} other problems"
            )?,
        }
    }
    out.flush()?;
    Ok(ExitCode::from(if valid { 0 } else { 1 }))
}

/// What the bundle is and its checkpoint, before the verdicts (with its file name when
/// several are checked).
fn header(out: &mut impl Write, file: Option<&str>, report: &Report) -> std::io::Result<()> {
    if let Some(file) = file {
        writeln!(out, "== {file}")?;
    }
    if let Some(m) = &report.manifest {
        let volume = match &m.volume {
            Some(v) => format!(", volume {} of {} of export {}", v.index, v.count, v.export_id),
            None => String::new(),
        };
        writeln!(
            out,
            "bundle of {} ({} messages{volume}), exported {} by {}",
            m.origin, m.message_count, m.exported_at, m.exported_by
        )?;
    }
    if let Some(cp) = &report.checkpoint {
        writeln!(out, "checkpoint: tree size {}, signature valid", cp.size)?;
    }
    Ok(())
}

/// What was found beyond the messages' verdicts.
fn findings(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
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
    Ok(())
}
