//! `mailvault restore --from-s3`: a new machine's store, rebuilt from the bucket the server
//! offloaded its sealed segments to (docs/OPERATIONS.md §Disaster recovery).
//!
//! Everything happens in a staging directory next to the target, renamed to it only at the
//! end: a restore that fails or is killed leaves nothing that looks like a store. Steps: the
//! segments of the store's `log/` prefix are downloaded (`from_bucket.rs`), the surviving
//! segment files given with `--tail` are copied after them, `verify_log` checks the whole log
//! (chain, leaves, checkpoint signatures, each offload receipt against the segment's BLAKE3),
//! opening the store recovers the tail and rebuilds the indexes, and a `restore` audit record
//! says what was restored and from where.

mod from_bucket;
mod staging;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use archive_core::audit::AuditEvent;
use archive_core::log::checkpoint::LogKey;
use archive_core::log::segment::{list_segments, segment_file_name};
use archive_core::verify::{file_blake3, verify_log, Problem};
use archive_core::Store;
use archive_s3::Bucket;

use super::bucket_identity;
use super::CmdResult;
use crate::Cli;
use from_bucket::{segment_number, BucketSegment};
use staging::Staging;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Take the sealed segments from the bucket of --config's [storage.s3] (the only source so
    /// far).
    #[arg(long, required = true)]
    from_s3: bool,
    /// The serve configuration: its [storage.s3] (endpoint, bucket, prefix, credentials) and
    /// [store] settings.
    #[arg(long)]
    config: PathBuf,
    /// Segment files that survived the loss (the active segment, sealed ones not offloaded
    /// yet): a file, or a directory such as the old `log/` (repeatable).
    #[arg(long, value_name = "PATH")]
    tail: Vec<PathBuf>,
    /// The signing key's backup: copied to the --key path (default <data>/signing.key) when
    /// no key is there. Serve must go on signing with the store's own key.
    #[arg(long, value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// The public key auditors pinned (key string or file): the signing key and the bucket's
    /// identity object must match it.
    #[arg(long)]
    pubkey: Option<String>,
}

/// Where a segment of the restored log came from.
enum Source {
    Bucket(BucketSegment),
    Tail(PathBuf),
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    staging::refuse_non_empty(&cli.data)?;
    let config = crate::config::Config::load(&args.config)?;
    let settings = config
        .storage
        .s3
        .clone()
        .context("--from-s3: the configuration has no [storage.s3]")?;
    let key = SigningKey::find(cli, args)?;
    let origin = key.key.name().to_string();
    let public = key.key.verifier().encode();
    if let Some(pinned) = &args.pubkey {
        if super::pinned_key(pinned)?.encode() != public {
            anyhow::bail!(
                "the signing key {} is not the pinned --pubkey's",
                key.source.display()
            );
        }
    }
    let tail = tail_files(&args.tail)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the S3 client's runtime")?;
    let bucket = Bucket::connect(&settings).context("storage.s3")?;
    let log_prefix = settings.segment_key(&origin, "");
    let place = format!("s3://{}/{log_prefix}", bucket.name());
    match runtime.block_on(bucket_identity::read(&bucket, &settings, &origin))? {
        Some(id) if id.origin == origin && id.public_key == public => {
            println!(
                "bucket identity {}: origin and public key match the signing key",
                settings.identity_key(&origin)
            );
        }
        Some(id) => anyhow::bail!(
            "{}: the bucket's identity object names public key {}, the signing key's is {public}: \
             wrong key, or another store's bucket",
            settings.identity_key(&origin),
            id.public_key
        ),
        None => println!(
            "note: the bucket has no identity object at {} (a store that offloaded before it was \
             written); the log's checkpoints are checked against the signing key's public key",
            settings.identity_key(&origin)
        ),
    }
    let segments = runtime.block_on(from_bucket::segments_in(&bucket, &log_prefix))?;
    if segments.is_empty() && tail.is_empty() {
        anyhow::bail!(
            "no segments of store {origin} under {place}: nothing to restore (wrong bucket or prefix?)"
        );
    }

    let staging = Staging::create(&cli.data)?;
    let layout = staging.layout();
    staging.write_identity(&origin, &public)?;

