//! ENABLE (RFC 5161): CONDSTORE can be enabled (RFC 7162 §3.1, `condstore`); nothing else
//! offered needs enabling, so nothing else is enabled.

use imap_next::imap_types::core::{Tag, Vec1};
use imap_next::imap_types::extensions::enable::CapabilityEnable;
use imap_next::imap_types::response::Data;

use super::Done;
use crate::session::{ok, Closed, Conn, Session};

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    asked: Vec1<CapabilityEnable<'static>>,
) -> Result<Done, Closed> {
    let mut enabled = Vec::new();
    if asked.as_ref().contains(&CapabilityEnable::CondStore) {
        // ENABLE comes before any SELECT (`dispatch`), so there is no HIGHESTMODSEQ to send.
        s.enable_condstore(c).await?;
        enabled.push(CapabilityEnable::CondStore);
    }
    c.data(Data::Enabled {
        capabilities: enabled,
    })
    .await?;
    Done::reply(ok(tag, "ENABLE completed"))
}
