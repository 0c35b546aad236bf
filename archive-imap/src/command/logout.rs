//! LOGOUT: BYE, tagged OK, close.

use imap_next::imap_types::core::Tag;
use imap_next::imap_types::response::Status;

use super::Done;
use crate::session::{ok, Closed, Conn, Flow, Session};

pub(crate) async fn handle(_s: &mut Session, c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    if let Ok(bye) = Status::bye(None, "mailvault archive logging out") {
        c.status(bye).await?;
    }
    Ok(Done {
        status: ok(tag, "LOGOUT completed"),
        flow: Flow::Close,
    })
}
