//! FETCH and UID FETCH: every item from the stored bytes (DESIGN invariant 2). Nothing is
//! changed by any fetch (no \Seen to set: the archive has no writable flags). Messages are
//! read, answered and encoded on one blocking thread per core and sent in order; each thread
//! runs at most WORKER_BYTES ahead, so `FETCH 1:* BODY[]` is safe on any mailbox. A fetch
//! that reads message content is one audit event. Each message is parsed only as deeply as
//! the items asked need (`Parsed`); ENVELOPEs come from the shared cache when they can.
//! MODSEQ and the CHANGEDSINCE modifier are RFC 7162's (`condstore`); both enable CONDSTORE.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::sync::Arc;

use archive_core::views::View;
use archive_core::Store;
use imap_codec::encode::Encoder;
use imap_codec::ResponseCodec;
use imap_next::imap_types::command::FetchModifier;
use imap_next::imap_types::core::{LiteralMode, NString, NString8, Tag, Vec1};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::extensions::binary::Literal8;
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Part, Section,
};
use imap_next::imap_types::flag::{Flag, FlagFetch};
use imap_next::imap_types::response::{Data, Response};
use imap_next::imap_types::sequence::SequenceSet;

use super::Done;
use crate::condstore::modseq;
use crate::envelope_cache::EnvelopeCache;
use crate::mime::{header_fields, nstring, Parsed, Undecodable};
use crate::sequence::{resolve, written};
use crate::session::{bad, code, no, ok, Closed, Conn, Session};

