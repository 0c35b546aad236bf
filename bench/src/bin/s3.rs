//! bench/s3: the object-storage paths of the real product against a private SeaweedFS on
//! loopback (or a given endpoint), each next to the limit of the same work with the same
//! client in the same run. Prints; never asserts (bench/README.md §s3).
//!
//! 1. Offload: `mailvault serve` offloads N sealed segments (HEAD, BLAKE3, upload, HEAD,
//!    receipt) vs a plain upload of the same files with archive-s3's `Bucket::put_file`.
//! 2. Restore: `mailvault restore --from-s3` of those segments (list, download, verify, open
//!    and index, audit) vs a download of the same objects plus `verify_log` over them.
//! 3. Cold range reads: `serve` with a small `cache_size` evicts all but the newest two
//!    segments; IMAP `UID FETCH n BODY.PEEK[]` of messages in evicted segments (a range GET
//!    each, no range cache) vs the same FETCHes of messages in local segments, and warm (range
//!    cache on, second read); p50/p99/max and MB/s, every answer checked against the source
//!    (`mailvault_bench::evicted_reads`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use archive_core::log::segment::{list_segments, segment_file_name};
use archive_core::store::Layout;
use archive_core::{Envelope, OnDuplicate, Store, StoreConfig};
use archive_s3::{Bucket, S3Settings};
use mailvault_bench::evicted_reads::{self, Source};
use mailvault_bench::mailgen::Rng;
use mailvault_bench::weed::Weed;
use mailvault_bench::{
    fail, load_average, machine, mailvault, mailvault_binary, mb, run_timed, source_version, BenchResult,
    Options,
};

const USAGE: &str = "usage: s3 [--segments N] [--segment-mib M] [--part-mib P] [--fetches F] \
[--endpoint URL --bucket B --credentials FILE]\n\
  --segments N      sealed segments to offload and restore (default 6)\n\
  --segment-mib M   segment size (default 16)\n\
  --part-mib P      multipart part size, [storage.s3] part_mib (default 8)\n\
  --fetches F       IMAP FETCHes per pass of the cold-read part (default 300)\n\
  --endpoint URL    an S3 endpoint to use instead of a private SeaweedFS on loopback; with\n\
  --bucket B        an existing bucket with Object Lock, and\n\
  --credentials F   a credentials file (mode 0600, aws_access_key_id / aws_secret_access_key)";

const BUCKET: &str = "bench";

