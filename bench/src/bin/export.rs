//! Export benchmark: `mailvault export` of a range of --messages generated messages (default
//! 100,000) and `mailvault verify-bundle` of the bundle, each against the raw rate of the same
//! message bytes in this run — zip-deflate + BLAKE3 + SHA-256 (export's floor) and inflate +
//! BLAKE3 + SHA-256 (verify's floor), on ONE thread, while the commands use worker threads on
//! every core (up to 4; 2 here) — with the peak RSS of
//! each command at a tenth of the range and at all of it. The export is written as volumes
//! of `--per-volume` records (the command's default unless given), verified together. Prints
//! figures; never asserts. See bench/README.md.

use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use archive_core::export::bundle::{latest_checkpoint, DEFAULT_PER_VOLUME};
use archive_core::log::merkle::HashSource;
use archive_core::log::reader::LogReader;
use archive_core::log::record::RecordKind;
use archive_core::store::Layout;
use archive_core::{Envelope, OnDuplicate, SearchIndexing, Store, StoreConfig};
use archive_verify::bundle::{message_file, proof_file};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use mailvault_bench::mailgen::MailGen;
use mailvault_bench::{
    load_average, machine, mailvault, mailvault_binary, mb, median, run_timed, runs, source_version, verdict,
    BenchResult, Corpus, Options, Timed,
};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

const USAGE: &str =
    "usage: export [--messages N] [--seed S] [--corpus DIR] [--runs N] [--per-volume N] [--dir DIR | --store DIR]\n\
  --messages N  generated messages in the store (default 100000)\n\
  --seed S      generator seed (default 1)\n\
  --corpus DIR  real .eml files mixed in (default fixtures/corpus/spamassassin)\n\
  --runs N      timed runs of each kind; medians are reported (default 3)\n\
  --per-volume N  records per volume, passed to export (default: export's own, 10000; 0: one file)\n\
  --dir DIR     where to build the store and write bundles (default: a temp dir under target/)\n\
  --store DIR   export from this existing store instead (read only but for the export's\n\
                audit records); bundles go to a temp dir";

