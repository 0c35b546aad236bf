//! A stored message seen the IMAP way: ENVELOPE, BODYSTRUCTURE and the byte ranges of
//! sections, all taken from the stored bytes (DESIGN invariant 2). mail-parser finds the
//! structure and offsets; every string the client sees is sliced from the raw bytes, so
//! encoded words and odd headers go out exactly as they came in.
//!
//! Parsing failures degrade the structure, never the bytes: a message mail-parser cannot
//! read is one `text/plain` part holding everything.
//!
//! Every byte is the sender's, so the structure is bounded: mail-parser is never asked to
//! undo a transfer encoding (mail-parser 0.11 parses the decoded content of a base64 or
//! quoted-printable message/rfc822 part recursively, copying it once per nesting level: a
//! 180 KB mail overflows a thread's stack), its tree of nested messages is taken apart
//! without recursion, and parts nested deeper than [`MAX_MIME_DEPTH`] are leaves, as in
//! Dovecot.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::num::NonZeroU32;
use std::sync::LazyLock;

mod address;
#[cfg(test)]
mod deep_tests;
mod fields;
mod structure;

pub use address::search_form as address_search_form;
#[cfg(test)]
pub use fields::base_subject;
pub use fields::SortFields;

use imap_next::imap_types::core::{IString, Literal, NString, Quoted};
use imap_next::imap_types::IntoStatic;
use mail_parser::{HeaderName, Message, MessageParser, PartType};

/// A message parsed for FETCH, as deeply as what was asked needs: nothing for the whole
/// message's bytes, the header fields for ENVELOPE, the MIME tree for everything else.
/// Each level is parsed once, on first use.
pub struct Parsed<'a> {
    raw: &'a [u8],
    /// The top-level header alone.
    head: OnceCell<Option<Message<'a>>>,
    /// The whole MIME tree.
    tree: OnceCell<Option<Message<'a>>>,
}

/// What ENVELOPE needs parsed: nothing. Every field is only located, and its value sliced
/// from the raw bytes when asked for (addresses are read by `address`). Parsing no more
/// than this is faster, and also more faithful: mail-parser's date parser, for one, can
/// swallow the next field when a Date is malformed.
fn envelope_fields(parser: MessageParser) -> MessageParser {
    // Named explicitly because a parser with no named field ignores its default and parses
    // every field its own way (mail-parser 0.11), Date included.
    [
        HeaderName::From,
        HeaderName::Sender,
        HeaderName::ReplyTo,
        HeaderName::To,
        HeaderName::Cc,
        HeaderName::Bcc,
        HeaderName::Date,
    ]
    .into_iter()
    .fold(parser, MessageParser::ignore_header)
    .default_header_ignore()
}

/// How deep parts nest before the structure stops: a part at this depth (the top-level
/// message is depth 0, each multipart or message/rfc822 adds one) is a leaf,
/// `application/octet-stream` holding its exact bytes, with no parts of its own. Dovecot's
/// limit; real mail nests a handful of levels.
pub const MAX_MIME_DEPTH: usize = 100;

/// How many parts one BODYSTRUCTURE describes at most; once they are described, containers
/// are leaves as at [`MAX_MIME_DEPTH`]. mail-parser can hand back the same bytes as parts of
/// several nested messages, so a 12 KB message was seen to describe millions of parts
/// (gigabytes of structure); real mail has a few dozen.
pub const MAX_MIME_PARTS: usize = 10_000;

/// The whole MIME tree: the envelope fields and what BODYSTRUCTURE reports of each part.
/// Content-Transfer-Encoding is located but not parsed, so mail-parser decodes nothing: it
/// would parse an encoded message/rfc822 part's content recursively (see the module doc),
/// and what is sent comes from the raw bytes anyway (`transfer_encoding`). The price: a
/// base64 or quoted-printable message/rfc822 part, which RFC 2046 forbids, is read as if it
/// were not encoded; it is still a leaf here, but mail-parser reads its base64 lines as a
/// header block, so the parts after it may be misplaced (their bytes stay exact).
static STRUCTURE_PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    envelope_fields(
        MessageParser::new()
            .with_mime_headers()
            .header_comma_separated(HeaderName::ContentLanguage),
    )
    .ignore_header(HeaderName::ContentTransferEncoding)
});

/// The top-level header only.
static HEADER_PARSER: LazyLock<MessageParser> = LazyLock::new(|| envelope_fields(MessageParser::new()));

/// A message inside the stored bytes: the top-level one or an unencoded message/rfc822 part.
#[derive(Clone, Copy)]
struct Msg<'m, 'a> {
    msg: &'m Message<'a>,
    /// Where this message's bytes end in the raw buffer.
    end: usize,
}

