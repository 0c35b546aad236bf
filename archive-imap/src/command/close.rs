//! CLOSE: leave the mailbox. It would expunge \Deleted messages, but nothing is ever
//! deleted here, so it is UNSELECT.

use imap_next::imap_types::core::Tag;

use super::Done;
use crate::session::{ok, Closed, Conn, Session};

pub(crate) async fn handle(s: &mut Session, _c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    s.selected = None;
    Done::reply(ok(
        tag,
        "CLOSE completed; nothing was expunged (read-only archive)",
    ))
}
