//! One SMTP or LMTP session: read bytes, split commands, dispatch, answer. Pipelined
//! commands are answered together when the client's input runs dry; a transaction is
//! answered 250 only after its record is durable in the log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use archive_core::access::LoginGate;
use archive_core::Store;
use smtp_proto::request::receiver::{BdatReceiver, DataReceiver, DummyDataReceiver, MAX_LINE_LENGTH};
use smtp_proto::{EhloResponse, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::bdat::{self, Bdat};
use crate::config::IntakeConfig;
use crate::metrics::Metrics;
use crate::stream::Stream;
use crate::transaction::Transaction;

/// Commands that deliver nothing (EHLO, NOOP, RSET, AUTH, refused commands, …) a session may
/// send since its last archived message; one more ends it with 421 (cf. Postfix's
/// `smtpd_junk_command_limit`). Relays need a handful per message.
const MAX_FUTILE_COMMANDS: usize = 100;
/// Longest HELO/EHLO/LHLO name (RFC 5321 §4.5.3.1.2: a domain has at most 255 octets).
const MAX_HOST_LEN: usize = 255;
/// Longest MAIL or RCPT address (RFC 5321 §4.5.3.1.3: a path has at most 256 octets).
pub(crate) const MAX_PATH_LEN: usize = 256;

/// Which protocol a listener speaks (in the configuration: `"smtp"`, `"lmtp"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// RFC 5321 ESMTP: one reply per transaction.
    Smtp,
    /// RFC 2033 LMTP: one reply per recipient after the data.
    Lmtp,
}

impl Protocol {
    /// Lower-case name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Lmtp => "lmtp",
        }
    }
}

/// What every session of a server shares.
pub(crate) struct Context {
    pub store: Arc<Store>,
    pub config: IntakeConfig,
    pub tls: Option<TlsAcceptor>,
    pub metrics: Arc<Metrics>,
    /// The store's login gate, shared with the other front doors (one rate limit for all).
    pub gate: Arc<LoginGate>,
    /// Password checks that may run at once.
    pub auth_permits: Arc<Semaphore>,
}

/// What the read loop does after a chunk of input.
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// What incoming bytes are.
pub(crate) enum Input {
    /// Command lines.
    Command,
    /// The rest of a command line that was too long, to be skipped.
    SkipLine,
    /// The base64 response to an AUTH PLAIN challenge.
    AuthResponse,
    /// DATA content, until <CRLF>.<CRLF>.
    Data(DataReceiver),
    /// DATA content past the size limit: read and dropped.
    DataDiscard(DummyDataReceiver),
    /// A BDAT chunk of `size` octets; `reject` is the reply to give once it is read when the
    /// chunk is refused.
    Bdat {
        receiver: BdatReceiver,
        size: usize,
        reject: Option<&'static str>,
    },
}

pub(crate) struct Session {
    pub(crate) ctx: Arc<Context>,
    pub(crate) protocol: Protocol,
    pub(crate) peer: SocketAddr,
    stream: Option<Stream>,
    /// The client is in `allow`.
    pub(crate) trusted: bool,
    pub(crate) helo: Option<String>,
    /// The TLS version and cipher once STARTTLS is done; empty before.
    pub(crate) tls: String,
    /// The relay user the session authenticated as.
    pub(crate) user: Option<String>,
    pub(crate) tx: Option<Transaction>,
    line: Vec<u8>,
    pub(crate) input: Input,
    pub(crate) out: Vec<u8>,
    /// Since when the session waits for the command it is reading.
    waiting_since: Instant,
    /// When the current message's data must be complete.
    pub(crate) data_deadline: Option<Instant>,
    /// Commands that delivered nothing since the last archived message.
    pub(crate) futile: usize,
}

impl Session {
    pub fn new(
        ctx: Arc<Context>,
        protocol: Protocol,
        peer: SocketAddr,
        tcp: tokio::net::TcpStream,
        trusted: bool,
    ) -> Self {
        Session {
            ctx,
            protocol,
            peer,
            stream: Some(Stream::Plain(tcp)),
            trusted,
            helo: None,
            tls: String::new(),
            user: None,
            tx: None,
            line: Vec::new(),
            input: Input::Command,
            out: Vec::new(),
            waiting_since: Instant::now(),
            data_deadline: None,
            futile: 0,
        }
    }

    pub(crate) fn reply(&mut self, code: u16, status: &str, text: &str) {
        self.out
            .extend_from_slice(format!("{code} {status} {text}\r\n").as_bytes());
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        match self.stream.as_mut() {
            Some(s) => {
                s.write_all(&out).await?;
                s.flush().await
            }
            None => Ok(()),
        }
    }

