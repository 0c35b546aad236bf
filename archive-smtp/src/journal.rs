//! Journaling styles: turning what the relay sent into what the archive records.
//!
//! Which style a message gets is decided by where it came from ([`style_for`] and the
//! configured `[[intake.journal_source]]`s), never by what it looks like: a message that merely
//! looks like a journal report, or is addressed to an encoded archive address, from anyone
//! else is archived as the plain copy it is.
//!
//! - plain copy (Postfix `always_bcc`): the SMTP envelope as received;
//! - recipient-encoded copy (Postfix `recipient_bcc_maps` mapping `bob@example.org` to
//!   `archive+to=bob=example.org@vault.example`, `sender_bcc_maps` mapping
//!   `alice@example.com` to `archive+from=alice=example.com@vault.example`): the original
//!   recipients are decoded from the address extensions, and a sender's encoding is known
//!   for what it is;
//! - Exchange / Microsoft 365 journal reports: the report's Sender/To/Cc/Bcc/Recipient lines
//!   are the envelope and the attached original message is archived byte-exact; the report
//!   itself is archived too.

use std::net::IpAddr;

use archive_core::Envelope;
use mail_parser::{MessageParser, PartType};

use crate::config::{JournalConfig, JournalSource, JournalStyle};
use crate::Protocol;

/// What is known about a transaction's origin when its data is complete: the facts journal
/// sources are matched on.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// The listener it arrived on.
    pub listener: Protocol,
    /// The client's address.
    pub client: IpAddr,
    /// The relay user the session authenticated as, if any.
    pub auth_user: Option<&'a str>,
    /// The envelope sender (`""` for `<>`).
    pub mail_from: &'a str,
}

/// The style of the first source whose every given condition holds; plain if none does.
pub fn style_for(sources: &[JournalSource], origin: &Origin<'_>) -> JournalStyle {
    let client = canonical_ip(origin.client);
    sources
        .iter()
        .find(|s| {
            s.listener.is_none_or(|l| l == origin.listener)
                && (s.clients.is_empty() || s.clients.iter().any(|n| n.contains(&client)))
                && s.auth_user.as_deref().is_none_or(|want| {
                    origin
                        .auth_user
                        .is_some_and(|have| have.eq_ignore_ascii_case(want.trim()))
                })
                && (s.mail_from.is_empty()
                    || s.mail_from
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(origin.mail_from)))
        })
        .map_or(JournalStyle::Plain, |s| s.style)
}

/// An IPv4 client on a dual-stack listener arrives as `::ffff:a.b.c.d`; IPv4 networks in the
/// configuration must still match it.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Which envelope role an encoded archive address stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodedRole {
    /// `archive+to=alice=example.com@…` (Postfix `recipient_bcc_maps`), and the unmarked
    /// `archive+alice=example.com@…` of configurations that encode only recipients.
    Recipient,
    /// `archive+from=alice=example.com@…` (Postfix `sender_bcc_maps`): the envelope sender,
    /// which the copy's own MAIL FROM already carries. Never a recipient.
    Sender,
}

/// The role marker and original address encoded in `rcpt`'s extension, if it has one:
/// `archive+to=alice=example.com@vault.example` → (recipient, `alice@example.com`),
/// `archive+from=alice=example.com@vault.example` → (sender, `alice@example.com`).
///
/// The markers are `to` and `from` followed by the domain separator. An extension without a
/// marker is a recipient, as configurations that map both Postfix tables to one encoding
/// always meant it (they cannot tell a sender from a recipient; docs/OPERATIONS.md).
pub fn decode_address(rcpt: &str, config: &JournalConfig) -> Option<(EncodedRole, String)> {
    let (local, _domain) = rcpt.rsplit_once('@')?;
    let (_base, encoded) = local.split_once(config.recipient_delimiter)?;
    let (role, encoded) = match encoded.split_once(config.domain_separator) {
        Some((marker, rest))
            if marker.eq_ignore_ascii_case("to") && rest.contains(config.domain_separator) =>
        {
            (EncodedRole::Recipient, rest)
        }
        Some((marker, rest))
            if marker.eq_ignore_ascii_case("from") && rest.contains(config.domain_separator) =>
        {
            (EncodedRole::Sender, rest)
        }
        _ => (EncodedRole::Recipient, encoded),
    };
    let (user, domain) = encoded.rsplit_once(config.domain_separator)?;
    if user.is_empty() || domain.is_empty() || !domain.contains('.') && domain != "localhost" {
        return None;
    }
    Some((role, format!("{user}@{domain}")))
}

