//! `mailvault export`: a selection of the archive as a bundle a tax auditor or a court
//! verifies offline (`verify-bundle`), or as an mbox file. docs/COMPLIANCE.md walks through it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use archive_core::export::bundle::{latest_checkpoint, BundleRequest, Export, DEFAULT_PER_VOLUME};
use archive_core::export::{selected_deliveries, seqs_received_between, write_mbox};
use archive_core::log::reader::LogReader;
use archive_core::search::Query;
use archive_verify::bundle::Selection;
use sha2::{Digest, Sha256};

use super::{existing_layout, CmdResult};
use crate::Cli;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A ZIP with the messages, their proofs, listings and a GDPdU description.
    Bundle,
    /// An mboxrd file of the messages for mail programs (`mailvault import` reads it back
    /// byte for byte); no proofs.
    Mbox,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Export what this search query finds (docs/SEARCH.md); each message is proven
    /// authentic, but a filter's completeness cannot be proven offline.
    #[arg(long)]
    query: Option<String>,
    /// With --query: search as this principal (like `mailvault search --as`).
    #[arg(long = "as", value_name = "PRINCIPAL", requires = "query")]
    principal: Option<String>,
    /// First record of a range export (with --to-seq).
    #[arg(long, requires = "to_seq", conflicts_with_all = ["since", "until"])]
    from_seq: Option<u64>,
    /// Last record of a range export (with --from-seq).
    #[arg(long, requires = "from_seq")]
    to_seq: Option<u64>,
    /// Records received at or after this time (a date, 2026-01-01, or RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Records received before this time (a date includes that day).
    #[arg(long)]
    until: Option<String>,
    /// Include a consistency proof from this older tree size (a checkpoint the recipient kept);
    /// may be given more than once.
    #[arg(long, value_name = "TREE_SIZE")]
    consistency_from: Vec<u64>,
    /// The file to write; it must not exist.
    #[arg(long)]
    out: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value_t = Format::Bundle)]
    format: Format,
    /// Where the archive is operated, for the GDPdU description (default: this host's name).
    #[arg(long)]
    location: Option<String>,
    /// A selection of more records (a range) or messages (a query) than this is written as
    /// several volumes, each a bundle of its own, stored in FILE under `volumes/`;
    /// `verify-bundle FILE` checks them all and as a set. 0: one bundle whatever the size (the
    /// writer's and the verifier's memory then grows with it, about 0.5 KB per message).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PER_VOLUME)]
    per_volume: u64,
    /// The serve configuration: messages in segments evicted to S3 (`[storage.s3]
    /// cache_size`) are read from its bucket.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let layout = existing_layout(cli)?;
    if args.out.exists() {
        bail!("{} exists: an export never overwrites a file", args.out.display());
    }
    let evicted = super::evicted_reads(&layout, args.config.as_deref())?;
    let log = LogReader::open_with(&layout.log_dir, evicted.clone())?;
    let size = latest_checkpoint(&layout, &log)?.checkpoint.size;
    let range = seq_range(args, &log, size)?;
    let (selection, seqs) = match &args.query {
        Some(text) => {
            let seqs = search_all(cli, args, text, range)?;
            let principal = args
                .principal
                .clone()
                .unwrap_or_else(|| "operator (all mail)".into());
            (
                Selection::Filter {
                    query: text.clone(),
                    principal,
                },
                seqs,
            )
        }
        None => {
            let Some((first_seq, last_seq)) = range else {
                bail!("nothing selected: give --query, --from-seq/--to-seq, or --since/--until");
            };
            let selection = Selection::Range {
                first_seq,
                last_seq,
                since: args.since.as_deref().map(normalized_time).transpose()?,
                until: args.until.as_deref().map(normalized_until).transpose()?,
            };
            (selection, Vec::new())
        }
    };
    if args.format == Format::Mbox {
        return export_mbox(cli, args, &log, &selection, &seqs);
    }
    let request = BundleRequest {
        selection,
        seqs,
        exported_by: super::cli_actor(),
        location: args.location.clone().unwrap_or_else(host_name),
        consistency_from: args.consistency_from.clone(),
        per_volume: args.per_volume,
    };
    let export = Export::open_with(&layout, &request, LogReader::open_with(&layout.log_dir, evicted)?)?;
    let stem = args
        .out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (file, summary) = write_temporary(&args.out, |file| {
        Ok(export.write(file, &stem, &parent_dir(&args.out))?)
    })?;
    let volumes = match summary.volumes {
        1 => String::new(),
        n => format!(" {n} volumes"),
    };
    let target = format!(
        "bundle {}{volumes} {} messages {} tree size {} sha256 {}",
        args.out.display(),
        export.selection().describe(),
        summary.messages,
        summary.tree_size,
        file.sha256,
    );
    // No bundle leaves without its record: the file gets its name only after this.
    super::record_audit(cli, "export", archive_core::audit::query_text(&target))?;
    file.persist(&args.out)?;
    eprintln!(
        "{}: {} messages ({} bytes){}, proven against checkpoint tree size {}; {}",
        args.out.display(),
        summary.messages,
        summary.content_bytes,
        match summary.volumes {
            1 => String::new(),
            n => format!(" in {n} volumes (each a bundle, stored under volumes/)"),
        },
        summary.tree_size,
        summary.completeness
    );
    Ok(ExitCode::SUCCESS)
}

