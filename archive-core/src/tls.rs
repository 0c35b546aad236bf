//! TLS server settings shared by the front doors (IMAP, SMTP/LMTP intake): a configured
//! certificate chain and key, or, for the embedded default, a self-signed pair made once and
//! kept in the data directory, so a loopback client can use TLS without any set-up. rustls
//! with the ring provider and its safe default protocol versions.
//!
//! The certificate can be replaced while the listeners run ([`ReloadableCertificate`], on
//! SIGHUP): every handshake takes the one current at that moment, so a renewed ACME
//! certificate needs no restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::verify_server_name;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a TLS server configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: not a PEM certificate chain: {source}", path.display())]
    Certificate {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: not a PEM private key: {source}", path.display())]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: certificate and key do not fit: {source}", path.display())]
    Mismatch { path: PathBuf, source: rustls::Error },
    #[error("TLS: {0}")]
    Settings(rustls::Error),
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where a listener's certificate comes from.
pub struct CertificateSource<'a> {
    /// Configured PEM certificate chain and private key, if any.
    pub configured: Option<(&'a Path, &'a Path)>,
    /// Without a configured pair: the self-signed pair `<stem>-cert.pem`/`<stem>-key.pem` in
    /// `dir`, made on first use for `names`.
    pub dir: &'a Path,
    pub stem: &'a str,
    /// Host names and IP addresses the self-signed certificate is for (the configured host
    /// name, the listeners' addresses); `localhost`, `127.0.0.1` and `::1` are always added.
    /// A kept pair that does not name all of them is made again.
    pub names: Vec<String>,
}

impl<'a> CertificateSource<'a> {
    /// A listener's source from its configuration's optional certificate and key paths
    /// (both, or the self-signed pair for `names`).
    pub fn from_config(
        certificate: &'a Option<PathBuf>,
        key: &'a Option<PathBuf>,
        dir: &'a Path,
        stem: &'a str,
        names: Vec<String>,
    ) -> CertificateSource<'a> {
        let configured = match (certificate, key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        CertificateSource {
            configured,
            dir,
            stem,
            names,
        }
    }

    /// The certificate and key files this source loads: the configured pair, or the paths of
    /// the self-signed pair (which may not have been made yet).
    pub fn files(&self) -> (PathBuf, PathBuf) {
        match self.configured {
            Some((c, k)) => (c.to_path_buf(), k.to_path_buf()),
            None => (
                self.dir.join(format!("{}-cert.pem", self.stem)),
                self.dir.join(format!("{}-key.pem", self.stem)),
            ),
        }
    }

    /// Every name the self-signed certificate must have, in a stable order without repeats.
    pub fn self_signed_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let always = ["localhost", "127.0.0.1", "::1"].map(String::from);
        for name in self.names.iter().chain(&always) {
            let name = name.trim().to_ascii_lowercase();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

/// The names a listener's self-signed certificate should have besides its host name: the
/// addresses it listens on, unless unspecified (`0.0.0.0`, `::` stand for every address of
/// the machine, which a certificate cannot list; clients there should use the host name).
pub fn listener_names<'a>(
    addresses: impl IntoIterator<Item = &'a Option<std::net::SocketAddr>>,
) -> Vec<String> {
    addresses
        .into_iter()
        .flatten()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| ip.to_string())
        .collect()
}

/// Where a certificate came from, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateOrigin {
    /// The configured files.
    Configured { certificate: PathBuf },
    /// The self-signed pair in the data directory, for these names; `made` when it was made
    /// (or made again for changed names) by this load.
    SelfSigned {
        certificate: PathBuf,
        names: Vec<String>,
        made: bool,
    },
}

impl std::fmt::Display for CertificateOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertificateOrigin::Configured { certificate } => write!(f, "{}", certificate.display()),
            CertificateOrigin::SelfSigned {
                certificate,
                names,
                made,
            } => write!(
                f,
                "self-signed {} ({}) for {}",
                certificate.display(),
                if *made { "made now" } else { "kept" },
                names.join(", ")
            ),
        }
    }
}

/// The rustls server configuration for `source`, with a certificate fixed at this call.
pub fn server_config(source: &CertificateSource<'_>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    ReloadableCertificate::load(source)?.server_config()
}

/// A server certificate that can be replaced while connections are accepted: each TLS
/// handshake takes the certificate current at that moment; connections already up keep
/// theirs.
#[derive(Debug)]
pub struct ReloadableCertificate {
    current: RwLock<(Arc<CertifiedKey>, CertificateOrigin)>,
}

impl ReloadableCertificate {
    /// Loads the certificate of `source` (making the self-signed pair if it is needed).
    pub fn load(source: &CertificateSource<'_>) -> Result<Arc<ReloadableCertificate>, TlsError> {
        Ok(Arc::new(ReloadableCertificate {
            current: RwLock::new(certified_key(source)?),
        }))
    }

    /// Loads the certificate of `source` again (the files may have been renewed, or the
    /// source changed) and uses it for new handshakes. On error the current one stays.
    pub fn reload(&self, source: &CertificateSource<'_>) -> Result<(), TlsError> {
        let fresh = certified_key(source)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// A rustls server configuration whose handshakes use this certificate as it is then.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Settings)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(Arc::new(server))
    }

