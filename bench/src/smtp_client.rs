//! A minimal SMTP/LMTP client for the benchmarks (`intake`, `soak`): replies read line by
//! line with a timeout, and messages put in wire form (CRLF, dot-stuffed, terminated).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::imap_client::connect_from;

/// Longest reply line kept; the rest of a longer line is read and dropped.
const MAX_REPLY_LINE: usize = 4096;

/// A message ready to send.
pub struct Prepared {
    /// The message as delivered: CRLF line ends, ending with CRLF (what the server stores).
    pub canonical: Vec<u8>,
    /// `canonical` dot-stuffed, followed by the terminating `.` CRLF.
    pub wire: Vec<u8>,
}

impl Prepared {
    /// Puts a message on the wire as an MTA sends it: bare LF line ends become CRLF, lines
    /// starting with `.` are dot-stuffed, and a message without a final line end gets one.
    pub fn new(raw: &[u8]) -> Prepared {
        let mut canonical = Vec::with_capacity(raw.len() + raw.len() / 32 + 2);
        let mut prev = 0u8;
        for &b in raw {
            if b == b'\n' && prev != b'\r' {
                canonical.push(b'\r');
            }
            canonical.push(b);
            prev = b;
        }
        if !canonical.ends_with(b"\r\n") {
            canonical.extend_from_slice(b"\r\n");
        }
        let mut wire = Vec::with_capacity(canonical.len() + 64);
        let mut line_start = true;
        for &b in &canonical {
            if line_start && b == b'.' {
                wire.push(b'.');
            }
            wire.push(b);
            line_start = b == b'\n';
        }
        wire.extend_from_slice(b".\r\n");
        Prepared { canonical, wire }
    }
}

/// One SMTP or LMTP reply.
#[derive(Default, Debug, Clone)]
pub struct Reply {
    pub code: u16,
    /// The last line.
    pub text: String,
    /// A line of the reply offered PIPELINING.
    pub pipelining: bool,
}

/// One SMTP or LMTP connection.
pub struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: Vec<u8>,
}

impl Smtp {
    /// Connects (from `source` when given); every read and write waits at most `timeout`.
    /// The greeting is left for the caller to read.
    pub fn connect(addr: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> Result<Smtp, String> {
        let stream = connect_from(addr, source, timeout).map_err(|e| format!("connecting to {addr}: {e}"))?;
        Smtp::over(stream).map_err(|e| format!("setting up the connection to {addr}: {e}"))
    }

    /// Wraps a connected stream whose timeouts are set.
    pub fn over(stream: TcpStream) -> std::io::Result<Smtp> {
        let writer = stream.try_clone()?;
        Ok(Smtp {
            reader: BufReader::with_capacity(16 << 10, stream),
            writer,
            line: Vec::new(),
        })
    }

    /// Changes how long each read and write may wait.
    pub fn set_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        let timeout = timeout.max(Duration::from_millis(1));
        self.writer.set_read_timeout(Some(timeout))?;
        self.writer.set_write_timeout(Some(timeout))
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.writer.write_all(bytes).map_err(|e| format!("writing: {e}"))
    }

    /// Reads one (possibly multi-line) reply.
    pub fn reply(&mut self) -> Result<Reply, String> {
        let mut reply = Reply::default();
        loop {
            self.line.clear();
            let n = (&mut self.reader)
                .take(MAX_REPLY_LINE as u64)
                .read_until(b'\n', &mut self.line)
                .map_err(|e| format!("reading a reply: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            if !self.line.ends_with(b"\n") {
                // Too long: drop the rest of the line.
                let mut rest = Vec::new();
                let _ = self.reader.read_until(b'\n', &mut rest);
            }
            let text = String::from_utf8_lossy(&self.line).trim_end().to_string();
            let Some(code) = text.get(..3).and_then(|c| c.parse::<u16>().ok()) else {
                return Err(format!("not a reply: {text:?}"));
            };
            if text
                .get(4..)
                .is_some_and(|t| t.eq_ignore_ascii_case("PIPELINING"))
            {
                reply.pipelining = true;
            }
            reply.code = code;
            reply.text = text;
            if self.line.get(3) != Some(&b'-') {
                return Ok(reply);
            }
        }
    }

    /// Reads one reply, which must have `code`.
    pub fn expect(&mut self, code: u16, what: &str) -> Result<Reply, String> {
        let reply = self.reply()?;
        if reply.code != code {
            return Err(format!("{what} answered {:?}, expected {code}", reply.text));
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_dot_stuffed_with_crlf() {
        let p = Prepared::new(b"a\n.b\r\nc");
        assert_eq!(p.canonical, b"a\r\n.b\r\nc\r\n");
        assert_eq!(p.wire, b"a\r\n..b\r\nc\r\n.\r\n");
    }
}
