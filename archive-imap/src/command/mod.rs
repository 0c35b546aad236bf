//! One file per IMAP command (STYLE.md): each decides what its command means for the
//! archive and answers it; `dispatch` checks the session state and routes.
//!
//! Handlers return the tagged status instead of sending it, so that new mail is announced
//! (EXISTS) before every tagged OK in the selected state, in one place.

pub(crate) mod authenticate;
mod capability;
mod check;
mod close;
mod enable;
mod expunge;
mod fetch;
mod id;
pub(crate) mod idle;
mod list;
mod login;
mod logout;
mod namespace;
mod noop;
mod refused;
mod search;
mod select;
mod sort;
mod starttls;
mod status;
mod store;
mod thread;
mod unselect;

use archive_core::access::{Authenticated, LoginRefused};
use imap_next::imap_types::command::CommandBody;
use imap_next::imap_types::core::Tag;
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Status};

use crate::esearch::Returns;
use crate::session::{bad, blocking, code, no, Closed, Conn, Flow, Session};

pub(crate) use capability::capabilities;
#[cfg(feature = "fuzzing")]
pub(crate) use list::matches as list_matches;
pub(crate) use search::MAX_KEY_DEPTH;

/// A command's outcome: the tagged status, and what the connection does next.
pub(crate) struct Done {
    pub status: Status<'static>,
    pub flow: Flow,
}

impl Done {
    pub fn reply(status: Status<'static>) -> Result<Done, Closed> {
        Ok(Done {
            status,
            flow: Flow::Continue,
        })
    }
}

/// The state a command needs.
enum Needs {
    Any,
    NotAuthenticated,
    Authenticated,
    Selected,
}

/// Routes a command to its handler if the session is in a state that allows it. `returns`:
/// the RFC 4731 result options of a SEARCH (RFC 5267 ESORT ones of a SORT) that asked for an
/// ESEARCH answer.
pub(crate) async fn dispatch(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    body: CommandBody<'static>,
    returns: Option<Returns>,
) -> Result<Flow, Closed> {
    s.commands.count(body.name());
    let needs = match &body {
        CommandBody::Capability | CommandBody::Noop | CommandBody::Logout | CommandBody::Id { .. } => {
            Needs::Any
        }
        CommandBody::StartTLS | CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
            Needs::NotAuthenticated
        }
        CommandBody::Fetch { .. }
        | CommandBody::Search { .. }
        | CommandBody::Sort { .. }
        | CommandBody::Thread { .. }
        | CommandBody::Check
        | CommandBody::Close
        | CommandBody::Unselect
        | CommandBody::Store { .. }
        | CommandBody::Copy { .. }
        | CommandBody::Move { .. }
        | CommandBody::Expunge
        | CommandBody::ExpungeUid { .. } => Needs::Selected,
        _ => Needs::Authenticated,
    };
    let refusal = match needs {
        Needs::Any => None,
        Needs::NotAuthenticated if s.user.is_some() => Some("already logged in"),
        Needs::NotAuthenticated => None,
        Needs::Authenticated | Needs::Selected if s.user.is_none() => {
            Some("log in first (LOGIN or AUTHENTICATE)")
        }
        Needs::Selected if s.selected.is_none() => Some("no mailbox selected (SELECT or EXAMINE first)"),
        // RFC 5161: only before a mailbox is selected.
        _ if matches!(body, CommandBody::Enable { .. }) && s.selected.is_some() => {
            Some("ENABLE only before a mailbox is selected (RFC 5161)")
        }
        _ => None,
    };
    if let Some(why) = refusal {
        c.status(bad(tag, why)).await?;
        return Ok(Flow::Continue);
    }
    if matches!(needs, Needs::Authenticated | Needs::Selected) {
        if let Some(ended) = recheck(s) {
            // As LOGOUT: BYE, the tagged answer, close.
            if let Some(why) = ended.bye {
                c.bye(why).await?;
                c.status(no(tag, ended.code, why)).await?;
                return Ok(Flow::Close);
            }
            c.status(no(tag, ended.code, ended.text)).await?;
            return Ok(Flow::Continue);
        }
    }
    let done = match body {
        CommandBody::Capability => capability::handle(s, c, tag).await,
        CommandBody::Noop => noop::handle(s, c, tag).await,
        CommandBody::Logout => logout::handle(s, c, tag).await,
        CommandBody::Id { .. } => id::handle(s, c, tag).await,
        CommandBody::StartTLS => starttls::handle(s, c, tag).await,
        CommandBody::Login { username, password } => login::handle(s, c, tag, username, password).await,
        CommandBody::Enable { capabilities } => enable::handle(s, c, tag, capabilities).await,
        CommandBody::Namespace => namespace::handle(s, c, tag).await,
        CommandBody::List {
            reference,
            mailbox_wildcard,
        } => list::handle(s, c, tag, reference, mailbox_wildcard, false).await,
        CommandBody::Lsub {
            reference,
            mailbox_wildcard,
        } => list::handle(s, c, tag, reference, mailbox_wildcard, true).await,
        CommandBody::Status { mailbox, item_names } => status::handle(s, c, tag, mailbox, &item_names).await,
        CommandBody::Select { mailbox, parameters } => {
            select::handle(s, c, tag, mailbox, parameters, false).await
        }
        CommandBody::Examine { mailbox, parameters } => {
            select::handle(s, c, tag, mailbox, parameters, true).await
        }
        CommandBody::Check => check::handle(s, c, tag).await,
        CommandBody::Close => close::handle(s, c, tag).await,
        CommandBody::Unselect => unselect::handle(s, c, tag).await,
        CommandBody::Expunge => expunge::handle(s, c, tag).await,
        CommandBody::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            modifiers,
        } => {
            let request = fetch::Request {
                set: sequence_set,
                items: macro_or_item_names,
                uid,
                modifiers,
            };
            fetch::handle(s, c, tag, request).await
        }
        CommandBody::Search {
            charset,
            criteria,
            uid,
        } => search::handle(s, c, tag, charset, criteria, uid, returns).await,
        CommandBody::Sort {
            sort_criteria,
            charset,
            search_criteria,
            uid,
        } => {
            let request = sort::Request {
                criteria: sort_criteria,
                charset,
                search: search_criteria,
                uid,
                returns,
            };
            sort::handle(s, c, tag, request).await
        }
        CommandBody::Thread {
            algorithm,
            charset,
            search_criteria,
            uid,
        } => thread::handle(s, c, tag, algorithm, charset, search_criteria, uid).await,
        CommandBody::Store {
            sequence_set,
            response,
            uid,
            modifiers,
            ..
        } => store::handle(s, c, tag, sequence_set, response, uid, modifiers).await,
        other => refused::handle(s, c, tag, &other).await,
    }?;
    // New mail shows as EXISTS on the next command (issue #5), before its tagged OK.
    if !matches!(done.flow, Flow::Close) {
        s.announce_new_mail(c).await?;
    }
    c.status(done.status).await?;
    Ok(done.flow)
}

