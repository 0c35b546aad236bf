//! `mailvault import PATH…`: archive files, directories, mbox files, Maildirs and MH folders,
//! with a progress bar and a summary of imported / duplicates / failed / skipped. A file that
//! is not mail by its content is skipped and named; anything failed or skipped makes the exit
//! code 1.
//!
//! Workers take batches of inputs and append each batch with one fsync; several workers run
//! at once so zstd uses every core. A message is durable before it is counted as imported.
//! The full-text index is left to the next process that serves or searches (DESIGN.md:
//! derived state catches up at start-up).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Mutex;

use archive_core::{Envelope, OnDuplicate, SearchIndexing, Store, StoreConfig};
use indicatif::{ProgressBar, ProgressStyle};

use super::{hex, CmdResult};
use crate::import::{walk, Format, Item};
use crate::Cli;

/// Exit code when some inputs could not be archived, or were skipped as not mail.
pub(super) const EXIT_SOME_FAILED: u8 = 1;
/// Concurrent appenders (compression runs in them, on every core).
const WORKERS: usize = 4;
/// Inputs appended together: one fsync makes a whole batch durable…
const BATCH: usize = 256;
/// …up to this many bytes, which also bounds the memory of batches in flight.
const BATCH_BYTES: usize = 8 << 20;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files, directories, mbox files, Maildirs or MH folders; or one IMAP mailbox,
    /// imaps://user@host[:port]/Folder (imap:// upgrades with STARTTLS).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// How to read the paths.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
    /// One JSON object per input on stdout (source, status, seq, blake3 or error, note).
    #[arg(long)]
    pub(super) json: bool,
    /// Create the store (and its signing key) if there is none at --data.
    #[arg(long)]
    pub(super) create: bool,
    #[command(flatten)]
    pub(super) imap: super::import_imap::ImapArgs,
}

#[derive(serde::Serialize)]
pub(super) struct Outcome {
    pub(super) source: String,
    pub(super) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) blake3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    /// Something about how the input was read that the user should know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) note: Option<String>,
    #[serde(skip)]
    pub(super) bytes: u64,
}

#[derive(Default)]
pub(super) struct Summary {
    pub(super) imported: u64,
    pub(super) duplicates: u64,
    pub(super) failed: u64,
    skipped: u64,
    ignored: u64,
    pub(super) bytes: u64,
}

impl Outcome {
    /// An input that was not archived: `failed`, `skipped` (not mail) or `ignored` (a mail
    /// client's index file), and why.
    pub(super) fn not_archived(status: &'static str, source: String, error: Option<String>) -> Outcome {
        Outcome {
            source,
            status,
            seq: None,
            blake3: None,
            error,
            note: None,
            bytes: 0,
        }
    }
}

/// Archives a batch of inputs with one durable append for all its messages.
fn archive(store: &Store, items: Vec<Item>) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Item::Failed { source, reason } => {
                outcomes.push(Outcome::not_archived("failed", source, Some(reason)))
            }
            Item::Skipped { source, reason } => {
                outcomes.push(Outcome::not_archived("skipped", source, Some(reason)))
            }
            Item::Ignored { source } => outcomes.push(Outcome::not_archived("ignored", source, None)),
            Item::Message {
                source,
                mail_from,
                bytes,
                note,
            } => {
                let envelope = Envelope::imported(source.clone(), &mail_from);
                messages.push((source, envelope, bytes, note));
            }
        }
    }
    let batch: Vec<(&Envelope, &[u8])> = messages.iter().map(|(_, e, b, _)| (e, b.as_slice())).collect();
    match store.append_messages(&batch, OnDuplicate::Skip) {
        Ok(appended) => {
            for ((source, _, bytes, note), a) in messages.into_iter().zip(appended) {
                outcomes.push(Outcome {
                    source,
                    status: if a.kind.is_some() { "imported" } else { "duplicate" },
                    seq: Some(a.seq),
                    blake3: Some(hex(&a.content_hash)),
                    error: None,
                    note,
                    bytes: bytes.len() as u64,
                });
            }
        }
        Err(e) => {
            for (source, _, _, _) in messages {
                outcomes.push(Outcome::not_archived("failed", source, Some(e.to_string())));
            }
        }
    }
    outcomes
}

/// Groups inputs into batches of at most `BATCH` inputs or `BATCH_BYTES` bytes.
struct Batcher {
    items: Vec<Item>,
    bytes: usize,
}

