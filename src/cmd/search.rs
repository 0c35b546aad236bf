//! `mailvault search [--as P] [--json] [--limit N] [--sort S] [--cursor C] QUERY…`: the query
//! language of docs/SEARCH.md, one line (or JSON object) per hit on stdout, a summary (total,
//! next cursor) on stderr. With `--config`, snippets of messages in evicted segments are read
//! from the bucket of its `[storage.s3]`.
//!
//! It reads the search index without the store's lock, so it works next to a running server;
//! if the index lags the log and no other process holds the store, it opens the store to
//! catch the index up first (like `import`, this needs the signing key).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use archive_core::search::{Hit, Principal, Query, ReadOnlyIndex, SearchOptions, SearchResults, Sort};
use archive_core::store::{Layout, RemoteConfig};
use archive_core::{Error, Store, StoreConfig};

use super::{existing_layout, format_time, CmdResult};
use crate::Cli;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum SortArg {
    /// Newest first (Date header, or receive time without one).
    Newest,
    /// Oldest first.
    Oldest,
    /// Best match first.
    Relevance,
    /// Largest first.
    Size,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Search as `address:A[,B…]` (a user with these addresses), `domain:D[,E…]` (an auditor
    /// of these domains) or `user:NAME` (a local user, as they would over IMAP); without it,
    /// as the local operator (auditor of everything).
    #[arg(long = "as", value_name = "PRINCIPAL")]
    principal: Option<String>,
    /// One JSON object per hit instead of text columns (summary on stderr as JSON).
    #[arg(long)]
    json: bool,
    /// Hits per page (1..=1000).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Order of the hits.
    #[arg(long, value_enum, default_value_t = SortArg::Newest)]
    sort: SortArg,
    /// Continue after the page that printed this cursor.
    #[arg(long)]
    cursor: Option<String>,
    /// The serve configuration: snippets of messages in segments evicted to S3
    /// (`[storage.s3] cache_size`) are read from its bucket; without it such a hit fails.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// The query (after the options); several arguments are joined with spaces.
    #[arg(required = true, value_name = "QUERY", allow_hyphen_values = true)]
    query: Vec<String>,
}

/// Parses `--as`: `address:…` or `domain:…` (comma-separated), or `user:NAME` (what that
/// local user sees over IMAP; see `mailvault user`).
pub fn principal(spec: Option<&str>, data: &std::path::Path) -> anyhow::Result<Principal> {
    let Some(spec) = spec else {
        return Ok(Principal::auditor_all());
    };
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(match spec.split_once(':') {
        Some(("address", rest)) => Principal::user(list(rest))?,
        Some(("domain", rest)) => Principal::auditor_of(list(rest))?,
        Some(("user", name)) => {
            let users = archive_core::access::Users::load(data)?;
            let Some(user) = users.get(name.trim()) else {
                bail!(
                    "--as {spec:?}: no user named {:?} (see `mailvault user list`)",
                    name.trim()
                );
            };
            user.role().principal()
        }
        _ => bail!(
            "--as {spec:?}: expected address:ALICE@EXAMPLE.COM[,…] (a user), \
             domain:EXAMPLE.COM[,…] (an auditor) or user:NAME (a user of `mailvault user add`)"
        ),
    })
}

/// Searches, preferring the read-only index; catches it up through the store if it lags and
/// the store is free. Messages of evicted segments are read through `config`'s
/// `[storage.s3]`, if given.
pub(super) fn run_search(
    cli: &Cli,
    principal: &Principal,
    query: &Query,
    options: &SearchOptions,
    config: Option<&std::path::Path>,
) -> anyhow::Result<SearchResults> {
    let s3 = match config {
        Some(path) => crate::config::Config::load(path)?.storage.s3,
        None => None,
    };
    let remote = crate::remote_segments::remote_config(s3.as_ref())?;
    let evicted = RemoteConfig::reads(remote.as_ref(), &Layout::new(&cli.data))?;
    let read_only = ReadOnlyIndex::open_with(&cli.data, evicted);
    if let Ok(index) = &read_only {
        if index.lag()? == 0 {
            return Ok(index.search(principal, query, options)?);
        }
    }
    let store_config = StoreConfig {
        remote,
        ..StoreConfig::default()
    };
    match Store::open(&cli.data, &cli.key_path(), store_config) {
        Ok(store) => {
            let results = store.search(principal, query, options)?;
            store.close()?;
            Ok(results)
        }
        Err(e) => {
            let Ok(index) = read_only else {
                return Err(e).context(
                    "the search index is not built yet, and the store cannot be opened to build it",
                );
            };
            let behind = index.lag()?;
            let why = match e {
                Error::Locked(_) => "another mailvault process holds the store and is indexing".to_string(),
                e => format!("the store cannot be opened to catch it up: {e}"),
            };
            eprintln!(
                "mailvault: warning: the search index lags the log by {behind}+ messages ({why}); \
                 results may be incomplete"
            );
            Ok(index.search(principal, query, options)?)
        }
    }
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    existing_layout(cli)?;
    let principal = principal(args.principal.as_deref(), &cli.data)?;
    // `-term` is a query word, so clap cannot tell an option after the query from a word.
    if let Some(flag) = args.query.iter().find(|w| {
        let name = w.split('=').next().unwrap_or_default();
        [
            "--as", "--json", "--limit", "--sort", "--cursor", "--config", "--data", "--key",
        ]
        .contains(&name)
    }) {
        bail!("{flag}: put options before the query (`mailvault search [OPTIONS] QUERY…`)");
    }
    let text = args.query.join(" ");
    let query = Query::parse(&text).map_err(|e| anyhow::anyhow!("query {text:?}: {e}"))?;
    if args.limit == 0 || args.limit > archive_core::search::MAX_LIMIT {
        bail!("--limit must be 1..={}", archive_core::search::MAX_LIMIT);
    }
    let options = SearchOptions {
        sort: match args.sort {
            SortArg::Newest => Sort::Newest,
            SortArg::Oldest => Sort::Oldest,
            SortArg::Relevance => Sort::Relevance,
            SortArg::Size => Sort::Size,
        },
        limit: args.limit,
        cursor: args.cursor.clone(),
        snippets: true,
        facets: false,
        // An operator's count is exact, however many match.
        count_limit: None,
    };
    // Every search is an access: recorded before it runs (audit before access).
    let asked_as = args.principal.as_deref().unwrap_or("everything");
    super::record_audit(
        cli,
        "search",
        format!(
            "cli as={} {}",
            archive_core::audit::query_text(asked_as),
            archive_core::audit::query_text(&text)
        ),
    )?;
    let results = run_search(cli, &principal, &query, &options, args.config.as_deref())?;
    let mut out = std::io::stdout().lock();
    for hit in &results.hits {
        let line = if args.json {
            serde_json::to_string(&json_hit(hit))?
        } else {
            text_line(hit)
        };
        if let Err(e) = writeln!(out, "{line}") {
            // A closed pipe (`mailvault search … | head`) is a normal way to stop reading.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
    }
    if args.json {
        eprintln!(
            "{}",
            serde_json::json!({
                "total": results.total,
                "returned": results.hits.len(),
                "next_cursor": results.next_cursor,
                "indexed_seq": results.indexed_seq,
            })
        );
    } else {
        let next = match &results.next_cursor {
            Some(c) => format!("; next page: --cursor {c}"),
            None => String::new(),
        };
        eprintln!("{} of {} hits{next}", results.hits.len(), results.total);
    }
    Ok(ExitCode::SUCCESS)
}

fn list(boxes: &[archive_core::search::Mailbox]) -> Vec<String> {
    boxes.iter().map(ToString::to_string).collect()
}

fn date(secs: i64) -> String {
    format_time(secs.saturating_mul(1_000_000))
}

/// The JSON object of one hit.
fn json_hit(hit: &Hit) -> serde_json::Value {
    serde_json::json!({
        "seq": hit.seq,
        "date": date(hit.date),
        "date_source": if hit.date_is_received { "received" } else { "header" },
        "from": list(&hit.from).join(", "),
        "to": list(&hit.to),
        "cc": list(&hit.cc),
        "bcc": list(&hit.bcc),
        "subject": hit.subject,
        "size": hit.size,
        "message_id": hit.message_id,
        "attachments": hit.attachments,
        "deliveries": hit.deliveries.iter().map(|d| serde_json::json!({
            "seq": d.seq,
            "kind": d.kind,
            "received": format_time(d.received_us),
            "mail_from": d.mail_from,
            "recipients": d.recipients,
        })).collect::<Vec<_>>(),
        "score": hit.score,
        "snippet": hit.snippet.as_ref().map(|s| s.text.clone()),
        "highlights": hit.snippet.as_ref().map(|s| s.highlights.clone()),
    })
}

/// One text line: seq, date, size, sender, subject, and the snippet with matches in [brackets].
fn text_line(hit: &Hit) -> String {
    let from = hit
        .from
        .first()
        .map(ToString::to_string)
        .unwrap_or_else(|| "-".into());
    let snippet = hit
        .snippet
        .as_ref()
        .filter(|s| !s.highlights.is_empty())
        .map(|s| {
            format!(
                "  {}",
                s.marked("[", "]")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .unwrap_or_default();
    format!(
        "{:>8}  {}  {:>9}  {}  {}{snippet}",
        hit.seq,
        date(hit.date),
        hit.size,
        from,
        if hit.subject.is_empty() {
            "(no subject)"
        } else {
            &hit.subject
        },
    )
}
