//! TLS for STARTTLS: the certificate is archive-core's (`archive_core::tls`: configured, or
//! self-signed `intake-*.pem` in the data directory, so a loopback relay can use STARTTLS
//! without any set-up).

use std::path::Path;

use archive_core::tls::{CertificateSource, TlsError};
use tokio_rustls::TlsAcceptor;

use crate::config::IntakeConfig;

/// Builds the TLS acceptor: configured files, or the self-signed pair under `tls_dir`.
pub fn acceptor(config: &IntakeConfig, tls_dir: &Path) -> Result<TlsAcceptor, TlsError> {
    let source = CertificateSource::from_config(
        &config.tls_certificate,
        &config.tls_key,
        tls_dir,
        "intake",
        &config.hostname,
    );
    Ok(TlsAcceptor::from(archive_core::tls::server_config(&source)?))
}
