//! Verify benchmark: `mailvault verify` of a store against the physical floor of its work
//! (zstd decompression + blake3 of every message, payloads already in memory). Prints
//! figures; never asserts. See bench/README.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use archive_core::log::merkle::{leaf_hash, Frontier};
use archive_core::log::reader::{decode_payload, Dictionaries, Dictionary, NoDictionaries};
use archive_core::log::record::{chain_next, Codec, Leaf, LeafBody};
use archive_core::log::segment::{list_segments, RawFrame, SegmentReader};
use archive_core::store::Layout;
use archive_core::verify::verify_log;
use mailvault_bench::{
    corpus_dir, import_retrying, load_average, machine, mailvault, mailvault_binary, mb, median, run_timed,
    runs, source_version, verdict, BenchResult, Options,
};

const USAGE: &str = "usage: verify [--store DIR | --corpus DIR] [--runs N]\n\
  --store DIR   an existing store to verify (read only)\n\
  --corpus DIR  directory of .eml files to build a store from with `mailvault import`\n\
                (default: the full SpamAssassin corpus, fetched once)\n\
  --runs N      measurements of each kind; medians are reported (default 3)";

const VERIFY_TARGET: f64 = 0.8;
/// Messages a thread takes at a time in the 2-thread limit.
const CHUNK: usize = 64;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verify: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A message record's payload, copied out of its frame.
struct Payload {
    codec: Codec,
    /// The payload as stored (for `Codec::ZstdDictionary`, with its dictionary reference).
    stored: Vec<u8>,
    hash: [u8; 32],
    len: u64,
}

impl Payload {
    /// The dictionary seq (if any) and the bytes to decompress (or the content, for `Raw`).
    fn frame(&self) -> (Option<u64>, &[u8]) {
        match (self.codec, self.stored.split_first_chunk::<8>()) {
            (Codec::ZstdDictionary, Some((seq, frame))) => (Some(u64::from_be_bytes(*seq)), frame),
            _ => (None, &self.stored),
        }
    }
}

/// The dictionary records of the log, by seq.
#[derive(Default)]
struct LogDictionaries(HashMap<u64, Dictionary>);

impl Dictionaries for LogDictionaries {
    fn dictionary(&self, seq: u64) -> Result<Dictionary, String> {
        self.0
            .get(&seq)
            .cloned()
            .ok_or_else(|| format!("no dictionary record {seq}"))
    }
}

/// A thread's zstd contexts: one plain, one per dictionary; each set up once and reused.
struct Contexts<'a> {
    dictionaries: &'a LogDictionaries,
    plain: zstd::bulk::Decompressor<'static>,
    with_dictionary: HashMap<u64, zstd::bulk::Decompressor<'static>>,
}

impl<'a> Contexts<'a> {
    fn new(dictionaries: &'a LogDictionaries) -> std::io::Result<Contexts<'a>> {
        Ok(Contexts {
            dictionaries,
            plain: zstd::bulk::Decompressor::new()?,
            with_dictionary: HashMap::new(),
        })
    }

    /// Decompresses `frame` into `buf` (replacing its contents).
    fn decompress(
        &mut self,
        dictionary: Option<u64>,
        frame: &[u8],
        buf: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let dctx = match dictionary {
            None => &mut self.plain,
            Some(seq) => match self.with_dictionary.entry(seq) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let dict = self.dictionaries.dictionary(seq).map_err(std::io::Error::other)?;
                    e.insert(zstd::bulk::Decompressor::with_dictionary(&dict.bytes)?)
                }
            },
        };
        dctx.decompress_to_buffer(frame, buf)?;
        Ok(())
    }
}

