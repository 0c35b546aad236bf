//! A message's header as text: every field parsed as unstructured text (RFC 2047 decoded,
//! unfolded, runs of white space as one space), Date as a date. One reading for the index's
//! `header` field and for IMAP's header keys and TEXT (archive-imap's SEARCH scan), so that
//! what the index names as candidates is what the scan then checks.

use std::sync::LazyLock;

use mail_parser::{Header, HeaderName, HeaderValue, Message, MessageParser};

/// Naming Date makes mail-parser parse it as a date and use the default (text) for the rest.
static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .header_date(HeaderName::Date)
        .default_header_text()
});

/// The header of `raw`, parsed as the module says; `None` if mail-parser finds none.
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    PARSER.parse_headers(raw)
}

/// The header fields of a message from [`parse`], in order.
pub fn fields<'a>(msg: &'a Message<'_>) -> &'a [Header<'a>] {
    msg.parts
        .first()
        .map(|p| p.headers.as_slice())
        .unwrap_or_default()
}

/// A field's value as text: decoded and unfolded, or, for Date and what did not parse,
/// as written with its white space runs made one space.
pub fn value(field: &Header<'_>, raw: &[u8]) -> String {
    match &field.value {
        HeaderValue::Text(t) => t.to_string(),
        _ => String::from_utf8_lossy(written(field, raw))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A field's value as written in `raw` (folded, encoded).
pub fn written<'r>(field: &Header<'_>, raw: &'r [u8]) -> &'r [u8] {
    raw.get(field.offset_start as usize..field.offset_end as usize)
        .unwrap_or_default()
}

/// The whole header as `name: value` lines, as TEXT searches it (names lower-cased).
pub fn text(raw: &[u8]) -> String {
    let Some(msg) = parse(raw) else {
        return String::new();
    };
    let mut out = String::new();
    for field in fields(&msg) {
        out.push_str(&field.name.as_str().to_ascii_lowercase());
        out.push_str(": ");
        out.push_str(&value(field, raw));
        out.push('\n');
    }
    out
}
