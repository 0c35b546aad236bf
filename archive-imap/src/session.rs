//! One IMAP connection: the protocol state machine (`protocol::Protocol`, imap-next's server
//! with ESEARCH support) over a socket, the session state, and the loop that hands each
//! command to its file under `command/`.
//!
//! Store calls block (fsync for audit records, log reads); they run in
//! `tokio::task::block_in_place`, so the server needs the multi-threaded runtime.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use archive_core::audit::AuditEvent;
use archive_core::search::Principal;
use archive_core::views::View;
use archive_core::Store;
use imap_next::imap_types::core::{Tag, Text};
use imap_next::imap_types::response::{Code, CodeOther, Data, Status};
use imap_next::imap_types::IntoStatic;
use imap_next::server::{Error as ServerError, Event as ServerEvent};
use imap_next::stream::{Error as StreamError, Stream};

use crate::command;
use crate::config::ImapLimits;
use crate::envelope_cache::EnvelopeCache;
use crate::protocol::{Event, Protocol, Sent};
use archive_core::access::{LoginGate, PerUser, UserShare};

/// How often an IDLE client is checked for new mail (issue #5: within 1 s).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// How long a response may take to leave: a client that stops reading would otherwise hold
/// its task (and a connection slot) forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a `* BYE` may take to leave before the connection is closed anyway: a client
/// that does not read must not hold a shutdown or a slot the server is taking back.
const BYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Client messages kept while a search runs (`Conn::await_watching`).
const MAX_PENDING: usize = 64;

/// A logged-in user.
pub(crate) struct User {
    /// The login name (for audit records).
    pub name: String,
    /// What they may see.
    pub principal: Principal,
    /// Counts this session against `max_connections_per_user` while it lives.
    pub _session: UserShare,
}

/// The selected mailbox.
pub(crate) struct Selected {
    /// The view as the client knows it (its length is the EXISTS the client last saw).
    pub view: View,
}

/// Session state, independent of the socket.
pub(crate) struct Session {
    pub store: Arc<Store>,
    pub gate: Arc<LoginGate>,
    /// ENVELOPEs computed by any session.
    pub envelopes: Arc<EnvelopeCache>,
    /// Logged-in sessions per user, of all listeners (`max_connections_per_user`).
    pub user_sessions: Arc<PerUser>,
    pub peer: SocketAddr,
    pub limits: ImapLimits,
    /// TLS is active on this connection.
    pub tls: bool,
    /// STARTTLS can be offered (plain listener with a TLS acceptor, TLS not active yet).
    pub starttls: bool,
    /// Passwords are refused until TLS is active (plain listener without
    /// `allow_plaintext_login`).
    pub login_needs_tls: bool,
    /// This connection's place in the waiting or the authenticated pool (`pool`).
    pub slot: crate::pool::Slot,
    /// When a connection not logged in by then is closed (connect + `login_timeout`).
    pub login_deadline: Instant,
    pub user: Option<User>,
    pub selected: Option<Selected>,
    /// A CONDSTORE enabling command was issued (RFC 7162 §3.1): FETCH responses to STORE
    /// carry UID and MODSEQ from now on.
    pub condstore: bool,
    /// Tag of the IDLE command in progress.
    pub idle_tag: Option<Tag<'static>>,
    /// Tag of the AUTHENTICATE exchange in progress.
    pub auth_tag: Option<Tag<'static>>,
    /// Becomes true when the server shuts down: the session says BYE and ends.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Notified when a newer connection pushed this one out of the full waiting pool.
    pub pushed_out: Arc<tokio::sync::Notify>,
    /// Commands counted by name.
    pub commands: Arc<crate::metrics::Commands>,
}

/// What the connection does after a command.
pub(crate) enum Flow {
    Continue,
    /// LOGOUT or a fatal condition: flush and close.
    Close,
    /// STARTTLS accepted: flush, then switch the socket to TLS.
    StartTls,
}

/// The connection ended or must end.
#[derive(Debug)]
pub(crate) struct Closed;

impl From<std::fmt::Error> for Closed {
    fn from(_: std::fmt::Error) -> Self {
        Closed
    }
}

/// The socket and the protocol state machine, with events that arrived while a response
/// was being sent.
pub(crate) struct Conn {
    pub server: Protocol,
    pub stream: Stream,
    pending: VecDeque<Result<Event, StreamError<ServerError>>>,
}

impl Conn {
    pub fn new(server: Protocol, stream: Stream) -> Conn {
        Conn {
            server,
            stream,
            pending: VecDeque::new(),
        }
    }