fn run() -> BenchResult<()> {
    let options = Options::parse(&["--store", "--corpus", "--runs"], USAGE)?;
    let rounds = options.count("--runs", 3)?;
    let bin = mailvault_binary()?;
    let scratch;
    let (store, built) = match options.path("--store") {
        Some(store) => {
            if options.path("--corpus").is_some() {
                return mailvault_bench::fail(format!("give --store or --corpus, not both\n{USAGE}"));
            }
            (store, None)
        }
        None => {
            let corpus = corpus_dir(options.path("--corpus"))?;
            scratch = tempfile::Builder::new()
                .prefix("mailvault-bench-verify-")
                .tempdir()?;
            let store = scratch.path().join("store");
            let (timed, failures) = import_retrying(&bin, &store, &corpus, 3)?;
            (store, Some((corpus, timed.wall, failures)))
        }
    };
    let layout = Layout::new(&store);

    // Reading the log once warms the page cache for the binary, and gives the limit its
    // in-memory payloads.
    let (frames, stored_bytes, segments) = read_log(&layout.log_dir)?;
    let (payloads, dictionaries) = payloads(&frames)?;
    let content: u64 = payloads.iter().map(|p| p.len).sum();
    let count = |codec: Codec| payloads.iter().filter(|p| p.codec == codec).count();

    println!("mailvault verify benchmark");
    println!("machine  {}", machine());
    println!("binary   {} ({})", bin.display(), source_version());
    match &built {
        Some((corpus, secs, failures)) => {
            println!(
                "store    {} (built from {} by `mailvault import` in {secs:.2} s)",
                store.display(),
                corpus.display()
            );
            for f in failures {
                println!("FAILURE  (the import was repeated) {f}");
            }
        }
        None => println!("store    {}", store.display()),
    }
    println!(
        "log      {} records in {segments} segment(s), {stored_bytes} bytes stored; {} messages, \
         {content} bytes of raw content ({:.2} MB)",
        frames.len(),
        payloads.len(),
        mb(content)
    );
    println!(
        "codecs   {} zstd with a dictionary ({} dictionary record(s)), {} plain zstd, {} raw",
        count(Codec::ZstdDictionary),
        dictionaries.0.len(),
        count(Codec::Zstd),
        count(Codec::Raw)
    );
    println!("runs     {rounds} of each, medians reported");
    println!();

    let mut product = Vec::new();
    let mut one = Vec::new();
    let mut two = Vec::new();
    for round in 0..rounds {
        let timed = run_timed(mailvault(&bin, &store).arg("verify"), "mailvault verify")?;
        let out = String::from_utf8_lossy(&timed.output.stdout);
        if !out.starts_with("OK:") {
            println!("note: mailvault verify did not report OK: {}", out.trim());
        }
        product.push(timed.wall);
        one.push(limit(&payloads, &dictionaries, 1)?);
        two.push(limit(&payloads, &dictionaries, 2)?);
        eprintln!("round {}/{rounds} done", round + 1);
    }
    let (product_s, one_s, two_s) = (median(&product), median(&one), median(&two));
    let rate = |s: f64| mb(content) / s;

    println!("(a) product: mailvault verify (frames, chain, content hashes, Merkle tree, signatures)");
    println!("    runs        {} s", runs(&product));
    println!(
        "    median      {product_s:.3} s  {:.1} MB/s of raw content",
        rate(product_s)
    );
    println!();
    println!(
        "(b) limit: zstd decompress + blake3 of every message, payloads in memory, contexts set up once"
    );
    println!(
        "    1 thread    runs {} s; median {one_s:.3} s  {:.1} MB/s",
        runs(&one),
        rate(one_s)
    );
    println!(
        "    2 threads   runs {} s; median {two_s:.3} s  {:.1} MB/s  (for reference)",
        runs(&two),
        rate(two_s)
    );
    println!();
    let ratio = one_s / product_s;
    println!(
        "(c) verify ratio = {:.1} MB/s / {:.1} MB/s = {ratio:.2}   (limit: 1 thread, as verify runs on one \
         thread; target >= {VERIFY_TARGET}: {})",
        rate(product_s),
        rate(one_s),
        verdict(ratio >= VERIFY_TARGET)
    );
    println!("    against the 2-thread limit: {:.2}", two_s / product_s);
    println!();

    splits(&layout, &frames, &payloads, &dictionaries, rounds, product_s)?;
    println!();
    println!("load average {} at the end", load_average());
    Ok(())
}

