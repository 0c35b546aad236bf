//! bench/s3, part 3: IMAP FETCH of messages whose segments were evicted to object storage
//! (`[storage.s3] cache_size`), next to the same FETCHes of messages in local segments, with
//! the real `mailvault serve` and a plain TCP IMAP client (bench/README.md §s3).
//!
//! Cold: `range_cache_size = 0` and `read_cache_mib = 0`, so every FETCH of an evicted message
//! is a range GET of its frame from the bucket, checked against the stub's leaf hash and the
//! tree before it is decoded; a FETCH of a local message is a read of the segment file (the
//! floor). Warm: a second server with the range cache on reads each evicted message once to
//! fill it, then the same FETCHes again are timed. Every answer is checked against the message
//! as built (length and BLAKE3). Prints; never asserts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use archive_core::log::evicted::{list_log, list_stubs, EvictedSegment};
use archive_core::store::Layout;

use crate::dovecot::{tail, Server};
use crate::imap_client::{Endpoint, Imap};
use crate::mailgen::Rng;
use crate::serve::{self, wait_for_listener};
use crate::{fail, mailvault, mb, BenchResult};

/// A message of the store as built: its seq (its UID in an auditor's `Archive`), its length
/// and its BLAKE3.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub seq: u64,
    pub len: u64,
    pub blake3: [u8; 32],
}

/// What the measurement needs from bench/s3.
pub struct Setup<'a> {
    pub bin: &'a Path,
    /// The store, its sealed segments offloaded (receipts in the log), not running.
    pub store: &'a Path,
    /// Where configurations and server logs go.
    pub scratch: &'a Path,
    /// The `[store]` lines (segment size) of bench/s3's configuration.
    pub store_section: String,
    /// Its `[storage.s3]` lines (endpoint, bucket, prefix, credentials file).
    pub s3_section: String,
    pub sources: &'a [Source],
    /// FETCHes per pass.
    pub fetches: usize,
}

const USER: &str = "bench-auditor";
const PASSWORD: &str = "bench-auditor-password";
/// The bench's messages are at most about 2.7 MB.
const MAX_BODY: u64 = 64 << 20;
const PATIENCE: Duration = Duration::from_secs(300);

/// The FETCHes of one pass: each one's time, and the bytes they brought.
struct Pass {
    times: Vec<Duration>,
    bytes: u64,
    distinct: usize,
}

impl Pass {
    /// The nearest-rank percentile `p` of the FETCH times, in ms.
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.times.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted
            .get(rank - 1)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }

    fn mb_per_s(&self) -> f64 {
        mb(self.bytes) / self.times.iter().map(Duration::as_secs_f64).sum::<f64>()
    }

    fn line(&self) -> String {
        format!(
            "{} FETCHes of {} messages ({:.1} MB), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:.1} MB/s",
            self.times.len(),
            self.distinct,
            mb(self.bytes),
            self.percentile(50.0),
            self.percentile(99.0),
            self.percentile(100.0),
            self.mb_per_s()
        )
    }
}

/// Runs part 3 and prints its figures.
pub fn measure(s: &Setup) -> BenchResult<()> {
    add_auditor(s.bin, s.store)?;
    let layout = Layout::new(s.store);
    // Every segment but the newest two (the active one and the newest sealed) is evicted.
    let to_evict = list_log(&layout.log_dir)?.len().saturating_sub(2);
    if to_evict == 0 {
        return fail("cold reads need at least two sealed segments (--segments 2)");
    }

    let (mut server, imap, log) = start(s, "cold", "0")?;
    let listening = Instant::now();
    wait_evicted(s, &mut server, &log, to_evict)?;
    let evicted_after = listening.elapsed().as_secs_f64();
    let evicted = evicted_ranges(&layout.log_dir)?;
    let (remote, local): (Vec<Source>, Vec<Source>) = s
        .sources
        .iter()
        .partition(|m| evicted.iter().any(|(a, b)| (*a..=*b).contains(&m.seq)));
    if remote.is_empty() || local.is_empty() {
        return fail(format!(
            "{} messages in evicted segments, {} in local ones: need both",
            remote.len(),
            local.len()
        ));
    }
    let mut rng = Rng::new(0x5eed_c01d);
    let mut session = login(imap)?;
    let cold = pass(&mut session, &plan(&remote, s.fetches, &mut rng))?;
    let floor = pass(&mut session, &plan(&local, s.fetches, &mut rng))?;
    session.logout();
    stop(server, &log)?;

    let (server, imap, log) = start(s, "warm", "\"1GiB\"")?;
    let mut session = login(imap)?;
    pass(&mut session, &remote)?;
    let warm = pass(&mut session, &plan(&remote, s.fetches, &mut rng))?;
    session.logout();
    stop(server, &log)?;

    println!(
        "  {} of {} segments evicted (status showed them {evicted_after:.1} s after serve listened); \
         {} messages in them, {} in the local ones",
        evicted.len(),
        evicted.len() + 2,
        remote.len(),
        local.len()
    );
    println!("  (a) evicted, cold (a range GET per FETCH): {}", cold.line());
    println!("  (b) local segments (floor): {}", floor.line());
    println!(
        "  (c) ratio (a)/(b): p50 {:.2}, p99 {:.2}; throughput (b)/(a) {:.2}",
        cold.percentile(50.0) / floor.percentile(50.0),
        cold.percentile(99.0) / floor.percentile(99.0),
        floor.mb_per_s() / cold.mb_per_s()
    );
    println!(
        "  (d) evicted, warm (range_cache_size = 1GiB, read before): {}; p50 {:.2} x the floor",
        warm.line(),
        warm.percentile(50.0) / floor.percentile(50.0)
    );
    let checked = cold.times.len() + floor.times.len() + warm.times.len() + remote.len();
    println!("  every FETCH byte-exact (length and BLAKE3 of the message as built): {checked} of {checked}");
    Ok(())
}