    /// The next event: first those that arrived while sending, then from the socket.
    /// Cancel-safe (imap-next's `Stream::next` is).
    pub async fn next_event(&mut self) -> Result<Event, StreamError<ServerError>> {
        if let Some(e) = self.pending.pop_front() {
            return e;
        }
        self.stream.next(&mut self.server).await
    }

    /// Drives the socket until the response `handle` is in the write buffer. Commands a
    /// client pipelined meanwhile are kept for later.
    pub async fn drive_to(&mut self, handle: impl Into<Sent>) -> Result<(), Closed> {
        tokio::time::timeout(SEND_TIMEOUT, self.drive_unbounded(handle.into()))
            .await
            .map_err(|_| Closed)?
    }

    async fn drive_unbounded(&mut self, handle: Sent) -> Result<(), Closed> {
        loop {
            match self.stream.next(&mut self.server).await {
                Ok(e) if e.sent() == Some(handle) => return Ok(()),
                Ok(e) if e.sent().is_some() => {}
                Ok(Event::Server(ServerEvent::GreetingSent { .. })) => {}
                Ok(other) => self.pending.push_back(Ok(other)),
                Err(StreamError::State(e)) => self.pending.push_back(Err(StreamError::State(e))),
                Err(_) => return Err(Closed),
            }
        }
    }

    /// Waits for `work` (a search on a blocking thread) while watching the socket: commands
    /// the client pipelines meanwhile are kept for later (up to [`MAX_PENDING`]; beyond that
    /// the socket is left unread until the work ends), and if the client goes away,
    /// `gone` is called (to cancel the work) and the connection ends.
    pub async fn await_watching<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
        gone: impl FnOnce(),
    ) -> Result<T, Closed> {
        tokio::pin!(work);
        loop {
            if self.pending.len() >= MAX_PENDING {
                return Ok(work.await);
            }
            tokio::select! {
                biased;
                out = &mut work => return Ok(out),
                // Cancel-safe: imap-next's `Stream::next` is.
                event = self.stream.next(&mut self.server) => match event {
                    Ok(e) => self.pending.push_back(Ok(e)),
                    Err(StreamError::State(e)) => self.pending.push_back(Err(StreamError::State(e))),
                    Err(_) => {
                        gone();
                        return Err(Closed);
                    }
                },
            }
        }
    }

    /// Sends untagged data.
    pub async fn data(&mut self, data: Data<'static>) -> Result<(), Closed> {
        let h = self.server.enqueue_data(data);
        self.drive_to(h).await
    }

    /// Sends responses encoded already (`bytes` end in CRLF): lines imap-codec cannot encode
    /// (ESEARCH), and FETCH batches encoded off the async thread.
    pub async fn raw(&mut self, bytes: Vec<u8>) -> Result<(), Closed> {
        let h = self.server.enqueue_raw(bytes);
        self.drive_to(h).await
    }

    /// Sends a status response.
    pub async fn status(&mut self, status: Status<'static>) -> Result<(), Closed> {
        let h = self.server.enqueue_status(status);
        self.drive_to(h).await
    }

    /// Sends `* BYE <text>` and flushes, within [`BYE_TIMEOUT`] (RFC 3501 §7.1.5: the server
    /// says why before it closes). The caller closes the connection whatever this returns.
    pub async fn bye(&mut self, text: &str) -> Result<(), Closed> {
        let Ok(bye) = Status::bye(None, status_text(text));
        let h = self.server.enqueue_status(bye);
        let sent = async {
            self.drive_unbounded(h.into()).await?;
            self.stream.flush().await.map_err(|_| Closed)
        };
        tokio::time::timeout(BYE_TIMEOUT, sent)
            .await
            .map_err(|_| Closed)?
    }

    /// Writes everything buffered to the socket.
    pub async fn flush(&mut self) -> Result<(), Closed> {
        match tokio::time::timeout(SEND_TIMEOUT, self.stream.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Closed),
        }
    }
}

/// A status with text that may come from anywhere: CR, LF and non-ASCII are replaced, so
/// building it cannot fail.
pub(crate) fn status(
    kind: Kind,
    tag: Option<Tag<'static>>,
    code: Option<Code<'static>>,
    text: &str,
) -> Status<'static> {
    let text = status_text(text);
    let body = match kind {
        Kind::Ok => Status::ok(tag, code, text),
        Kind::No => Status::no(tag, code, text),
        Kind::Bad => Status::bad(tag, code, text),
    };
    // A validated Text cannot make these fail.
    body.unwrap_or_else(|_| unreachable!("status text was validated"))
}

