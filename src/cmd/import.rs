//! `mailvault import PATH…`: archive files, directories, mbox files and Maildirs, with a
//! progress bar and a summary of imported / duplicates / failed.
//!
//! Several workers append at once so their records share fsyncs (group commit) and zstd runs
//! on every core; each message is durable before it is counted as imported.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Mutex;

use archive_core::{Envelope, OnDuplicate, Store, StoreConfig};
use indicatif::{ProgressBar, ProgressStyle};

use super::{hex, CmdResult};
use crate::import::{walk, Format, Item};
use crate::Cli;

/// Exit code when some inputs could not be archived.
const EXIT_SOME_FAILED: u8 = 1;
/// Concurrent appenders.
const WORKERS: usize = 8;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files, directories, mbox files or Maildirs.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// How to read the paths.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
    /// One JSON object per input on stdout (source, status, seq, blake3 or error).
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Outcome {
    source: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blake3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip)]
    bytes: u64,
}

#[derive(Default)]
struct Summary {
    imported: u64,
    duplicates: u64,
    failed: u64,
    bytes: u64,
}

fn archive(store: &Store, item: Item) -> Outcome {
    match item {
        Item::Failed { source, reason } => Outcome {
            source,
            status: "failed",
            seq: None,
            blake3: None,
            error: Some(reason),
            bytes: 0,
        },
        Item::Message {
            source,
            mail_from,
            bytes,
        } => {
            let envelope = Envelope::imported(source.clone(), &mail_from);
            match store.append_message(&envelope, &bytes, OnDuplicate::Skip) {
                Ok(a) => Outcome {
                    source,
                    status: if a.kind.is_some() { "imported" } else { "duplicate" },
                    seq: Some(a.seq),
                    blake3: Some(hex(&a.content_hash)),
                    error: None,
                    bytes: bytes.len() as u64,
                },
                Err(e) => Outcome {
                    source,
                    status: "failed",
                    seq: None,
                    blake3: None,
                    error: Some(e.to_string()),
                    bytes: 0,
                },
            }
        }
    }
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let store = Store::open_or_create(&cli.data, &cli.key_path(), StoreConfig::default())?;
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let summary = Mutex::new(Summary::default());
    let (items_tx, items_rx) = mpsc::sync_channel::<Item>(WORKERS * 4);
    let items_rx = Mutex::new(items_rx);
    let walked = std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let item = match items_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(item) = item else { return };
                let outcome = archive(&store, item);
                report(&outcome, args.json, &progress, &summary);
            });
        }
        let walked = walk(&args.paths, args.format, &mut |item| items_tx.send(item).is_ok());
        drop(items_tx);
        walked
    });
    progress.finish_and_clear();
    walked?;
    store.close()?;
    let s = summary.into_inner().unwrap_or_default();
    eprintln!(
        "imported {}, duplicates {}, failed {} ({:.1} MB archived) into {}",
        s.imported,
        s.duplicates,
        s.failed,
        s.bytes as f64 / 1e6,
        cli.data.display()
    );
    Ok(if s.failed > 0 {
        ExitCode::from(EXIT_SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn report(outcome: &Outcome, json: bool, progress: &ProgressBar, summary: &Mutex<Summary>) {
    let mut s = summary.lock().unwrap_or_else(|p| p.into_inner());
    match outcome.status {
        "imported" => s.imported += 1,
        "duplicate" => s.duplicates += 1,
        _ => s.failed += 1,
    }
    s.bytes += outcome.bytes;
    if json {
        if let Ok(line) = serde_json::to_string(outcome) {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    } else if let Some(error) = &outcome.error {
        progress.suspend(|| eprintln!("failed: {}: {error}", outcome.source));
    }
    progress.set_message(format!(
        "imported {}, duplicates {}, failed {}, {:.1} MB",
        s.imported,
        s.duplicates,
        s.failed,
        s.bytes as f64 / 1e6
    ));
}
