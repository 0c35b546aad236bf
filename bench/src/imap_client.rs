//! A minimal IMAP client for the benchmarks (`imap`, `soak`): tagged commands over plain TCP
//! or implicit TLS (rustls), responses read line by line, literals skipped and counted (never
//! buffered, so a literal size the server states costs no memory). Every read has a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::{fail, BenchResult};

/// Where a benchmark connects: an address, over plain TCP or implicit TLS (port 993 style).
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// The byte stream under a session.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// The TLS client configuration every benchmark session shares: the servers measured are
/// private instances on loopback with self-signed certificates (`tls_probe`).
fn tls_config() -> Arc<rustls::ClientConfig> {
    archive_core::tls_probe::any_certificate()
}

/// Untagged text kept per response when collecting (enough for a few hundred ENVELOPEs).
const MAX_COLLECTED_TEXT: usize = 256 << 10;

/// One IMAP connection.
pub struct Imap {
    /// Reads and writes (through `get_mut`) go through the one transport.
    r: BufReader<Transport>,
    /// The TCP socket under it, for timeouts.
    tcp: TcpStream,
    tag: u64,
    /// The mailbox size from the last SELECT (or EXISTS seen since).
    pub exists: u64,
    /// The server's greeting line.
    pub greeting: String,
}

/// What one command got back.
#[derive(Default)]
pub struct Response {
    /// Untagged responses.
    pub untagged: u64,
    /// Bytes of literals.
    pub literal_bytes: u64,
    /// Bytes read in all (lines and literals).
    pub bytes: u64,
    /// UIDs of FETCH responses and numbers of SEARCH responses (when collecting).
    pub uids: Vec<u32>,
    /// Numbers in SEARCH responses.
    pub search_hits: u64,
    /// The last `* N EXISTS`.
    pub exists: Option<u64>,
    /// The tagged status with its text (`OK …`, `NO [LIMIT] …`, `BAD …`).
    pub status: String,
    /// Untagged lines, literals left out, up to 256 KiB (when collecting).
    pub text: String,
    /// A `* BYE` line, if one came.
    pub bye: Option<String>,
}

impl Response {
    /// Whether the tagged status is OK.
    pub fn ok(&self) -> bool {
        self.status.starts_with("OK")
    }
}

