//! `mailvault export`: selections of the archive for people outside it — bundles a tax
//! auditor or a court verifies offline (`bundle`), and mbox files for mail programs.

pub mod bundle;

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
    let segments = log.segments();
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