/// Where a section path leads.
#[derive(Clone, Copy)]
struct Node<'m, 'a> {
    within: Msg<'m, 'a>,
    id: usize,
    /// How deep the part is (see [`MAX_MIME_DEPTH`]).
    depth: usize,
}

impl Drop for Parsed<'_> {
    /// Nested messages are taken apart one by one: dropping mail-parser's tree as it is
    /// recurses once per message/rfc822 level, and the sender chooses how many there are.
    fn drop(&mut self) {
        if let Some(Some(tree)) = self.tree.take() {
            archive_core::search::drop_parsed_message(tree);
        }
    }
}

impl<'a> Parsed<'a> {
    /// The message in `raw`, parsed when first asked something; never fails.
    pub fn new(raw: &'a [u8]) -> Parsed<'a> {
        Parsed {
            raw,
            head: OnceCell::new(),
            tree: OnceCell::new(),
        }
    }

    /// The top-level message as far as ENVELOPE needs it: from the tree if that was parsed
    /// already, else from a parse of the header fields alone (no MIME tree, no body
    /// decoding, a fraction of the cost).
    fn head(&self) -> Option<Msg<'_, 'a>> {
        let msg = match self.tree.get() {
            Some(tree) => tree.as_ref(),
            // Without a single header field the full parse decides what the message is.
            None => match self.head.get_or_init(|| parse_head(self.raw)) {
                Some(head) => Some(head),
                None => return self.tree(),
            },
        }?;
        Some(Msg {
            msg,
            end: self.raw.len(),
        })
    }

    /// The top-level message with its whole MIME tree.
    fn tree(&self) -> Option<Msg<'_, 'a>> {
        let msg = self
            .tree
            .get_or_init(|| STRUCTURE_PARSER.parse(self.raw).filter(|m| !m.parts.is_empty()))
            .as_ref()?;
        Some(Msg {
            msg,
            end: self.raw.len(),
        })
    }

    fn slice(&self, start: u32, end: usize) -> &'a [u8] {
        let end = end.min(self.raw.len());
        let start = (start as usize).min(end);
        &self.raw[start..end]
    }

