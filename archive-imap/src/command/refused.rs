//! Every command that would change something: refused with a clear NO, and nothing
//! changes (DESIGN invariant 3). There is no write path behind this file to reach. (Flag
//! changes and EXPUNGE are the exceptions: they answer OK and change nothing, `store.rs`,
//! `expunge.rs`.)

use imap_next::imap_types::command::CommandBody;
use imap_next::imap_types::core::Tag;

use super::Done;
use crate::session::{code, no, Closed, Conn, Session};

pub(crate) async fn handle(
    _s: &mut Session,
    _c: &mut Conn,
    tag: Tag<'static>,
    body: &CommandBody<'_>,
) -> Result<Done, Closed> {
    let status = match body {
        // Not [READ-ONLY]: after SELECT ([READ-WRITE]) that code says the mailbox has become
        // read-only (RFC 3501 §7.1), and imaplib and offlineimap's imaplib2 then refuse every
        // later command of the session.
        CommandBody::Copy { .. } | CommandBody::Move { .. } => no(
            tag,
            Some(code("CANNOT")),
            "the archive is read-only: messages cannot be copied or moved",
        ),
        CommandBody::ExpungeUid { .. } => no(
            tag,
            Some(code("CANNOT")),
            "the archive is read-only: nothing is ever deleted",
        ),
        CommandBody::Append { .. } => no(
            tag,
            Some(code("CANNOT")),
            "the archive is read-only: mail arrives only by journaling",
        ),
        CommandBody::Create { .. } | CommandBody::Delete { .. } | CommandBody::Rename { .. } => no(
            tag,
            Some(code("CANNOT")),
            "mailboxes are fixed views of the archive and cannot be created, deleted or renamed",
        ),
        CommandBody::Subscribe { .. } | CommandBody::Unsubscribe { .. } => no(
            tag,
            Some(code("CANNOT")),
            "every mailbox is always subscribed; subscriptions cannot change",
        ),
        CommandBody::GetQuota { .. } | CommandBody::GetQuotaRoot { .. } => {
            no(tag, Some(code("CANNOT")), "there are no quotas")
        }
        _ => no(
            tag,
            Some(code("CANNOT")),
            "not supported by this read-only archive",
        ),
    };
    Done::reply(status)
}
