//! The self-signed certificates of the embedded default (issue #12): they name the listeners'
//! addresses and the configured host name, not only `localhost`, so a client that checks
//! names can be told to trust the certificate and then connect to 127.0.0.1 or to the host
//! name; a kept pair made for fewer names is made again.

use std::time::{Duration, Instant};

use crate::util::{python_json, Server, Vault};

/// The first log line containing `text`, once the server has logged it.
fn wait_for_line(server: &Server, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(line) = server.log.lock().unwrap().lines().find(|l| l.contains(text)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} in:\n{}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects to the IMAPS port trusting only `cafile` and checking the name given for each
/// attempt; prints whether each handshake succeeded.
const CHECK_NAMES: &str = r#"
import json, socket, ssl, sys
port, cafile, names = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
for name in names:
    ctx = ssl.create_default_context(cafile=cafile)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                ok, why = True, ""
    except ssl.SSLError as e:
        ok, why = False, str(e)
    print(json.dumps({"name": name, "ok": ok, "why": why}))
"#;

#[test]
fn the_self_signed_certificate_names_the_listener_and_the_host_name() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    // A pair an older version made: localhost only. It is made again for the names it lacks.
    let tls = vault.dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let old = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(tls.join("imap-cert.pem"), old.cert.pem()).unwrap();
    std::fs::write(tls.join("imap-key.pem"), old.signing_key.serialize_pem()).unwrap();
    let config = vault.dir.with_file_name("mailvault.toml");
    std::fs::write(&config, "[imap]\nhostname = \"mailvault.example.com\"\n").unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let made = wait_for_line(&server, "door=imap");
    assert!(
        made.contains("made now") && made.contains("for mailvault.example.com, 127.0.0.1, localhost, ::1"),
        "{made}"
    );
    let cafile = tls.join("imap-cert.pem");
    let results = python_json(
        CHECK_NAMES,
        &[
            server.imaps.port().to_string(),
            cafile.display().to_string(),
            "127.0.0.1".into(),
            "mailvault.example.com".into(),
            "localhost".into(),
            "other.example.com".into(),
        ],
    );
    let ok: Vec<(&str, bool)> = results
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        ok,
        [
            ("127.0.0.1", true),
            ("mailvault.example.com", true),
            ("localhost", true),
            ("other.example.com", false)
        ],
        "{results:#?}"
    );
    let kept = std::fs::read(&cafile).unwrap();
    assert_eq!(server.stop(), Some(0));
    // The next start keeps the pair: it names all it should.
    let again = vault.serve(&["--config", config.to_str().unwrap()]);
    assert!(wait_for_line(&again, "door=imap").contains("imap-cert.pem (kept)"));
    assert_eq!(std::fs::read(&cafile).unwrap(), kept);
    assert_eq!(again.stop(), Some(0));
}
