//! The configuration of `mailvault serve`: one struct, read from TOML, with documented
//! defaults (docs/CONFIG.md) and validation whose errors name the key.

use std::path::Path;
use std::time::Duration;

use archive_core::access::AuthConfig;
use archive_core::StoreConfig;
use archive_imap::ImapConfig;
use archive_smtp::IntakeConfig;

/// Everything `serve` can be told. Every field has a default; an empty file is valid.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The log.
    pub store: StoreSettings,
    /// SMTP/LMTP journal intake.
    pub intake: IntakeConfig,
    /// Read-only IMAP for users and auditors.
    pub imap: ImapConfig,
    /// Pass-through logins against the mail server's IMAP.
    pub auth: AuthConfig,
    /// The web front door: login, sessions, the JSON API.
    pub web: archive_web::WebConfig,
    /// Metrics and health checks for monitoring.
    pub admin: AdminSettings,
    /// Shutdown and logging.
    pub server: ServerSettings,
    /// Checkpoints leaving the machine.
    pub anchoring: AnchoringSettings,
    /// Where sealed segments go besides the local disk.
    pub storage: StorageSettings,
}

/// `[storage]`: copies of the log beyond the local disk (docs/OPERATIONS.md §Object storage).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// `[storage.s3]`: sealed segments offloaded to S3 Object Lock (COMPLIANCE); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<archive_s3::S3Settings>,
}

/// `[anchoring]`: how checkpoints leave the machine (docs/OPERATIONS.md §Anchoring): each
/// round (at start, then every `interval_secs`) the newest checkpoint goes to the hook and to
/// every witness that has not cosigned it yet.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnchoringSettings {
    /// A command and its arguments (no shell) run with the newest signed checkpoint on stdin;
    /// empty: none.
    pub hook: Vec<String>,
    /// Seconds between anchoring rounds (only a newer checkpoint is handed on). Formerly
    /// `hook_interval_secs`, still read under that name.
    #[serde(alias = "hook_interval_secs")]
    pub interval_secs: u64,
    /// Seconds a hook run may take before it is killed and counted as failed.
    pub hook_timeout_secs: u64,
    /// C2SP tlog-witnesses asked to cosign each newer checkpoint.
    pub witnesses: Vec<WitnessSettings>,
    /// Seconds one request to a witness may take, connecting included.
    pub witness_timeout_secs: u64,
    /// RFC 3161 time-stamping authorities asked to stamp the newest checkpoint each round
    /// (src/cmd/serve/anchor_tsa.rs); empty: none.
    pub tsa: Vec<TsaSettings>,
}

/// One `[[anchoring.tsa]]`: a time-stamping authority.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TsaSettings {
    /// Names its token files (`anchors/<size>/timestamp-<name>.tsr`): [A-Za-z0-9._-].
    pub name: String,
    /// Where time-stamp queries are POSTed (http or https).
    pub url: String,
    /// PEM file of the TSA's signing certificate or of the CA that issued it: every token is
    /// checked against it before it is stored.
    pub certificate: std::path::PathBuf,
}

impl Default for AnchoringSettings {
    fn default() -> Self {
        AnchoringSettings {
            hook: Vec::new(),
            interval_secs: 3600,
            hook_timeout_secs: 60,
            witnesses: Vec::new(),
            witness_timeout_secs: 30,
            tsa: Vec::new(),
        }
    }
}

/// One `[[anchoring.witnesses]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessSettings {
    /// Our name for it, in file names (`cosignature-<name>.txt`): `[A-Za-z0-9._-]`.
    pub name: String,
    /// Its submission prefix: requests go to `<url>/add-checkpoint`.
    pub url: String,
    /// Its verifier key (`name+hexid+base64`, type 0x04), as its operator publishes it.
    pub key: String,
}

/// `[store]`: how the log is written.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Segment size at which a segment is sealed, in MiB.
    pub segment_mib: u64,
    /// A signed checkpoint after this many records…
    pub checkpoint_every: u64,
    /// …or after this many seconds with new records.
    pub checkpoint_interval_secs: u64,
    /// zstd level (1–19).
    pub zstd_level: i32,
    /// Size of the trained zstd dictionary in KiB (0 disables dictionaries).
    pub dictionary_kib: usize,
    /// MiB of decoded message contents kept in memory for repeated reads (0: none).
    pub read_cache_mib: usize,
}

