//! Listener configuration of the IMAP front door, with its documented defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the IMAP front door listens and what it allows. Part of the one TOML configuration
/// of `mailvault serve` (wired there later); every field has a default.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// Plain-text IMAP (STARTTLS offered; LOGIN refused before TLS unless
    /// `allow_plaintext_login`). Default `127.0.0.1:1143`; `"none"` disables it.
    #[serde(with = "archive_core::listener")]
    pub plain: Option<SocketAddr>,
    /// Whether the plain listener takes passwords before STARTTLS. Default false: who the
    /// peer is (loopback, a local proxy) says nothing about whether the path to the user is
    /// private, so only the listener's configuration decides.
    pub allow_plaintext_login: bool,
    /// Implicit-TLS IMAP. Default `127.0.0.1:1993`; `"none"` disables it.
    #[serde(with = "archive_core::listener")]
    pub tls: Option<SocketAddr>,
    /// PEM certificate chain; without it (or the key) a self-signed pair is made in
    /// `<data>/tls`.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key of `tls_certificate`.
    pub tls_key: Option<PathBuf>,
    /// Name for the self-signed certificate.
    pub hostname: String,
    /// Limits against resource exhaustion.
    pub limits: ImapLimits,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            plain: Some(SocketAddr::from(([127, 0, 0, 1], 1143))),
            allow_plaintext_login: false,
            tls: Some(SocketAddr::from(([127, 0, 0, 1], 1993))),
            tls_certificate: None,
            tls_key: None,
            hostname: "localhost".into(),
            limits: ImapLimits::default(),
        }
    }
}

/// Per-connection and per-client limits.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapLimits {
    /// Longest command line, literals included (bytes). Default 64 KiB: a read-only server
    /// takes no APPEND, so commands are short.
    pub max_command_bytes: u32,
    /// Largest literal a client may send (bytes); must be below `max_command_bytes`.
    /// Default 16 KiB.
    pub max_literal_bytes: u32,
    /// Time from connect (TLS handshake included) within which a client must log in, however
    /// busy it keeps the connection. Default 60 s.
    #[serde(rename = "login_timeout_secs", with = "seconds")]
    pub login_timeout: Duration,
    /// Idle time before an authenticated connection is closed (RFC 3501: at least 30
    /// minutes; IDLE clients re-issue IDLE within 29). Default 30 min.
    #[serde(rename = "autologout_secs", with = "seconds")]
    pub autologout: Duration,
    /// Simultaneous connections from one client network (an IPv4 address or an IPv6 /64),
    /// logged in or not. Default 20.
    pub max_connections_per_ip: usize,
    /// Simultaneous logged-in connections in total. Default 1000.
    pub max_connections: usize,
    /// Simultaneous connections not logged in yet, in total; when full, a new connection
    /// pushes out the oldest of them. Default 100.
    pub max_unauthenticated: usize,
    /// Simultaneous connections not logged in yet from one client network. Default 10.
    pub max_unauthenticated_per_ip: usize,
    /// Simultaneous logged-in sessions of one user, from anywhere (mail clients open up to
    /// five per account; phones and laptops add theirs). Default 20.
    pub max_connections_per_user: usize,
    /// Memory for ENVELOPEs already computed, shared by all sessions (MiB; about 300 bytes a
    /// message: the default holds ~200,000). Default 64; 0 turns the cache off.
    pub envelope_cache_mib: usize,
}

impl Default for ImapLimits {
    fn default() -> Self {
        ImapLimits {
            max_command_bytes: 64 << 10,
            max_literal_bytes: 16 << 10,
            login_timeout: Duration::from_secs(60),
            autologout: Duration::from_secs(30 * 60),
            max_connections_per_ip: 20,
            max_connections: 1000,
            max_unauthenticated: 100,
            max_unauthenticated_per_ip: 10,
            max_connections_per_user: 20,
            envelope_cache_mib: 64,
        }
    }
}

impl ImapConfig {
    /// Checks values that would make the server misbehave; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_literal_bytes >= l.max_command_bytes {
            return Err("imap.limits.max_literal_bytes must be below max_command_bytes".into());
        }
        let counts = [
            l.max_connections_per_ip,
            l.max_connections,
            l.max_connections_per_user,
            l.max_unauthenticated,
            l.max_unauthenticated_per_ip,
        ];
        if counts.contains(&0) {
            return Err(
                "imap.limits.max_connections, max_connections_per_ip, max_connections_per_user, \
                 max_unauthenticated and max_unauthenticated_per_ip must be at least 1"
                    .into(),
            );
        }
        if self.tls_certificate.is_some() != self.tls_key.is_some() {
            return Err("imap.tls_certificate and imap.tls_key go together".into());
        }
        Ok(())
    }
}

mod seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_secs(secs))
    }
}
