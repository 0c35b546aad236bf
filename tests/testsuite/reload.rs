//! SIGHUP (issue #12): the server reads its configuration, certificates and users again and
//! applies what can change live, names what cannot, and never stops because of it — not for
//! a configuration that does not parse, not for a certificate that does not load.

use std::time::{Duration, Instant};

use crate::util::{python_json, Server, Vault};

/// Fingerprints (SHA-256 of the leaf's DER) of the certificates the IMAPS port and SMTP
/// STARTTLS offer now, and what two RCPT TOs in one transaction get.
const PROBE: &str = r#"
import hashlib, json, smtplib, socket, ssl, sys
smtp_port, imaps_port = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", imaps_port), timeout=30) as raw:
    with ctx.wrap_socket(raw) as tls:
        imaps = hashlib.sha256(tls.getpeercert(True)).hexdigest()
s = smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="relay.test", timeout=30)
s.ehlo()
s.starttls(context=ctx)
starttls = hashlib.sha256(s.sock.getpeercert(True)).hexdigest()
s.ehlo()
s.mail("max@example.org")
codes = [s.rcpt("a@vault.example")[0], s.rcpt("b@vault.example")[0]]
s.quit()
print(json.dumps({"imaps": imaps, "starttls": starttls, "rcpt": codes}))
"#;

fn probe(server: &Server) -> serde_json::Value {
    python_json(
        PROBE,
        &[server.smtp.port().to_string(), server.imaps.port().to_string()],
    )
    .remove(0)
}

/// A self-signed certificate for `name`: (PEM chain, PEM key, SHA-256 of the DER, hex).
fn certificate(name: &str) -> (String, String, String) {
    let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let fingerprint = sha256_hex(made.cert.der());
    (made.cert.pem(), made.signing_key.serialize_pem(), fingerprint)
}

use crate::util::sha256_hex;

fn sighup(server: &Server) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGHUP);
    }
}

/// Waits for the `n`th log line containing `text`; returns it.
fn wait_for_nth(server: &Server, text: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(line) = server
            .log
            .lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains(text))
            .nth(n - 1)
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} (#{n}) in:\n{}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_what_can_change_names_the_rest_and_never_stops_the_server() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    let dir = vault.dir.with_file_name("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_pem, key_pem) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (old_chain, old_key, old_print) = certificate("old.example");
    std::fs::write(&cert_pem, &old_chain).unwrap();
    std::fs::write(&key_pem, &old_key).unwrap();
    let config = dir.join("mailvault.toml");
    let tls = format!(
        "tls_certificate = {:?}\ntls_key = {:?}\n",
        cert_pem.display().to_string(),
        key_pem.display().to_string()
    );
    std::fs::write(&config, format!("[intake]\n{tls}[imap]\n{tls}")).unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let before = probe(&server);
    assert_eq!(before["imaps"], old_print.as_str());
    assert_eq!(before["starttls"], old_print.as_str());
    assert_eq!(before["rcpt"], serde_json::json!([250, 250]));

    // Renewed in place (as certbot does) and a changed configuration: one live key, one not.
    let (new_chain, new_key, new_print) = certificate("new.example");
    std::fs::write(&cert_pem, &new_chain).unwrap();
    std::fs::write(&key_pem, &new_key).unwrap();
    std::fs::write(
        &config,
        format!("[store]\nsegment_mib = 8\n[intake]\nmax_recipients = 1\n{tls}[imap]\n{tls}"),
    )
    .unwrap();
    sighup(&server);
    let restart = wait_for_nth(&server, "restart to apply them", 1);
    assert!(restart.contains("keys=store.segment_mib"), "{restart}");
    let after = probe(&server);
    assert_eq!(
        after["imaps"],
        new_print.as_str(),
        "IMAPS offers the renewed certificate"
    );
    assert_eq!(after["starttls"], new_print.as_str(), "so does STARTTLS");
    assert_eq!(
        after["rcpt"],
        serde_json::json!([250, 452]),
        "intake.max_recipients is live"
    );

    // A configuration that does not parse: logged, and nothing changes.
    std::fs::write(&config, "[intake]\nmax_recipients = \"lots\"\n").unwrap();
    sighup(&server);
    let refused = wait_for_nth(&server, "configuration not reloaded", 1);
    assert!(refused.contains("max_recipients"), "{refused}");
    // A certificate that does not load: logged, and the current one stays.
    std::fs::write(
        &config,
        format!("[intake]\nmax_recipients = 1\n{tls}[imap]\n{tls}"),
    )
    .unwrap();
    std::fs::write(&cert_pem, "not a certificate").unwrap();
    sighup(&server);
    wait_for_nth(&server, "IMAP certificate not reloaded", 1);
    wait_for_nth(&server, "[intake] not reloaded", 1);
    let still = probe(&server);
    assert_eq!(still["imaps"], new_print.as_str());
    assert_eq!(still["rcpt"], serde_json::json!([250, 452]));

    assert_eq!(server.stop(), Some(0), "a clean stop after all of it");
    assert_eq!(vault.verify(&[]).0, 0);
}