/// Each command's rate against its floor's.
const TARGET: f64 = 0.6;
/// Messages per `Store::append_messages` call while building the store.
const BATCH: usize = 256;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("export: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A message record of the store: its seq and its content.
struct Message {
    seq: u64,
    bytes: Vec<u8>,
    leaf: Vec<u8>,
}

fn run() -> BenchResult<()> {
    let options = Options::parse(
        &[
            "--messages",
            "--seed",
            "--corpus",
            "--runs",
            "--per-volume",
            "--dir",
            "--store",
        ],
        USAGE,
    )?;
    let n = options.count("--messages", 100_000)? as u64;
    let seed = options.count("--seed", 1)? as u64;
    let rounds = options.count("--runs", 3)?;
    let per_volume = options.count("--per-volume", DEFAULT_PER_VOLUME as usize)? as u64;
    let bin = mailvault_binary()?;
    let tmp;
    let base: PathBuf = match options.path("--dir") {
        Some(d) => d,
        None => {
            tmp = tempfile::Builder::new()
                .prefix("export-bench")
                .tempdir_in(mailvault_bench::workspace_root().join("target"))?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&base)?;

    println!("mailvault export benchmark");
    println!("machine  {}", machine());
    println!("binary   {} ({})", bin.display(), source_version());
    let store = match options.path("--store") {
        Some(store) => {
            println!("store    {} (given)", store.display());
            store
        }
        None => {
            let corpus_dir = options
                .path("--corpus")
                .unwrap_or_else(|| mailvault_bench::workspace_root().join("fixtures/corpus/spamassassin"));
            let real = Corpus::open(&corpus_dir)?.read_all()?;
            let store = base.join("store");
            let real_count = real.len();
            let secs = build(&store, seed, n, real)?;
            println!(
                "store    {} built in {secs:.1} s: {n} generated messages (seed {seed}) + {real_count} real \
                 from {} (Store::append_messages, batches of {BATCH})",
                store.display(),
                corpus_dir.display()
            );
            store
        }
    };

    // Every message under the newest checkpoint, read into memory (which also warms the page
    // cache for the commands).
    let layout = Layout::new(&store);
    let log = LogReader::open(&layout.log_dir)?;
    let last = latest_checkpoint(&layout, &log)?.checkpoint.size;
    let t = Instant::now();
    let messages = read_messages(&log, last)?;
    let read_secs = t.elapsed().as_secs_f64();
    drop(log);
    let content: u64 = messages.iter().map(|m| m.bytes.len() as u64).sum();
    let largest = messages.iter().map(|m| m.bytes.len()).max().unwrap_or(0);
    let tenth = (last / 10).max(1);
    let tenth_content: u64 = messages
        .iter()
        .filter(|m| m.seq <= tenth)
        .map(|m| m.bytes.len() as u64)
        .sum();
    println!(
        "range    records 1..={last} (the newest checkpoint): {} messages, {:.1} MB of message bytes, \
         largest {largest} bytes",
        messages.len(),
        mb(content)
    );
    println!("runs     {rounds} of each, medians reported");
    println!();

    let key = layout.public_key.clone();
    let bundles = tempfile::Builder::new().prefix("bundles").tempdir_in(&base)?;
    let bundle = bundles.path().join("export.zip");
    let mut volumes = Vec::new();
    let (mut export_runs, mut verify_runs) = (Vec::new(), Vec::new());
    let (mut export_floor, mut verify_floor) = (Vec::new(), Vec::new());
    let (mut export_rss, mut verify_rss) = (0, 0);
    let (mut export_cpu, mut verify_cpu) = (Vec::new(), Vec::new());
    let mut zipped = Vec::new();
    for round in 0..rounds {
        for v in volumes.drain(..) {
            std::fs::remove_file(v)?;
        }
        let ex = export(&bin, &store, last, per_volume, &bundle)?;
        volumes = written(&bundle)?;
        let ve = verify_bundle(&bin, &store, &volumes, &key)?;
        export_rss = export_rss.max(ex.peak_rss.unwrap_or(0));
        verify_rss = verify_rss.max(ve.peak_rss.unwrap_or(0));
        export_cpu.extend(ex.cpu);
        verify_cpu.extend(ve.cpu);
        export_runs.push(ex.wall);
        verify_runs.push(ve.wall);
        let (secs, zip) = deflate_floor(&messages)?;
        export_floor.push(secs);
        verify_floor.push(inflate_floor(&zip)?);
        zipped = zip;
        eprintln!("round {}/{rounds} done", round + 1);
    }
    let bundle_bytes: u64 = volumes.iter().map(|v| mailvault_bench::file_len(v)).sum();
    let zipped_len = zipped.len();
    drop(zipped);

    // Peak RSS at a tenth of the range: flat memory means it does not grow with the range.
    let small = bundles.path().join("tenth.zip");
    let ex_small = export(&bin, &store, tenth, per_volume, &small)?;
    let small_volumes = written(&small)?;
    let ve_small = verify_bundle(&bin, &store, &small_volumes, &key)?;

    let (ex_s, ve_s) = (median(&export_runs), median(&verify_runs));
    let (exf_s, vef_s) = (median(&export_floor), median(&verify_floor));
    let rate = |s: f64| mb(content) / s;
    println!(
        "bundle   {} volume(s) of up to {per_volume} records (0: one bundle), {:.1} MB ({:.2} of the message bytes); \
         the floor's ZIP of the messages alone {:.1} MB",
        match per_volume {
            0 => 1,
            per => last.div_ceil(per),
        },
        mb(bundle_bytes),
        bundle_bytes as f64 / content.max(1) as f64,
        mb(zipped_len as u64)
    );
    println!();
    println!(
        "(a) mailvault export --from-seq 1 --to-seq {last} --per-volume {per_volume} (log read, proofs, listings, leaves, \
         SHA-256 of the files)"
    );
    println!("    runs        {} s", runs(&export_runs));
    println!(
        "    median      {ex_s:.3} s  {:.1} MB/s of message bytes",
        rate(ex_s)
    );
    println!("    cpu         {}", cpu(&export_cpu));
    println!("    floor       zip-deflate (zip 9.9, zlib-rs, default level) + BLAKE3 + SHA-256 of each message, in memory, 1 thread");
    println!(
        "                (export deflates, hashes and lists on {} worker threads besides its main one)",
        archive_verify::pipeline::default_threads()
    );
    println!(
        "                runs {} s; median {exf_s:.3} s  {:.1} MB/s",
        runs(&export_floor),
        rate(exf_s)
    );
    let ex_ratio = exf_s / ex_s;
    println!(
        "    ratio       {:.1} / {:.1} MB/s = {ex_ratio:.2}  (target >= {TARGET}: {})",
        rate(ex_s),
        rate(exf_s),
        verdict(ex_ratio >= TARGET)
    );
    println!();
    println!("(b) mailvault verify-bundle VOLUMES… --key PUB (proofs, leaves, listings recomputed; the volumes as a set)");
    println!("    runs        {} s", runs(&verify_runs));
    println!(
        "    median      {ve_s:.3} s  {:.1} MB/s of message bytes",
        rate(ve_s)
    );
    println!("    cpu         {}", cpu(&verify_cpu));
    println!(
        "    floor       inflate (zip 9.9, with its CRC-32) + BLAKE3 + SHA-256 of each message, in memory, 1 thread"
    );
    println!(
        "                (verify-bundle checks messages on {} worker threads, compares listings on its main one)",
        archive_verify::pipeline::default_threads()
    );
    println!(
        "                runs {} s; median {vef_s:.3} s  {:.1} MB/s",
        runs(&verify_floor),
        rate(vef_s)
    );
    let ve_ratio = vef_s / ve_s;
    println!(
        "    ratio       {:.1} / {:.1} MB/s = {ve_ratio:.2}  (target >= {TARGET}: {})",
        rate(ve_s),
        rate(vef_s),
        verdict(ve_ratio >= TARGET)
    );
    println!();
    let rss = |b: u64| format!("{:.1} MB", mb(b));
    println!(
        "(c) peak RSS (VmHWM); the largest message is {:.2} MB",
        mb(largest as u64)
    );
    println!(
        "    export          1..={tenth:<8} ({:.0} MB) {:>9}    1..={last} ({:.0} MB) {:>9}",
        mb(tenth_content),
        rss(ex_small.peak_rss.unwrap_or(0)),
        mb(content),
        rss(export_rss)
    );
    println!(
        "    verify-bundle   1..={tenth:<8} ({:.0} MB) {:>9}    1..={last} ({:.0} MB) {:>9}",
        mb(tenth_content),
        rss(ve_small.peak_rss.unwrap_or(0)),
        mb(content),
        rss(verify_rss)
    );
    println!(
        "    (the tenth's runs once: export {:.3} s, verify-bundle {:.3} s)",
        ex_small.wall, ve_small.wall
    );
    println!();
    splits(&layout, &messages, last, per_volume, &volumes, read_secs, ex_s)?;
    println!();
    println!("load average {} at the end", load_average());
    Ok(())
}

/// Median user and system CPU seconds of a command's runs.
fn cpu(runs: &[(f64, f64)]) -> String {
    if runs.is_empty() {
        return "unknown".into();
    }
    let user: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let sys: Vec<f64> = runs.iter().map(|r| r.1).collect();
    format!(
        "user {:.2} s, system {:.2} s (medians)",
        median(&user),
        median(&sys)
    )
}

/// Builds a store of `n` generated messages with the real ones spread among them; the clean
/// close leaves a checkpoint over all of them.
fn build(dir: &Path, seed: u64, n: u64, corpus: Vec<Vec<u8>>) -> BenchResult<f64> {
    if dir.exists() {
        return mailvault_bench::fail(format!(
            "{} exists: give --store to reuse it, or another --dir",
            dir.display()
        ));
    }
    let key = Layout::new(dir).default_key;
    Store::create(dir, &key)?;
    // As `mailvault import` opens it: the search index is left to the next live open.
    let config = StoreConfig {
        search_indexing: SearchIndexing::Deferred,
        ..StoreConfig::default()
    };
    let store = Store::open(dir, &key, config)?;
    let start = Instant::now();
    let (tx, rx) = mpsc::sync_channel::<Vec<(Envelope, Vec<u8>)>>(4);
    let rx = Mutex::new(rx);
    std::thread::scope(|scope| -> BenchResult<()> {
        let producer = scope.spawn(move || {
            let mut gen = MailGen::new(seed, n);
            let every = (n / (corpus.len() as u64 + 1)).max(1);
            let mut corpus = corpus.into_iter();
            let mut batch = Vec::with_capacity(BATCH);
            for i in 0..n {
                if i % every == every - 1 {
                    if let Some(real) = corpus.next() {
                        batch.push((Envelope::imported(format!("corpus#{i}"), b""), real));
                    }
                }
                let g = gen.next_message();
                batch.push((Envelope::lmtp(&g.mail_from, &g.recipients), g.raw));
                if batch.len() >= BATCH && tx.send(std::mem::take(&mut batch)).is_err() {
                    return;
                }
            }
            let _ = tx.send(batch);
        });
        let appenders: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| -> Result<(), String> {
                    loop {
                        let next = rx.lock().map_err(|e| e.to_string())?.recv();
                        let Ok(batch) = next else {
                            return Ok(());
                        };
                        let refs: Vec<(&Envelope, &[u8])> =
                            batch.iter().map(|(e, b)| (e, b.as_slice())).collect();
                        store
                            .append_messages(&refs, OnDuplicate::Skip)
                            .map_err(|e| e.to_string())?;
                    }
                })
            })
            .collect();
        producer.join().map_err(|_| "generator panicked")?;
        for a in appenders {
            a.join().map_err(|_| "appender panicked")??;
        }
        Ok(())
    })?;
    store.close()?;
    Ok(start.elapsed().as_secs_f64())
}

