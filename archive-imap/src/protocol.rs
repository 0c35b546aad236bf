//! The protocol state machine a connection drives: imap-next's `Server`, wrapped so that
//! what imap-codec cannot express still works without forking it.
//!
//! - Input: the client's bytes are framed as imap-codec's fragmentizer frames them (lines, and
//!   literals `{n}`/`{n+}` whose bytes are never commands). The first line of each message
//!   is held back until it ends (or [`HEAD_LIMIT`] bytes), and a
//!   `<tag> [UID ]SEARCH RETURN (<options>) <criteria>` (or `… SORT RETURN (<options>) …`)
//!   loses its `RETURN (…) ` before imap-next sees it; the options are handed back with the
//!   parsed command ([`Event::Esearch`]).
//!   AUTHENTICATE lines and IDLE's DONE are messages too: they never look like a SEARCH and
//!   pass unchanged.
//! - Commands imap-codec refuses are offered to [`search_keys`], which parses SEARCH, SORT and
//!   THREAD keys nested deeper than imap-codec's fixed limit (up to its own cap).
//! - Output: raw response lines ([`Protocol::enqueue_raw`]) go out in order with imap-next's
//!   responses, for `* ESEARCH`, which imap-codec cannot encode.
//!
//! Each message the client sends ends in exactly one outcome from imap-next (an event or an
//! error), in order; counting both sides ties return options to their command, and the tag is
//! checked as well. Should the two framings ever disagree (a client that sends a literal the
//! server rejected), a RETURN is not rewritten or its options are dropped, and imap-codec
//! answers BAD: never another command's options.

use std::collections::VecDeque;

use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::Tag;
use imap_next::imap_types::response::{CommandContinuationRequest, Data, Status};
use imap_next::server::{Error, Event as ServerEvent, ResponseHandle, Server};
use imap_next::{Interrupt, Io, State};

use crate::esearch::{return_clause, Returns, Searching};
use search_keys::Reparsed;

mod search_keys;

/// How much of a message's first line is held back to look for a RETURN clause; a longer
/// prefix is passed on unchanged (and a RETURN in it is answered BAD by imap-codec).
pub(crate) const HEAD_LIMIT: usize = 1024;

/// At most this many rewritten commands may wait for imap-next; a client that pipelines more
/// gets BAD for the excess instead of growing this queue.
const MAX_WAITING: usize = 256;

/// What the connection learns from [`Protocol::next`].
#[derive(Debug)]
pub(crate) enum Event {
    /// Everything imap-next reports, unchanged.
    Server(ServerEvent),
    /// A SEARCH or UID SEARCH that asked for RFC 4731 result options, or a SORT or UID SORT
    /// that asked for RFC 5267 ESORT ones; `command` is what imap-next parsed once the
    /// `RETURN (…)` was cut out.
    Esearch {
        command: Command<'static>,
        returns: Returns,
    },
    /// A command refused before it reached a handler: a `SEARCH RETURN` with options this
    /// server does not know, or search keys nested too deeply. Answer BAD with `why`.
    Refused { tag: Tag<'static>, why: String },
    /// Bytes given to [`Protocol::enqueue_raw`] were handed to the socket.
    RawSent(RawHandle),
}

/// Identifies raw bytes given to [`Protocol::enqueue_raw`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawHandle(u64);

/// A response the connection waits for: one of imap-next's or a raw one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Response(ResponseHandle),
    Raw(RawHandle),
}

impl From<ResponseHandle> for Sent {
    fn from(h: ResponseHandle) -> Sent {
        Sent::Response(h)
    }
}

impl From<RawHandle> for Sent {
    fn from(h: RawHandle) -> Sent {
        Sent::Raw(h)
    }
}

impl Event {
    /// The response this event says was sent, if it is such an event.
    pub fn sent(&self) -> Option<Sent> {
        match self {
            Event::Server(ServerEvent::ResponseSent { handle, .. }) => Some(Sent::Response(*handle)),
            Event::RawSent(h) => Some(Sent::Raw(*h)),
            _ => None,
        }
    }
}

