//! NOOP: nothing, except that new mail is announced (by `dispatch`, as after every command).

use imap_next::imap_types::core::Tag;

use super::Done;
use crate::session::{ok, Closed, Conn, Session};

pub(crate) async fn handle(_s: &mut Session, _c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    Done::reply(ok(tag, "NOOP completed"))
}