/// The content of every message record of 1..=`last`.
fn read_messages(log: &LogReader, last: u64) -> BenchResult<Vec<Message>> {
    let mut out = Vec::new();
    for record in log.records_from(1)? {
        let record = record?;
        let seq = record.seq();
        if seq > last {
            break;
        }
        if !matches!(record.kind(), RecordKind::Message | RecordKind::Arrival) {
            continue;
        }
        let bytes = match record.content(log) {
            Some(content) => content.map_err(|e| format!("record {seq}: {e}"))?,
            None => log.message_bytes(seq)?,
        };
        out.push(Message {
            seq,
            bytes,
            leaf: record.leaf_bytes,
        });
    }
    Ok(out)
}

fn export(bin: &Path, store: &Path, last: u64, per_volume: u64, out: &Path) -> BenchResult<Timed> {
    run_timed(
        mailvault(bin, store)
            .args([
                "export",
                "--from-seq",
                "1",
                "--to-seq",
                &last.to_string(),
                "--per-volume",
                &per_volume.to_string(),
                "--out",
            ])
            .arg(out),
        "mailvault export",
    )
}

/// The files an export to `out` wrote: `out` itself, or its volumes in order.
fn written(out: &Path) -> BenchResult<Vec<PathBuf>> {
    if out.exists() {
        return Ok(vec![out.to_path_buf()]);
    }
    let dir = out.parent().unwrap_or(Path::new("."));
    let stem = format!("{}.", out.file_stem().unwrap_or_default().to_string_lossy());
    let mut volumes = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&stem))
        {
            volumes.push(path);
        }
    }
    volumes.sort();
    Ok(volumes)
}

