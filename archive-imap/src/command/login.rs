//! LOGIN: password authentication through the store's login gate. Shared with AUTHENTICATE
//! PLAIN (`verify`), so both paths check TLS, audit and answer the same way.

use archive_core::access::LoginRefused;
use archive_core::audit::AuditEvent;
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

/// Checks credentials through the store's [`LoginGate`] (rate limit, users file, audit
/// record) and on success logs the session in. The client learns only success, failure or
/// "try later", never why a login failed.
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
    let outcome = blocking(|| s.gate.login(&s.store, user, password, s.peer.ip(), "imap"));
    match outcome {
        Ok(who) => {
            let Some(session) = s.user_sessions.enter(&who.name) else {
                tracing::info!(user = %who.name, peer = %s.peer, "imap login: too many sessions");
                // The gate recorded the verified login; the trail also says it was turned away.
                let event = AuditEvent::login_failed(&who.name, "imap", s.peer.ip(), "session-limit");
                if let Err(e) = blocking(|| s.store.append_audit(&event)) {
                    tracing::error!(error = %e, "cannot append an audit record");
                }
                return no(
                    tag,
                    Some(code("LIMIT")),
                    "too many sessions of this user; close one and try again",
                );
            };
            if !s.slot.authenticate() {
                tracing::info!(user = %who.name, peer = %s.peer, "imap login: logged-in pool full");
                let event = AuditEvent::login_failed(&who.name, "imap", s.peer.ip(), "connection-limit");
                if let Err(e) = blocking(|| s.store.append_audit(&event)) {
                    tracing::error!(error = %e, "cannot append an audit record");
                }
                return no(
                    tag,
                    Some(code("LIMIT")),
                    "too many logged-in connections; try again later",
                );
            }
            tracing::info!(user = %who.name, peer = %s.peer, "imap login");
            s.user = Some(User {
                name: who.name,
                principal: who.principal,
                _session: session,
            });
            status(
                Kind::Ok,
                Some(tag),
                Some(Code::Capability(capabilities(s))),
                "logged in; this archive is read-only",
            )
        }
        Err(LoginRefused::Failed) => {
            tracing::info!(user, peer = %s.peer, "imap login failed");
            no(
                tag,
                Some(code("AUTHENTICATIONFAILED")),
                "invalid user name or password",
            )
        }
        Err(LoginRefused::RateLimited(wait)) => {
            tracing::info!(user, peer = %s.peer, "imap login rate-limited");
            no(tag, Some(code("UNAVAILABLE")), &wait.to_string())
        }
        Err(LoginRefused::Unavailable(why)) => {
            tracing::error!(error = %why, "imap login unavailable");
            no(
                tag,
                Some(code("UNAVAILABLE")),
                "logins are unavailable right now; try again later",
            )
        }
    }
}
