//! STATUS: counts of a view without selecting it. Every message is \Seen and nothing is
//! recent or deleted in an archive. HIGHESTMODSEQ (RFC 7162 §3.1.7) is the view's
//! (`condstore`); asking for it enables CONDSTORE.

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_next::imap_types::core::Tag;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::Data;
use imap_next::imap_types::status::{StatusDataItem, StatusDataItemName};

use super::select::open_view;
use super::{mailbox_name, mailbox_of, Done};
use crate::condstore::highest_modseq;
use crate::session::{ok, Closed, Conn, Session};

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    mailbox: Mailbox<'static>,
    names: &[StatusDataItemName],
) -> Result<Done, Closed> {
    let name = mailbox_name(&mailbox);
    let (view, uid_next) = match open_view(s, &name) {
        Ok(v) => v,
        Err(status) => return Done::reply(status.with_tag(tag)),
    };
    let validity = NonZeroU32::new(view.uid_validity()).unwrap_or(NonZeroU32::MIN);
    if names.contains(&StatusDataItemName::HighestModSeq) {
        s.enable_condstore(c).await?;
    }
    let items: Vec<StatusDataItem> = names
        .iter()
        .filter_map(|n| match n {
            StatusDataItemName::Messages => Some(StatusDataItem::Messages(
                u32::try_from(view.len()).unwrap_or(u32::MAX),
            )),
            StatusDataItemName::Recent => Some(StatusDataItem::Recent(0)),
            StatusDataItemName::UidNext => Some(StatusDataItem::UidNext(uid_next)),
            StatusDataItemName::UidValidity => Some(StatusDataItem::UidValidity(validity)),
            StatusDataItemName::Unseen => Some(StatusDataItem::Unseen(0)),
            StatusDataItemName::Deleted => Some(StatusDataItem::Deleted(0)),
            StatusDataItemName::DeletedStorage => Some(StatusDataItem::DeletedStorage(0)),
            StatusDataItemName::HighestModSeq => {
                Some(StatusDataItem::HighestModSeq(highest_modseq(&view).get()))
            }
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .collect();
    c.data(Data::Status {
        mailbox: mailbox_of(view.mailbox()),
        items: Cow::Owned(items),
    })
    .await?;
    Done::reply(ok(tag, "STATUS completed"))
}
