//! Web benchmark: the JSON search API of the release `mailvault serve` under load (wrk, 1, 8
//! and 32 concurrent clients, the query mix of `bench/search`), against the same queries run
//! in-process (`Store::search` on as many threads), so the web layer's cost is a ratio; the
//! HTML search page at 8 clients; the HTML message page and the API's message endpoint; and
//! what facets cost. The HTML pages are timed with the session cookie of a browser-like login
//! (`http::browser_login`), and a run is only a figure if every answer was a 200: a redirect
//! to `/login` is never timed as a page. Runs on the store `bench/search --dir DIR` built.
//! Prints figures next to the issue's targets; never asserts. See bench/README.md.
//!
//! The search runs in rounds (`--rounds`, default 3): in-process first, with the store opened
//! for writing (it catches the search index up, rebuilding it after a schema change), then the
//! store is closed and `serve` opens it (a second opener would wait for the store's lock). Each
//! round's ratio compares measurements a minute apart; the verdict is on the median ratio, so
//! that a neighbour's load during one phase does not decide it. The facets, the pages and the
//! message endpoints are measured once, in the last round.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use archive_core::search::{Principal, Query, SearchOptions};
use archive_core::{Store, StoreConfig};
use mailvault_bench::dovecot::{Server, START_TIMEOUT};
use mailvault_bench::http::{self, browser_login, encode};
use mailvault_bench::mailgen::MailGen;
use mailvault_bench::serve::{self, wait_for_listener};
use mailvault_bench::{
    fail, load_average, machine, mailvault, mailvault_binary, source_version, verdict, BenchResult, Options,
};

const USAGE: &str = "usage: web --dir DIR [--messages N] [--seed S] [--seconds S] [--clients 1,8,32]\n\
  --dir DIR          the directory `search --dir DIR` built its store in (DIR/store)\n\
  --messages N       generated messages of that store (default 1000000; picks the query words)\n\
  --seed S           its generator seed (default 1)\n\
  --seconds S        each measurement's duration (default 10)\n\
  --clients LIST     concurrent clients (default 1,8,32)\n\
  --rounds N         rounds of in-process then API search (default 3; the pages once, in the last)\n\
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
#[derive(Clone, Default)]
struct Figures {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// Why the run is no figure: answers that were not 200 (a redirect to `/login`, an
    /// error), in the check before it or during it.
    refused: Option<String>,
}

impl Figures {
    fn refused(why: String) -> Figures {
        Figures {
            refused: Some(why),
            ..Figures::default()
        }
    }

    fn line(&self) -> String {
        if let Some(why) = &self.refused {
            return format!("NO FIGURE: {why}");
        }
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

    /// `p99 X ms`, or why there is no figure.
    fn p99(&self) -> String {
        match &self.refused {
            Some(_) => "no figure (answers not 200)".into(),
            None => format!("p99 {:.1} ms", self.p99_ms),
        }
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
        refused: None,
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
        refused: None,
    })
}