/// `[admin]`: the admin listener (`/metrics`, `/healthz`, `/readyz`; docs/OPERATIONS.md
/// §Metrics and health).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Listener address, or `"none"`. Unauthenticated: loopback or a private network only.
    #[serde(with = "archive_core::listener")]
    pub listen: Option<std::net::SocketAddr>,
    /// `/readyz` answers 503 while the data directory's file system has less free space than
    /// this, in MiB (0: never for lack of space).
    pub disk_reserve_mib: u64,
}

/// The admin listener's default port: next to nothing of ours or of common exporters.
pub const DEFAULT_ADMIN_PORT: u16 = 9425;

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_ADMIN_PORT))),
            disk_reserve_mib: 1024,
        }
    }
}

/// `[server]`: process-wide settings.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Seconds sessions get to finish their transaction after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// Log filter (`info`, `mailvault=debug,archive_smtp=debug`, …); `RUST_LOG` overrides it.
    pub log: String,
    /// How log lines are written: `text` (for people and journald) or `json` (one object
    /// per line, for log collectors).
    pub log_format: LogFormat,
}

/// `server.log_format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-11-02T09:14:03Z  INFO target: message key=value…`
    #[default]
    Text,
    /// `{"timestamp":…,"level":"INFO","fields":{"message":…,…},"target":…}`
    Json,
}

/// The levels a log filter may name.
const LEVELS: &str = "trace, debug, info, warn, error, off";

/// Checks a log filter: comma-separated directives, each a level (`info`) or `target=level`
/// (`archive_smtp=debug`). tracing would take a misspelt level (`infoo`) for the name of a
/// target and log nothing else, so every level must be one it knows.
pub fn validate_log_filter(filter: &str) -> Result<(), String> {
    use std::str::FromStr;
    use tracing_subscriber::filter::LevelFilter;
    if filter.trim().is_empty() {
        return Err(format!("is empty (a level: {LEVELS}; \"off\" for no log)"));
    }
    for directive in filter.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level,
            Some(_) => return Err(format!("{directive:?} names no target before '='")),
            None => directive,
        };
        if directive.is_empty() || LevelFilter::from_str(level.trim()).is_err() {
            return Err(format!(
                "{directive:?} is not a level ({LEVELS}) or target=level (archive_smtp=debug)"
            ));
        }
        tracing_subscriber::EnvFilter::builder()
            .parse(directive)
            .map_err(|e| format!("{directive:?}: {e}"))?;
    }
    Ok(())
}

impl Default for StoreSettings {
    fn default() -> Self {
        let d = StoreConfig::default();
        StoreSettings {
            segment_mib: d.segment_size >> 20,
            checkpoint_every: d.checkpoint_every,
            checkpoint_interval_secs: d.checkpoint_interval.as_secs(),
            zstd_level: d.zstd_level,
            dictionary_kib: d.dictionary_size >> 10,
            read_cache_mib: d.read_cache_bytes >> 20,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            shutdown_grace_secs: 30,
            log: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim()))?;
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Checks values that parse but make no sense; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.store;
        if s.segment_mib == 0 {
            return Err("store.segment_mib must be at least 1".into());
        }
        if s.checkpoint_every == 0 {
            return Err("store.checkpoint_every must be at least 1".into());
        }
        if s.checkpoint_interval_secs == 0 {
            return Err("store.checkpoint_interval_secs must be at least 1".into());
        }
        if !(1..=19).contains(&s.zstd_level) {
            return Err("store.zstd_level must be between 1 and 19".into());
        }
        validate_log_filter(&self.server.log).map_err(|e| format!("server.log: {e}"))?;
        let a = &self.anchoring;
        if a.hook.first().is_some_and(|p| p.is_empty()) {
            return Err("anchoring.hook: the first element must name the program".into());
        }
        if a.interval_secs == 0 || a.hook_timeout_secs == 0 || a.witness_timeout_secs == 0 {
            return Err(
                "anchoring.interval_secs, hook_timeout_secs and witness_timeout_secs must be at least 1"
                    .into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for w in &a.witnesses {
            if !archive_core::anchors::is_valid_anchor_name(&w.name) {
                return Err(format!(
                    "anchoring.witnesses: name {:?} must be 1 to 64 of A-Z a-z 0-9 . _ - (it names files)",
                    w.name
                ));
            }
            if !names.insert(w.name.as_str()) {
                return Err(format!("anchoring.witnesses: name {:?} is used twice", w.name));
            }
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(format!(
                    "anchoring.witnesses.{}.url: {:?} is not an http:// or https:// URL",
                    w.name, w.url
                ));
            }
            archive_verify::cosignature::WitnessKey::parse(&w.key)
                .map_err(|e| format!("anchoring.witnesses.{}.key: {e}", w.name))?;
        }
        for (i, tsa) in a.tsa.iter().enumerate() {
            if !archive_core::anchors::is_valid_anchor_name(&tsa.name) {
                return Err(format!(
                    "anchoring.tsa[{i}].name {:?} must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with a dot)",
                    tsa.name
                ));
            }
            if a.tsa[..i].iter().any(|t| t.name == tsa.name) {
                return Err(format!("anchoring.tsa[{i}].name {:?} is used twice", tsa.name));
            }
            if !(tsa.url.starts_with("http://") || tsa.url.starts_with("https://")) {
                return Err(format!(
                    "anchoring.tsa[{i}].url {:?} is not an http or https URL",
                    tsa.url
                ));
            }
        }
        if let Some(s3) = &self.storage.s3 {
            s3.validate()?;
        }
        self.intake.validate()?;
        self.imap.validate()?;
        self.web.validate()?;
        self.auth.validate()
    }

