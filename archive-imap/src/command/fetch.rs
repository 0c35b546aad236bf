//! FETCH and UID FETCH: every item from the stored bytes (DESIGN invariant 2). Nothing is
//! changed by any fetch (no \Seen to set: the archive has no writable flags). Responses go
//! out in batches of at most 1 MiB of messages (or one bigger message), so `FETCH 1:*
//! BODY[]` never holds more than that in memory. A fetch that reads message content is one
//! audit event. Each message is parsed only as deeply as the items asked need (`Parsed`).

use std::borrow::Cow;
use std::num::NonZeroU32;

use archive_core::views::View;
use imap_next::imap_types::core::{LiteralMode, NString, NString8, Tag, Vec1};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::extensions::binary::Literal8;
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Part, Section,
};
use imap_next::imap_types::flag::{Flag, FlagFetch};
use imap_next::imap_types::response::Data;
use imap_next::imap_types::sequence::SequenceSet;

use super::Done;
use crate::mime::{header_fields, nstring, Parsed};
use crate::sequence::resolve;
use crate::session::{bad, blocking, code, no, ok, Closed, Conn, Session};

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    set: SequenceSet,
    items: MacroOrMessageDataItemNames<'static>,
    uid: bool,
) -> Result<Done, Closed> {
    let Some(sel) = &s.selected else {
        return Done::reply(bad(tag, "no mailbox selected"));
    };
    let view = sel.view.clone();
    let mut names: Vec<MessageDataItemName<'static>> = match items {
        MacroOrMessageDataItemNames::Macro(m) => m
            .expand()
            .into_iter()
            .map(imap_next::imap_types::IntoStatic::into_static)
            .collect(),
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
    };
    if uid && !names.contains(&MessageDataItemName::Uid) {
        names.insert(0, MessageDataItemName::Uid);
    }
    let Ok(numbers) = resolve(&set, &view, uid) else {
        return Done::reply(bad(tag, "the mailbox is empty: no message numbers exist"));
    };
    let reads_content = names.iter().any(|n| {
        matches!(
            n,
            MessageDataItemName::BodyExt { .. }
                | MessageDataItemName::Binary { .. }
                | MessageDataItemName::Rfc822
                | MessageDataItemName::Rfc822Text
                | MessageDataItemName::Rfc822Header
        )
    });
    let needs_bytes = reads_content
        || names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::Envelope
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
                    | MessageDataItemName::BinarySize { .. }
            )
        });
    if reads_content && !numbers.is_empty() {
        let uids: Vec<u64> = numbers.iter().filter_map(|n| view.uid_at(*n)).collect();
        let target = format!("imap mailbox {} uids {}", view.mailbox(), ranges(&uids));
        if let Err(why) = s.audit("view", target) {
            return Done::reply(no(tag, Some(code("UNAVAILABLE")), &why));
        }
    }
    let mut next = 0;
    while next < numbers.len() {
        // A batch of messages per blocking call (a thread hand-off per message would cost more
        // than a small message's items), bounded in bytes so `FETCH 1:* BODY[]` never holds
        // more than about BATCH_BYTES (or one bigger message) in memory.
        let batch = blocking(|| {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(n) = numbers.get(next) {
                if batch.len() >= BATCH_MESSAGES || bytes >= BATCH_BYTES {
                    break;
                }
                next += 1;
                let Some(uid_value) = view.uid_at(*n) else {
                    continue;
                };
                let (items, size) =
                    message_items(s, &view, uid_value, &names, needs_bytes).map_err(|e| (uid_value, e))?;
                bytes += size;
                batch.push((*n, items));
            }
            Ok(batch)
        });
        let batch = match batch {
            Ok(batch) => batch,
            Err((_, Unreadable::UnknownCte)) => {
                return Done::reply(no(
                    tag,
                    Some(code("UNKNOWN-CTE")),
                    "BINARY: the part has a transfer encoding this server cannot decode; \
                     use BODY[] for the stored bytes",
                ));
            }
            Err((uid_value, Unreadable::Store(why))) => {
                tracing::error!(uid = uid_value, error = %why, "FETCH cannot read a message");
                return Done::reply(no(
                    tag,
                    Some(code("SERVERBUG")),
                    "a message could not be read; nothing was changed",
                ));
            }
        };
        for (n, items) in batch {
            let (Some(seq), Ok(items)) = (
                u32::try_from(n).ok().and_then(NonZeroU32::new),
                Vec1::try_from(items),
            ) else {
                continue;
            };
            c.data(Data::Fetch { seq, items }).await?;
        }
        c.flush().await?;
    }
    Done::reply(ok(tag, "FETCH completed"))
}

