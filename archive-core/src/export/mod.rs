//! `mailvault export`: selections of the archive for people outside it — bundles a tax
//! auditor or a court verifies offline (`bundle`), and mbox files for mail programs.

pub mod bundle;
pub mod container;
pub mod mbox;
mod tail_buffer;
mod writer;

use crate::log::reader::LogReader;
use crate::search::{SearchOptions, SearchResults, Sort, MAX_LIMIT};
use crate::{Error, Result};

/// The records a query export holds: every delivery the searcher may see of every message
/// the search finds (the message record, and later arrivals of the same bytes), ascending.
/// `page` runs the search for the options it is given (through a store or a read-only
/// index); pages are walked by cursor, oldest first. More than `at_most` hits is an error
/// saying so (`None`: no bound), found before the records of more are gathered.
pub fn selected_deliveries<E: From<Error>>(
    mut page: impl FnMut(&SearchOptions) -> std::result::Result<SearchResults, E>,
    at_most: Option<u64>,
) -> std::result::Result<Vec<u64>, E> {
    let mut options = SearchOptions {
        sort: Sort::Oldest,
        limit: MAX_LIMIT,
        cursor: None,
        snippets: false,
        facets: false,
        // Only the first page counts, and only as far as the bound needs.
        count_limit: at_most.map(|n| n + 1),
    };
    let mut seqs = Vec::new();
    let mut hits = 0u64;
    loop {
        let found = page(&options)?;
        if let Some(limit) = at_most {
            if found.total > limit {
                return Err(E::from(Error::Rejected(format!(
                    "the search finds {}{} messages; at most {limit} can be exported this way",
                    if found.total_exact { "" } else { "more than " },
                    if found.total_exact { found.total } else { limit },
                ))));
            }
        }
        for hit in &found.hits {
            hits += 1;
            match hit.deliveries.is_empty() {
                true => seqs.push(hit.seq),
                false => seqs.extend(hit.deliveries.iter().map(|d| d.seq)),
            }
        }
        if at_most.is_some_and(|limit| hits > limit) {
            return Err(E::from(Error::Rejected(format!(
                "the search finds more than {} messages; at most that many can be exported this way",
                at_most.unwrap_or_default()
            ))));
        }
        match found.next_cursor {
            Some(cursor) => {
                options.cursor = Some(cursor);
                options.count_limit = Some(0);
            }
            None => break,
        }
    }
    seqs.sort_unstable();
    seqs.dedup();
    Ok(seqs)
}

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
