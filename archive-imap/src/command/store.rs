//! STORE and UID STORE: answered OK, and nothing changes. The archive keeps no flags (every
//! message is `\Seen`, PERMANENTFLAGS is empty), so a flag change is ignored the way
//! Dovecot ignores flags a read-only ACL gives no right to (RFC 4314 §4): OK, and the FETCH
//! responses (unless `.SILENT`) report the flags as they are, unchanged. A NO here made
//! mbsync's default `Sync All` abort on its first flag change (issue #14); copying, moving,
//! expunging and appending stay refused (`refused.rs`). Nothing is written: no flag, and
//! no audit record either, since nothing was read or changed.

use std::num::NonZeroU32;

use imap_codec::encode::Encoder;
use imap_codec::ResponseCodec;
use imap_next::imap_types::core::{Tag, Vec1};
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::flag::StoreResponse;
use imap_next::imap_types::response::{Data, Response};
use imap_next::imap_types::sequence::SequenceSet;

use super::fetch::message_flags;
use super::Done;
use crate::sequence::resolve;
use crate::session::{bad, ok, Closed, Conn, Session};

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
) -> Result<Done, Closed> {
    let Some(sel) = &s.selected else {
        return Done::reply(bad(tag, "no mailbox selected"));
    };
    let view = sel.view.clone();
    let numbers = match resolve(&set, &view, uid) {
        Ok(numbers) => numbers,
        Err(_) => return Done::reply(bad(tag, "the mailbox is empty: no message numbers exist")),
    };
    if matches!(response, StoreResponse::Answer) {
        let codec = ResponseCodec::default();
        let mut out = Vec::new();
        // One response per message named: bounded by the mailbox, each message once.
        for n in numbers.iter() {
            let (Some(uid_value), Ok(seq)) = (view.uid_at(n), u32::try_from(n)) else {
                continue;
            };
            let Some(seq) = NonZeroU32::new(seq) else {
                continue;
            };
            let flags = MessageDataItem::Flags(message_flags());
            let items = match u32::try_from(uid_value).ok().and_then(NonZeroU32::new) {
                // UID STORE answers carry the UID (RFC 3501 §6.4.8).
                Some(u) if uid => Vec1::try_from(vec![MessageDataItem::Uid(u), flags]),
                _ => Vec1::try_from(vec![flags]),
            };
            let Ok(items) = items else { continue };
            let response = Response::Data(Data::Fetch { seq, items });
            out.extend(codec.encode(&response).dump());
            if out.len() >= SEND_BYTES {
                c.raw(std::mem::take(&mut out)).await?;
            }
        }
        if !out.is_empty() {
            c.raw(out).await?;
        }
    }
    Done::reply(ok(
        tag,
        "STORE completed; the archive keeps no flags, so none changed",
    ))
}
