//! SIGHUP: read the configuration file again (with the command line's listener options on
//! top, as at start) and apply what can change while the server runs; name what cannot. A
//! reload never stops the server: a file that does not parse or validate, or a certificate
//! that does not load, is logged and the server runs on as before.
//!
//! Live: `[intake]` (new sessions; not its `lmtp`/`smtp` listeners), the certificates of the
//! intake and IMAP (the files are read again, so renewed ones are picked up; `imap.hostname`
//! for the self-signed one), the web certificate files (when it speaks HTTPS), `server.log` (unless `RUST_LOG` is set) and
//! `server.shutdown_grace_secs`. The users file needs nothing: it is read at every login.
//! Everything else (`[store]`, `[auth]`, the rest of `[imap]`, listener addresses,
//! `server.log_format`) takes a restart, and the log says which keys changed.

use std::collections::BTreeMap;
use std::path::Path;

use archive_core::access::Users;
use archive_smtp::Intake;

use super::Args;
use crate::config::Config;
use crate::logging::LogControl;

/// What the running server was configured with, and how to read it again.
pub struct Reloader<'a> {
    args: &'a Args,
    data: &'a Path,
    log: LogControl,
    /// The configuration in effect: live keys as last applied, the others as at start.
    running: Config,
}

impl<'a> Reloader<'a> {
    pub fn new(args: &'a Args, data: &'a Path, log: LogControl, running: Config) -> Reloader<'a> {
        Reloader {
            args,
            data,
            log,
            running,
        }
    }

    /// The configuration in effect.
    pub fn running(&self) -> &Config {
        &self.running
    }

    /// Reloads on SIGHUP.
    pub fn reload(
        &mut self,
        intake: &Intake,
        imap: &archive_imap::Listening,
        web: Option<&archive_web::Listening>,
    ) {
        tracing::info!("SIGHUP: reloading the configuration, the certificates and the users");
        let new = match super::load_config(self.args) {
            Ok(new) => new,
            Err(e) => {
                // One log line: TOML's errors span several (a caret under the column).
                let error = format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ");
                tracing::error!(%error, "SIGHUP: configuration not reloaded; running on unchanged");
                return;
            }
        };
        let restart_only: Vec<String> = changed_keys(&self.running, &new)
            .into_iter()
            .filter(|k| !is_live(k))
            .collect();

        match self.log.set(&new.server.log) {
            Ok(true) => self.running.server.log = new.server.log.clone(),
            Ok(false) => tracing::info!("SIGHUP: RUST_LOG is set and overrides server.log"),
            Err(e) => tracing::error!(error = %e, "SIGHUP: server.log not changed"),
        }
        self.running.server.shutdown_grace_secs = new.server.shutdown_grace_secs;
        match intake.reload(new.intake.clone()) {
            Ok(()) => {
                let (lmtp, smtp) = (self.running.intake.lmtp, self.running.intake.smtp);
                self.running.intake = new.intake.clone();
                self.running.intake.lmtp = lmtp;
                self.running.intake.smtp = smtp;
                tracing::info!(certificate = %intake.certificate(), "SIGHUP: [intake] and its certificate applied to new sessions");
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: [intake] not reloaded; it runs on unchanged"),
        }
        match imap.reload_certificate(&new.imap) {
            Ok(()) => {
                self.running.imap.tls_certificate = new.imap.tls_certificate.clone();
                self.running.imap.tls_key = new.imap.tls_key.clone();
                self.running.imap.hostname = new.imap.hostname.clone();
                tracing::info!(certificate = %imap.certificate(), "SIGHUP: IMAP certificate loaded for new connections");
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: IMAP certificate not reloaded; the current one stays")
            }
        }
        if let Some(web) = web {
            match web.reload_certificate(&new.web, &self.data.join("tls")) {
                Ok(()) => {
                    self.running.web.tls_certificate = new.web.tls_certificate.clone();
                    self.running.web.tls_key = new.web.tls_key.clone();
                    if let Some(certificate) = web.certificate() {
                        tracing::info!(%certificate, "SIGHUP: web certificate loaded for new connections");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: web certificate not reloaded; the current one stays")
                }
            }
        }
        match Users::load(self.data) {
            Ok(users) => tracing::info!(
                users = users.iter().count(),
                "SIGHUP: users.json reads fine (it is read at every login; nothing to reload)"
            ),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: users.json does not load: every login fails until it is fixed")
            }
        }
        if !restart_only.is_empty() {
            tracing::warn!(
                keys = %restart_only.join(", "),
                "SIGHUP: changed, but these settings cannot change while the server runs: restart to apply them"
            );
        }
    }
}

/// Whether a key (`intake.max_recipients`) can change while the server runs.
fn is_live(key: &str) -> bool {
    match key {
        "intake.lmtp" | "intake.smtp" => false,
        "imap.tls_certificate" | "imap.tls_key" | "imap.hostname" => true,
        // Renewed files are read again; switching HTTPS on or off takes a restart.
        "web.tls_certificate" | "web.tls_key" => true,
        "server.log" | "server.shutdown_grace_secs" => true,
        k => k.starts_with("intake."),
    }
}

/// The dotted keys (`store.segment_mib`, `intake.journal_source`) whose values differ.
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (old, new) = (flatten(old), flatten(new));
    let mut keys: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Every leaf of the configuration by its dotted key; arrays are leaves.
fn flatten(config: &Config) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    let Ok(value) = toml::Value::try_from(config) else {
        return out;
    };
    let mut stack = vec![(String::new(), value)];
    while let Some((prefix, value)) = stack.pop() {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    let key = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    stack.push((key, v));
                }
            }
            leaf => {
                out.insert(prefix, leaf);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_told_apart_by_whether_they_apply_live() {
        let old = Config::default();
        let mut new = Config::default();
        new.intake.max_recipients = 5;
        new.intake.lmtp = None;
        new.store.segment_mib = 8;
        new.imap.hostname = "archive.example".into();
        new.imap.limits.max_connections = 7;
        new.server.log = "debug".into();
        let changed = changed_keys(&old, &new);
        assert_eq!(
            changed,
            [
                "imap.hostname",
                "imap.limits.max_connections",
                "intake.lmtp",
                "intake.max_recipients",
                "server.log",
                "store.segment_mib"
            ]
        );
        let restart: Vec<&String> = changed.iter().filter(|k| !is_live(k)).collect();
        assert_eq!(
            restart,
            ["imap.limits.max_connections", "intake.lmtp", "store.segment_mib"]
        );
        assert!(changed_keys(&old, &Config::default()).is_empty());
    }
}
