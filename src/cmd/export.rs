//! `mailvault export`: a selection of the archive as a bundle a tax auditor or a court
//! verifies offline (`verify-bundle`), or as an mbox file. docs/COMPLIANCE.md walks through it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use archive_core::export::bundle::{latest_checkpoint, BundleRequest, Export, DEFAULT_PER_VOLUME};
use archive_core::export::{seqs_received_between, write_mbox};
use archive_core::log::reader::LogReader;
use archive_core::search::{Query, SearchOptions, Sort, MAX_LIMIT};
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
    /// Bundles of more records (a range) or messages (a query) than this are written as
    /// several volumes, FILE's name with `.N-of-K` before its extension, each a bundle of its
    /// own; `verify-bundle` checks them together. 0: one file whatever the size (the writer's
    /// and the verifier's memory then grows with it, about 0.5 KB per message).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PER_VOLUME)]
    per_volume: u64,
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let layout = existing_layout(cli)?;
    if args.out.exists() {
        bail!("{} exists: an export never overwrites a file", args.out.display());
    }
    let log = LogReader::open(&layout.log_dir)?;
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
    let export = Export::open(&layout, &request)?;
    let count = export.volumes();
    let paths: Vec<PathBuf> = (1..=count).map(|i| volume_path(&args.out, i, count)).collect();
    if let Some(taken) = paths.iter().find(|p| p.exists()) {
        bail!("{} exists: an export never overwrites a file", taken.display());
    }
    // Every volume is written and synced before any gets its name, so a failure halfway
    // leaves no part of the export behind.
    let mut written = Vec::new();
    for (index, path) in (0..count).zip(&paths) {
        let (file, exported) = write_temporary(path, |file| Ok(export.write_volume(index, file)?))?;
        written.push((file, exported));
    }
    // No bundle leaves without its record: the files get their names only after these.
    let mut messages = 0;
    let mut content_bytes = 0;
    for ((file, exported), path) in written.iter().zip(&paths) {
        let volume = match &exported.manifest.volume {
            Some(v) => format!(
                " volume {} of {} (records {}..={})",
                v.index, v.count, v.first_seq, v.last_seq
            ),
            None => String::new(),
        };
        let target = format!(
            "bundle {}{volume} {} messages {} tree size {} sha256 {}",
            path.display(),
            exported.manifest.selection.describe(),
            exported.manifest.message_count,
            exported.manifest.tree_size,
            file.sha256,
        );
        super::record_audit(cli, "export", archive_core::audit::query_text(&target))?;
        messages += exported.manifest.message_count;
        content_bytes += exported.content_bytes;
    }
    let completeness = match (&request.selection, written.first()) {
        (Selection::Range { first_seq, last_seq, .. }, _) if count > 1 => format!(
            "complete with all {count} volumes: every record of seq {first_seq}..={last_seq}, proven by their range proofs"
        ),
        (_, Some((_, exported))) => exported.manifest.completeness.clone(),
        (_, None) => String::new(),
    };
    for ((file, _), path) in written.into_iter().zip(&paths) {
        file.persist(path)?;
    }
    let out = match count {
        1 => args.out.display().to_string(),
        _ => format!(
            "{} volumes, {} … {}",
            count,
            paths[0].display(),
            paths[paths.len() - 1].display()
        ),
    };
    eprintln!(
        "{out}: {messages} messages ({content_bytes} bytes), proven against checkpoint tree size {}; {completeness}",
        export.tree_size(),
    );
    Ok(ExitCode::SUCCESS)
}

/// The file of volume `index` (from 1) of `count`: `out` itself for one, else `out`'s name
/// with `.<index>-of-<count>` before its extension (numbers padded so they sort).
fn volume_path(out: &Path, index: u64, count: u64) -> PathBuf {
    if count == 1 {
        return out.to_path_buf();
    }
    let width = count.to_string().len();
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match out.extension() {
        Some(ext) => format!("{stem}.{index:0width$}-of-{count}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{index:0width$}-of-{count}"),
    };
    out.with_file_name(name)
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
    let mut options = SearchOptions {
        sort: Sort::Oldest,
        limit: MAX_LIMIT,
        cursor: None,
        snippets: false,
    };
    let mut seqs = Vec::new();
    loop {
        let page = super::search::run_search(cli, &principal, &query, &options)?;
        // Every delivery of a hit the principal may see (the first, and later arrivals of the same bytes).
        for hit in &page.hits {
            match hit.deliveries.is_empty() {
                true => seqs.push(hit.seq),
                false => seqs.extend(hit.deliveries.iter().map(|d| d.seq)),
            }
        }
        match page.next_cursor {
            Some(cursor) => options.cursor = Some(cursor),
            None => break,
        }
    }
    if let Some((first, last)) = range {
        seqs.retain(|s| (first..=last).contains(s));
    }
    seqs.sort_unstable();
    seqs.dedup();
    Ok(seqs)
}

/// A file written under a temporary name in its directory, synced, with its SHA-256: a
/// reader never sees a half-written export under the final name, and one dropped before
/// [`Temporary::persist`] leaves nothing behind.
struct Temporary {
    /// Closed: an export of many volumes holds no file descriptor per volume.
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
