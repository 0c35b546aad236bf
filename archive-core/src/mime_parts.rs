//! The MIME parts of a stored message, for front doors that list them and hand out one
//! (the web API's message metadata and attachment download). Parsed as the search indexer
//! parses (mail-parser, [`crate::search::drop_parsed_message`]): a message whose nested
//! messages carry a transfer encoding is parsed by its header only and lists no parts (a full
//! parse of such mail is unbounded; see `search::extract`), and a parser panic on malformed
//! mail is caught and lists nothing. The bytes themselves are always available raw.

use std::borrow::Cow;

use mail_parser::parsers::MessageStream;
use mail_parser::{Encoding, MessageParser, MessagePart, MimeHeaders, PartType};

/// One part of a message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Part {
    /// Position in the message's flat part list (0 is the message itself).
    pub part: usize,
    /// `type/subtype`, lower-cased (`multipart/mixed`, `text/plain`, …).
    pub content_type: String,
    /// The file name, decoded, if the part has one; without control and invisible formatting
    /// characters (it is shown, and offered as the name to save under).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Size in bytes with the transfer encoding undone: of the bytes a download gives (0 for a
    /// multipart container).
    pub size: u64,
    /// Its number among the attachments (1-based, as `attachments/{n}` takes it), if it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<usize>,
}

/// Every part of `raw`, in order; empty if it is not MIME that can be parsed safely.
pub fn parts(raw: &[u8]) -> Vec<Part> {
    parse(raw, None).map(|(parts, _)| parts).unwrap_or_default()
}

/// Attachment `n` (1-based) of `raw`, described, and its bytes as the sender attached them
/// (transfer encoding undone; a text part in its own charset, not converted); `None` if there
/// is no such one.
pub fn attachment(raw: &[u8], n: usize) -> Option<(Part, Vec<u8>)> {
    let (parts, body) = parse(raw, Some(n))?;
    let part = parts.into_iter().find(|p| p.attachment == Some(n))?;
    Some((part, body?))
}

/// The bodies of a message for display: its plain-text body and its HTML body, each decoded
/// to UTF-8 and cut at `max_bytes` (on a character boundary).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bodies {
    /// The first text/plain body part, if the message has one (never text made from HTML).
    pub text: Option<String>,
    /// The first text/html body part, if the message has one.
    pub html: Option<String>,
    /// Whether either was cut at `max_bytes`.
    pub truncated: bool,
}

/// The text and HTML bodies of `raw`, parsed as [`parts`] parses (nothing for mail that
/// cannot be parsed safely; a message without MIME structure is its text body).
pub fn bodies(raw: &[u8], max_bytes: usize) -> Bodies {
    if crate::search::extract::has_encoded_message_part(raw) {
        return Bodies::default();
    }
    std::panic::catch_unwind(|| {
        let message = MessageParser::default().parse(raw)?;
        let mut out = Bodies::default();
        let truncated = std::cell::Cell::new(false);
        let cut = |text: &str| -> String {
            if text.len() <= max_bytes {
                return text.to_string();
            }
            truncated.set(true);
            out_truncated(text, max_bytes)
        };
        let text = message
            .text_body
            .iter()
            .filter_map(|id| message.parts.get(*id as usize))
            .find_map(|p| match &p.body {
                PartType::Text(t) => Some(cut(t)),
                _ => None,
            });
        let html = message
            .html_body
            .iter()
            .filter_map(|id| message.parts.get(*id as usize))
            .find_map(|p| match &p.body {
                PartType::Html(h) => Some(cut(h)),
                _ => None,
            });
        out.truncated = truncated.get();
        out.text = text;
        out.html = html;
        crate::search::drop_parsed_message(message);
        Some(out)
    })
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn out_truncated(text: &str, max: usize) -> String {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The parts, and the decoded body of attachment `wanted`.
fn parse(raw: &[u8], wanted: Option<usize>) -> Option<(Vec<Part>, Option<Vec<u8>>)> {
    if crate::search::extract::has_encoded_message_part(raw) {
        return None;
    }
    std::panic::catch_unwind(|| {
        let message = MessageParser::default().parse(raw)?;
        let mut attachment_of = vec![None; message.parts.len()];
        for (i, id) in message.attachments.iter().enumerate() {
            if let Some(slot) = attachment_of.get_mut(*id as usize) {
                *slot = Some(i + 1);
            }
        }
        let mut body = None;
        let parts = message
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let content_type = p
                    .content_type()
                    .map(|ct| match ct.subtype() {
                        Some(sub) => format!("{}/{}", ct.ctype(), sub),
                        None => ct.ctype().to_string(),
                    })
                    .unwrap_or_else(|| "text/plain".into())
                    .to_ascii_lowercase();
                let size = match &p.body {
                    PartType::Multipart(_) => 0,
                    _ => as_sent(raw, p).len() as u64,
                };
                if wanted.is_some() && wanted == attachment_of[i] {
                    body = Some(as_sent(raw, p).into_owned());
                }
                Part {
                    part: i,
                    content_type,
                    name: p.attachment_name().and_then(shown_name),
                    size,
                    attachment: attachment_of[i],
                }
            })
            .collect();
        crate::search::drop_parsed_message(message);
        Some((parts, body))
    })
    .ok()
    .flatten()
}

