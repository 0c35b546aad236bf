//! Ingest benchmark: `mailvault import` of a corpus against the raw limit of the same work
//! (blake3 + zstd + append + fsync per batch, bytes already in memory), and the on-disk size
//! of the resulting store. Prints figures; never asserts. See bench/README.md.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use archive_core::log::reader::LogReader;
use archive_core::log::record::{RecordKind, FRAME_HEADER_LEN};
use archive_core::log::segment::SEGMENT_HEADER_LEN;
use archive_core::store::Layout;
use archive_core::{Envelope, OnDuplicate, SearchIndexing, Store, StoreConfig};
use mailvault_bench::{
    corpus_dir, dir_bytes, file_len, import_retrying, load_average, machine, mailvault_binary, mb, median,
    runs, source_version, status, verdict, BenchResult, Corpus, Options,
};

const USAGE: &str = "usage: ingest [--corpus DIR] [--runs N]\n\
  --corpus DIR  directory of .eml files (default: the full SpamAssassin corpus, fetched once)\n\
  --runs N      measurements of each kind; medians are reported (default 3)";

/// Messages per fsync in the raw limit.
const BATCH: usize = 256;
/// Messages a thread of the raw limit compresses at a time (batches are appended in order).
const CHUNK: usize = 16;
/// Bytes of each message the store keeps as a dictionary training sample (archive-core's
/// `store::compression::SAMPLE_BYTES`, which is private).
const SAMPLE_BYTES: usize = 16 << 10;
/// Appending threads and messages per `Store::append_messages` call in the library
/// measurement: what `mailvault import` uses (src/cmd/import.rs `WORKERS` and `BATCH`).
const APPENDERS: usize = 4;
const APPEND_BATCH: usize = 256;
/// Frame body bytes before the leaf: chain hash (32) and leaf length (4).
const BODY_PREFIX_LEN: u64 = 36;
const INGEST_TARGET: f64 = 0.6;
const ON_DISK_TARGET: f64 = 0.45;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> BenchResult<()> {
    let options = Options::parse(&["--corpus", "--runs"], USAGE)?;
    let rounds = options.count("--runs", 3)?;
    let bin = mailvault_binary()?;
    let corpus = Corpus::open(&corpus_dir(options.path("--corpus"))?)?;
    let config = StoreConfig::default();
    let policy = Policy::of(&config);
    // Reading everything once warms the page cache for the product's run, and gives the raw
    // limit its in-memory input.
    let messages = corpus.read_all()?;
    let raw = corpus.bytes;
    let n = messages.len();

    println!("mailvault ingest benchmark");
    println!("machine  {}", machine());
    println!("binary   {} ({})", bin.display(), source_version());
    println!(
        "corpus   {}: {n} messages, {} bytes ({:.2} MB)",
        corpus.dir.display(),
        raw,
        mb(raw)
    );
    println!("zstd     {} (StoreConfig::default)", policy.describe());
    println!(
        "runs     {rounds} of each, medians reported; scratch in {}",
        std::env::temp_dir().display()
    );
    println!();

    let work = tempfile::Builder::new()
        .prefix("mailvault-bench-ingest-")
        .tempdir()?;
    let mut product = Vec::new();
    let mut product_cpu = Vec::new();
    let mut searchable = Vec::new();
    let mut library = Vec::new();
    let mut one = Vec::new();
    let mut two = Vec::new();
    let mut store = None;
    let mut notes = Vec::new();
    for round in 0..rounds {
        let dir = work.path().join(format!("store-{round}"));
        settle_disk()?;
        let (timed, failed) = import_retrying(&bin, &dir, &corpus.dir, 3)?;
        notes.extend(failed.into_iter().map(|f| format!("round {}: {f}", round + 1)));
        product.push(timed.wall);
        if let Some((user, sys)) = timed.cpu {
            product_cpu.push(user + sys);
        }
        searchable.push(search_catch_up(&bin, &dir)?);
        if let Some(old) = store.replace(dir) {
            std::fs::remove_dir_all(old)?;
        }
        settle_disk()?;
        match library_run(&corpus, &messages, &work.path().join(format!("lib-{round}"))) {
            Ok(run) => library.push(run),
            Err(e) => notes.push(format!("round {}: library run: {e}", round + 1)),
        }
        settle_disk()?;
        one.push(raw_limit(&messages, &policy, 1, work.path())?);
        settle_disk()?;
        two.push(raw_limit(&messages, &policy, 2, work.path())?);
        eprintln!("round {}/{rounds} done", round + 1);
    }
    let store = store.ok_or("no run")?;
    if !notes.is_empty() {
        println!("FAILURES (failed runs were repeated; their times are not counted):");
        for note in &notes {
            println!("    {note}");
        }
        println!();
    }

    // (a) the product
    let product_s = median(&product);
    println!("(a) product: mailvault import, files read from disk");
    println!("    runs        {} s", runs(&product));
    println!(
        "    median      {product_s:.3} s  {:.0} msg/s  {:.2} MB/s",
        n as f64 / product_s,
        mb(raw) / product_s
    );
    if !product_cpu.is_empty() {
        let cpu = median(&product_cpu);
        println!(
            "    CPU         {cpu:.2} s user+sys (median) = {:.2} cores busy on average",
            cpu / product_s
        );
    }
    let catch_up = median(&searchable);
    println!(
        "    then searchable: the first `mailvault search` indexes the backlog in {catch_up:.3} s \
         (runs {} s); import + that = {:.3} s, {:.2} MB/s",
        runs(&searchable),
        product_s + catch_up,
        mb(raw) / (product_s + catch_up)
    );
    println!();

    // (a') the library alone
    if library.is_empty() {
        return mailvault_bench::fail("every library run failed");
    }
    let lib = |f: fn(&LibraryRun) -> f64| median(&library.iter().map(f).collect::<Vec<_>>());
    let (lib_total, lib_fsyncs) = (lib(|r| r.total), lib(|r| r.fsyncs as f64));
    println!(
        "(a') for comparison, the library in this process: Store::append_messages, batches of \
         {APPEND_BATCH} from {APPENDERS} threads, bytes in memory"
    );
    println!(
        "    median      {lib_total:.3} s  {:.2} MB/s  (open {:.3} s, appends {:.3} s, close {:.3} s)",
        mb(raw) / lib_total,
        lib(|r| r.open),
        lib(|r| r.appends),
        lib(|r| r.close)
    );
    println!(
        "    fsyncs      {lib_fsyncs:.0} for {n} messages = {:.1} messages per group commit \
         (the raw limit: {BATCH})",
        n as f64 / lib_fsyncs.max(1.0)
    );
    println!();

    // (b) the raw limit
    println!(
        "(b) raw limit: blake3 + zstd + append to one file + fsync every {BATCH} messages, bytes in \
         memory, same compression as the store"
    );
    let secs = |rs: &[RawRun]| median(&rs.iter().map(|r| r.secs).collect::<Vec<_>>());
    let (one_s, two_s) = (secs(&one), secs(&two));
    for (label, rs, s) in [("1 thread ", &one, one_s), ("2 threads", &two, two_s)] {
        println!(
            "    {label}   runs {} s; median {s:.3} s  {:.0} msg/s  {:.2} MB/s  ({} fsyncs)",
            runs(&rs.iter().map(|r| r.secs).collect::<Vec<_>>()),
            n as f64 / s,
            mb(raw) / s,
            rs[0].fsyncs
        );
    }
    let split = Split::median(&one);
    let total = split.total();
    let pct = |x: f64| 100.0 * x / total;
    println!(
        "    1-thread split (median): zstd {:.3} s ({:.0}%), dictionary training {:.3} s ({:.0}%), \
         blake3 {:.3} s ({:.0}%), write {:.3} s ({:.0}%), fsync {:.3} s ({:.0}%)",
        split.zstd,
        pct(split.zstd),
        split.train,
        pct(split.train),
        split.hash,
        pct(split.hash),
        split.write,
        pct(split.write),
        split.fsync,
        pct(split.fsync)
    );
    let stored = one[0].stored;
    println!(
        "    bytes appended: {stored} = {:.3} × raw (payloads and the dictionary)",
        stored as f64 / raw as f64
    );
    println!();

    // (c) the ratio
    let (best_label, best_s) = if two_s < one_s {
        ("2 threads", two_s)
    } else {
        ("1 thread", one_s)
    };
    let ratio = best_s / product_s;
    println!(
        "(c) ingest ratio product/raw = {:.2} MB/s / {:.2} MB/s = {ratio:.2}   (raw = the better of \
         1 and 2 threads: {best_label}; target >= {INGEST_TARGET}: {})",
        mb(raw) / product_s,
        mb(raw) / best_s,
        verdict(ratio >= INGEST_TARGET)
    );
    println!(
        "    vs the 1-thread raw limit: {:.2}; vs the 2-thread raw limit: {:.2}; library/raw: {:.2}",
        one_s / product_s,
        two_s / product_s,
        best_s / lib_total
    );
    println!();

    on_disk(&bin, &store, raw, n as u64)?;
    println!();
    println!("load average {} at the end", load_average());
    Ok(())
}