    /// The DER certificate chain in use now (leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .cert
            .clone()
    }

    /// Where the certificate in use came from.
    pub fn origin(&self) -> CertificateOrigin {
        self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the chain and key of `source` and checks that they fit.
fn certified_key(source: &CertificateSource<'_>) -> Result<(Arc<CertifiedKey>, CertificateOrigin), TlsError> {
    let (cert_path, key_path, origin) = match source.configured {
        Some((c, k)) => (
            c.to_path_buf(),
            k.to_path_buf(),
            CertificateOrigin::Configured {
                certificate: c.to_path_buf(),
            },
        ),
        None => self_signed(source)?,
    };
    let certified = read_pair(&cert_path, &key_path)?;
    Ok((Arc::new(certified), origin))
}

/// Reads a PEM chain and key and checks that they fit each other (what a listener loads).
pub fn read_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate {
            path: cert_path.to_path_buf(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| TlsError::Key {
        path: key_path.to_path_buf(),
        source,
    })?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|source| TlsError::Mismatch {
        path: cert_path.to_path_buf(),
        source,
    })
}

/// Whether a kept self-signed pair is whole, fits, and names every one of `names`.
fn names_all(cert_path: &Path, key_path: &Path, names: &[String]) -> bool {
    let Ok(pair) = read_pair(cert_path, key_path) else {
        return false;
    };
    pair.cert
        .first()
        .is_some_and(|leaf| names_missing(leaf, names).is_some_and(|missing| missing.is_empty()))
}

/// The names of `names` a certificate is not valid for, checked as a TLS client checks them;
/// `None` when the certificate does not parse.
pub fn names_missing(leaf: &CertificateDer<'_>, names: &[String]) -> Option<Vec<String>> {
    let leaf = ParsedCertificate::try_from(leaf).ok()?;
    let missing = names
        .iter()
        .filter(|name| {
            !ServerName::try_from(name.as_str()).is_ok_and(|name| verify_server_name(&leaf, &name).is_ok())
        })
        .cloned()
        .collect();
    Some(missing)
}

/// The self-signed certificate and key of `source`, made on first use (key mode 0600), and
/// made again when the kept pair does not name every name it should (the configured host
/// name or the listeners changed; pairs made before listener addresses were named) or does
/// not load.
///
/// Made durably: each file is written under a temporary name, fsynced and renamed into place,
/// then the directory is fsynced. A power cut right after the first start must leave either
/// no pair or a whole one: a name that reached the disk without its bytes (an empty PEM file)
/// would otherwise stand for a pair. (A pair that does not load or fit, such as a new key
/// next to the old certificate after a cut in the middle of making it again, is made again.)
fn self_signed(source: &CertificateSource<'_>) -> Result<(PathBuf, PathBuf, CertificateOrigin), TlsError> {
    let (cert_path, key_path) = source.files();
    let names = source.self_signed_names();
    let origin = |made| CertificateOrigin::SelfSigned {
        certificate: cert_path.clone(),
        names: names.clone(),
        made,
    };
    if cert_path.exists() && key_path.exists() && names_all(&cert_path, &key_path, &names) {
        return Ok((cert_path.clone(), key_path.clone(), origin(false)));
    }
    let made =
        rcgen::generate_simple_self_signed(names.clone()).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(source.dir).map_err(io(source.dir))?;
    write_durably(&key_path, made.signing_key.serialize_pem().as_bytes(), 0o600).map_err(io(&key_path))?;
    write_durably(&cert_path, made.cert.pem().as_bytes(), 0o644).map_err(io(&cert_path))?;
    sync_dir(source.dir).map_err(io(source.dir))?;
    // The directory's own entry, should this call have created it.
    if let Some(parent) = source.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(io(parent))?;
    }
    Ok((cert_path.clone(), key_path.clone(), origin(true)))
}

/// Writes `bytes` to `path` with `mode` by way of a fsynced temporary file and a rename: the
/// name never stands for fewer bytes. The caller fsyncs the directory.
fn write_durably(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// "TLSv1.3 TLS13_AES_256_GCM_SHA384": what a connection negotiated, for envelopes and logs.
pub fn describe(conn: &rustls::ServerConnection) -> String {
    let version = conn
        .protocol_version()
        .map(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default();
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()))
        .unwrap_or_default();
    format!("{version} {cipher}").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_pair_is_made_once_with_a_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let source = CertificateSource {
            configured: None,
            dir: dir.path(),
            stem: "imap",
            names: vec!["archive.example".into()],
        };
        server_config(&source).unwrap();
        let key = dir.path().join("imap-key.pem");
        let made = std::fs::read(&key).unwrap();
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        server_config(&source).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), made, "kept, not made again");
    }

    #[test]
    fn a_reload_takes_the_new_certificate_and_a_failed_one_keeps_the_old() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fn source(dir: &Path) -> CertificateSource<'_> {
            CertificateSource {
                configured: None,
                dir,
                stem: "imap",
                names: vec!["archive.example".into()],
            }
        }
        let certificate = ReloadableCertificate::load(&source(a.path())).unwrap();
        let first = certificate.chain();
        certificate.reload(&source(b.path())).unwrap();
        let second = certificate.chain();
        assert_ne!(first, second);
        let bad = b.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let broken = CertificateSource {
            configured: Some((&bad, &bad)),
            ..source(b.path())
        };
        assert!(certificate.reload(&broken).is_err());
        assert_eq!(certificate.chain(), second, "the current one stays");
    }

    #[test]
    fn a_bad_pair_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let source = CertificateSource {
            configured: Some((&cert, &cert)),
            dir: dir.path(),
            stem: "x",
            names: Vec::new(),
        };
        let e = server_config(&source).unwrap_err();
        assert!(e.to_string().contains("cert.pem"), "{e}");
    }
}