/// A FETCH or UID FETCH as parsed.
pub(crate) struct Request {
    pub set: SequenceSet,
    pub items: MacroOrMessageDataItemNames<'static>,
    pub uid: bool,
    pub modifiers: Vec<FetchModifier>,
}

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    request: Request,
) -> Result<Done, Closed> {
    let Request {
        set,
        items,
        uid,
        modifiers,
    } = request;
    let Some(sel) = &s.selected else {
        return Done::reply(bad(tag, "no mailbox selected"));
    };
    let view = sel.view.clone();
    let mut changed_since = None;
    for m in &modifiers {
        match m {
            FetchModifier::ChangedSince(n) => changed_since = Some(n.get()),
            FetchModifier::Vanished => {
                return Done::reply(bad(tag, "VANISHED needs QRESYNC, which is not offered"))
            }
        }
    }
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
    // RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ.
    if changed_since.is_some() && !names.contains(&MessageDataItemName::ModSeq) {
        names.push(MessageDataItemName::ModSeq);
    }
    if names.contains(&MessageDataItemName::ModSeq) {
        s.enable_condstore(c).await?;
    }
    // Each message once, however the set repeats or overlaps itself (`1:*,1:*,…`): at most
    // one number per message of the mailbox.
    let resolved = match resolve(&set, &view, uid) {
        Ok(numbers) => numbers,
        Err(_) => return Done::reply(bad(tag, "the mailbox is empty: no message numbers exist")),
    };
    let mut numbers: Vec<usize> = Vec::with_capacity(resolved.len());
    numbers.extend(resolved.iter());
    if let Some(since) = changed_since {
        // Only messages whose mod-sequence is above it: those that appeared since.
        numbers.retain(|n| view.uid_at(*n).is_some_and(|u| modseq(u).get() > since));
    }
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
    // What needs the message's bytes whatever is cached (ENVELOPE may not: see `Needs`).
    let needs = Needs {
        bytes: reads_content
            || names.iter().any(|n| {
                matches!(
                    n,
                    MessageDataItemName::Body
                        | MessageDataItemName::BodyStructure
                        | MessageDataItemName::BinarySize { .. }
                )
            }),
        envelope: names.contains(&MessageDataItemName::Envelope),
    };
    // One `view` record per command that shows what a message says: its contents, or the
    // headers and structure ENVELOPE, BODY and BODYSTRUCTURE reveal (FLAGS, UID, sizes and
    // dates alone do not). `FETCH 1:*` is one record, however many messages it names.
    let reveals = reads_content
        || names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::Envelope
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
            )
        });
    if reveals && !numbers.is_empty() {
        let uids: Vec<u64> = numbers.iter().filter_map(|n| view.uid_at(*n)).collect();
        if let Err((code, why)) = s.audit_view(&view, &written(&set), uid, &uids) {
            return Done::reply(no(tag, code, &why));
        }
    }
    // Messages are read, answered and encoded on blocking threads (one per core) while the
    // session sends what is ready, in order. A thread that has WORKER_BYTES of answers
    // waiting (or one bigger message) stops and gives its thread back; it is started again
    // from where it stopped once the session has sent them. So `FETCH 1:* BODY[]` is safe on
    // any mailbox, and a client that reads slowly holds no thread.
    let reader = Arc::new(Reader {
        store: Arc::clone(&s.store),
        envelopes: Arc::clone(&s.envelopes),
        view,
        names,
        needs,
    });
    let stripe = if needs.bytes { 1 } else { STRIPE_WITHOUT_BYTES };
    let stripes: Vec<Vec<usize>> = numbers.chunks(stripe).map(<[usize]>::to_vec).collect();
    let workers = worker_count().min(stripes.len()).max(1);
    let stripes = Arc::new(stripes);
    let start = |from: usize, budget: &Arc<tokio::sync::Semaphore>| {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let (reader, stripes, budget) = (Arc::clone(&reader), Arc::clone(&stripes), Arc::clone(budget));
        let task = tokio::task::spawn_blocking(move || {
            reader.answer_stripes(&stripes, from, workers, &sender, &budget)
        });
        (receiver, task)
    };
    let budgets: Vec<_> = (0..workers)
        .map(|_| Arc::new(tokio::sync::Semaphore::new(WORKER_BYTES)))
        .collect();
    let mut running: Vec<_> = (0..workers).map(|w| start(w, &budgets[w])).collect();
    let mut out = Vec::new();
    for k in 0..stripes.len() {
        let w = k % workers;
        let answered = loop {
            if let Some(answered) = running[w].0.recv().await {
                break Some(answered);
            }
            // The thread ended: it stopped with answers all sent (start it again where it
            // stopped), or it failed.
            match (&mut running[w].1).await {
                Ok(Some(from)) => running[w] = start(from, &budgets[w]),
                Ok(None) => break None,
                Err(e) => {
                    // A panic on a reading thread ends this FETCH (NO below), not the server.
                    tracing::error!(error = %e, peer = %s.peer, "FETCH: a reading thread panicked");
                    break None;
                }
            }
        };
        let Some(answered) = answered else {
            tracing::error!("FETCH: a reading thread ended early");
            return Done::reply(no(
                tag,
                Some(code("SERVERBUG")),
                "the messages could not be read; nothing was changed",
            ));
        };
        match answered {
            Ok((wire, _budget)) => {
                if out.is_empty() {
                    out = wire;
                } else {
                    out.extend_from_slice(&wire);
                }
                if out.len() >= SEND_BYTES {
                    c.raw(std::mem::take(&mut out)).await?;
                    c.flush().await?;
                }
            }
            Err((_, Unreadable::Binary(Undecodable::UnknownCte))) => {
                return Done::reply(no(
                    tag,
                    Some(code("UNKNOWN-CTE")),
                    "BINARY: the part has a transfer encoding this server cannot decode; \
                     use BODY[] for the stored bytes",
                ));
            }
            Err((_, Unreadable::Binary(Undecodable::Corrupt))) => {
                return Done::reply(no(
                    tag,
                    Some(code("PARSE")),
                    "BINARY: the part is not valid quoted-printable; use BODY[] for the stored bytes",
                ));
            }
            Err((uid_value, Unreadable::Store(e))) => {
                tracing::info!(uid = uid_value, "FETCH cannot read a message");
                let (code, why) = crate::failure::store_failure(&e, "FETCH");
                return Done::reply(no(tag, code, &why));
            }
        }
    }
    if !out.is_empty() {
        c.raw(out).await?;
        c.flush().await?;
    }
    Done::reply(ok(tag, "FETCH completed"))
}

/// The flags of every message: `\Seen`, and nothing can change them (STORE reports these too).
pub(crate) fn message_flags() -> Vec<FlagFetch<'static>> {
    vec![FlagFetch::Flag(Flag::Seen)]
}

/// Messages per unit of work when no message bytes are read (UID, FLAGS, cached ENVELOPE):
/// each is cheap. Units that read bytes are one message each.
const STRIPE_WITHOUT_BYTES: usize = 64;