/// Status text from text that may come from anywhere: CR, LF and non-ASCII are replaced.
fn status_text(text: &str) -> Text<'static> {
    let mut clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if clean.trim().is_empty() {
        clean = "done".into();
    }
    Text::try_from(clean).unwrap_or_else(|_| Text::unvalidated("done"))
}

/// Kinds of status responses.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Ok,
    No,
    Bad,
}

pub(crate) fn ok(tag: Tag<'static>, text: &str) -> Status<'static> {
    status(Kind::Ok, Some(tag), None, text)
}

pub(crate) fn no(tag: Tag<'static>, code: Option<Code<'static>>, text: &str) -> Status<'static> {
    status(Kind::No, Some(tag), code, text)
}

pub(crate) fn bad(tag: Tag<'static>, text: &str) -> Status<'static> {
    status(Kind::Bad, Some(tag), None, text)
}

/// An RFC 5530 response code by name (`CANNOT`, `NONEXISTENT`, …).
pub(crate) fn code(name: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(name.as_bytes()))
}

/// Runs blocking store work without stalling other connections on this worker.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Session {
    /// Appends an access event; a failure is logged, and the caller decides whether the
    /// access may go on (it may not: audit before access) and answers `NO [code] text`.
    pub fn audit(&self, action: &str, target: String) -> Result<(), (Option<Code<'static>>, String)> {
        let actor = self.user.as_ref().map(|u| u.name.as_str()).unwrap_or_default();
        self.append_audit(&AuditEvent::new(
            actor,
            action,
            target,
            &self.peer.ip().to_string(),
        ))
    }

    /// Appends the one `view` record of a FETCH (`AuditEvent::view`: the mailbox, the set as
    /// written, how many messages, their UIDs); fails like [`Session::audit`].
    pub fn audit_view(
        &self,
        view: &View,
        set: &str,
        uid: bool,
        uids: &[u64],
    ) -> Result<(), (Option<Code<'static>>, String)> {
        let actor = self.user.as_ref().map(|u| u.name.as_str()).unwrap_or_default();
        self.append_audit(&AuditEvent::view(
            actor,
            "imap",
            self.peer.ip(),
            view.mailbox(),
            set,
            uid,
            uids,
        ))
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<(), (Option<Code<'static>>, String)> {
        blocking(|| self.store.append_audit(event))
            .map(|_| ())
            .map_err(|e| crate::failure::store_failure(&e, "append an audit record"))
    }

    /// Records a CONDSTORE enabling command (RFC 7162 §3.1). The first one issued while a
    /// mailbox is selected, other than SELECT or EXAMINE (which report it anyway), is
    /// answered with the mailbox's HIGHESTMODSEQ as well.
    pub async fn enable_condstore(&mut self, conn: &mut Conn) -> Result<(), Closed> {
        if self.condstore {
            return Ok(());
        }
        self.condstore = true;
        if let Some(sel) = &self.selected {
            let highest = Code::HighestModSeq(crate::condstore::highest_modseq(&sel.view));
            conn.status(status(Kind::Ok, None, Some(highest), "Highest"))
                .await?;
        }
        Ok(())
    }

    /// Recomputes the selected view if the log grew, and tells the client about new
    /// messages. Views only grow (nothing is ever deleted), so only EXISTS is needed.
    pub async fn announce_new_mail(&mut self, conn: &mut Conn) -> Result<(), Closed> {
        let (Some(user), Some(sel)) = (&self.user, &mut self.selected) else {
            return Ok(());
        };
        if self.store.stats().last_seq == sel.view.as_of() {
            return Ok(());
        }
        let fresh = blocking(|| self.store.refresh_view(&user.principal, &sel.view));
        let Ok(fresh) = fresh else {
            // The view stays as it was; the next command tries again.
            return Ok(());
        };
        let grew = fresh.len() > sel.view.len();
        sel.view = fresh;
        if grew {
            let n = u32::try_from(sel.view.len()).unwrap_or(u32::MAX);
            conn.data(Data::Exists(n)).await?;
        }
        Ok(())
    }
}

