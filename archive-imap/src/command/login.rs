//! LOGIN: password authentication through the store's login gate. Shared with AUTHENTICATE
//! PLAIN (`verify`), so both paths check TLS, audit and answer the same way.

use archive_core::access::LoginRefused;
use archive_core::audit::AuditEvent;
use imap_next::imap_types::core::{AString, Tag};
use imap_next::imap_types::response::{Code, Status};
use imap_next::imap_types::secret::Secret;

use super::{capabilities, Done};
use crate::session::{blocking, code, no, status, Closed, Conn, Flow, Kind, Session, User};

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    username: AString<'static>,
    password: Secret<AString<'static>>,
) -> Result<Done, Closed> {
    let user = String::from_utf8_lossy(username.as_ref()).into_owned();
    let password = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
    let verdict = verify(s, tag, &user, &password);
    if let Some(why) = verdict.bye {
        // As LOGOUT: BYE, the tagged answer, close.
        c.bye(why).await?;
        return Ok(Done {
            status: verdict.status,
            flow: Flow::Close,
        });
    }
    Done::reply(verdict.status)
}

/// The answer to a login attempt.
pub(crate) struct Verdict {
    /// The tagged answer.
    pub status: Status<'static>,
    /// The connection is closed, with this `* BYE` before the tagged answer.
    pub bye: Option<&'static str>,
}

impl From<Status<'static>> for Verdict {
    fn from(status: Status<'static>) -> Verdict {
        Verdict { status, bye: None }
    }
}

/// Checks credentials through the store's [`LoginGate`] (rate limit, users file, audit
/// record) and on success logs the session in. The client learns only success, failure or
/// "try later", never why a login failed. A login refused for a limit (sessions of the
/// user, logged-in connections) also ends the connection, as Dovecot does: the client would
/// otherwise hold a waiting slot until its login deadline, and mail clients reconnect
/// later but may ask the user for another password after a NO on a live connection.
pub(crate) fn verify(s: &mut Session, tag: Tag<'static>, user: &str, password: &str) -> Verdict {
    if s.login_needs_tls && !s.tls {
        return no(
            tag,
            Some(code("PRIVACYREQUIRED")),
            "passwords only over TLS: use STARTTLS or the TLS port",
        )
        .into();
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
                return Verdict {
                    status: no(
                        tag,
                        Some(code("LIMIT")),
                        "too many sessions of this user; close one and try again",
                    ),
                    bye: Some("too many sessions of this user"),
                };
            };
            if !s.slot.authenticate() {
                tracing::info!(user = %who.name, peer = %s.peer, "imap login: logged-in pool full");
                let event = AuditEvent::login_failed(&who.name, "imap", s.peer.ip(), "connection-limit");
                if let Err(e) = blocking(|| s.store.append_audit(&event)) {
                    tracing::error!(error = %e, "cannot append an audit record");
                }
                return Verdict {
                    status: no(
                        tag,
                        Some(code("LIMIT")),
                        "too many logged-in connections; try again later",
                    ),
                    bye: Some("too many logged-in connections"),
                };
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
            .into()
        }
        Err(LoginRefused::Failed) => {
            tracing::info!(user, peer = %s.peer, "imap login failed");
            no(
                tag,
                Some(code("AUTHENTICATIONFAILED")),
                "invalid user name or password",
            )
            .into()
        }
        Err(LoginRefused::RateLimited(wait)) => {
            tracing::info!(user, peer = %s.peer, "imap login rate-limited");
            no(tag, Some(code("UNAVAILABLE")), &wait.to_string()).into()
        }
        Err(LoginRefused::Unavailable(why)) => {
            tracing::error!(error = %why, "imap login unavailable");
            no(
                tag,
                Some(code("UNAVAILABLE")),
                "logins are unavailable right now; try again later",
            )
            .into()
        }
    }
}
