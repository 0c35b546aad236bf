//! LOGIN: password authentication through the [`crate::Authenticator`]. Shared with
//! AUTHENTICATE PLAIN (`verify`), so both paths check TLS, audit and answer the same way.

use imap_next::imap_types::core::{AString, Tag};
use imap_next::imap_types::response::Code;
use imap_next::imap_types::secret::Secret;

use super::{capabilities, Done};
use crate::session::{blocking, code, no, status, Closed, Conn, Kind, Session, User};

pub(crate) async fn handle(
    s: &mut Session,
    _c: &mut Conn,
    tag: Tag<'static>,
    username: AString<'static>,
    password: Secret<AString<'static>>,
) -> Result<Done, Closed> {
    let user = String::from_utf8_lossy(username.as_ref()).into_owned();
    let password = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
    Done::reply(verify(s, tag, &user, &password))
}

/// Checks credentials, records the attempt, and on success logs the session in. The client
/// learns only success or failure, never why.
///
/// The audit records here are the front door's because the `Authenticator` contract does not
/// include them; `archive_core::access::LoginGate` (landed on main meanwhile) appends its own,
/// so wiring it means dropping these two appends, not adding a third.
pub(crate) fn verify(
    s: &mut Session,
    tag: Tag<'static>,
    user: &str,
    password: &str,
) -> imap_next::imap_types::response::Status<'static> {
    if s.login_needs_tls && !s.tls {
        return no(
            tag,
            Some(code("PRIVACYREQUIRED")),
            "passwords only over TLS: use STARTTLS or the TLS port",
        );
    }
    let outcome = blocking(|| s.auth.authenticate(user, password, s.peer.ip()));
    match outcome {
        Ok(principal) => {
            s.user = Some(User {
                name: user.to_string(),
                principal,
            });
            if let Err(why) = s.audit("login", "imap".into()) {
                s.user = None;
                return no(tag, Some(code("UNAVAILABLE")), &why);
            }
            tracing::info!(user, peer = %s.peer, "imap login");
            status(
                Kind::Ok,
                Some(tag),
                Some(Code::Capability(capabilities(s))),
                "logged in; this archive is read-only",
            )
        }
        Err(reason) => {
            tracing::info!(user, peer = %s.peer, reason, "imap login failed");
            let event = archive_core::audit::AuditEvent {
                actor: user.to_string(),
                action: "login-failed".into(),
                target: "imap".into(),
                origin: format!("imap:{}", s.peer.ip()),
            };
            if let Err(e) = blocking(|| s.store.append_audit(&event)) {
                tracing::error!(error = %e, "cannot append an audit record");
            }
            no(
                tag,
                Some(code("AUTHENTICATIONFAILED")),
                "invalid user name or password",
            )
        }
    }
}
