//! The header fields SORT and THREAD order by (RFC 5256, RFC 5957), read from the header
//! block only: bodies are never parsed for ordering.

use std::sync::LazyLock;

use mail_parser::{HeaderName, HeaderValue, Message, MessageParser};

use super::address::{self, decoded, Entry, MISSING_DOMAIN, MISSING_MAILBOX};

/// The fields below, parsed; every other field skipped unparsed (`Received` chains cost
/// more than all of these together). Address fields are only located: they are read as
/// ENVELOPE reads them (`address`).
static SORT_PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .header_date(HeaderName::Date)
        .header_text(HeaderName::Subject)
        .header_id(HeaderName::MessageId)
        .header_id(HeaderName::References)
        .header_id(HeaderName::InReplyTo)
        .default_header_ignore()
});

/// What SORT and THREAD need to know about one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SortFields {
    /// Receive time (INTERNALDATE), microseconds since the epoch.
    pub received_us: i64,
    /// Size of the stored bytes (RFC822.SIZE).
    pub size: u64,
    /// The Date header in UTC, or the receive time if it has none or it cannot be read
    /// (RFC 5256 "sent date"), microseconds since the epoch.
    pub sent_us: i64,
    /// Base subject (RFC 5256 §2.1), case-folded for comparison.
    pub subject: String,
    /// Extracting the base subject removed a reply or forward marker.
    pub is_reply: bool,
    /// addr-mailbox (local part) of the first From/To/Cc address as ENVELOPE lists them,
    /// case-folded; a group's name if the field starts with a group; empty if none.
    pub from: String,
    pub to: String,
    pub cc: String,
    /// RFC 5957 display name of the first From/To address (else its addr-spec; a group's
    /// name), decoded and case-folded.
    pub display_from: String,
    pub display_to: String,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// References, or else the first In-Reply-To, oldest first, without angle brackets.
    pub references: Vec<String>,
}

impl SortFields {
    /// Reads the fields from the header block of `raw`; never fails (missing fields are
    /// empty, a missing or unreadable date falls back to the receive time).
    pub fn parse(raw: &[u8], received_us: i64, size: u64) -> SortFields {
        let mut f = SortFields {
            received_us,
            size,
            sent_us: received_us,
            ..SortFields::default()
        };
        let block = header_block(raw);
        let Some(msg) = SORT_PARSER.parse_headers(block) else {
            return f;
        };
        if msg.parts.is_empty() {
            return f;
        }
        if let Some(d) = msg.date().filter(|d| d.is_valid()) {
            f.sent_us = d.to_timestamp().saturating_mul(1_000_000);
        }
        let (subject, is_reply) = base_subject(msg.subject().unwrap_or(""));
        f.subject = subject.to_uppercase();
        f.is_reply = is_reply;
        let first =
            |name: &str| raw_value(&msg, block, name).and_then(|v| address::parse(&v).into_iter().next());
        let (from, to, cc) = (first("From"), first("To"), first("Cc"));
        f.from = mailbox_of(from.as_ref());
        f.to = mailbox_of(to.as_ref());
        f.cc = mailbox_of(cc.as_ref());
        f.display_from = display_of(from.as_ref());
        f.display_to = display_of(to.as_ref());
        f.message_id = msg
            .message_id()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty());
        f.references = ids(msg.references());
        if f.references.is_empty() {
            f.references = ids(msg.in_reply_to()).into_iter().take(1).collect();
        }
        f
    }
}

/// The header block of a message, blank line included (the whole input if it has none).
fn header_block(raw: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\n' {
            let rest = &raw[i + 1..];
            if rest.starts_with(b"\r\n") {
                return &raw[..i + 3];
            }
            if rest.starts_with(b"\n") {
                return &raw[..i + 2];
            }
        }
        i += 1;
    }
    raw
}

/// The unfolded raw value of the first field `name` of `msg`, parsed from `block`.
fn raw_value(msg: &Message<'_>, block: &[u8], name: &str) -> Option<Vec<u8>> {
    let h = msg
        .parts
        .first()?
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let value = block.get(h.offset_start as usize..h.offset_end as usize)?;
    Some(
        value
            .iter()
            .copied()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect(),
    )
}

/// RFC 5256 §2.2: the addr-mailbox of the first address. When the field starts with a
/// group, that is the group's start marker, whose mailbox is the group's name (RFC 3501
/// §7.4.2); Dovecot sorts so too.
fn mailbox_of(first: Option<&Entry>) -> String {
    let mailbox = match first {
        Some(Entry::GroupStart(name)) => name.as_slice(),
        Some(Entry::Mailbox { mailbox, .. }) if mailbox != MISSING_MAILBOX => mailbox,
        _ => b"",
    };
    String::from_utf8_lossy(mailbox).to_uppercase()
}

