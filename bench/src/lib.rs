//! Shared pieces of the mailvault benchmarks (see bench/README.md): command-line options,
//! fetching and listing the corpus, finding and running the release `mailvault` binary, and
//! small helpers for timing and printing. Benchmarks print figures; nothing here asserts.

/// The `mailvault` binary's allocator (see its src/main.rs), so that in-process figures
/// compare with `serve` on equal terms.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod dovecot;
pub mod evicted_reads;
pub mod http;
pub mod imap_client;
pub mod mailgen;
pub mod serve;
pub mod smtp_client;
pub mod soak;
pub mod weed;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Errors end a benchmark with a one-line message.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Builds an error from a message.
pub fn fail<T>(msg: impl Into<String>) -> BenchResult<T> {
    Err(msg.into().into())
}

/// `--name value` options; `allowed` lists the names a benchmark takes.
pub struct Options {
    values: HashMap<String, String>,
}

impl Options {
    /// Parses `std::env::args()`; `--help` prints `usage` and exits.
    pub fn parse(allowed: &[&str], usage: &str) -> BenchResult<Options> {
        let mut values = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                println!("{usage}");
                std::process::exit(0);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            if !allowed.contains(&name.as_str()) {
                return fail(format!("unknown argument {arg:?}\n{usage}"));
            }
            let value = match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => return fail(format!("{name} needs a value\n{usage}")),
            };
            values.insert(name, value);
        }
        Ok(Options { values })
    }

    /// The value of `--name`, as a path.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.values.get(name).map(PathBuf::from)
    }

    /// The value of `--name` as a positive number, or `default`.
    pub fn count(&self, name: &str, default: usize) -> BenchResult<usize> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => fail(format!("{name} wants a positive number, not {v:?}")),
            },
        }
    }
}

/// The workspace root (the bench crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The release `mailvault` binary: `target/release/mailvault`, next to the running benchmark.
pub fn mailvault_binary() -> BenchResult<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("the benchmark's own path has no directory")?;
    let bin = dir.join("mailvault");
    if !bin.is_file() {
        return fail(format!(
            "{} not found: build the product first with `cargo build --release` (the whole \
             workspace), then run the benchmark with `cargo run --release -p mailvault-bench`",
            bin.display()
        ));
    }
    if dir.file_name().is_some_and(|n| n != "release") {
        eprintln!(
            "note: {} is not a release build directory; figures will not be representative",
            dir.display()
        );
    }
    Ok(bin)
}

/// A `mailvault --data STORE` command, isolated from the caller's MAILVAULT_* environment.
pub fn mailvault(bin: &Path, store: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_remove("MAILVAULT_DATA")
        .env_remove("MAILVAULT_KEY")
        .arg("--data")
        .arg(store)
        .stdin(Stdio::null());
    cmd
}

/// CPU seconds (user, system) of this process's waited-for children, from /proc/self/stat.
/// Assumes the usual 100 clock ticks per second. `None` where /proc is unavailable.
pub fn children_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 is `state`; cutime and cstime are fields 16 and 17 of the full line.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .map(|t| t / 100.0)
    };
    Some((tick(13)?, tick(14)?))
}

/// A finished child process: its output, wall time, CPU time and peak memory.
pub struct Timed {
    pub output: Output,
    pub wall: f64,
    /// User + system CPU seconds of the child (and its threads), when known.
    pub cpu: Option<(f64, f64)>,
    /// Peak resident set size of the child in bytes (its VmHWM), when known.
    pub peak_rss: Option<u64>,
}