/// Every frame of the log, in order, with the bytes of the segment files and their count.
fn read_log(log_dir: &Path) -> BenchResult<(Vec<RawFrame>, u64, usize)> {
    let segments = list_segments(log_dir)?;
    if segments.is_empty() {
        return mailvault_bench::fail(format!("{}: no segments (is this a store?)", log_dir.display()));
    }
    let mut frames = Vec::new();
    let mut stored = 0;
    for (_, path) in &segments {
        let mut reader = SegmentReader::open(path)?;
        stored += reader.file_len();
        while let Some(frame) = reader.next_frame(true)? {
            match frame {
                Ok(f) => frames.push(f),
                Err(stop) => {
                    println!("note: {} stops early: {stop:?}", path.display());
                    break;
                }
            }
        }
    }
    Ok((frames, stored, segments.len()))
}

/// The payloads of the message records, and the dictionaries they use.
fn payloads(frames: &[RawFrame]) -> BenchResult<(Vec<Payload>, LogDictionaries)> {
    let mut out = Vec::new();
    let mut dictionaries = LogDictionaries::default();
    for frame in frames {
        let body = frame.open()?;
        let leaf = Leaf::decode(body.leaf)?;
        match leaf.body {
            LeafBody::Message {
                content_hash,
                content_len,
                ..
            } => out.push(Payload {
                codec: body.codec,
                stored: body.payload.to_vec(),
                hash: content_hash,
                len: content_len,
            }),
            LeafBody::Dictionary {
                content_hash,
                content_len,
            } => {
                let bytes = decode_payload(
                    body.codec,
                    body.payload,
                    content_hash,
                    content_len,
                    &NoDictionaries,
                )?;
                let dictionary = Dictionary {
                    hash: content_hash,
                    bytes: Arc::new(bytes),
                };
                dictionaries.0.insert(leaf.seq, dictionary);
            }
            _ => {}
        }
    }
    Ok((out, dictionaries))
}

/// Decompresses and hashes `payloads` with reused zstd contexts and output buffer; returns
/// how many did not match their hash.
fn decompress_and_hash(payloads: &[Payload], contexts: &mut Contexts<'_>, buf: &mut Vec<u8>) -> usize {
    let mut bad = 0;
    for p in payloads {
        let (dictionary, frame) = p.frame();
        let content: &[u8] = if p.codec == Codec::Raw {
            frame
        } else {
            buf.clear();
            buf.reserve(p.len as usize);
            if contexts.decompress(dictionary, frame, buf).is_err() {
                bad += 1;
                continue;
            }
            buf
        };
        if content.len() as u64 != p.len || *blake3::hash(content).as_bytes() != p.hash {
            bad += 1;
        }
    }
    bad
}

/// Seconds to decompress and hash every payload with `threads` threads.
fn limit(payloads: &[Payload], dictionaries: &LogDictionaries, threads: usize) -> BenchResult<f64> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let bad: usize = std::thread::scope(|scope| -> BenchResult<usize> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> std::io::Result<usize> {
                    let mut contexts = Contexts::new(dictionaries)?;
                    let mut buf = Vec::new();
                    let mut bad = 0;
                    loop {
                        let i = next.fetch_add(CHUNK, Ordering::Relaxed);
                        let Some(chunk) = payloads.get(i..(i + CHUNK).min(payloads.len())) else {
                            return Ok(bad);
                        };
                        if chunk.is_empty() {
                            return Ok(bad);
                        }
                        bad += decompress_and_hash(chunk, &mut contexts, &mut buf);
                    }
                })
            })
            .collect();
        let mut bad = 0;
        for w in workers {
            bad += w.join().map_err(|_| "limit worker panicked")??;
        }
        Ok(bad)
    })?;
    let secs = start.elapsed().as_secs_f64();
    if bad > 0 {
        println!("note: {bad} payloads did not decompress to their hash");
    }
    Ok(secs)
}

