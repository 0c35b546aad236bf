//! IMAP read path, mailvault against Dovecot, on the same mailbox (issue #5). Prints figures,
//! ratios and verdicts; never asserts. See bench/README.md (`## imap`).
//!
//! ```sh
//! cargo build --release -p mailvault -p mailvault-bench
//! apt-get install dovecot-core dovecot-lmtpd dovecot-imapd dovecot-fts-xapian  # as root; optional
//! target/release/imap [--messages 100000] [--runs 3] [--sessions 200] [--word WORD]
//! ```
//!
//! One mailbox of N messages (default 100,000): the corpus (default SpamAssassin) cycled, each
//! copy made unique by an `X-Mailvault-Bench: n=I` header and addressed `To:
//! bench@example.com` (the original `To:` lines become `X-Original-To:`), CRLF line ends.
//! mailvault gets them through `mailvault import` of a directory of .eml files, then
//! `user add bench`, then `serve` with IMAP only (the benchmark waits until `status --json`
//! shows the search index caught up, then until the server is idle); Dovecot gets the same
//! bytes through its LMTP (16 connections) into a maildir (then the same wait for idle), as
//! user `bench` with the same Argon2id hash, once plain, once with
//! the Xapian FTS plugin (index built with `doveadm index` first) when it is installed.
//!
//! Operations, timed in this client (a minimal IMAP client over plain TCP on loopback), each
//! `--runs` times, medians:
//! - login+SELECT: connect, greeting, LOGIN, SELECT INBOX (until its tagged OK);
//! - FETCH 1:* (UID FLAGS ENVELOPE) on one selected session;
//! - UID FETCH of 1,000 UIDs spread evenly over the mailbox, BODY.PEEK[] (one command);
//! - SEARCH TEXT "WORD" (Dovecot without FTS: reads every message; with fts-xapian);
//! - memory: `--sessions` sessions opened (logged in, INBOX selected) and held; the server's
//!   VmRSS (mailvault: the one process; Dovecot: summed over the master and all its children,
//!   and PSS, which counts shared pages once).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use mailvault_bench::dovecot::{
    free_port, memory_of, process_tree, tail, wait_until_idle, Dovecot, DovecotOptions, DovecotSetup,
    PasswordHash, Server, START_TIMEOUT,
};
use mailvault_bench::imap_client::{Endpoint, Imap};
use mailvault_bench::serve::{self, add_user, wait_for_listener};
use mailvault_bench::{
    corpus_dir, fail, load_average, machine, mailvault, mailvault_binary, mb, median, run_timed,
    source_version, verdict, BenchResult, Corpus, Options,
};

const USAGE: &str = "usage: imap [--messages N] [--runs N] [--sessions N] [--word WORD] [--corpus DIR] \
                     [--scratch DIR] [--keep yes] [--reuse DIR] [--systems mailvault,dovecot] [--xapian yes|no]\n\
  --messages N    messages in the mailbox (default 100000)\n\
  --runs N        runs of each operation, medians reported (default 3)\n\
  --sessions N    concurrent sessions for the memory figure (default 200)\n\
  --word WORD     the SEARCH TEXT word (default \"mortgage\")\n\
  --corpus DIR    directory of .eml files, cycled (default: the SpamAssassin corpus, fetched once)\n\
  --scratch DIR   parent of the stores, the .eml directory and the maildir (default: temp dir)\n\
  --keep yes      keep the stores afterwards (their directory is printed), for profiling\n\
  --reuse DIR     measure mailvault on a store kept by --keep (same --messages; no Dovecot)\n\
  --systems LIST  mailvault,dovecot (default), or one of them\n\
  --xapian yes|no also measure Dovecot with fts-xapian when installed (default yes; its\n\
                  `doveadm index` took ~20 ms per message here)";