    let mut sources: BTreeMap<u64, Source> = BTreeMap::new();
    let mut bytes = 0u64;
    for segment in &segments {
        let hash = runtime.block_on(from_bucket::download(&bucket, segment, &layout.log_dir))?;
        bytes += segment.size;
        let others = match segment.others {
            0 => String::new(),
            n => format!(" ({n} other version(s) under the key not taken: not locked, or written later)"),
        };
        println!(
            "segment {}: {} bytes from {} version {}, blake3 {}{others}",
            segment_file_name(segment.first),
            segment.size,
            segment.key,
            segment.version_id,
            super::hex(&hash)
        );
        sources.insert(segment.first, Source::Bucket(segment.clone()));
    }
    for (first, path) in &tail {
        if let Some(Source::Bucket(_)) = sources.get(first) {
            same_as_downloaded(path, &layout.log_dir.join(segment_file_name(*first)))?;
            println!(
                "tail {}: the same bytes as the bucket's, taken from there",
                path.display()
            );
            continue;
        }
        staging::copy_tail(path, &layout.log_dir.join(segment_file_name(*first)))?;
        println!("segment {}: from {}", segment_file_name(*first), path.display());
        sources.insert(*first, Source::Tail(path.clone()));
    }

    // Verify before anything reads the log as a store. The one thing opening the store may
    // still repair is the end of a surviving tail (a torn or unsigned write): then verify again.
    let key_view = key.key.verifier();
    let report = verify_log(&layout.log_dir, &key_view, &[])?;
    let mut tail_needs_recovery = false;
    if let Some(problem) = &report.problem {
        tail_needs_recovery = is_tail_end(problem, &sources)?;
    }
    let store = Store::open(&layout.dir, &key.source, config.store_config())
        .context("opening the restored store (recovering the tail, rebuilding the indexes)")?;
    if let Some(cut) = store.recovered() {
        println!("recovery: {cut}");
    }
    let report = if tail_needs_recovery {
        let again = verify_log(&layout.log_dir, &key_view, &[])?;
        if let Some(problem) = &again.problem {
            anyhow::bail!("the restored log does not verify after recovering its tail: {problem}");
        }
        again
    } else {
        report
    };
    check_receipts(&report.offloads, &sources, bucket.name())?;

    let last_seq = store.stats().last_seq;
    let from_tail = sources.values().filter(|s| matches!(s, Source::Tail(_))).count();
    let lost = if tail.is_empty() {
        format!("; lost: seq {} and every later one", last_seq + 1)
    } else {
        String::new()
    };
    let target = format!(
        "from {place}: {} segments ({bytes} bytes), {from_tail} from --tail; seq 1..{last_seq}{lost}",
        segments.len()
    );
    let seq = store
        .append_audit(&AuditEvent::new(
            &super::cli_actor(),
            "restore",
            target.clone(),
            "local",
        ))
        .context("recording the `restore` audit record")?;
    store.wait_searchable()?;
    store.close()?;
    key.install(cli, &staging)?;
    staging.commit()?;
    key.install_outside(cli)?;