/// Times the parts of verification in this process, to show where the binary's time goes.
fn splits(
    layout: &Layout,
    frames: &[RawFrame],
    payloads: &[Payload],
    dictionaries: &LogDictionaries,
    rounds: usize,
    product_s: f64,
) -> BenchResult<()> {
    let key = layout.verifier_key()?;
    let time = |f: &mut dyn FnMut() -> BenchResult<()>| -> BenchResult<f64> {
        let mut secs = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            f()?;
            secs.push(start.elapsed().as_secs_f64());
        }
        Ok(median(&secs))
    };
    let library = time(&mut || {
        let report = verify_log(&layout.log_dir, &key, &[])?;
        if let Some(p) = report.problem {
            println!("note: verify_log found a problem: {p}");
        }
        Ok(())
    })?;
    let segments: Vec<PathBuf> = list_segments(&layout.log_dir)?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let read_crc = time(&mut || {
        for path in &segments {
            let mut reader = SegmentReader::open(path)?;
            while let Some(Ok(frame)) = reader.next_frame(true)? {
                std::hint::black_box(frame.open()?.payload.len());
            }
        }
        Ok(())
    })?;
    let crc_only = time(&mut || {
        for frame in frames {
            std::hint::black_box(frame.header.open(&frame.header_bytes, &frame.body)?.codec);
        }
        Ok(())
    })?;
    let leaves = time(&mut || {
        let mut chain = [0u8; 32];
        let mut frontier = Frontier::default();
        for frame in frames {
            let body = frame.header.open(&frame.header_bytes, &frame.body)?;
            let leaf = Leaf::decode(body.leaf)?;
            if let Some(Ok(envelope)) = leaf.envelope() {
                std::hint::black_box(envelope);
            }
            chain = chain_next(&chain, body.leaf);
            frontier.push(leaf_hash(body.leaf));
        }
        std::hint::black_box((chain, frontier.root()));
        Ok(())
    })?;
    let library_decode = time(&mut || {
        for p in payloads {
            std::hint::black_box(decode_payload(p.codec, &p.stored, p.hash, p.len, dictionaries)?);
        }
        Ok(())
    })?;
    let mut contexts = Contexts::new(dictionaries)?;
    let mut buf = Vec::new();
    let decompress = time(&mut || {
        for p in payloads.iter().filter(|p| p.codec != Codec::Raw) {
            let (dictionary, frame) = p.frame();
            buf.clear();
            buf.reserve(p.len as usize);
            contexts.decompress(dictionary, frame, &mut buf)?;
            std::hint::black_box(buf.len());
        }
        Ok(())
    })?;
    let plain: Vec<&Payload> = payloads.iter().filter(|p| p.codec == Codec::Zstd).collect();
    let plain_fresh = time(&mut || {
        for p in &plain {
            std::hint::black_box(zstd::bulk::decompress(&p.stored, p.len as usize)?);
        }
        Ok(())
    })?;
    let plain_reused = time(&mut || {
        for p in &plain {
            buf.clear();
            buf.reserve(p.len as usize);
            contexts.decompress(None, &p.stored, &mut buf)?;
            std::hint::black_box(buf.len());
        }
        Ok(())
    })?;
    let contents: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| decode_payload(p.codec, &p.stored, p.hash, p.len, dictionaries))
        .collect::<Result<_, _>>()?;
    let hash = time(&mut || {
        for c in &contents {
            std::hint::black_box(blake3::hash(c));
        }
        Ok(())
    })?;

    println!("where the time goes (this process, 1 thread, medians of {rounds}):");
    println!("    verify_log (the library call the binary makes)     {library:.3} s");
    println!(
        "      read segments + frame CRC32C (SegmentReader)     {read_crc:.3} s  (CRC alone, in memory: {crc_only:.3} s)"
    );
    println!(
        "      leaves: decode, envelope, chain, Merkle          {leaves:.3} s  (includes the CRC once more)"
    );
    println!(
        "      decode_payload of every message (library)        {library_decode:.3} s  (the limit's work plus its overheads)"
    );
    println!("        zstd decompress, contexts set up once          {decompress:.3} s");
    println!("        blake3 of the content                          {hash:.3} s");
    println!(
        "        the {} plain-zstd payloads: new context each   {plain_fresh:.3} s  (reused context: {plain_reused:.3} s)",
        plain.len()
    );
    println!(
        "    binary − library (process start, key, output)      {:.3} s",
        product_s - library
    );
    Ok(())
}