/// Writes back every dirty page before a measurement, so no run pays for the write-back of
/// the one before it (on ext4 an fsync can wait for other files' data).
fn settle_disk() -> BenchResult<()> {
    let status = std::process::Command::new("sync").status()?;
    if !status.success() {
        return mailvault_bench::fail(format!("sync failed: {status}"));
    }
    Ok(())
}

/// Times the first search after an import: it opens the store, whose search indexer works
/// through the backlog `import` left (`SearchIndexing::Deferred`), then answers.
fn search_catch_up(bin: &Path, store: &Path) -> BenchResult<f64> {
    let timed = mailvault_bench::run_timed(
        mailvault_bench::mailvault(bin, store).args(["search", "--limit", "1", "the"]),
        "mailvault search",
    )?;
    Ok(timed.wall)
}

/// Prints the store's size against the raw corpus, broken down.
fn on_disk(bin: &Path, store: &Path, raw: u64, messages: u64) -> BenchResult<()> {
    let st = status(bin, store)?;
    let layout = Layout::new(store);
    let log = LogReader::open(&layout.log_dir)?;
    let (mut payload, mut leaves, mut frames) = (0u64, 0u64, 0u64);
    let (mut dictionaries, mut dictionary_count, mut other, mut other_count) = (0u64, 0u64, 0u64, 0u64);
    for record in log.records_from(1)? {
        let record = record?;
        let leaf = record.leaf_bytes.len() as u64;
        let framing = FRAME_HEADER_LEN as u64 + BODY_PREFIX_LEN;
        match record.kind() {
            RecordKind::Message => {
                payload += record.stored_len() - framing - leaf;
                leaves += leaf;
                frames += framing;
            }
            RecordKind::Dictionary => {
                dictionaries += record.stored_len();
                dictionary_count += 1;
            }
            _ => {
                other += record.stored_len();
                other_count += 1;
            }
        }
    }
    let segments = log.segments().len() as u64;
    let kv = file_len(&layout.kv_index);
    let tree = file_len(&layout.tree);
    let total = st.log_bytes + kv + tree;
    let everything = dir_bytes(store);
    let r = |b: u64| b as f64 / raw as f64;
    println!("on disk (mailvault status --json, files of the last run's store), × raw corpus bytes");
    if st.messages != messages || st.message_bytes != raw {
        println!(
            "    note: the store holds {} messages / {} bytes, the corpus {messages} / {raw} \
             (duplicates are stored once)",
            st.messages, st.message_bytes
        );
    }
    println!(
        "    log              {:>11} bytes  {:.3}",
        st.log_bytes,
        r(st.log_bytes)
    );
    println!("      message payloads     {payload:>11}  {:.3}", r(payload));
    println!(
        "      message leaves       {leaves:>11}  {:.3}  (seq, time, hash, length, envelope: ~{} B each)",
        r(leaves),
        leaves / messages.max(1)
    );
    println!(
        "      message framing      {frames:>11}  {:.3}  (header + chain hash: {} B each)",
        r(frames),
        FRAME_HEADER_LEN as u64 + BODY_PREFIX_LEN
    );
    println!(
        "      dictionaries         {dictionaries:>11}  {:.3}  ({dictionary_count} record(s))",
        r(dictionaries)
    );
    println!(
        "      checkpoints, other   {other:>11}  {:.3}  ({other_count} record(s))",
        r(other)
    );
    println!(
        "      segment headers      {:>11}  {:.3}",
        segments * SEGMENT_HEADER_LEN,
        r(segments * SEGMENT_HEADER_LEN)
    );
    println!(
        "    indexes          {:>11} bytes  {:.3}  (KV index {kv} = {:.3}, tree cache {tree} = {:.3})",
        st.index_bytes,
        r(st.index_bytes),
        r(kv),
        r(tree)
    );
    println!(
        "    total            {total:>11} bytes  {:.3}   (status on_disk_ratio {:.3}; target <= \
         {ON_DISK_TARGET}: {})",
        r(total),
        st.on_disk_ratio,
        verdict(r(total) <= ON_DISK_TARGET)
    );
    println!(
        "    whole store directory {everything} bytes = {:.3}, of which outside the above:",
        r(everything)
    );
    let counted = [&layout.log_dir, &layout.kv_index, &layout.tree];
    let mut entries: Vec<_> = std::fs::read_dir(store)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries.iter().filter(|p| !counted.contains(p)) {
        let bytes = if path.is_dir() {
            dir_bytes(path)
        } else {
            file_len(path)
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("      {name:<20} {bytes:>11}  {:.3}", r(bytes));
    }
    Ok(())
}

/// One in-process run of the store's append path.
struct LibraryRun {
    open: f64,
    appends: f64,
    close: f64,
    total: f64,
    fsyncs: u64,
}

/// Appends every message with `Store::append_messages` in batches of `APPEND_BATCH` from
/// `APPENDERS` threads, as the importer does, but without reading files or the command line
/// around it.
fn library_run(corpus: &Corpus, messages: &[Vec<u8>], dir: &Path) -> BenchResult<LibraryRun> {
    let envelopes: Vec<Envelope> = corpus
        .files
        .iter()
        .map(|f| Envelope::imported(f.display().to_string(), b""))
        .collect();
    let batches: Vec<Vec<(&Envelope, &[u8])>> = envelopes
        .iter()
        .zip(messages)
        .map(|(e, m)| (e, m.as_slice()))
        .collect::<Vec<_>>()
        .chunks(APPEND_BATCH)
        .map(<[_]>::to_vec)
        .collect();
    let start = Instant::now();
    // As `mailvault import` opens it: the search index is left to the next open.
    let config = StoreConfig {
        search_indexing: SearchIndexing::Deferred,
        ..StoreConfig::default()
    };
    let store = Store::open_or_create(dir, &Layout::new(dir).default_key, config)?;
    let opened = Instant::now();
    let next = AtomicUsize::new(0);
    let errors: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..APPENDERS)
            .map(|_| {
                scope.spawn(|| {
                    let mut errors = Vec::new();
                    while let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if let Err(e) = store.append_messages(batch, OnDuplicate::Skip) {
                            errors.push(e.to_string());
                        }
                    }
                    errors
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|_| vec!["appender panicked".into()]))
            .collect()
    });
    let appended = Instant::now();
    let fsyncs = store.stats().fsyncs;
    let closed = store.close();
    let closed_at = Instant::now();
    std::fs::remove_dir_all(dir)?;
    closed?;
    if let Some(e) = errors.first() {
        return mailvault_bench::fail(format!("{} batches failed, first: {e}", errors.len()));
    }
    Ok(LibraryRun {
        open: (opened - start).as_secs_f64(),
        appends: (appended - opened).as_secs_f64(),
        close: (closed_at - appended).as_secs_f64(),
        total: (closed_at - start).as_secs_f64(),
        fsyncs,
    })
}

