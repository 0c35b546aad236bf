//! Search benchmark: a seeded, generated archive (default 1,000,000 messages) mixed with a
//! real corpus, appended through `Store::append_message` as intake does; then the search
//! index is rebuilt from the log alone and timed (indexing msg/s and MB/s), its size compared
//! with the raw mail, and query latencies measured (p50/p99, 20 hits with snippets, newest
//! first, as `mailvault search` asks). Prints figures; never asserts. See bench/README.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use archive_core::search::{Principal, Query, SearchOptions};
use archive_core::{Envelope, OnDuplicate, Store, StoreConfig};
use mailvault_bench::mailgen::MailGen;
use mailvault_bench::{dir_bytes, machine, mb, verdict, BenchResult, Corpus, Options};

const USAGE: &str = "usage: search [--messages N] [--seed S] [--corpus DIR] [--runs N] [--dir DIR]\n\
  --messages N  generated messages (default 1000000)\n\
  --seed S      generator seed (default 1)\n\
  --corpus DIR  real .eml files mixed in (default fixtures/corpus/spamassassin)\n\
  --runs N      timed runs per query kind (default 200)\n\
  --dir DIR     where to build the store (default: a temp dir under target/)\n\
  --phase P     all (default); index: rebuild and query the store already in --dir;\n\
                queries: only query it";

/// Appending threads (intake sessions).
const APPENDERS: usize = 4;
const P99_TARGET_MS: f64 = 50.0;
const INDEX_RATE_TARGET: f64 = 5000.0;
const INDEX_SIZE_TARGET: f64 = 0.35;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("search: {e}");
            ExitCode::FAILURE
        }
    }
}

fn envelope(from: &str, to: &[String]) -> Envelope {
    Envelope::lmtp(from, to)
}

struct Ingested {
    messages: u64,
    raw_bytes: u64,
    wall: f64,
}

/// Generates and appends everything; returns counts and the append wall time.
fn ingest(store: &Arc<Store>, seed: u64, n: u64, corpus: Vec<Vec<u8>>) -> BenchResult<Ingested> {
    let (tx, rx) = mpsc::sync_channel::<(Envelope, Vec<u8>)>(1024);
    let rx = Arc::new(Mutex::new(rx));
    let raw = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        let mut gen = MailGen::new(seed, n);
        let every = (n / (corpus.len() as u64 + 1)).max(1);
        let mut corpus = corpus.into_iter();
        for i in 0..n {
            if i % every == every - 1 {
                if let Some(real) = corpus.next() {
                    let env = Envelope::imported(format!("corpus#{i}"), b"");
                    if tx.send((env, real)).is_err() {
                        return;
                    }
                }
            }
            let g = gen.next_message();
            if tx.send((envelope(&g.mail_from, &g.recipients), g.raw)).is_err() {
                return;
            }
        }
    });
    let mut workers = Vec::new();
    for _ in 0..APPENDERS {
        let (rx, store, raw, count) = (rx.clone(), store.clone(), raw.clone(), count.clone());
        workers.push(std::thread::spawn(move || -> Result<(), String> {
            loop {
                let next = rx.lock().map_err(|e| e.to_string())?.recv();
                let Ok((env, bytes)) = next else {
                    return Ok(());
                };
                let a = store
                    .append_message(&env, &bytes, OnDuplicate::Skip)
                    .map_err(|e| e.to_string())?;
                if a.kind.is_some() {
                    raw.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    let c = count.fetch_add(1, Ordering::Relaxed) + 1;
                    if c % 100_000 == 0 {
                        eprintln!("  {c} messages appended ({:.0} s)", start.elapsed().as_secs_f64());
                    }
                }
            }
        }));
    }
    producer.join().map_err(|_| "generator panicked")?;
    for w in workers {
        w.join().map_err(|_| "appender panicked")??;
    }
    Ok(Ingested {
        messages: count.load(Ordering::Relaxed),
        raw_bytes: raw.load(Ordering::Relaxed),
        wall: start.elapsed().as_secs_f64(),
    })
}

fn search_dir(dir: &Path) -> PathBuf {
    archive_core::search::index_dir(&archive_core::store::Layout::new(dir))
}