/// `mailvault user add` of an auditor of everything (who sees every message in `Archive`).
fn add_auditor(bin: &Path, store: &Path) -> BenchResult<()> {
    crate::serve::add_user_with(
        bin,
        store,
        USER,
        &["--role", "auditor", "--all-domains"],
        PASSWORD,
    )
}

/// Starts `serve` with a configuration named `name` (range cache `range_cache`), IMAP on a
/// free port, plain-text login allowed (loopback only); returns it, its IMAP address, its log.
fn start(s: &Setup, name: &str, range_cache: &str) -> BenchResult<(Server, Endpoint, PathBuf)> {
    let config = s.scratch.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "{}read_cache_mib = 0\n\n[imap]\nallow_plaintext_login = true\n\n{}cache_size = 1\nrange_cache_size = {range_cache}\n",
            s.store_section, s.s3_section
        ),
    )?;
    let log = s.scratch.join(format!("serve-{name}.log"));
    let config = config.display().to_string();
    let listeners = serve::only_listener("imap");
    let mut args = vec!["--config", config.as_str()];
    args.extend(listeners.iter().map(String::as_str));
    let mut server = serve::start(s.bin, s.store, &args, &log)?;
    let addr = wait_for_listener(&mut server, &log, "imap", PATIENCE)?;
    Ok((server, Endpoint { addr, tls: false }, log))
}

fn login(endpoint: Endpoint) -> BenchResult<Imap> {
    let mut c = Imap::connect_to(endpoint, None, Duration::from_secs(600))?;
    c.login(USER, PASSWORD)?;
    c.select("Archive")?;
    Ok(c)
}

fn stop(mut server: Server, log: &Path) -> BenchResult<()> {
    server.terminate()?;
    let status = server.wait(Duration::from_secs(120))?;
    if !status.success() {
        return fail(format!("serve ended {status}:\n{}", tail(log, 20)));
    }
    Ok(())
}

/// Polls `status --json` next to the server until it counts `count` evicted segments.
fn wait_evicted(s: &Setup, server: &mut Server, log: &Path, count: usize) -> BenchResult<()> {
    let until = Instant::now() + PATIENCE;
    loop {
        let out = mailvault(s.bin, s.store).args(["status", "--json"]).output()?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if status["evicted_segments"].as_u64().unwrap_or(0) >= count as u64 {
            return Ok(());
        }
        server.check_running(log)?;
        if Instant::now() > until {
            return fail(format!(
                "status did not show {count} evicted segments within {PATIENCE:?}; serve log:\n{}",
                tail(log, 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The seq ranges of the evicted segments, from their stubs.
fn evicted_ranges(log_dir: &Path) -> BenchResult<Vec<(u64, u64)>> {
    list_stubs(log_dir)?
        .into_iter()
        .map(|(_, path)| {
            let stub = EvictedSegment::read(&path)?;
            Ok((stub.first_seq, stub.last_seq()))
        })
        .collect()
}

/// `count` FETCHes over `messages`: rounds of all of them, each round in a new random order.
fn plan(messages: &[Source], count: usize, rng: &mut Rng) -> Vec<Source> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let mut round = messages.to_vec();
        for i in (1..round.len()).rev() {
            round.swap(i, rng.below(i as u64 + 1) as usize);
        }
        out.extend(round.into_iter().take(count - out.len()));
    }
    out
}

/// FETCHes each message in turn, timing each from the command's first byte sent to its
/// tagged OK, and checks the bytes.
fn pass(session: &mut Imap, messages: &[Source]) -> BenchResult<Pass> {
    let mut times = Vec::with_capacity(messages.len());
    let mut bytes = 0;
    for m in messages {
        let t = Instant::now();
        let body = session.fetch_body(m.seq, MAX_BODY)?;
        times.push(t.elapsed());
        if body.len() as u64 != m.len || *blake3::hash(&body).as_bytes() != m.blake3 {
            return fail(format!(
                "UID {}: {} bytes that are not the message's {} bytes",
                m.seq,
                body.len(),
                m.len
            ));
        }
        bytes += m.len;
    }
    let mut seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    Ok(Pass {
        times,
        bytes,
        distinct: seqs.len(),
    })
}
