//! One SMTP or LMTP session: read bytes, split commands, dispatch, answer. Pipelined
//! commands are answered together when the client's input runs dry; a transaction is
//! answered 250 only after its record is durable in the log.

use std::net::SocketAddr;
use std::sync::Arc;

use archive_core::{Appended, Envelope, OnDuplicate, Recipient, Store};
use base64::Engine;
use smtp_proto::request::receiver::{BdatReceiver, DataReceiver, DummyDataReceiver, MAX_LINE_LENGTH};
use smtp_proto::{EhloResponse, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::IntakeConfig;
use crate::journal;
use crate::metrics::Metrics;
use crate::stream::Stream;

/// Which protocol a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// What the read loop does after a chunk of input.
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// What incoming bytes are.
enum Input {
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
    /// A BDAT chunk; `reject` is the reply to give once it is read when the chunk is refused.
    Bdat {
        receiver: BdatReceiver,
        reject: Option<&'static str>,
    },
}

#[derive(Default)]
struct Transaction {
    mail_from: String,
    mail_params: String,
    rcpts: Vec<Recipient>,
    body: Vec<u8>,
    too_big: bool,
}

pub(crate) struct Session {
    ctx: Arc<Context>,
    protocol: Protocol,
    peer: SocketAddr,
    stream: Option<Stream>,
    trusted: bool,
    helo: Option<String>,
    tls: String,
    user: Option<String>,
    tx: Option<Transaction>,
    line: Vec<u8>,
    input: Input,
    out: Vec<u8>,
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
        }
    }

    fn reply(&mut self, code: u16, status: &str, text: &str) {
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
            if self.flush().await.is_err() {
                return;
            }
            let idle = matches!(self.input, Input::Command) && self.tx.is_none();
            if idle && *shutdown.borrow() {
                self.reply(421, "4.3.2", "archive shutting down, try again later");
                let _ = self.flush().await;
                return;
            }
            let timeout = match self.input {
                Input::Data(_) | Input::DataDiscard(_) | Input::Bdat { .. } => self.ctx.config.data_timeout(),
                _ => self.ctx.config.command_timeout(),
            };
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let read = tokio::select! {
                r = tokio::time::timeout(timeout, stream.read(&mut buf)) => r,
                _ = shutdown.changed(), if idle => continue,
            };
            let n = match read {
                Err(_) => {
                    self.reply(421, "4.4.2", "timeout waiting for input, closing");
                    let _ = self.flush().await;
                    return;
                }
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => n,
            };
            match self.process(&buf[..n]).await {
                Flow::Continue => {}
                Flow::Close => {
                    let _ = self.flush().await;
                    if let Some(mut s) = self.stream.take() {
                        let _ = s.shutdown().await;
                    }
                    return;
                }
                Flow::StartTls => {
                    if self.flush().await.is_err() || !self.start_tls().await {
                        return;
                    }
                }
            }
        }
    }

    async fn start_tls(&mut self) -> bool {
        let (Some(acceptor), Some(Stream::Plain(tcp))) = (self.ctx.tls.clone(), self.stream.take()) else {
            return false;
        };
        match acceptor.accept(tcp).await {
            Ok(tls) => {
                self.tls = crate::tls::describe(tls.get_ref().1);
                self.stream = Some(Stream::Tls(Box::new(tls)));
                // RFC 3207 §4.2: forget everything learned before TLS.
                self.helo = None;
                self.tx = None;
                self.user = None;
                self.line.clear();
                true
            }
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
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
                    if matches!(self.input, Input::SkipLine) {
                        self.input = Input::Command;
                        self.reply(500, "5.5.2", "line too long");
                        continue;
                    }
                    if self.line.len() + head.len() > MAX_LINE_LENGTH {
                        self.line.clear();
                        self.reply(500, "5.5.2", "line too long");
                        continue;
                    }
                    self.line.extend_from_slice(head);
                    let line = std::mem::take(&mut self.line);
                    let flow = if matches!(self.input, Input::AuthResponse) {
                        self.input = Input::Command;
                        self.auth_plain(&line);
                        Flow::Continue
                    } else {
                        self.command(&line).await
                    };
                    if !matches!(flow, Flow::Continue) {
                        // Nothing pipelined after QUIT or STARTTLS is honoured.
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
                    }
                }
                Input::Bdat { receiver, reject } => {
                    let reject = *reject;
                    let is_last = receiver.is_last;
                    let tx = self.tx.get_or_insert_with(Transaction::default);
                    let mut it = rest.iter();
                    let before = tx.body.len();
                    let done = receiver.ingest(&mut it, &mut tx.body);
                    rest = it.as_slice();
                    let chunk = tx.body.len() - before;
                    if reject.is_some() || tx.too_big {
                        // Refused chunks are read and dropped (RFC 3030 §2).
                        tx.body.truncate(before);
                    } else if tx.body.len() > self.ctx.config.max_message_size {
                        tx.body = Vec::new();
                        tx.too_big = true;
                    }
                    if !done {
                        continue;
                    }
                    self.input = Input::Command;
                    match reject {
                        Some(text) => {
                            self.reply(503, "5.5.1", text);
                            if self
                                .tx
                                .as_ref()
                                .is_some_and(|t| t.mail_from.is_empty() && t.rcpts.is_empty())
                            {
                                self.tx = None;
                            }
                        }
                        None if is_last => self.finish_message().await,
                        None => self.reply(250, "2.0.0", &format!("{chunk} octets received")),
                    }
                }
            }
        }
        Flow::Continue
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => {
                self.reply_parse_error(e);
                return Flow::Continue;
            }
        };
        match request {
            Request::Ehlo { host } | Request::Helo { host } if self.protocol == Protocol::Lmtp => {
                let _ = host;
                self.reply(500, "5.5.1", "this is LMTP: say LHLO");
            }
            Request::Lhlo { .. } if self.protocol == Protocol::Smtp => {
                self.reply(500, "5.5.1", "this is SMTP: say EHLO");
            }
            Request::Ehlo { host } | Request::Lhlo { host } => {
                self.helo = Some(host);
                self.tx = None;
                self.ehlo_reply();
            }
            Request::Helo { host } => {
                self.helo = Some(host);
                self.tx = None;
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
            } => self.auth(mechanism, &initial_response),
            Request::Mail { from } => self.mail(&from.address, from.size, line),
            Request::Rcpt { to } => self.rcpt(&to.address, line),
            Request::Data => self.data(),
            Request::Bdat { chunk_size, is_last } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.tx = None;
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
        Flow::Continue
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
        if !self.ctx.config.auth_users.is_empty() && self.user.is_none() {
            r.capabilities |= smtp_proto::EXT_AUTH;
            r.auth_mechanisms = smtp_proto::AUTH_PLAIN;
        }
        let _ = r.write(&mut self.out);
    }

    fn auth(&mut self, mechanism: u64, initial: &str) {
        if self.ctx.config.auth_users.is_empty() {
            return self.reply(502, "5.5.1", "AUTH is not enabled");
        }
        if self.user.is_some() {
            return self.reply(503, "5.5.1", "already authenticated");
        }
        if mechanism != smtp_proto::AUTH_PLAIN {
            return self.reply(504, "5.5.4", "only AUTH PLAIN is supported");
        }
        if self.tls.is_empty() && !self.trusted {
            return self.reply(538, "5.7.11", "encryption required: STARTTLS first");
        }
        if initial.is_empty() {
            self.input = Input::AuthResponse;
            self.out.extend_from_slice(b"334 \r\n");
            return;
        }
        self.auth_plain(initial.as_bytes());
    }

    /// Checks an AUTH PLAIN response (`[authzid] NUL user NUL password`, base64).
    fn auth_plain(&mut self, response: &[u8]) {
        let text = String::from_utf8_lossy(response);
        let text = text.trim();
        if text == "*" {
            return self.reply(501, "5.0.0", "authentication cancelled");
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(text) else {
            return self.reply(501, "5.5.2", "cannot decode the response");
        };
        let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
        let (user, password) = match parts.as_slice() {
            [_authzid, user, password] => (*user, *password),
            _ => return self.reply(501, "5.5.2", "malformed PLAIN response"),
        };
        let user = String::from_utf8_lossy(user).into_owned();
        let ok = self.ctx.config.auth_users.iter().any(|u| {
            u.name == user
                && argon2::PasswordHash::new(&u.password_hash).is_ok_and(|hash| {
                    use argon2::PasswordVerifier;
                    argon2::Argon2::default().verify_password(password, &hash).is_ok()
                })
        });
        if ok {
            tracing::info!(peer = %self.peer, user = %user, "relay authenticated");
            self.user = Some(user);
            self.reply(235, "2.7.0", "authenticated");
        } else {
            tracing::warn!(peer = %self.peer, user = %user, "relay authentication failed");
            self.reply(535, "5.7.8", "authentication credentials invalid");
        }
    }

    fn mail(&mut self, address: &str, size: usize, line: &[u8]) {
        if self.helo.is_none() {
            return self.reply(503, "5.5.1", "say hello first");
        }
        if !self.trusted && self.user.is_none() {
            return self.reply(530, "5.7.0", "authentication required");
        }
        if self.tx.is_some() {
            return self.reply(503, "5.5.1", "nested MAIL command");
        }
        if size > self.ctx.config.max_message_size {
            return self.reply(552, "5.3.4", "message size exceeds the archive's limit");
        }
        self.tx = Some(Transaction {
            mail_from: address.to_string(),
            mail_params: parameters(line),
            ..Transaction::default()
        });
        self.reply(250, "2.1.0", "sender ok");
    }

    fn rcpt(&mut self, address: &str, line: &[u8]) {
        let max = self.ctx.config.max_recipients;
        let accepted = self.ctx.config.accept.is_empty() || {
            let base = journal::base_address(address, &self.ctx.config.journal);
            self.ctx
                .config
                .accept
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&base))
        };
        let Some(tx) = self.tx.as_mut() else {
            return self.reply(503, "5.5.1", "need MAIL before RCPT");
        };
        if tx.rcpts.len() >= max {
            return self.reply(452, "4.5.3", "too many recipients");
        }
        if !accepted {
            Metrics::add(&self.ctx.metrics.rejected, 1);
            return self.reply(550, "5.1.1", "not an archive address");
        }
        tx.rcpts.push(Recipient {
            address: address.as_bytes().to_vec(),
            params: parameters(line).into_bytes(),
        });
        self.reply(250, "2.1.5", "recipient ok");
    }

    fn data(&mut self) {
        match &self.tx {
            None => self.reply(503, "5.5.1", "need MAIL before DATA"),
            Some(tx) if tx.rcpts.is_empty() => self.reply(554, "5.5.1", "no valid recipients"),
            Some(tx) if !tx.body.is_empty() => self.reply(503, "5.5.1", "DATA after BDAT"),
            Some(_) => {
                self.reply(354, "2.0.0", "send the message, end with <CRLF>.<CRLF>");
                self.input = Input::Data(DataReceiver::new());
            }
        }
    }

    fn bdat(&mut self, chunk_size: usize, is_last: bool) {
        let reject = match &self.tx {
            None => Some("need MAIL before BDAT"),
            Some(tx) if tx.rcpts.is_empty() => Some("no valid recipients"),
            Some(_) => None,
        };
        if let Some(tx) = self.tx.as_mut() {
            if tx.body.len().saturating_add(chunk_size) > self.ctx.config.max_message_size {
                tx.body = Vec::new();
                tx.too_big = true;
            }
        }
        self.input = Input::Bdat {
            receiver: BdatReceiver::new(chunk_size, is_last),
            reject,
        };
    }

    /// The transaction's data is complete: archive it and answer.
    async fn finish_message(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let replies = if self.protocol == Protocol::Lmtp {
            tx.rcpts.len()
        } else {
            1
        };
        if tx.too_big {
            Metrics::add(&self.ctx.metrics.rejected, 1);
            for _ in 0..replies {
                self.reply(552, "5.3.4", "message size exceeds the archive's limit");
            }
            return;
        }
        let envelope = self.envelope(&tx);
        let body = tx.body;
        let bytes = body.len() as u64;
        let store = self.ctx.store.clone();
        let journal = self.ctx.config.journal.clone();
        let result = tokio::task::spawn_blocking(move || archive(&store, envelope, body, &journal)).await;
        match result {
            Ok(Ok(a)) => {
                Metrics::add(&self.ctx.metrics.accepted, 1);
                Metrics::add(&self.ctx.metrics.bytes, bytes);
                let hash: String = a.content_hash.iter().map(|b| format!("{b:02x}")).collect();
                let text = format!("archived seq={} blake3={hash}", a.seq);
                for _ in 0..replies {
                    self.reply(250, "2.0.0", &text);
                }
            }
            Ok(Err(e)) => {
                tracing::error!(peer = %self.peer, error = %e, "archiving failed; answered 451");
                self.temporary_failure(replies);
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "archiving task failed; answered 451");
                self.temporary_failure(replies);
            }
        }
    }

    fn temporary_failure(&mut self, replies: usize) {
        Metrics::add(&self.ctx.metrics.rejected, 1);
        for _ in 0..replies {
            self.reply(451, "4.3.0", "archive storage failed, try again later");
        }
    }

    fn envelope(&self, tx: &Transaction) -> Envelope {
        // RFC 3848 "with" protocol names.
        let mut protocol = match self.protocol {
            Protocol::Smtp => "ESMTP",
            Protocol::Lmtp => "LMTP",
        }
        .to_string();
        if !self.tls.is_empty() {
            protocol.push('S');
        }
        if self.user.is_some() {
            protocol.push('A');
        }
        Envelope {
            mail_from: tx.mail_from.as_bytes().to_vec(),
            mail_params: tx.mail_params.as_bytes().to_vec(),
            rcpt_to: tx.rcpts.clone(),
            original_recipients: Vec::new(),
            protocol,
            client: self.peer.to_string(),
            helo: self.helo.clone().unwrap_or_default(),
            tls: self.tls.clone(),
            source: String::new(),
        }
    }
}