/// A part's body as the sender sent it: its transfer encoding (base64, quoted-printable)
/// undone and nothing else. mail-parser hands text parts out converted to UTF-8 from their
/// charset; a downloaded `text/csv; charset=iso-8859-1` must be the file that was attached,
/// byte for byte, so text parts are decoded again from their raw body, as mail-parser decodes
/// any other part. A body whose transfer encoding is broken (mail-parser then treats it as
/// unencoded) is its raw bytes.
fn as_sent<'a>(raw: &'a [u8], part: &'a MessagePart<'_>) -> Cow<'a, [u8]> {
    if !matches!(part.body, PartType::Text(_) | PartType::Html(_)) {
        return Cow::Borrowed(part.contents());
    }
    let body = raw
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or_default();
    let mut stream = MessageStream::new(body);
    // No boundary: the slice is the body alone.
    let (end, decoded) = match part.encoding {
        Encoding::Base64 => stream.decode_base64_mime(b""),
        Encoding::QuotedPrintable => stream.decode_quoted_printable_mime(b""),
        Encoding::None => return Cow::Borrowed(body),
    };
    if end == usize::MAX {
        Cow::Borrowed(body)
    } else {
        Cow::Owned(decoded.into_owned())
    }
}

/// An attachment's name as it may be shown and offered for saving: without control
/// characters and without the invisible formatting ones (bidirectional overrides such as
/// U+202E, which make `invoice\u{202E}fdp.exe` read as "invoiceexe.pdf"; zero-width
/// characters), at most [`MAX_NAME_CHARS`] characters; `None` when nothing is left.
fn shown_name(name: &str) -> Option<String> {
    let shown: String = name
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .take(MAX_NAME_CHARS)
        .collect();
    let shown = shown.trim();
    (!shown.is_empty()).then(|| shown.to_string())
}

/// Longest attachment name shown (characters): file systems take 255 bytes.
const MAX_NAME_CHARS: usize = 200;

