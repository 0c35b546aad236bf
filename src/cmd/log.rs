//! `mailvault log`: one line (or JSON object) per record.

use std::io::Write;
use std::process::ExitCode;

use archive_core::audit::AuditEvent;
use archive_core::log::reader::Record;
use archive_core::log::record::LeafBody;
use archive_core::Envelope;

use super::{format_time, hex, open_log_with, written_or_stop, CmdResult};
use crate::Cli;
use archive_core::log::evicted::{EvictedSegment, SegmentSource};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// First seq to list.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// List at most this many records.
    #[arg(long)]
    limit: Option<u64>,
    /// One JSON object per line instead of text columns.
    #[arg(long)]
    json: bool,
    /// The serve configuration: records of segments evicted to S3 are read from the bucket of
    /// its [storage.s3]; without it they are listed by seq with kind `evicted`.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

/// What `log` prints about one record.
#[derive(serde::Serialize)]
struct Line {
    seq: u64,
    kind: &'static str,
    time: String,
    /// blake3 of the raw message (message and arrival records).
    blake3: Option<String>,
    /// Raw message size for message/arrival records, leaf size otherwise.
    size: u64,
    /// Envelope MAIL FROM (message and arrival records).
    sender: Option<String>,
    /// For arrivals: the message record holding the bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seq: Option<u64>,
    /// The whole envelope (message and arrival records; JSON output only).
    #[serde(skip_serializing_if = "Option::is_none")]
    envelope: Option<EnvelopeJson>,
    /// For audit records: who did what, on what, from where (JSON output only).
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<AuditEvent>,
    /// For offload receipts: which sealed segment is where in the bucket, locked until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    offload: Option<OffloadJson>,
}

/// An offload receipt (docs/FORMAT.md §Leaves, kind 6).
#[derive(serde::Serialize)]
struct OffloadJson {
    segment: u64,
    segment_len: u64,
    segment_blake3: String,
    bucket: String,
    key: String,
    version_id: String,
    retain_until: String,
}

impl OffloadJson {
    fn of(r: &archive_core::log::record::OffloadReceipt) -> OffloadJson {
        OffloadJson {
            segment: r.segment,
            segment_len: r.segment_len,
            segment_blake3: hex(&r.segment_hash),
            bucket: r.bucket.clone(),
            key: r.key.clone(),
            version_id: r.version_id.clone(),
            retain_until: jiff::Timestamp::from_second(r.retain_until)
                .map_or_else(|_| r.retain_until.to_string(), |t| t.to_string()),
        }
    }
}

/// An envelope for JSON output; addresses that are not UTF-8 are shown lossily.
#[derive(serde::Serialize)]
struct EnvelopeJson {
    mail_from: String,
    mail_params: String,
    rcpt_to: Vec<RecipientJson>,
    original_recipients: Vec<String>,
    protocol: String,
    client: String,
    helo: String,
    tls: String,
    source: String,
}

#[derive(serde::Serialize)]
struct RecipientJson {
    address: String,
    params: String,
}

impl From<Envelope> for EnvelopeJson {
    fn from(e: Envelope) -> Self {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        EnvelopeJson {
            mail_from: text(&e.mail_from),
            mail_params: text(&e.mail_params),
            rcpt_to: e
                .rcpt_to
                .iter()
                .map(|r| RecipientJson {
                    address: text(&r.address),
                    params: text(&r.params),
                })
                .collect(),
            original_recipients: e.original_recipients.iter().map(|r| text(r)).collect(),
            protocol: e.protocol,
            client: e.client,
            helo: e.helo,
            tls: e.tls,
            source: e.source,
        }
    }
}

impl Line {
    fn of(record: &Record) -> Line {
        let leaf = &record.leaf;
        let offload = match &leaf.body {
            LeafBody::Offload(r) => Some(OffloadJson::of(r)),
            _ => None,
        };
        let (blake3, size) = match (leaf.content(), &offload) {
            (Some((hash, len)), _) => (Some(hex(&hash)), len),
            (None, Some(o)) => (Some(o.segment_blake3.clone()), o.segment_len),
            (None, None) => (None, record.leaf_bytes.len() as u64),
        };
        let envelope = leaf.envelope().and_then(|e| e.ok());
        let sender = envelope
            .as_ref()
            .map(|e| String::from_utf8_lossy(&e.mail_from).into_owned());
        let first_seq = match leaf.body {
            LeafBody::Arrival { first_seq, .. } => Some(first_seq),
            _ => None,
        };
        let audit = match &leaf.body {
            LeafBody::Audit { event } => serde_json::from_slice(event).ok(),
            _ => None,
        };
        Line {
            seq: leaf.seq,
            kind: leaf.kind().name(),
            time: format_time(leaf.time_us),
            blake3,
            size,
            sender,
            first_seq,
            envelope: envelope.map(EnvelopeJson::from),
            audit,
            offload,
        }
    }
}

impl Line {
    /// A record of an evicted segment, known only by its seq (no --config to fetch it).
    fn evicted(seq: u64, stub: &EvictedSegment) -> Line {
        let entry = stub.frame(seq);
        Line {
            seq,
            kind: "evicted",
            time: "-".into(),
            blake3: None,
            size: entry.map_or(0, |e| e.len),
            sender: Some(format!("segment {} evicted to {}", stub.first_seq, stub.place())),
            first_seq: None,
            envelope: None,
            audit: None,
            offload: None,
        }
    }

    fn write(&self, out: &mut impl Write, json: bool) -> anyhow::Result<bool> {
        let written = if json {
            writeln!(out, "{}", serde_json::to_string(self)?)
        } else {
            writeln!(
                out,
                "{:>8}  {:<10}  {}  {}  {:>9}  {}",
                self.seq,
                self.kind,
                self.time,
                self.blake3.as_deref().unwrap_or("-"),
                self.size,
                match (&self.sender, &self.offload) {
                    (Some(s), _) if s.is_empty() => "<>".to_string(),
                    (Some(s), _) => s.clone(),
                    (None, Some(o)) => format!(
                        "segment {} -> s3://{}/{} version {} locked until {}",
                        o.segment, o.bucket, o.key, o.version_id, o.retain_until
                    ),
                    (None, None) => "-".to_string(),
                }
            )
        };
        written_or_stop(written)
    }
}

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let log = open_log_with(cli, args.config.as_deref())?;
    // The listing shows envelopes (who wrote to whom): an access, recorded before it runs.
    let limit_text = args.limit.map_or_else(|| "all".to_string(), |l| l.to_string());
    super::record_read(
        cli,
        "list",
        format!("cli log from {} limit {limit_text}", args.from),
    );
    let mut out = std::io::stdout().lock();
    let mut left = args.limit.unwrap_or(u64::MAX);
    // Segment by segment: one evicted without a remote is listed from its stub.
    let sources = log.sources();
    for (i, (first, source)) in sources.iter().enumerate() {
        if sources.get(i + 1).is_some_and(|(next, _)| *next <= args.from) {
            continue;
        }
        let from = args.from.max(*first);
        if let (SegmentSource::Evicted(_), false) = (source, log.evicted().has_remote()) {
            if let Some(stub) = log.evicted().stub(*first)? {
                for seq in from..=stub.last_seq() {
                    if left == 0 || !Line::evicted(seq, &stub).write(&mut out, args.json)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                    left -= 1;
                }
            }
            continue;
        }
        for record in log.records_of_segment(*first, from)? {
            if left == 0 || !Line::of(&record?).write(&mut out, args.json)? {
                return Ok(ExitCode::SUCCESS);
            }
            left -= 1;
        }
    }
    Ok(ExitCode::SUCCESS)
}
