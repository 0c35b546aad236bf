//! Web benchmark: the JSON search API of the release `mailvault serve` under load (wrk, 1, 8
//! and 32 concurrent clients, the query mix of `bench/search`), against the same queries run
//! in-process (`Store::search` on as many threads), so the web layer's cost is a ratio; the
//! message page; and what facets cost. Runs on the store `bench/search --dir DIR` built.
//! Prints figures next to the issue's targets; never asserts. See bench/README.md.
//!
//! In-process runs first, with the store opened for writing (it catches the search index up,
//! rebuilding it after a schema change), then the store is closed and `serve` opens it: a
//! second opener would wait for the store's lock.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use archive_core::search::{Principal, Query, SearchOptions};
use archive_core::{Store, StoreConfig};
use mailvault_bench::dovecot::{Server, START_TIMEOUT};
use mailvault_bench::mailgen::MailGen;
use mailvault_bench::serve::{self, wait_for_listener};
use mailvault_bench::{
    fail, load_average, machine, mailvault, mailvault_binary, source_version, verdict, BenchResult, Options,
};

const USAGE: &str = "usage: web --dir DIR [--messages N] [--seed S] [--seconds S] [--clients 1,8,32] \
[--message-path P]\n\
  --dir DIR          the directory `search --dir DIR` built its store in (DIR/store)\n\
  --messages N       generated messages of that store (default 1000000; picks the query words)\n\
  --seed S           its generator seed (default 1)\n\
  --seconds S        each measurement's duration (default 10)\n\
  --clients LIST     concurrent clients (default 1,8,32)\n\
  --message-path P   the message page, {seq} replaced (default /api/v1/messages/{seq};\n\
                     the HTML page is /messages/{seq})\n\
Needs wrk (apt-get install wrk) and a release build of the workspace.";

