//! The IMAP client connection that mailvault's two conversations with other IMAP servers share:
//! pass-through logins (`access::upstream::client`) and `mailvault import imap://…`
//! (`import_imap`). It owns the socket (plain, then maybe TLS), the response framing and the
//! tags; what to say is theirs.
//!
//! Framing is imap-codec's `Fragmentizer`: it splits the byte stream into lines and literals
//! before anything is parsed, with a cap on the bytes it keeps of one response. A literal
//! announced larger than the cap ends the conversation before a byte of it is read or
//! allocated; a response that grows past the cap otherwise (a line without end) costs reading
//! time, never memory. Fragments keep message boundaries, so an untagged response that does
//! not parse or is too long is passed to the caller as unreadable and the conversation goes
//! on at the next response (RFC 3501 §7: clients ignore untagged data they do not know). Commands are encoded and
//! responses parsed by imap-codec, so no IMAP syntax is written by hand here.
//!
//! Blocking I/O: every read and write waits at most until [`Connection::deadline`], which the
//! caller sets (one deadline for a whole login check; one per step for an import).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_codec::encode::{Encoder, Fragment};
use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, Fragmentizer};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::imap_types::response::{Greeting, Response, Status, StatusBody, StatusKind};
use imap_codec::{CommandCodec, GreetingCodec, ResponseCodec};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A response the caller did not ask for by tag: parsed, or why not.
pub(crate) enum Untagged<'a> {
    /// Untagged status or data (borrowed from the connection's buffer: copy what you keep).
    Response(Response<'a>),
    /// An untagged response that was skipped whole: it did not parse, or it was longer than
    /// the connection's cap (`too_long`; its bytes were read and dropped, never kept).
    Unreadable { too_long: bool },
}

/// The TCP connection, before or after the TLS handshake.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// Only while the stream is being upgraded.
    Gone,
}

/// An open conversation with an IMAP server.
pub(crate) struct Connection {
    stream: Stream,
    fragmentizer: Fragmentizer,
    /// Reads and writes fail with "timed out" after this instant.
    pub(crate) deadline: Instant,
    /// If set, every read or write moves the deadline to this long from now: a long
    /// conversation (an import) is limited per step, not in all.
    pub(crate) idle: Option<Duration>,
    /// The cap on the bytes of one response.
    max_response: u32,
    commands: u32,
}

