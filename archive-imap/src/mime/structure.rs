//! ENVELOPE and BODYSTRUCTURE (RFC 3501 7.4.2) of a parsed message. Strings a client sees
//! are sliced from the raw bytes (dates, subjects, Message-IDs, Content-* values, addresses
//! read by `address`), so encoded words go out as they came in; only display names with
//! 8-bit bytes are sent as encoded words.

use imap_next::imap_types::body::{BasicFields, Body, BodyStructure, SpecificFields};
use imap_next::imap_types::core::{IString, NString, Vec1};
use imap_next::imap_types::envelope::{Address, Envelope};
use mail_parser::{Message, MimeHeaders, PartType};

use std::cell::Cell;

use super::address::{self, Entry};
use super::{istring, nstring, trim, Msg, Parsed, MAX_MIME_DEPTH, MAX_MIME_PARTS};

/// What one BODYSTRUCTURE may still cost: parts to describe, and bytes to scan for line
/// counts (parts may overlap, so the sum of their sizes is not bounded by the message's).
struct Budget {
    parts: Cell<usize>,
    scan: Cell<usize>,
}

impl Budget {
    fn for_message(len: usize) -> Budget {
        Budget {
            parts: Cell::new(MAX_MIME_PARTS),
            // Every byte counted once per level it is nested in, and then some.
            scan: Cell::new(len.saturating_mul(MAX_MIME_DEPTH).max(1 << 20)),
        }
    }

    /// Takes one part; false once none are left.
    fn take_part(&self) -> bool {
        let left = self.parts.get();
        self.parts.set(left.saturating_sub(1));
        left > 0
    }

    /// The lines of `content`, or 0 once the scan budget is spent.
    fn line_count(&self, content: &[u8]) -> u32 {
        let left = self.scan.get();
        if content.len() > left {
            self.scan.set(0);
            return 0;
        }
        self.scan.set(left - content.len());
        line_count(content)
    }
}

impl<'a> Parsed<'a> {
    /// ENVELOPE of the top-level message.
    pub fn envelope(&self) -> Envelope<'static> {
        match self.head() {
            Some(m) => self.envelope_of(m),
            None => empty_envelope(),
        }
    }

    fn envelope_of(&self, m: Msg<'_, 'a>) -> Envelope<'static> {
        let msg = m.msg;
        let raw_header = |name: &str| nstring(self.raw_header(msg, 0, name));
        let list = |name: &str| addresses(self.raw_header(msg, 0, name).as_deref());
        let from = list("From");
        // RFC 3501 §7.4.2: a Sender or Reply-To that is absent or empty is the From.
        let or_from = |list: Vec<Address<'static>>| if list.is_empty() { from.clone() } else { list };
        Envelope {
            date: raw_header("Date"),
            subject: raw_header("Subject"),
            sender: or_from(list("Sender")),
            reply_to: or_from(list("Reply-To")),
            from,
            to: list("To"),
            cc: list("Cc"),
            bcc: list("Bcc"),
            in_reply_to: raw_header("In-Reply-To"),
            message_id: raw_header("Message-ID"),
        }
    }

    /// A header's raw value, unfolded and trimmed (first occurrence).
    pub(super) fn raw_header(&self, msg: &Message<'a>, id: usize, name: &str) -> Option<Vec<u8>> {
        let h = msg
            .parts
            .get(id)?
            .headers
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
        let value = self.slice(h.offset_start, h.offset_end as usize);
        let unfolded: Vec<u8> = value
            .iter()
            .copied()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect();
        Some(trim(&unfolded).to_vec())
    }

    /// BODYSTRUCTURE (`extended`) or BODY of the top-level message. Extension data is left
    /// out in both: it is optional, and imap-codec would send it even for BODY.
    pub fn body_structure(&self) -> BodyStructure<'static> {
        match self.tree() {
            Some(m) => self.structure(m, 0, true, 0, &Budget::for_message(self.raw.len())),
            None => fallback_structure(self.raw),
        }
    }

    /// The structure of part `id` of `m`, which is `depth` deep. Recursion stops at
    /// [`MAX_MIME_DEPTH`] (so the stack holds at most that many calls, and imap-codec, which
    /// encodes the result recursively, gets no deeper a value): a part that deep is a leaf,
    /// and so is every container once `budget` has no parts left.
    fn structure(
        &self,
        m: Msg<'_, 'a>,
        id: usize,
        root: bool,
        depth: usize,
        budget: &Budget,
    ) -> BodyStructure<'static> {
        let Some(part) = m.msg.parts.get(id) else {
            return fallback_structure(&[]);
        };
        let end = if root { m.end } else { part.offset_end as usize };
        let content = self.slice(part.offset_body, end);
        let inner = self.inner_message(m, id);
        let is_container = inner.is_some() || matches!(part.body, PartType::Multipart(_));
        let within_budget = budget.take_part();
        if (depth >= MAX_MIME_DEPTH || !within_budget) && is_container {
            return self.leaf_structure(m.msg, id, content);
        }
        if let PartType::Multipart(children) = &part.body {
            let bodies: Vec<BodyStructure<'static>> = children
                .iter()
                .map(|c| self.structure(m, *c as usize, false, depth + 1, budget))
                .collect();
            let subtype = part
                .content_type()
                .and_then(|c| c.subtype())
                .unwrap_or("mixed")
                .to_string();
            if let Ok(bodies) = Vec1::try_from(bodies) {
                return BodyStructure::Multi {
                    bodies,
                    subtype: istring(subtype.into_bytes()),
                    extension_data: None,
                };
            }
            // A multipart without parts cannot be described; call it empty text.
        }
        let (ctype, subtype, params) = match part.content_type() {
            Some(c) => (
                c.ctype().to_ascii_lowercase(),
                c.subtype().unwrap_or("").to_ascii_lowercase(),
                c.attributes()
                    .unwrap_or(&[])
                    .iter()
                    .map(|a| {
                        (
                            istring(a.name.as_bytes().to_vec()),
                            istring(a.value.as_bytes().to_vec()),
                        )
                    })
                    .collect(),
            ),
            None => (
                "text".to_string(),
                "plain".to_string(),
                vec![(istring(b"charset".to_vec()), istring(b"us-ascii".to_vec()))],
            ),
        };
        let basic = self.basic_fields(m.msg, id, params, content);
        let lines = budget.line_count(content);
        let specific = match inner {
            Some(inner) => SpecificFields::Message {
                envelope: Box::new(self.envelope_of(inner)),
                body_structure: Box::new(self.structure(inner, 0, true, depth + 1, budget)),
                number_of_lines: lines,
            },
            _ if ctype == "text" => SpecificFields::Text {
                subtype: istring(subtype.into_bytes()),
                number_of_lines: lines,
            },
            _ => SpecificFields::Basic {
                r#type: istring(ctype.into_bytes()),
                subtype: istring(subtype.into_bytes()),
            },
        };
        BodyStructure::Single {
            body: Body { basic, specific },
            extension_data: None,
        }
    }

    /// A part nested too deeply to be described: `application/octet-stream`, its content
    /// (nested parts and all) exactly as stored, as `BODY[path]` returns it.
    fn leaf_structure(&self, msg: &Message<'a>, id: usize, content: &[u8]) -> BodyStructure<'static> {
        BodyStructure::Single {
            body: Body {
                basic: self.basic_fields(msg, id, Vec::new(), content),
                specific: SpecificFields::Basic {
                    r#type: istring(b"application".to_vec()),
                    subtype: istring(b"octet-stream".to_vec()),
                },
            },
            extension_data: None,
        }
    }

    fn basic_fields(
        &self,
        msg: &Message<'a>,
        id: usize,
        parameter_list: Vec<(IString<'static>, IString<'static>)>,
        content: &[u8],
    ) -> BasicFields<'static> {
        BasicFields {
            parameter_list,
            id: nstring(self.raw_header(msg, id, "Content-ID")),
            description: nstring(self.raw_header(msg, id, "Content-Description")),
            content_transfer_encoding: istring(
                self.raw_header(msg, id, "Content-Transfer-Encoding")
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| b"7BIT".to_vec()),
            ),
            size: u32::try_from(content.len()).unwrap_or(u32::MAX),
        }
    }
}

