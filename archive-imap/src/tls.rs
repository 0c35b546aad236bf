//! TLS for the implicit-TLS listener and STARTTLS (rustls). Lifted from the intake's helper,
//! not imported: front doors do not depend on each other. Without a configured pair a
//! self-signed certificate is made once and kept in the data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::ImapConfig;

/// Builds the TLS acceptor: configured files, or the self-signed pair under `tls_dir`.
pub fn acceptor(config: &ImapConfig, tls_dir: &Path) -> Result<TlsAcceptor, String> {
    let (cert_path, key_path) = match (&config.tls_certificate, &config.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => self_signed(&config.hostname, tls_dir)?,
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: certificate and key do not fit: {e}", cert_path.display()))?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The self-signed certificate and key in `dir`, made on first use (key mode 0600).
fn self_signed(hostname: &str, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let cert_path = dir.join("imap-cert.pem");
    let key_path = dir.join("imap-key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let made = rcgen::generate_simple_self_signed(vec![hostname.to_string(), "localhost".into()])
        .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write_private(&key_path, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, made.cert.pem()).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The session stream over an accepted TLS connection. imap-next hands each response to
/// rustls with `write_all`, and rustls refuses plaintext beyond its outgoing buffer limit
/// (64 KiB by default), which imap-next takes for a closed connection: every response
/// larger than that (a message body, a FETCH of many messages) cut the session. The
/// session bounds what it queues itself (FETCH sends at most a few batches ahead), so the
/// limit is lifted here.
pub(crate) fn session_stream(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> imap_next::stream::Stream {
    tls.get_mut().1.set_buffer_limit(None);
    imap_next::stream::Stream::tls(tls.into())
}
