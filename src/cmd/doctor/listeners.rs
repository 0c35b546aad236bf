//! The listeners: a mailvault answering on each configured address, or the address free to
//! bind while `serve` is not running. A program that answers there otherwise is one `serve`
//! would fail to start next to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use archive_core::store::Layout;

use super::Report;
use crate::config::Config;

/// How long a connect, a TLS handshake and a greeting may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest greeting line read.
const MAX_GREETING: u64 = 1024;

/// A front door's protocol, as far as its greeting goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    Lmtp,
    Smtp,
    Imap,
    Imaps,
}

impl Door {
    fn name(self) -> &'static str {
        match self {
            Door::Lmtp => "lmtp",
            Door::Smtp => "smtp",
            Door::Imap => "imap",
            Door::Imaps => "imaps",
        }
    }

    /// The configuration key and command-line option of the listener.
    fn setting(self) -> &'static str {
        match self {
            Door::Lmtp => "intake.lmtp / --lmtp",
            Door::Smtp => "intake.smtp / --smtp",
            Door::Imap => "imap.plain / --imap",
            Door::Imaps => "imap.tls / --imaps",
        }
    }

    /// Whether `line` is the greeting mailvault sends on this door (archive-smtp's session,
    /// archive-imap's server).
    fn is_mailvault(self, line: &str) -> bool {
        match self {
            Door::Lmtp => line.starts_with("220 ") && line.contains("LMTP mailvault journal intake"),
            Door::Smtp => line.starts_with("220 ") && line.contains("ESMTP mailvault journal intake"),
            Door::Imap | Door::Imaps => line.starts_with("* OK ") && line.contains("mailvault archive ready"),
        }
    }
}

/// What was found at an address.
#[derive(Debug)]
pub enum Probe {
    /// A mailvault greeted (the greeting line).
    Mailvault(String),
    /// Something else answered (its first line, or why nothing came).
    Other(String),
    /// Nobody listens, and this process could bind the address.
    Free,
    /// Nobody listens, and the address cannot be bound.
    Unbindable(std::io::Error),
}

/// The process that holds the store's write lock (`serve` or `import`): its pid and its
/// subcommand, from /proc/locks (flock locks name the pid and the file's inode).
pub struct Writer {
    pub pid: u32,
    pub command: String,
}

/// The mailvault process writing the store, if any. Reads /proc/locks instead of trying the
/// lock, so that doctor never stands in the way of a `serve` starting at the same moment.
pub fn store_writer(layout: &Layout) -> Option<Writer> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&layout.lock).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `1: FLOCK  ADVISORY  WRITE 4711 08:01:1234 0 EOF` (waiters have an extra `->`).
        let at = fields.iter().position(|f| f.matches(':').count() == 2)?;
        let ino: u64 = fields[at].rsplit(':').next()?.parse().ok()?;
        let pid: u32 = fields.get(at.checked_sub(1)?)?.parse().ok()?;
        (ino == inode && !fields.contains(&"->")).then_some(pid)
    })?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command = cmdline
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .find(|a| ["serve", "import", "reindex", "search"].contains(&a.as_ref()))
        .map(|a| a.into_owned())
        .unwrap_or_else(|| "mailvault".into());
    Some(Writer { pid, command })
}

