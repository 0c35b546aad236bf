//! `[storage.s3]`: where sealed segments go, under which retention, with which credentials.
//! Validated at start-up; errors name the key. Secrets are read here and never printed: the
//! `Debug` of [`Credentials`] hides them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{S3Error, S3Result};

/// `[storage.s3]` as written in the configuration file (docs/CONFIG.md).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    /// The S3 endpoint, `https://…` (or `http://` on loopback and in tests).
    pub endpoint: String,
    /// The region the signature names (non-AWS stores usually accept any).
    pub region: String,
    /// The bucket: it must have Object Lock enabled (and so versioning).
    pub bucket: String,
    /// Prepended to every object key (e.g. `mailvault/`).
    pub prefix: String,
    /// A file holding the access key (mode 0600 or stricter); without it the environment's
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub credentials_file: Option<PathBuf>,
    /// How long every object is locked: `10y` (years of 365 days), or for tests only `30d`,
    /// `120s`.
    pub retention: String,
    /// Object Lock mode: `COMPLIANCE`, the only mode that nobody can lift.
    pub mode: String,
    /// Path-style requests (`endpoint/bucket/key`), which most non-AWS stores need.
    pub path_style: bool,
    /// Segments larger than this many MiB go up as multipart uploads of parts this large.
    pub part_mib: u64,
    /// Local copies of offloaded segments beyond this size (`"50GiB"`, or bytes) are evicted,
    /// oldest first; none: every segment stays local too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<ByteSize>,
    /// Frames of evicted segments fetched for reads are kept locally up to this size.
    pub range_cache_size: ByteSize,
}

/// A size in bytes, written as a number or as text with a unit (`"512MiB"`, `"50GiB"`,
/// `"1TB"`, `"4096"`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    /// The number of bytes, or why the text is not a size.
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            ByteSize::Bytes(n) => Ok(*n),
            ByteSize::Text(t) => parse_size(t),
        }
    }
}

/// `1234`, `64KiB`, `512MiB`, `50GiB`, `2TiB`, and the decimal `kB`/`MB`/`GB`/`TB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 50GiB or a number of bytes"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            credentials_file: None,
            retention: "10y".into(),
            mode: "COMPLIANCE".into(),
            path_style: true,
            part_mib: 8,
            cache_size: None,
            range_cache_size: ByteSize::Text("1GiB".into()),
        }
    }
}

/// The longest retention accepted (a typo such as `1000y` must not lock objects forever).
const MAX_RETENTION_YEARS: u64 = 100;

impl S3Settings {
    /// Checks every key; the error names it (`storage.s3.retention: …`).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(format!(
                "storage.s3.endpoint: {:?} is not an http:// or https:// URL",
                self.endpoint
            ));
        }
        if self.bucket.is_empty() || self.bucket.len() > 63 {
            return Err("storage.s3.bucket: a bucket name of 1 to 63 characters is required".into());
        }
        if self.region.is_empty() {
            return Err("storage.s3.region must not be empty".into());
        }
        if self.prefix.len() > 512 || self.prefix.chars().any(char::is_control) {
            return Err("storage.s3.prefix: at most 512 characters, no control characters".into());
        }
        self.retention_period()?;
        if self.mode != "COMPLIANCE" {
            return Err(format!(
                "storage.s3.mode: {:?} is not supported; only COMPLIANCE (governance-mode locks can be lifted)",
                self.mode
            ));
        }
        if !(5..=1024).contains(&self.part_mib) {
            return Err("storage.s3.part_mib must be between 5 and 1024 (S3's part sizes)".into());
        }
        if let Some(size) = &self.cache_size {
            size.bytes().map_err(|e| format!("storage.s3.cache_size: {e}"))?;
        }
        self.range_cache_size
            .bytes()
            .map_err(|e| format!("storage.s3.range_cache_size: {e}"))?;
        Ok(())
    }

    /// The retention as a duration: `Ny` (365-day years), or `Nd` / `Ns` for tests.
    pub fn retention_period(&self) -> Result<Duration, String> {
        let r = self.retention.trim();
        let bad = || {
            format!(
                "storage.s3.retention: {:?} is not like 10y (or, for tests, 30d or 120s)",
                self.retention
            )
        };
        let unit = r.chars().last().ok_or_else(bad)?;
        let n: u64 = r[..r.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
        let secs = match unit {
            'y' => n.checked_mul(365 * 86_400),
            'd' => n.checked_mul(86_400),
            's' => Some(n),
            _ => return Err(bad()),
        }
        .ok_or_else(bad)?;
        if n == 0 || secs > MAX_RETENTION_YEARS * 365 * 86_400 {
            return Err(format!(
                "storage.s3.retention: {:?} must be more than nothing and at most {MAX_RETENTION_YEARS}y",
                self.retention
            ));
        }
        Ok(Duration::from_secs(secs))
    }

    /// The object key of the segment file `file_name` of the store `origin`: the prefix, the
    /// origin (two stores can share a bucket) and `log/<file name>`.
    pub fn segment_key(&self, origin: &str, file_name: &str) -> String {
        format!("{}{origin}/log/{file_name}", self.prefix)
    }

    /// The key of the store's identity object (origin, public key: nothing secret), which
    /// makes the bucket self-describing for a restore: next to the store's `log/`.
    pub fn identity_key(&self, origin: &str) -> String {
        format!("{}{origin}/store.json", self.prefix)
    }

    /// The access key: from `credentials_file` when set, else from the environment.
    pub fn credentials(&self) -> S3Result<Credentials> {
        match &self.credentials_file {
            Some(path) => Credentials::from_file(path),
            None => Credentials::from_env(),
        }
    }
}