    /// The header block of the message at `path` (empty: the whole message), blank line
    /// included; `None` if `path` is not a message.
    pub fn header(&self, path: &[NonZeroU32]) -> Option<&'a [u8]> {
        let m = self.message_at(path)?;
        let root = &m.msg.parts[0];
        Some(self.slice(root.offset_header, root.offset_body as usize))
    }

    /// The body of the message at `path` (RFC 3501 TEXT).
    pub fn text(&self, path: &[NonZeroU32]) -> Option<&'a [u8]> {
        let m = self.message_at(path)?;
        Some(self.slice(m.msg.parts[0].offset_body, m.end))
    }

    /// The MIME header of part `path` (non-empty).
    pub fn mime(&self, path: &[NonZeroU32]) -> Option<&'a [u8]> {
        if path.is_empty() {
            return None;
        }
        let node = self.locate(path)?;
        // For part 1 of a single-part message this is the message header, as servers do.
        let part = &node.within.msg.parts[node.id];
        Some(self.slice(part.offset_header, part.offset_body as usize))
    }

    /// The content of part `path` (empty: the whole message), still transfer-encoded.
    pub fn part(&self, path: &[NonZeroU32]) -> Option<&'a [u8]> {
        if path.is_empty() {
            return Some(self.raw);
        }
        let node = self.locate(path)?;
        let part = &node.within.msg.parts[node.id];
        let end = if node.id == 0 {
            node.within.end
        } else {
            part.offset_end as usize
        };
        Some(self.slice(part.offset_body, end))
    }

    /// The content of part `path` with its transfer encoding undone (RFC 3516 BINARY), or
    /// why it cannot be (the client gets `[UNKNOWN-CTE]` or `[PARSE]`).
    pub fn binary(&self, path: &[NonZeroU32]) -> Option<Result<Cow<'a, [u8]>, Undecodable>> {
        let bytes = self.part(path)?;
        if path.is_empty() {
            return Some(Ok(Cow::Borrowed(bytes)));
        }
        let node = self.locate(path)?;
        let cte = self.transfer_encoding(node.within.msg, node.id);
        Some(match cte.as_str() {
            "7bit" | "8bit" | "binary" | "" => Ok(Cow::Borrowed(bytes)),
            "base64" => Ok(Cow::Owned(decode_base64(bytes))),
            "quoted-printable" => decode_qp(bytes).map(Cow::Owned).ok_or(Undecodable::Corrupt),
            _ => Err(Undecodable::UnknownCte),
        })
    }

    /// The message at `path`: the top one, or the message/rfc822 part `path` leads to.
    fn message_at(&self, path: &[NonZeroU32]) -> Option<Msg<'_, 'a>> {
        if path.is_empty() {
            return self.tree();
        }
        let node = self.locate(path)?;
        if node.depth >= MAX_MIME_DEPTH {
            return None;
        }
        self.inner_message(node.within, node.id)
    }

    /// The message inside part `id` of `m`, if it is an unencoded message/rfc822 part (an
    /// encoded one is a leaf, as its content is not a message until decoded).
    fn inner_message<'m>(&self, m: Msg<'m, 'a>, id: usize) -> Option<Msg<'m, 'a>> {
        let part = m.msg.parts.get(id)?;
        match &part.body {
            PartType::Message(inner) if !inner.parts.is_empty() && self.is_unencoded(m.msg, id) => {
                Some(Msg {
                    msg: inner,
                    end: part.offset_end as usize,
                })
            }
            _ => None,
        }
    }

    /// Part `id`'s Content-Transfer-Encoding as the raw bytes say it, lower case; `7bit`
    /// if it has none. The mechanism is the field's one token (RFC 2045 §6.1): a comment or
    /// anything else after it (`base64 (from a gateway)`) does not make it unknown.
    fn transfer_encoding(&self, msg: &Message<'a>, id: usize) -> String {
        let value = self
            .raw_header(msg, id, "Content-Transfer-Encoding")
            .unwrap_or_default();
        let value = String::from_utf8_lossy(&value);
        let token = value
            .trim()
            .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
            .next()
            .unwrap_or("");
        let value = token.to_ascii_lowercase();
        if value.is_empty() {
            "7bit".to_string()
        } else {
            value
        }
    }

    /// Whether part `id`'s content is its bytes as they are (no transfer encoding to undo).
    fn is_unencoded(&self, msg: &Message<'a>, id: usize) -> bool {
        matches!(
            self.transfer_encoding(msg, id).as_str(),
            "7bit" | "8bit" | "binary"
        )
    }

    /// Follows an IMAP part path (RFC 3501 6.4.5): children of a multipart are 1..n; a
    /// single-part message has only part 1, itself; a message/rfc822 part's parts are those
    /// of the message inside it.
    /// Parts at [`MAX_MIME_DEPTH`] are leaves: paths go no deeper.
    fn locate(&self, path: &[NonZeroU32]) -> Option<Node<'_, 'a>> {
        let mut within = self.tree()?;
        let mut at: Option<usize> = None;
        // The depth of `at`, or of `within`'s top part while `at` is None.
        let mut depth = 0;
        for n in path {
            let index = n.get() as usize - 1;
            // Where to descend from, and whether that is a message (not a part).
            let container = match at {
                None => 0,
                Some(_) if depth >= MAX_MIME_DEPTH => return None,
                Some(id) => match self.inner_message(within, id) {
                    Some(inner) => {
                        within = inner;
                        at = None;
                        depth += 1;
                        0
                    }
                    None if matches!(within.msg.parts.get(id)?.body, PartType::Multipart(_)) => id,
                    None => return None,
                },
            };
            let message_level = at.is_none();
            match &within.msg.parts.get(container)?.body {
                PartType::Multipart(_) if depth >= MAX_MIME_DEPTH => return None,
                PartType::Multipart(children) => {
                    at = Some(*children.get(index)? as usize);
                    depth += 1;
                }
                _ if message_level && index == 0 => at = Some(container),
                _ => return None,
            }
        }
        at.map(|id| Node { within, id, depth })
    }
}

/// The header fields of `raw`, for ENVELOPE; `None` if it has none.
fn parse_head(raw: &[u8]) -> Option<Message<'_>> {
    HEADER_PARSER.parse_headers(raw).filter(|m| !m.parts.is_empty())
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end.max(start)]
}

/// A string for the wire: quoted or literal as needed. NUL cannot be sent in either, so it
/// becomes 0x80 (as Dovecot does); BINARY is the exact path.
pub fn istring(bytes: Vec<u8>) -> IString<'static> {
    let bytes = without_nul(bytes);
    // Quoted if imap-types accepts it as such, else a literal. Message bodies and sections
    // (anything with a line break) can only be literals: they skip the quoted attempt, and
    // imap-types' own `TryFrom<Vec<u8>>`, which copies the value for it and then checks it
    // byte by byte.
    if !bytes.contains(&b'\n') {
        if let Some(quoted) = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| Quoted::try_from(text).ok())
        {
            return IString::Quoted(quoted.into_static());
        }
    }
    // Without NUL, any bytes are a valid literal (RFC 3501 CHAR8).
    IString::Literal(Literal::unvalidated(bytes))
}