/// Indexing alone: deletes the search index and times its rebuild from the log (open, then
/// wait until the background indexer has caught up).
fn rebuild(dir: &Path, key: &Path, messages: u64, raw_bytes: u64) -> BenchResult<()> {
    std::fs::remove_dir_all(search_dir(dir))?;
    let t = Instant::now();
    let store = Store::open(dir, key, StoreConfig::default())?;
    store.wait_searchable()?;
    let index_secs = t.elapsed().as_secs_f64();
    store.close()?;
    let rate = messages as f64 / index_secs;
    println!(
        "indexing {rate:.0} msg/s, {:.1} MB/s ({messages} messages rebuilt from the log in \
         {index_secs:.1} s; target >= {INDEX_RATE_TARGET} msg/s: {})",
        mb(raw_bytes) / index_secs,
        verdict(rate >= INDEX_RATE_TARGET)
    );
    Ok(())
}

/// Message records and their raw bytes in an existing store.
fn archive_stats(dir: &Path) -> BenchResult<(u64, u64)> {
    let log = archive_core::log::reader::LogReader::open(&archive_core::store::Layout::new(dir).log_dir)?;
    let (mut messages, mut bytes) = (0, 0);
    for record in log.records_from(1)? {
        let record = record?;
        if let archive_core::log::record::LeafBody::Message { content_len, .. } = record.leaf.body {
            messages += 1;
            bytes += content_len;
        }
    }
    Ok((messages, bytes))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs each (principal, query) once untimed, then `runs` timed rounds over the list.
/// Latencies of one query kind.
struct Measured {
    p50: f64,
    p99: f64,
    /// Average hits (total) per query.
    hits: f64,
    /// The query with the slowest median, and that median.
    slowest: (String, f64),
}

fn measure(store: &Store, queries: &[(Principal, String)], runs: usize) -> BenchResult<Measured> {
    let options = SearchOptions::default();
    let parsed: Vec<(Principal, Query)> = queries
        .iter()
        .map(|(p, q)| Ok((p.clone(), Query::parse(q).map_err(|e| format!("{q}: {e}"))?)))
        .collect::<BenchResult<_>>()?;
    let mut hits = 0.0;
    for (p, q) in &parsed {
        hits += store.search(p, q, &options)?.total as f64;
    }
    let mut times = Vec::with_capacity(runs);
    let mut per_query = vec![Vec::new(); parsed.len()];
    for i in 0..runs {
        let (p, q) = &parsed[i % parsed.len()];
        let t = Instant::now();
        store.search(p, q, &options)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        times.push(ms);
        per_query[i % parsed.len()].push(ms);
    }
    times.sort_by(f64::total_cmp);
    let slowest = per_query
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut t = t.clone();
            t.sort_by(f64::total_cmp);
            (queries[i].1.clone(), percentile(&t, 0.5))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    Ok(Measured {
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        hits: hits / parsed.len() as f64,
        slowest,
    })
}

fn run() -> BenchResult<()> {
    let options = Options::parse(
        &["--messages", "--seed", "--corpus", "--runs", "--dir", "--phase"],
        USAGE,
    )?;
    let n = options.count("--messages", 1_000_000)? as u64;
    let seed = options.count("--seed", 1)? as u64;
    let runs = options.count("--runs", 200)?;
    let corpus_dir = options
        .path("--corpus")
        .unwrap_or_else(|| mailvault_bench::workspace_root().join("fixtures/corpus/spamassassin"));
    let corpus = Corpus::open(&corpus_dir)?;
    let real = corpus.read_all()?;
    let tmp;
    let base: PathBuf = match options.path("--dir") {
        Some(d) => d,
        None => {
            tmp = tempfile::Builder::new()
                .prefix("search-bench")
                .tempdir_in(mailvault_bench::workspace_root().join("target"))?;
            tmp.path().to_path_buf()
        }
    };
    let dir = base.join("store");
    let key = dir.join("signing.key");

    println!("mailvault search benchmark");
    println!("machine  {}", machine());
    println!(
        "archive  {n} generated messages (seed {seed}) + {} real from {}",
        real.len(),
        corpus_dir.display()
    );

    let phase = options
        .path("--phase")
        .map_or_else(|| "all".to_string(), |p| p.display().to_string());
    let (messages, raw_bytes) = match phase.as_str() {
        "all" => {
            Store::create(&dir, &key)?;
            let store = Arc::new(Store::open(&dir, &key, StoreConfig::default())?);
            let t = Instant::now();
            let ingested = ingest(&store, seed, n, real)?;
            let store = Arc::try_unwrap(store).map_err(|_| "store still shared")?;
            store.wait_searchable()?;
            store.close()?;
            let end_to_end = t.elapsed().as_secs_f64();
            println!(
                "ingest   {} messages, {:.1} MB raw: appended in {:.1} s ({:.0} msg/s); \
                 appended and searchable (index caught up, store closed) after {:.1} s",
                ingested.messages,
                mb(ingested.raw_bytes),
                ingested.wall,
                ingested.messages as f64 / ingested.wall,
                end_to_end
            );
            (ingested.messages, ingested.raw_bytes)
        }
        "index" | "queries" => {
            let (messages, raw_bytes) = archive_stats(&dir)?;
            println!(
                "reusing  {} ({messages} messages, {:.1} MB raw)",
                dir.display(),
                mb(raw_bytes)
            );
            (messages, raw_bytes)
        }
        other => return Err(format!("--phase {other:?}: expected all, index or queries").into()),
    };
    if phase != "queries" {
        rebuild(&dir, &key, messages, raw_bytes)?;
    }
    let index_bytes = dir_bytes(&search_dir(&dir));
    let ratio = index_bytes as f64 / raw_bytes.max(1) as f64;
    println!(
        "size     index {:.1} MB / raw {:.1} MB = {ratio:.3} (target <= {INDEX_SIZE_TARGET}: {})",
        mb(index_bytes),
        mb(raw_bytes),
        verdict(ratio <= INDEX_SIZE_TARGET)
    );

    let store = Store::open(&dir, &key, StoreConfig::default())?;
    let gen = MailGen::new(seed, n);
    let all = Principal::auditor_all();
    let q = |s: String| (all.clone(), s);
    let kinds: Vec<(&str, Vec<(Principal, String)>)> = vec![
        (
            "rare term",
            (0..50)
                .map(|i| q(gen.english_word(50_000 + i * 97).to_string()))
                .collect(),
        ),
        (
            "common term",
            [0usize, 1, 2, 5, 8]
                .iter()
                .flat_map(|r| {
                    [
                        q(gen.english_word(*r).to_string()),
                        q(gen.german_word(*r).to_string()),
                    ]
                })
                .collect(),
        ),
        (
            "two-term AND",
            (0..50)
                .map(|i| {
                    q(format!(
                        "{} {}",
                        gen.english_word(20 + i * 7),
                        gen.english_word(300 + i * 13)
                    ))
                })
                .collect(),
        ),
        (
            "phrase",
            [
                "\"quarterly report\"",
                "\"best regards\"",
                "\"viele grüße\"",
                "\"Quartalsbericht liegt bei\"",
                "\"report is attached\"",
            ]
            .iter()
            .map(|s| q(s.to_string()))
            .collect(),
        ),
        (
            "from:+date range",
            (0..50)
                .map(|i| {
                    let who = &gen.people[i * 3 % gen.people.len()].address;
                    let year = 2015 + i % 10;
                    q(format!("from:{who} after:{year}-01-01 before:{}-07-01", year + 1))
                })
                .collect(),
        ),
        (
            "scoped user query",
            (0..50)
                .map(|i| {
                    let who = gen.people[(i * 37) % gen.people.len()].address.clone();
                    let p = Principal::user([who]).unwrap_or_else(|_| Principal::auditor_all());
                    (p, gen.english_word(10 + i % 40).to_string())
                })
                .collect(),
        ),
    ];
    println!("queries  {runs} timed runs per kind, 20 hits with snippets, newest first");
    let mut worst: f64 = 0.0;
    for (name, queries) in &kinds {
        let m = measure(&store, queries, runs)?;
        worst = worst.max(m.p99);
        println!(
            "  {name:<18} p50 {:>7.2} ms  p99 {:>7.2} ms  (avg {:.0} hits; slowest {:?} at {:.2} ms)",
            m.p50, m.p99, m.hits, m.slowest.0, m.slowest.1
        );
    }
    println!(
        "  every p99 <= {P99_TARGET_MS} ms: {}",
        verdict(worst <= P99_TARGET_MS)
    );
    store.close()?;
    Ok(())
}
