//! `mailvault status`: counts, bytes, on-disk ratio, latest checkpoint.

use std::collections::BTreeMap;
use std::process::ExitCode;

use archive_core::log::checkpoint::Checkpoint;
use archive_core::log::evicted::SegmentSource;
use archive_core::log::record::LeafBody;
use archive_core::search::ReadOnlyIndex;

use super::{existing_layout, format_time, CmdResult};
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize, Default)]
struct Status {
    origin: String,
    records: u64,
    by_kind: BTreeMap<&'static str, u64>,
    segments: usize,
    /// Segments on the local disk (the others are evicted: in object storage only).
    local_segments: usize,
    /// Segments whose local copy was evicted (`[storage.s3] cache_size`): their records are
    /// counted by kind `evicted`, their message bytes are not read.
    evicted_segments: usize,
    /// Bytes of the evicted segments (in the bucket).
    evicted_bytes: u64,
    /// Bytes of frames fetched from evicted segments kept in `<data>/cache/ranges/`.
    range_cache_bytes: u64,
    /// Raw message bytes stored (each distinct message once).
    message_bytes: u64,
    /// Bytes delivered, counting every arrival.
    delivered_bytes: u64,
    log_bytes: u64,
    /// Key-value index and tree cache.
    index_bytes: u64,
    /// The full-text index directory (derived; rebuilt by `reindex`).
    search_bytes: u64,
    /// The seq up to which the full-text index covers the log (it catches up in the
    /// background after an import, see `mailvault import`).
    search_indexed_seq: u64,
    /// (log + indexes) / raw message bytes.
    on_disk_ratio: f64,
    latest_checkpoint: Option<CheckpointStatus>,
    /// What recovery cut off the log's end (never acknowledged), one file per cut.
    quarantine: Vec<QuarantineFile>,
    /// Witnesses with a cosignature in `<data>/anchors/`: the newest tree size each cosigned.
    witnesses: Vec<WitnessStatus>,
    /// Rollbacks or forks witnesses caught (docs/OPERATIONS.md §Witnesses): each stands until
    /// that witness cosigns again.
    witness_alarms: Vec<archive_core::anchors::WitnessAlarm>,
    /// The newest stored RFC 3161 token of each TSA (`<data>/anchors/`), by TSA name.
    timestamps: BTreeMap<String, TimestampStatus>,
    /// Sealed segments in object storage (`[storage.s3]`): shown once a server offloads or
    /// the log holds a receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    offload: Option<OffloadStatus>,
}

#[derive(serde::Serialize)]
struct OffloadStatus {
    /// Segments sealed (all but the active one).
    sealed_segments: u64,
    /// Sealed segments with an offload receipt in the log.
    offloaded_segments: u64,
    /// Sealed segments without one yet: waiting, or failing (see last_error).
    backlog_segments: u64,
    /// The oldest segments of the backlog (at most 10), by number.
    backlog: Vec<u64>,
    /// What the server's offload thread last reported (`<data>/offload-status.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<serde_json::Value>,
}

#[derive(serde::Serialize)]
struct WitnessStatus {
    name: String,
    cosigned_size: u64,
}

#[derive(serde::Serialize)]
struct TimestampStatus {
    /// The tree size of the newest checkpoint this TSA stamped.
    tree_size: u64,
    /// When the token was stored (the file's time; `verify` checks the token itself).
    stored: String,
    path: String,
}

#[derive(serde::Serialize)]
struct QuarantineFile {
    path: String,
    bytes: u64,
}