/// Runs `cmd` to completion, timing it from spawn to exit; fails on a non-zero exit. Its
/// stdin is empty, as with `Command::output`.
pub fn run_timed(cmd: &mut Command, what: &str) -> BenchResult<Timed> {
    let before = children_cpu();
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (output, peak_rss) = wait_with_rusage(child)?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (before, children_cpu()) {
        (Some((u0, s0)), Some((u1, s1))) => Some((u1 - u0, s1 - s0)),
        _ => None,
    };
    if !output.status.success() {
        return fail(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(Timed {
        output,
        wall,
        cpu,
        peak_rss,
    })
}

/// Collects a child's output and reaps it, keeping its peak RSS: the largest `VmHWM` of
/// /proc/PID/status, read every 5 ms until it exits (`ru_maxrss` would not do: a child
/// spawned with vfork, as std does, inherits the spawner's high-water mark at exec). The
/// child is reaped only after the last read, so its PID cannot have been reused.
fn wait_with_rusage(mut child: std::process::Child) -> BenchResult<(Output, Option<u64>)> {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = None;
            loop {
                let finished = done.load(Ordering::Acquire);
                if let Some(hwm) = vm_hwm(pid) {
                    peak = peak.max(Some(hwm));
                }
                if finished {
                    return peak;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    // Wait for the exit without reaping (WNOWAIT): the poller's last read is then still of
    // this child (a zombie has no VmHWM; that read finds none).
    // SAFETY: an all-zero siginfo_t is a valid value; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    done.store(true, Ordering::Release);
    let peak = poller.join().map_err(|_| "RSS poller panicked")?;
    let status = child.wait()?;
    let output = Output {
        status,
        stdout: stdout.join().map_err(|_| "stdout reader panicked")?,
        stderr: stderr.join().map_err(|_| "stderr reader panicked")?,
    };
    Ok((output, peak))
}

/// The peak resident set size of process `pid` so far, in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `mailvault init`: a new store at `store` (`serve` and `import` create one only when told;
/// `init` works with every version of the binary, also a baseline being compared).
pub fn init(bin: &Path, store: &Path) -> BenchResult<()> {
    run_timed(mailvault(bin, store).arg("init"), "mailvault init").map(|_| ())
}

/// `mailvault import CORPUS` into a new store at `store`, timed end to end (the store is
/// created untimed first).
pub fn import(bin: &Path, store: &Path, corpus: &Path) -> BenchResult<Timed> {
    init(bin, store)?;
    run_timed(
        mailvault(bin, store).arg("import").arg(corpus),
        "mailvault import",
    )
}

/// `import`, tried up to `attempts` times into a fresh `store` (a failed attempt's store is
/// removed): the timing of a failed import means nothing. Failures are returned alongside,
/// for the benchmark to print; they are findings, not to be hidden.
pub fn import_retrying(
    bin: &Path,
    store: &Path,
    corpus: &Path,
    attempts: usize,
) -> BenchResult<(Timed, Vec<String>)> {
    let mut failures = Vec::new();
    loop {
        match import(bin, store, corpus) {
            Ok(timed) => return Ok((timed, failures)),
            Err(e) => {
                failures.push(e.to_string());
                if failures.len() >= attempts {
                    return fail(format!("{} (after {attempts} attempts)", failures.join("; ")));
                }
                std::fs::remove_dir_all(store)?;
            }
        }
    }
}

/// What `mailvault status --json` reports that the benchmarks use.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub messages: u64,
    pub message_bytes: u64,
    pub log_bytes: u64,
    /// Key-value index plus tree cache.
    pub index_bytes: u64,
    pub on_disk_ratio: f64,
}

/// Runs `mailvault status --json`.
pub fn status(bin: &Path, store: &Path) -> BenchResult<Status> {
    let out = run_timed(
        mailvault(bin, store).args(["status", "--json"]),
        "mailvault status",
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out.output.stdout)?;
    let n = |k: &str| v[k].as_u64().ok_or_else(|| format!("status --json has no {k}"));
    Ok(Status {
        messages: v["by_kind"]["message"].as_u64().unwrap_or(0),
        message_bytes: n("message_bytes")?,
        log_bytes: n("log_bytes")?,
        index_bytes: n("index_bytes")?,
        on_disk_ratio: v["on_disk_ratio"].as_f64().unwrap_or(0.0),
    })
}

/// The corpus: the `.eml` files `mailvault import DIR` reads, in the order it reads them.
pub struct Corpus {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub bytes: u64,
}

impl Corpus {
    /// Lists a directory of `.eml` files (recursively, skipping hidden entries, sorted per
    /// directory, as the importer walks it). Maildirs and mbox files are not supported here.
    pub fn open(dir: &Path) -> BenchResult<Corpus> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for path in entries {
                let hidden = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'));
                if hidden {
                    continue;
                }
                if path.is_dir() {
                    walk(&path, out)?;
                } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("eml")) {
                    out.push(path);
                }
            }
            Ok(())
        }
        if dir.join("cur").is_dir() && dir.join("new").is_dir() {
            return fail(format!(
                "{}: a Maildir; give a directory of .eml files",
                dir.display()
            ));
        }
        let mut files = Vec::new();
        walk(dir, &mut files).map_err(|e| format!("{}: {e}", dir.display()))?;
        if files.is_empty() {
            return fail(format!("{}: no .eml files", dir.display()));
        }
        let mut bytes = 0;
        for f in &files {
            bytes += std::fs::metadata(f)
                .map_err(|e| format!("{}: {e}", f.display()))?
                .len();
        }
        Ok(Corpus {
            dir: dir.to_path_buf(),
            files,
            bytes,
        })
    }

    /// Reads every message into memory (which also warms the page cache).
    pub fn read_all(&self) -> BenchResult<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let mut bytes = Vec::new();
            File::open(f)
                .and_then(|mut file| file.read_to_end(&mut bytes))
                .map_err(|e| format!("{}: {e}", f.display()))?;
            out.push(bytes);
        }
        Ok(out)
    }
}