/// The store's compression settings, as the raw limit follows them.
struct Policy {
    level: i32,
    /// Dictionary size in bytes; 0 for none.
    dictionary_size: usize,
    /// Messages appended before a dictionary is trained from them.
    dictionary_samples: usize,
}

impl Policy {
    fn of(config: &StoreConfig) -> Policy {
        Policy {
            level: config.zstd_level,
            dictionary_size: config.dictionary_size,
            dictionary_samples: config.dictionary_samples.max(1),
        }
    }

    fn describe(&self) -> String {
        if self.dictionary_size == 0 {
            format!("level {}, no dictionary", self.level)
        } else {
            format!(
                "level {}, a {} KiB dictionary trained from the first {} messages (first {} KiB of each)",
                self.level,
                self.dictionary_size >> 10,
                self.dictionary_samples,
                SAMPLE_BYTES >> 10
            )
        }
    }
}

/// Where the raw limit spends its time, summed over its threads.
#[derive(Clone, Copy, Default)]
struct Split {
    hash: f64,
    zstd: f64,
    train: f64,
    write: f64,
    fsync: f64,
}

impl Split {
    fn add(&mut self, other: &Split) {
        self.hash += other.hash;
        self.zstd += other.zstd;
        self.train += other.train;
        self.write += other.write;
        self.fsync += other.fsync;
    }

