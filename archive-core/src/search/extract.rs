//! What the search index learns from a message's bytes, via mail-parser. Parsing never
//! fails the indexing of a message: whatever does not parse is simply absent, and the
//! message is still indexed by its envelope, receive time and size.
//!
//! The indexer parses every message that arrives, so whatever mail-parser cannot do in
//! bounded stack and memory must not reach it: see [`has_encoded_message_part`] and
//! [`drop_flat`].

use std::sync::LazyLock;

use mail_parser::decoders::html::html_to_text;
use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

/// Most body text indexed per message (bodies and text attachments together); the rest of a
/// huge text part is not searchable. Keeps one pathological message from stalling indexing.
pub const MAX_TEXT_BYTES: usize = 2 << 20;

/// A header mailbox: display name and address (lower-cased), either may be missing.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mailbox {
    /// Display name, decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address, lower-cased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl std::fmt::Display for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.name, &self.address) {
            (Some(n), Some(a)) => write!(f, "{n} <{a}>"),
            (Some(n), None) => write!(f, "{n}"),
            (None, Some(a)) => write!(f, "{a}"),
            (None, None) => Ok(()),
        }
    }
}

/// An attachment: its file name (if any) and MIME type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachment {
    /// File name from Content-Disposition / Content-Type, decoded.
    pub name: Option<String>,
    /// `type/subtype`, lower-cased.
    pub mime: String,
}

/// The searchable content of one message.
#[derive(Clone, Debug, Default)]
pub struct MailFields {
    /// Whether mail-parser made anything of the bytes.
    pub parsed: bool,
    /// Subject, decoded.
    pub subject: String,
    /// Body text (text/plain, HTML converted to text) and the text of text/* attachments.
    pub body: String,
    /// Every header field as a `name: value` line (`header_text`), for IMAP TEXT.
    pub header: String,
    /// From (and Sender).
    pub from: Vec<Mailbox>,
    /// To.
    pub to: Vec<Mailbox>,
    /// Cc.
    pub cc: Vec<Mailbox>,
    /// Bcc (present in a sender's copy).
    pub bcc: Vec<Mailbox>,
    /// Reply-To.
    pub reply_to: Vec<Mailbox>,
    /// Date header as Unix seconds, if present and sane.
    pub date: Option<i64>,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// In-Reply-To and References ids, without angle brackets.
    pub references: Vec<String>,
    /// List-Id header, raw text.
    pub list_id: Option<String>,
    /// Attachments (parts that are not the message body).
    pub attachments: Vec<Attachment>,
}

impl MailFields {
    /// Extracts the fields of a raw message.
    pub fn extract(raw: &[u8]) -> MailFields {
        let parser = MessageParser::default();
        let parsed = if has_encoded_message_part(raw) {
            // Its header is what can be indexed safely (see `has_encoded_message_part`).
            parser.parse_headers(raw)
        } else {
            parser.parse(raw)
        };
        match parsed {
            Some(msg) => {
                let mut fields = from_message(&msg);
                drop_flat(msg);
                fields.header = super::header_text::text(raw);
                fields
            }
            None => MailFields::default(),
        }
    }
}

/// The MIME structure only: Content-Type parsed, Content-Transfer-Encoding located but not
/// parsed, so nothing is decoded (and nothing decoded is parsed).
static STRUCTURE: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .header_content_type(HeaderName::ContentType)
        .ignore_header(HeaderName::ContentTransferEncoding)
        .default_header_ignore()
});

/// Whether `raw` has a message/rfc822 (or message/global, or digest) part with a transfer
/// encoding, which a full parse would decode and parse as a message. mail-parser 0.11 does
/// that recursively, once per message nested in the decoded content, copying the decoded
/// bytes each time: a 180 KB mail overflows a thread's stack (the process aborts), a
/// little more takes gigabytes. RFC 2046 allows no such encoding on message/rfc822, so
/// such mail is indexed by its header alone. Found without decoding: parts and nested
/// messages are walked in a loop.
pub(crate) fn has_encoded_message_part(raw: &[u8]) -> bool {
    let Some(top) = STRUCTURE.parse(raw) else {
        return false;
    };
    let mut found = false;
    let mut pending: Vec<&Message<'_>> = vec![&top];
    'walk: while let Some(msg) = pending.pop() {
        for part in &msg.parts {
            let message_like = match &part.body {
                PartType::Message(inner) => {
                    pending.push(inner);
                    true
                }
                // A digest's part without Content-Type is a message; unencoded, one that
                // did not parse as one.
                _ => part.content_type().map_or(part.is_encoding_problem, |c| {
                    c.ctype().eq_ignore_ascii_case("message")
                }),
            };
            if message_like && is_encoded(raw, part) {
                found = true;
                break 'walk;
            }
        }
    }
    drop_flat(top);
    found
}