/// Most messages read per blocking call.
const BATCH_MESSAGES: usize = 256;

/// Message bytes after which a batch is sent before more are read.
const BATCH_BYTES: usize = 1 << 20;

/// Why a message's items cannot be given.
enum Unreadable {
    /// The store failed (logged; the client gets NO).
    Store(String),
    /// BINARY of a part whose Content-Transfer-Encoding is unknown (RFC 3516 UNKNOWN-CTE).
    UnknownCte,
}

/// The reply items for one message, in the order asked, and how many message bytes were
/// read for them.
fn message_items(
    s: &Session,
    view: &View,
    uid: u64,
    names: &[MessageDataItemName<'static>],
    needs_bytes: bool,
) -> Result<(Vec<MessageDataItem<'static>>, usize), Unreadable> {
    let (raw, received_us, size) = if needs_bytes {
        let m = s
            .store
            .view_message(view, uid)
            .map_err(|e| Unreadable::Store(e.to_string()))?;
        let size = m.raw.len() as u64;
        (m.raw, m.received_us, size)
    } else if names.iter().any(|n| {
        matches!(
            n,
            MessageDataItemName::InternalDate | MessageDataItemName::Rfc822Size
        )
    }) {
        // Dates and sizes come from the record; no message bytes are decompressed.
        let e = s
            .store
            .view_entry(view, uid)
            .map_err(|e| Unreadable::Store(e.to_string()))?;
        (Vec::new(), e.received_us, e.size)
    } else {
        // UID and FLAGS (what clients poll most) are known from the view alone.
        (Vec::new(), 0, 0)
    };
    let parsed = Parsed::new(&raw);
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let item = match name {
            MessageDataItemName::Uid => {
                let u = u32::try_from(uid).ok().and_then(NonZeroU32::new);
                match u {
                    Some(u) => MessageDataItem::Uid(u),
                    None => continue,
                }
            }
            MessageDataItemName::Flags => MessageDataItem::Flags(vec![FlagFetch::Flag(Flag::Seen)]),
            MessageDataItemName::InternalDate => match internal_date(received_us) {
                Some(d) => MessageDataItem::InternalDate(d),
                None => continue,
            },
            MessageDataItemName::Rfc822Size => {
                MessageDataItem::Rfc822Size(u32::try_from(size).unwrap_or(u32::MAX))
            }
            MessageDataItemName::Envelope => MessageDataItem::Envelope(parsed.envelope()),
            MessageDataItemName::Body => MessageDataItem::Body(parsed.body_structure()),
            MessageDataItemName::BodyStructure => MessageDataItem::BodyStructure(parsed.body_structure()),
            MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(bytes(&raw)),
            MessageDataItemName::Rfc822Header => {
                MessageDataItem::Rfc822Header(bytes(parsed.header(&[]).unwrap_or(&raw)))
            }
            MessageDataItemName::Rfc822Text => {
                MessageDataItem::Rfc822Text(bytes(parsed.text(&[]).unwrap_or(b"")))
            }
            MessageDataItemName::BodyExt { section, partial, .. } => {
                let content = section_bytes(&parsed, section.as_ref());
                let (origin, data) = match (partial, content) {
                    (Some((start, len)), Some(b)) => {
                        (Some(*start), Some(slice(&b, *start, len.get()).to_vec()))
                    }
                    (Some((start, _)), None) => (Some(*start), None),
                    (None, b) => (None, b.map(Cow::into_owned)),
                };
                MessageDataItem::BodyExt {
                    section: section.clone(),
                    origin,
                    data: nstring(Some(data.unwrap_or_default())),
                }
            }
            MessageDataItemName::Binary { section, partial, .. } => {
                let value = match parsed.binary(section) {
                    Some(Ok(b)) => {
                        let b = match partial {
                            Some((start, len)) => slice(&b, *start, len.get()).to_vec(),
                            None => b.into_owned(),
                        };
                        NString8::Literal8(Literal8 {
                            data: Cow::Owned(b),
                            mode: LiteralMode::Sync,
                        })
                    }
                    Some(Err(())) => return Err(Unreadable::UnknownCte),
                    None => NString8::NString(NString(None)),
                };
                MessageDataItem::Binary {
                    section: section.clone(),
                    value,
                }
            }
            MessageDataItemName::BinarySize { section } => {
                let size = match parsed.binary(section) {
                    Some(Ok(b)) => b.len(),
                    Some(Err(())) => return Err(Unreadable::UnknownCte),
                    None => 0,
                };
                MessageDataItem::BinarySize {
                    section: section.clone(),
                    size: u32::try_from(size).unwrap_or(u32::MAX),
                }
            }
            #[allow(unreachable_patterns)]
            _ => continue,
        };
        out.push(item);
    }
    Ok((out, raw.len()))
}

