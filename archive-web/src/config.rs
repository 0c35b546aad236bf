//! `[web]`: the web front door's listener, HTTPS and session settings (docs/CONFIG.md §[web]).

use std::net::SocketAddr;
use std::path::PathBuf;

/// The web listener's default address.
pub const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);

/// Most search threads a configuration may ask for (more than cores only slows searches).
pub const MAX_SEARCH_THREADS: usize = 1024;

/// Longest search queue a configuration may ask for (its slots are allocated at start).
pub const MAX_SEARCH_QUEUE: usize = 65_536;

/// `[web]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Listener address, or `"none"`.
    #[serde(with = "archive_core::listener")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain: with `tls_key`, the listener speaks HTTPS (rustls, the same
    /// settings as IMAP's); without, plain HTTP (for loopback or behind a TLS proxy).
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key of `tls_certificate`.
    pub tls_key: Option<PathBuf>,
    /// A session ends after this many seconds without a request.
    pub session_idle_secs: u64,
    /// A session ends this many seconds after its login, however busy.
    pub session_max_secs: u64,
    /// Most sessions held at once; past it the one idle longest is ended.
    pub max_sessions: usize,
    /// Most connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Most connections open at once from one client network (an IPv4 address or an IPv6
    /// /64); more from it are closed on accept.
    pub max_connections_per_ip: usize,
    /// Searches run at once, each on a thread of the search pool; 0: one per core.
    pub search_threads: usize,
    /// Searches waiting for a pool thread, at most; one more is answered 429 `busy`. One
    /// user may hold a quarter of it (at least one per thread).
    pub search_queue: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: Some(SocketAddr::from(DEFAULT_LISTEN)),
            tls_certificate: None,
            tls_key: None,
            session_idle_secs: 30 * 60,
            session_max_secs: 12 * 3600,
            max_sessions: 10_000,
            max_connections: 512,
            max_connections_per_ip: 128,
            search_threads: 0,
            search_queue: 256,
        }
    }
}

impl WebConfig {
    /// Checks values that parse but make no sense; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.tls_certificate.is_some() != self.tls_key.is_some() {
            return Err("web.tls_certificate and web.tls_key go together: set both or neither".into());
        }
        if self.session_idle_secs == 0 || self.session_max_secs == 0 {
            return Err("web.session_idle_secs and web.session_max_secs must be at least 1".into());
        }
        if self.max_sessions == 0
            || self.max_connections == 0
            || self.max_connections_per_ip == 0
            || self.search_queue == 0
        {
            return Err(
                "web.max_sessions, web.max_connections, web.max_connections_per_ip and \
                 web.search_queue must be at least 1"
                    .into(),
            );
        }
        if self.search_threads > MAX_SEARCH_THREADS || self.search_queue > MAX_SEARCH_QUEUE {
            return Err(format!(
                "web.search_threads may be at most {MAX_SEARCH_THREADS} and web.search_queue at most {MAX_SEARCH_QUEUE}"
            ));
        }
        Ok(())
    }

    /// Whether the listener speaks HTTPS.
    pub fn https(&self) -> bool {
        self.tls_certificate.is_some() && self.tls_key.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_pool_sizes_are_bounded() {
        assert!(WebConfig::default().validate().is_ok());
        for bad in [
            WebConfig {
                search_queue: 0,
                ..WebConfig::default()
            },
            WebConfig {
                search_queue: MAX_SEARCH_QUEUE + 1,
                ..WebConfig::default()
            },
            WebConfig {
                search_threads: MAX_SEARCH_THREADS + 1,
                ..WebConfig::default()
            },
        ] {
            let refused = bad.validate().unwrap_err();
            assert!(refused.contains("web.search_"), "{refused}");
        }
    }
}
