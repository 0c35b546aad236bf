//! TLS for STARTTLS: the certificate is archive-core's (`archive_core::tls`: configured, or
//! self-signed `intake-*.pem` in the data directory, so a loopback relay can use STARTTLS
//! without any set-up), reloadable while the intake runs.

use std::path::Path;
use std::sync::Arc;

use archive_core::tls::{CertificateSource, ReloadableCertificate, TlsError};
use tokio_rustls::TlsAcceptor;

use crate::config::IntakeConfig;

/// Where the intake's certificate comes from: configured files, or the self-signed pair under
/// `tls_dir` for the configured host name and the listeners' addresses.
pub fn certificate_source<'a>(config: &'a IntakeConfig, tls_dir: &'a Path) -> CertificateSource<'a> {
    CertificateSource::from_config(
        &config.tls_certificate,
        &config.tls_key,
        tls_dir,
        "intake",
        std::iter::once(config.hostname.clone())
            .chain(archive_core::tls::listener_names([&config.lmtp, &config.smtp]))
            .collect(),
    )
}

/// Builds the TLS acceptor over a certificate that can be replaced later.
pub fn acceptor(certificate: &Arc<ReloadableCertificate>) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(certificate.server_config()?))
}