/// Facet cost: each kind of the mix with and without facets, one thread (printed).
fn facet_costs(
    store: &Store,
    mix: &[Mixed],
    parsed: &[(Principal, Query)],
    page: &SearchOptions,
) -> BenchResult<()> {
    println!("facets   cost per query kind, in-process, 1 thread, {FACET_RUNS} runs each (without → with)");
    let with = SearchOptions {
        facets: true,
        ..page.clone()
    };
    let mut kinds: Vec<&str> = mix.iter().map(|m| m.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in &kinds {
        let queries: Vec<(Principal, Query)> = mix
            .iter()
            .zip(parsed)
            .filter(|(m, _)| m.kind == *kind)
            .map(|(_, pq)| pq.clone())
            .collect();
        let without = sequential(store, &queries, page, FACET_RUNS)?;
        let faceted = sequential(store, &queries, &with, FACET_RUNS)?;
        println!(
            "  {kind:<18} p50 {:>7.2} → {:>7.2} ms   p99 {:>7.2} → {:>7.2} ms",
            without.p50_ms, faceted.p50_ms, without.p99_ms, faceted.p99_ms
        );
    }
    Ok(())
}

/// Messages for the message page: the hits of a few common words.
fn message_seqs(store: &Store, gen: &MailGen) -> BenchResult<Vec<u64>> {
    let root = Principal::auditor_all();
    let mut seqs = Vec::new();
    for r in 0..4 {
        let q = Query::parse(gen.english_word(r * 3))?;
        let hits = store.search(
            &root,
            &q,
            &SearchOptions {
                limit: 100,
                snippets: false,
                ..SearchOptions::default()
            },
        )?;
        seqs.extend(hits.hits.iter().map(|h| h.seq));
    }
    Ok(seqs)
}

/// What one start of `serve` measured: the API search at each concurrency, and in the last
/// round the facets, the pages and the message endpoints.
#[derive(Default)]
struct ServerFigures {
    api: Vec<Figures>,
    api_facets: Option<Figures>,
    search_page: Option<Figures>,
    message: Vec<(usize, Figures, Figures)>,
}

/// `serve` on the bench store, and what its measurements need.
struct ServerRun<'a> {
    bin: &'a Path,
    store_dir: &'a Path,
    mix: &'a [Mixed],
    root: &'a str,
    tokens: &'a [String],
    clients: &'a [usize],
    secs: f64,
}

impl ServerRun<'_> {
    /// Starts `serve`, times the API search at each concurrency and, with `pages` (the
    /// messages for the message page), everything else; stops it.
    fn run(&self, pages: Option<&[u64]>) -> BenchResult<ServerFigures> {
        let scratch = tempfile::tempdir()?;
        let log = scratch.path().join("serve.log");
        let args = serve::only_listener("web");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = serve::start(self.bin, self.store_dir, &args, &log)?;
        let addr = wait_for_listener(&mut server, &log, "web", START_TIMEOUT * 4)?;
        wait_for_search_index(self.bin, self.store_dir, &mut server, &log)?;
        let addr = addr.to_string();
        // Browser sessions for the pages: the same users as the tokens, logged in through the form.
        let root_session = browser_login(&addr, "bench-root", PASSWORD)?;
        let sessions: Vec<String> = (0..USERS)
            .map(|i| browser_login(&addr, &format!("bench-user-{i}"), PASSWORD))
            .collect::<BenchResult<_>>()?;
        let searches = |page: &str, facets: bool| -> Vec<Request> {
            self.mix
                .iter()
                .map(|m| {
                    let extra = if facets { "&facets=1" } else { "" };
                    let path = format!("{page}?q={}&limit={LIMIT}{extra}", encode(&m.text));
                    match (page, m.user) {
                        ("/search", Some(u)) => Request {
                            path,
                            header: "Cookie",
                            value: sessions[u].clone(),
                        },
                        ("/search", None) => Request {
                            path,
                            header: "Cookie",
                            value: root_session.clone(),
                        },
                        (_, Some(u)) => Request {
                            path,
                            header: "Authorization",
                            value: format!("Bearer {}", self.tokens[u]),
                        },
                        (_, None) => Request {
                            path,
                            header: "Authorization",
                            value: format!("Bearer {}", self.root),
                        },
                    }
                })
                .collect()
        };
        let seqs = pages.unwrap_or_default();
        let messages = |page: &str, header: &'static str, value: &str| -> Vec<Request> {
            seqs.iter()
                .map(|s| Request {
                    path: format!("{page}/{s}"),
                    header,
                    value: value.to_string(),
                })
                .collect()
        };
        // Each run: its requests, what a good answer holds, its wrk script.
        let runs: Vec<(&str, Vec<Request>, &str)> = vec![
            ("search", searches("/api/v1/search", false), "\"total\""),
            ("facets", searches("/api/v1/search", true), "\"facets\""),
            ("search-page", searches("/search", false), "id=\"total\""),
            (
                "message-page",
                messages("/messages", "Cookie", &root_session),
                "id=\"integrity\"",
            ),
            (
                "message-api",
                messages(
                    "/api/v1/messages",
                    "Authorization",
                    &format!("Bearer {}", self.root),
                ),
                "\"seq\"",
            ),
        ];
        let mut scripts = std::collections::HashMap::new();
        for (name, requests, marker) in &runs {
            let script = scratch.path().join(format!("{name}.lua"));
            std::fs::write(&script, wrk_script(requests)?)?;
            scripts.insert(*name, (script, requests.as_slice(), *marker));
        }
        let run_for = |name: &str, c: usize, secs: f64| -> BenchResult<Figures> {
            let (script, requests, marker) = &scripts[name];
            measure(&addr, script, requests, marker, c, secs)
        };
        let timed = |name: &str, c: usize| run_for(name, c, self.secs);
        // Warm-up: every query over the API (after its check), 3 s.
        run_for("search", 1, 3.0)?;

        println!("api      GET /api/v1/search (wrk; one connection per client)");
        let mut figures = ServerFigures::default();
        for &c in self.clients {
            let f = timed("search", c)?;
            println!("  API        {c:>2} clients  {}", f.line());
            figures.api.push(f);
        }
        if pages.is_some() {
            let eight = self.clients.contains(&8);
            figures.api_facets = eight.then(|| timed("facets", 8)).transpose()?;
            if let Some(f) = &figures.api_facets {
                println!("  API facets=1  8 clients  {}", f.line());
            }
            println!(
                "page     GET /search?q=…&limit={LIMIT} (HTML, facets on the first page; the \
                 session of a browser login)"
            );
            figures.search_page = eight.then(|| timed("search-page", 8)).transpose()?;
            if let Some(f) = &figures.search_page {
                println!("  page        8 clients  {}", f.line());
            }
            println!(
                "message  GET /messages/{{seq}} (HTML, the session of a browser login) and \
                 GET /api/v1/messages/{{seq}}, {} messages",
                seqs.len()
            );
            for &c in self.clients {
                let page = timed("message-page", c)?;
                println!("  page       {c:>2} clients  {}", page.line());
                let api = timed("message-api", c)?;
                println!("  API        {c:>2} clients  {}", api.line());
                figures.message.push((c, page, api));
            }
        }
        server.terminate()?;
        server.wait(Duration::from_secs(60))?;
        Ok(figures)
    }
}