/// Whether a part names a Content-Transfer-Encoding other than an identity one (anything
/// mail-parser might decode counts).
fn is_encoded(raw: &[u8], part: &mail_parser::MessagePart<'_>) -> bool {
    part.headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentTransferEncoding)
        .any(|h| {
            let value = raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            let value = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
            !matches!(value.as_str(), "" | "7bit" | "8bit" | "binary")
        })
}

/// The Date header of a parsed message (parsed with its Date as a date, as
/// `MessageParser::default()` does) if the index dates the message by it: valid, and in
/// 1970..=9999. Other years are broken headers, and the receive time is a better date.
/// Front doors that compare dates as written (IMAP SENTON) use this to agree with the index.
pub fn usable_date(msg: &Message<'_>) -> Option<mail_parser::DateTime> {
    msg.date()
        .filter(|d| d.is_valid() && (1970..=9999).contains(&d.year))
        .cloned()
}

/// The body text the index holds for a raw message ([`MailFields::body`]: text parts, HTML
/// as text, text attachments, forwarded messages; decoded; at most [`MAX_TEXT_BYTES`]).
/// For front doors that must look for what the index has no words for (a term of
/// punctuation only). Parsed as the indexer parses; mail-parser's debug assertions on
/// some malformed mail are caught, as there.
pub fn body_text(raw: &[u8]) -> String {
    std::panic::catch_unwind(|| MailFields::extract(raw).body).unwrap_or_default()
}

/// Drops a parsed message without recursion: mail-parser's tree drops recursively, once
/// per nested message/rfc822, and the sender chooses how many there are. Every holder of a
/// parsed message from the network drops it through here (the indexer, IMAP's MIME).
pub fn drop_flat(message: Message<'_>) {
    let mut pending = vec![message];
    while let Some(mut m) = pending.pop() {
        for part in &mut m.parts {
            if let PartType::Message(inner) = std::mem::take(&mut part.body) {
                pending.push(inner);
            }
        }
    }
}

fn from_message(msg: &Message<'_>) -> MailFields {
    let mut f = MailFields {
        parsed: true,
        subject: msg.subject().unwrap_or_default().to_string(),
        ..MailFields::default()
    };
    add_mailboxes(&mut f.from, msg.from());
    add_mailboxes(&mut f.from, msg.sender());
    for a in msg.all_to() {
        add_mailboxes(&mut f.to, Some(a));
    }
    for a in msg.all_cc() {
        add_mailboxes(&mut f.cc, Some(a));
    }
    for a in msg.all_bcc() {
        add_mailboxes(&mut f.bcc, Some(a));
    }
    add_mailboxes(&mut f.reply_to, msg.reply_to());
    f.date = usable_date(msg).map(|d| d.to_timestamp());
    f.message_id = msg.message_id().map(clean_id).filter(|s| !s.is_empty());
    for v in [msg.in_reply_to(), msg.references()] {
        add_ids(&mut f.references, v);
    }
    f.list_id = msg.header_raw("List-Id").map(|s| s.trim().to_string());

    let mut body = String::new();
    for i in 0..msg.text_body_count() {
        if let Some(text) = msg.body_text(i) {
            push_text(&mut body, &text);
        }
    }
    for part in msg.attachments() {
        let mime = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_ascii_lowercase();
        f.attachments.push(Attachment {
            name: part.attachment_name().map(str::to_string),
            mime,
        });
        match &part.body {
            PartType::Text(text) => push_text(&mut body, text),
            PartType::Html(html) => push_text(&mut body, &html_to_text(html)),
            // A forwarded message: its subject and body are text of this one.
            PartType::Message(inner) => {
                if let Some(s) = inner.subject() {
                    push_text(&mut body, s);
                }
                for i in 0..inner.text_body_count() {
                    if let Some(text) = inner.body_text(i) {
                        push_text(&mut body, &text);
                    }
                }
            }
            _ => {}
        }
    }
    f.body = body;
    f
}

