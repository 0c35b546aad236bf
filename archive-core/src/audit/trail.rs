//! Reading the access trail back: the `audit` records of the log, filtered by time, actor and
//! action. `mailvault audit` prints them all; the web API pages through them (a page starts at
//! a seq and stops after a number of events). Reads the log only, without the store's lock.

use crate::log::reader::LogReader;
use crate::log::record::LeafBody;
use crate::Result;

use super::AuditEvent;

/// Which events to list; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct TrailFilter {
    /// At or after this time, microseconds since the Unix epoch (UTC).
    pub since_us: Option<i64>,
    /// Before this time.
    pub until_us: Option<i64>,
    /// This actor exactly (a user name, `cli:<os user>`, `mailvault`).
    pub actor: Option<String>,
    /// This action exactly (`login`, `search`, …).
    pub action: Option<String>,
}

impl TrailFilter {
    /// Whether an event at `time_us` passes.
    pub fn matches(&self, time_us: i64, event: &AuditEvent) -> bool {
        !(self.since_us.is_some_and(|t| time_us < t)
            || self.until_us.is_some_and(|t| time_us >= t)
            || self.actor.as_ref().is_some_and(|u| *u != event.actor)
            || self.action.as_ref().is_some_and(|a| *a != event.action))
    }
}

/// One event of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailEntry {
    /// The audit record's seq.
    pub seq: u64,
    /// The record's time, microseconds since the Unix epoch (UTC).
    pub time_us: i64,
    /// The event.
    pub event: AuditEvent,
}

/// The events of the log from `seq` on that pass `filter`, in log order. Receive times are not
/// promised to rise with seq, so a time filter skips no part of the log. An event the log
/// holds but that does not parse is listed as action `unreadable`, not hidden: a trail with
/// gaps would be worse than one with a line saying what could not be read.
pub fn events<'a>(
    log: &'a LogReader,
    from: u64,
    filter: &'a TrailFilter,
) -> Result<impl Iterator<Item = Result<TrailEntry>> + 'a> {
    Ok(log.records_from(from)?.filter_map(move |record| match record {
        Ok(record) => entry_of(&record, filter).map(Ok),
        Err(e) => Some(Err(e)),
    }))
}

/// A page of the trail, and where the next one starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrailPage {
    /// The events, in log order.
    pub entries: Vec<TrailEntry>,
    /// The seq the next page starts at; `None` at the end of the log.
    pub next: Option<u64>,
}

/// Up to `limit` events from `seq` on that pass `filter`, looking at no more than
/// `max_records` records of the log and stopping at `deadline`: a filter that matches little
/// (a user who never logged in) must not make one request read the whole log. A page cut
/// short holds fewer events, maybe none, and its `next` goes on where it stopped.
pub fn page(
    log: &LogReader,
    from: u64,
    filter: &TrailFilter,
    limit: usize,
    max_records: usize,
    deadline: std::time::Instant,
) -> Result<TrailPage> {
    let mut entries = Vec::new();
    for (looked, record) in log.records_from(from)?.enumerate() {
        let record = record?;
        let full = entries.len() >= limit || looked >= max_records;
        if full || (looked % 1024 == 1023 && std::time::Instant::now() >= deadline) {
            return Ok(TrailPage {
                entries,
                next: Some(record.leaf.seq),
            });
        }
        entries.extend(entry_of(&record, filter));
    }
    Ok(TrailPage { entries, next: None })
}

/// The event of `record`, if it is an audit record that passes `filter`. An event the log
/// holds but that does not parse is listed as action `unreadable`.
fn entry_of(record: &crate::log::reader::Record, filter: &TrailFilter) -> Option<TrailEntry> {
    let leaf = &record.leaf;
    let LeafBody::Audit { event } = &leaf.body else {
        return None;
    };
    let event: AuditEvent = serde_json::from_slice(event).unwrap_or_else(|e| AuditEvent {
        actor: "?".into(),
        action: "unreadable".into(),
        target: format!("audit record does not parse: {e}"),
        origin: "?".into(),
        ..Default::default()
    });
    let (seq, time_us) = (leaf.seq, leaf.time_us);
    filter
        .matches(time_us, &event)
        .then_some(TrailEntry { seq, time_us, event })
}

/// Microseconds since the epoch of an RFC 3339 time, or of the start of day `YYYY-MM-DD`
/// in UTC (of the next day when `end_of_day`, so that `--until` a date includes it).
pub fn parse_time(s: &str, end_of_day: bool) -> std::result::Result<i64, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_microsecond());
    }
    let day: jiff::civil::Date = s.parse().map_err(|_| {
        format!("{s:?} is neither a date (2026-12-06) nor an RFC 3339 time (2026-12-06T10:00:00Z)")
    })?;
    let day = if end_of_day {
        day.tomorrow().map_err(|e| e.to_string())?
    } else {
        day
    };
    day.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_microsecond())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{created_store, Store, StoreConfig};
    use std::time::{Duration, Instant};

    #[test]
    fn a_page_looks_at_a_bounded_part_of_the_log_and_goes_on_from_there() {
        let (_dir, path, key) = created_store();
        let store = Store::open(&path, &key, StoreConfig::default()).unwrap();
        let mut seqs = Vec::new();
        for i in 0..40 {
            let who = if i % 10 == 9 { "alice" } else { "bob" };
            let event = AuditEvent::new(who, "search", format!("web {i}"), "127.0.0.1");
            seqs.push(store.append_audit(&event).unwrap());
        }
        let log = LogReader::open(&store.layout().log_dir).unwrap();
        let alice = TrailFilter {
            actor: Some("alice".into()),
            ..TrailFilter::default()
        };
        let later = Instant::now() + Duration::from_secs(3600);
        // Twelve records looked at per page: alice's four events (every tenth) come in pages
        // that are cut short, some empty, each going on where the last stopped.
        let mut found = Vec::new();
        let mut from = 1;
        let mut pages = 0;
        loop {
            let page = page(&log, from, &alice, 100, 12, later).unwrap();
            assert!(page.entries.len() <= 2, "{page:?}");
            found.extend(page.entries.iter().map(|e| e.seq));
            pages += 1;
            match page.next {
                Some(next) => {
                    assert!(next > from);
                    from = next;
                }
                None => break,
            }
        }
        let alices: Vec<u64> = seqs.iter().skip(9).step_by(10).copied().collect();
        assert_eq!(found, alices);
        assert!(pages >= 4, "{pages}");
        // The limit cuts a page too, and its next page starts at the next record (the log
        // holds checkpoints between the audit records).
        let all = TrailFilter::default();
        let first = page(&log, seqs[0], &all, 3, usize::MAX, later).unwrap();
        assert_eq!(first.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[..3]);
        let next = first.next.unwrap();
        assert!(seqs[2] < next && next <= seqs[3], "{next}");
        let second = page(&log, next, &all, 1, usize::MAX, later).unwrap();
        assert_eq!(second.entries[0].seq, seqs[3]);
        // Past the deadline, a page stops within its first 1,024 records.
        let (_dir2, path2, key2) = created_store();
        let big = Store::open(&path2, &key2, StoreConfig::default()).unwrap();
        for i in 0..3000 {
            big.append_audit(&AuditEvent::new("bob", "search", format!("web {i}"), "x"))
                .unwrap();
        }
        let log = LogReader::open(&big.layout().log_dir).unwrap();
        let late = page(&log, 1, &alice, 100, usize::MAX, Instant::now()).unwrap();
        assert!(late.entries.is_empty());
        assert!(late.next.is_some_and(|n| n <= 1025), "{late:?}");
    }
}