/// The ESMTP parameters of a MAIL or RCPT line, verbatim: what follows the `<path>`.
fn parameters(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    let after_colon = text.split_once(':').map_or("", |(_, rest)| rest).trim_start();
    let rest = match after_colon.strip_prefix('<') {
        Some(inner) => inner.split_once('>').map_or("", |(_, rest)| rest),
        None => after_colon.split_once(' ').map_or("", |(_, rest)| rest),
    };
    rest.trim().to_string()
}

/// Archives one transaction (blocking: waits for the durable append). An Exchange journal
/// report yields two records, the report and the original message it carries; the answer
/// names the original.
fn archive(
    store: &Store,
    mut envelope: Envelope,
    body: Vec<u8>,
    journal_config: &crate::config::JournalConfig,
) -> archive_core::Result<Appended> {
    if let Some(report) = journal::unwrap_exchange_report(&body) {
        envelope.source = "exchange-journal-report".into();
        let kept = store.append_message(&envelope, &body, OnDuplicate::RecordArrival)?;
        let hash: String = kept.content_hash.iter().map(|b| format!("{b:02x}")).collect();
        let original = Envelope {
            mail_from: report.sender.into_bytes(),
            original_recipients: report.recipients.into_iter().map(String::into_bytes).collect(),
            source: format!("exchange-journal-report seq={} blake3={hash}", kept.seq),
            ..envelope
        };
        return store.append_message(&original, &report.original, OnDuplicate::RecordArrival);
    }
    journal::decode_envelope(&mut envelope, journal_config);
    store.append_message(&envelope, &body, OnDuplicate::RecordArrival)
}

#[cfg(test)]
mod tests {
    use super::parameters;

    #[test]
    fn parameters_are_kept_verbatim() {
        assert_eq!(
            parameters(b"MAIL FROM:<a@b> BODY=8BITMIME SIZE=10\r\n"),
            "BODY=8BITMIME SIZE=10"
        );
        assert_eq!(parameters(b"RCPT TO:<x@y>\r\n"), "");
        assert_eq!(parameters(b"MAIL FROM:<> SMTPUTF8\r\n"), "SMTPUTF8");
        assert_eq!(parameters(b"RCPT TO: <x@y> NOTIFY=NEVER\r\n"), "NOTIFY=NEVER");
    }
}
