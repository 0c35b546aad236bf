//! Where the upstream IMAP server is and how to reach it privately: `imaps://host[:port]`
//! (TLS from the first byte, port 993) or `imap://host[:port]` (STARTTLS, port 143, and
//! nothing but STARTTLS before it). There is no way to ask for a connection without TLS.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// How the connection becomes private.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// `imaps://`: TLS from the first byte.
    Tls,
    /// `imap://`: a plain connection on which the first command is STARTTLS; the password is
    /// sent only after the TLS handshake succeeded.
    StartTls,
}

/// A parsed `auth.upstream` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// TLS or STARTTLS.
    pub security: Security,
    /// Host name or IP address, as written (IPv6 without brackets); the certificate must be
    /// valid for it.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `host` as the name the server's certificate must be valid for.
    pub server_name: ServerName<'static>,
}

impl Endpoint {
    /// Parses `imaps://host[:port]` or `imap://host[:port]` (an IPv6 address in brackets; a
    /// trailing `/` is allowed, nothing else after the authority). The error says what is
    /// wrong, without the key name (the caller adds it).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let usage = "use imaps://host[:port] (TLS) or imap://host[:port] (STARTTLS)";
        let (security, default_port, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "imaps://") {
            (Security::Tls, 993, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(url, "imap://") {
            (Security::StartTls, 143, rest)
        } else {
            return Err(format!("{url:?}: {usage}; there is no unencrypted mode"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!("{url:?}: {usage} (no user, path or query)"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("{url:?}: an IPv6 address needs its closing ]"))?;
                if host.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(format!("{url:?}: {host:?} is not an IPv6 address"));
                }
                let port = match after {
                    "" => None,
                    _ => Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| format!("{url:?}: {usage}"))?,
                    ),
                };
                (host, port)
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("{url:?}: {p:?} is not a port number")),
            },
        };
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("{url:?}: {host:?} is not a host name or IP address"))?;
        Ok(Endpoint {
            security,
            host: host.to_string(),
            port,
            server_name,
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.security {
            Security::Tls => "imaps",
            Security::StartTls => "imap",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// The TLS client configuration for the upstream: the certificates in `ca_file` (PEM) as the
/// only trust anchors, or else the system's CA store. Certificates are always verified; there
/// is no option not to. The error names what could not be loaded.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: a certificate does not parse: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no PEM certificate in it", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "no CA certificates in the system store{why}: install the ca-certificates \
                     package or name a CA file"
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (Security, String, u16) {
        let e = Endpoint::parse(url).unwrap();
        (e.security, e.host, e.port)
    }

    #[test]
    fn urls_name_tls_or_starttls_host_and_port() {
        assert_eq!(
            ok("imaps://mail.example.com"),
            (Security::Tls, "mail.example.com".into(), 993)
        );
        assert_eq!(
            ok("IMAPS://mail.example.com:10993/"),
            (Security::Tls, "mail.example.com".into(), 10993)
        );
        assert_eq!(
            ok("imap://127.0.0.1"),
            (Security::StartTls, "127.0.0.1".into(), 143)
        );
        assert_eq!(ok("imap://[::1]:1143"), (Security::StartTls, "::1".into(), 1143));
        assert_eq!(
            Endpoint::parse("imap://[::1]:1143").unwrap().to_string(),
            "imap://[::1]:1143"
        );
        assert_eq!(
            Endpoint::parse("imaps://mail.example.com").unwrap().to_string(),
            "imaps://mail.example.com:993"
        );
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for (url, says) in [
            ("mail.example.com:993", "no unencrypted mode"),
            ("http://mail.example.com", "no unencrypted mode"),
            ("imaps://", "no user, path or query"),
            ("imaps://alice@mail.example.com", "no user, path or query"),
            ("imaps://mail.example.com/INBOX", "no user, path or query"),
            ("imaps://mail.example.com:0", "not a port number"),
            ("imaps://mail.example.com:99999", "not a port number"),
            ("imaps://mail.example.com:", "not a port number"),
            ("imaps://[::1", "closing ]"),
            ("imaps://[mail]:993", "not an IPv6 address"),
            ("imaps://[::1]x", "use imaps://"),
            ("imaps://bad_host!:993", "not a host name"),
        ] {
            let e = Endpoint::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(tls_config(Some(&missing)).unwrap_err().contains("missing.pem"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(tls_config(Some(&empty))
            .unwrap_err()
            .contains("no PEM certificate"));
    }
}