/// The corpus named by `--corpus`, or the full SpamAssassin corpus, fetched once with
/// fixtures/corpus/fetch-spamassassin.sh into a cache directory.
pub fn corpus_dir(given: Option<PathBuf>) -> BenchResult<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    let version = std::env::var("SPAMASSASSIN_VERSION").unwrap_or_else(|_| "0.2.3".into());
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("mailvault").join("bench-corpus"))
        .unwrap_or_else(|| std::env::temp_dir().join("mailvault-bench-corpus"));
    let target = cache.join(format!("spamassassin-{version}"));
    if target.is_dir() {
        eprintln!("corpus: using {}", target.display());
        return Ok(target);
    }
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    // Written to a staging directory and renamed when complete: an interrupted fetch never
    // looks like a corpus.
    let stage = tempfile::Builder::new().prefix(".partial-").tempdir_in(&cache)?;
    let script = workspace_root().join("fixtures/corpus/fetch-spamassassin.sh");
    eprintln!(
        "corpus: fetching the SpamAssassin corpus with {} into {}",
        script.display(),
        target.display()
    );
    let status = Command::new("bash")
        .arg(&script)
        .arg(stage.path())
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !status.success() {
        return fail(format!(
            "{} failed ({status}); fetch a corpus yourself and pass --corpus DIR",
            script.display()
        ));
    }
    std::fs::rename(stage.keep(), &target).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(target)
}

/// The median of `values` (mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Megabytes (10^6 bytes).
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Size of a file, 0 if it is missing.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Total size of the regular files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// "met" or "MISSED", for a figure against its target.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// One line describing the machine: logical CPUs, CPU model and the 1-minute load average.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "nproc {cpus}, {model}; load average {} at start (other work skews the figures)",
        load_average()
    )
}

/// The workspace's git commit, marked "+ uncommitted changes" when the tree is dirty.
pub fn source_version() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(workspace_root())
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("commit {commit} + uncommitted changes"),
            _ => format!("commit {commit}"),
        },
        None => "unknown (not a git checkout)".into(),
    }
}

/// The 1-minute load average, as text ("?" where unknown).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Formats a list of run times.
pub fn runs(secs: &[f64]) -> String {
    secs.iter()
        .map(|s| format!("{s:.3}"))
        .collect::<Vec<_>>()
        .join(" / ")
}