const USER: &str = "bench";
const ADDRESS: &str = "bench@example.com";
const PASSWORD: &str = "bench-password-5";
const BODY_FETCHES: usize = 1000;
const LMTP_SENDERS: usize = 16;
const SESSION_THREADS: usize = 8;
/// Issue #14: every read operation at least 1.5x Dovecot's speed, over plain and TLS.
const TARGET_RATIO: f64 = 1.5;
const TARGET_SEARCH_RATIO: f64 = 50.0;
const TARGET_RSS: u64 = 300_000_000;
const IO_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest wait for a server to settle after taking in the mailbox, before measuring.
const IDLE_LIMIT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imap: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The figures of one server (or one configuration of it).
#[derive(Default)]
struct Figures {
    exists: u64,
    login_select: Vec<f64>,
    fetch_all: Vec<f64>,
    fetch_all_responses: u64,
    body: Vec<f64>,
    body_bytes: u64,
    body_responses: u64,
    search: Vec<f64>,
    search_hits: u64,
    sessions_open: Option<f64>,
    sessions: usize,
    /// (RSS, PSS) before the sessions and with them open; processes counted.
    memory_before: (u64, u64),
    memory: (u64, u64),
    processes: usize,
    notes: Vec<String>,
    /// The same operations over implicit TLS (IMAPS), when measured.
    tls: Option<Box<Figures>>,
}

fn run() -> BenchResult<()> {
    let opts = Options::parse(
        &[
            "--messages",
            "--runs",
            "--sessions",
            "--word",
            "--corpus",
            "--scratch",
            "--systems",
            "--xapian",
            "--keep",
            "--reuse",
        ],
        USAGE,
    )?;
    let n = opts.count("--messages", 100_000)?;
    let runs = opts.count("--runs", 3)?;
    let sessions = opts.count("--sessions", 200)?;
    let word = opts
        .path("--word")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "mortgage".into());
    if word.contains(['"', '\\', '\r', '\n']) {
        return fail("--word must not contain quotes, backslashes or line ends");
    }
    let systems = opts
        .path("--systems")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "mailvault,dovecot".into());
    let (do_mailvault, do_dovecot) = (
        systems.contains("mailvault"),
        systems.contains("dovecot") && opts.path("--reuse").is_none(),
    );
    let xapian = match opts.path("--xapian").map(|p| p.display().to_string()).as_deref() {
        None | Some("yes") => true,
        Some("no") => false,
        Some(other) => return fail(format!("--xapian {other:?}: expected yes or no")),
    };
    let scratch_parent = opts.path("--scratch").unwrap_or_else(std::env::temp_dir);
    let reuse = opts.path("--reuse");
    let keep = match opts.path("--keep").map(|p| p.display().to_string()).as_deref() {
        None | Some("no") => false,
        Some("yes") => true,
        Some(other) => return fail(format!("--keep {other:?}: expected yes or no")),
    };

    println!("imap: IMAP read path, mailvault vs Dovecot (issue #5)");
    println!("machine  {}", machine());
    println!("source   {}", source_version());
    let bin = mailvault_binary()?;
    let corpus = Corpus::open(&corpus_dir(opts.path("--corpus"))?)?;
    let originals = corpus.read_all()?;
    println!(
        "corpus   {} ({} messages, {:.1} MB), cycled to {n} messages; {runs} runs per operation, \
         {sessions} sessions, SEARCH TEXT \"{word}\"",
        corpus.dir.display(),
        originals.len(),
        mb(corpus.bytes)
    );
    let dovecot_setup = if do_dovecot {
        match DovecotSetup::find() {
            Ok(s) if !s.imap => {
                println!(
                    "dovecot  {}: no IMAP server (dovecot-imapd missing: `apt-get install dovecot-imapd`); \
                     Dovecot is NOT measured",
                    s.version
                );
                None
            }
            Ok(s) => {
                println!(
                    "dovecot  {} ({}); fts-xapian {}",
                    s.version,
                    s.binary.display(),
                    if s.fts_xapian {
                        "installed"
                    } else {
                        "NOT installed (`apt-get install dovecot-fts-xapian`): SEARCH measured without FTS only"
                    }
                );
                Some(s)
            }
            Err(why) => {
                println!("dovecot  NOT measured: {why}");
                None
            }
        }
    } else {
        None
    };

    fs::create_dir_all(&scratch_parent).map_err(|e| format!("{}: {e}", scratch_parent.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("mailvault-imap-bench-")
        .tempdir_in(&scratch_parent)?;
    let t = Instant::now();
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| make_message(i, &originals[i % originals.len()]))
        .collect();
    let total_bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();
    println!(
        "mailbox  {n} messages, {:.1} MB (built in {:.1} s)",
        mb(total_bytes),
        t.elapsed().as_secs_f64()
    );

    let mut mv = None;
    if do_mailvault {
        let f = match &reuse {
            Some(kept) => serve_mailvault(&bin, kept, runs, sessions, &word, None)?,
            None => run_mailvault(&bin, scratch.path(), &messages, runs, sessions, &word)?,
        };
        print_figures("mailvault", &f);
        mv = Some(f);
    }
    let mut dc = None;
    let mut dc_fts = None;
    if let Some(setup) = &dovecot_setup {
        let (plain, fts) = run_dovecot(setup, scratch.path(), &messages, runs, sessions, &word, xapian)?;
        if let Some(f) = &fts {
            print_figures("dovecot+fts-xapian", f);
        }
        dc = Some(plain);
        dc_fts = fts;
    }
    drop(messages);
    report(
        n,
        mv.as_ref(),
        dc.as_ref(),
        dc_fts.as_ref(),
        dovecot_setup.as_ref(),
    );
    println!("load average {} at end", load_average());
    if keep {
        println!(
            "kept     {} (mailvault/ is the store, mailvault.toml its config)",
            scratch.keep().display()
        );
    }
    Ok(())
}