    println!(
        "OK: restored {} records ({} offload receipts checked) into {}; audit record seq {seq}",
        last_seq,
        report.offloads.len(),
        cli.data.display()
    );
    println!("restore: {target}");
    if tail.is_empty() {
        println!(
            "LOST: seq {} and every later one: they were in segments the bucket never got (the active \
             segment, and any sealed one not offloaded yet); give them with --tail if that disk survived",
            last_seq + 1
        );
    }
    println!(
        "next: put users.json back (mode 0600), then `mailvault --data {} --key {} serve --config {}`",
        cli.data.display(),
        cli.key_path().display(),
        args.config.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The signing key restore opens the store with, and where serve will find it.
struct SigningKey {
    key: LogKey,
    /// The file read (the --key path, or the --signing-key backup to be copied there).
    source: PathBuf,
    /// Whether `source` is to be copied to the --key path.
    copy: bool,
}

impl SigningKey {
    fn find(cli: &Cli, args: &Args) -> anyhow::Result<SigningKey> {
        let dest = cli.key_path();
        if dest.exists() {
            let key = LogKey::read(&dest)?;
            if let Some(backup) = &args.signing_key {
                if LogKey::read(backup)?.verifier() != key.verifier() {
                    anyhow::bail!(
                        "--signing-key {} is not the key at {} already",
                        backup.display(),
                        dest.display()
                    );
                }
            }
            return Ok(SigningKey {
                key,
                source: dest,
                copy: false,
            });
        }
        let Some(backup) = &args.signing_key else {
            anyhow::bail!(
                "no signing key at {}: give its backup with --signing-key FILE (copied there), or --key \
                 PATH where it is; the restored store must go on signing with its own key",
                dest.display()
            );
        };
        Ok(SigningKey {
            key: LogKey::read(backup)?,
            source: backup.clone(),
            copy: true,
        })
    }

    /// A --key path inside the data directory: the key goes into the staging directory.
    fn install(&self, cli: &Cli, staging: &Staging) -> anyhow::Result<()> {
        let dest = cli.key_path();
        match dest.strip_prefix(&cli.data) {
            Ok(inside) if self.copy => staging::copy_key(&self.source, &staging.layout().dir.join(inside)),
            _ => Ok(()),
        }
    }

    /// A --key path elsewhere: the key goes there once the store is in place.
    fn install_outside(&self, cli: &Cli) -> anyhow::Result<()> {
        let dest = cli.key_path();
        if self.copy && !dest.starts_with(&cli.data) {
            staging::copy_key(&self.source, &dest)?;
        }
        Ok(())
    }
}

/// The segment files `paths` name (files, or directories of them), by first seq.
fn tail_files(paths: &[PathBuf]) -> anyhow::Result<BTreeMap<u64, PathBuf>> {
    let mut out = BTreeMap::new();
    for path in paths {
        let found = if path.is_dir() {
            list_segments(path)?
        } else {
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(segment_number)
                .with_context(|| {
                    format!(
                        "--tail {}: not a segment file (NNNNNNNNNNNNNNNNNNNN.seg)",
                        path.display()
                    )
                })?;
            vec![(first, path.clone())]
        };
        for (first, file) in found {
            if let Some(earlier) = out.insert(first, file.clone()) {
                anyhow::bail!(
                    "--tail: {} and {} are both segment {}",
                    earlier.display(),
                    file.display(),
                    segment_file_name(first)
                );
            }
        }
    }
    Ok(out)
}

fn same_as_downloaded(tail: &Path, downloaded: &Path) -> anyhow::Result<()> {
    let ours = file_blake3(downloaded).with_context(|| downloaded.display().to_string())?;
    let theirs = file_blake3(tail).with_context(|| tail.display().to_string())?;
    if ours != theirs {
        anyhow::bail!(
            "--tail {} differs from the bucket's copy of the same segment: a sealed segment never changes, \
             so one of them was altered; refusing (verify each)",
            tail.display()
        );
    }
    Ok(())
}

/// Judges what the first verification found: a hole in the sequence (a segment missing from
/// the bucket) or damage is an error naming where the segment came from; the end of the last
/// segment, when it is a surviving tail, is for recovery to cut (a torn or unsigned write):
/// `Ok(true)`.
fn is_tail_end(problem: &Problem, sources: &BTreeMap<u64, Source>) -> anyhow::Result<bool> {
    let name = problem
        .segment
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let first = segment_number(name);
    if let Some(first) = first.filter(|f| problem.offset == 0 && *f > problem.seq) {
        let before = sources
            .range(..first)
            .next_back()
            .map_or("the log's start".to_string(), |(n, _)| {
                format!("segment {}", segment_file_name(*n))
            });
        anyhow::bail!(
            "a gap: seq {}..{} are in no segment (between {before} and segment {name}): the bucket lacks \
             them and no --tail has them; refusing to restore a log with a hole",
            problem.seq,
            first - 1
        );
    }
    let source = first.and_then(|f| sources.get(&f));
    let last = sources.keys().next_back().copied();
    match source {
        Some(Source::Tail(_)) if first == last => Ok(true),
        Some(Source::Tail(path)) => {
            anyhow::bail!("the restored log does not verify: {problem} (taken from {})", path.display())
        }
        Some(Source::Bucket(s)) => anyhow::bail!(
            "the restored log does not verify: {problem} (segment {name} downloaded from s3://…/{} version {})",
            s.key,
            s.version_id
        ),
        None => anyhow::bail!("the restored log does not verify: {problem}"),
    }
}

/// Every offload receipt in the restored log names the object version restore took for its
/// segment (its BLAKE3 `verify_log` compared with the file already); a segment with a
/// receipt that is not in the bucket means the WORM copy lost an object.
fn check_receipts(
    receipts: &[(u64, archive_core::log::record::OffloadReceipt)],
    sources: &BTreeMap<u64, Source>,
    bucket: &str,
) -> anyhow::Result<()> {
    for (seq, r) in receipts {
        let name = segment_file_name(r.segment);
        match sources.get(&r.segment) {
            Some(Source::Bucket(s)) if r.bucket == bucket => {
                if r.key != s.key || (!r.version_id.is_empty() && r.version_id != s.version_id) {
                    anyhow::bail!(
                        "segment {name}: the receipt at seq {seq} records {} version {}, but the locked version \
                         in the bucket is {} version {}",
                        r.key,
                        r.version_id,
                        s.key,
                        s.version_id
                    );
                }
            }
            // Another bucket (a replica): the BLAKE3 check is what holds.
            Some(Source::Bucket(_)) => {}
            Some(Source::Tail(path)) => anyhow::bail!(
                "segment {name}: the receipt at seq {seq} says it was offloaded to s3://{}/{} version {}, but the \
                 bucket does not have it (it came from --tail {}): the WORM copy is incomplete; find out why \
                 before restoring",
                r.bucket,
                r.key,
                r.version_id,
                path.display()
            ),
            None => anyhow::bail!("segment {name}: the receipt at seq {seq} names a segment not restored"),
        }
    }
    Ok(())
}