/// RFC 5957 §3: the decoded display name of the first address, or its addr-spec if it has
/// none; for a group, its name (as Dovecot).
fn display_of(first: Option<&Entry>) -> String {
    let shown = match first {
        Some(Entry::GroupStart(name)) => decoded(name),
        Some(Entry::Mailbox {
            name, mailbox, host, ..
        }) => match name.as_deref().map(decoded).filter(|n| !n.trim().is_empty()) {
            Some(name) => name,
            None => {
                let part = |b: &[u8], missing: &[u8]| {
                    if b == missing {
                        String::new()
                    } else {
                        String::from_utf8_lossy(b).into_owned()
                    }
                };
                let (local, domain) = (part(mailbox, MISSING_MAILBOX), part(host, MISSING_DOMAIN));
                if domain.is_empty() {
                    local
                } else {
                    format!("{local}@{domain}")
                }
            }
        },
        _ => String::new(),
    };
    shown.trim().to_lowercase()
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<&str> = match v {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    list.into_iter()
        .map(|s| s.trim().trim_start_matches('<').trim_end_matches('>').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// RFC 5256 §2.1 base subject of an (already decoded) subject, and whether a reply or
/// forward marker (`Re:`, `Fwd:`, `(fwd)`, `[fwd: …]`) was removed.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) Whitespace runs (tabs, folding) become one space.
    let mut s = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply = false;
    loop {
        // (2) Trailing "(fwd)" and whitespace.
        loop {
            let t = s.trim_end();
            if t.len() >= 5 && t.as_bytes()[t.len() - 5..].eq_ignore_ascii_case(b"(fwd)") {
                s = t[..t.len() - 5].to_string();
                reply = true;
            } else {
                s = t.to_string();
                break;
            }
        }
        // (3)-(5) Leading subj-leader and subj-blob, until nothing changes.
        loop {
            let before = s.len();
            s = s.trim_start().to_string();
            if let Some(rest) = strip_refwd(&s) {
                s = rest.to_string();
                reply = true;
            }
            if let Some(rest) = strip_blob(&s) {
                if !rest.trim().is_empty() {
                    s = rest.to_string();
                }
            }
            if s.len() == before {
                break;
            }
        }
        // (6) "[fwd:" … "]" around the whole subject.
        let b = s.as_bytes();
        if b.len() >= 6 && b[..5].eq_ignore_ascii_case(b"[fwd:") && b[b.len() - 1] == b']' {
            s = s[5..s.len() - 1].to_string();
            reply = true;
            continue;
        }
        return (s, reply);
    }
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP`: what follows one, if `s` starts with one.
fn strip_blob(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find([']', '['])?;
    if rest.as_bytes()[end] != b']' {
        return None;
    }
    Some(rest[end + 1..].trim_start_matches([' ', '\t']))
}

/// `*subj-blob subj-refwd` with `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`:
/// what follows it, if `s` starts with it.
fn strip_refwd(s: &str) -> Option<&str> {
    let mut p = s;
    while let Some(rest) = strip_blob(p) {
        p = rest;
    }
    for marker in ["fwd", "fw", "re"] {
        let Some(head) = p.get(..marker.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(marker) {
            continue;
        }
        let mut q = p[marker.len()..].trim_start_matches([' ', '\t']);
        if let Some(rest) = strip_blob(q) {
            q = rest;
        }
        if let Some(rest) = q.strip_prefix(':') {
            return Some(rest);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> (String, bool) {
        base_subject(s)
    }

    #[test]
    fn base_subject_follows_rfc_5256() {
        assert_eq!(base("Hello"), ("Hello".into(), false));
        assert_eq!(base("Re: Hello"), ("Hello".into(), true));
        assert_eq!(base("RE: re:  Fwd: Hello"), ("Hello".into(), true));
        assert_eq!(base("Re[5]: Hello"), ("Hello".into(), true));
        assert_eq!(base("Fw: Hello (fwd)"), ("Hello".into(), true));
        assert_eq!(base("Hello (FWD) (fwd)  "), ("Hello".into(), true));
        assert_eq!(base("[list] Re: Hello"), ("Hello".into(), true));
        assert_eq!(base("[list] Hello"), ("Hello".into(), false));
        // A blob that is the whole subject stays.
        assert_eq!(base("[list]"), ("[list]".into(), false));
        assert_eq!(base("[Fwd: Re: Hello]"), ("Hello".into(), true));
        assert_eq!(base("  Hello\t\t  world  "), ("Hello world".into(), false));
        assert_eq!(base("Re:"), ("".into(), true));
        assert_eq!(base("Rebate: now"), ("Rebate: now".into(), false));
        assert_eq!(base("Réponse"), ("Réponse".into(), false));
    }

    #[test]
    fn fields_come_from_the_header_block() {
        let raw = b"From: \"Zoe Q\" <zoe@example.org>\r\nTo: bob@example.com\r\n\
Subject: Re: [x] Plans\r\nDate: Tue, 1 Jan 2030 10:00:00 +0100\r\n\
Message-ID: <a@b>\r\nReferences: <r1@b> <r2@b>\r\n\r\nFrom: body@not.header\r\n";
        let f = SortFields::parse(raw, 7, 99);
        assert_eq!(f.from, "ZOE");
        assert_eq!(f.to, "BOB");
        assert_eq!(f.cc, "");
        assert_eq!(f.display_from, "zoe q");
        assert_eq!(f.display_to, "bob@example.com");
        assert_eq!(f.subject, "PLANS");
        assert!(f.is_reply);
        assert_eq!(f.sent_us, 1_893_488_400 * 1_000_000);
        assert_eq!(f.message_id.as_deref(), Some("a@b"));
        assert_eq!(f.references, vec!["r1@b".to_string(), "r2@b".to_string()]);
        // A group's start marker is the first address: its name sorts (RFC 5256 §2.2 on
        // RFC 3501's ENVELOPE; Dovecot), not its first member.
        let groups = SortFields::parse(
            b"From: =?utf-8?q?Z=C3=B6e?= <zoe@x>\r\nTo: zeta: aaa@b;\r\n\
Cc: (c) empty:;, zzz@b\r\n\r\n",
            0,
            0,
        );
        assert_eq!((groups.to.as_str(), groups.cc.as_str()), ("ZETA", "EMPTY"));
        assert_eq!(
            (groups.display_from.as_str(), groups.display_to.as_str()),
            ("zöe", "zeta")
        );
        let none = SortFields::parse(b"Subject: x\r\nIn-Reply-To: <p@q> <z@q>\r\n\r\n", 5, 1);
        assert_eq!(none.sent_us, 5);
        assert_eq!(none.references, vec!["p@q".to_string()]);
    }
}
