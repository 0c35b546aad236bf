//! `mailvault audit`: the access trail — every `audit` record of the log (logins and refused
//! logins, searches, reads, recoveries, …), filtered by time, actor and action, as text
//! columns or one JSON object per line. Reads the log only (works next to a running server)
//! and walks it whole: receive times are not promised to rise with seq, so no range of the
//! log can be skipped for a time filter.

use std::io::Write;
use std::process::ExitCode;

use archive_core::audit::trail::{events, TrailFilter};
use archive_core::audit::AuditEvent;
use archive_core::store::Layout;

use super::{format_time, open_log_with, written_or_stop, CmdResult};
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only events at or after this time: `YYYY-MM-DD` (00:00 UTC) or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: Option<i64>,
    /// Only events before this time: `YYYY-MM-DD` (through the end of that day, UTC) or an
    /// RFC 3339 time.
    #[arg(long, value_parser = parse_until)]
    until: Option<i64>,
    /// Only events of this actor (a user name, `cli:<os user>`, `mailvault`), exactly.
    #[arg(long)]
    user: Option<String>,
    /// Only events of this action (`login`, `login-failed`, `search`, …), exactly.
    #[arg(long)]
    action: Option<String>,
    /// One JSON object per line instead of text columns.
    #[arg(long)]
    json: bool,
    /// The serve configuration: the records of segments evicted to S3 (`[storage.s3]
    /// cache_size`) are read from its bucket; without it such a segment is an error.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

/// One event as printed.
#[derive(serde::Serialize)]
struct Line<'a> {
    /// The record's seq; `None` for an event still in the audit spool.
    seq: Option<u64>,
    /// The record's time (for a spooled event, when it happened: its `at`).
    time: String,
    /// Waiting in the audit spool: not in the log yet (the next writer takes it in).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pending: bool,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// Most spooled events listed after the log.
const MAX_PENDING: usize = 10_000;

pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let log = open_log_with(cli, args.config.as_deref())?;
    // The trail names who searched for what: reading it is an access of its own.
    super::record_read(cli, "audit-read", audit_read_target(args));
    // Read before the log: an event taken in meanwhile is then listed twice (spooled and
    // in the log), never not at all.
    let (pending, more) = archive_core::audit::pending(&Layout::new(&cli.data), MAX_PENDING)?;
    let mut out = std::io::stdout().lock();
    let filter = TrailFilter {
        since_us: args.since,
        until_us: args.until,
        actor: args.user.clone(),
        action: args.action.clone(),
    };
    for entry in events(&log, 1, &filter)? {
        let entry = entry?;
        let line = Line {
            seq: Some(entry.seq),
            time: format_time(entry.time_us),
            pending: false,
            event: &entry.event,
        };
        if !written_or_stop(print(&mut out, &line, args.json)?)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    for event in &pending {
        let at = event
            .at
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let at_us = at.map_or(0, |t| t.as_microsecond());
        if !filter.matches(at_us, event) {
            continue;
        }
        let line = Line {
            seq: None,
            time: format_time(at_us),
            pending: true,
            event,
        };
        if !written_or_stop(print(&mut out, &line, args.json)?)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    if more {
        eprintln!("mailvault: more than {MAX_PENDING} events wait in the audit spool; the first are listed");
    }
    Ok(ExitCode::SUCCESS)
}

/// The filters of an `audit` run, as its own record states them.
fn audit_read_target(args: &Args) -> String {
    let mut target = String::from("cli");
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            target.push_str(&format!(" {name} {}", archive_core::audit::query_text(&value)));
        }
    };
    add("since", args.since.map(format_time));
    add("until", args.until.map(format_time));
    add("user", args.user.clone());
    add("action", args.action.clone());
    target
}

/// One line: JSON, or text columns (a spooled event's seq is `pending`; an event that
/// reached the log later than it happened says when it happened).
fn print(out: &mut impl Write, line: &Line, json: bool) -> anyhow::Result<std::io::Result<()>> {
    if json {
        return Ok(writeln!(out, "{}", serde_json::to_string(line)?));
    }
    let event = line.event;
    let seq = line.seq.map_or_else(|| "pending".to_string(), |s| s.to_string());
    let at = match (&event.at, line.pending) {
        (Some(at), false) => format!(" (at {at})"),
        _ => String::new(),
    };
    Ok(writeln!(
        out,
        "{seq:>8}  {}  {:<14}  {:<20}  {:<15}  {}{at}",
        line.time, event.action, event.actor, event.origin, event.target
    ))
}

pub(super) fn parse_since(s: &str) -> Result<i64, String> {
    archive_core::audit::trail::parse_time(s, false)
}

pub(super) fn parse_until(s: &str) -> Result<i64, String> {
    archive_core::audit::trail::parse_time(s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates_or_rfc3339() {
        assert_eq!(parse_since("1970-01-02"), Ok(86_400_000_000));
        assert_eq!(parse_until("1970-01-01"), Ok(86_400_000_000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z"), Ok(1_000_000));
        assert_eq!(parse_until("1970-01-01T00:00:01+01:00"), Ok(-3_599_000_000));
        assert!(parse_since("yesterday").unwrap_err().contains("neither a date"));
    }
}