/// imap-next's server with ESEARCH input rewriting and raw output.
pub(crate) struct Protocol {
    server: Server,
    input: Framing,
    /// Raw responses not yet handed out, in order.
    raw: VecDeque<(RawHandle, Vec<u8>)>,
    /// A raw response that was handed out; its event comes next.
    raw_written: Option<RawHandle>,
    next_raw: u64,
    /// Outcomes (events and errors for a client message) imap-next has reported so far.
    outcomes: u64,
    /// The greeting imap-next always sends first is to be dropped, not written.
    drop_greeting: bool,
    /// imap-next's limit on literals, which a re-parsed message must keep too.
    max_literal: usize,
}

impl Protocol {
    /// `max_literal` is the `max_literal_size` imap-next's `server` was made with.
    pub fn new(server: Server, max_literal: u32) -> Protocol {
        Protocol {
            max_literal: max_literal as usize,
            server,
            input: Framing::default(),
            raw: VecDeque::new(),
            raw_written: None,
            next_raw: 0,
            outcomes: 0,
            drop_greeting: false,
        }
    }

    /// A state machine for a connection that has just switched to TLS: imap-next's server
    /// always sends a greeting first, but after STARTTLS the server says nothing until the
    /// client's next command (RFC 3501 §6.2.1; a client waiting for that command's answer
    /// would take an unsolicited `* OK` for something else). The greeting is dropped unsent.
    pub fn after_starttls(server: Server, max_literal: u32) -> Protocol {
        Protocol {
            drop_greeting: true,
            ..Protocol::new(server, max_literal)
        }
    }

    /// Queues response bytes (whole CRLF-terminated lines) to be written before anything
    /// enqueued in imap-next after this call. [`Event::RawSent`] follows when they were
    /// handed to the socket. They would also overtake imap-next responses queued earlier but
    /// not yet written: callers (`Conn::drive_to`) finish each response before queueing the
    /// next, which keeps the order.
    pub fn enqueue_raw(&mut self, bytes: Vec<u8>) -> RawHandle {
        let h = RawHandle(self.next_raw);
        self.next_raw += 1;
        self.raw.push_back((h, bytes));
        h
    }

    pub fn enqueue_data(&mut self, data: Data<'static>) -> ResponseHandle {
        self.server.enqueue_data(data)
    }

    pub fn enqueue_status(&mut self, status: Status<'static>) -> ResponseHandle {
        self.server.enqueue_status(status)
    }

    pub fn authenticate_continue(
        &mut self,
        cont: CommandContinuationRequest<'static>,
    ) -> Result<ResponseHandle, CommandContinuationRequest<'static>> {
        self.server.authenticate_continue(cont)
    }

    pub fn authenticate_finish(
        &mut self,
        status: Status<'static>,
    ) -> Result<ResponseHandle, Status<'static>> {
        self.server.authenticate_finish(status)
    }

    pub fn idle_accept(
        &mut self,
        cont: CommandContinuationRequest<'static>,
    ) -> Result<ResponseHandle, CommandContinuationRequest<'static>> {
        self.server.idle_accept(cont)
    }

    pub fn idle_reject(&mut self, status: Status<'static>) -> Result<ResponseHandle, Status<'static>> {
        self.server.idle_reject(status)
    }

    /// Ties a command imap-next parsed to the RETURN options its line had, if any.
    fn received(&mut self, event: ServerEvent) -> Event {
        let waiting = self.input.take_waiting(self.outcomes);
        self.outcomes += 1;
        match (waiting, event) {
            (
                Some(Waiting {
                    tag,
                    command: kind,
                    returns: Ok(returns),
                    ..
                }),
                ServerEvent::CommandReceived { command },
            ) if is_searching(&command, kind) && command.tag.inner() == tag => {
                Event::Esearch { command, returns }
            }
            // Nothing was rewritten, or not this (framings disagree): the event as it is.
            (_, event) => Event::Server(event),
        }
    }

    /// An error imap-next reported for a client message.
    fn failed(&mut self, error: Error) -> Result<Event, Interrupt<Error>> {
        let outcome = self.outcomes;
        if matches!(error, Error::LiteralTooLong { .. }) {
            // imap-next dropped the message at the literal's announcement; so does the
            // framing, or it would take the client's next commands for literal bytes.
            self.input.literal_rejected(outcome);
        }
        let waiting = self.input.take_waiting(outcome);
        self.outcomes += 1;
        let Error::MalformedMessage { discarded_bytes } = &error else {
            return Err(Interrupt::Error(error));
        };
        match waiting {
            // A RETURN with unknown options was passed on unchanged, so imap-codec failed on it.
            Some(Waiting {
                tag,
                returns: Err(why),
                ..
            }) => match Tag::try_from(tag) {
                Ok(tag) => Ok(Event::Refused { tag, why }),
                Err(_) => Err(Interrupt::Error(error)),
            },
            // Search keys nested deeper than imap-codec goes, maybe.
            waiting => match search_keys::reparse(discarded_bytes.declassify(), self.max_literal) {
                Reparsed::Command(command) => Ok(match waiting {
                    Some(Waiting {
                        tag,
                        command: kind,
                        returns: Ok(returns),
                        ..
                    }) if is_searching(&command, kind) && command.tag.inner() == tag => {
                        Event::Esearch { command, returns }
                    }
                    _ => Event::Server(ServerEvent::CommandReceived { command }),
                }),
                Reparsed::TooDeep { tag, why } => Ok(Event::Refused { tag, why }),
                Reparsed::NotOurs => Err(Interrupt::Error(error)),
            },
        }
    }
}

