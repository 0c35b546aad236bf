//! STARTTLS: answer OK, then the connection switches to TLS with a fresh protocol state
//! (so nothing pipelined in plain text is ever read as if it came over TLS).

use imap_next::imap_types::core::Tag;

use super::Done;
use crate::session::{bad, ok, Closed, Conn, Flow, Session};

pub(crate) async fn handle(s: &mut Session, _c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    if !s.starttls {
        return Done::reply(bad(tag, "STARTTLS is not available on this connection"));
    }
    Ok(Done {
        status: ok(tag, "begin TLS negotiation now"),
        flow: Flow::StartTls,
    })
}