/// Like [`istring`], NIL for `None`.
pub fn nstring(bytes: Option<Vec<u8>>) -> NString<'static> {
    match bytes {
        None => NString(None),
        Some(b) => NString(Some(istring(b))),
    }
}

/// NUL → 0x80, the one byte IMAP strings cannot carry.
pub fn without_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if !bytes.contains(&0) {
        return bytes;
    }
    for b in bytes.iter_mut() {
        if *b == 0 {
            *b = 0x80;
        }
    }
    bytes
}

/// Why BINARY cannot give a part's decoded content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undecodable {
    /// A Content-Transfer-Encoding this server does not know (RFC 3516 `[UNKNOWN-CTE]`).
    UnknownCte,
    /// Quoted-printable with an `=` that is neither an escape nor a soft line break. RFC 2045
    /// §6.7 leaves the decoder free here; Dovecot refuses such parts with `[PARSE]`, and so
    /// do we rather than guess.
    Corrupt,
}

/// RFC 2045 §6.8 base64: characters outside the alphabet are ignored (line breaks, blanks,
/// junk), and `=` ends a group, so text that concatenates separately padded encodings
/// decodes as the sum of its pieces. A lone trailing character carries no whole byte.
/// The decoding is mail-parser's; only the junk is ours to drop.
fn decode_base64(bytes: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .collect();
    // Only alphabet characters and `=` are left, which mail-parser always accepts.
    mail_parser::decoders::base64::base64_decode(&clean).unwrap_or_default()
}

/// RFC 2045 §6.7 quoted-printable, by mail-parser's decoder: trailing blanks of a line are
/// transport padding and dropped (rule 3), `=` followed by blanks and the line break is a
/// soft line break (rule 5), hard line breaks keep the part's own line ending; `None` for
/// an `=` that is neither an escape nor a soft line break.
fn decode_qp(bytes: &[u8]) -> Option<Vec<u8>> {
    mail_parser::decoders::quoted_printable::quoted_printable_decode(bytes)
}

