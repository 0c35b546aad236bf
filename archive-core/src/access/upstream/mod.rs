//! Pass-through logins: "same credentials as your mail account", literally. A login that the
//! users file does not know, and that is an address in one of the configured mail domains, is
//! tried against the mail server's own IMAP (`[auth] upstream`); it succeeds iff that server
//! accepts it. The user then sees mail of the login address and its configured aliases.
//!
//! - [`endpoint`]: the upstream URL (`imaps://` or `imap://` with mandatory STARTTLS) and the
//!   TLS trust anchors;
//! - [`client`]: the IMAP conversation (greeting, STARTTLS, LOGIN, LOGOUT);
//! - [`cache`]: recently verified logins, as Argon2id hashes, for a few minutes.
//!
//! The assumption that makes this safe: the upstream's login name for an account *is* the
//! account's address (or, with `bare_login_domain`, its local part). Pass-through is limited to
//! the configured `domains` so that a server that drops or ignores the domain of a login cannot
//! vouch for an address in a domain it does not serve.

pub mod cache;
pub mod client;
pub mod endpoint;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;

use super::names::{normalize_address, normalize_domain};
use super::Authenticated;
use crate::search::Principal;
use cache::VerifiedLogins;
use client::Answer;
use endpoint::Endpoint;

/// `[auth]` of the configuration: pass-through authentication against the mail server's IMAP.
/// Everything is optional; without `upstream` only the users file logs anyone in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `imaps://host[:port]` (TLS, default port 993) or `imap://host[:port]` (STARTTLS, default
    /// port 143). There is no unencrypted mode.
    pub upstream: Option<String>,
    /// PEM file with the CA certificate(s) the upstream's certificate must chain to, instead of
    /// the system's CA store (for a private CA).
    pub upstream_ca: Option<PathBuf>,
    /// Seconds one upstream check may take in all (connect, TLS, LOGIN).
    pub upstream_timeout_secs: u64,
    /// The mail domains whose logins the upstream checks: `alice@example.com` is tried
    /// upstream only if `example.com` is listed. Required with `upstream`.
    pub domains: Vec<String>,
    /// A login without `@` is sent to the upstream as typed and stands for
    /// `login@bare_login_domain`. Unset: such logins are not passed through.
    pub bare_login_domain: Option<String>,
    /// Seconds a verified pass-through login is remembered (as an Argon2id hash), so further
    /// connections with the same password do not ask the upstream again. 0: never.
    pub cache_secs: u64,
    /// Further addresses of a pass-through login: login address → addresses.
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// Longest `upstream_timeout_secs`: a login waits this long at most.
const MAX_TIMEOUT_SECS: u64 = 120;
/// Longest `cache_secs`: an old password keeps working at most this long after a change.
const MAX_CACHE_SECS: u64 = 3600;

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            upstream: None,
            upstream_ca: None,
            upstream_timeout_secs: 10,
            domains: Vec::new(),
            bare_login_domain: None,
            cache_secs: 300,
            aliases: BTreeMap::new(),
        }
    }
}

impl AuthConfig {
    /// Checks values that parse but make no sense; the error names the key. Files (the CA)
    /// are read by [`PassThrough::new`].
    pub fn validate(&self) -> Result<(), String> {
        self.settings().map(|_| ())
    }

    /// The checked, normalized settings; `None` without `upstream`.
    fn settings(&self) -> Result<Option<Settings>, String> {
        let Some(url) = &self.upstream else {
            let set = [
                ("upstream_ca", self.upstream_ca.is_some()),
                ("domains", !self.domains.is_empty()),
                ("bare_login_domain", self.bare_login_domain.is_some()),
                ("aliases", !self.aliases.is_empty()),
            ];
            return match set.iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(format!(
                    "auth.{key} is set but auth.upstream is not: pass-through needs the upstream"
                )),
                None => Ok(None),
            };
        };
        let endpoint = Endpoint::parse(url).map_err(|e| format!("auth.upstream: {e}"))?;
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.upstream_timeout_secs) {
            return Err(format!(
                "auth.upstream_timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
            ));
        }
        if self.cache_secs > MAX_CACHE_SECS {
            return Err(format!("auth.cache_secs must be at most {MAX_CACHE_SECS}"));
        }
        if self.domains.is_empty() {
            return Err(
                "auth.domains: list the mail domains whose logins the upstream checks, e.g. [\"example.com\"]"
                    .into(),
            );
        }
        let domains = self
            .domains
            .iter()
            .map(|d| normalize_domain(d).map_err(|e| format!("auth.domains: {e}")))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let bare_login_domain = match &self.bare_login_domain {
            None => None,
            Some(d) => {
                let d = normalize_domain(d).map_err(|e| format!("auth.bare_login_domain: {e}"))?;
                if !domains.contains(&d) {
                    return Err(format!("auth.bare_login_domain: {d} is not one of auth.domains"));
                }
                Some(d)
            }
        };
        let mut aliases = BTreeMap::new();
        for (login, extra) in &self.aliases {
            let login = normalize_address(login).map_err(|e| format!("auth.aliases: {e}"))?;
            if !in_domains(&domains, &login) {
                return Err(format!(
                    "auth.aliases: {login} is not in auth.domains, so it never logs in through the upstream"
                ));
            }
            let extra = extra
                .iter()
                .map(|a| normalize_address(a).map_err(|e| format!("auth.aliases.\"{login}\": {e}")))
                .collect::<Result<BTreeSet<_>, _>>()?;
            if aliases.insert(login.clone(), extra).is_some() {
                return Err(format!("auth.aliases: {login} is listed twice"));
            }
        }
        Ok(Some(Settings {
            endpoint,
            timeout: Duration::from_secs(self.upstream_timeout_secs),
            domains,
            bare_login_domain,
            aliases,
        }))
    }
}