/// Encoded responses a reading thread may have waiting to be sent (bytes; one more answer
/// may go past it).
const WORKER_BYTES: usize = 512 << 10;

/// Response bytes gathered before a write to the socket.
const SEND_BYTES: usize = 256 << 10;

/// Reading threads per FETCH: one per core, at most four.
fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Why a message's items cannot be given.
enum Unreadable {
    /// The store failed (the client gets NO with the code of its fault).
    Store(archive_core::Error),
    /// BINARY of a part whose content cannot be decoded (RFC 3516 UNKNOWN-CTE, or corrupt).
    Binary(Undecodable),
}

/// What the items asked need of each message.
#[derive(Clone, Copy)]
struct Needs {
    /// The stored bytes, whatever is cached.
    bytes: bool,
    /// ENVELOPE: from the cache, else from the bytes (and then cached).
    envelope: bool,
}

/// A message of the selected view.
#[derive(Clone, Copy)]
struct Message {
    /// Its UID in the view.
    uid: u64,
    /// The message record holding its bytes.
    seq: u64,
}

/// The encoded responses of one unit of messages (holding its share of the thread's
/// WORKER_BYTES until sent, if there was room for it), or the UID that could not be answered
/// and why.
type Answered = Result<(Vec<u8>, Option<tokio::sync::OwnedSemaphorePermit>), (u64, Unreadable)>;

/// What the reading threads of one FETCH command read with.
struct Reader {
    store: Arc<Store>,
    envelopes: Arc<EnvelopeCache>,
    view: View,
    names: Vec<MessageDataItemName<'static>>,
    needs: Needs,
}

impl Reader {
    /// Answers stripes `from`, `from + workers`, … in order. Stops after the answer that
    /// finds `budget` spent, returning the stripe to go on from; `None` when done, after an
    /// answer that failed, or when the session went away.
    fn answer_stripes(
        &self,
        stripes: &[Vec<usize>],
        from: usize,
        workers: usize,
        queue: &tokio::sync::mpsc::UnboundedSender<Answered>,
        budget: &Arc<tokio::sync::Semaphore>,
    ) -> Option<usize> {
        for k in (from..stripes.len()).step_by(workers) {
            let answered = self.answer(&stripes[k]).map(|wire| {
                let share = wire.len().clamp(1, WORKER_BYTES) as u32;
                let permit = Arc::clone(budget).try_acquire_many_owned(share).ok();
                (wire, permit)
            });
            let stop = match &answered {
                Ok((_, permit)) => permit.is_none(),
                Err(_) => return queue.send(answered).ok().and(None),
            };
            queue.send(answered).ok()?;
            if stop {
                return Some(k + workers).filter(|next| *next < stripes.len());
            }
        }
        None
    }

    /// The encoded responses of the messages `numbers`.
    fn answer(&self, numbers: &[usize]) -> Result<Vec<u8>, (u64, Unreadable)> {
        let mut wire = Vec::new();
        for n in numbers {
            let (Some(uid), Some(seq)) = (self.view.uid_at(*n), self.view.message_seq_at(*n)) else {
                continue;
            };
            let items = self.message_items(Message { uid, seq }).map_err(|e| (uid, e))?;
            let Some(number) = u32::try_from(*n).ok().and_then(NonZeroU32::new) else {
                continue;
            };
            encode_fetch(number, items, &mut wire);
        }
        Ok(wire)
    }

