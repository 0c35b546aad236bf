//! ID (RFC 2971): name the server; the client's parameters are not used.

use imap_next::imap_types::core::{IString, NString, Tag};
use imap_next::imap_types::response::Data;

use super::Done;
use crate::session::{ok, Closed, Conn, Session};

pub(crate) async fn handle(_s: &mut Session, c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    let pair = |k: &'static str, v: &'static str| -> Option<(IString<'static>, NString<'static>)> {
        Some((IString::try_from(k).ok()?, NString::try_from(v).ok()?))
    };
    let parameters: Vec<_> = [
        pair("name", "mailvault"),
        pair("version", env!("CARGO_PKG_VERSION")),
    ]
    .into_iter()
    .flatten()
    .collect();
    c.data(Data::Id {
        parameters: Some(parameters),
    })
    .await?;
    Done::reply(ok(tag, "ID completed"))
}