fn line_count(content: &[u8]) -> u32 {
    u32::try_from(content.iter().filter(|b| **b == b'\n').count()).unwrap_or(u32::MAX)
}

fn empty_envelope() -> Envelope<'static> {
    Envelope {
        date: NString(None),
        subject: NString(None),
        from: Vec::new(),
        sender: Vec::new(),
        reply_to: Vec::new(),
        to: Vec::new(),
        cc: Vec::new(),
        bcc: Vec::new(),
        in_reply_to: NString(None),
        message_id: NString(None),
    }
}

fn fallback_structure(raw: &[u8]) -> BodyStructure<'static> {
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![(istring(b"charset".to_vec()), istring(b"us-ascii".to_vec()))],
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istring(b"7BIT".to_vec()),
                size: u32::try_from(raw.len()).unwrap_or(u32::MAX),
            },
            specific: SpecificFields::Text {
                subtype: istring(b"plain".to_vec()),
                number_of_lines: u32::try_from(raw.iter().filter(|b| **b == b'\n').count())
                    .unwrap_or(u32::MAX),
            },
        },
        extension_data: None,
    }
}

/// The ENVELOPE address list of an address field's raw value (RFC 3501 §7.4.2; read by
/// `address`, see there why not by mail-parser); NIL (empty) without the field.
fn addresses(value: Option<&[u8]>) -> Vec<Address<'static>> {
    let Some(value) = value else {
        return Vec::new();
    };
    let nil = || NString(None);
    let string = |b: Vec<u8>| nstring(Some(b));
    address::parse(value)
        .into_iter()
        .map(|entry| match entry {
            Entry::GroupStart(name) => Address {
                name: nil(),
                adl: nil(),
                mailbox: string(name),
                host: nil(),
            },
            Entry::Mailbox {
                name,
                adl,
                mailbox,
                host,
            } => Address {
                name: nstring(name.map(display_name)),
                adl: nstring(adl),
                mailbox: string(mailbox),
                host: string(host),
            },
            Entry::GroupEnd => Address {
                name: nil(),
                adl: nil(),
                mailbox: nil(),
                host: nil(),
            },
        })
        .collect()
}

/// A display name as written: ASCII (encoded words included) as it is, 8-bit text as one
/// UTF-8 encoded word, which every client decodes.
fn display_name(name: Vec<u8>) -> Vec<u8> {
    if name.is_ascii() {
        return name;
    }
    encode_word(&String::from_utf8_lossy(&name))
}

fn encode_word(name: &str) -> Vec<u8> {
    if name.is_ascii() {
        return name.as_bytes().to_vec();
    }
    use base64::Engine;
    format!(
        "=?utf-8?b?{}?=",
        base64::engine::general_purpose::STANDARD.encode(name.as_bytes())
    )
    .into_bytes()
}