/// `--format mbox`: the same selection as an mboxrd file, with its own audit record.
fn export_mbox(cli: &Cli, args: &Args, log: &LogReader, selection: &Selection, seqs: &[u64]) -> CmdResult {
    let (first, last, only) = match selection {
        Selection::Range {
            first_seq, last_seq, ..
        } => (*first_seq, *last_seq, None),
        Selection::Filter { .. } => match (seqs.first(), seqs.last()) {
            (Some(f), Some(l)) => (*f, *l, Some(seqs)),
            _ => bail!("the query found no messages: nothing to export"),
        },
    };
    let (file, written) = write_temporary(&args.out, |file| Ok(write_mbox(log, first, last, only, file)?))?;
    let target = format!(
        "mbox {} {} messages {written} sha256 {}",
        args.out.display(),
        selection.describe(),
        file.sha256
    );
    // No file leaves without its record: it gets its name only after this.
    super::record_audit(cli, "export", archive_core::audit::query_text(&target))?;
    file.persist(&args.out)?;
    eprintln!(
        "{}: {written} messages as mbox (no proofs: use the bundle format for evidence)",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// This machine's host name, or empty when it has none.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The seq range the options select, or `None` for no range option.
fn seq_range(args: &Args, log: &LogReader, size: u64) -> anyhow::Result<Option<(u64, u64)>> {
    if let (Some(first), Some(last)) = (args.from_seq, args.to_seq) {
        if first == 0 || first > last {
            bail!("--from-seq {first} --to-seq {last} is not a range (seqs count from 1)");
        }
        if last > size {
            bail!("record {last} is not covered by the latest checkpoint (it covers 1..={size})");
        }
        return Ok(Some((first, last)));
    }
    if args.since.is_none() && args.until.is_none() {
        return Ok(None);
    }
    let since = args
        .since
        .as_deref()
        .map(super::audit::parse_since)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let until = args
        .until
        .as_deref()
        .map(super::audit::parse_until)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    match seqs_received_between(log, since, until, size)? {
        Some(range) => Ok(Some(range)),
        None => bail!("no record was received in that time range (among records 1..={size})"),
    }
}

fn normalized_time(s: &str) -> anyhow::Result<String> {
    let us = super::audit::parse_since(s).map_err(anyhow::Error::msg)?;
    Ok(archive_verify::bundle::row::format_time_us(us))
}

fn normalized_until(s: &str) -> anyhow::Result<String> {
    let us = super::audit::parse_until(s).map_err(anyhow::Error::msg)?;
    Ok(archive_verify::bundle::row::format_time_us(us))
}

/// Every message seq the query finds, ascending (within `range` when given).
fn search_all(cli: &Cli, args: &Args, text: &str, range: Option<(u64, u64)>) -> anyhow::Result<Vec<u64>> {
    let principal = super::search::principal(args.principal.as_deref(), &cli.data)?;
    let query = Query::parse(text).map_err(|e| anyhow::anyhow!("query {text:?}: {e}"))?;
    let mut seqs = selected_deliveries(
        |options| super::search::run_search(cli, &principal, &query, options, args.config.as_deref()),
        None,
    )?;
    if let Some((first, last)) = range {
        seqs.retain(|s| (first..=last).contains(s));
    }
    Ok(seqs)
}

/// A file written under a temporary name in its directory, synced, with its SHA-256: a
/// reader never sees a half-written export under the final name, and one dropped before
/// [`Temporary::persist`] leaves nothing behind.
struct Temporary {
    file: tempfile::TempPath,
    sha256: String,
}

/// Writes a new file for `path` (see [`Temporary`]).
fn write_temporary<T>(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> anyhow::Result<T>,
) -> anyhow::Result<(Temporary, T)> {
    let dir = parent_dir(path);
    let mut file = tempfile::Builder::new()
        .prefix(".mailvault-export-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let value = write(file.as_file_mut())?;
    file.as_file().sync_all().context("syncing the export")?;
    let mut written = std::fs::File::open(file.path()).context("reading the export back")?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut written, &mut hasher).context("reading the export back")?;
    let sha256 = archive_verify::bundle::row::hex(&hasher.finalize());
    let file = file.into_temp_path();
    Ok((Temporary { file, sha256 }, value))
}

impl Temporary {
    /// Gives the file its name (never replacing one) and syncs the directory.
    fn persist(self, path: &Path) -> anyhow::Result<()> {
        self.file
            .persist_noclobber(path)
            .map_err(|e| e.error)
            .with_context(|| format!("writing {}", path.display()))?;
        std::fs::File::open(parent_dir(path))
            .and_then(|d| d.sync_all())
            .ok();
        Ok(())
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