/// Message `i` of the mailbox: a unique header, `To: bench@example.com`, the original's
/// header with its `To:` renamed, its body; CRLF line ends.
fn make_message(i: usize, original: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(original.len() + 128);
    out.extend_from_slice(format!("X-Mailvault-Bench: n={i}\r\nTo: {ADDRESS}\r\n").as_bytes());
    let mut in_header = true;
    for line in original.split_inclusive(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if in_header {
            if content.is_empty() {
                in_header = false;
            } else if content.len() >= 3 && content[..3].eq_ignore_ascii_case(b"to:") {
                out.extend_from_slice(b"X-Original-");
            }
        }
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------
// mailvault
// ---------------------------------------------------------------------------------------

fn run_mailvault(
    bin: &Path,
    scratch: &Path,
    messages: &[Vec<u8>],
    runs: usize,
    sessions: usize,
    word: &str,
) -> BenchResult<Figures> {
    let eml = scratch.join("eml");
    let store = scratch.join("mailvault");
    fs::create_dir_all(&eml)?;
    let t = Instant::now();
    for (i, m) in messages.iter().enumerate() {
        let p = eml.join(format!("{:03}/{i:07}.eml", i / 10_000));
        if i % 10_000 == 0 {
            fs::create_dir_all(p.parent().unwrap_or(&eml))?;
        }
        fs::write(&p, m).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let written = t.elapsed().as_secs_f64();
    mailvault_bench::init(bin, &store)?;
    let import = run_timed(mailvault(bin, &store).arg("import").arg(&eml), "mailvault import")?;
    eprintln!(
        "mailvault: wrote {} .eml files in {written:.1} s, imported in {:.1} s",
        messages.len(),
        import.wall
    );
    fs::remove_dir_all(&eml)?;
    add_user(bin, &store, USER, &[ADDRESS], PASSWORD)?;
    serve_mailvault(bin, scratch, runs, sessions, word, Some(import.wall))
}

/// Serves the store in `scratch/mailvault` (IMAP only) and measures it.
fn serve_mailvault(
    bin: &Path,
    scratch: &Path,
    runs: usize,
    sessions: usize,
    word: &str,
    import_secs: Option<f64>,
) -> BenchResult<Figures> {
    let store = scratch.join("mailvault");
    // The default limits are 20 connections from one address and 20 sessions of one user
    // (`[imap.limits]`); the sessions all come from 127.0.0.1 as one user, as Dovecot's
    // `mail_max_userip_connections` is raised too.
    let config = scratch.join("mailvault.toml");
    fs::write(
        &config,
        "[imap]\nallow_plaintext_login = true\n\
         [imap.limits]\nmax_connections_per_ip = 10000\nmax_connections_per_user = 10000\n",
    )?;
    let log = scratch.join("serve.log");
    let config = config.display().to_string();
    let mut server = serve::start(
        bin,
        &store,
        &[
            "--config",
            &config,
            "--imap",
            "127.0.0.1:0",
            "--imaps",
            "127.0.0.1:0",
            "--lmtp",
            "none",
            "--smtp",
            "none",
        ],
        &log,
    )?;
    let addr = wait_for_listener(&mut server, &log, "imap", START_TIMEOUT * 10)?;
    let imaps = wait_for_listener(&mut server, &log, "imaps", START_TIMEOUT)?;
    let t = Instant::now();
    wait_for_search_index(bin, &store, &mut server, &log)?;
    let caught_up = t.elapsed().as_secs_f64();
    let idle = wait_until_idle(server.pid(), IDLE_LIMIT);
    let mut figures = Figures::default();
    let import = import_secs.map_or("store reused".to_string(), |s| format!("import {s:.1} s"));
    figures.notes.push(format!(
        "{import}; search index caught up {caught_up:.1} s after serve started listening; \
         idle {idle:.1} s later"
    ));
    eprintln!("mailvault: serving IMAP on {addr}; measuring");
    let endpoints = (
        Endpoint { addr, tls: false },
        Some(Endpoint {
            addr: imaps,
            tls: true,
        }),
    );
    let measured = measure(endpoints, server.pid(), runs, sessions, word, true, &mut figures);
    server.terminate()?;
    server.wait(Duration::from_secs(60))?;
    measured.map_err(|e| format!("mailvault: {e}\nserve.log:\n{}", tail(&log, 20)))?;
    Ok(figures)
}

/// Polls `status --json` next to the running server until the search index holds every record.
fn wait_for_search_index(bin: &Path, store: &Path, server: &mut Server, log: &Path) -> BenchResult<()> {
    let until = Instant::now() + Duration::from_secs(3600);
    loop {
        let out = run_timed(
            mailvault(bin, store).args(["status", "--json"]),
            "mailvault status",
        )?;
        let v: serde_json::Value = serde_json::from_slice(&out.output.stdout)?;
        let (indexed, records) = (v["search_indexed_seq"].as_u64(), v["records"].as_u64());
        match (indexed, records) {
            (Some(i), Some(r)) if i >= r => return Ok(()),
            (Some(_), Some(_)) => {}
            _ => return fail("status --json has no search_indexed_seq or records"),
        }
        server.check_running(log)?;
        if Instant::now() >= until {
            return fail("the search index did not catch up within an hour");
        }
        thread::sleep(Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------------------------------
// Dovecot
// ---------------------------------------------------------------------------------------

fn run_dovecot(
    setup: &DovecotSetup,
    scratch: &Path,
    messages: &[Vec<u8>],
    runs: usize,
    sessions: usize,
    word: &str,
    xapian: bool,
) -> BenchResult<(Figures, Option<Figures>)> {
    let root = scratch.join("dovecot");
    let mut options = DovecotOptions {
        lmtp_port: free_port()?,
        imap_port: Some(free_port()?),
        imaps_port: Some(free_port()?),
        // The same Argon2id parameters mailvault uses: a login costs both the same hash.
        password: Some(PasswordHash {
            user: USER.into(),
            phc: archive_core::access::hash_password(PASSWORD).map_err(|e| e.to_string())?,
        }),
        fts_xapian: false,
        mail_fsync: "optimized",
    };
    let dovecot = Dovecot::start(setup, &root, &options)?;
    let t = Instant::now();
    deliver(dovecot.lmtp, messages).map_err(|e| format!("dovecot LMTP: {e}\n{}", dovecot.log_tail(20)))?;
    let delivered = t.elapsed().as_secs_f64();
    let idle = wait_until_idle(dovecot.server.pid(), IDLE_LIMIT);
    eprintln!(
        "dovecot: delivered {} messages over LMTP in {delivered:.1} s, idle {idle:.1} s later; measuring",
        messages.len()
    );
    let mut plain = Figures::default();
    plain.notes.push(format!(
        "LMTP delivery {delivered:.1} s ({LMTP_SENDERS} connections, mail_fsync = optimized); \
         logins verify an Argon2id hash (m=19456, t=2, p=1), as mailvault's do"
    ));
    let imap = dovecot.imap.ok_or("no IMAP port")?;
    let imaps = dovecot.imaps.map(|addr| Endpoint { addr, tls: true });
    let imap = Endpoint {
        addr: imap,
        tls: false,
    };
    let measured = measure(
        (imap, imaps),
        dovecot.server.pid(),
        runs,
        sessions,
        word,
        true,
        &mut plain,
    );
    let log = dovecot.log_tail(20);
    dovecot.stop(Duration::from_secs(120))?;
    measured.map_err(|e| format!("dovecot: {e}\ndovecot.log:\n{log}"))?;
    print_figures("dovecot", &plain);
    if !setup.fts_xapian || !xapian {
        return Ok((plain, None));
    }

    options.fts_xapian = true;
    options.lmtp_port = free_port()?;
    options.imap_port = Some(free_port()?);
    options.imaps_port = None;
    let dovecot = Dovecot::start(setup, &root, &options)?;
    let t = Instant::now();
    let indexed = dovecot.doveadm(&["index", "-u", USER, "INBOX"]);
    let index_secs = t.elapsed().as_secs_f64();
    let mut fts = Figures::default();
    match indexed {
        Ok(_) => fts.notes.push(format!(
            "`doveadm index` (fts-xapian) {index_secs:.1} s, {:.1} MB of index",
            mb(mailvault_bench::dir_bytes(
                &root.join("mail").join(USER).join("xapian-indexes")
            ))
        )),
        Err(e) => fts.notes.push(format!("doveadm index failed: {e}")),
    }
    let imap = dovecot.imap.ok_or("no IMAP port")?;
    let imap = Endpoint {
        addr: imap,
        tls: false,
    };
    let measured = measure(
        (imap, None),
        dovecot.server.pid(),
        runs,
        sessions,
        word,
        false,
        &mut fts,
    );
    let log = dovecot.log_tail(20);
    dovecot.stop(Duration::from_secs(120))?;
    if let Err(e) = measured {
        fts.notes.push(format!("FAILED: {e}\ndovecot.log:\n{log}"));
    }
    Ok((plain, Some(fts)))
}

/// Delivers every message to `bench` over LMTP, `LMTP_SENDERS` connections.
fn deliver(addr: SocketAddr, messages: &[Vec<u8>]) -> BenchResult<()> {
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..LMTP_SENDERS {
            s.spawn(|| {
                if let Err(e) = lmtp_sender(addr, messages, &next) {
                    errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    match errors.first() {
        Some(e) => fail(e.clone()),
        None => Ok(()),
    }
}

fn lmtp_sender(addr: SocketAddr, messages: &[Vec<u8>], next: &AtomicUsize) -> Result<(), String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(stream);
    let reply = |r: &mut BufReader<TcpStream>, want: &str| -> Result<(), String> {
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("connection closed".into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        if !line.starts_with(want) {
            return Err(format!("expected {want}, got {:?}", line.trim_end()));
        }
        Ok(())
    };
    reply(&mut r, "220")?;
    let io = |e: std::io::Error| e.to_string();
    w.write_all(b"LHLO bench.example\r\n").map_err(io)?;
    reply(&mut r, "250")?;
    let mut data = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(m) = messages.get(i) else { break };
        w.write_all(format!("MAIL FROM:<>\r\nRCPT TO:<{ADDRESS}>\r\nDATA\r\n").as_bytes())
            .map_err(io)?;
        reply(&mut r, "250")?;
        reply(&mut r, "250")?;
        reply(&mut r, "354")?;
        data.clear();
        for line in m.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        data.extend_from_slice(b".\r\n");
        w.write_all(&data).map_err(io)?;
        reply(&mut r, "250")?;
    }
    let _ = w.write_all(b"QUIT\r\n");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The measurements
// ---------------------------------------------------------------------------------------

/// Runs every operation against the server at `addr` (`pid`: the server's process, for
/// memory). `all`: every operation; otherwise SEARCH only.
fn measure(
    (addr, tls): (Endpoint, Option<Endpoint>),
    pid: u32,
    runs: usize,
    sessions: usize,
    word: &str,
    all: bool,
    f: &mut Figures,
) -> BenchResult<()> {
    measure_operations(addr, runs, word, all, f)?;
    if let Some(tls) = tls {
        let mut over_tls = Figures::default();
        measure_operations(tls, runs, word, all, &mut over_tls)?;
        f.tls = Some(Box::new(over_tls));
    }
    if !all {
        return Ok(());
    }
    measure_sessions(addr, pid, sessions, f);
    Ok(())
}

/// Times each operation `runs` times over one endpoint (`all`: every operation; otherwise
/// SEARCH only).
fn measure_operations(
    addr: Endpoint,
    runs: usize,
    word: &str,
    all: bool,
    f: &mut Figures,
) -> BenchResult<()> {
    // Warm-up: the first SELECT (Dovecot syncs its index with the maildir, mailvault opens the
    // user's view); not counted.
    let mut warm = Imap::login_select(addr, USER, PASSWORD)?;
    f.exists = warm.exists;
    warm.logout();
    if all {
        for _ in 0..runs {
            let t = Instant::now();
            let mut c = Imap::login_select(addr, USER, PASSWORD)?;
            f.login_select.push(t.elapsed().as_secs_f64());
            c.logout();
        }
    }
    let mut c = Imap::login_select(addr, USER, PASSWORD)?;
    let mut uids = Vec::new();
    if all {
        for run in 0..runs {
            let t = Instant::now();
            let r = c.command("FETCH 1:* (UID FLAGS ENVELOPE)", run == 0)?;
            f.fetch_all.push(t.elapsed().as_secs_f64());
            f.fetch_all_responses = r.untagged;
            if run == 0 {
                uids = r.uids;
            }
        }
        if uids.is_empty() {
            return fail("FETCH 1:* returned no UIDs");
        }
        let step = (uids.len() as f64 / BODY_FETCHES as f64).max(1.0);
        let set: Vec<String> = (0..BODY_FETCHES.min(uids.len()))
            .map(|k| uids[((k as f64 * step) as usize).min(uids.len() - 1)].to_string())
            .collect();
        let cmd = format!("UID FETCH {} BODY.PEEK[]", set.join(","));
        for _ in 0..runs {
            let t = Instant::now();
            let r = c.command(&cmd, false)?;
            f.body.push(t.elapsed().as_secs_f64());
            f.body_bytes = r.literal_bytes;
            f.body_responses = r.untagged;
        }
    }
    for _ in 0..runs {
        let t = Instant::now();
        let r = c.command(&format!("SEARCH TEXT \"{word}\""), false)?;
        f.search.push(t.elapsed().as_secs_f64());
        f.search_hits = r.search_hits;
    }
    c.logout();
    Ok(())
}

/// Opens `sessions` sessions at once (8 threads) and measures the server's memory with them.
fn measure_sessions(addr: Endpoint, pid: u32, sessions: usize, f: &mut Figures) {
    thread::sleep(Duration::from_millis(500));
    f.memory_before = tree_memory(pid).0;
    let t = Instant::now();
    let opened: Mutex<Vec<Imap>> = Mutex::new(Vec::with_capacity(sessions));
    let errors = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..SESSION_THREADS {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < sessions {
                    match Imap::login_select(addr, USER, PASSWORD) {
                        Ok(c) => opened.lock().unwrap_or_else(|p| p.into_inner()).push(c),
                        Err(e) => errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(e.to_string()),
                    }
                }
            });
        }
    });
    let mut opened = opened.into_inner().unwrap_or_else(|p| p.into_inner());
    f.sessions_open = Some(t.elapsed().as_secs_f64());
    f.sessions = opened.len();
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = errors.first() {
        f.notes.push(format!(
            "{} sessions failed to open, the first: {e}",
            errors.len()
        ));
    }
    thread::sleep(Duration::from_secs(1));
    let (memory, processes) = tree_memory(pid);
    f.memory = memory;
    f.processes = processes;
    for c in &mut opened {
        c.logout();
    }
}

/// (RSS, PSS) summed over a process and its descendants, and how many processes.
fn tree_memory(pid: u32) -> ((u64, u64), usize) {
    let tree = process_tree(pid);
    let (rss, pss) = tree
        .iter()
        .map(|(p, _)| memory_of(*p))
        .fold((0, 0), |(a, b), (r, p)| (a + r, b + p));
    ((rss, pss), tree.len())
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

/// Prints one system's figures: counts, notes, every run, memory.
fn print_figures(name: &str, f: &Figures) {
    println!(
        "{name}: INBOX EXISTS {}; FETCH 1:* answered {} responses; BODY.PEEK[] {} messages, {:.1} MB; \
         SEARCH TEXT {} hits",
        f.exists,
        f.fetch_all_responses,
        f.body_responses,
        mb(f.body_bytes),
        f.search_hits
    );
    for note in &f.notes {
        println!("  {note}");
    }
    let list = |v: &[f64]| mailvault_bench::runs(v);
    if !f.login_select.is_empty() {
        println!("  runs: login+SELECT {}", list(&f.login_select));
        println!("        FETCH 1:*    {}", list(&f.fetch_all));
        println!("        UID FETCH    {}", list(&f.body));
    }
    println!("        SEARCH TEXT  {}", list(&f.search));
    if let Some(t) = &f.tls {
        println!("  over TLS: login+SELECT {}", list(&t.login_select));
        println!("        FETCH 1:*    {}", list(&t.fetch_all));
        println!("        UID FETCH    {}", list(&t.body));
        println!("        SEARCH TEXT  {}", list(&t.search));
    }
    if let Some(s) = f.sessions_open {
        println!(
            "  {} sessions opened in {s:.1} s; memory before {:.1} MB RSS, with them {:.1} MB RSS \
             ({:.1} MB PSS) over {} process(es)",
            f.sessions,
            mb(f.memory_before.0),
            mb(f.memory.0),
            mb(f.memory.1),
            f.processes
        );
    }
}

/// Picks one operation's run times from a system's figures.
type Pick = fn(&Figures) -> &Vec<f64>;

/// The run times `pick` chooses among the figures over TLS (none if TLS was not measured).
fn tls(f: &Figures, pick: Pick) -> &Vec<f64> {
    static NONE: Vec<f64> = Vec::new();
    f.tls.as_deref().map_or(&NONE, pick)
}

fn report(
    n: usize,
    mv: Option<&Figures>,
    dc: Option<&Figures>,
    fts: Option<&Figures>,
    setup: Option<&DovecotSetup>,
) {
    println!();
    println!("RESULTS  ({n} messages; times are medians of the runs above, seconds; ratio = Dovecot time / mailvault time)");
    println!();
    println!(
        "{:<34} {:>12} {:>12} {:>9}   target / verdict",
        "operation", "mailvault", "dovecot", "ratio"
    );
    let med = |f: Option<&Figures>, pick: Pick| f.map(pick).filter(|v| !v.is_empty()).map(|v| median(v));
    let ops: [(&str, Pick, f64); 8] = [
        ("login+SELECT", |f| &f.login_select, TARGET_RATIO),
        ("FETCH 1:* (UID FLAGS ENVELOPE)", |f| &f.fetch_all, TARGET_RATIO),
        ("UID FETCH BODY.PEEK[] x1000", |f| &f.body, TARGET_RATIO),
        (
            "SEARCH TEXT (Dovecot without FTS)",
            |f| &f.search,
            TARGET_SEARCH_RATIO,
        ),
        ("TLS: login+SELECT", |f| tls(f, |t| &t.login_select), TARGET_RATIO),
        (
            "TLS: FETCH 1:* (UID FLAGS ENVELOPE)",
            |f| tls(f, |t| &t.fetch_all),
            TARGET_RATIO,
        ),
        (
            "TLS: UID FETCH BODY.PEEK[] x1000",
            |f| tls(f, |t| &t.body),
            TARGET_RATIO,
        ),
        (
            "TLS: SEARCH TEXT (no FTS)",
            |f| tls(f, |t| &t.search),
            TARGET_SEARCH_RATIO,
        ),
    ];
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.4} s"));
    for (name, pick, target) in ops {
        let (m, d) = (med(mv, pick), med(dc, pick));
        let line = match (m, d) {
            (Some(m), Some(d)) if m > 0.0 => {
                let ratio = d / m;
                format!("{ratio:>8.2}x   >= {target}x: {}", verdict(ratio >= target))
            }
            _ => format!("{:>9}   >= {target}x: n/a (Dovecot not measured)", "-"),
        };
        println!("{name:<34} {:>12} {:>12} {line}", secs(m), secs(d));
    }
    let m = med(mv, |f| &f.search);
    match (m, med(fts, |f| &f.search)) {
        (Some(m), Some(d)) if m > 0.0 => println!(
            "{:<34} {:>12} {:>12} {:>8.2}x   (no target; information)",
            "SEARCH TEXT (Dovecot fts-xapian)",
            secs(Some(m)),
            secs(Some(d)),
            d / m
        ),
        _ => println!(
            "{:<34} {:>12} {:>12} {:>9}   n/a: {}",
            "SEARCH TEXT (Dovecot fts-xapian)",
            secs(m),
            "-",
            "-",
            if setup.is_some_and(|s| !s.fts_xapian) {
                "dovecot-fts-xapian not installed"
            } else {
                "not measured (--xapian no, or Dovecot missing)"
            }
        ),
    }
    let rss = |f: Option<&Figures>| f.and_then(|f| f.sessions_open.map(|_| f.memory.0));
    let (m, d) = (rss(mv), rss(dc));
    let mbs = |v: Option<u64>| v.map_or("-".to_string(), |b| format!("{:.1} MB", mb(b)));
    let count = |f: Option<&Figures>| f.map_or("-".to_string(), |f| f.sessions.to_string());
    println!(
        "{:<34} {:>12} {:>12} {:>9}   mailvault <= {:.0} MB: {}",
        format!("RSS, {} / {} sessions", count(mv), count(dc)),
        mbs(m),
        mbs(d),
        match (m, d) {
            (Some(m), Some(d)) if m > 0 => format!("{:.2}x", d as f64 / m as f64),
            _ => "-".into(),
        },
        mb(TARGET_RSS),
        m.map_or("n/a", |m| verdict(m <= TARGET_RSS))
    );
    if let Some(d) = dc.filter(|d| d.sessions_open.is_some()) {
        println!(
            "  (Dovecot's RSS is summed over {} processes and counts shared pages in each; its PSS: {:.1} MB)",
            d.processes,
            mb(d.memory.1)
        );
    }
}