    fn total(&self) -> f64 {
        self.hash + self.zstd + self.train + self.write + self.fsync
    }

    fn median(runs: &[RawRun]) -> Split {
        let m = |f: fn(&Split) -> f64| median(&runs.iter().map(|r| f(&r.split)).collect::<Vec<_>>());
        Split {
            hash: m(|s| s.hash),
            zstd: m(|s| s.zstd),
            train: m(|s| s.train),
            write: m(|s| s.write),
            fsync: m(|s| s.fsync),
        }
    }
}

/// One measurement of the raw limit.
struct RawRun {
    secs: f64,
    /// Bytes appended to the file: payloads (zstd frames, or raw bytes where zstd does not
    /// help) and the dictionary.
    stored: u64,
    fsyncs: u64,
    split: Split,
}

/// The end of the raw limit's file; chunks are appended in order.
struct Tail {
    file: File,
    /// Next chunk to append.
    next_chunk: usize,
    /// Messages appended.
    appended: usize,
    stored: u64,
    fsyncs: u64,
    training_started: bool,
}

/// The state the raw limit's threads share.
struct Shared<'a> {
    messages: &'a [Vec<u8>],
    policy: &'a Policy,
    next_chunk: AtomicUsize,
    tail: Mutex<Tail>,
    turn: Condvar,
    dictionary: Mutex<DictionaryState>,
    dictionary_changed: Condvar,
}

