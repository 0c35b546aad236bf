//! The one conversation mailvault has with the upstream IMAP server: read the greeting,
//! STARTTLS when the endpoint asks for it, LOGIN, LOGOUT. Commands are encoded and responses
//! parsed by imap-codec (quoting, literals and their continuation requests included), so no
//! IMAP syntax is written by hand here. Blocking I/O with one deadline for the whole
//! conversation: the login gate runs on a thread that may block.
//!
//! The password leaves this module only inside the TLS connection: LOGIN is sent after the
//! handshake (and its certificate check) succeeded, never on a plain connection, and no error
//! message holds it (server text quoted in one is bounded and made printable).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_codec::decode::{Decoder, GreetingDecodeError, ResponseDecodeError};
use imap_codec::encode::{Encoder, Fragment};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::imap_types::response::{Code, GreetingKind, Response, Status, StatusBody, StatusKind};
use imap_codec::{CommandCodec, GreetingCodec, ResponseCodec};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::endpoint::{Endpoint, Security};

/// Most bytes of server responses buffered at once: LOGIN and LOGOUT answer in a few lines;
/// a server that sends more is not talking to us.
const MAX_BUFFERED: usize = 64 * 1024;

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
    let mut conn = match Connection::open(endpoint, tls, deadline) {
        Ok(conn) => conn,
        Err(why) => return Answer::Unavailable(why),
    };
    match conn.command(body) {
        Ok(status) => {
            // A polite goodbye, briefly: the verdict stands whatever happens to it.
            conn.deadline = conn.deadline.min(Instant::now() + LOGOUT_TIMEOUT);
            let _ = conn.command(CommandBody::Logout);
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

/// At most 200 characters of server text, control characters replaced.
fn printable(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// The TCP connection, before or after the TLS handshake.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.sock,
        }
    }
}

/// An open conversation: the stream, bytes received but not yet parsed, the deadline and
/// the number of commands sent (for tags).
struct Connection {
    stream: Stream,
    buffer: Vec<u8>,
    deadline: Instant,
    commands: u32,
}

impl Connection {
    /// Connects, reads the greeting and makes the connection private (TLS from the start, or
    /// STARTTLS). Returns only a connection on which the certificate has been verified.
    fn open(endpoint: &Endpoint, tls: &Arc<ClientConfig>, deadline: Instant) -> Result<Connection, String> {
        let tcp = connect(endpoint, deadline)?;
        let stream = match endpoint.security {
            Security::Tls => Stream::Tls(Box::new(start_tls(endpoint, tls, tcp)?)),
            Security::StartTls => Stream::Plain(tcp),
        };
        let mut conn = Connection {
            stream,
            buffer: Vec::new(),
            deadline,
            commands: 0,
        };
        conn.greeting()?;
        if endpoint.security == Security::StartTls {
            let status = conn.command(CommandBody::StartTLS)?;
            if status.kind != StatusKind::Ok {
                return Err(format!(
                    "STARTTLS refused ({:?}: {}); no password was sent",
                    status.kind,
                    printable(status.text.as_ref())
                ));
            }
            // Whatever arrived before the handshake could have been injected by anyone on the
            // path (the STARTTLS command-injection attacks): refuse rather than read it as TLS.
            if !conn.buffer.is_empty() {
                return Err("data after the STARTTLS answer, before TLS; no password was sent".into());
            }
            let Stream::Plain(tcp) = conn.stream else {
                return Err("STARTTLS on a TLS connection".into());
            };
            conn.stream = Stream::Tls(Box::new(start_tls(endpoint, tls, tcp)?));
        }
        // Completes the handshake now, so a certificate problem is reported as such.
        conn.flush()?;
        Ok(conn)
    }

    /// Reads the greeting: OK goes on; PREAUTH (nothing to check) and BYE are no verdict.
    fn greeting(&mut self) -> Result<(), String> {
        loop {
            let decoded = match GreetingCodec::new().decode(&self.buffer) {
                Ok((rest, greeting)) => Ok((
                    self.buffer.len() - rest.len(),
                    greeting.kind,
                    printable(greeting.text.as_ref()),
                )),
                Err(e) => Err(e),
            };
            match decoded {
                Ok((used, kind, text)) => {
                    // Anything after the greeting stays for the next read.
                    self.buffer.drain(..used);
                    return match kind {
                        GreetingKind::Ok => Ok(()),
                        GreetingKind::PreAuth => {
                            Err("greeted with PREAUTH: it does not check passwords".into())
                        }
                        GreetingKind::Bye => Err(format!("greeted with BYE: {text}")),
                    };
                }
                Err(GreetingDecodeError::Incomplete) => self.fill()?,
                Err(GreetingDecodeError::Failed) => return Err("no IMAP greeting".into()),
            }
        }
    }