#[derive(serde::Serialize)]
struct CheckpointStatus {
    seq: u64,
    tree_size: u64,
    time: String,
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes of the files directly in `dir` (0 if it does not exist).
fn dir_len(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| file_len(&e.path())).sum())
        .unwrap_or(0)
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let layout = existing_layout(cli)?;
    let log = archive_core::log::reader::LogReader::open(&layout.log_dir)?;
    let mut s = Status {
        origin: layout.identity()?.origin,
        segments: log.sources().len(),
        local_segments: log.segments().len(),
        range_cache_bytes: dir_len(&layout.range_cache),
        ..Status::default()
    };
    let mut offloaded = std::collections::BTreeSet::new();
    // Local segments are read; an evicted one is known from its stub (nothing is fetched).
    let mut records = Vec::new();
    for (first, source) in log.sources() {
        match source {
            SegmentSource::Local(_) => records.push(*first),
            SegmentSource::Evicted(_) => {
                let Some(stub) = log.evicted().stub(*first)? else {
                    continue;
                };
                s.evicted_segments += 1;
                s.evicted_bytes += stub.receipt.segment_len;
                s.records += stub.frames.len() as u64;
                *s.by_kind.entry("evicted").or_default() += stub.frames.len() as u64;
                offloaded.insert(*first);
                offloaded.extend(stub.receipts.iter().map(|(segment, _)| *segment));
            }
        }
    }
    for first in records {
        for record in log.records_of_segment(first, first)? {
            let record = record?;
            s.records += 1;
            *s.by_kind.entry(record.kind().name()).or_default() += 1;
            match &record.leaf.body {
                LeafBody::Message { content_len, .. } => {
                    s.message_bytes += content_len;
                    s.delivered_bytes += content_len;
                }
                LeafBody::Arrival { content_len, .. } => s.delivered_bytes += content_len,
                LeafBody::Checkpoint { note } => {
                    let text = String::from_utf8_lossy(note);
                    if let Some(body) = text.split_once("\n\n").map(|(t, _)| format!("{t}\n")) {
                        if let Ok(c) = Checkpoint::parse_body(&body) {
                            s.latest_checkpoint = Some(CheckpointStatus {
                                seq: record.seq(),
                                tree_size: c.size,
                                time: format_time(record.leaf.time_us),
                            });
                        }
                    }
                }
                LeafBody::Offload(r) => {
                    offloaded.insert(r.segment);
                }
                LeafBody::Audit { .. } | LeafBody::Dictionary { .. } => {}
            }
        }
    }
    let all: Vec<(u64, std::path::PathBuf)> = log
        .sources()
        .iter()
        .map(|(n, src)| match src {
            SegmentSource::Local(p) | SegmentSource::Evicted(p) => (*n, p.clone()),
        })
        .collect();
    s.offload = offload_status(&layout, &all, &offloaded);
    s.log_bytes = log.segments().iter().map(|(_, p)| file_len(p)).sum();
    s.index_bytes = file_len(&layout.kv_index) + file_len(&layout.tree);
    s.search_bytes = dir_len(&archive_core::search::index_dir(&layout));
    s.search_indexed_seq = ReadOnlyIndex::open(&cli.data)
        .and_then(|i| i.searchable_seq())
        .unwrap_or(0);
    s.quarantine = layout
        .quarantined()?
        .into_iter()
        .map(|(path, bytes)| QuarantineFile {
            path: path.display().to_string(),
            bytes,
        })
        .collect();
    (s.witnesses, s.timestamps) = newest_anchors(&layout)?;
    s.witness_alarms = archive_core::anchors::alarms(&layout)?;
    if s.message_bytes > 0 {
        s.on_disk_ratio = (s.log_bytes + s.index_bytes) as f64 / s.message_bytes as f64;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("store       {} ({})", cli.data.display(), s.origin);
    let kinds: Vec<String> = s.by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("records     {} ({})", s.records, kinds.join(", "));
    if s.evicted_segments == 0 {
        println!("segments    {}", s.segments);
    } else {
        println!(
            "segments    {} ({} local, {} evicted to object storage: {} bytes there; range cache {} bytes)",
            s.segments, s.local_segments, s.evicted_segments, s.evicted_bytes, s.range_cache_bytes
        );
    }
    println!(
        "messages    {} bytes raw ({} bytes delivered incl. arrivals)",
        s.message_bytes, s.delivered_bytes
    );
    println!(
        "on disk     {} bytes log + {} bytes key-value index and tree = {:.3} × raw; search index {} bytes",
        s.log_bytes, s.index_bytes, s.on_disk_ratio, s.search_bytes
    );
    println!(
        "search      indexed up to seq {} of {}{}",
        s.search_indexed_seq,
        s.records,
        if s.search_indexed_seq < s.records {
            " (the rest is indexed by the next `serve` or `search`)"
        } else {
            ""
        }
    );
    match &s.latest_checkpoint {
        Some(c) => println!(
            "checkpoint  seq {} covering {} records, {}",
            c.seq, c.tree_size, c.time
        ),
        None => println!("checkpoint  none yet"),
    }
    for q in &s.quarantine {
        println!(
            "quarantine  {} ({} bytes recovery cut off the log's end: never acknowledged; see the audit trail)",
            q.path, q.bytes
        );
    }
    for w in &s.witnesses {
        println!("witness     {} cosigned tree size {}", w.name, w.cosigned_size);
    }
    for a in &s.witness_alarms {
        println!(
            "ALARM       witness {}: {} detected {} (witness size {}, log size {}): {}",
            a.witness, a.kind, a.detected_at, a.witness_size, a.log_size, a.detail
        );
    }
    if let Some(o) = &s.offload {
        println!(
            "offload     {} of {} sealed segments in object storage; backlog {}{}",
            o.offloaded_segments,
            o.sealed_segments,
            o.backlog_segments,
            if o.backlog.is_empty() {
                String::new()
            } else {
                format!(" (segments {:?})", o.backlog)
            }
        );
        if let Some(server) = &o.server {
            let failures = server["failures_total"].as_u64().unwrap_or(0);
            match server["last_error"].as_str() {
                Some(e) => println!(
                    "offload     last error ({}): {e}; {failures} failed attempts since the server started",
                    server["last_error_at"].as_str().unwrap_or("?")
                ),
                None => {
                    println!("offload     no errors; {failures} failed attempts since the server started")
                }
            }
        }
    }
    for (tsa, t) in &s.timestamps {
        println!(
            "time-stamp  {tsa}: newest token for {} records, stored {} ({})",
            t.tree_size, t.stored, t.path
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Offloaded and waiting segments, from the receipts in the log and the server's report.
fn offload_status(
    layout: &archive_core::store::Layout,
    segments: &[(u64, std::path::PathBuf)],
    offloaded: &std::collections::BTreeSet<u64>,
) -> Option<OffloadStatus> {
    let server = std::fs::read(super::serve::offload::status_path(&layout.dir))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if server.is_none() && offloaded.is_empty() {
        return None;
    }
    let sealed = &segments[..segments.len().saturating_sub(1)];
    let waiting: Vec<u64> = sealed
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !offloaded.contains(n))
        .collect();
    Some(OffloadStatus {
        sealed_segments: sealed.len() as u64,
        offloaded_segments: sealed.iter().filter(|(n, _)| offloaded.contains(n)).count() as u64,
        backlog_segments: waiting.len() as u64,
        backlog: waiting.into_iter().take(10).collect(),
        server,
    })
}

/// The newest anchored tree size each witness cosigned, and each TSA's newest token.
fn newest_anchors(
    layout: &archive_core::store::Layout,
) -> anyhow::Result<(Vec<WitnessStatus>, BTreeMap<String, TimestampStatus>)> {
    use archive_core::anchors;
    let mut cosigned: BTreeMap<String, u64> = BTreeMap::new();
    let mut stamped = BTreeMap::new();
    // Ascending sizes: a later one replaces an earlier one.
    for size in anchors::anchored_sizes(layout)? {
        for file in anchors::anchor_files(layout, size)? {
            if let Some(name) = file
                .strip_prefix("cosignature-")
                .and_then(|f| f.strip_suffix(".txt"))
            {
                cosigned.insert(name.to_string(), size);
            } else if let Some(tsa) = file
                .strip_prefix("timestamp-")
                .and_then(|f| f.strip_suffix(".tsr"))
            {
                let path = anchors::anchor_dir(layout, size).join(&file);
                let stored = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    .map_or_else(|| "?".into(), |t| t.to_string());
                stamped.insert(
                    tsa.to_string(),
                    TimestampStatus {
                        tree_size: size,
                        stored,
                        path: path.display().to_string(),
                    },
                );
            }
        }
    }
    let witnesses = cosigned
        .into_iter()
        .map(|(name, cosigned_size)| WitnessStatus { name, cosigned_size })
        .collect();
    Ok((witnesses, stamped))
}