    /// The reply items for one message, in the order asked.
    fn message_items(&self, message: Message) -> Result<Vec<Answer>, Unreadable> {
        let (store, view, names, needs) = (&self.store, &self.view, &self.names, self.needs);
        let uid = message.uid;
        let cached_envelope = if needs.envelope && !needs.bytes {
            self.envelopes.get(message.seq)
        } else {
            None
        };
        let needs_bytes = needs.bytes || (needs.envelope && cached_envelope.is_none());
        let (raw, received_us, size) = if needs_bytes {
            let m = store.view_message(view, uid).map_err(Unreadable::Store)?;
            let size = m.raw.len() as u64;
            (m.raw, m.received_us, size)
        } else if names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::InternalDate | MessageDataItemName::Rfc822Size
            )
        }) {
            // Dates and sizes come from the record; no message bytes are decompressed.
            let e = store.view_entry(view, uid).map_err(Unreadable::Store)?;
            (Vec::new(), e.received_us, e.size)
        } else {
            // UID, FLAGS and a cached ENVELOPE (what clients sync most) are known without
            // reading the log.
            (Vec::new(), 0, 0)
        };
        let parsed = Parsed::new(&raw);
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let mut binary_origin = None;
            let item = match name {
                MessageDataItemName::Uid => {
                    let u = u32::try_from(uid).ok().and_then(NonZeroU32::new);
                    match u {
                        Some(u) => MessageDataItem::Uid(u),
                        None => continue,
                    }
                }
                MessageDataItemName::Flags => MessageDataItem::Flags(message_flags()),
                MessageDataItemName::ModSeq => MessageDataItem::ModSeq(modseq(uid)),
                MessageDataItemName::InternalDate => match internal_date(received_us) {
                    Some(d) => MessageDataItem::InternalDate(d),
                    None => continue,
                },
                MessageDataItemName::Rfc822Size => {
                    MessageDataItem::Rfc822Size(u32::try_from(size).unwrap_or(u32::MAX))
                }
                MessageDataItemName::Envelope => MessageDataItem::Envelope(match &cached_envelope {
                    Some(e) => e.clone(),
                    None => {
                        let e = parsed.envelope();
                        self.envelopes.insert(message.seq, &e);
                        e
                    }
                }),
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
                    // RFC 3516 §4.2 (as RFC 3501 for BODY): the answer to a partial fetch
                    // names its origin, `BINARY[1]<0>`.
                    binary_origin = partial.map(|(start, _)| start);
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
                        Some(Err(why)) => return Err(Unreadable::Binary(why)),
                        None => NString8::NString(NString(None)),
                    };
                    MessageDataItem::Binary {
                        section: section.clone(),
                        value,
                    }
                }
                MessageDataItemName::BinarySize { section } => {
                    // The length of exactly what BINARY[section] gives.
                    let size = match parsed.binary(section) {
                        Some(Ok(b)) => b.len(),
                        Some(Err(why)) => return Err(Unreadable::Binary(why)),
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
            out.push(Answer { item, binary_origin });
        }
        Ok(out)
    }
}

/// One item of a FETCH answer.
struct Answer {
    item: MessageDataItem<'static>,
    /// The origin of a partial BINARY, which imap-types' item cannot carry.
    binary_origin: Option<u32>,
}

/// Appends the FETCH response of message `number` with `items` to `wire`. imap-codec
/// encodes it; only a partial BINARY is encoded item by item, with `<origin>` put after its
/// section (`BINARY[1.2]` is all digits and dots, so the first `]` closes it).
fn encode_fetch(number: NonZeroU32, items: Vec<Answer>, wire: &mut Vec<u8>) {
    let encode = |items: Vec1<MessageDataItem<'static>>| {
        let response = Response::Data(Data::Fetch { seq: number, items });
        ResponseCodec::default().encode(&response).dump()
    };
    if items.iter().all(|a| a.binary_origin.is_none()) {
        if let Ok(items) = Vec1::try_from(items.into_iter().map(|a| a.item).collect::<Vec<_>>()) {
            let encoded = encode(items);
            // A stripe of one message (with its bytes) takes the encoding as it is: a body
            // of megabytes is not copied once more.
            if wire.is_empty() {
                *wire = encoded;
            } else {
                wire.extend_from_slice(&encoded);
            }
        }
        return;
    }
    let head = format!("* {number} FETCH (");
    wire.extend_from_slice(head.as_bytes());
    let mut first = true;
    for answer in items {
        let one = encode(Vec1::from(answer.item));
        // `* n FETCH (` item `)\r\n`, as encoded just now.
        let Some(item) = one
            .get(head.len()..one.len().saturating_sub(3))
            .filter(|_| one.starts_with(head.as_bytes()) && one.ends_with(b")\r\n"))
        else {
            continue;
        };
        if !first {
            wire.push(b' ');
        }
        first = false;
        match (answer.binary_origin, item.iter().position(|b| *b == b']')) {
            (Some(origin), Some(close)) => {
                wire.extend_from_slice(&item[..=close]);
                wire.extend_from_slice(format!("<{origin}>").as_bytes());
                wire.extend_from_slice(&item[close + 1..]);
            }
            _ => wire.extend_from_slice(item),
        }
    }
    wire.extend_from_slice(b")\r\n");
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