impl State for Protocol {
    type Event = Event;
    type Error = Error;

    fn enqueue_input(&mut self, bytes: &[u8]) {
        let mut out = Vec::with_capacity(bytes.len());
        self.input.feed(bytes, &mut out);
        if !out.is_empty() {
            self.server.enqueue_input(&out);
        }
    }

    fn next(&mut self) -> Result<Event, Interrupt<Error>> {
        if let Some(h) = self.raw_written.take() {
            return Ok(Event::RawSent(h));
        }
        if let Some((h, bytes)) = self.raw.pop_front() {
            self.raw_written = Some(h);
            return Err(Interrupt::Io(Io::Output(bytes)));
        }
        match self.server.next() {
            // The greeting is queued before anything else, so it is the first output.
            Err(Interrupt::Io(Io::Output(_))) if self.drop_greeting => {
                self.drop_greeting = false;
                // imap-next now takes the greeting as sent and reports `GreetingSent`.
                self.next()
            }
            Ok(e @ (ServerEvent::GreetingSent { .. } | ServerEvent::ResponseSent { .. })) => {
                Ok(Event::Server(e))
            }
            Ok(e) => Ok(self.received(e)),
            Err(Interrupt::Error(e)) => self.failed(e),
            Err(Interrupt::Io(io)) => Err(Interrupt::Io(io)),
        }
    }
}

/// Whether `command` is the kind of command its RETURN clause was found in.
fn is_searching(command: &Command<'_>, kind: Searching) -> bool {
    match kind {
        Searching::Search => matches!(command.body, CommandBody::Search { .. }),
        Searching::Sort => matches!(command.body, CommandBody::Sort { .. }),
    }
}

/// A rewritten command waiting for imap-next to parse it.
#[derive(Debug)]
struct Waiting {
    /// Which client message it is (0-based).
    message: u64,
    tag: String,
    command: Searching,
    returns: Result<Returns, String>,
}

/// Where the next input byte falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// In a line; the first line of a message is held in `head` while `held`.
    Line { held: bool },
    /// In a literal: this many bytes to go; `fresh` while none of them arrived.
    Literal { remaining: u32, fresh: bool },
}

/// The client's byte stream framed into messages, with RETURN clauses cut out.
#[derive(Debug)]
struct Framing {
    position: Position,
    scan: LineScan,
    /// The held-back start of the current message's first line.
    head: Vec<u8>,
    /// Index of the current message (0-based).
    message: u64,
    waiting: VecDeque<Waiting>,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            position: Position::Line { held: true },
            scan: LineScan::Other,
            head: Vec::new(),
            message: 0,
            waiting: VecDeque::new(),
        }
    }
}