/// Unicode's format characters (general category Cf) that change how text around them reads
/// or hide in it: the bidirectional marks, embeddings, overrides and isolates, zero-width
/// characters, the byte order mark, invisible operators, interlinear annotation marks and
/// tag characters.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x\r\n--b--\r\n";

    #[test]
    fn parts_are_listed_and_an_attachment_is_decoded() {
        let parts = parts(MIXED);
        assert_eq!(parts[0].content_type, "multipart/mixed");
        let pdf = parts.iter().find(|p| p.attachment == Some(1)).unwrap();
        assert_eq!(pdf.name.as_deref(), Some("r.pdf"));
        assert_eq!(pdf.content_type, "application/pdf");
        let (part, bytes) = attachment(MIXED, 1).unwrap();
        assert_eq!(part, *pdf);
        assert_eq!(bytes, b"%PDF-1");
        assert!(attachment(MIXED, 2).is_none());
        assert!(attachment(MIXED, 0).is_none());
    }

    #[test]
    fn bodies_are_text_and_html_apart() {
        let b = bodies(MIXED, 1 << 20);
        assert_eq!(b.text.as_deref().map(str::trim), Some("hello"));
        assert_eq!(b.html, None);
        let html = b"Content-Type: text/html\r\n\r\n<p>hi</p>\r\n";
        let b = bodies(html, 1 << 20);
        assert_eq!(b.text, None);
        assert!(b.html.unwrap().contains("<p>hi</p>"));
        let b = bodies(b"Subject: x\r\n\r\nabcdef\r\n", 3);
        assert_eq!((b.text.as_deref(), b.truncated), (Some("abc"), true));
    }

    /// A message with `file` attached once per transfer encoding, each time as text in a
    /// charset other than UTF-8 and once more as `application/octet-stream`.
    fn latin1_attachments(file: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(file);
        let qp: String = file
            .iter()
            .map(|b| match b {
                b'\r' | b'\n' => (*b as char).to_string(),
                b'!'..=b'<' | b'>'..=b'~' | b' ' => (*b as char).to_string(),
                _ => format!("={b:02X}"),
            })
            .collect();
        let mut m = b"From: a@example.com\r\nSubject: csv\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee files\r\n"
            .to_vec();
        for (ctype, cte, body) in [
            ("text/csv; charset=iso-8859-1", "8bit", file.to_vec()),
            (
                "text/csv; charset=iso-8859-1",
                "quoted-printable",
                qp.into_bytes(),
            ),
            ("text/csv; charset=iso-8859-1", "base64", b64.clone().into_bytes()),
            (
                "text/html; charset=windows-1252",
                "base64",
                b64.clone().into_bytes(),
            ),
            ("text/plain", "base64", b64.clone().into_bytes()),
            ("application/octet-stream", "base64", b64.into_bytes()),
        ] {
            m.extend_from_slice(
                format!(
                    "--b\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\
                     Content-Disposition: attachment; filename=\"f.csv\"\r\n\r\n"
                )
                .as_bytes(),
            );
            m.extend_from_slice(&body);
            m.extend_from_slice(b"\r\n");
        }
        m.extend_from_slice(b"--b--\r\n");
        m
    }

    #[test]
    fn a_text_attachment_downloads_as_the_bytes_attached_not_converted() {
        // Latin-1 é, ü and ß, a byte that is no character in UTF-8, CRLF line ends, no final one.
        let file = b"name;city\r\nRen\xe9;M\xfcnchen\r\nStra\xdfe;\xff\x80";
        let message = latin1_attachments(file);
        let listed = parts(&message);
        for n in 1..=6 {
            let (part, bytes) = attachment(&message, n).unwrap_or_else(|| panic!("attachment {n}"));
            assert_eq!(bytes, file, "attachment {n} ({})", part.content_type);
            let size = listed.iter().find(|p| p.attachment == Some(n)).unwrap().size;
            assert_eq!(size, file.len() as u64, "attachment {n}");
        }
        assert!(attachment(&message, 7).is_none());
    }

    #[test]
    fn a_text_attachment_whose_transfer_encoding_is_broken_is_its_raw_body() {
        let message = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nbody\r\n--b\r\nContent-Type: text/csv\r\n\
Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=x.csv\r\n\r\n\
a,b\xe9;not base64 at all!\r\n--b--\r\n";
        let (_, bytes) = attachment(message, 1).unwrap();
        // mail-parser gives up on the base64 and keeps the body as it is: so does the
        // download, byte for byte (not U+FFFD for the Latin-1 é).
        assert_eq!(bytes, b"a,b\xe9;not base64 at all!");
    }

    #[test]
    fn binary_attachments_are_what_mail_parser_decodes() {
        let message = latin1_attachments(&(0..=255u8).cycle().take(5000).collect::<Vec<_>>());
        let parsed = MessageParser::default().parse(&message).unwrap();
        for p in parsed
            .parts
            .iter()
            .filter(|p| matches!(p.body, PartType::Binary(_)))
        {
            assert_eq!(as_sent(&message, p).as_ref(), p.contents());
        }
    }

    #[test]
    fn names_lose_control_and_invisible_characters() {
        assert_eq!(
            shown_name("invoice\u{202E}fdp.exe").as_deref(),
            Some("invoicefdp.exe")
        );
        assert_eq!(
            shown_name("a\u{200B}b\u{2066}c\u{FEFF}.pdf").as_deref(),
            Some("abc.pdf")
        );
        assert_eq!(
            shown_name("line\r\nContent-Type: x").as_deref(),
            Some("lineContent-Type: x")
        );
        assert_eq!(
            shown_name("Bericht März.pdf").as_deref(),
            Some("Bericht März.pdf")
        );
        assert_eq!(shown_name(""), None);
        assert_eq!(shown_name(" \u{202E}\t "), None);
        assert_eq!(
            shown_name(&"€".repeat(500)).unwrap().chars().count(),
            MAX_NAME_CHARS
        );
    }

    #[test]
    fn garbage_has_no_attachments() {
        assert!(attachment(b"\x00\xff garbage", 1).is_none());
    }
}
