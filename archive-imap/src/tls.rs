//! TLS for the implicit-TLS listener and STARTTLS: the certificate is archive-core's
//! (`archive_core::tls`: configured, or self-signed `imap-*.pem` in the data directory),
//! reloadable while the server runs.

use std::path::Path;
use std::sync::Arc;

use archive_core::tls::{CertificateSource, ReloadableCertificate, TlsError};
use tokio_rustls::TlsAcceptor;

use crate::config::ImapConfig;

/// Where the certificate comes from: configured files, or the self-signed pair under
/// `tls_dir` for the configured host name and the listeners' addresses.
pub fn certificate_source<'a>(config: &'a ImapConfig, tls_dir: &'a Path) -> CertificateSource<'a> {
    CertificateSource::from_config(
        &config.tls_certificate,
        &config.tls_key,
        tls_dir,
        "imap",
        std::iter::once(config.hostname.clone())
            .chain(archive_core::tls::listener_names([&config.plain, &config.tls]))
            .collect(),
    )
}

/// Builds the TLS acceptor over a certificate that can be replaced later.
///
/// No TLS 1.3 session tickets are sent (so TLS 1.3 sessions are not resumed; a full
/// handshake costs a millisecond, once per IMAP session). rustls sends its tickets right
/// after the handshake, while a client that has just done STARTTLS is sending its next
/// command: imaplib2 (offlineimap) reads them in its reader thread while another thread
/// writes that command on the same OpenSSL connection, and about one STARTTLS in 40 on a
/// busy machine never got the command out — the session sat until the login timeout
/// (issue #14). Without tickets nothing arrives until the server answers.
pub fn acceptor(certificate: &Arc<ReloadableCertificate>) -> Result<TlsAcceptor, TlsError> {
    let mut server = (*certificate.server_config()?).clone();
    server.send_tls13_tickets = 0;
    Ok(TlsAcceptor::from(Arc::new(server)))
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