impl Connection {
    /// Connects to the first address of `host:port` that answers, within `deadline`. Responses
    /// longer than `max_response` bytes are skipped, not kept.
    pub(crate) fn connect(
        host: &str,
        port: u16,
        deadline: Instant,
        max_response: u32,
    ) -> Result<Connection, String> {
        let addresses = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {host}: {e}"))?;
        let mut last = format!("{host} has no address");
        for address in addresses {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("connecting: timed out ({last})"));
            }
            match TcpStream::connect_timeout(&address, left) {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok(Connection {
                        stream: Stream::Plain(tcp),
                        fragmentizer: Fragmentizer::new(max_response),
                        deadline,
                        idle: None,
                        max_response,
                        commands: 0,
                    });
                }
                Err(e) => last = format!("connecting to {address}: {e}"),
            }
        }
        Err(last)
    }

    /// Whether the conversation is inside TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Starts TLS on the plain connection (before the greeting for implicit TLS, after the
    /// STARTTLS answer otherwise) and completes the handshake, so a certificate problem is
    /// reported here as such.
    pub(crate) fn start_tls(
        &mut self,
        tls: &Arc<ClientConfig>,
        name: &ServerName<'static>,
    ) -> Result<(), String> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err("TLS on a TLS connection".into());
        };
        let conn = ClientConnection::new(tls.clone(), name.clone()).map_err(|e| format!("TLS: {e}"))?;
        self.stream = Stream::Tls(Box::new(StreamOwned::new(conn, tcp)));
        self.flush()
    }

    /// STARTTLS, then the handshake. Whatever arrived after the STARTTLS answer and before
    /// the handshake could have been injected by anyone on the path (the STARTTLS
    /// command-injection attacks): it is refused rather than read as if it came through TLS.
    pub(crate) fn starttls(
        &mut self,
        tls: &Arc<ClientConfig>,
        name: &ServerName<'static>,
    ) -> Result<(), String> {
        let status = self.command(CommandBody::StartTLS, &mut |_| {})?;
        if status.kind != StatusKind::Ok {
            return Err(format!(
                "STARTTLS refused ({:?}: {}); no password was sent",
                status.kind,
                printable(status.text.as_ref())
            ));
        }
        if self.fragmentizer.progress().is_some() || !self.fragmentizer.message_bytes().is_empty() {
            return Err("data after the STARTTLS answer, before TLS; no password was sent".into());
        }
        self.start_tls(tls, name)
    }

    /// Reads the greeting.
    pub(crate) fn greeting(&mut self) -> Result<Greeting<'static>, String> {
        self.next_message()?;
        match self.fragmentizer.decode_message(&GreetingCodec::new()) {
            Ok(greeting) => Ok(imap_codec::imap_types::IntoStatic::into_static(greeting)),
            Err(_) => Err("no IMAP greeting".into()),
        }
    }

    /// Sends a command and returns its tagged status; every untagged response before it goes
    /// to `untagged`. A synchronizing literal (a password that needs one) waits for the
    /// server's continuation request; a tagged status instead ends the command there.
    pub(crate) fn command(
        &mut self,
        body: CommandBody<'_>,
        untagged: &mut dyn FnMut(Untagged<'_>),
    ) -> Result<StatusBody<'static>, String> {
        self.commands += 1;
        let tag = format!("mv{}", self.commands);
        let command = Command::new(tag.as_str(), body).map_err(|e| format!("tag {tag}: {e}"))?;
        let name = command.name();
        for fragment in CommandCodec::new().encode(&command) {
            match fragment {
                Fragment::Line { data } => self.write(&data)?,
                Fragment::Literal { data, mode } => {
                    if mode == LiteralMode::Sync {
                        self.flush()?;
                        if let Some(status) = self.until(&tag, name, true, untagged)? {
                            return Ok(status);
                        }
                    }
                    self.write(&data)?;
                }
            }
        }
        self.flush()?;
        self.until(&tag, name, false, untagged)?
            .ok_or_else(|| format!("{name}: unexpected continuation request"))
    }

    /// Reads responses until the tagged status of `tag` (`Some`) or, if `continuation`, a
    /// continuation request (`None`).
    fn until(
        &mut self,
        tag: &str,
        name: &str,
        continuation: bool,
        untagged: &mut dyn FnMut(Untagged<'_>),
    ) -> Result<Option<StatusBody<'static>>, String> {
        use imap_codec::imap_types::IntoStatic;
        loop {
            self.next_message()?;
            let untagged_line = self.fragmentizer.message_bytes().starts_with(b"* ");
            match self.fragmentizer.decode_message(&ResponseCodec::new()) {
                Ok(Response::Status(Status::Tagged(tagged))) if tagged.tag.inner() == tag => {
                    return Ok(Some(tagged.body.into_static()));
                }
                Ok(Response::Status(Status::Tagged(_))) => {
                    return Err(format!("{name}: answer to a command never sent"));
                }
                Ok(Response::Status(Status::Bye(bye))) => {
                    return Err(format!(
                        "{name}: closed the connection (BYE {})",
                        printable(bye.text.as_ref())
                    ));
                }
                Ok(Response::CommandContinuationRequest(_)) if continuation => return Ok(None),
                Ok(Response::CommandContinuationRequest(_)) => {
                    return Err(format!("{name}: unexpected continuation request"));
                }
                Ok(response) => untagged(Untagged::Response(response)),
                Err(DecodeMessageError::MessageTooLong { .. }) if untagged_line => {
                    untagged(Untagged::Unreadable { too_long: true })
                }
                Err(_) if untagged_line => untagged(Untagged::Unreadable { too_long: false }),
                Err(_) => {
                    return Err(format!(
                        "{name}: a response that does not parse ({} bytes)",
                        self.fragmentizer.message_bytes().len()
                    ))
                }
            }
        }
    }

    /// Reads until the fragmentizer holds one whole response (or greeting). A literal
    /// announced larger than the cap ends the conversation at once: its bytes are neither
    /// kept nor waited for.
    fn next_message(&mut self) -> Result<(), String> {
        loop {
            match self.fragmentizer.progress() {
                Some(FragmentInfo::Line {
                    announcement: Some(literal),
                    ..
                }) if literal.length > self.max_response => {
                    return Err(format!(
                        "the server announced {} bytes in one response, more than the limit of {}",
                        literal.length, self.max_response
                    ));
                }
                Some(_) if self.fragmentizer.is_message_complete() => return Ok(()),
                Some(_) => {}
                None => self.fill()?,
            }
        }
    }

    /// Reads more bytes from the socket, within the deadline.
    fn fill(&mut self) -> Result<(), String> {
        self.extend_deadline();
        let left = self.time_left()?;
        let mut chunk = vec![0u8; READ_CHUNK];
        let read = match &mut self.stream {
            Stream::Plain(tcp) => tcp
                .set_read_timeout(Some(left))
                .and_then(|_| tcp.read(&mut chunk)),
            Stream::Tls(tls) => tls
                .sock
                .set_read_timeout(Some(left))
                .and_then(|_| tls.read(&mut chunk)),
            Stream::Gone => return Err("connection lost in a TLS upgrade".into()),
        };
        match read {
            Ok(0) => Err("connection closed".into()),
            Ok(n) => {
                self.fragmentizer.enqueue_bytes(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(io_error("reading", &e)),
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.set_timeouts()?;
        let written = match &mut self.stream {
            Stream::Plain(tcp) => tcp.write_all(data),
            Stream::Tls(tls) => tls.write_all(data),
            Stream::Gone => return Err("connection lost in a TLS upgrade".into()),
        };
        written.map_err(|e| io_error("writing", &e))
    }

    fn flush(&mut self) -> Result<(), String> {
        self.set_timeouts()?;
        let flushed = match &mut self.stream {
            Stream::Plain(tcp) => tcp.flush(),
            // Also drives a handshake in progress (and its certificate check) to its end.
            Stream::Tls(tls) => tls.flush(),
            Stream::Gone => return Err("connection lost in a TLS upgrade".into()),
        };
        flushed.map_err(|e| io_error("writing", &e))
    }

    fn extend_deadline(&mut self) {
        if let Some(idle) = self.idle {
            self.deadline = Instant::now() + idle;
        }
    }

    fn set_timeouts(&mut self) -> Result<(), String> {
        self.extend_deadline();
        let left = self.time_left()?;
        let tcp = match &self.stream {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.sock,
            Stream::Gone => return Err("connection lost in a TLS upgrade".into()),
        };
        tcp.set_write_timeout(Some(left))
            .and_then(|_| tcp.set_read_timeout(Some(left)))
            .map_err(|e| format!("socket: {e}"))
    }

    fn time_left(&self) -> Result<Duration, String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        Ok(left)
    }
}

/// At most 200 characters of server text, control characters replaced: server text quoted
/// in an error message is bounded and printable.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// An I/O error as a reason: timeouts and TLS failures (certificate problems included) read
/// as such.
fn io_error(doing: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!("{doing}: timed out"),
        _ => format!("{doing}: {e}"),
    }
}