/// Where the raw limit's dictionary is.
enum DictionaryState {
    /// Not yet trained (too few messages appended), or training failed: compress without.
    None,
    /// Being trained: compression waits for it, as the store's does for its first dictionary.
    Training,
    Ready(Arc<Vec<u8>>),
}

/// The work of the store's append path and nothing else: blake3 and zstd of every message
/// (with a dictionary trained from the first messages once they are durable, as the store
/// does; compression waits for it meanwhile, as the store's does for its first dictionary),
/// appended to one new file in order with one fsync per `BATCH` messages. `threads` threads
/// compress chunks in parallel; one thread's fsync overlaps the other's zstd.
fn raw_limit(messages: &[Vec<u8>], policy: &Policy, threads: usize, dir: &Path) -> BenchResult<RawRun> {
    let path = dir.join(format!("raw-limit-{threads}.bin"));
    let file = OpenOptions::new().append(true).create_new(true).open(&path)?;
    let shared = Shared {
        messages,
        policy,
        next_chunk: AtomicUsize::new(0),
        tail: Mutex::new(Tail {
            file,
            next_chunk: 0,
            appended: 0,
            stored: 0,
            fsyncs: 0,
            training_started: false,
        }),
        turn: Condvar::new(),
        dictionary: Mutex::new(DictionaryState::None),
        dictionary_changed: Condvar::new(),
    };
    let start = Instant::now();
    let results: Vec<std::io::Result<Split>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| raw_worker(&shared)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("worker panicked")))
            })
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut split = Split::default();
    for r in results {
        split.add(&r?);
    }
    let tail = shared.tail.into_inner().unwrap_or_else(|p| p.into_inner());
    std::fs::remove_file(&path)?;
    Ok(RawRun {
        secs,
        stored: tail.stored,
        fsyncs: tail.fsyncs,
        split,
    })
}

/// A compression context and whether it holds the dictionary.
struct Compressor {
    with_dictionary: bool,
    ctx: zstd::bulk::Compressor<'static>,
}