    /// Runs the session to its end.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let greeting = match self.protocol {
            Protocol::Smtp => "ESMTP mailvault journal intake",
            Protocol::Lmtp => "LMTP mailvault journal intake",
        };
        let host = self.ctx.config.hostname.clone();
        self.out
            .extend_from_slice(format!("220 {host} {greeting}\r\n").as_bytes());
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let until = self.read_deadline();
            // A client that does not read its replies must not hold the session either.
            match tokio::time::timeout_at(until.max(Instant::now() + Duration::from_secs(1)), self.flush())
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
            let idle = matches!(self.input, Input::Command) && self.tx.is_none();
            if idle && *shutdown.borrow() {
                self.reply(421, "4.3.2", "archive shutting down, try again later");
                let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
                return;
            }
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let read = tokio::select! {
                r = tokio::time::timeout_at(until, stream.read(&mut buf)) => r,
                _ = shutdown.changed(), if idle => continue,
            };
            let n = match read {
                Err(_) => {
                    if self.data_deadline.is_some_and(|d| d <= Instant::now()) {
                        tracing::info!(peer = %self.peer, "message data past its deadline; closing");
                        self.reply(421, "4.4.2", "message data took too long, closing");
                    } else {
                        self.reply(421, "4.4.2", "timeout waiting for input, closing");
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
                    return;
                }
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => n,
            };
            match self.process(&buf[..n]).await {
                Flow::Continue => {}
                Flow::Close => {
                    let _ = tokio::time::timeout(self.ctx.config.idle_timeout(), async {
                        let _ = self.flush().await;
                        if let Some(mut s) = self.stream.take() {
                            let _ = s.shutdown().await;
                        }
                    })
                    .await;
                    return;
                }
                Flow::StartTls => {
                    let patience = self.ctx.config.idle_timeout();
                    let flushed = matches!(tokio::time::timeout(patience, self.flush()).await, Ok(Ok(())));
                    if !flushed || !self.start_tls().await {
                        return;
                    }
                    self.waiting_since = Instant::now();
                }
            }
        }
    }

    /// When the current wait for input ends: message data gets `data_timeout` per block
    /// (and the message's deadline in all); a command must be complete within
    /// `idle_timeout` outside a transaction and `command_timeout` inside one, counted from
    /// the end of the previous command, so a trickled line gains nothing.
    fn read_deadline(&self) -> Instant {
        let config = &self.ctx.config;
        let until = match self.input {
            Input::Data(_) | Input::DataDiscard(_) | Input::Bdat { .. } => {
                Instant::now() + config.data_timeout()
            }
            _ if self.tx.is_none() => self.waiting_since + config.idle_timeout(),
            _ => self.waiting_since + config.command_timeout(),
        };
        match self.data_deadline {
            Some(deadline) => until.min(deadline),
            None => until,
        }
    }

    async fn start_tls(&mut self) -> bool {
        let (Some(acceptor), Some(Stream::Plain(tcp))) = (self.ctx.tls.clone(), self.stream.take()) else {
            return false;
        };
        let handshake = tokio::time::timeout(self.ctx.config.idle_timeout(), acceptor.accept(tcp));
        match handshake.await {
            Ok(Ok(tls)) => {
                self.tls = archive_core::tls::describe(tls.get_ref().1);
                self.stream = Some(Stream::Tls(Box::new(tls)));
                // RFC 3207 §4.2: forget everything learned before TLS.
                self.helo = None;
                self.tx = None;
                self.data_deadline = None;
                self.user = None;
                self.line.clear();
                true
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
                false
            }
            Err(_) => {
                tracing::info!(peer = %self.peer, "TLS handshake timed out");
                false
            }
        }
    }

    /// Consumes one chunk of input.
    async fn process(&mut self, mut rest: &[u8]) -> Flow {
        while !rest.is_empty() {
            match &mut self.input {
                Input::Command | Input::SkipLine | Input::AuthResponse => {
                    let Some(pos) = memchr::memchr(b'\n', rest) else {
                        if matches!(self.input, Input::SkipLine) {
                            return Flow::Continue;
                        }
                        if self.line.len() + rest.len() > MAX_LINE_LENGTH {
                            self.line.clear();
                            self.input = Input::SkipLine;
                        } else {
                            self.line.extend_from_slice(rest);
                        }
                        return Flow::Continue;
                    };
                    let (head, tail) = rest.split_at(pos + 1);
                    rest = tail;
                    let too_long = matches!(self.input, Input::SkipLine)
                        || self.line.len() + head.len() > MAX_LINE_LENGTH;
                    let flow = if too_long {
                        self.line.clear();
                        self.input = Input::Command;
                        self.reply(500, "5.5.2", "line too long");
                        self.count_futile()
                    } else {
                        self.line.extend_from_slice(head);
                        let line = std::mem::take(&mut self.line);
                        if matches!(self.input, Input::AuthResponse) {
                            self.input = Input::Command;
                            self.auth_plain(&line).await;
                            self.count_futile()
                        } else {
                            self.command(&line).await
                        }
                    };
                    // The next command's time starts now, not while this one was served
                    // (an AUTH may wait for a password check).
                    self.waiting_since = Instant::now();
                    if !matches!(flow, Flow::Continue) {
                        // Nothing pipelined after QUIT, STARTTLS or a closing reply is
                        // honoured.
                        return flow;
                    }
                }
                Input::Data(receiver) => {
                    let tx = self.tx.get_or_insert_with(Transaction::default);
                    let mut it = rest.iter();
                    let done = receiver.ingest(&mut it, &mut tx.body);
                    rest = it.as_slice();
                    let too_big = tx.body.len() > self.ctx.config.max_message_size;
                    if too_big {
                        // Bounded memory: the rest is read and dropped.
                        tx.body = Vec::new();
                        tx.too_big = true;
                    }
                    if done {
                        self.input = Input::Command;
                        self.finish_message().await;
                        self.waiting_since = Instant::now();
                    } else if too_big {
                        self.input = Input::DataDiscard(DummyDataReceiver::new_data(receiver));
                    }
                }
                Input::DataDiscard(receiver) => {
                    let mut it = rest.iter();
                    let done = receiver.ingest(&mut it);
                    rest = it.as_slice();
                    if done {
                        self.input = Input::Command;
                        self.finish_message().await;
                        self.waiting_since = Instant::now();
                    }
                }
                Input::Bdat {
                    receiver,
                    size,
                    reject,
                } => {
                    let (size, reject, is_last) = (*size, *reject, receiver.is_last);
                    let mut it = rest.iter();
                    let done = match (reject, self.tx.as_mut()) {
                        (None, Some(tx)) => {
                            let before = tx.body.len();
                            let done = receiver.ingest(&mut it, &mut tx.body);
                            if tx.too_big {
                                tx.body.truncate(before);
                            } else if tx.body.len() > self.ctx.config.max_message_size {
                                tx.body = Vec::new();
                                tx.too_big = true;
                            }
                            done
                        }
                        // Refused chunks are read and dropped (RFC 3030 §2); the transaction
                        // stays as it was.
                        _ => receiver.ingest(&mut it, &mut Vec::with_capacity(rest.len())),
                    };
                    rest = it.as_slice();
                    if !done {
                        continue;
                    }
                    self.input = Input::Command;
                    self.waiting_since = Instant::now();
                    match reject {
                        Some(text) => {
                            self.reply(503, "5.5.1", text);
                            if let Flow::Close = self.count_futile() {
                                return Flow::Close;
                            }
                        }
                        None if is_last => self.finish_message().await,
                        None => self.reply(250, "2.0.0", &format!("{size} octets received")),
                    }
                }
            }
        }
        Flow::Continue
    }

    /// Counts a command that delivered nothing (anything but an accepted MAIL, RCPT, DATA or
    /// BDAT); past [`MAX_FUTILE_COMMANDS`] since the last archived message the session ends.
    fn count_futile(&mut self) -> Flow {
        self.futile += 1;
        if self.futile > MAX_FUTILE_COMMANDS {
            tracing::info!(peer = %self.peer, "too many commands without mail; closing");
            self.reply(421, "4.7.0", "too many commands without mail, closing");
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        // BDAT is read here, not by smtp-proto (see `bdat`): a chunk whose size cannot be
        // trusted ends the session, since where its data ends is unknown.
        let request = match bdat::parse(line, self.ctx.config.max_message_size) {
            Bdat::Chunk { size, last } => Ok(Request::Bdat {
                chunk_size: size,
                is_last: last,
            }),
            Bdat::TooBig => {
                tracing::info!(peer = %self.peer, "BDAT chunk over the size limit; closing");
                self.reply(552, "5.3.4", "chunk size exceeds the archive's limit, closing");
                return Flow::Close;
            }
            Bdat::Malformed => {
                tracing::info!(peer = %self.peer, "BDAT with an unreadable size; closing");
                self.reply(501, "5.5.4", "syntax: BDAT chunk-size [LAST], closing");
                return Flow::Close;
            }
            Bdat::Other => Request::parse(&mut line.iter()).map(Request::into_owned),
        };
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                self.reply_parse_error(e);
                return self.count_futile();
            }
        };
        let before = self.out.len();
        let delivers = matches!(
            request,
            Request::Mail { .. }
                | Request::Rcpt { .. }
                | Request::Data
                | Request::Bdat { chunk_size: 1.., .. }
        ) || matches!(request, Request::Bdat { is_last: true, .. });
        match request {
            Request::Ehlo { host } | Request::Helo { host } if self.protocol == Protocol::Lmtp => {
                let _ = host;
                self.reply(500, "5.5.1", "this is LMTP: say LHLO");
            }
            Request::Lhlo { .. } if self.protocol == Protocol::Smtp => {
                self.reply(500, "5.5.1", "this is SMTP: say EHLO");
            }
            Request::Ehlo { host } | Request::Lhlo { host } | Request::Helo { host }
                if host.len() > MAX_HOST_LEN =>
            {
                self.reply(501, "5.5.4", "host name too long");
            }
            Request::Ehlo { host } | Request::Lhlo { host } => {
                self.helo = Some(host);
                self.tx = None;
                self.data_deadline = None;
                self.ehlo_reply();
            }
            Request::Helo { host } => {
                self.helo = Some(host);
                self.tx = None;
                self.data_deadline = None;
                let text = self.ctx.config.hostname.clone();
                self.out.extend_from_slice(format!("250 {text}\r\n").as_bytes());
            }
            Request::StartTls => {
                if !self.tls.is_empty() {
                    self.reply(503, "5.5.1", "TLS is already active");
                } else if self.ctx.tls.is_none() {
                    self.reply(454, "4.7.0", "TLS not available");
                } else {
                    self.reply(220, "2.0.0", "ready to start TLS");
                    return Flow::StartTls;
                }
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response).await,
            Request::Mail { from } => self.mail(&from.address, from.size, line),
            Request::Rcpt { to } => self.rcpt(&to.address, line),
            Request::Data => self.data(),
            Request::Bdat { chunk_size, is_last } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.tx = None;
                self.data_deadline = None;
                self.reply(250, "2.0.0", "reset");
            }
            Request::Noop { .. } => self.reply(250, "2.0.0", "ok"),
            Request::Quit => {
                self.reply(221, "2.0.0", "bye");
                return Flow::Close;
            }
            Request::Vrfy { .. } => self.reply(252, "2.5.0", "cannot verify, but will archive"),
            Request::Help { .. } => {
                self.reply(214, "2.0.0", "mailvault journal intake; see docs/OPERATIONS.md")
            }
            Request::Expn { .. } | Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.reply(502, "5.5.1", "command not implemented")
            }
        }
        // A BDAT's reply comes after its chunk; until then it counts as accepted.
        let accepted = self
            .out
            .get(before)
            .is_none_or(|code| matches!(code, b'2' | b'3'));
        if delivers && accepted {
            Flow::Continue
        } else {
            self.count_futile()
        }
    }

    fn reply_parse_error(&mut self, e: smtp_proto::Error) {
        use smtp_proto::Error as E;
        match e {
            E::UnknownCommand => self.reply(500, "5.5.1", "command not recognized"),
            E::InvalidSenderAddress => self.reply(501, "5.1.7", "bad sender address syntax"),
            E::InvalidRecipientAddress => self.reply(501, "5.1.3", "bad recipient address syntax"),
            E::SyntaxError { syntax } => self.reply(501, "5.5.4", &format!("syntax: {syntax}")),
            E::InvalidParameter { param } => self.reply(501, "5.5.4", &format!("invalid parameter {param}")),
            E::UnsupportedParameter { param } => {
                let param: String = param.chars().filter(|c| !c.is_control()).take(64).collect();
                self.reply(504, "5.5.4", &format!("unsupported parameter {param}"))
            }
            E::ResponseTooLong | E::NeedsMoreData { .. } | E::InvalidResponse { .. } => {
                self.reply(500, "5.5.2", "line too long or incomplete")
            }
        }
    }

    fn ehlo_reply(&mut self) {
        let mut r = EhloResponse::new(self.ctx.config.hostname.as_str());
        r.capabilities = smtp_proto::EXT_PIPELINING
            | smtp_proto::EXT_8BIT_MIME
            | smtp_proto::EXT_SMTP_UTF8
            | smtp_proto::EXT_SIZE
            | smtp_proto::EXT_CHUNKING
            | smtp_proto::EXT_ENHANCED_STATUS_CODES;
        r.size = self.ctx.config.max_message_size;
        if self.tls.is_empty() && self.ctx.tls.is_some() {
            r.capabilities |= smtp_proto::EXT_START_TLS;
        }
        if !self.ctx.config.relay_users.is_empty() && self.user.is_none() {
            r.capabilities |= smtp_proto::EXT_AUTH;
            r.auth_mechanisms = smtp_proto::AUTH_PLAIN;
        }
        let _ = r.write(&mut self.out);
    }
}
