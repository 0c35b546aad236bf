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
    Ok(log.records_from(from)?.filter_map(move |record| {
        let record = match record {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
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
            .then_some(Ok(TrailEntry { seq, time_us, event }))
    }))
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