fn verify_bundle(bin: &Path, store: &Path, volumes: &[PathBuf], key: &Path) -> BenchResult<Timed> {
    let timed = run_timed(
        mailvault(bin, store)
            .arg("verify-bundle")
            .args(volumes)
            .arg("--key")
            .arg(key),
        "mailvault verify-bundle",
    )?;
    let out = String::from_utf8_lossy(&timed.output.stdout);
    if let Some(problem) = out.lines().find(|l| l.starts_with("INVALID")) {
        println!("note: verify-bundle found the bundle invalid: {problem}");
    }
    Ok(timed)
}

/// A ZIP's destination that keeps its bytes (for the inflate floor) but costs no I/O.
struct MemorySink(Cursor<Vec<u8>>);

impl Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for MemorySink {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.seek(pos)
    }
}

/// Export's floor: each message as a deflated ZIP entry (as the exporter writes it) plus its
/// BLAKE3 and SHA-256; returns the seconds and the ZIP.
fn deflate_floor(messages: &[Message]) -> BenchResult<(f64, Vec<u8>)> {
    let capacity = messages.iter().map(|m| m.bytes.len()).sum::<usize>() / 2;
    let mut zip = ZipWriter::new(MemorySink(Cursor::new(Vec::with_capacity(capacity))));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    let start = Instant::now();
    for m in messages {
        zip.start_file(
            message_file(m.seq),
            options.large_file(m.bytes.len() as u64 >= u32::MAX as u64),
        )?;
        zip.write_all(&m.bytes)?;
        std::hint::black_box((blake3::hash(&m.bytes), Sha256::digest(&m.bytes)));
    }
    let sink = zip.finish()?;
    Ok((start.elapsed().as_secs_f64(), sink.0.into_inner()))
}

