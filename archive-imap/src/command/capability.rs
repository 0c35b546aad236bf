//! CAPABILITY: what this server does, which depends on the connection (TLS, login state).

use imap_next::imap_types::auth::AuthMechanism;
use imap_next::imap_types::core::{Atom, Tag, Vec1};
use imap_next::imap_types::extensions::sort::SortAlgorithm;
use imap_next::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_next::imap_types::response::{Capability, Data};

use super::Done;
use crate::session::{ok, Closed, Conn, Session};

/// The capabilities to announce now. ESEARCH and ESORT are ours (`protocol` cuts
/// `RETURN (…)` out before imap-codec parses SEARCH or SORT); CONDSTORE is `condstore`. No
/// LIST-EXTENDED, QRESYNC or CONTEXT=SORT: not implemented (docs/OPERATIONS.md §IMAP says
/// why). No UIDPLUS/MOVE: nothing can be written.
pub(crate) fn capabilities(s: &Session) -> Vec1<Capability<'static>> {
    let mut caps = vec![
        Capability::Imap4Rev1,
        Capability::LiteralPlus,
        Capability::SaslIr,
        Capability::Id,
        Capability::Enable,
        Capability::Idle,
    ];
    if s.user.is_none() {
        if s.starttls {
            caps.push(Capability::StartTls);
        }
        if s.login_needs_tls && !s.tls {
            caps.push(Capability::LoginDisabled);
        } else {
            caps.push(Capability::Auth(AuthMechanism::Plain));
        }
    } else {
        caps.push(Capability::Unselect);
        caps.push(Capability::Namespace);
        caps.push(Capability::Binary);
        caps.push(Capability::CondStore);
        caps.push(Capability::Sort(None));
        caps.push(Capability::Sort(Some(SortAlgorithm::Display)));
        caps.push(Capability::Thread(ThreadingAlgorithm::OrderedSubject));
        caps.push(Capability::Thread(ThreadingAlgorithm::References));
        for name in ["SPECIAL-USE", "CHILDREN", "ESEARCH", "ESORT"] {
            if let Ok(atom) = Atom::try_from(name) {
                caps.push(Capability::from(atom));
            }
        }
    }
    Vec1::try_from(caps).unwrap_or_else(|_| Vec1::from(Capability::Imap4Rev1))
}

pub(crate) async fn handle(s: &mut Session, c: &mut Conn, tag: Tag<'static>) -> Result<Done, Closed> {
    c.data(Data::Capability(capabilities(s))).await?;
    Done::reply(ok(tag, "CAPABILITY completed"))
}