    /// The store tunables.
    pub fn store_config(&self) -> StoreConfig {
        let s = &self.store;
        StoreConfig {
            segment_size: s.segment_mib << 20,
            checkpoint_every: s.checkpoint_every,
            checkpoint_interval: Duration::from_secs(s.checkpoint_interval_secs),
            zstd_level: s.zstd_level,
            dictionary_size: s.dictionary_kib << 10,
            read_cache_bytes: s.read_cache_mib.min(1 << 20) << 20,
            ..StoreConfig::default()
        }
    }
}

/// `mailvault config example`: every key with its default, commented.
pub const EXAMPLE: &str = r#"# mailvault serve configuration (TOML). Every key is optional; shown are the defaults.
# Pass with: mailvault serve --config /etc/mailvault/mailvault.toml

[store]
segment_mib = 64                # seal a segment file at this size
checkpoint_every = 10000        # every commit is signed; also inside batches of this many records
checkpoint_interval_secs = 10   # tree hashes made durable this often
zstd_level = 5                  # 1 (fast) … 19 (small)
dictionary_kib = 128            # zstd dictionary trained on your mail; 0 disables
read_cache_mib = 64             # decoded messages kept for repeated reads; 0 disables

[intake]
lmtp = "127.0.0.1:2424"         # LMTP listener; "none" disables it
smtp = "127.0.0.1:2525"         # SMTP listener; "none" disables it
hostname = "mailvault.localhost"
max_message_size = 52428800     # bytes (50 MiB); larger: 552 5.3.4
max_recipients = 1000           # per transaction; more: 452 4.5.3
max_sessions = 256              # per listener; more: 421 (clients outside `allow`: half of it)
max_sessions_per_client = 32    # per listener from one IPv4 address / IPv6 /64; more: 421
idle_timeout_secs = 30          # for a command outside a transaction
command_timeout_secs = 300      # for a command inside one
data_timeout_secs = 180         # per block of message data
data_deadline_secs = 600        # one message's data in all
allow = ["127.0.0.0/8", "::1/128"]   # clients that need no AUTH
accept = []                     # archive addresses (e.g. ["archive@vault.example"]); empty: all
# tls_certificate = "/etc/mailvault/intake-cert.pem"   # default: self-signed, made at first start
# tls_key = "/etc/mailvault/intake-key.pem"
# Relays outside `allow` may AUTH PLAIN (after STARTTLS) as one of these local users
# (`mailvault user add relay1 --address relay1@relay.invalid`):
relay_users = []

[intake.journal]
recipient_delimiter = "+"       # archive+to=alice=example.com@vault.example
domain_separator = "="          #                 ^ stands for @ (and ends to=/from=)

# Which clients send journals; everyone else's mail is archived as a plain copy, whatever it
# looks like (docs/CONFIG.md §[[intake.journal_source]]):
# [[intake.journal_source]]
# style = "recipient-encoded"   # or "exchange", "plain"
# listener = "lmtp"             # and/or clients = ["192.0.2.25/32"], auth_user = "relay1"