/// Serves a connection until it closes or asks for TLS; returns the connection in the
/// latter case.
pub(crate) async fn run(session: &mut Session, mut conn: Conn) -> Option<Conn> {
    let _witness = PanicWitness { peer: session.peer };
    loop {
        let idle = session.idle_tag.is_some();
        // Before login the deadline is fixed at connect: commands do not extend it, so a
        // client cannot hold a waiting slot by sending NOOPs.
        let deadline = if session.user.is_none() {
            session.login_deadline
        } else {
            Instant::now() + session.limits.autologout
        };
        let event = loop {
            let wait = if idle {
                IDLE_POLL
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            // Every way a session is ended from this side says BYE first (RFC 3501 §7.1.5).
            // The stop and push-out signals are only looked at between commands: a BYE in
            // the middle of a response would corrupt it (the server bounds a shutdown).
            let waited = tokio::select! {
                biased;
                _ = session.stop.wait_for(|stop| *stop) => Err("server shutting down"),
                _ = session.pushed_out.notified() => {
                    Err("too many connections waiting to log in; try again")
                }
                waited = tokio::time::timeout(wait, conn.next_event()) => Ok(waited),
            };
            match waited {
                Ok(Ok(event)) => break Ok(event),
                Ok(Err(_)) if Instant::now() >= deadline => {
                    break Err(if session.user.is_none() {
                        "login timeout: not logged in in time"
                    } else {
                        "autologout: idle too long"
                    })
                }
                Ok(Err(_)) => {
                    if session.announce_new_mail(&mut conn).await.is_err() {
                        return None;
                    }
                }
                Err(why) => break Err(why),
            }
        };
        let event = match event {
            Ok(event) => event,
            Err(why) => {
                tracing::debug!(peer = %session.peer, why, "imap session ended by the server");
                let _ = conn.bye(why).await;
                return None;
            }
        };
        let flow = match event {
            Ok(Event::Server(ServerEvent::CommandReceived { command })) => {
                command::dispatch(session, &mut conn, command.tag, command.body, None).await
            }
            Ok(Event::Esearch { command, returns }) => {
                command::dispatch(session, &mut conn, command.tag, command.body, Some(returns)).await
            }
            Ok(Event::Refused { tag, why }) => {
                session.commands.count_other();
                conn.status(bad(tag, &why)).await.map(|_| Flow::Continue)
            }
            Ok(Event::Server(ServerEvent::CommandAuthenticateReceived { command_authenticate })) => {
                session.commands.count("AUTHENTICATE");
                command::authenticate::start(session, &mut conn, command_authenticate).await
            }
            Ok(Event::Server(ServerEvent::AuthenticateDataReceived { authenticate_data })) => {
                command::authenticate::data(session, &mut conn, authenticate_data).await
            }
            Ok(Event::Server(ServerEvent::IdleCommandReceived { tag })) => {
                session.commands.count("IDLE");
                command::idle::start(session, &mut conn, tag).await
            }
            Ok(Event::Server(ServerEvent::IdleDoneReceived)) => command::idle::done(session, &mut conn).await,
            Ok(Event::Server(ServerEvent::GreetingSent { .. } | ServerEvent::ResponseSent { .. }))
            | Ok(Event::RawSent(_)) => Ok(Flow::Continue),
            // imap-next already answered with a tagged BAD.
            Err(StreamError::State(ServerError::LiteralTooLong { .. })) => {
                session.commands.count_other();
                Ok(Flow::Continue)
            }
            Err(StreamError::State(
                ServerError::MalformedMessage { discarded_bytes }
                | ServerError::ExpectedCrlfGotLf { discarded_bytes }
                | ServerError::CommandTooLong { discarded_bytes },
            )) => {
                // imap-next answers nothing here; invariant 7 wants a BAD, tagged if the
                // line starts with a valid tag.
                session.commands.count_other();
                let tag = first_token(discarded_bytes.declassify())
                    .and_then(|t| Tag::try_from(t).ok())
                    .map(IntoStatic::into_static);
                let text = "command not understood (unknown command, bad syntax or too long)";
                let st = status(Kind::Bad, tag, None, text);
                conn.status(st).await.map(|_| Flow::Continue)
            }
            Err(_) => return None,
        };
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Close) | Err(Closed) => {
                let _ = conn.flush().await;
                return None;
            }
            Ok(Flow::StartTls) => {
                if conn.flush().await.is_err() {
                    return None;
                }
                return Some(conn);
            }
        }
    }
}

/// Says which connection a panic ended. A panic in a command unwinds the session's task
/// only: tokio catches it there, the connection's socket and slot are dropped, and every
/// other session goes on (the workspace never builds with `panic = "abort"`).
struct PanicWitness {
    peer: SocketAddr,
}

impl Drop for PanicWitness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(peer = %self.peer, "an IMAP session panicked: its connection is closed, the server goes on");
        }
    }
}

/// The first space-separated token of a discarded line, as text.
fn first_token(bytes: &[u8]) -> Option<String> {
    let token = bytes.split(|b| *b == b' ' || *b == b'\r' || *b == b'\n').next()?;
    if token.is_empty() {
        return None;
    }
    std::str::from_utf8(token).ok().map(str::to_string)
}
