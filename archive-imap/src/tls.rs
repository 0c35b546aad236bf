//! TLS for the implicit-TLS listener and STARTTLS: the certificate is archive-core's
//! (`archive_core::tls`: configured, or self-signed `imap-*.pem` in the data directory).

use std::path::Path;

use archive_core::tls::{CertificateSource, TlsError};
use tokio_rustls::TlsAcceptor;

use crate::config::ImapConfig;

/// Builds the TLS acceptor: configured files, or the self-signed pair under `tls_dir`.
///
/// No TLS 1.3 session tickets are sent (so TLS 1.3 sessions are not resumed; a full
/// handshake costs a millisecond, once per IMAP session). rustls sends its tickets right
/// after the handshake, while a client that has just done STARTTLS is sending its next
/// command: imaplib2 (offlineimap) reads them in its reader thread while another thread
/// writes that command on the same OpenSSL connection, and about one STARTTLS in 40 on a
/// busy machine never got the command out — the session sat until the login timeout
/// (issue #14). Without tickets nothing arrives until the server answers.
pub fn acceptor(config: &ImapConfig, tls_dir: &Path) -> Result<TlsAcceptor, TlsError> {
    let source = CertificateSource::from_config(
        &config.tls_certificate,
        &config.tls_key,
        tls_dir,
        "imap",
        &config.hostname,
    );
    let mut server = (*archive_core::tls::server_config(&source)?).clone();
    server.send_tls13_tickets = 0;
    Ok(TlsAcceptor::from(std::sync::Arc::new(server)))
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