/// The original recipient encoded in `rcpt`'s extension, if it encodes one (a sender
/// encoding is not a recipient): `archive+to=alice=example.com@vault.example` →
/// `alice@example.com`.
pub fn decode_recipient(rcpt: &str, config: &JournalConfig) -> Option<String> {
    match decode_address(rcpt, config)? {
        (EncodedRole::Recipient, address) => Some(address),
        (EncodedRole::Sender, _) => None,
    }
}

/// The address without its `+extension`: what `accept` lists are matched against.
pub fn base_address(rcpt: &str, config: &JournalConfig) -> String {
    match rcpt.rsplit_once('@') {
        Some((local, domain)) => {
            let base = local.split(config.recipient_delimiter).next().unwrap_or(local);
            format!("{base}@{domain}").to_lowercase()
        }
        None => rcpt.to_lowercase(),
    }
}

/// Fills `original_recipients` from the recipient encodings among the archive addresses (if
/// any). Sender encodings (`archive+from=…`) are left out: the copy's MAIL FROM is the
/// sender, and a sender is no recipient of their own mail (they would find it in their
/// INBOX, and listed as a blind copy).
pub fn decode_envelope(envelope: &mut Envelope, config: &JournalConfig) {
    let mut decoded: Vec<Vec<u8>> = Vec::new();
    for r in &envelope.rcpt_to {
        if let Some(address) = decode_recipient(&String::from_utf8_lossy(&r.address), config) {
            let address = address.into_bytes();
            if !decoded.contains(&address) {
                decoded.push(address);
            }
        }
    }
    if !decoded.is_empty() {
        envelope.original_recipients = decoded;
    }
}

/// An Exchange journal report, unwrapped.
#[derive(Debug, PartialEq, Eq)]
pub struct JournalReport {
    /// The `Sender:` line.
    pub sender: String,
    /// Every address of the `To:`, `Cc:`, `Bcc:` and `Recipient:` lines, in order, once each.
    pub recipients: Vec<String>,
    /// The attached original message, byte-exact.
    pub original: Vec<u8>,
}

/// Unwraps an Exchange / Microsoft 365 journal report (it carries `X-MS-Journal-Report`);
/// `None` for any other message, or a report without an attached message.
pub fn unwrap_exchange_report(raw: &[u8]) -> Option<JournalReport> {
    if !has_journal_report_header(raw) {
        return None; // the common case: no full MIME parse on the intake path
    }
    let message = MessageParser::new().parse(raw)?;
    message.header("X-MS-Journal-Report")?;
    let mut lines = None;
    let mut original = None;
    for part in message.parts.iter().skip(1) {
        match &part.body {
            PartType::Text(text) if lines.is_none() => lines = Some(text.to_string()),
            PartType::Message(inner) if original.is_none() => original = Some(inner.raw_message().to_vec()),
            _ => {}
        }
    }
    let original = original?;
    let mut sender = String::new();
    let mut recipients: Vec<String> = Vec::new();
    for line in lines.unwrap_or_default().lines() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        // "To: bob@example.com, Forwarded: carol@example.com" — the first address is the one.
        let address = value.split(',').next().unwrap_or("").trim().to_string();
        if address.is_empty() {
            continue;
        }
        match field.trim().to_ascii_lowercase().as_str() {
            "sender" => sender = address,
            "to" | "cc" | "bcc" | "recipient"
                if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&address)) =>
            {
                recipients.push(address)
            }
            _ => {}
        }
    }
    Some(JournalReport {
        sender,
        recipients,
        original,
    })
}

