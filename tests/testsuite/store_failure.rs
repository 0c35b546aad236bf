//! What the front doors answer when the store cannot write: each kind of failure gets the
//! answer of whose fault it is (archive_core::Fault). The disk is "full" through a file-size
//! limit (RLIMIT_FSIZE): every append that would grow the segment past it fails with EFBIG
//! and is cut back cleanly, like ENOSPC.

use crate::util::{python_json, Vault};

const PASSWORD: &[u8] = b"correct horse battery\n";

/// Logs in and selects INBOX while there is room, fills the disk over LMTP (halving message
/// sizes until even a tiny one is refused), then asks for what needs an audit record (FETCH
/// of 200 scattered UIDs: a long record) and what does not exist. One JSON object per step.
const CLIENT: &str = r#"
import imaplib, json, smtplib, ssl, sys
lmtp_port, imaps_port = int(sys.argv[1]), int(sys.argv[2])

def out(**kw):
    print(json.dumps(kw), flush=True)

def deliver(rcpt, raw):
    with smtplib.LMTP("127.0.0.1", lmtp_port) as s:
        try:
            s.sendmail("sender@example.org", [rcpt], raw)
            return "250"
        except smtplib.SMTPDataError as e:
            return "%d %s" % (e.smtp_code, e.smtp_error.decode())
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients[rcpt]
            return "%d %s" % (code, text.decode())

# Erika's UIDs are every other seq: her INBOX has 200 scattered UIDs.
for i in range(200):
    for rcpt in ("erika@example.com", "otto@example.com"):
        raw = ("From: sender@example.org\r\nTo: %s\r\nSubject: m%d\r\n\r\nbody %d\r\n" % (rcpt, i, i)).encode()
        assert deliver(rcpt, raw) == "250"

tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=tls)
m.login("erika", "correct horse battery")
typ, data = m.select("INBOX", readonly=True)
out(step="select", typ=typ, exists=int(data[0]))

size, last = 512 * 1024, None
import random
rng = random.Random(7)
while size >= 16:
    body = bytes(rng.getrandbits(8) for _ in range(size)).hex().encode()
    raw = b"From: filler@example.org\r\nSubject: filler\r\n\r\n" + body + b"\r\n"
    last = deliver("otto@example.com", raw)
    if not last.startswith("250"):
        size //= 2
out(step="full", reply=last)
out(step="small-after-full", reply=deliver("erika@example.com", b"Subject: tiny\r\n\r\nx\r\n"))

typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
out(step="fetch", typ=typ, text=str(data[0]))
typ, data = m.select("NoSuchBox", readonly=True)
out(step="select-missing", typ=typ, text=str(data[0]))
m.logout()
"#;

#[test]
fn a_full_disk_is_the_stores_fault_and_a_missing_mailbox_is_not() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    for (name, address) in [("erika", "erika@example.com"), ("otto", "otto@example.com")] {
        let added = vault.run_in(&["user", "add", name, "--address", address], Some(PASSWORD));
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
    }
    let limit = ["bash", "-c", "trap '' XFSZ; ulimit -f 2048; exec \"$@\"", "bash"];
    let server = vault.serve_via(&limit, &[]);
    let steps = python_json(
        CLIENT,
        &[server.lmtp.port().to_string(), server.imaps.port().to_string()],
    );
    let step = |name: &str| -> &serde_json::Value {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {steps:#?}"))
    };
    assert_eq!(step("select")["typ"], "OK");
    assert_eq!(step("select")["exists"], 200);
    // The sender keeps a message the archive could not write, and tries again: never 5xx.
    for name in ["full", "small-after-full"] {
        let reply = step(name)["reply"].as_str().unwrap();
        assert!(reply.starts_with("451 4.3.0"), "{name}: {reply}");
    }
    // Reading needs its audit record first; the record cannot be written: UNAVAILABLE (try
    // again later), not SERVERBUG and not an answer without the record.
    assert_eq!(step("fetch")["typ"], "NO", "{steps:#?}");
    assert!(
        step("fetch")["text"].as_str().unwrap().contains("[UNAVAILABLE]"),
        "{steps:#?}"
    );
    // A name nobody has is still that, whatever the disk says.
    assert_eq!(step("select-missing")["typ"], "NO");
    assert!(
        step("select-missing")["text"]
            .as_str()
            .unwrap()
            .contains("[NONEXISTENT]"),
        "{steps:#?}"
    );
    let log = server.log.lock().unwrap().clone();
    assert!(log.contains("NO [UNAVAILABLE]"), "the server log says why: {log}");
    assert!(!log.contains("panicked"), "{log}");
    // Every acknowledged record is under a checkpoint already. The stop's own audit record
    // may fit in the full segment while the checkpoint over it does not: then the server
    // says so and exits 2, and verify finds that one record unsigned (never acknowledged:
    // the next start moves it to quarantine and audits the cut).
    let log = server.log.clone();
    let code = server.stop();
    let (verified, out) = vault.verify(&[]);
    match code {
        Some(0) => assert_eq!(verified, 0, "{out}"),
        Some(2) => {
            assert!(log.lock().unwrap().contains("the stop is not in the audit trail"));
            assert!(matches!(verified, 0 | 3), "{out}");
        }
        other => panic!("stop: {other:?}"),
    }
    // Nothing half-written: with room again the store takes mail, and the log verifies.
    let server = vault.serve(&[]);
    let reply = python_json(
        "import json, smtplib, sys\n\
         with smtplib.LMTP('127.0.0.1', int(sys.argv[1])) as s:\n\
         \x20   s.sendmail('a@example.org', ['erika@example.com'], b'Subject: again\\r\\n\\r\\nx\\r\\n')\n\
         print(json.dumps('ok'))\n",
        &[server.lmtp.port().to_string()],
    );
    assert_eq!(reply, vec![serde_json::json!("ok")]);
    assert_eq!(server.stop(), Some(0));
    let (code, out) = vault.verify(&[]);
    assert_eq!(code, 0, "{out}");
}