/// Why a logged-in session may not run its command: `bye` ends the session.
struct Ended {
    bye: Option<&'static str>,
    code: Option<Code<'static>>,
    text: &'static str,
}

/// Asks the login gate who the session's user is now (`LoginGate::recheck`: the users file as
/// it is now, no password): a user disabled since the login gets BYE at their next command, and
/// so does one whose scope changed (their mailboxes, UIDs and UIDVALIDITY are those of the old
/// scope; logging in again gives the new ones). `None`: go on.
fn recheck(s: &Session) -> Option<Ended> {
    let user = s.user.as_ref()?;
    let who = Authenticated {
        name: user.name.clone(),
        principal: user.principal.clone(),
    };
    let now = blocking(|| s.gate.recheck(&s.store, &who, s.peer.ip(), "imap"));
    let (bye, code, text) = match now {
        Ok(now) if now.principal == user.principal => return None,
        Ok(_) => (
            Some("your access changed: log in again"),
            None,
            "your access changed: log in again",
        ),
        Err(LoginRefused::Failed) => (
            Some("this account is disabled"),
            Some(code("AUTHORIZATIONFAILED")),
            "this account is disabled",
        ),
        Err(_) => (
            None,
            Some(code("UNAVAILABLE")),
            "the login cannot be checked right now; try again later",
        ),
    };
    if bye.is_some() {
        tracing::info!(user = %user.name, peer = %s.peer, text, "imap session ended: the users file changed");
    }
    Some(Ended { bye, code, text })
}

/// A mailbox name as text (`INBOX` for the INBOX, whatever its spelling).
pub(crate) fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.inner().as_ref()).into_owned(),
    }
}

/// The wire form of a mailbox name we list.
pub(crate) fn mailbox_of(name: &str) -> Mailbox<'static> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Mailbox::Inbox;
    }
    Mailbox::try_from(name.to_string()).unwrap_or(Mailbox::Inbox)
}
