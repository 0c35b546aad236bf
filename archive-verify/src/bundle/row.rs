//! One row of `messages.csv` and `messages.json`: what an auditor's spreadsheet shows of a
//! message. Derived from authenticated bytes only (the leaf and the message), by this one
//! function on both sides: the exporter writes the rows, the verifier recomputes them and
//! compares, so a row that was edited after export is found and named.

use mail_parser::{Address, MessageParser};
use serde::Serialize;

/// Bytes of a message's beginning its header fields are read from: enough for any real
/// header, bounded for hostile ones (the verifier reads this much of each message).
pub const HEADER_PREFIX_MAX: usize = 256 * 1024;

/// Longest text column, in bytes; a longer value is cut at a character boundary and ends in `…`.
pub const MAX_TEXT_COLUMN: usize = 4096;

/// A message as the listing shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessageRow {
    /// Record sequence number.
    pub seq: u64,
    /// Receive time (the leaf's), RFC 3339 UTC with microseconds.
    pub received: String,
    /// The Date header field as written (unfolded, trimmed), empty without one.
    pub date: String,
    /// From, To and Cc: mailboxes as `Name <address>`, `address` or `Name`, joined by `, `.
    pub from: String,
    /// See `from`.
    pub to: String,
    /// See `from`.
    pub cc: String,
    /// The decoded Subject.
    pub subject: String,
    /// Bytes of the message.
    pub size: u64,
    /// blake3 of the message, hex (the hash the log's leaf commits to).
    pub blake3: String,
    /// SHA-256 of the message, hex (for tools that know only SHA-256).
    pub sha256: String,
    /// The message file inside the bundle.
    pub file: String,
}

impl MessageRow {
    /// The row of message `seq` received at `time_us`, from the first [`HEADER_PREFIX_MAX`]
    /// bytes of the message (or all of it, if shorter) and its size and hashes.
    pub fn new(
        seq: u64,
        time_us: i64,
        header_prefix: &[u8],
        size: u64,
        blake3: &[u8; 32],
        sha256: &[u8; 32],
    ) -> MessageRow {
        let prefix = &header_prefix[..header_prefix.len().min(HEADER_PREFIX_MAX)];
        let parsed = MessageParser::default().parse_headers(prefix);
        let (date, from, to, cc, subject) = match &parsed {
            Some(m) => (
                m.header_raw("Date").map(str::to_string).unwrap_or_default(),
                mailboxes(m.from()),
                mailboxes(m.to()),
                mailboxes(m.cc()),
                m.subject().unwrap_or_default().to_string(),
            ),
            None => Default::default(),
        };
        MessageRow {
            seq,
            received: format_time_us(time_us),
            date: column(&date),
            from: column(&from),
            to: column(&to),
            cc: column(&cc),
            subject: column(&subject),
            size,
            blake3: hex(blake3),
            sha256: hex(sha256),
            file: super::message_file(seq),
        }
    }

    /// The CSV record, CRLF-terminated (RFC 4180: a field with a comma or quote is quoted,
    /// quotes doubled; no field holds a line break).
    pub fn csv_record(&self) -> String {
        let size = self.size.to_string();
        let seq = self.seq.to_string();
        let fields = [
            seq.as_str(),
            &self.received,
            &self.date,
            &self.from,
            &self.to,
            &self.cc,
            &self.subject,
            &size,
            &self.blake3,
            &self.sha256,
            &self.file,
        ];
        let mut out = String::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if f.contains([',', '"']) {
                out.push('"');
                out.push_str(&f.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(f);
            }
        }
        out.push_str("\r\n");
        out
    }

    /// The object of `messages.json`, on one line.
    pub fn json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The CSV header line.
pub fn csv_header() -> String {
    let names: Vec<&str> = crate::gdpdu::COLUMNS.iter().map(|c| c.name).collect();
    format!("{}\r\n", names.join(","))
}

/// A receive time as RFC 3339 UTC with microseconds, e.g. `2026-12-06T17:30:00.000001Z`.
pub fn format_time_us(time_us: i64) -> String {
    match jiff::Timestamp::from_microsecond(time_us) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
        // Outside jiff's range (years beyond ±9999): the number itself, still unambiguous.
        Err(_) => format!("{time_us}us"),
    }
}

fn mailboxes(address: Option<&Address<'_>>) -> String {
    let mut out = Vec::new();
    for a in address.into_iter().flat_map(|a| a.iter()) {
        let name = a.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        let addr = a.address.as_deref().map(str::trim).filter(|n| !n.is_empty());
        match (name, addr) {
            (Some(n), Some(a)) => out.push(format!("{n} <{a}>")),
            (None, Some(a)) => out.push(a.to_string()),
            (Some(n), None) => out.push(n.to_string()),
            (None, None) => {}
        }
    }
    out.join(", ")
}

/// A text column: control characters (line breaks above all) become spaces, surrounding
/// space goes, and the value is cut to [`MAX_TEXT_COLUMN`] bytes.
fn column(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.len() <= MAX_TEXT_COLUMN {
        return clean.to_string();
    }
    let mut end = MAX_TEXT_COLUMN - '…'.len_utf8();
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &clean[..end])
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_keys_are_the_described_columns_in_order() {
        let row = MessageRow::new(1, 0, b"Subject: x\r\n\r\n", 15, &[0; 32], &[0; 32]);
        let json = row.json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = json
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .filter_map(|kv| kv.split_once(':').map(|(k, _)| k.trim_matches('"')))
            .collect();
        let described: Vec<&str> = crate::gdpdu::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(keys, described);
        assert_eq!(value.as_object().unwrap().len(), described.len());
        assert_eq!(csv_header(), format!("{}\r\n", described.join(",")));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(format_time_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_time_us(1_733_506_200_000_001),
            "2024-12-06T17:30:00.000001Z"
        );
        assert_eq!(format_time_us(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(format_time_us(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn rows_quote_commas_and_never_break_lines() {
        let raw = b"From: \"Doe, Jane\" <jane@example.com>\r\nTo: a@example.com, b@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= \"quoted\"\r\n\tfolded\r\nDate: Tue, 1 Dec 2026 10:00:00 +0100\r\n\r\nbody\r\n";
        let row = MessageRow::new(7, 0, raw, raw.len() as u64, &[1; 32], &[2; 32]);
        assert_eq!(row.from, "Doe, Jane <jane@example.com>");
        assert_eq!(row.to, "a@example.com, b@example.com");
        assert!(row.subject.starts_with("Grüße \"quoted\""), "{}", row.subject);
        let csv = row.csv_record();
        assert_eq!(csv.matches("\r\n").count(), 1);
        assert!(csv.ends_with("\r\n"));
        assert!(csv.contains("\"Doe, Jane <jane@example.com>\""));
        assert!(csv.contains("\"\"quoted\"\""));
        assert!(!row.json().contains('\n'));
    }

    #[test]
    fn garbage_and_huge_headers_give_bounded_rows() {
        let row = MessageRow::new(1, 0, &[0xff; 10], 10, &[0; 32], &[0; 32]);
        assert_eq!(row.size, 10);
        let mut raw = b"Subject: ".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 100_000));
        raw.extend_from_slice(b"\r\n\r\n");
        let row = MessageRow::new(1, 0, &raw, raw.len() as u64, &[0; 32], &[0; 32]);
        assert!(row.subject.len() <= MAX_TEXT_COLUMN);
        assert!(row.subject.ends_with('…'));
    }
}