/// Verify-bundle's floor: inflate each entry (with the ZIP's CRC-32 check), streaming it
/// through BLAKE3 and SHA-256.
fn inflate_floor(zip: &[u8]) -> BenchResult<f64> {
    let start = Instant::now();
    let mut archive = ZipArchive::new(Cursor::new(zip))?;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..archive.len() {
        let mut file = archive.by_index(i)?;
        let (mut b3, mut sha) = (blake3::Hasher::new(), Sha256::new());
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            b3.update(&buf[..n]);
            sha.update(&buf[..n]);
        }
        std::hint::black_box((b3.finalize(), sha.finalize()));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Parts of the commands' work timed in this process, to show where the time goes.
fn splits(
    layout: &Layout,
    messages: &[Message],
    last: u64,
    per_volume: u64,
    volumes: &[PathBuf],
    read_secs: f64,
    export_s: f64,
) -> BenchResult<()> {
    let time = |f: &mut dyn FnMut() -> BenchResult<()>| -> BenchResult<f64> {
        let start = Instant::now();
        f()?;
        Ok(start.elapsed().as_secs_f64())
    };
    let readback = time(&mut || {
        for volume in volumes {
            let mut file = std::fs::File::open(volume)?;
            let mut hasher = Sha256::new();
            std::io::copy(&mut file, &mut hasher)?;
            std::hint::black_box(hasher.finalize());
        }
        Ok(())
    })?;
    let hashing = time(&mut || {
        for m in messages {
            std::hint::black_box((blake3::hash(&m.bytes), Sha256::digest(&m.bytes)));
        }
        Ok(())
    })?;
    let tree = archive_core::log::tree::TreeFileReader::open(&layout.tree)?;
    let proofs = time(&mut || {
        for m in messages {
            std::hint::black_box(tree.inclusion_proof(m.seq - 1, last)?);
        }
        Ok(())
    })?;
    // Each message's proof entry as export writes it (compact JSON, stored), after its message.
    let proof_docs: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| {
            let path = tree.inclusion_proof(m.seq - 1, last)?;
            let doc = archive_verify::bundle::InclusionProof {
                seq: m.seq,
                leaf_index: m.seq - 1,
                tree_size: last,
                leaf: B64.encode(&m.leaf),
                leaf_hash: B64.encode(archive_verify::merkle::leaf_hash(&m.leaf)),
                proof: path.iter().map(|h| B64.encode(h)).collect(),
            };
            let mut text = serde_json::to_vec(&doc)?;
            text.push(b'\n');
            Ok(text)
        })
        .collect::<BenchResult<_>>()?;
    let with_proofs = |method: CompressionMethod| -> BenchResult<f64> {
        let mut zip = ZipWriter::new(MemorySink(Cursor::new(Vec::new())));
        let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        let start = Instant::now();
        for (m, proof) in messages.iter().zip(&proof_docs) {
            zip.start_file(message_file(m.seq), options)?;
            zip.write_all(&m.bytes)?;
            zip.start_file(proof_file(m.seq), options.compression_method(method))?;
            zip.write_all(proof)?;
        }
        zip.finish()?;
        Ok(start.elapsed().as_secs_f64())
    };
    let entries_deflated = with_proofs(CompressionMethod::Deflated)?;
    let entries = with_proofs(CompressionMethod::Stored)?;
    let library = time(&mut || {
        let request = archive_core::export::bundle::BundleRequest {
            selection: archive_verify::bundle::Selection::Range {
                first_seq: 1,
                last_seq: last,
                since: None,
                until: None,
            },
            seqs: Vec::new(),
            exported_by: "bench".into(),
            location: String::new(),
            consistency_from: Vec::new(),
            per_volume,
        };
        let export = archive_core::export::bundle::Export::open(layout, &request)?;
        let dir = volumes[0].parent().unwrap_or(Path::new("."));
        export.write(tempfile::tempfile_in(dir)?, "bench", dir)?;
        Ok(())
    })?;
    let verify_lib = time(&mut || {
        for volume in volumes {
            let reports = archive_verify::bundle::check::verify_path(
                volume,
                &archive_verify::bundle::check::Options::default(),
                &mut |_, _, _| {},
            )?;
            if let Some((name, report)) = reports.iter().find(|(_, r)| !r.is_valid()) {
                println!(
                    "note: verify_path found problems in {name}: {:?}",
                    report.problems.first()
                );
            }
        }
        Ok(())
    })?;
    println!("where the time goes (this process, one run each; 1 thread but the two library calls):");
    println!("    log read + decode of every message (zstd, BLAKE3 check)  {read_secs:.3} s");
    println!("    BLAKE3 + SHA-256 of every message                        {hashing:.3} s");
    println!("    inclusion proofs from the tree cache                     {proofs:.3} s");
    println!(
        "    message entries deflated + proofs stored, into memory    {entries:.3} s  (proofs deflated: {entries_deflated:.3} s)"
    );
    println!("    Export::write (the library call export makes)          {library:.3} s");
    println!(
        "    export binary − Export::write (open, audit record, SHA-256 readback) {:.3} s",
        export_s - library
    );
    println!("      of which SHA-256 of the bundle file (readback)          {readback:.3} s");
    println!("    verify_path (the library call verify-bundle makes)        {verify_lib:.3} s");
    Ok(())
}