    /// Sends a command and returns its tagged status. Untagged responses are read and
    /// ignored. A synchronizing literal (a password that needs one) waits for the server's
    /// continuation request; a tagged status instead ends the command there.
    fn command(&mut self, body: CommandBody<'_>) -> Result<StatusBody<'static>, String> {
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
                        if let Some(status) = self.until(&tag, name, true)? {
                            return Ok(status);
                        }
                    }
                    self.write(&data)?;
                }
            }
        }
        self.flush()?;
        self.until(&tag, name, false)?
            .ok_or_else(|| format!("{name}: unexpected continuation request"))
    }

    /// Reads responses until the tagged status of `tag` (`Some`) or, if `continuation`, a
    /// continuation request (`None`).
    fn until(
        &mut self,
        tag: &str,
        name: &str,
        continuation: bool,
    ) -> Result<Option<StatusBody<'static>>, String> {
        loop {
            match self.response()? {
                Response::Status(Status::Tagged(tagged)) if tagged.tag.inner() == tag => {
                    return Ok(Some(tagged.body));
                }
                Response::Status(Status::Tagged(_)) => {
                    return Err(format!("{name}: answer to a command never sent"));
                }
                Response::Status(Status::Bye(bye)) => {
                    return Err(format!(
                        "{name}: closed the connection (BYE {})",
                        printable(bye.text.as_ref())
                    ));
                }
                Response::CommandContinuationRequest(_) if continuation => return Ok(None),
                Response::CommandContinuationRequest(_) => {
                    return Err(format!("{name}: unexpected continuation request"));
                }
                Response::Status(Status::Untagged(_)) | Response::Data(_) => {}
            }
        }
    }

    /// The next response. One that imap-codec cannot parse is skipped when it is an untagged
    /// line without a literal (RFC 3501 §7: clients ignore untagged data they do not know);
    /// anything else unparseable ends the conversation.
    fn response(&mut self) -> Result<Response<'static>, String> {
        loop {
            match ResponseCodec::new().decode_static(&self.buffer) {
                Ok((rest, response)) => {
                    let used = self.buffer.len() - rest.len();
                    self.buffer.drain(..used);
                    return Ok(response);
                }
                Err(ResponseDecodeError::Incomplete | ResponseDecodeError::LiteralFound { .. }) => {
                    self.fill()?
                }
                Err(ResponseDecodeError::Failed) => match self.buffer.windows(2).position(|w| w == b"\r\n") {
                    None => self.fill()?,
                    Some(end) => {
                        let line = &self.buffer[..end];
                        if !line.starts_with(b"* ") || line.ends_with(b"}") {
                            return Err(format!("a response that does not parse ({end} bytes)"));
                        }
                        self.buffer.drain(..end + 2);
                    }
                },
            }
        }
    }

    /// Reads more bytes into the buffer, within the deadline and [`MAX_BUFFERED`].
    fn fill(&mut self) -> Result<(), String> {
        if self.buffer.len() >= MAX_BUFFERED {
            return Err(format!("more than {MAX_BUFFERED} bytes in one response"));
        }
        let left = self.time_left()?;
        self.stream
            .tcp()
            .set_read_timeout(Some(left))
            .map_err(|e| format!("socket: {e}"))?;
        let mut chunk = [0u8; 4096];
        let read = match &mut self.stream {
            Stream::Plain(tcp) => tcp.read(&mut chunk),
            Stream::Tls(tls) => tls.read(&mut chunk),
        };
        match read {
            Ok(0) => Err("connection closed".into()),
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(io_error("reading", &e)),
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.set_write_timeout()?;
        let written = match &mut self.stream {
            Stream::Plain(tcp) => tcp.write_all(data),
            Stream::Tls(tls) => tls.write_all(data),
        };
        written.map_err(|e| io_error("writing", &e))
    }

    fn flush(&mut self) -> Result<(), String> {
        self.set_write_timeout()?;
        let flushed = match &mut self.stream {
            Stream::Plain(tcp) => tcp.flush(),
            // Also drives a handshake in progress (and its certificate check) to its end.
            Stream::Tls(tls) => tls.flush(),
        };
        flushed.map_err(|e| io_error("writing", &e))
    }

    fn set_write_timeout(&self) -> Result<(), String> {
        let left = self.time_left()?;
        let tcp = self.stream.tcp();
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

/// Connects to the first address of the endpoint that answers, within the deadline.
fn connect(endpoint: &Endpoint, deadline: Instant) -> Result<TcpStream, String> {
    let addresses = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", endpoint.host))?;
    let mut last = format!("{} has no address", endpoint.host);
    for address in addresses {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("connecting: timed out ({last})"));
        }
        match TcpStream::connect_timeout(&address, left) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = format!("connecting to {address}: {e}"),
        }
    }
    Err(last)
}

fn start_tls(
    endpoint: &Endpoint,
    tls: &Arc<ClientConfig>,
    tcp: TcpStream,
) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let conn =
        ClientConnection::new(tls.clone(), endpoint.server_name.clone()).map_err(|e| format!("TLS: {e}"))?;
    Ok(StreamOwned::new(conn, tcp))
}

/// An I/O error as a reason: timeouts and TLS failures (certificate problems included) read
/// as such.
fn io_error(doing: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!("{doing}: timed out"),
        _ => format!("{doing}: {e}"),
    }
}