/// One request of a wrk script: path, and the one header that authenticates it
/// (`Authorization: Bearer …` for the API, `Cookie: mailvault_session=…` for the pages).
#[derive(Clone)]
struct Request {
    path: String,
    header: &'static str,
    value: String,
}

/// A wrk script sending `requests` round and round, each connection from its own offset,
/// counting answers that are not 200 (wrk itself counts only 4xx/5xx: a 303 to `/login`
/// would pass), and printing one parseable result line.
fn wrk_script(requests: &[Request]) -> BenchResult<String> {
    let mut s = String::from("local requests = {\n");
    for r in requests {
        // Paths are percent-encoded, tokens and session ids base64url or hex; checked anyway.
        if [&r.path, &r.value].iter().any(|v| v.contains(['"', '\\', '\n'])) {
            return fail(format!("a request unfit for the wrk script: {}", r.path));
        }
        let _ = writeln!(s, "  {{\"{}\", \"{}\", \"{}\"}},", r.path, r.header, r.value);
    }
    s.push_str(
        r#"}
local counter = 0
local threads = {}
function setup(thread)
  thread:set("offset", counter * 7)
  table.insert(threads, thread)
  counter = counter + 1
end
local i = 0
function init(args)
  i = offset or 0
  non200 = 0
  first_bad = 0
end
function request()
  i = i + 1
  local r = requests[(i % #requests) + 1]
  return wrk.format("GET", r[1], {[r[2]] = r[3]})
end
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_bad == 0 then first_bad = status end
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  local bad, first = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non200") or 0)
    if first == 0 then first = t:get("first_bad") or 0 end
  end
  io.write(string.format("MVRESULT %d %d %.1f %.1f %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout, bad, first))
end
"#,
    );
    Ok(s)
}

/// Asks each distinct request once (this also warms the caches up): every answer must be a
/// 200 whose body holds `marker`. `None` if all are, else why not.
fn check(addr: &str, requests: &[Request], marker: &str) -> BenchResult<Option<String>> {
    let mut seen = std::collections::HashSet::new();
    for r in requests.iter().filter(|r| seen.insert((&r.path, &r.value))) {
        let answer = http::get(addr, &r.path, &[(r.header, &r.value)])?;
        if answer.status != 200 || !answer.text().contains(marker) {
            return Ok(Some(format!(
                "GET {} answered {}{} before the run",
                r.path,
                answer.status,
                answer
                    .header("location")
                    .map_or_else(|| format!(" without {marker:?}"), |l| format!(" to {l}"))
            )));
        }
    }
    Ok(None)
}

/// Checks `requests` (see [`check`]), then times them with wrk: no figure if the check or
/// any answer of the run was not a 200.
fn measure(
    addr: &str,
    script: &Path,
    requests: &[Request],
    marker: &str,
    clients: usize,
    secs: f64,
) -> BenchResult<Figures> {
    if let Some(why) = check(addr, requests, marker)? {
        return Ok(Figures::refused(why));
    }
    wrk(&format!("http://{addr}"), script, clients, secs)
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
    let [requests, duration_us, p50_us, p99_us, errors, non_200, first_bad] = v[..] else {
        return fail(format!("wrk result line {line:?}"));
    };
    let refused = (non_200 > 0.0)
        .then(|| format!("{non_200} of {requests} answers were not 200 (the first: {first_bad})"));
    Ok(Figures {
        per_sec: requests / (duration_us / 1e6),
        p50_ms: p50_us / 1000.0,
        p99_ms: p99_us / 1000.0,
        errors: errors as u64,
        refused,
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
            "--rounds",
        ],
        USAGE,
    )?;
    let Some(base) = options.path("--dir") else {
        return fail(format!("--dir is needed\n{USAGE}"));
    };
    let n = options.count("--messages", 1_000_000)? as u64;
    let seed = options.count("--seed", 1)? as u64;
    let secs = options.count("--seconds", 10)? as f64;
    let rounds = options.count("--rounds", 3)?;
    let clients: Vec<usize> = match options.path("--clients") {
        Some(list) => list
            .display()
            .to_string()
            .split(',')
            .map(|c| c.trim().parse::<usize>().map_err(|_| format!("--clients {c:?}")))
            .collect::<Result<_, _>>()?,
        None => vec![1, 8, 32],
    };
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

    println!(
        "mix      {} queries: {PER_KIND} each of rare, common, two-term AND, phrase, from:+date, \
         scoped user ({USERS} users); {LIMIT} hits with snippets, newest first; {secs} s each",
        mix.len()
    );
    let server = ServerRun {
        bin: &bin,
        store_dir: &store_dir,
        mix: &mix,
        root: &root,
        tokens: &tokens,
        clients: &clients,
        secs,
    };
    // Rounds of in-process then API, back to back: the ratio of each round compares two
    // measurements a minute apart, not the two ends of a run that other work on the machine
    // may skew differently.
    let mut inproc_rounds = Vec::new();
    let mut api_rounds = Vec::new();
    let mut last_round = None;
    for round in 1..=rounds {
        println!("round    {round} of {rounds}");
        // In-process, the store opened for writing (catches the index up first).
        let t = Instant::now();
        let store = Arc::new(Store::open(&store_dir, &key, StoreConfig::default())?);
        store.wait_searchable()?;
        if round == 1 {
            println!(
                "open     store opened and search index current in {:.1} s (a rebuild after a \
                 schema change takes minutes)",
                t.elapsed().as_secs_f64()
            );
        }
        for (p, q) in &parsed {
            store.search(p, q, &page)?;
        }
        println!("load     {} at the start of the round", load_average());
        let mut inproc = Vec::new();
        for &c in &clients {
            let f = in_process(&store, &parsed, &page, c, secs)?;
            println!("  in-process {c:>2} threads  {}", f.line());
            inproc.push(f);
        }
        inproc_rounds.push(inproc);
        let last = round == rounds;
        let seqs = if last {
            facet_costs(&store, &mix, &parsed, &page)?;
            message_seqs(&store, &gen)?
        } else {
            Vec::new()
        };
        let store = Arc::try_unwrap(store).map_err(|_| "store still shared")?;
        store.close()?;

        let figures = server.run(last.then_some(seqs.as_slice()))?;
        api_rounds.push(figures.api.clone());
        if last {
            last_round = Some(figures);
        }
    }
    let Some(last) = last_round else {
        return fail("--rounds must be at least 1");
    };

    println!("summary (targets of issue #16; ratios: the median of the rounds' ratios)");
    for (i, &c) in clients.iter().enumerate() {
        let refused = api_rounds.iter().find_map(|r| r[i].refused.clone());
        if let Some(why) = refused {
            println!("  {c:>2} clients: API search no figure: {why}");
            continue;
        }
        let mut ratios: Vec<f64> = inproc_rounds
            .iter()
            .zip(&api_rounds)
            .map(|(inproc, api)| api[i].per_sec / inproc[i].per_sec.max(f64::MIN_POSITIVE))
            .collect();
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        ratios.sort_by(f64::total_cmp);
        let ratio = percentile(&ratios, 0.5);
        let median_rate = |runs: &[Vec<Figures>]| {
            let mut rates: Vec<f64> = runs.iter().map(|r| r[i].per_sec).collect();
            rates.sort_by(f64::total_cmp);
            percentile(&rates, 0.5)
        };
        let api = &last.api[i];
        let mut line = format!(
            "  {c:>2} clients: API {:.1}/s vs in-process {:.1}/s (medians); ratio {ratio:.2} \
             (rounds {}) (target >= {RATIO_TARGET}: {})",
            median_rate(&api_rounds),
            median_rate(&inproc_rounds),
            each.join(", "),
            verdict(ratio >= RATIO_TARGET)
        );
        if c == 8 {
            let _ = write!(
                line,
                "; API p99 {:.1} ms in the last round (target <= {P99_TARGET_MS}: {})",
                api.p99_ms,
                verdict(api.p99_ms <= P99_TARGET_MS)
            );
        }
        println!("{line}");
    }
    let ServerFigures {
        api,
        api_facets,
        search_page,
        message,
    } = last;
    if let (Some(page), Some(i)) = (&search_page, clients.iter().position(|c| *c == 8)) {
        let rate = |f: &Figures| match f.refused {
            Some(_) => "-".to_string(),
            None => format!("{:.1}/s", f.per_sec),
        };
        println!(
            "   8 clients: search page (HTML, facets) {} {}; API {} {}; API facets=1 {}",
            rate(page),
            page.p99(),
            rate(&api[i]),
            api[i].p99(),
            api_facets
                .as_ref()
                .map_or_else(String::new, |f| format!("{} {}", rate(f), f.p99()))
        );
    }
    for (c, page, api) in &message {
        let met = match page.refused {
            Some(_) => String::new(),
            None => format!(
                " (target <= {MESSAGE_P99_TARGET_MS}: {})",
                verdict(page.p99_ms <= MESSAGE_P99_TARGET_MS)
            ),
        };
        println!(
            "  message page {c:>2} clients: HTML {}{met}; API {}",
            page.p99(),
            api.p99()
        );
    }
    println!("load     {} at the end", load_average());
    Ok(())
}
