//! The MIME parts of a stored message, for front doors that list them and hand out one
//! (the web API's message metadata and attachment download). Parsed as the search indexer
//! parses (mail-parser, [`crate::search::drop_parsed_message`]): a message whose nested
//! messages carry a transfer encoding is parsed by its header only and lists no parts (a full
//! parse of such mail is unbounded; see `search::extract`), and a parser panic on malformed
//! mail is caught and lists nothing. The bytes themselves are always available raw.

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// One part of a message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Part {
    /// Position in the message's flat part list (0 is the message itself).
    pub part: usize,
    /// `type/subtype`, lower-cased (`multipart/mixed`, `text/plain`, …).
    pub content_type: String,
    /// The file name, decoded, if the part has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Decoded size in bytes (0 for a multipart container).
    pub size: u64,
    /// Its number among the attachments (1-based, as `attachments/{n}` takes it), if it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<usize>,
}

/// Every part of `raw`, in order; empty if it is not MIME that can be parsed safely.
pub fn parts(raw: &[u8]) -> Vec<Part> {
    parse(raw, None).map(|(parts, _)| parts).unwrap_or_default()
}

/// Attachment `n` (1-based) of `raw`, described and decoded; `None` if there is no such one.
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
                    _ => p.contents().len() as u64,
                };
                if wanted.is_some() && wanted == attachment_of[i] {
                    body = Some(p.contents().to_vec());
                }
                Part {
                    part: i,
                    content_type,
                    name: p.attachment_name().map(str::to_string),
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

    #[test]
    fn garbage_has_no_attachments() {
        assert!(attachment(b"\x00\xff garbage", 1).is_none());
    }
}