/// Appends `text` on a new line, up to [`MAX_TEXT_BYTES`] in all (cut at a char boundary).
fn push_text(body: &mut String, text: &str) {
    let room = MAX_TEXT_BYTES.saturating_sub(body.len());
    if room == 0 {
        return;
    }
    if !body.is_empty() {
        body.push('\n');
    }
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    body.push_str(&text[..end]);
}

fn add_mailboxes(out: &mut Vec<Mailbox>, address: Option<&Address<'_>>) {
    for a in address.into_iter().flat_map(|a| a.iter()) {
        let name = a
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let address = a
            .address
            .as_deref()
            .map(normalize_address)
            .filter(|s| !s.is_empty());
        if name.is_some() || address.is_some() {
            out.push(Mailbox { name, address });
        }
    }
}

fn add_ids(out: &mut Vec<String>, value: &HeaderValue<'_>) {
    match value {
        HeaderValue::Text(t) => out.push(clean_id(t)),
        HeaderValue::TextList(list) => out.extend(list.iter().map(|t| clean_id(t))),
        _ => {}
    }
    out.retain(|s| !s.is_empty());
}

/// A Message-ID as indexed: no angle brackets or surrounding space, lower-cased.
pub fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

/// An address as indexed: no angle brackets or surrounding space, lower-cased.
pub fn normalize_address(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

/// A domain as queries and the index compare it: no leading `@`, no trailing dot, lower case.
pub fn normalize_domain(domain: &str) -> String {
    domain
        .trim()
        .trim_start_matches('@')
        .trim_end_matches('.')
        .to_lowercase()
}

/// Longest sender domain indexed (a DNS name has at most 253 characters).
const MAX_DOMAIN_BYTES: usize = 255;

/// The sender's domain: of the first From (else Sender) address that has one.
pub fn sender_domain(from: &[Mailbox]) -> Option<String> {
    from.iter()
        .filter_map(|m| m.address.as_deref())
        .filter_map(|a| a.rsplit_once('@'))
        .map(|(_, d)| normalize_domain(d))
        .find(|d| !d.is_empty())
        .filter(|d| d.len() <= MAX_DOMAIN_BYTES)
}

/// The domain of an address and its parent domains down to two labels:
/// `a@mail.example.com` → `mail.example.com`, `example.com`.
pub fn domains(address: &str) -> Vec<String> {
    let Some((_, domain)) = address.rsplit_once('@') else {
        return Vec::new();
    };
    let domain = domain.trim_end_matches('.');
    if domain.is_empty() {
        return Vec::new();
    }
    let mut out = vec![domain.to_string()];
    let mut rest = domain;
    while let Some((_, parent)) = rest.split_once('.') {
        if !parent.contains('.') {
            break;
        }
        out.push(parent.to_string());
        rest = parent;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_include_parents_but_not_bare_tlds() {
        assert_eq!(domains("a@mail.example.com"), ["mail.example.com", "example.com"]);
        assert_eq!(domains("a@example.com"), ["example.com"]);
        assert_eq!(domains("a@localhost"), ["localhost"]);
        assert!(domains("no-at-sign").is_empty());
    }

    #[test]
    fn extracts_headers_body_and_attachments() {
        let raw = b"From: \"Hans M\xc3\xbcller\" <Hans@Example.COM>\r\n\
To: a@x.org, B <b@y.org>\r\nCc: c@z.org\r\nSubject: =?utf-8?q?Rechnung_M=C3=A4rz?=\r\n\
Date: Mon, 4 Mar 2024 10:00:00 +0100\r\nMessage-ID: <ID1@Example.com>\r\n\
In-Reply-To: <p@x>\r\nReferences: <r@x> <p@x>\r\nList-Id: Team <team.lists.example.com>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/html\r\n\r\n<p>Hallo <b>Welt</b></p><script>x()</script>\r\n\
--b\r\nContent-Type: application/pdf; name=\"rechnung.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n\
--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=posten.csv\r\n\r\nbetrag;42\r\n\
--b--\r\n";
        let f = MailFields::extract(raw);
        assert!(f.parsed);
        assert_eq!(f.subject, "Rechnung März");
        assert_eq!(f.from[0].name.as_deref(), Some("Hans Müller"));
        assert_eq!(f.from[0].address.as_deref(), Some("hans@example.com"));
        assert_eq!(f.to.len(), 2);
        assert_eq!(f.cc[0].address.as_deref(), Some("c@z.org"));
        assert_eq!(f.date, Some(1709542800));
        assert_eq!(f.message_id.as_deref(), Some("id1@example.com"));
        assert_eq!(f.references, ["p@x", "r@x", "p@x"]);
        assert!(f.list_id.unwrap().contains("team.lists.example.com"));
        assert!(f.body.contains("Hallo") && f.body.contains("Welt"), "{}", f.body);
        assert!(!f.body.contains("x()"), "{}", f.body);
        assert!(f.body.contains("betrag;42"), "{}", f.body);
        let names: Vec<_> = f
            .attachments
            .iter()
            .map(|a| a.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["rechnung.pdf", "posten.csv"]);
        assert_eq!(f.attachments[0].mime, "application/pdf");
    }

    #[test]
    fn garbage_yields_no_fields_but_no_failure() {
        let f = MailFields::extract(&(0..=255u8).collect::<Vec<_>>());
        assert!(f.subject.is_empty() && f.from.is_empty() && f.date.is_none());
    }

    #[test]
    fn body_text_is_capped() {
        let mut body = String::new();
        push_text(&mut body, &"ü".repeat(MAX_TEXT_BYTES));
        assert!(body.len() <= MAX_TEXT_BYTES);
        push_text(&mut body, "more");
        assert!(!body.contains("more"));
    }

    /// Runs `f` on a thread with a 2 MiB stack (the indexer's and a tokio thread's): a
    /// recursion on what the sender nested aborts the test process instead of passing.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no panic");
    }

    /// `depth` message/rfc822 parts, each inside the one before.
    fn nested_messages(depth: usize) -> String {
        let mut s = String::new();
        for _ in 0..depth {
            s.push_str("Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n");
        }
        s.push_str("\r\nleaf\r\n");
        s
    }

    #[test]
    fn an_encoded_message_nesting_deeply_is_indexed_by_its_header() {
        on_small_stack(|| {
            use base64::Engine;
            let inner = nested_messages(20_000);
            let encoded = base64::engine::general_purpose::STANDARD.encode(inner);
            let mut raw = String::from(
                "From: a@example.com\r\nSubject: outer\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n\
--x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--x\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            );
            for line in encoded.as_bytes().chunks(76) {
                raw.push_str(std::str::from_utf8(line).unwrap());
                raw.push_str("\r\n");
            }
            raw.push_str("--x--\r\n");
            let f = MailFields::extract(raw.as_bytes());
            assert_eq!(f.subject, "outer");
            assert_eq!(f.from[0].address.as_deref(), Some("a@example.com"));
        });
    }

    #[test]
    fn deeply_nested_messages_are_indexed_and_dropped_without_recursion() {
        on_small_stack(|| {
            let raw = format!(
                "From: a@example.com\r\nSubject: outer\r\n{}",
                nested_messages(200_000)
            );
            let f = MailFields::extract(raw.as_bytes());
            assert_eq!(f.subject, "outer");
            assert!(f.body.contains("inner"), "{}", &f.body[..f.body.len().min(100)]);
        });
    }

    /// The message that made IMAP's BODYSTRUCTURE describe millions of parts
    /// (fuzz/regressions/mime_structure): the indexer reads each part once.
    #[test]
    fn overlapping_nested_messages_are_indexed_in_bounded_work() {
        on_small_stack(|| {
            let raw = include_bytes!("../../../fuzz/regressions/mime_structure/overlapping-nested-messages");
            let f = MailFields::extract(raw);
            assert!(
                f.body.len() <= 64 * raw.len(),
                "{} bytes of body text",
                f.body.len()
            );
        });
    }

    #[test]
    fn ordinary_encodings_are_still_decoded() {
        let raw = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: forwarded\r\n\r\nquoted-printable =3D fine\r\n--b--\r\n";
        assert!(!has_encoded_message_part(raw));
        let f = MailFields::extract(raw);
        assert!(f.body.contains("hello world"), "{}", f.body);
        assert!(f.body.contains("forwarded"), "{}", f.body);
    }
}
