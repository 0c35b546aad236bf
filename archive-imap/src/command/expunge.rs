//! EXPUNGE: answered OK, and nothing is expunged. It removes the messages that have the
//! `\Deleted` flag (RFC 3501 §6.4.3), and none has: the archive keeps no flags
//! (PERMANENTFLAGS is empty, STORE changes nothing, `store.rs`). Dovecot answers the same
//! for a mailbox its read-only ACL protects, after SELECT and after EXAMINE ("Expunge
//! completed", nothing gone). A NO here failed offlineimap's default sync whenever a message
//! had been deleted locally (it asserts that EXPUNGE succeeds, issue #14). UID EXPUNGE
//! (UIDPLUS, not offered) stays refused (`refused.rs`).

use imap_next::imap_types::core::Tag;

use super::Done;
use crate::session::{ok, Closed, Conn, Session};

pub(crate) async fn handle(_s: &mut Session, _c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    Done::reply(ok(
        tag,
        "EXPUNGE completed; no message is \\Deleted here, so none was expunged",
    ))
}