/// An S3 access key. Never logged: `Debug` shows only the key id.
#[derive(Clone)]
pub struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .finish()
    }
}

/// The largest credentials file read.
const MAX_CREDENTIALS_FILE: u64 = 64 << 10;

impl Credentials {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub fn from_env() -> S3Result<Credentials> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
                access_key_id,
                secret_access_key,
            }),
            _ => Err(S3Error::Credentials(
                "storage.s3: no credentials_file, and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not both set"
                    .into(),
            )),
        }
    }

    /// A file of `key = value` lines in the AWS shared-credentials style
    /// (`aws_access_key_id`, `aws_secret_access_key`; `[section]` lines and `#` comments are
    /// skipped). Refused unless only its owner can read it (mode 0600 or 0400).
    pub fn from_file(path: &Path) -> S3Result<Credentials> {
        let io = |source| S3Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(S3Error::Credentials(format!(
                "storage.s3.credentials_file {}: mode {mode:04o} lets others read the secret key; \
                 it must be 0600 (chmod 600 {0})",
                path.display()
            )));
        }
        if !meta.is_file() || meta.len() > MAX_CREDENTIALS_FILE {
            return Err(S3Error::Credentials(format!(
                "storage.s3.credentials_file {}: not a regular file of at most 64 KiB",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let (mut id, mut secret) = (None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') || line.starts_with('[') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().to_string();
            match name.trim() {
                "aws_access_key_id" => id = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                _ => {}
            }
        }
        match (id, secret) {
            (Some(access_key_id), Some(secret_access_key)) if !access_key_id.is_empty() && !secret_access_key.is_empty() => {
                Ok(Credentials {
                    access_key_id,
                    secret_access_key,
                })
            }
            _ => Err(S3Error::Credentials(format!(
                "storage.s3.credentials_file {}: needs aws_access_key_id = … and aws_secret_access_key = … lines",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(retention: &str) -> S3Settings {
        S3Settings {
            endpoint: "http://127.0.0.1:1".into(),
            bucket: "b".into(),
            retention: retention.into(),
            ..S3Settings::default()
        }
    }

    #[test]
    fn retention_forms() {
        assert_eq!(
            settings("10y").retention_period().unwrap().as_secs(),
            10 * 365 * 86_400
        );
        assert_eq!(settings("30d").retention_period().unwrap().as_secs(), 30 * 86_400);
        assert_eq!(settings("120s").retention_period().unwrap().as_secs(), 120);
        for bad in [
            "",
            "y",
            "10",
            "10w",
            "0y",
            "101y",
            "-1d",
            "99999999999999999999y",
            "1ÿ",
        ] {
            let e = settings(bad).validate().unwrap_err();
            assert!(e.starts_with("storage.s3.retention"), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50GiB").unwrap(), 50 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2 MB").unwrap(), 2_000_000);
        for bad in ["", "GiB", "5 parsecs", "-1", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let mut s = settings("1y");
        s.cache_size = Some(ByteSize::Text("lots".into()));
        assert!(s.validate().unwrap_err().starts_with("storage.s3.cache_size"));
    }

    #[test]
    fn only_compliance_mode() {
        let mut s = settings("1y");
        s.mode = "GOVERNANCE".into();
        assert!(s.validate().unwrap_err().contains("only COMPLIANCE"));
    }

    #[test]
    fn a_credentials_file_others_can_read_is_refused_and_secrets_stay_hidden() {
        let dir = tempfile_dir();
        let path = dir.join("creds");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = AKID\naws_secret_access_key = s3cr3t\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Credentials::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && !e.contains("s3cr3t"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Credentials::from_file(&path).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("AKID", "s3cr3t")
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("archive-s3-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
