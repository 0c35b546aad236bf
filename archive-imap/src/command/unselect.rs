//! UNSELECT (RFC 3691): leave the mailbox.

use imap_next::imap_types::core::Tag;

use super::Done;
use crate::session::{ok, Closed, Conn, Session};

pub(crate) async fn handle(s: &mut Session, _c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    s.selected = None;
    Done::reply(ok(tag, "UNSELECT completed"))
}