/// The header fields of a header block whose names are (or, `not`, are not) in `names`,
/// followed by the blank line (RFC 3501 HEADER.FIELDS / HEADER.FIELDS.NOT).
pub fn header_fields(block: &[u8], names: &[Vec<u8>], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in block.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !(line.starts_with(b" ") || line.starts_with(b"\t")) {
            let name = line.split(|b| *b == b':').next().unwrap_or(b"");
            let name = trim(name);
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use imap_next::imap_types::body::{Body, BodyStructure, SpecificFields};

    use super::*;

    #[test]
    fn quoted_printable_and_base64_decode() {
        assert_eq!(decode_qp(b"a=3Db=\r\nc").unwrap(), b"a=bc");
        // Trailing blanks are padding; `=` then blanks then the break is a soft break.
        assert_eq!(
            decode_qp(b"trailing  \t\r\nsoft = \t\r\nbreak=\r\n=e4=C3=A4 8bit \xc3\xa4\r\n").unwrap(),
            b"trailing\r\nsoft break\xe4\xc3\xa4 8bit \xc3\xa4\r\n"
        );
        assert_eq!(decode_qp(b"dangling ="), Some(b"dangling ".to_vec()));
        assert_eq!(decode_qp(b"not hex =ZZ"), None);
        assert_eq!(decode_qp(b"blank then text = x\r\n"), None);
        assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(decode_base64(b"aGVsbG8"), b"hello");
        // Junk and blanks anywhere are ignored; padding ends a group.
        assert_eq!(decode_base64(b" aGV*sb G8g\r\n\td2!9y bGQ=\r\n"), b"hello world");
        assert_eq!(decode_base64(b"YQ==YQ==\r\nYWI=\r\n"), b"aaab");
        assert_eq!(decode_base64(b"YWJjZ\r\n"), b"abc");
        assert_eq!(decode_base64(b"!!!\r\n"), b"");
    }

    fn path(p: &[u32]) -> Vec<NonZeroU32> {
        p.iter().filter_map(|n| NonZeroU32::new(*n)).collect()
    }

    const FORWARD: &[u8] = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: fwd\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n\
--x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--x\r\nContent-Type: message/rfc822\r\n\r\n\
From: c@example.com\r\nSubject: inner\r\n\
Content-Type: multipart/alternative; boundary=\"y\"\r\n\r\n\
--y\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
--y\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--y--\r\n--x--\r\n";

    /// RFC 3501 6.4.5 part numbering through a forwarded message.
    #[test]
    fn sections_of_a_nested_message() {
        let p = Parsed::new(FORWARD);
        assert_eq!(p.part(&[]), Some(FORWARD));
        assert_eq!(p.part(&path(&[1])), Some(&b"see attached"[..]));
        assert_eq!(
            p.mime(&path(&[1])),
            Some(&b"Content-Type: text/plain\r\n\r\n"[..])
        );
        let inner = p.part(&path(&[2])).unwrap();
        assert!(inner.starts_with(b"From: c@example.com\r\n") && inner.ends_with(b"--y--"));
        assert_eq!(
            p.header(&path(&[2])),
            Some(&b"From: c@example.com\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=\"y\"\r\n\r\n"[..])
        );
        assert!(p.text(&path(&[2])).unwrap().starts_with(b"--y\r\n"));
        assert_eq!(p.part(&path(&[2, 1])), Some(&b"plain"[..]));
        assert_eq!(p.part(&path(&[2, 2])), Some(&b"<b>html</b>"[..]));
        assert_eq!(
            p.mime(&path(&[2, 2])),
            Some(&b"Content-Type: text/html\r\n\r\n"[..])
        );
        // Not a message: no HEADER; not a part: nothing.
        assert_eq!(p.header(&path(&[1])), None);
        assert_eq!(p.part(&path(&[3])), None);
        assert_eq!(p.part(&path(&[1, 1])), None);
        assert_eq!(p.part(&path(&[2, 3])), None);
        match p.body_structure() {
            BodyStructure::Multi { bodies, .. } => match &bodies.as_ref()[1] {
                BodyStructure::Single {
                    body:
                        Body {
                            specific: SpecificFields::Message { body_structure, .. },
                            ..
                        },
                    ..
                } => assert!(matches!(**body_structure, BodyStructure::Multi { .. })),
                _ => panic!("part 2 is not message/rfc822"),
            },
            _ => panic!("not multipart"),
        }
    }

    #[test]
    fn binary_reads_the_encoding_token() {
        let raw = b"Content-Transfer-Encoding: Base64 (from a gateway)\r\n\r\naGVsbG8=\r\n";
        let p = Parsed::new(raw);
        assert_eq!(p.binary(&path(&[1])), Some(Ok(Cow::Borrowed(&b"hello"[..]))));
        let raw = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n";
        assert_eq!(
            Parsed::new(raw).binary(&path(&[1])),
            Some(Err(Undecodable::UnknownCte))
        );
    }

    #[test]
    fn single_part_and_unparsable_messages() {
        let raw = b"Subject: x\r\n\r\nbody\r\n";
        let p = Parsed::new(raw);
        assert_eq!(p.part(&path(&[1])), Some(&b"body\r\n"[..]));
        assert_eq!(p.text(&[]), Some(&b"body\r\n"[..]));
        assert_eq!(p.header(&[]), Some(&b"Subject: x\r\n\r\n"[..]));
        // Whatever the bytes, structure and envelope are produced, never a panic.
        for raw in [
            &b""[..],
            b"\0\0\0",
            b"\r\n\r\n",
            b"Content-Type: multipart/mixed\r\n\r\n--",
        ] {
            let p = Parsed::new(raw);
            let _ = (p.body_structure(), p.envelope(), p.part(&path(&[1, 2, 3])));
        }
    }

    #[test]
    fn header_fields_keep_folded_lines() {
        let block = b"From: a\r\nSubject: x\r\n y\r\nTo: b\r\n\r\n";
        let names = vec![b"subject".to_vec()];
        assert_eq!(header_fields(block, &names, false), b"Subject: x\r\n y\r\n\r\n");
        assert_eq!(header_fields(block, &names, true), b"From: a\r\nTo: b\r\n\r\n");
    }

    /// Every file under `fixtures/` (malformed ones, and files that are no mail at all),
    /// recursively.
    fn fixture_messages() -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let raw = std::fs::read(&path).unwrap();
                    out.push((path, raw));
                }
            }
        }
        out
    }

    #[test]
    fn envelope_from_the_header_fields_equals_envelope_from_the_full_parse() {
        let messages = fixture_messages();
        assert!(messages.len() > 50, "fixtures missing: {}", messages.len());
        for (file, raw) in &messages {
            let full = Parsed::new(raw);
            full.tree();
            let head = Parsed::new(raw);
            assert_eq!(head.envelope(), full.envelope(), "{}", file.display());
            let has_fields = parse_head(raw).is_some();
            assert_eq!(head.tree.get().is_some(), !has_fields, "{}", file.display());
        }
    }
}
