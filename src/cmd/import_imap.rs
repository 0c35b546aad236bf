//! `mailvault import imaps://user@host/Folder` (or `--all-folders`): archive a mailbox where it
//! lives today, through archive-core's IMAP client (`archive_core::import_imap`). This file is
//! the import's other half: the password, the order of the folders, batches appended durably,
//! the progress file that makes a re-run continue where the last run stopped, and the same
//! reporting as file import (`import.rs`, whose outcome and summary types it shares).
//!
//! Resuming: `<data>/import-imap.json` holds, per folder URL, the folder's UIDVALIDITY and the
//! highest UID below which everything was durably archived. It is replaced atomically after
//! each batch is durable, so after a crash (kill -9 included) it never claims more than the
//! log holds; a re-run asks the server only for newer UIDs. A batch that became durable just
//! before the crash, without its progress write, is fetched again and recognised as
//! duplicates by content. A changed UIDVALIDITY starts the folder over (content dedupe keeps
//! that from duplicating anything).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use archive_core::import_imap::{tls_config, Fetched, Folder, Options, Session, SourceUrl};
use archive_core::{Envelope, OnDuplicate, SearchIndexing, Store, StoreConfig};
use indicatif::{ProgressBar, ProgressStyle};

use super::import::{report, Args, Outcome, Summary, EXIT_SOME_FAILED};
use super::{hex, CmdResult};
use crate::import::MAX_MESSAGE_BYTES;
use crate::Cli;

/// Messages per UID FETCH and per durable append unless `--batch` says otherwise.
const DEFAULT_BATCH: u32 = 256;
/// Bytes of messages per UID FETCH (a larger single message is fetched alone): bounds the
/// memory of a batch.
const BATCH_BYTES: u64 = 8 << 20;
/// How long the server may keep us waiting for any one read or write.
const TIMEOUT: Duration = Duration::from_secs(120);
/// The progress file in the data directory.
const PROGRESS_FILE: &str = "import-imap.json";
/// Its format version.
const PROGRESS_FORMAT: u32 = 1;
/// Most bytes read of a password file.
const MAX_PASSWORD_FILE: u64 = 64 * 1024;

/// The options of `import` that only an IMAP URL uses.
#[derive(clap::Args, Debug)]
pub struct ImapArgs {
    /// IMAP: import every folder of the account (LIST), not only the one in the URL.
    #[arg(long)]
    all_folders: bool,
    /// IMAP: the password is the first line of this file (without it, it is asked for on the
    /// terminal).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// IMAP: trust the CA certificate(s) in this PEM file instead of the system's CA store.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// IMAP: on imap://, send the password unencrypted when the server offers no STARTTLS.
    #[arg(long)]
    allow_plaintext: bool,
    /// IMAP: messages per UID FETCH and per durable append (default 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: Option<u32>,
}

impl ImapArgs {
    /// Refuses IMAP options on an import of files.
    pub fn refuse_without_url(&self) -> anyhow::Result<()> {
        let set = [
            ("--all-folders", self.all_folders),
            ("--password-file", self.password_file.is_some()),
            ("--ca", self.ca.is_some()),
            ("--allow-plaintext", self.allow_plaintext),
            ("--batch", self.batch.is_some()),
        ];
        match set.iter().find(|(_, set)| *set) {
            Some((option, _)) => {
                anyhow::bail!("{option} is for importing from IMAP (imaps://user@host/Folder)")
            }
            None => Ok(()),
        }
    }
}

/// The IMAP URL among the paths of `import`, if there is one (then it must be the only one).
pub fn url_among(paths: &[PathBuf]) -> anyhow::Result<Option<&str>> {
    let is_url = |p: &PathBuf| {
        p.to_str().is_some_and(|s| {
            let s = s.get(..8).unwrap_or(s).to_ascii_lowercase();
            s.starts_with("imap://") || s.starts_with("imaps://")
        })
    };
    match paths.iter().find(|p| is_url(p)) {
        None => Ok(None),
        Some(_) if paths.len() > 1 => {
            anyhow::bail!("an IMAP mailbox is imported on its own: one URL, no other paths or URLs")
        }
        Some(url) => Ok(url.to_str()),
    }
}