impl Batcher {
    /// Adds an input; returns a full batch when this one completes it.
    fn push(&mut self, item: Item) -> Option<Vec<Item>> {
        if let Item::Message { bytes, .. } = &item {
            self.bytes += bytes.len();
        }
        self.items.push(item);
        (self.items.len() >= BATCH || self.bytes >= BATCH_BYTES).then(|| self.take())
    }

    fn take(&mut self) -> Vec<Item> {
        self.bytes = 0;
        std::mem::take(&mut self.items)
    }
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    if let Some(url) = super::import_imap::url_among(&args.paths)? {
        if args.format != Format::Auto {
            anyhow::bail!("--format is for files; an IMAP mailbox is read as messages");
        }
        return super::import_imap::run(cli, args, url);
    }
    args.imap.refuse_without_url()?;
    // The log and the key-value index are written now; the full-text index follows on the
    // next open that serves or searches, in large batches instead of competing with zstd.
    let config = StoreConfig {
        search_indexing: SearchIndexing::Deferred,
        ..StoreConfig::default()
    };
    if let Some(identity) = super::ensure_store(cli, args.create, "mailvault import")? {
        eprintln!(
            "created store {} (origin {}); signing key {}: back it up, apart from the store",
            cli.data.display(),
            identity.origin,
            cli.key_path().display()
        );
    }
    let store = Store::open(&cli.data, &cli.key_path(), config)?;
    if let Some(cut) = store.recovered() {
        eprintln!("mailvault: recovery: {cut} (audited)");
    }
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let summary = Mutex::new(Summary::default());
    let (batches_tx, batches_rx) = mpsc::sync_channel::<Vec<Item>>(WORKERS);
    let batches_rx = Mutex::new(batches_rx);
    let walked = std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let batch = match batches_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(batch) = batch else { return };
                for outcome in archive(&store, batch) {
                    report(&outcome, args.json, &progress, &summary);
                }
            });
        }
        let mut batcher = Batcher {
            items: Vec::new(),
            bytes: 0,
        };
        let walked = walk(&args.paths, args.format, &mut |item| match batcher.push(item) {
            Some(batch) => batches_tx.send(batch).is_ok(),
            None => true,
        });
        let rest = batcher.take();
        if !rest.is_empty() {
            let _ = batches_tx.send(rest);
        }
        drop(batches_tx);
        walked
    });
    progress.finish_and_clear();
    walked?;
    let stats = store.stats();
    store.close()?;
    let s = summary.into_inner().unwrap_or_default();
    let ignored = match s.ignored {
        0 => String::new(),
        n => format!(", ignored {n} mail-client index files"),
    };
    eprintln!(
        "imported {}, duplicates {}, failed {}, skipped {} (not mail){ignored} ({:.1} MB archived) into {}",
        s.imported,
        s.duplicates,
        s.failed,
        s.skipped,
        s.bytes as f64 / 1e6,
        cli.data.display()
    );
    let unindexed = stats.last_seq - stats.search_indexed_seq;
    if unindexed > 0 {
        eprintln!(
            "the search index is {unindexed} records behind the log: `mailvault serve` indexes them \
             in the background, `mailvault search` waits for them"
        );
    }
    Ok(if s.failed > 0 || s.skipped > 0 {
        ExitCode::from(EXIT_SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) fn report(outcome: &Outcome, json: bool, progress: &ProgressBar, summary: &Mutex<Summary>) {
    let mut s = summary.lock().unwrap_or_else(|p| p.into_inner());
    match outcome.status {
        "imported" => s.imported += 1,
        "duplicate" => s.duplicates += 1,
        "skipped" => s.skipped += 1,
        "ignored" => s.ignored += 1,
        _ => s.failed += 1,
    }
    s.bytes += outcome.bytes;
    if json {
        if let Ok(line) = serde_json::to_string(outcome) {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    } else {
        if let Some(error) = &outcome.error {
            progress.suspend(|| eprintln!("{}: {}: {error}", outcome.status, outcome.source));
        }
        if let Some(note) = &outcome.note {
            progress.suspend(|| eprintln!("note: {}: {note}", outcome.source));
        }
    }
    progress.set_message(format!(
        "imported {}, duplicates {}, failed {}, {:.1} MB",
        s.imported,
        s.duplicates,
        s.failed,
        s.bytes as f64 / 1e6
    ));
}
