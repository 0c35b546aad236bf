//! STORE and UID STORE: answered OK, and nothing changes. The archive keeps no flags (every
//! message is `\Seen`, PERMANENTFLAGS is empty), so a flag change is ignored the way
//! Dovecot ignores flags a read-only ACL gives no right to (RFC 4314 §4): OK, and the FETCH
//! responses (unless `.SILENT`) report the flags as they are, unchanged. A NO here made
//! mbsync's default `Sync All` abort on its first flag change (issue #14). EXPUNGE then finds
//! no `\Deleted` message (`expunge.rs`); copying, moving and appending stay refused
//! (`refused.rs`). Nothing is written: no flag, and no audit record either, since nothing
//! was read or changed.
//!
//! CONDSTORE (RFC 7162 §3.1.3, `condstore`): `(UNCHANGEDSINCE n)` fails for the messages
//! whose mod-sequence is above `n` (`OK [MODIFIED set]`) and "succeeds" for the others,
//! which get a FETCH response with their (unchanged) MODSEQ even with `.SILENT`. Once
//! CONDSTORE is enabled, every FETCH response here carries UID and MODSEQ (§3.1).

use std::num::NonZeroU32;

use imap_codec::encode::Encoder;
use imap_codec::ResponseCodec;
use imap_next::imap_types::command::StoreModifier;
use imap_next::imap_types::core::{Tag, Vec1};
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::flag::StoreResponse;
use imap_next::imap_types::response::{Code, Data, Response};
use imap_next::imap_types::sequence::SequenceSet;

use super::fetch::message_flags;
use super::Done;
use crate::condstore::modseq;
use crate::sequence::{compact_set, resolve};
use crate::session::{bad, ok, status, Closed, Conn, Kind, Session};

/// Encoded FETCH responses gathered before a write to the socket (`STORE 1:*` on a large
/// mailbox is one short line per message).
const SEND_BYTES: usize = 64 << 10;

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    set: SequenceSet,
    response: StoreResponse,
    uid: bool,
    modifiers: Vec<StoreModifier>,
) -> Result<Done, Closed> {
    let unchanged_since = modifiers
        .iter()
        .map(|m| match m {
            StoreModifier::UnchangedSince(n) => *n,
        })
        .next();
    if unchanged_since.is_some() {
        s.enable_condstore(c).await?;
    }
    let Some(sel) = &s.selected else {
        return Done::reply(bad(tag, "no mailbox selected"));
    };
    let view = sel.view.clone();
    let numbers = match resolve(&set, &view, uid) {
        Ok(numbers) => numbers,
        Err(_) => return Done::reply(bad(tag, "the mailbox is empty: no message numbers exist")),
    };
    let answer = matches!(response, StoreResponse::Answer);
    let with_modseq = s.condstore;
    let codec = ResponseCodec::default();
    let mut out = Vec::new();
    // Messages that failed UNCHANGEDSINCE, as numbers (STORE) or UIDs (UID STORE).
    let mut modified = Vec::new();
    // One response per message named: bounded by the mailbox, each message once.
    for n in numbers.iter() {
        let (Some(uid_value), Ok(seq)) = (view.uid_at(n), u32::try_from(n)) else {
            continue;
        };
        let Some(seq) = NonZeroU32::new(seq) else {
            continue;
        };
        if unchanged_since.is_some_and(|since| modseq(uid_value).get() > since) {
            modified.push(if uid { uid_value } else { n as u64 });
            continue;
        }
        // RFC 7162 §3.1.3: a conditional STORE answers even when `.SILENT`.
        if !answer && unchanged_since.is_none() {
            continue;
        }
        let mut items = Vec::with_capacity(3);
        // UID STORE answers carry the UID (RFC 3501 §6.4.8), and all do with CONDSTORE.
        if uid || with_modseq {
            if let Some(u) = u32::try_from(uid_value).ok().and_then(NonZeroU32::new) {
                items.push(MessageDataItem::Uid(u));
            }
        }
        if answer {
            items.push(MessageDataItem::Flags(message_flags()));
        }
        if with_modseq {
            items.push(MessageDataItem::ModSeq(modseq(uid_value)));
        }
        let Ok(items) = Vec1::try_from(items) else {
            continue;
        };
        let response = Response::Data(Data::Fetch { seq, items });
        out.extend(codec.encode(&response).dump());
        if out.len() >= SEND_BYTES {
            c.raw(std::mem::take(&mut out)).await?;
        }
    }
    if !out.is_empty() {
        c.raw(out).await?;
    }
    if !modified.is_empty() {
        // Ascending already: `resolve` gives message numbers in order, and UIDs follow them.
        if let Ok(set) = SequenceSet::try_from(compact_set(&modified).as_str()) {
            return Done::reply(status(
                Kind::Ok,
                Some(tag),
                Some(Code::Modified(set)),
                "conditional STORE failed for these; the archive keeps no flags, so none changed",
            ));
        }
    }
    Done::reply(ok(
        tag,
        "STORE completed; the archive keeps no flags, so none changed",
    ))
}
