//! The one conversation mailvault has with the upstream IMAP server: read the greeting,
//! STARTTLS when the endpoint asks for it, LOGIN, LOGOUT. The socket, the framing and the
//! codec are the shared [`crate::imap_client::Connection`]; one deadline for the whole
//! conversation: the login gate runs on a thread that may block.
//!
//! The password leaves this module only inside the TLS connection: LOGIN is sent after the
//! handshake (and its certificate check) succeeded, never on a plain connection, and no error
//! message holds it (server text quoted in one is bounded and made printable).

use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::response::{Code, GreetingKind, StatusBody, StatusKind};
use rustls::ClientConfig;

use super::endpoint::{Endpoint, Security};
use crate::imap_client::{printable, Connection};

/// Most bytes of one server response kept: LOGIN and LOGOUT answer in a few lines; a longer
/// response is skipped (and its bytes dropped), never buffered.
const MAX_RESPONSE: u32 = 64 * 1024;

/// How long LOGOUT may take after the verdict is in.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the upstream said to the credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Tagged OK to LOGIN.
    Accepted,
    /// Tagged NO to LOGIN (wrong password, unknown user, account problem).
    Rejected,
    /// No verdict: network, TLS or protocol trouble, or a NO that says the server cannot
    /// check right now (`[UNAVAILABLE]` and friends). Says why, for the server log.
    Unavailable(String),
}

/// Asks `endpoint` whether `login`/`password` may log in, within `timeout` in all.
pub fn check_login(
    endpoint: &Endpoint,
    tls: &Arc<ClientConfig>,
    timeout: Duration,
    login: &str,
    password: &str,
) -> Answer {
    let Ok(body) = CommandBody::login(login, password) else {
        // Only a NUL cannot be sent (not even as a literal): no account has such a
        // name or password.
        return Answer::Rejected;
    };
    let deadline = Instant::now() + timeout;
    let mut conn = match open(endpoint, tls, deadline) {
        Ok(conn) => conn,
        Err(why) => return Answer::Unavailable(why),
    };
    match conn.command(body, &mut |_| {}) {
        Ok(status) => {
            // A polite goodbye, briefly: the verdict stands whatever happens to it.
            conn.deadline = conn.deadline.min(Instant::now() + LOGOUT_TIMEOUT);
            let _ = conn.command(CommandBody::Logout, &mut |_| {});
            judge_login(&status)
        }
        Err(why) => Answer::Unavailable(why),
    }
}

/// The verdict in LOGIN's tagged status. A NO with a response code (RFC 5530) that says the
/// server could not check — rather than that the credentials are wrong — is no verdict.
fn judge_login(status: &StatusBody<'_>) -> Answer {
    let text = printable(status.text.as_ref());
    match status.kind {
        StatusKind::Ok => Answer::Accepted,
        StatusKind::Bad => Answer::Unavailable(format!("LOGIN answered BAD: {text}")),
        StatusKind::No => match status.code.as_ref().map(code_name) {
            Some(code)
                if ["UNAVAILABLE", "SERVERBUG", "PRIVACYREQUIRED", "LIMIT"].contains(&code.as_str()) =>
            {
                Answer::Unavailable(format!("LOGIN answered NO [{code}]: {text}"))
            }
            _ => Answer::Rejected,
        },
    }
}

/// A response code's name in upper case (`UNAVAILABLE`); codes imap-codec knows by name are
/// not among those [`judge_login`] looks for.
fn code_name(code: &Code<'_>) -> String {
    match code {
        Code::Other(other) => String::from_utf8_lossy(other.inner())
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase(),
        _ => String::new(),
    }
}

/// Connects, reads the greeting and makes the connection private (TLS from the start, or
/// STARTTLS). Returns only a connection on which the certificate has been verified.
fn open(endpoint: &Endpoint, tls: &Arc<ClientConfig>, deadline: Instant) -> Result<Connection, String> {
    let mut conn = Connection::connect(&endpoint.host, endpoint.port, deadline, MAX_RESPONSE)?;
    if endpoint.security == Security::Tls {
        conn.start_tls(tls, &endpoint.server_name)?;
    }
    let greeting = conn.greeting()?;
    match greeting.kind {
        GreetingKind::Ok => {}
        GreetingKind::PreAuth => return Err("greeted with PREAUTH: it does not check passwords".into()),
        GreetingKind::Bye => return Err(format!("greeted with BYE: {}", printable(greeting.text.as_ref()))),
    }
    if endpoint.security == Security::StartTls {
        conn.starttls(tls, &endpoint.server_name)?;
    }
    Ok(conn)
}
