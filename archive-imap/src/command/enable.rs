//! ENABLE (RFC 5161): no extension here needs enabling, so none is enabled.

use imap_next::imap_types::core::Tag;
use imap_next::imap_types::response::Data;

use super::Done;
use crate::session::{ok, Closed, Conn, Session};

pub(crate) async fn handle(_s: &mut Session, c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    c.data(Data::Enabled {
        capabilities: Vec::new(),
    })
    .await?;
    Done::reply(ok(tag, "ENABLE completed"))
}