/// [`AuthConfig`] checked and normalized.
struct Settings {
    endpoint: Endpoint,
    timeout: Duration,
    domains: BTreeSet<String>,
    bare_login_domain: Option<String>,
    aliases: BTreeMap<String, BTreeSet<String>>,
}

fn in_domains(domains: &BTreeSet<String>, address: &str) -> bool {
    address
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domains.contains(domain))
}

/// Why the upstream did not log someone in. The client learns only "failed" or "try later";
/// [`UpstreamRefusal::reason`] tells the audit trail.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamRefusal {
    /// The upstream answered NO to the credentials.
    #[error("authentication failed")]
    Rejected,
    /// No verdict: the upstream could not be reached or asked (the reason is for the server
    /// log; it never holds the password).
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
}

impl UpstreamRefusal {
    /// A short token for audit records: `upstream-rejected`, `upstream-unavailable`.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamRefusal::Rejected => "upstream-rejected",
            UpstreamRefusal::Unavailable(_) => "upstream-unavailable",
        }
    }
}

/// A login the upstream vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassedThrough {
    /// The user: named by their login address, seeing it and its aliases.
    pub who: Authenticated,
    /// `upstream` (asked just now) or `upstream-cache` (accepted the same password within
    /// `cache_secs`), for the audit record.
    pub via: &'static str,
}

/// Pass-through authentication, built once from [`AuthConfig`] at start-up.
pub struct PassThrough {
    settings: Settings,
    tls: Arc<ClientConfig>,
    verified: VerifiedLogins,
}

impl PassThrough {
    /// Checks the configuration and loads the TLS trust anchors; `None` without `upstream`.
    /// The error names the key.
    pub fn new(config: &AuthConfig) -> Result<Option<PassThrough>, String> {
        let Some(settings) = config.settings()? else {
            return Ok(None);
        };
        let tls =
            endpoint::tls_config(config.upstream_ca.as_deref()).map_err(|e| match config.upstream_ca {
                Some(_) => format!("auth.upstream_ca: {e}"),
                None => format!("auth.upstream: {e}"),
            })?;
        Ok(Some(PassThrough {
            settings,
            tls,
            verified: VerifiedLogins::new(Duration::from_secs(config.cache_secs)),
        }))
    }

    /// The upstream, as `imaps://host:port` or `imap://host:port`.
    pub fn upstream(&self) -> String {
        self.settings.endpoint.to_string()
    }

    /// The address `login` stands for, if pass-through handles it: an address in one of the
    /// domains, or a bare name when `bare_login_domain` is set.
    pub fn address_of(&self, login: &str) -> Option<String> {
        let address = match (&self.settings.bare_login_domain, login.contains('@')) {
            (_, true) => normalize_address(login).ok()?,
            (Some(domain), false) => normalize_address(&format!("{login}@{domain}")).ok()?,
            (None, false) => return None,
        };
        in_domains(&self.settings.domains, &address).then_some(address)
    }

    /// Checks `login`/`password` against the cache, then the upstream. `login` must be one
    /// [`PassThrough::address_of`] handles (others are rejected without asking). Blocks for up
    /// to `upstream_timeout_secs`.
    pub fn authenticate(&self, login: &str, password: &str) -> Result<PassedThrough, UpstreamRefusal> {
        let address = self.address_of(login).ok_or(UpstreamRefusal::Rejected)?;
        let who = |via| self.passed_through(address.clone(), via);
        if self.verified.accepts(login, password, Instant::now()) {
            return Ok(who("upstream-cache"));
        }
        let s = &self.settings;
        match client::check_login(&s.endpoint, &self.tls, s.timeout, login, password) {
            Answer::Accepted => {
                self.verified.remember(login, password, Instant::now());
                Ok(who("upstream"))
            }
            Answer::Rejected => {
                self.verified.forget(login);
                Err(UpstreamRefusal::Rejected)
            }
            Answer::Unavailable(why) => Err(UpstreamRefusal::Unavailable(format!("{}: {why}", s.endpoint))),
        }
    }

    fn passed_through(&self, address: String, via: &'static str) -> PassedThrough {
        let mut addresses = BTreeSet::from([address.clone()]);
        if let Some(extra) = self.settings.aliases.get(&address) {
            addresses.extend(extra.iter().cloned());
        }
        PassedThrough {
            who: Authenticated {
                name: address,
                // Every address was checked and folded by `normalize_address`.
                principal: Principal::User { addresses },
            },
            via,
        }
    }
}

impl std::fmt::Debug for PassThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassThrough")
            .field("upstream", &self.upstream())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
