//! Intake settings: the `[intake]` table of mailvault's TOML configuration. Every field has a
//! default that suits a loopback relay, so an empty table (or none) works.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// Settings of the SMTP and LMTP receivers.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// LMTP listener (`"none"` to disable).
    #[serde(with = "archive_core::listener")]
    pub lmtp: Option<SocketAddr>,
    /// SMTP listener (`"none"` to disable).
    #[serde(with = "archive_core::listener")]
    pub smtp: Option<SocketAddr>,
    /// Name announced in the greeting and EHLO reply.
    pub hostname: String,
    /// Largest message accepted, in bytes (SIZE); bigger ones get 552 5.3.4.
    pub max_message_size: usize,
    /// Most recipients in one transaction; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Simultaneous sessions per listener; more are answered 421 and closed.
    pub max_sessions: usize,
    /// Seconds to wait for a command (RFC 5321 §4.5.3.2: at least 5 minutes).
    pub command_timeout_secs: u64,
    /// Seconds to wait for each block of message data (RFC 5321: at least 3 minutes).
    pub data_timeout_secs: u64,
    /// Clients allowed to connect without authenticating. Others must AUTH (if `auth_users`
    /// is set) or are refused.
    pub allow: Vec<IpNet>,
    /// Accepted archive addresses (`archive@vault.example`; `+extension`s of them are
    /// accepted too). Empty: every recipient is accepted.
    pub accept: Vec<String>,
    /// How recipient-encoded journal copies are decoded.
    pub journal: JournalConfig,
    /// TLS certificate chain (PEM). Without one, a self-signed certificate for `hostname` is
    /// made at first start and kept in the data directory (fine for loopback relays).
    pub tls_certificate: Option<PathBuf>,
    /// TLS private key (PEM), with `tls_certificate`.
    pub tls_key: Option<PathBuf>,
    /// Users allowed to AUTH PLAIN (relays outside `allow`), with Argon2id password hashes.
    pub auth_users: Vec<AuthUser>,
}

/// Recipient-encoded journaling (Postfix `recipient_bcc_maps` / `sender_bcc_maps` that map
/// `alice@example.com` to `archive+alice=example.com@vault.example`).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Separates the archive's local part from the encoded address (Postfix
    /// `recipient_delimiter`).
    pub recipient_delimiter: char,
    /// Stands for `@` inside the encoded address.
    pub domain_separator: char,
}

/// A relay account for AUTH PLAIN.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthUser {
    /// Login name.
    pub name: String,
    /// Argon2id PHC string (`$argon2id$v=19$…`).
    pub password_hash: String,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            lmtp: Some(SocketAddr::from(([127, 0, 0, 1], 2424))),
            smtp: Some(SocketAddr::from(([127, 0, 0, 1], 2525))),
            hostname: "mailvault.localhost".into(),
            max_message_size: 50 << 20,
            max_recipients: 1000,
            max_sessions: 256,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            allow: vec![
                "127.0.0.0/8".parse().expect("valid CIDR"),
                "::1/128".parse().expect("valid CIDR"),
            ],
            accept: Vec::new(),
            journal: JournalConfig::default(),
            tls_certificate: None,
            tls_key: None,
            auth_users: Vec::new(),
        }
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            recipient_delimiter: '+',
            domain_separator: '=',
        }
    }
}

impl IntakeConfig {
    /// Checks values that parse but make no sense; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_message_size == 0 {
            return Err("intake.max_message_size must be greater than 0".into());
        }
        if self.max_message_size as u64 > archive_core::log::reader::MAX_CONTENT_LEN {
            return Err(format!(
                "intake.max_message_size must be at most {}",
                archive_core::log::reader::MAX_CONTENT_LEN
            ));
        }
        if self.max_recipients == 0 {
            return Err("intake.max_recipients must be greater than 0".into());
        }
        if self.max_sessions == 0 {
            return Err("intake.max_sessions must be greater than 0".into());
        }
        if self.tls_certificate.is_some() != self.tls_key.is_some() {
            return Err("intake.tls_certificate and intake.tls_key go together".into());
        }
        if self.hostname.is_empty() || self.hostname.contains(char::is_whitespace) {
            return Err("intake.hostname must be a host name without spaces".into());
        }
        for a in &self.accept {
            if !a.contains('@') {
                return Err(format!("intake.accept: {a:?} is not an address"));
            }
        }
        for u in &self.auth_users {
            argon2::PasswordHash::new(&u.password_hash).map_err(|e| {
                format!(
                    "intake.auth_users: {}: password_hash is not a PHC string: {e}",
                    u.name
                )
            })?;
        }
        Ok(())
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs.max(1))
    }

    pub(crate) fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_secs.max(1))
    }
}