[imap]                          # read-only IMAP; users come from `mailvault user add`
plain = "127.0.0.1:1143"        # IMAP with STARTTLS (LOGIN only after TLS); "none" disables it
allow_plaintext_login = false   # true: LOGIN on `plain` before STARTTLS (only where the path is private)
tls = "127.0.0.1:1993"          # IMAP over implicit TLS; "none" disables it
hostname = "localhost"          # the name users connect to; in the self-signed certificate
# tls_certificate = "/etc/mailvault/imap-cert.pem"     # default: self-signed for hostname and the listeners
# tls_key = "/etc/mailvault/imap-key.pem"

[imap.limits]
max_command_bytes = 65536       # longest command, literals included
max_literal_bytes = 16384
login_timeout_secs = 60         # from connect to LOGIN
autologout_secs = 1800          # after LOGIN (RFC 3501: at least 30 minutes)
max_connections_per_ip = 20     # per client network: IPv4 address, IPv6 /64
max_connections = 1000          # logged in
max_unauthenticated = 100       # not logged in yet (when full, the oldest is pushed out)
max_unauthenticated_per_ip = 10 # not logged in yet, per client network
max_connections_per_user = 20   # logged-in sessions of one user
envelope_cache_mib = 64         # ENVELOPEs computed once, shared by all sessions

[auth]                          # logins besides `mailvault user add`: pass-through to the mail server
# upstream = "imaps://mail.example.com:993"   # or "imap://mail.example.com:143" (STARTTLS); no plain mode
# upstream_ca = "/etc/mailvault/upstream-ca.pem"   # default: the system's CA store
# domains = ["example.com"]     # required with upstream: alice@<these> are checked upstream
# bare_login_domain = "example.com"   # a login without @ is sent as typed, stands for login@this
upstream_timeout_secs = 10      # one upstream check in all: connect, TLS, LOGIN
cache_secs = 300                # a verified login is remembered (Argon2id hash) this long; 0: never

# Further addresses of pass-through users (login address = [addresses]):
# [auth.aliases]
# "alice@example.com" = ["a.smith@example.com", "alice@example.org"]

[web]                           # the web front door: login, sessions, JSON API /api/v1 (docs/API.md)
listen = "127.0.0.1:8080"       # "none" disables it
# tls_certificate = "/etc/mailvault/web-cert.pem"      # with tls_key: HTTPS (else plain HTTP)
# tls_key = "/etc/mailvault/web-key.pem"
session_idle_secs = 1800        # a session ends after this long without a request
session_max_secs = 43200        # and this long after its login at the latest
max_sessions = 10000            # past it, the session idle longest is ended
max_connections = 512           # open at once; more are closed on accept
max_connections_per_ip = 128    # of them from one client network (IPv4 address, IPv6 /64)
search_threads = 0              # searches run at once, on threads of their own; 0: one per core
search_queue = 256              # searches waiting for a thread; more: 429 busy (a user: a quarter)

[admin]                         # monitoring: GET /metrics (Prometheus), /healthz, /readyz
listen = "127.0.0.1:9425"       # unauthenticated: loopback or a private network; "none" disables it
disk_reserve_mib = 1024         # /readyz says 503 below this much free space in the data directory

[server]
shutdown_grace_secs = 30        # after SIGTERM: time for transactions in flight
log = "info"                    # trace, debug, info, warn, error, off, or target=level,…; RUST_LOG overrides
log_format = "text"             # or "json": one JSON object per line

[anchoring]
hook = []                       # e.g. ["/usr/local/bin/mail-checkpoint", "auditor@example.com"]:
                                # run with the newest signed checkpoint on stdin (no shell)
interval_secs = 3600            # a round at start, then this often: the newest checkpoint to the
                                # hook and the witnesses, when newer than what they had
hook_timeout_secs = 60          # a hook taking longer is killed and tried again next round
witness_timeout_secs = 30       # one request to a witness, connecting included
# C2SP tlog-witnesses that cosign checkpoints (none by default), one table each:
# [[anchoring.witnesses]]
# name = "w1"                   # our name for it, in file names: A-Z a-z 0-9 . _ -
# url = "https://witness.example/w1"      # requests go to <url>/add-checkpoint
# key = "witness.example/w1+1a2b3c4d+BAbc…"  # its verifier key (type 0x04) from its operator

