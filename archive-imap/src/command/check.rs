//! CHECK: a checkpoint of the mailbox; the archive is always durable, so this is NOOP.

use imap_next::imap_types::core::Tag;

use super::Done;
use crate::session::{ok, Closed, Conn, Session};

pub(crate) async fn handle(_s: &mut Session, _c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    Done::reply(ok(tag, "CHECK completed (the archive is always durable)"))
}