fn raw_worker(shared: &Shared<'_>) -> std::io::Result<Split> {
    let policy = shared.policy;
    let mut split = Split::default();
    let mut compressor = Compressor {
        with_dictionary: false,
        ctx: zstd::bulk::Compressor::new(policy.level)?,
    };
    let (mut scratch, mut batch) = (Vec::new(), Vec::new());
    let mut digest = 0u8;
    loop {
        let i = shared.next_chunk.fetch_add(1, Ordering::Relaxed);
        let first = i * CHUNK;
        let Some(chunk) = shared
            .messages
            .get(first..shared.messages.len().min(first + CHUNK))
        else {
            break;
        };
        if chunk.is_empty() {
            break;
        }
        // The dictionary is used from when it is ready, as in the store.
        let mut state = shared.dictionary.lock().unwrap_or_else(|p| p.into_inner());
        while matches!(*state, DictionaryState::Training) {
            state = shared
                .dictionary_changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        let ready = match &*state {
            DictionaryState::Ready(d) => Some(d.clone()),
            _ => None,
        };
        drop(state);
        // Errors wait for this chunk's turn: the chunks after it must not wait forever.
        let switched = match (ready, compressor.with_dictionary) {
            (Some(d), false) => zstd::bulk::Compressor::with_dictionary(policy.level, &d).map(|ctx| {
                compressor = Compressor {
                    with_dictionary: true,
                    ctx,
                };
            }),
            _ => Ok(()),
        };
        batch.clear();
        let compressed = switched.and_then(|()| {
            chunk.iter().try_for_each(|m| {
                let t = Instant::now();
                digest ^= blake3::hash(m).as_bytes()[0];
                let t2 = Instant::now();
                let r = compress_into(&mut compressor, m, &mut scratch, &mut batch);
                split.hash += (t2 - t).as_secs_f64();
                split.zstd += t2.elapsed().as_secs_f64();
                r
            })
        });
        let mut tail = shared.tail.lock().unwrap_or_else(|p| p.into_inner());
        while tail.next_chunk != i {
            tail = shared.turn.wait(tail).unwrap_or_else(|p| p.into_inner());
        }
        let appended = compressed.and_then(|()| {
            let t = Instant::now();
            (&tail.file).write_all(&batch)?;
            split.write += t.elapsed().as_secs_f64();
            tail.stored += batch.len() as u64;
            let before = tail.appended;
            tail.appended += chunk.len();
            if tail.appended / BATCH != before / BATCH || tail.appended == shared.messages.len() {
                let t = Instant::now();
                tail.file.sync_data()?;
                split.fsync += t.elapsed().as_secs_f64();
                tail.fsyncs += 1;
            }
            Ok(())
        });
        // Hand over the turn even on failure, so no thread waits forever.
        tail.next_chunk += 1;
        shared.turn.notify_all();
        appended?;
        let train = policy.dictionary_size > 0
            && !tail.training_started
            && tail.appended >= policy.dictionary_samples
            && tail.appended < shared.messages.len();
        if train {
            tail.training_started = true;
            *shared.dictionary.lock().unwrap_or_else(|p| p.into_inner()) = DictionaryState::Training;
        }
        drop(tail);
        if train {
            train_dictionary(shared, &mut split)?;
        }
    }
    std::hint::black_box(digest);
    Ok(split)
}

/// Trains the dictionary from the first messages, appends it durably and publishes it.
fn train_dictionary(shared: &Shared<'_>, split: &mut Split) -> std::io::Result<()> {
    let policy = shared.policy;
    let t = Instant::now();
    let samples: Vec<&[u8]> = shared.messages[..policy.dictionary_samples]
        .iter()
        .map(|m| &m[..m.len().min(SAMPLE_BYTES)])
        .collect();
    let trained = zstd::dict::from_samples(&samples, policy.dictionary_size);
    split.train += t.elapsed().as_secs_f64();
    let publish = |state| {
        *shared.dictionary.lock().unwrap_or_else(|p| p.into_inner()) = state;
        shared.dictionary_changed.notify_all();
    };
    // Like the store: too little data for a dictionary means going on without one.
    let Ok(dictionary) = trained else {
        publish(DictionaryState::None);
        return Ok(());
    };
    // Whatever happens, the other threads must learn the outcome.
    let mut append = || -> std::io::Result<()> {
        let mut tail = shared.tail.lock().unwrap_or_else(|p| p.into_inner());
        let t = Instant::now();
        (&tail.file).write_all(&dictionary)?;
        let t2 = Instant::now();
        tail.file.sync_data()?;
        split.write += (t2 - t).as_secs_f64();
        split.fsync += t2.elapsed().as_secs_f64();
        tail.stored += dictionary.len() as u64;
        tail.fsyncs += 1;
        Ok(())
    };
    let appended = append();
    publish(match appended {
        Ok(()) => DictionaryState::Ready(Arc::new(dictionary)),
        Err(_) => DictionaryState::None,
    });
    appended
}

/// Compresses one message into `scratch` and appends the payload to `batch`: the zstd frame
/// (after the 8-byte dictionary reference when a dictionary is used), or the raw bytes when
/// that is not smaller (as the store does).
fn compress_into(
    compressor: &mut Compressor,
    message: &[u8],
    scratch: &mut Vec<u8>,
    batch: &mut Vec<u8>,
) -> std::io::Result<()> {
    scratch.clear();
    scratch.reserve(zstd::zstd_safe::compress_bound(message.len()));
    compressor.ctx.compress_to_buffer(message, scratch)?;
    let reference = if compressor.with_dictionary { 8 } else { 0 };
    if scratch.len() + reference < message.len() {
        batch.extend_from_slice(&[0u8; 8][..reference]);
        batch.extend_from_slice(scratch);
    } else {
        batch.extend_from_slice(message);
    }
    Ok(())
}
