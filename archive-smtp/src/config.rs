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
    /// Simultaneous sessions per listener; more are answered 421 and closed. Clients outside
    /// `allow` together get at most half of them, so the relays in `allow` always find one.
    pub max_sessions: usize,
    /// Simultaneous sessions per listener from one client: an IPv4 address, or an IPv6 /64
    /// (one host usually holds a whole /64). More are answered 421 and closed.
    pub max_sessions_per_client: usize,
    /// Seconds to wait for a command outside a transaction (after the greeting, between
    /// messages, during a TLS handshake): an idle connection must not hold a slot for long.
    pub idle_timeout_secs: u64,
    /// Seconds to wait for a command inside a transaction (RFC 5321 §4.5.3.2: at least 5
    /// minutes).
    pub command_timeout_secs: u64,
    /// Seconds to wait for each block of message data (RFC 5321: at least 3 minutes).
    pub data_timeout_secs: u64,
    /// Seconds one message's data may take in all, from DATA (or its first BDAT) to its end;
    /// longer: 421 and the connection is closed (nothing is archived, the relay retries).
    pub data_deadline_secs: u64,
    /// Clients allowed to connect without authenticating. Others must AUTH (if `relay_users`
    /// is set) or are refused.
    pub allow: Vec<IpNet>,
    /// Accepted archive addresses (`archive@vault.example`; `+extension`s of them are
    /// accepted too). Empty: every recipient is accepted.
    pub accept: Vec<String>,
    /// How recipient-encoded journal copies are decoded.
    pub journal: JournalConfig,
    /// The clients whose mail is a journal of a given style, first match wins. Mail from
    /// anyone else is archived as a plain copy with the envelope it came with: what a message
    /// looks like never decides how it is read.
    pub journal_source: Vec<JournalSource>,
    /// TLS certificate chain (PEM). Without one, a self-signed certificate for `hostname` is
    /// made at first start and kept in the data directory (fine for loopback relays).
    pub tls_certificate: Option<PathBuf>,
    /// TLS private key (PEM), with `tls_certificate`.
    pub tls_key: Option<PathBuf>,
    /// Local users (`mailvault user add`) who may AUTH PLAIN to deliver (relays outside
    /// `allow`). Logins go through the store's login gate: rate-limited and audited.
    pub relay_users: Vec<String>,
    /// The former `[[intake.auth_users]]` tables, when a configuration file still has them:
    /// refused with a hint by `validate`. Public only so that code outside this crate can
    /// build a config with `..IntakeConfig::default()`; leave it `None`.
    #[serde(rename = "auth_users", skip_serializing)]
    pub legacy_auth_users: Option<serde::de::IgnoredAny>,
}

/// One journal source: which mail is a journal of `style`. Every condition given must hold;
/// at least one of `listener`, `clients` and `auth_user` must be given, because those are
/// facts about the connection that a message's sender cannot choose.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSource {
    /// How this source's mail is read.
    pub style: JournalStyle,
    /// The listener it arrives on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<crate::Protocol>,
    /// The client networks it comes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<IpNet>,
    /// The relay user it authenticated as (one of `relay_users`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
    /// Its envelope senders (MAIL FROM; `""` for `<>`), any case. Anyone whose mail passes the
    /// same relay can use any sender, so this only narrows the other conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mail_from: Vec<String>,
}

/// How a journal source's mail is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JournalStyle {
    /// The message with the envelope it came with (also what every other client gets).
    Plain,
    /// Original sender and recipients encoded in the archive recipients' extensions
    /// (`archive+to=alice=example.com@vault.example`, the sender as `archive+from=…`),
    /// decoded into the record's envelope.
    RecipientEncoded,
    /// Exchange / Microsoft 365 journal reports (`X-MS-Journal-Report`): the attached
    /// original is archived with the report's envelope, next to the report. Other messages
    /// of the source are plain copies.
    Exchange,
}

impl JournalStyle {
    /// The style as the configuration spells it (`recipient-encoded`), for logs.
    pub fn name(self) -> &'static str {
        match self {
            JournalStyle::Plain => "plain",
            JournalStyle::RecipientEncoded => "recipient-encoded",
            JournalStyle::Exchange => "exchange",
        }
    }
}

/// Recipient-encoded journaling (Postfix `recipient_bcc_maps` / `sender_bcc_maps` that map
/// `alice@example.com` to `archive+to=alice=example.com@vault.example` and
/// `archive+from=alice=example.com@vault.example`).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Separates the archive's local part from the encoded address (Postfix
    /// `recipient_delimiter`).
    pub recipient_delimiter: char,
    /// Stands for `@` inside the encoded address.
    pub domain_separator: char,
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
            max_sessions_per_client: 32,
            idle_timeout_secs: 30,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            data_deadline_secs: 600,
            allow: vec![
                "127.0.0.0/8".parse().expect("valid CIDR"),
                "::1/128".parse().expect("valid CIDR"),
            ],
            accept: Vec::new(),
            journal: JournalConfig::default(),
            journal_source: Vec::new(),
            tls_certificate: None,
            tls_key: None,
            relay_users: Vec::new(),
            legacy_auth_users: None,
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
        if self.max_sessions_per_client == 0 {
            return Err("intake.max_sessions_per_client must be greater than 0".into());
        }
        for (key, secs) in [
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("command_timeout_secs", self.command_timeout_secs),
            ("data_timeout_secs", self.data_timeout_secs),
            ("data_deadline_secs", self.data_deadline_secs),
        ] {
            if secs == 0 {
                return Err(format!("intake.{key} must be greater than 0"));
            }
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
        if self.legacy_auth_users.is_some() {
            return Err("intake.auth_users is gone: relay accounts are local users now \
                 (`mailvault user add`), named in intake.relay_users"
                .into());
        }
        for name in &self.relay_users {
            if name.trim().is_empty() {
                return Err("intake.relay_users: a name is empty".into());
            }
        }
        for (i, source) in self.journal_source.iter().enumerate() {
            source
                .validate(&self.relay_users)
                .map_err(|e| format!("intake.journal_source[{i}]: {e}"))?;
        }
        Ok(())
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs.max(1))
    }

    pub(crate) fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_secs.max(1))
    }

    pub(crate) fn data_deadline(&self) -> Duration {
        Duration::from_secs(self.data_deadline_secs.max(1))
    }

    /// Whether `name` (as the login gate returned it) may deliver after AUTH.
    pub(crate) fn is_relay_user(&self, name: &str) -> bool {
        self.relay_users
            .iter()
            .any(|r| r.trim().eq_ignore_ascii_case(name))
    }
}

impl JournalSource {
    fn validate(&self, relay_users: &[String]) -> Result<(), String> {
        if self.listener.is_none() && self.clients.is_empty() && self.auth_user.is_none() {
            return Err(
                "needs listener, clients or auth_user (a sender address alone can be \
                 forged by anyone whose mail passes the relay)"
                    .into(),
            );
        }
        if let Some(user) = &self.auth_user {
            if !relay_users
                .iter()
                .any(|r| r.trim().eq_ignore_ascii_case(user.trim()))
            {
                return Err(format!("auth_user {user:?} is not in intake.relay_users"));
            }
        }
        for sender in &self.mail_from {
            if !sender.is_empty() && !sender.contains('@') {
                return Err(format!(
                    "mail_from: {sender:?} is not an address (or \"\" for <>)"
                ));
            }
        }
        Ok(())
    }
}