fn main() {
    if let Err(e) = run() {
        eprintln!("s3: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let options = Options::parse(
        &[
            "--segments",
            "--segment-mib",
            "--part-mib",
            "--fetches",
            "--endpoint",
            "--bucket",
            "--credentials",
        ],
        USAGE,
    )?;
    let segments = options.count("--segments", 6)?.max(1);
    let segment_mib = options.count("--segment-mib", 16)?.max(1) as u64;
    let part_mib = options.count("--part-mib", 8)?.clamp(5, 1024) as u64;
    let fetches = options.count("--fetches", 300)?.max(1);
    let bin = mailvault_binary()?;
    let tmp = tempfile::Builder::new().prefix("mailvault-bench-s3").tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("machine: {}", machine());
    println!("source: {}", source_version());
    println!("load average at start: {}", load_average());

    let (_weed, mut settings) = match options.path("--endpoint") {
        Some(endpoint) => {
            let bucket = options.path("--bucket").ok_or("--endpoint needs --bucket")?;
            let credentials = options
                .path("--credentials")
                .ok_or("--endpoint needs --credentials")?;
            let settings = S3Settings {
                endpoint: endpoint.display().to_string(),
                bucket: bucket.display().to_string(),
                credentials_file: Some(credentials),
                ..S3Settings::default()
            };
            println!("object store: {} bucket {}", settings.endpoint, settings.bucket);
            (None, settings)
        }
        None => {
            let (weed, settings) = private_weed(&tmp.path().join("weed"), &runtime)?;
            println!(
                "object store: private SeaweedFS (weed mini) at {}",
                settings.endpoint
            );
            (Some(weed), settings)
        }
    };
    settings.retention = "1d".into();
    settings.part_mib = part_mib;
    let run_id = std::process::id();

    // A store with `segments` sealed segments of messages with incompressible attachments
    // (what dominates real mail's bytes), fully indexed: serve has nothing to catch up.
    let store = tmp.path().join("store");
    let built = Instant::now();
    let sources = build_store(&store, segments, segment_mib)?;
    let sealed: Vec<(u64, PathBuf)> = {
        let mut all = list_segments(&Layout::new(&store).log_dir)?;
        all.pop();
        all
    };
    let bytes: u64 = sealed
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    println!(
        "store: {} sealed segments of {segment_mib} MiB, {:.1} MB in all (built in {:.1} s); part size {part_mib} MiB",
        sealed.len(),
        mb(bytes),
        built.elapsed().as_secs_f64()
    );

    // 1. Offload vs plain uploads (one before, one after, with the same client).
    settings.prefix = format!("product-{run_id}/");
    let config = write_config(tmp.path(), &settings, segment_mib)?;
    let bucket = Bucket::connect(&settings)?;
    let plain_before = plain_upload(&bucket, &runtime, &sealed, &format!("plain-a-{run_id}/"))?;
    let offload = offload_secs(&bin, &store, &config, sealed.len())?;
    let plain_after = plain_upload(&bucket, &runtime, &sealed, &format!("plain-b-{run_id}/"))?;
    let plain = (plain_before + plain_after) / 2.0;
    println!("offload:");
    println!(
        "  (a) serve's offload thread: {:.2} s, {:.1} MB/s (HEAD, BLAKE3, upload, HEAD, receipt per segment)",
        offload,
        mb(bytes) / offload
    );
    println!(
        "  (b) plain Bucket::put_file of the same files: {plain_before:.2} s / {plain_after:.2} s, {:.1} MB/s",
        mb(bytes) / plain
    );
    println!("  (c) ratio (a)/(b) = {:.2} (target >= 0.8)", plain / offload);

    // 2. Restore vs download + verify of the same objects.
    let origin = Layout::new(&store).identity()?.origin;
    let restored = tmp.path().join("restored");
    let mut restore = mailvault(&bin, &restored);
    restore
        .args(["restore", "--from-s3", "--config"])
        .arg(&config)
        .arg("--signing-key")
        .arg(Layout::new(&store).default_key);
    let timed = run_timed(&mut restore, "mailvault restore --from-s3")?;
    let floor = download_and_verify(
        &bucket,
        &runtime,
        &settings,
        &origin,
        &sealed,
        &tmp.path().join("floor"),
        &store,
    )?;
    println!("restore:");
    println!(
        "  (a) mailvault restore --from-s3: {:.2} s, {:.1} MB/s (list, download, verify, open and index, audit)",
        timed.wall,
        mb(bytes) / timed.wall
    );
    println!(
        "  (b) download of the same objects + verify_log: {:.2} s ({:.2} + {:.2}), {:.1} MB/s",
        floor.0 + floor.1,
        floor.0,
        floor.1,
        mb(bytes) / (floor.0 + floor.1)
    );
    println!("  (c) ratio (a)/(b) = {:.2}", (floor.0 + floor.1) / timed.wall);

    // 3. IMAP FETCH of evicted messages (cold, warm) vs local ones.
    println!(
        "cold range reads (IMAP UID FETCH BODY.PEEK[] as an auditor over plain TCP; cache_size = 1, \
         range_cache_size = 0, read_cache_mib = 0):"
    );
    let reads = tmp.path().join("reads");
    std::fs::create_dir_all(&reads)?;
    evicted_reads::measure(&evicted_reads::Setup {
        bin: &bin,
        store: &store,
        scratch: &reads,
        store_section: store_section(segment_mib),
        s3_section: s3_section(&settings)?,
        sources: &sources,
        fetches,
    })?;
    println!("load average at end: {}", load_average());
    Ok(())
}

/// Starts SeaweedFS and makes the bucket (Object Lock on).
fn private_weed(dir: &Path, runtime: &tokio::runtime::Runtime) -> BenchResult<(Weed, S3Settings)> {
    let settings_for = |weed: &Weed| S3Settings {
        endpoint: weed.endpoint.clone(),
        bucket: BUCKET.into(),
        credentials_file: Some(weed.credentials.clone()),
        ..S3Settings::default()
    };
    let client_for = |weed: &Weed| -> BenchResult<aws_sdk_s3::Client> {
        let settings = settings_for(weed);
        Ok(archive_s3::client(&settings, &settings.credentials()?))
    };
    let weed = Weed::start(dir, |w| {
        client_for(w).is_ok_and(|c| runtime.block_on(c.list_buckets().send()).is_ok())
    })?;
    let client = client_for(&weed)?;
    runtime
        .block_on(
            client
                .create_bucket()
                .bucket(BUCKET)
                .object_lock_enabled_for_bucket(true)
                .send(),
        )
        .map_err(|e| {
            format!(
                "creating the bucket: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        })?;
    let settings = settings_for(&weed);
    Ok((weed, settings))
}

/// Builds a store with `segments` sealed segments (and an active one) through the library;
/// returns its messages (seq, length, BLAKE3 of the bytes generated).
fn build_store(dir: &Path, segments: usize, segment_mib: u64) -> BenchResult<Vec<Source>> {
    let key = Layout::new(dir).default_key;
    Store::create(dir, &key)?;
    let config = StoreConfig {
        segment_size: segment_mib << 20,
        ..StoreConfig::default()
    };
    let store = Store::open(dir, &key, config)?;
    let mut rng = Rng::new(0x5eed_0003);
    let mut n = 0u64;
    let mut sources = Vec::new();
    while list_segments(&store.layout().log_dir)?.len() <= segments {
        let batch: Vec<(Envelope, Vec<u8>)> = (0..8)
            .map(|_| {
                n += 1;
                (
                    Envelope::imported(format!("bench-{n}"), b""),
                    message(&mut rng, n),
                )
            })
            .collect();
        let refs: Vec<(&Envelope, &[u8])> = batch.iter().map(|(e, m)| (e, m.as_slice())).collect();
        let appended = store.append_messages(&refs, OnDuplicate::Skip)?;
        for (a, (_, m)) in appended.iter().zip(&batch) {
            sources.push(Source {
                seq: a.seq,
                len: m.len() as u64,
                blake3: *blake3::hash(m).as_bytes(),
            });
        }
    }
    store.wait_searchable()?;
    store.close()?;
    Ok(sources)
}

/// A message with a short text part and an attachment of 50 KB to 2 MB of random bytes.
fn message(rng: &mut Rng, n: u64) -> Vec<u8> {
    use base64::Engine;
    let size = 50_000 + rng.below(1_950_000) as usize;
    let mut noise = Vec::with_capacity(size + 8);
    while noise.len() < size {
        noise.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(&noise);
    let mut m = format!(
        "From: sender{}@example.org\r\nTo: user{}@example.com\r\nSubject: quarterly report {n}\r\n\
         Message-ID: <bench-s3-{n}@example.org>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nThe figures for report {n} are attached.\r\n--b\r\n\
         Content-Type: application/octet-stream; name=\"data{n}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"data{n}.bin\"\r\n\r\n",
        n % 50,
        n % 20
    )
    .into_bytes();
    for line in encoded.as_bytes().chunks(76) {
        m.extend_from_slice(line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b--\r\n");
    m
}

fn write_config(dir: &Path, s: &S3Settings, segment_mib: u64) -> BenchResult<PathBuf> {
    let path = dir.join("mailvault.toml");
    std::fs::write(
        &path,
        format!("{}\n{}", store_section(segment_mib), s3_section(s)?),
    )?;
    Ok(path)
}

/// The configuration's `[store]` lines.
fn store_section(segment_mib: u64) -> String {
    format!("[store]\nsegment_mib = {segment_mib}\n")
}

/// The configuration's `[storage.s3]` lines.
fn s3_section(s: &S3Settings) -> BenchResult<String> {
    let credentials = s.credentials_file.as_ref().ok_or("no credentials file")?;
    Ok(format!(
        "[storage.s3]\nendpoint = {:?}\nbucket = {:?}\nprefix = {:?}\nretention = {:?}\npart_mib = {}\n\
         credentials_file = {:?}\n",
        s.endpoint, s.bucket, s.prefix, s.retention, s.part_mib, credentials
    ))
}

/// Runs `serve` until its offload thread has receipted `count` segments: the seconds from the
/// thread's start line to the last receipt line (read as they are written).
fn offload_secs(bin: &Path, store: &Path, config: &Path, count: usize) -> BenchResult<f64> {
    let mut serve = mailvault(bin, store);
    serve
        .args(["serve", "--config"])
        .arg(config)
        .args([
            "--lmtp",
            "127.0.0.1:0",
            "--smtp",
            "127.0.0.1:0",
            "--imap",
            "127.0.0.1:0",
        ])
        .args(["--imaps", "127.0.0.1:0", "--admin", "none", "--web", "none"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = serve.spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });
    let (mut start, mut receipts, mut last) = (None, 0, None);
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut log = String::new();
    while receipts < count {
        let Ok((at, line)) = rx.recv_timeout(Duration::from_secs(5)) else {
            if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                return fail(format!("serve did not offload {count} segments:\n{log}"));
            }
            continue;
        };
        if line.contains("offload of sealed segments to S3 Object Lock on") {
            start = Some(at);
        }
        if line.contains("segment offloaded; receipt in the log") {
            receipts += 1;
            last = Some(at);
        }
        log.push_str(&line);
        log.push('\n');
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait()?;
    let _ = reader.join();
    match (start, last) {
        (Some(s), Some(e)) => Ok(e.duration_since(s).as_secs_f64()),
        _ => fail(format!(
            "serve's log did not show the offload start and receipts:\n{log}"
        )),
    }
}

/// Puts every file with `Bucket::put_file` under `prefix`, one after another; seconds.
fn plain_upload(
    bucket: &Bucket,
    runtime: &tokio::runtime::Runtime,
    files: &[(u64, PathBuf)],
    prefix: &str,
) -> BenchResult<f64> {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64
        + 86_400;
    let start = Instant::now();
    for (first, path) in files {
        let key = format!("{prefix}{}", segment_file_name(*first));
        runtime.block_on(bucket.put_file(path, &key, until))?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Downloads the product's objects of the sealed segments into `dir/log` with the same client
/// and runs `verify_log` over them: (download seconds, verify seconds).
fn download_and_verify(
    bucket: &Bucket,
    runtime: &tokio::runtime::Runtime,
    settings: &S3Settings,
    origin: &str,
    files: &[(u64, PathBuf)],
    dir: &Path,
    store: &Path,
) -> BenchResult<(f64, f64)> {
    let log = dir.join("log");
    std::fs::create_dir_all(&log)?;
    let start = Instant::now();
    for (first, _) in files {
        let name = segment_file_name(*first);
        let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(log.join(&name))?);
        runtime.block_on(bucket.download(&settings.segment_key(origin, &name), "", &mut file))?;
        std::io::Write::flush(&mut file)?;
        file.get_ref().sync_all()?;
    }
    let downloaded = start.elapsed().as_secs_f64();
    let key = Layout::new(store).verifier_key()?;
    let start = Instant::now();
    let report = archive_core::verify::verify_log(&log, &key, &[])?;
    let verified = start.elapsed().as_secs_f64();
    if let Some(problem) = report.problem {
        return fail(format!("the downloaded segments do not verify: {problem}"));
    }
    Ok((downloaded, verified))
}