# Sealed segments offloaded to S3 Object Lock in COMPLIANCE mode (none by default;
# docs/OPERATIONS.md §Object storage (WORM)). The bucket must have Object Lock enabled.
# [storage.s3]
# endpoint = "https://s3.eu-central-1.amazonaws.com"
# region = "eu-central-1"
# bucket = "mail-archive"
# prefix = "mailvault/"         # keys: <prefix><origin>/log/<segment file>
# credentials_file = "/etc/mailvault/s3.credentials"  # mode 0600; else AWS_ACCESS_KEY_ID/
#                               # AWS_SECRET_ACCESS_KEY from the environment
# retention = "10y"             # every object locked this long (30d, 120s: tests only)
# mode = "COMPLIANCE"           # the only mode: nobody can shorten or lift it
# path_style = true             # endpoint/bucket/key requests (most non-AWS stores)
# part_mib = 8                  # larger segments go up as multipart uploads of such parts
# cache_size = "50GiB"          # evict local copies of offloaded segments beyond this
#                               # (none: keep every segment locally too; §Local cache)
# range_cache_size = "1GiB"     # records fetched from evicted segments kept locally
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_valid_and_equals_the_defaults() {
        let parsed: Config = toml::from_str(EXAMPLE).unwrap();
        parsed.validate().unwrap();
        let defaults = Config::default();
        assert_eq!(
            toml::to_string(&parsed).unwrap(),
            toml::to_string(&defaults).unwrap()
        );
    }

    #[test]
    fn none_switches_a_listener_off_and_a_missing_key_keeps_it() {
        let c: Config = toml::from_str("[intake]\nlmtp = \"none\"\n[imap]\ntls = \"none\"\n").unwrap();
        assert_eq!(c.intake.lmtp, None);
        assert_eq!(c.imap.tls, None);
        assert_eq!(c.intake.smtp, Config::default().intake.smtp);
        assert_eq!(c.imap.plain, Config::default().imap.plain);
        let c: Config = toml::from_str("[admin]\nlisten = \"none\"\n").unwrap();
        assert_eq!(c.admin.listen, None);
        assert_eq!(
            Config::default().admin.listen.map(|a| a.ip().is_loopback()),
            Some(true),
            "the admin listener is on loopback unless configured otherwise"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = toml::from_str::<Config>("[intake]\nmax_recipients = \"many\"\n").unwrap_err();
        assert!(e.to_string().contains("max_recipients"), "{e}");
        let e = toml::from_str::<Config>("[store]\nsegmnet_mib = 3\n").unwrap_err();
        assert!(e.to_string().contains("segmnet_mib"), "{e}");
        let mut c = Config::default();
        c.store.zstd_level = 40;
        assert!(c.validate().unwrap_err().contains("store.zstd_level"));
        c = Config::default();
        c.intake.max_message_size = 0;
        assert!(c.validate().unwrap_err().contains("intake.max_message_size"));
        let c: Config = toml::from_str("[auth]\nupstream = \"imap://mail.example.com\"\n").unwrap();
        assert!(c.validate().unwrap_err().starts_with("auth.domains"));
        let e = toml::from_str::<Config>("[auth]\nupstream_url = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("upstream_url"), "{e}");
    }

    #[test]
    fn log_levels_are_checked() {
        for good in [
            "info",
            "WARN",
            "off",
            "mailvault=debug,archive_smtp=trace",
            "warn, archive_imap=info",
        ] {
            validate_log_filter(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "infoo",
            "",
            "mailvault",
            "archive_smtp=verbose",
            "info,",
            "=debug",
        ] {
            assert!(validate_log_filter(bad).is_err(), "{bad:?}");
        }
        let c: Config = toml::from_str("[server]\nlog = \"infoo\"\n").unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.starts_with("server.log: \"infoo\" is not a level"), "{e}");
        let e = toml::from_str::<Config>("[server]\nlog_format = \"xml\"\n").unwrap_err();
        assert!(e.to_string().contains("log_format"), "{e}");
    }

    #[test]
    fn pass_through_with_aliases_reads_as_documented() {
        let c: Config = toml::from_str(
            r#"
[auth]
upstream = "imaps://mail.example.com"
domains = ["example.com"]
[auth.aliases]
"alice@example.com" = ["a.smith@example.com"]
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.auth.upstream.as_deref(), Some("imaps://mail.example.com"));
        assert_eq!(c.auth.aliases["alice@example.com"], ["a.smith@example.com"]);
    }
}
