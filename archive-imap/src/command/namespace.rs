//! NAMESPACE (RFC 2342): one personal namespace, "" with "/" as the delimiter.

use imap_next::imap_types::core::{IString, QuotedChar, Tag};
use imap_next::imap_types::extensions::namespace::Namespace;
use imap_next::imap_types::response::Data;

use super::Done;
use crate::session::{ok, Closed, Conn, Session};

pub(crate) async fn handle(_s: &mut Session, c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    let personal = IString::try_from("")
        .map(|prefix| Namespace {
            prefix,
            delimiter: QuotedChar::try_from('/').ok(),
            extensions: Vec::new(),
        })
        .into_iter()
        .collect();
    c.data(Data::Namespace {
        personal,
        other: Vec::new(),
        shared: Vec::new(),
    })
    .await?;
    Done::reply(ok(tag, "NAMESPACE completed"))
}