/// Whether the header block (up to the first empty line) has an `X-MS-Journal-Report` field.
fn has_journal_report_header(raw: &[u8]) -> bool {
    const FIELD: &[u8] = b"x-ms-journal-report:";
    let mut at_line_start = true;
    for (i, &b) in raw.iter().enumerate() {
        if at_line_start {
            if b == b'\r' || b == b'\n' {
                return false; // the empty line ends the header block
            }
            if raw.len() - i >= FIELD.len() && raw[i..i + FIELD.len()].eq_ignore_ascii_case(FIELD) {
                return true;
            }
        }
        at_line_start = b == b'\n';
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(style: JournalStyle) -> JournalSource {
        JournalSource {
            style,
            listener: None,
            clients: Vec::new(),
            auth_user: None,
            mail_from: Vec::new(),
        }
    }

    #[test]
    fn a_style_needs_every_condition_of_a_source_and_defaults_to_plain() {
        let exchange = JournalSource {
            clients: vec!["192.0.2.0/24".parse().unwrap()],
            mail_from: vec!["journal@contoso.example".into()],
            ..source(JournalStyle::Exchange)
        };
        let encoded = JournalSource {
            listener: Some(Protocol::Lmtp),
            auth_user: Some("Postfix".into()),
            ..source(JournalStyle::RecipientEncoded)
        };
        let sources = [exchange, encoded];
        let origin = Origin {
            listener: Protocol::Smtp,
            client: "::ffff:192.0.2.9".parse().unwrap(),
            auth_user: None,
            mail_from: "Journal@Contoso.example",
        };
        assert_eq!(style_for(&sources, &origin), JournalStyle::Exchange);
        let forged_sender = Origin {
            client: "198.51.100.1".parse().unwrap(),
            ..origin
        };
        assert_eq!(style_for(&sources, &forged_sender), JournalStyle::Plain);
        let other_sender = Origin {
            mail_from: "mallory@contoso.example",
            ..origin
        };
        assert_eq!(style_for(&sources, &other_sender), JournalStyle::Plain);
        let postfix = Origin {
            listener: Protocol::Lmtp,
            client: "127.0.0.1".parse().unwrap(),
            auth_user: Some("postfix"),
            mail_from: "",
        };
        assert_eq!(style_for(&sources, &postfix), JournalStyle::RecipientEncoded);
        let unauthenticated = Origin {
            auth_user: None,
            ..postfix
        };
        assert_eq!(style_for(&sources, &unauthenticated), JournalStyle::Plain);
        assert_eq!(style_for(&[], &postfix), JournalStyle::Plain);
    }

    #[test]
    fn recipient_encoding_round_trips_postfix_style() {
        let c = JournalConfig::default();
        assert_eq!(
            decode_recipient("archive+alice=example.com@vault.example", &c).as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            decode_recipient("archive+first.last=sub.example.org@vault.example", &c).as_deref(),
            Some("first.last@sub.example.org")
        );
        assert_eq!(decode_recipient("archive@vault.example", &c), None);
        assert_eq!(decode_recipient("archive+tag@vault.example", &c), None);
        assert_eq!(
            base_address("Archive+x=y.z@Vault.example", &c),
            "archive@vault.example"
        );
        let c = JournalConfig {
            recipient_delimiter: '-',
            domain_separator: '#',
        };
        assert_eq!(
            decode_recipient("journal-bob#example.net@vault", &c).as_deref(),
            Some("bob@example.net")
        );
    }

    #[test]
    fn sender_and_recipient_encodings_decode_to_their_roles() {
        let c = JournalConfig::default();
        let decode = |a: &str| decode_address(a, &c);
        assert_eq!(
            decode("archive+to=bob=example.org@vault.example"),
            Some((EncodedRole::Recipient, "bob@example.org".into()))
        );
        assert_eq!(
            decode("archive+From=alice=example.com@vault.example"),
            Some((EncodedRole::Sender, "alice@example.com".into()))
        );
        // Unmarked: a recipient, as before there were markers.
        assert_eq!(
            decode("archive+bob=example.org@vault.example"),
            Some((EncodedRole::Recipient, "bob@example.org".into()))
        );
        // A local part that is a marker's name, unmarked, is still that local part.
        assert_eq!(
            decode("archive+to=example.org@vault.example"),
            Some((EncodedRole::Recipient, "to@example.org".into()))
        );
        assert_eq!(
            decode("archive+from=example.org@vault.example"),
            Some((EncodedRole::Recipient, "from@example.org".into()))
        );
        assert_eq!(decode("archive+from=@vault.example"), None);
        assert_eq!(decode("archive+from=x=@vault.example"), None);
        assert_eq!(
            decode_recipient("archive+from=alice=example.com@vault.example", &c),
            None
        );

        let mut envelope = Envelope::lmtp(
            "alice@example.com",
            &[
                "archive+from=alice=example.com@vault.example",
                "archive+to=bob=example.org@vault.example",
                "archive+to=dave=hidden.example@vault.example",
            ],
        );
        decode_envelope(&mut envelope, &c);
        assert_eq!(
            envelope.original_recipients,
            [b"bob@example.org".to_vec(), b"dave@hidden.example".to_vec()]
        );
        // Mail to oneself: sender and recipient.
        let mut to_self = Envelope::lmtp(
            "alice@example.com",
            &[
                "archive+from=alice=example.com@vault.example",
                "archive+to=alice=example.com@vault.example",
            ],
        );
        decode_envelope(&mut to_self, &c);
        assert_eq!(to_self.original_recipients, [b"alice@example.com".to_vec()]);
    }

    #[test]
    fn only_the_header_block_marks_a_journal_report() {
        assert!(has_journal_report_header(
            b"From: a\r\nX-MS-Journal-Report:\r\n\r\nbody"
        ));
        assert!(has_journal_report_header(b"x-ms-journal-report: yes\n\n"));
        assert!(!has_journal_report_header(
            b"From: a\r\n\r\nX-MS-Journal-Report: in the body\r\n"
        ));
        assert!(!has_journal_report_header(
            b"Subject: X-MS-Journal-Report:\r\n\r\n"
        ));
    }
}