/// Connects to `addr`, from `source` when given (bind before connect, so a client can choose
/// its loopback address: the whole of 127.0.0.0/8 is local on Linux).
pub fn connect_from(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect_timeout(&addr.into(), timeout)?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

impl Imap {
    /// Connects (from `source` when given) and reads the greeting, which must be `* OK`.
    /// Every later read and write waits at most `timeout`.
    pub fn connect(addr: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> BenchResult<Imap> {
        Imap::connect_to(Endpoint { addr, tls: false }, source, timeout)
    }

    /// As [`Imap::connect`], over TLS if the endpoint says so (the handshake is done before
    /// the greeting is read).
    pub fn connect_to(endpoint: Endpoint, source: Option<IpAddr>, timeout: Duration) -> BenchResult<Imap> {
        let addr = endpoint.addr;
        let stream = connect_from(addr, source, timeout).map_err(|e| format!("connecting to {addr}: {e}"))?;
        let c = if endpoint.tls {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let tls = rustls::ClientConnection::new(tls_config(), name)
                .map_err(|e| format!("TLS to {addr}: {e}"))?;
            let tcp = stream.try_clone()?;
            let mut transport = Transport::Tls(Box::new(rustls::StreamOwned::new(tls, stream)));
            // The handshake, before any IMAP byte.
            transport.flush()?;
            Imap::over_transport(transport, tcp)?
        } else {
            Imap::over(stream)?
        };
        if !c.greeting.starts_with("* OK") {
            return fail(format!("greeting {:?}", c.greeting));
        }
        Ok(c)
    }

    /// Wraps a connected stream (its timeouts already set) and reads the greeting, whatever
    /// it is.
    pub fn over(stream: TcpStream) -> BenchResult<Imap> {
        let tcp = stream.try_clone()?;
        Imap::over_transport(Transport::Plain(stream), tcp)
    }

    fn over_transport(transport: Transport, tcp: TcpStream) -> BenchResult<Imap> {
        let mut c = Imap {
            r: BufReader::with_capacity(64 << 10, transport),
            tcp,
            tag: 0,
            exists: 0,
            greeting: String::new(),
        };
        let mut greeting = Vec::new();
        if c.r.read_until(b'\n', &mut greeting)? == 0 {
            return fail("the server closed the connection before its greeting");
        }
        c.greeting = String::from_utf8_lossy(&greeting).trim_end().to_string();
        Ok(c)
    }

    /// Changes how long each read and write may wait.
    pub fn set_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        let timeout = timeout.max(Duration::from_millis(1));
        self.tcp.set_read_timeout(Some(timeout))?;
        self.tcp.set_write_timeout(Some(timeout))
    }

    /// Connects, logs in as `user` and selects INBOX.
    pub fn login_select(endpoint: Endpoint, user: &str, password: &str) -> BenchResult<Imap> {
        let mut c = Imap::connect_to(endpoint, None, Duration::from_secs(600))?;
        c.login(user, password)?;
        c.select("INBOX")?;
        Ok(c)
    }

    /// LOGIN, which must succeed.
    pub fn login(&mut self, user: &str, password: &str) -> BenchResult<Response> {
        self.command(&format!("LOGIN \"{user}\" \"{password}\""), false)
    }

    /// SELECT, which must succeed; sets `exists`.
    pub fn select(&mut self, mailbox: &str) -> BenchResult<Response> {
        let r = self.command(&format!("SELECT \"{mailbox}\""), false)?;
        self.exists = r.exists.unwrap_or(0);
        Ok(r)
    }

    /// LOGOUT; the answer does not matter.
    pub fn logout(&mut self) {
        let _ = self.command("LOGOUT", false);
    }

    /// Sends one command and reads up to its tagged response, which must be OK. `collect`:
    /// keep UIDs, SEARCH numbers and the untagged text.
    pub fn command(&mut self, cmd: &str, collect: bool) -> BenchResult<Response> {
        let r = self.exchange(cmd.as_bytes(), collect)?;
        if !r.ok() {
            return fail(format!("{:.60}: {}", cmd, r.status));
        }
        Ok(r)
    }

    /// Sends one command (without tag and line end) and reads up to its tagged response,
    /// whatever its status.
    pub fn exchange(&mut self, cmd: &[u8], collect: bool) -> BenchResult<Response> {
        let tag = self.send(cmd)?;
        self.read_tagged(&tag, collect)
            .map_err(|e| format!("{}: {e}", String::from_utf8_lossy(&cmd[..cmd.len().min(40)])).into())
    }

    /// Sends `TAG cmd CRLF`; returns the tag.
    pub fn send(&mut self, cmd: &[u8]) -> BenchResult<String> {
        self.tag += 1;
        let tag = format!("b{}", self.tag);
        let mut line = Vec::with_capacity(tag.len() + cmd.len() + 3);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(cmd);
        line.extend_from_slice(b"\r\n");
        self.send_raw(&line)?;
        Ok(tag)
    }

    /// Sends bytes as they are (an IMAP continuation such as `DONE`).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let w = self.r.get_mut();
        w.write_all(bytes)?;
        w.flush()
    }

    /// Reads one line (a continuation request such as `+ idling`), literals skipped.
    pub fn read_line(&mut self) -> BenchResult<String> {
        let mut line = Vec::new();
        if self.r.read_until(b'\n', &mut line)? == 0 {
            return fail("the server closed the connection");
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }

    /// `UID FETCH uid BODY.PEEK[]`, which must be answered OK with one literal: its bytes
    /// (kept, unlike other answers' literals; refused above `cap` bytes before reading).
    pub fn fetch_body(&mut self, uid: u64, cap: u64) -> BenchResult<Vec<u8>> {
        let tag = self.send(format!("UID FETCH {uid} BODY.PEEK[]").as_bytes())?;
        let mut body: Option<Vec<u8>> = None;
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            if self.r.read_until(b'\n', &mut line)? == 0 {
                return fail(format!("UID FETCH {uid}: the server closed the connection"));
            }
            if let Some(size) = literal_size(&line) {
                if size > cap || body.is_some() {
                    return fail(format!(
                        "UID FETCH {uid}: a literal of {size} bytes, or a second one"
                    ));
                }
                let mut bytes = vec![0; size as usize];
                self.r.read_exact(&mut bytes)?;
                body = Some(bytes);
                continue;
            }
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                let status = String::from_utf8_lossy(&line[tag.len() + 1..])
                    .trim_end()
                    .to_string();
                return match body {
                    Some(b) if status.starts_with("OK") => Ok(b),
                    _ => fail(format!("UID FETCH {uid}: {status} (no message bytes)")),
                };
            }
        }
    }

    /// Reads responses up to the tagged one for `tag`.
    pub fn read_tagged(&mut self, tag: &str, collect: bool) -> BenchResult<Response> {
        let mut out = Response::default();
        let mut line = Vec::with_capacity(1024);
        loop {
            // One response: a line, and after each literal announced at its end, more line.
            line.clear();
            loop {
                let start = line.len();
                let n = self.r.read_until(b'\n', &mut line)?;
                if n == 0 {
                    let bye = out
                        .bye
                        .as_deref()
                        .map_or(String::new(), |b| format!(" after {b:?}"));
                    return fail(format!("the server closed the connection{bye}"));
                }
                out.bytes += n as u64;
                let Some(size) = literal_size(&line[start..]) else {
                    break;
                };
                let skipped = std::io::copy(&mut (&mut self.r).take(size), &mut std::io::sink())?;
                if skipped < size {
                    return fail("the server closed the connection inside a literal");
                }
                out.literal_bytes += size;
                out.bytes += size;
            }
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                out.status = String::from_utf8_lossy(&line[tag.len() + 1..])
                    .trim_end()
                    .to_string();
                if let Some(n) = out.exists {
                    self.exists = n;
                }
                return Ok(out);
            }
            if !line.starts_with(b"* ") {
                continue;
            }
            out.untagged += 1;
            let text = &line[2..];
            if collect && out.text.len() < MAX_COLLECTED_TEXT {
                out.text.push_str(&String::from_utf8_lossy(text));
            }
            if text.starts_with(b"BYE") {
                out.bye = Some(String::from_utf8_lossy(&line).trim_end().to_string());
            } else if text.starts_with(b"SEARCH") {
                let numbers = text[6..]
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty());
                for n in numbers {
                    out.search_hits += 1;
                    if collect {
                        if let Some(uid) = std::str::from_utf8(n).ok().and_then(|n| n.parse().ok()) {
                            out.uids.push(uid);
                        }
                    }
                }
            } else if let Some(n) = number_before(text, b" EXISTS") {
                out.exists = Some(n);
            } else if collect {
                if let Some(at) = find(text, b"UID ") {
                    let digits: Vec<u8> = text[at + 4..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .copied()
                        .collect();
                    if let Ok(uid) = String::from_utf8_lossy(&digits).parse() {
                        out.uids.push(uid);
                    }
                }
            }
        }
    }
}

/// The size of a literal announced at the end of a line (`{N}\r\n` or `{N+}\r\n`).
fn literal_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n"))?;
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn number_before(text: &[u8], suffix: &[u8]) -> Option<u64> {
    let trimmed = text.strip_suffix(b"\r\n").unwrap_or(text);
    let number = trimmed.strip_suffix(suffix)?;
    std::str::from_utf8(number).ok()?.parse().ok()
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_sizes_are_read_from_line_ends() {
        assert_eq!(literal_size(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_size(b"a LOGIN {3+}\r\n"), Some(3));
        assert_eq!(literal_size(b"* 1 FETCH (FLAGS ())\r\n"), None);
    }
}
