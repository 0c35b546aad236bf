//! IDLE (RFC 2177): the session loop polls the view while idling and sends EXISTS within a
//! second of new mail (`Session::announce_new_mail`); DONE ends it.

use imap_next::imap_types::core::Tag;
use imap_next::imap_types::response::CommandContinuationRequest;

use crate::session::{bad, ok, Closed, Conn, Flow, Session};

pub(crate) async fn start(s: &mut Session, c: &mut Conn, tag: Tag<'static>) -> Result<Flow, Closed> {
    if s.user.is_none() {
        let h = c
            .server
            .idle_reject(bad(tag, "log in first"))
            .map_err(|_| Closed)?;
        c.drive_to(h).await?;
        return Ok(Flow::Continue);
    }
    let cont = CommandContinuationRequest::basic(None, "idling now").map_err(|_| Closed)?;
    let h = c.server.idle_accept(cont).map_err(|_| Closed)?;
    s.idle_tag = Some(tag);
    c.drive_to(h).await?;
    Ok(Flow::Continue)
}

pub(crate) async fn done(s: &mut Session, c: &mut Conn) -> Result<Flow, Closed> {
    s.announce_new_mail(c).await?;
    if let Some(tag) = s.idle_tag.take() {
        c.status(ok(tag, "IDLE terminated")).await?;
    }
    Ok(Flow::Continue)
}
