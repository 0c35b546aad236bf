//! `mailvault export`: selections of the archive for people outside it — bundles a tax
//! auditor or a court verifies offline (`bundle`), and mbox files for mail programs.

pub mod bundle;
pub mod container;
pub mod mbox;
mod tail_buffer;
mod writer;

use crate::log::reader::LogReader;
use crate::Result;

/// The records received in `[since, until)` (microseconds; `None` is open) among the first
/// `size`: their first and last seq, or `None` when there are none. Receive times never
/// decrease along the log (`verify` checks it), so the window is one run of seqs; the scan
/// starts in the segment where it can begin, found by the segments' first records.
pub fn seqs_received_between(
    log: &LogReader,
    since: Option<i64>,
    until: Option<i64>,
    size: u64,
) -> Result<Option<(u64, u64)>> {
    let segments = log.sources();
    let mut start = 1;
    if let Some(since) = since {
        // The last segment whose first record is older than `since`: the window starts in it or later.
        let (mut lo, mut hi) = (0usize, segments.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let first_time = match log.records_from(segments[mid].0)?.next() {
                Some(record) => record?.leaf.time_us,
                None => i64::MAX,
            };
            if first_time < since {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo > 0 {
            start = segments[lo - 1].0;
        }
    }
    let mut window: Option<(u64, u64)> = None;
    for record in log.records_from(start)? {
        let record = record?;
        let (seq, time) = (record.seq(), record.leaf.time_us);
        if seq > size || until.is_some_and(|u| time >= u) {
            break;
        }
        if since.is_some_and(|s| time < s) {
            continue;
        }
        window = Some((window.map_or(seq, |(first, _)| first), seq));
    }
    Ok(window)
}

/// Writes the message and arrival records of `first..=last` — all of them, or those in
/// `only` (ascending) — to `out` as mboxrd (`mbox::MboxWriter`); returns how many.
pub fn write_mbox<W: std::io::Write>(
    log: &LogReader,
    first: u64,
    last: u64,
    only: Option<&[u64]>,
    out: W,
) -> Result<u64> {
    use crate::log::record::RecordKind;
    let mut writer = mbox::MboxWriter::new(std::io::BufWriter::new(out));
    let mut wanted = only.map(|seqs| seqs.iter().copied().peekable());
    let mut written = 0;
    for record in log.records_from(first)? {
        let record = record?;
        let seq = record.seq();
        if seq > last {
            break;
        }
        if !matches!(record.kind(), RecordKind::Message | RecordKind::Arrival) {
            continue;
        }
        if let Some(wanted) = wanted.as_mut() {
            while wanted.next_if(|&s| s < seq).is_some() {}
            if wanted.next_if_eq(&seq).is_none() {
                continue;
            }
        }
        let sender = match record.leaf.envelope() {
            Some(Ok(envelope)) => envelope.mail_from,
            _ => Vec::new(),
        };
        let bytes = log.message_bytes(seq)?;
        writer
            .write_message(&sender, record.leaf.time_us, &bytes)
            .map_err(|e| crate::Error::System(format!("writing the mbox: {e}")))?;
        written += 1;
    }
    writer
        .into_inner()
        .map_err(|e| crate::Error::System(format!("writing the mbox: {e}")))?;
    Ok(written)
}