/// Checks every configured listener.
pub fn check(r: &mut Report, config: &Config, writer: Option<&Writer>) {
    let doors = [
        (Door::Lmtp, config.intake.lmtp),
        (Door::Smtp, config.intake.smtp),
        (Door::Imap, config.imap.plain),
        (Door::Imaps, config.imap.tls),
    ];
    for (door, addr) in doors {
        let Some(addr) = addr else {
            r.ok(format!(
                "{} listener: off ({} = none)",
                door.name(),
                door.setting()
            ));
            continue;
        };
        let what = format!("{} {addr}", door.name());
        match probe(door, addr) {
            Probe::Mailvault(greeting) => r.ok(format!("{what}: mailvault answers ({greeting})")),
            Probe::Other(answer) => r.fail(
                format!("{what}: taken by another program ({answer})"),
                format!(
                    "stop that program, or give mailvault another address ({})",
                    door.setting()
                ),
            ),
            Probe::Free => match writer {
                Some(w) if w.command == "serve" => r.warn(
                    format!(
                        "{what}: nobody listens, but mailvault serve (pid {}) holds the store",
                        w.pid
                    ),
                    "it runs with other listener settings: give doctor serve's --config and options, or restart serve",
                ),
                Some(w) => r.ok(format!(
                    "{what}: free to bind (serve is not running; mailvault {} pid {} holds the store)",
                    w.command, w.pid
                )),
                None => r.ok(format!("{what}: free to bind (serve is not running)")),
            },
            Probe::Unbindable(e) => {
                let fix = match e.kind() {
                    std::io::ErrorKind::PermissionDenied => {
                        "ports below 1024 need CAP_NET_BIND_SERVICE (docs/OPERATIONS.md, the systemd unit)".to_string()
                    }
                    std::io::ErrorKind::AddrNotAvailable => {
                        format!("no interface of this machine has that address ({})", door.setting())
                    }
                    _ => format!("serve could not listen there ({})", door.setting()),
                };
                r.fail(format!("{what}: cannot be bound: {e}"), fix);
            }
        }
    }
}

/// Where to connect to reach a listener bound to `addr` (an unspecified address is every
/// address of the machine: loopback will do).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// Connects to `addr` and reads the greeting; if nobody listens, tries to bind it.
pub fn probe(door: Door, addr: SocketAddr) -> Probe {
    match TcpStream::connect_timeout(&reachable(addr), PROBE_TIMEOUT) {
        Ok(stream) => match greeting(door, stream) {
            Ok(line) if door.is_mailvault(&line) => Probe::Mailvault(line),
            Ok(line) if line.is_empty() => Probe::Other("it closed the connection without a greeting".into()),
            Ok(line) => Probe::Other(format!("it answers {line:?}")),
            Err(e) => Probe::Other(format!("no greeting: {e}")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => match TcpListener::bind(addr) {
            Ok(_) => Probe::Free,
            Err(e) => Probe::Unbindable(e),
        },
        Err(e) => Probe::Unbindable(e),
    }
}

/// The first line the peer sends (after a TLS handshake on `imaps`), without its line end.
fn greeting(door: Door, stream: TcpStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    if door != Door::Imaps {
        return first_line(stream);
    }
    let server_name = rustls::pki_types::ServerName::try_from("localhost")
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tls = rustls::ClientConnection::new(archive_core::tls_probe::any_certificate(), server_name)
        .map_err(|e| std::io::Error::other(format!("TLS: {e}")))?;
    let mut tls = rustls::StreamOwned::new(tls, stream);
    tls.flush()?;
    first_line(tls)
}

fn first_line(stream: impl Read) -> std::io::Result<String> {
    let mut line = Vec::new();
    BufReader::new(stream.take(MAX_GREETING)).read_until(b'\n', &mut line)?;
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_are_told_apart() {
        assert!(Door::Lmtp.is_mailvault("220 vault.example LMTP mailvault journal intake"));
        assert!(!Door::Smtp.is_mailvault("220 vault.example LMTP mailvault journal intake"));
        assert!(!Door::Smtp.is_mailvault("220 relay.example ESMTP Postfix"));
        assert!(Door::Imap
            .is_mailvault("* OK [CAPABILITY IMAP4rev1 STARTTLS] mailvault archive ready (read-only IMAP)"));
        assert!(!Door::Imaps.is_mailvault("* OK [CAPABILITY IMAP4rev1] Dovecot ready."));
    }

    #[test]
    fn an_unspecified_address_is_reached_over_loopback() {
        let any: SocketAddr = "0.0.0.0:2424".parse().unwrap();
        assert_eq!(reachable(any), "127.0.0.1:2424".parse().unwrap());
        let v6: SocketAddr = "[::]:1993".parse().unwrap();
        assert_eq!(reachable(v6), "[::1]:1993".parse().unwrap());
    }
}