/// The bytes of a BODY[section]; `None` if the section does not exist in this message.
fn section_bytes<'a>(p: &Parsed<'a>, section: Option<&Section<'_>>) -> Option<Cow<'a, [u8]>> {
    let path = |part: &Option<Part>| -> Vec<NonZeroU32> {
        part.as_ref().map(|p| p.0.as_ref().to_vec()).unwrap_or_default()
    };
    let names = |v: &Vec1<imap_next::imap_types::core::AString<'_>>| -> Vec<Vec<u8>> {
        v.as_ref().iter().map(|a| a.as_ref().to_vec()).collect()
    };
    Some(match section {
        None => Cow::Borrowed(p.part(&[])?),
        Some(Section::Part(part)) => Cow::Borrowed(p.part(part.0.as_ref())?),
        Some(Section::Header(part)) => Cow::Borrowed(p.header(&path(part))?),
        Some(Section::Text(part)) => Cow::Borrowed(p.text(&path(part))?),
        Some(Section::Mime(part)) => Cow::Borrowed(p.mime(part.0.as_ref())?),
        Some(Section::HeaderFields(part, fields)) => {
            Cow::Owned(header_fields(p.header(&path(part))?, &names(fields), false))
        }
        Some(Section::HeaderFieldsNot(part, fields)) => {
            Cow::Owned(header_fields(p.header(&path(part))?, &names(fields), true))
        }
    })
}

fn slice(b: &[u8], start: u32, len: u32) -> &[u8] {
    let start = (start as usize).min(b.len());
    let end = start.saturating_add(len as usize).min(b.len());
    &b[start..end]
}

fn bytes(b: &[u8]) -> NString<'static> {
    nstring(Some(b.to_vec()))
}

/// INTERNALDATE: the receive time of the UID's record, in UTC, whole seconds (imap-types
/// refuses sub-second values).
fn internal_date(received_us: i64) -> Option<DateTime> {
    let secs = received_us.div_euclid(1_000_000);
    let utc = chrono::DateTime::from_timestamp(secs, 0)?;
    DateTime::try_from(utc.fixed_offset()).ok()
}

/// UIDs as compact ranges for audit records: `3:7,9,12:13`.
pub(crate) fn ranges(uids: &[u64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}