/// Scoped users of the query mix (each a mailvault user with a token).
const USERS: usize = 5;
/// Queries of each kind in the mix (kinds interleaved, so each weighs the same).
const PER_KIND: usize = 10;
/// Hits per search page: what `mailvault search` and bench/search ask for.
const LIMIT: usize = 20;
/// Runs per query kind for the facet cost.
const FACET_RUNS: usize = 60;
const RATIO_TARGET: f64 = 0.8;
const P99_TARGET_MS: f64 = 150.0;
const MESSAGE_P99_TARGET_MS: f64 = 50.0;
const PASSWORD: &str = "bench web password";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("web: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One query of the mix: its kind, who asks (the index of a user, or `None` for the
/// whole-archive auditor), the query text.
#[derive(Clone)]
struct Mixed {
    kind: &'static str,
    user: Option<usize>,
    text: String,
}

/// The query mix of bench/search, `PER_KIND` of each kind, interleaved.
fn query_mix(gen: &MailGen, users: &[String]) -> Vec<Mixed> {
    let mut kinds: Vec<Vec<Mixed>> = Vec::new();
    let all = |kind, text: String| Mixed {
        kind,
        user: None,
        text,
    };
    kinds.push(
        (0..PER_KIND)
            .map(|i| all("rare term", gen.english_word(50_000 + i * 97).to_string()))
            .collect(),
    );
    kinds.push(
        [0usize, 1, 2, 5, 8]
            .iter()
            .flat_map(|r| {
                [
                    all("common term", gen.english_word(*r).to_string()),
                    all("common term", gen.german_word(*r).to_string()),
                ]
            })
            .collect(),
    );
    kinds.push(
        (0..PER_KIND)
            .map(|i| {
                all(
                    "two-term AND",
                    format!(
                        "{} {}",
                        gen.english_word(20 + i * 7),
                        gen.english_word(300 + i * 13)
                    ),
                )
            })
            .collect(),
    );
    kinds.push(
        [
            "\"quarterly report\"",
            "\"best regards\"",
            "\"viele grüße\"",
            "\"Quartalsbericht liegt bei\"",
            "\"report is attached\"",
        ]
        .iter()
        .cycle()
        .take(PER_KIND)
        .map(|s| all("phrase", s.to_string()))
        .collect(),
    );
    kinds.push(
        (0..PER_KIND)
            .map(|i| {
                let who = &gen.people[i * 3 % gen.people.len()].address;
                let year = 2015 + i % 10;
                all(
                    "from:+date range",
                    format!("from:{who} after:{year}-01-01 before:{}-07-01", year + 1),
                )
            })
            .collect(),
    );
    kinds.push(
        (0..PER_KIND)
            .map(|i| Mixed {
                kind: "scoped user",
                user: Some(i % users.len()),
                text: gen.english_word(10 + i % 40).to_string(),
            })
            .collect(),
    );
    let mut mix = Vec::new();
    for i in 0..PER_KIND {
        for k in &kinds {
            mix.extend(k.get(i).cloned());
        }
    }
    mix
}

/// Latencies and throughput of one measurement.
#[derive(Clone, Copy, Default)]
struct Figures {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

impl Figures {
    fn line(&self) -> String {
        let errors = if self.errors > 0 {
            format!("  ERRORS {}", self.errors)
        } else {
            String::new()
        };
        format!(
            "{:>8.1}/s  p50 {:>7.2} ms  p99 {:>7.2} ms{errors}",
            self.per_sec, self.p50_ms, self.p99_ms
        )
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `threads` threads search the mix round and round (each from its own offset) for `secs`.
fn in_process(
    store: &Store,
    mix: &[(Principal, Query)],
    options: &SearchOptions,
    threads: usize,
    secs: f64,
) -> BenchResult<Figures> {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let results: Vec<Option<(Vec<f64>, u64)>> = thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> (Vec<f64>, u64) {
                    let mut times = Vec::new();
                    let mut errors = 0;
                    let mut i = t * 7;
                    while Instant::now() < until {
                        let (p, q) = &mix[i % mix.len()];
                        let t0 = Instant::now();
                        if store.search(p, q, options).is_err() {
                            errors += 1;
                        }
                        times.push(t0.elapsed().as_secs_f64() * 1000.0);
                        i += 1;
                    }
                    (times, errors)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().ok()).collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let mut times = Vec::new();
    let mut errors = 0;
    for r in results {
        let (t, e) = r.ok_or("a search thread panicked")?;
        times.extend(t);
        errors += e;
    }
    times.sort_by(f64::total_cmp);
    Ok(Figures {
        per_sec: times.len() as f64 / wall,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        errors,
    })
}

/// p50/p99 of `runs` searches of each query of `queries` in turn, one thread.
fn sequential(
    store: &Store,
    queries: &[(Principal, Query)],
    options: &SearchOptions,
    runs: usize,
) -> BenchResult<Figures> {
    let mut times = Vec::with_capacity(runs);
    let start = Instant::now();
    for i in 0..runs {
        let (p, q) = &queries[i % queries.len()];
        let t = Instant::now();
        store.search(p, q, options)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let wall = start.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    Ok(Figures {
        per_sec: runs as f64 / wall,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        errors: 0,
    })
}

/// Percent-encodes everything but letters and digits (a query in a URL).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A wrk script sending `requests` (path, Authorization) round and round, each connection
/// from its own offset, and printing one parseable result line.
fn wrk_script(requests: &[(String, String)]) -> String {
    let mut s = String::from("local requests = {\n");
    for (path, auth) in requests {
        // Paths are percent-encoded and tokens are base64url/hex: no quote or backslash.
        let _ = writeln!(s, "  {{\"{path}\", \"{auth}\"}},");
    }
    s.push_str(
        r#"}
local counter = 0
function setup(thread)
  thread:set("offset", counter * 7)
  counter = counter + 1
end
local i = 0
function init(args)
  i = offset or 0
end
function request()
  i = i + 1
  local r = requests[(i % #requests) + 1]
  return wrk.format("GET", r[1], {["Authorization"] = r[2]})
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("MVRESULT %d %d %.1f %.1f %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"#,
    );
    s
}

/// Runs wrk against `base` with `clients` connections for `secs`.
fn wrk(base: &str, script: &Path, clients: usize, secs: f64) -> BenchResult<Figures> {
    let out = Command::new("wrk")
        .args([
            "-t",
            &clients.min(2).to_string(),
            "-c",
            &clients.to_string(),
            "-d",
            &format!("{}s", secs.ceil() as u64),
            "--timeout",
            "60s",
            "-s",
        ])
        .arg(script)
        .arg(base)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("MVRESULT ")) else {
        return fail(format!(
            "wrk printed no result ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    };
    let v: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let [requests, duration_us, p50_us, p99_us, errors] = v[..] else {
        return fail(format!("wrk result line {line:?}"));
    };
    Ok(Figures {
        per_sec: requests / (duration_us / 1e6),
        p50_ms: p50_us / 1000.0,
        p99_ms: p99_us / 1000.0,
        errors: errors as u64,
    })
}

/// `mailvault user add` (ignoring "exists": the store is reused) and a fresh token.
fn user_with_token(bin: &Path, store: &Path, name: &str, args: &[&str]) -> BenchResult<String> {
    let mut add = mailvault(bin, store);
    add.args(["user", "add", name, "--password-stdin"]).args(args);
    add.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = add.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(format!("{PASSWORD}\n").as_bytes())?;
    }
    let added = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&added.stderr);
    if !added.status.success() && !err.contains("exists") {
        return fail(format!("mailvault user add {name}: {}", err.trim()));
    }
    let out = mailvault(bin, store).args(["user", "token", name]).output()?;
    if !out.status.success() {
        return fail(format!(
            "mailvault user token {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Waits until `status --json` says the search index has applied every record.
fn wait_for_search_index(bin: &Path, store: &Path, server: &mut Server, log: &Path) -> BenchResult<()> {
    let until = Instant::now() + Duration::from_secs(3600);
    loop {
        let out = mailvault(bin, store).args(["status", "--json"]).output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        if let (Some(i), Some(r)) = (v["search_indexed_seq"].as_u64(), v["records"].as_u64()) {
            if i >= r {
                return Ok(());
            }
        }
        server.check_running(log)?;
        if Instant::now() >= until {
            return fail("the search index did not catch up within an hour");
        }
        thread::sleep(Duration::from_millis(500));
    }
}

fn run() -> BenchResult<()> {
    let options = Options::parse(
        &[
            "--dir",
            "--messages",
            "--seed",
            "--seconds",
            "--clients",
            "--message-path",
        ],
        USAGE,
    )?;
    let Some(base) = options.path("--dir") else {
        return fail(format!("--dir is needed\n{USAGE}"));
    };
    let n = options.count("--messages", 1_000_000)? as u64;
    let seed = options.count("--seed", 1)? as u64;
    let secs = options.count("--seconds", 10)? as f64;
    let clients: Vec<usize> = match options.path("--clients") {
        Some(list) => list
            .display()
            .to_string()
            .split(',')
            .map(|c| c.trim().parse::<usize>().map_err(|_| format!("--clients {c:?}")))
            .collect::<Result<_, _>>()?,
        None => vec![1, 8, 32],
    };
    let message_path = options.path("--message-path").map_or_else(
        || "/api/v1/messages/{seq}".to_string(),
        |p| p.display().to_string(),
    );
    let bin = mailvault_binary()?;
    let store_dir = base.join("store");
    let key = store_dir.join("signing.key");
    if !key.is_file() {
        return fail(format!(
            "{}: no store; build it with `search --dir {}`",
            store_dir.display(),
            base.display()
        ));
    }
    println!("mailvault web benchmark");
    println!("machine  {}", machine());
    println!("source   {}", source_version());
    println!(
        "store    {} ({n} generated messages, seed {seed})",
        store_dir.display()
    );

    // Users: the whole-archive auditor and USERS scoped users, each with a token.
    let gen = MailGen::new(seed, n);
    let root = user_with_token(
        &bin,
        &store_dir,
        "bench-root",
        &["--role", "auditor", "--all-domains"],
    )?;
    let mut addresses = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..USERS {
        let address = gen.people[(i * 37) % gen.people.len()].address.clone();
        tokens.push(user_with_token(
            &bin,
            &store_dir,
            &format!("bench-user-{i}"),
            &["--address", &address],
        )?);
        addresses.push(address);
    }
    let mix = query_mix(&gen, &addresses);
    let parsed: Vec<(Principal, Query)> = mix
        .iter()
        .map(|m| {
            let p = match m.user {
                Some(u) => Principal::user([&addresses[u]])?,
                None => Principal::auditor_all(),
            };
            Ok((p, Query::parse(&m.text).map_err(|e| format!("{}: {e}", m.text))?))
        })
        .collect::<BenchResult<_>>()?;
    let page = SearchOptions {
        limit: LIMIT,
        ..SearchOptions::default()
    };

    // In-process, the store opened for writing (catches the index up first).
    let t = Instant::now();
    let store = Arc::new(Store::open(&store_dir, &key, StoreConfig::default())?);
    store.wait_searchable()?;
    println!(
        "open     store opened and search index current in {:.1} s (a rebuild after a schema \
         change takes minutes)",
        t.elapsed().as_secs_f64()
    );
    for (p, q) in &parsed {
        store.search(p, q, &page)?;
    }
    println!("load     {} at the start of the measurements", load_average());
    println!(
        "mix      {} queries: {PER_KIND} each of rare, common, two-term AND, phrase, from:+date, \
         scoped user ({USERS} users); {LIMIT} hits with snippets, newest first; {secs} s each",
        mix.len()
    );
    let mut inproc = Vec::new();
    for &c in &clients {
        let f = in_process(&store, &parsed, &page, c, secs)?;
        println!("  in-process {c:>2} threads  {}", f.line());
        inproc.push(f);
    }

    // Facet cost: each kind with and without facets, one thread.
    println!("facets   cost per query kind, in-process, 1 thread, {FACET_RUNS} runs each (without → with)");
    let with = SearchOptions {
        facets: true,
        ..page.clone()
    };
    let mut kinds: Vec<&str> = mix.iter().map(|m| m.kind).collect();
    kinds.dedup();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in &kinds {
        let queries: Vec<(Principal, Query)> = mix
            .iter()
            .zip(&parsed)
            .filter(|(m, _)| m.kind == *kind)
            .map(|(_, pq)| pq.clone())
            .collect();
        let without = sequential(&store, &queries, &page, FACET_RUNS)?;
        let faceted = sequential(&store, &queries, &with, FACET_RUNS)?;
        println!(
            "  {kind:<18} p50 {:>7.2} → {:>7.2} ms   p99 {:>7.2} → {:>7.2} ms",
            without.p50_ms, faceted.p50_ms, without.p99_ms, faceted.p99_ms
        );
    }

    // Messages for the message page: the hits of a few common words.
    let root_principal = Principal::auditor_all();
    let mut seqs = Vec::new();
    for r in 0..4 {
        let q = Query::parse(gen.english_word(r * 3))?;
        let hits = store.search(
            &root_principal,
            &q,
            &SearchOptions {
                limit: 100,
                snippets: false,
                ..SearchOptions::default()
            },
        )?;
        seqs.extend(hits.hits.iter().map(|h| h.seq));
    }
    let store = Arc::try_unwrap(store).map_err(|_| "store still shared")?;
    store.close()?;

    // The server on the same store.
    let scratch = tempfile::tempdir()?;
    let log = scratch.path().join("serve.log");
    let mut server = serve::start(
        &bin,
        &store_dir,
        &[
            "--web",
            "127.0.0.1:0",
            "--imap",
            "none",
            "--imaps",
            "none",
            "--lmtp",
            "none",
            "--smtp",
            "none",
            "--admin",
            "none",
        ],
        &log,
    )?;
    let addr = wait_for_listener(&mut server, &log, "web", START_TIMEOUT * 4)?;
    wait_for_search_index(&bin, &store_dir, &mut server, &log)?;
    let url = format!("http://{addr}");
    let requests = |facets: bool| -> Vec<(String, String)> {
        mix.iter()
            .map(|m| {
                let auth = match m.user {
                    Some(u) => &tokens[u],
                    None => &root,
                };
                let extra = if facets { "&facets=1" } else { "" };
                (
                    format!("/api/v1/search?q={}&limit={LIMIT}{extra}", encode(&m.text)),
                    format!("Bearer {auth}"),
                )
            })
            .collect()
    };
    let search_script = scratch.path().join("search.lua");
    std::fs::write(&search_script, wrk_script(&requests(false)))?;
    let facet_script = scratch.path().join("facets.lua");
    std::fs::write(&facet_script, wrk_script(&requests(true)))?;
    let message_script = scratch.path().join("message.lua");
    let message_requests: Vec<(String, String)> = seqs
        .iter()
        .map(|s| {
            (
                message_path.replace("{seq}", &s.to_string()),
                format!("Bearer {root}"),
            )
        })
        .collect();
    std::fs::write(&message_script, wrk_script(&message_requests))?;
    // Warm-up: every query once over the API.
    wrk(&url, &search_script, 1, 3.0)?;

    println!("api      GET /api/v1/search (wrk; one connection per client)");
    let mut api = Vec::new();
    for &c in &clients {
        let f = wrk(&url, &search_script, c, secs)?;
        println!("  API        {c:>2} clients  {}", f.line());
        api.push(f);
    }
    let faceted: Vec<(usize, Figures)> = clients
        .iter()
        .filter(|c| **c == 8)
        .map(|&c| Ok((c, wrk(&url, &facet_script, c, secs)?)))
        .collect::<BenchResult<_>>()?;
    for (c, f) in &faceted {
        println!("  API facets=1 {c:>2} clients {}", f.line());
    }
    println!(
        "message  GET {message_path} ({} messages)",
        message_requests.len()
    );
    let mut message = Vec::new();
    for &c in &clients {
        let f = wrk(&url, &message_script, c, secs)?;
        println!("  message    {c:>2} clients  {}", f.line());
        message.push((c, f));
    }
    server.terminate()?;
    server.wait(Duration::from_secs(60))?;

    println!("summary (targets of issue #16)");
    for (i, &c) in clients.iter().enumerate() {
        let ratio = api[i].per_sec / inproc[i].per_sec.max(f64::MIN_POSITIVE);
        let mut line = format!(
            "  {c:>2} clients: API {:.1}/s vs in-process {:.1}/s = {ratio:.2} (target >= {RATIO_TARGET}: {})",
            api[i].per_sec,
            inproc[i].per_sec,
            verdict(ratio >= RATIO_TARGET)
        );
        if c == 8 {
            let _ = write!(
                line,
                "; API p99 {:.1} ms (target <= {P99_TARGET_MS}: {})",
                api[i].p99_ms,
                verdict(api[i].p99_ms <= P99_TARGET_MS)
            );
        }
        println!("{line}");
    }
    for (c, f) in &message {
        println!(
            "  message page {c:>2} clients: p99 {:.1} ms (target <= {MESSAGE_P99_TARGET_MS}: {})",
            f.p99_ms,
            verdict(f.p99_ms <= MESSAGE_P99_TARGET_MS)
        );
    }
    println!("load     {} at the end", load_average());
    Ok(())
}