pub fn run(cli: &Cli, args: &Args, url: &str) -> CmdResult {
    let imap = &args.imap;
    let url = SourceUrl::parse(url)?;
    let named = match (&url.folder, imap.all_folders) {
        (Some(_), true) => anyhow::bail!("the URL names a folder and --all-folders asks for all: choose one"),
        (None, false) => anyhow::bail!(
            "name a folder ({}/INBOX) or import them all with --all-folders",
            url.account()
        ),
        (Some(name), false) => Some(Folder::named(name)?),
        (None, true) => None,
    };
    let password = read_password(imap, &url)?;
    let tls = tls_config(imap.ca.as_deref()).map_err(|e| match &imap.ca {
        Some(_) => anyhow::anyhow!("--ca: {e}"),
        None => anyhow::anyhow!("{e} (or trust a private CA with --ca FILE)"),
    })?;
    let options = Options {
        tls,
        allow_plaintext: imap.allow_plaintext,
        timeout: TIMEOUT,
        max_message: u32::try_from(MAX_MESSAGE_BYTES).unwrap_or(u32::MAX),
    };
    let mut session = Session::open(&url, &password, &options)?;
    drop(password);
    if session.plaintext {
        eprintln!(
            "warning: {} offers no STARTTLS: the password and the mail went unencrypted (--allow-plaintext)",
            url.server()
        );
    }
    let folders = match named {
        Some(folder) => vec![folder],
        None => session.folders()?,
    };

    // Only now the store: a refused login or an unreachable server changes nothing.
    if let Some(identity) = super::ensure_store(cli, args.create, "mailvault import")? {
        eprintln!(
            "created store {} (origin {}); signing key {}: back it up, apart from the store",
            cli.data.display(),
            identity.origin,
            cli.key_path().display()
        );
    }
    let config = StoreConfig {
        search_indexing: SearchIndexing::Deferred,
        ..StoreConfig::default()
    };
    let store = Store::open(&cli.data, &cli.key_path(), config)?;
    if let Some(cut) = store.recovered() {
        eprintln!("mailvault: recovery: {cut} (audited)");
    }
    let mut run = Run {
        url: &url,
        store: &store,
        progress: ProgressFile::load(&cli.data)?,
        data: &cli.data,
        json: args.json,
        batch: imap.batch.unwrap_or(DEFAULT_BATCH) as usize,
        bar: progress_bar(),
        summary: Mutex::new(Summary::default()),
    };
    let mut broken = None;
    for folder in &folders {
        if let Err(e) = run.folder(&mut session, folder) {
            broken = Some(e);
            break;
        }
    }
    run.bar.finish_and_clear();
    if broken.is_none() {
        session.logout();
    }
    let s = run.summary.into_inner().unwrap_or_default();
    let stats = store.stats();
    store.close()?;
    eprintln!(
        "imported {}, duplicates {}, failed {} ({:.1} MB archived) from {} folder{} of {} into {}",
        s.imported,
        s.duplicates,
        s.failed,
        s.bytes as f64 / 1e6,
        folders.len(),
        if folders.len() == 1 { "" } else { "s" },
        url.account(),
        cli.data.display()
    );
    let unindexed = stats.last_seq - stats.search_indexed_seq;
    if unindexed > 0 {
        eprintln!(
            "the search index is {unindexed} records behind the log: `mailvault serve` indexes them \
             in the background, `mailvault search` waits for them"
        );
    }
    if let Some(e) = broken {
        return Err(
            e.context("the import stopped; what was archived stays, and a re-run continues from there")
        );
    }
    Ok(if s.failed > 0 {
        ExitCode::from(EXIT_SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The password: the first line of `--password-file`, or asked for on the terminal.
fn read_password(imap: &ImapArgs, url: &SourceUrl) -> anyhow::Result<String> {
    if let Some(path) = &imap.password_file {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PASSWORD_FILE).read_to_string(&mut text))
            .with_context(|| format!("--password-file {}", path.display()))?;
        let first = text.lines().next().unwrap_or_default();
        if first.is_empty() {
            anyhow::bail!("--password-file {}: the first line is empty", path.display());
        }
        return Ok(first.to_string());
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "no password: name a file holding it with --password-file FILE (its first line is the \
             password), or run on a terminal to be asked"
        );
    }
    rpassword::prompt_password(format!("IMAP password of {} at {}: ", url.user, url.server()))
        .context("reading the password from the terminal")
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {bytes}/{total_bytes} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// One import run: where messages go and how progress is kept and shown.
struct Run<'a> {
    url: &'a SourceUrl,
    store: &'a Store,
    progress: ProgressFile,
    data: &'a Path,
    json: bool,
    batch: usize,
    bar: ProgressBar,
    summary: Mutex<Summary>,
}

impl Run<'_> {
    /// Imports the messages of `folder` that earlier runs did not archive. A folder the
    /// server refuses to open is reported as failed; a broken conversation ends the run.
    fn folder(&mut self, session: &mut Session, folder: &Folder) -> anyhow::Result<()> {
        let key = self.url.folder_url(folder);
        let selected = match session.examine(folder) {
            Ok(s) => s,
            Err(e @ archive_core::import_imap::ImportError::Folder { .. }) => {
                self.report(Outcome::not_archived("failed", key, Some(e.to_string())));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let mut done = match self.progress.folders.get(&key) {
            Some(p) if p.uidvalidity == selected.uidvalidity => p.last_uid,
            Some(_) => {
                self.bar.suspend(|| {
                    eprintln!(
                        "note: {}: UIDVALIDITY changed: reading the folder again (what is archived \
                         already is recognised, not stored twice)",
                        folder.name
                    )
                });
                0
            }
            None => 0,
        };
        let from = NonZeroU32::new(done.saturating_add(1)).unwrap_or(NonZeroU32::MIN);
        let messages = if selected.exists == 0 || done == u32::MAX {
            Vec::new()
        } else {
            session.messages_from(from)?
        };
        self.bar.set_prefix(folder.name.clone());
        self.bar
            .set_length(messages.iter().map(|(_, size)| u64::from(*size)).sum());
        self.bar.set_position(0);
        // Progress moves only over an unbroken run of archived UIDs: a failed message is
        // tried again by the next run.
        let mut clean = true;
        self.save_progress(&key, selected.uidvalidity, done)?;
        for chunk in chunks(&messages, self.batch) {
            let too_large = |size: u32| u64::from(size) > MAX_MESSAGE_BYTES;
            let uids: Vec<u32> = chunk
                .iter()
                .filter(|(_, size)| !too_large(*size))
                .map(|(uid, _)| *uid)
                .collect();
            let (fetched, skipped_too_long) = session.fetch(&uids)?;
            let mut outcomes = self.archive(folder, selected.uidvalidity, &uids, fetched, skipped_too_long);
            for (uid, size) in chunk.iter().filter(|(_, size)| too_large(*size)) {
                outcomes.push((
                    *uid,
                    Outcome::not_archived(
                        "failed",
                        self.url.message_url(folder, selected.uidvalidity, *uid),
                        Some(format!(
                            "{size} bytes is more than the {MAX_MESSAGE_BYTES}-byte limit for one message"
                        )),
                    ),
                ));
            }
            outcomes.sort_by_key(|(uid, _)| *uid);
            for (uid, outcome) in outcomes {
                clean &= outcome.status != "failed";
                if clean {
                    done = uid;
                }
                self.bar.inc(
                    chunk
                        .iter()
                        .find(|(u, _)| *u == uid)
                        .map_or(0, |(_, s)| u64::from(*s)),
                );
                self.report(outcome);
            }
            self.save_progress(&key, selected.uidvalidity, done)?;
        }
        Ok(())
    }

    /// Appends the fetched messages of a batch durably (one fsync) and says what became of
    /// each UID asked for, in UID order.
    fn archive(
        &self,
        folder: &Folder,
        uidvalidity: u32,
        uids: &[u32],
        fetched: Vec<Fetched>,
        skipped_too_long: usize,
    ) -> Vec<(u32, Outcome)> {
        let source = |f: &Fetched| {
            let url = self.url.message_url(folder, uidvalidity, f.uid);
            match &f.internal_date {
                Some(date) => format!("{url} INTERNALDATE={date}"),
                None => url,
            }
        };
        let mut outcomes = Vec::with_capacity(uids.len());
        for uid in uids {
            if !fetched.iter().any(|f| f.uid == *uid) {
                let why = if skipped_too_long > 0 {
                    format!(
                        "the server's answer for it was larger than the {MAX_MESSAGE_BYTES}-byte limit \
                         (or it was not sent)"
                    )
                } else {
                    "the server sent no message for it (deleted meanwhile, or an answer that does not \
                     parse)"
                        .to_string()
                };
                let url = self.url.message_url(folder, uidvalidity, *uid);
                outcomes.push((*uid, Outcome::not_archived("failed", url, Some(why))));
            }
        }
        let envelopes: Vec<Envelope> = fetched
            .iter()
            .map(|f| Envelope::imported(source(f), b""))
            .collect();
        let batch: Vec<(&Envelope, &[u8])> = envelopes
            .iter()
            .zip(&fetched)
            .map(|(e, f)| (e, f.bytes.as_slice()))
            .collect();
        match self.store.append_messages(&batch, OnDuplicate::Skip) {
            Ok(appended) => {
                for ((envelope, f), a) in envelopes.iter().zip(&fetched).zip(appended) {
                    outcomes.push((
                        f.uid,
                        Outcome {
                            source: envelope.source.clone(),
                            status: if a.kind.is_some() { "imported" } else { "duplicate" },
                            seq: Some(a.seq),
                            blake3: Some(hex(&a.content_hash)),
                            error: None,
                            note: None,
                            bytes: f.bytes.len() as u64,
                        },
                    ));
                }
            }
            Err(e) => {
                for (envelope, f) in envelopes.iter().zip(&fetched) {
                    outcomes.push((
                        f.uid,
                        Outcome::not_archived("failed", envelope.source.clone(), Some(e.to_string())),
                    ));
                }
            }
        }
        outcomes
    }

    fn report(&self, outcome: Outcome) {
        report(&outcome, self.json, &self.bar, &self.summary);
    }

    /// Records (durably, atomically) that everything up to `last_uid` of the folder is
    /// archived; only writes when that changes something.
    fn save_progress(&mut self, key: &str, uidvalidity: u32, last_uid: u32) -> anyhow::Result<()> {
        let entry = FolderProgress {
            uidvalidity,
            last_uid,
        };
        if self.progress.folders.get(key) == Some(&entry) {
            return Ok(());
        }
        self.progress.folders.insert(key.to_string(), entry);
        self.progress.save(self.data)
    }
}

/// Consecutive runs of `messages` of at most `batch` messages and [`BATCH_BYTES`] bytes (a
/// larger message alone).
fn chunks(messages: &[(u32, u32)], batch: usize) -> Vec<&[(u32, u32)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, (_, size)) in messages.iter().enumerate() {
        let size = u64::from(*size);
        if i > start && (i - start >= batch || bytes + size > BATCH_BYTES) {
            out.push(&messages[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(&messages[start..]);
    }
    out
}

/// How far earlier runs got, per folder URL.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct ProgressFile {
    format: u32,
    folders: BTreeMap<String, FolderProgress>,
}

/// Everything of the folder up to `last_uid` (under this UIDVALIDITY) is archived.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct FolderProgress {
    uidvalidity: u32,
    last_uid: u32,
}

impl ProgressFile {
    fn load(data: &Path) -> anyhow::Result<ProgressFile> {
        let path = data.join(PROGRESS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ProgressFile {
                    format: PROGRESS_FORMAT,
                    folders: BTreeMap::new(),
                })
            }
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        };
        let file: ProgressFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not an import progress file (removing it makes the next import read every \
                 folder again; what is archived already is recognised, not stored twice)",
                path.display()
            )
        })?;
        if file.format != PROGRESS_FORMAT {
            anyhow::bail!(
                "{}: progress file format {} is not known to this build",
                path.display(),
                file.format
            );
        }
        Ok(file)
    }

    /// Replaces the file: written beside it, fsynced, renamed over it, directory fsynced.
    fn save(&self, data: &Path) -> anyhow::Result<()> {
        let path = data.join(PROGRESS_FILE);
        let tmp = data.join(format!("{PROGRESS_FILE}.tmp"));
        let json = serde_json::to_string_pretty(self)?;
        let write = || -> std::io::Result<()> {
            let mut out = std::fs::File::create(&tmp)?;
            out.write_all(json.as_bytes())?;
            out.write_all(b"\n")?;
            out.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(data)?.sync_all()
        };
        write().with_context(|| format!("saving import progress in {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_at_most_batch_messages_and_batch_bytes() {
        let m: Vec<(u32, u32)> = (1..=7).map(|uid| (uid, 1000)).collect();
        let sizes: Vec<usize> = chunks(&m, 3).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [3, 3, 1]);
        let big = BATCH_BYTES as u32;
        let m = [(1, 10), (2, big), (3, 10), (4, 10)];
        let got: Vec<Vec<u32>> = chunks(&m, 100)
            .iter()
            .map(|c| c.iter().map(|(u, _)| *u).collect())
            .collect();
        assert_eq!(got, [vec![1], vec![2], vec![3, 4]]);
        assert!(chunks(&[], 5).is_empty());
    }
}
