//! The TLS certificates of the intake and of IMAP, found as `serve` finds them (each front
//! door's `certificate_source`): configured files must load, be valid now and for a while, and
//! name the host name clients connect to; the self-signed pair of the embedded default is made
//! (again) by `serve` as needed, so it only has to exist or be makeable.

use std::net::SocketAddr;

use archive_core::tls::{names_missing, read_pair, CertificateSource};

use super::Report;
use crate::config::Config;
use crate::Cli;

/// A certificate that expires sooner than this gets a warning.
const EXPIRY_WARNING_DAYS: i64 = 21;

/// Checks the certificate of each front door that has a listener.
pub fn check(r: &mut Report, cli: &Cli, config: &Config) {
    let tls_dir = super::super::serve::tls_dir(cli);
    let intake = [config.intake.lmtp, config.intake.smtp];
    if intake.iter().any(Option::is_some) {
        let source = archive_smtp::tls::certificate_source(&config.intake, &tls_dir);
        check_door(r, "intake", &source, &config.intake.hostname, &intake, false);
    }
    let imap = [config.imap.plain, config.imap.tls];
    if imap.iter().any(Option::is_some) {
        let source = archive_imap::certificate_source(&config.imap, &tls_dir);
        check_door(r, "imap", &source, &config.imap.hostname, &imap, true);
    }
}

/// One door's certificate. `for_people`: mail clients connect here and refuse a certificate
/// without their host name; relays (the intake) often do not check names.
fn check_door(
    r: &mut Report,
    door: &str,
    source: &CertificateSource<'_>,
    hostname: &str,
    listeners: &[Option<SocketAddr>],
    for_people: bool,
) {
    let (cert_path, key_path) = source.files();
    let what = format!("{door} certificate {}", cert_path.display());
    if source.configured.is_none() {
        let loopback_only = listeners.iter().flatten().all(|a| a.ip().is_loopback());
        if !cert_path.exists() {
            r.ok(format!(
                "{door} certificate: self-signed, made by serve at its first start in {}",
                source.dir.display()
            ));
        } else if read_pair(&cert_path, &key_path).is_err() {
            r.ok(format!(
                "{what}: self-signed, does not load; serve makes a new one"
            ));
        } else {
            r.ok(format!(
                "{what}: self-signed, for {}",
                source.self_signed_names().join(", ")
            ));
        }
        if for_people && !loopback_only {
            r.warn(
                format!("{door}: clients outside this machine get a self-signed certificate and are asked to trust it"),
                "configure a real one (imap.tls_certificate, imap.tls_key; docs/OPERATIONS.md §TLS certificates)",
            );
        }
        return;
    }
    let pair = match read_pair(&cert_path, &key_path) {
        Ok(pair) => pair,
        Err(e) => {
            r.fail(
                format!("{door} certificate: {e}"),
                "serve refuses to start with it: the files must be PEM, fit each other and be readable by the user serve runs as",
            );
            return;
        }
    };
    let Some(leaf) = pair.cert.first() else {
        r.fail(
            format!("{what}: holds no certificate"),
            "point the configuration at the full chain (fullchain.pem)",
        );
        return;
    };
    let validity = match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, parsed)) => parsed.validity().clone(),
        Err(e) => {
            r.fail(
                format!("{what}: does not parse: {e}"),
                "replace it with a valid certificate",
            );
            return;
        }
    };
    let now = jiff::Timestamp::now().as_second();
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    let renew = "renew it and reload (systemctl reload mailvault; docs/OPERATIONS.md §TLS certificates)";
    if not_after < now {
        r.fail(format!("{what}: expired {}", date(not_after)), renew);
    } else if not_before > now {
        r.fail(
            format!("{what}: not valid before {}", date(not_before)),
            "check the machine's clock, or use a certificate valid now",
        );
    } else if not_after - now < EXPIRY_WARNING_DAYS * 86_400 {
        r.warn(
            format!(
                "{what}: expires {} (in {} days)",
                date(not_after),
                (not_after - now) / 86_400
            ),
            renew,
        );
    } else {
        r.ok(format!("{what}: valid until {}", date(not_after)));
    }
    let names = [hostname.to_string()];
    match names_missing(leaf, &names) {
        Some(missing) if missing.is_empty() => r.ok(format!("{what}: names {hostname}")),
        _ => {
            let what = format!("{what}: does not name {hostname}");
            let fix = format!("get one for {hostname}, or set {door}.hostname to a name it has");
            if for_people {
                r.fail(format!("{what} (clients connecting by that name refuse it)"), fix);
            } else {
                r.warn(what, fix);
            }
        }
    }
}

/// `2026-11-02` for a Unix time.
fn date(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| format!("@{secs}"))
}