impl Framing {
    /// Frames `bytes` and appends what imap-next should see to `out`.
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        while let Some((&b, rest)) = bytes.split_first() {
            match self.position {
                Position::Literal { remaining, .. } => {
                    let n = bytes.len().min(remaining as usize);
                    out.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    // n <= remaining, which is a u32.
                    let remaining = remaining - n as u32;
                    self.position = if remaining == 0 {
                        Position::Line { held: false }
                    } else {
                        Position::Literal {
                            remaining,
                            fresh: false,
                        }
                    };
                }
                Position::Line { held } => {
                    bytes = rest;
                    let end = self.scan.step(b);
                    if !held {
                        out.push(b);
                    } else {
                        self.head.push(b);
                        if end.is_some() || self.head.len() >= HEAD_LIMIT {
                            self.release_head(out);
                        }
                    }
                    match end {
                        None => {}
                        Some(Some(literal)) => {
                            self.position = if literal.length == 0 {
                                Position::Line { held: false }
                            } else {
                                Position::Literal {
                                    remaining: literal.length,
                                    fresh: true,
                                }
                            };
                        }
                        Some(None) => self.next_message(),
                    }
                }
            }
        }
    }

    /// Decides on the held first line: cut a RETURN clause out, then pass it on.
    fn release_head(&mut self, out: &mut Vec<u8>) {
        let head = std::mem::take(&mut self.head);
        self.position = Position::Line { held: false };
        let clause = return_clause(&head).filter(|_| self.waiting.len() < MAX_WAITING);
        match clause {
            Some(c) => {
                if c.returns.is_ok() {
                    out.extend_from_slice(&head[..c.cut.start]);
                    out.extend_from_slice(&head[c.cut.end..]);
                } else {
                    // Unchanged, so that imap-codec refuses it whatever happens here.
                    out.extend_from_slice(&head);
                }
                self.waiting.push_back(Waiting {
                    message: self.message,
                    tag: c.tag,
                    command: c.command,
                    returns: c.returns,
                });
            }
            None => out.extend_from_slice(&head),
        }
    }

    fn next_message(&mut self) {
        self.message += 1;
        self.position = Position::Line { held: true };
        self.scan = LineScan::Other;
    }

    /// imap-next rejected the literal announced at the end of message `message` and dropped
    /// the message: the next byte starts a new one (if the client sent no literal bytes).
    fn literal_rejected(&mut self, message: u64) {
        if self.message == message && matches!(self.position, Position::Literal { fresh: true, .. }) {
            self.next_message();
        }
    }

    /// The rewritten command for message `message`, if it was one; older entries are stale.
    fn take_waiting(&mut self, message: u64) -> Option<Waiting> {
        while self.waiting.front().is_some_and(|w| w.message < message) {
            self.waiting.pop_front();
        }
        if self.waiting.front().is_some_and(|w| w.message == message) {
            return self.waiting.pop_front();
        }
        None
    }
}

/// A literal announced at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Literal {
    length: u32,
}

/// The end of a line as imap-codec's fragmentizer sees it (`LineParser` in
/// `imap_codec::fragmentizer`, mirrored state for state): `{digits}` or `{digits+}` right
/// before CRLF or LF announces a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineScan {
    Other,
    Open,
    Digit(u32),
    Plus(u32),
    Close(u32),
    Cr(Option<u32>),
}

impl LineScan {
    /// Takes one byte; at LF, returns the end of the line with its literal announcement.
    fn step(&mut self, b: u8) -> Option<Option<Literal>> {
        let announced = match *self {
            LineScan::Close(n) | LineScan::Cr(Some(n)) => Some(Literal { length: n }),
            _ => None,
        };
        if b == b'\n' {
            *self = LineScan::Other;
            return Some(announced);
        }
        *self = match (*self, b) {
            (LineScan::Close(n), b'\r') => LineScan::Cr(Some(n)),
            (_, b'\r') => LineScan::Cr(None),
            (_, b'{') => LineScan::Open,
            (LineScan::Open, b'0'..=b'9') => LineScan::Digit(u32::from(b - b'0')),
            (LineScan::Digit(n), b'0'..=b'9') => n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u32::from(b - b'0')))
                .map_or(LineScan::Other, LineScan::Digit),
            (LineScan::Digit(n), b'+') => LineScan::Plus(n),
            (LineScan::Digit(n) | LineScan::Plus(n), b'}') => LineScan::Close(n),
            _ => LineScan::Other,
        };
        None
    }
}

#[cfg(test)]
mod tests;
