//! `mailvault serve` as an IMAP server, end to end: users from `mailvault user add`, mail
//! from SMTP intake, Python's imaplib over STARTTLS and implicit TLS. (archive-imap's own
//! tests cover the protocol in depth; these check the wiring a user meets.)

use crate::util::{python_json, Vault};

const PASSWORD: &[u8] = b"correct horse battery\n";

/// Sends one message over SMTP, reads it back over IMAPS, idles while a second one arrives
/// over SMTP, and tries every kind of write. Prints one JSON object per step.
const CLIENT: &str = r#"
import imaplib, json, smtplib, ssl, sys, threading, time
smtp_port, imap_port, imaps_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
first = (b"From: Max <max@example.org>\r\nTo: Erika <erika@example.com>\r\n"
         b"Subject: Quartalszahlen\r\nMessage-ID: <q3@example.org>\r\n\r\n"
         b"Umsatz gestiegen.\r\n\xe4 8-bit stays as it is.\r\n")
second = (b"From: Max <max@example.org>\r\nTo: erika@example.com\r\n"
          b"Subject: Nachtrag\r\n\r\nNoch etwas.\r\n")

def send(raw):
    with smtplib.SMTP("127.0.0.1", smtp_port) as s:
        s.sendmail("max@example.org", ["erika@example.com"], raw)

def out(**kw):
    print(json.dumps(kw), flush=True)

send(first)
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE

# Wrong password: refused without telling why.
m = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=tls)
try:
    m.login("erika", "wrong password")
    out(step="wrong", ok=True)
except imaplib.IMAP4.error as e:
    out(step="wrong", ok=False, text=str(e))
m.logout()

# STARTTLS on the plain port, then LOGIN by mail address.
p = imaplib.IMAP4("127.0.0.1", imap_port)
p.starttls(ssl_context=tls)
typ, _ = p.login("erika@example.com", "correct horse battery")
out(step="starttls-login", typ=typ)
p.logout()

m = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=tls)
m.login("erika", "correct horse battery")
typ, boxes = m.list()
out(step="list", boxes=[b.decode() for b in boxes])
# SELECT, not EXAMINE: [READ-WRITE] with no permanent flags (docs/OPERATIONS.md §IMAP).
typ, data = m.select("INBOX")
out(step="select", typ=typ, exists=int(data[0]),
    permanentflags=[f.decode() for f in m.untagged_responses.get("PERMANENTFLAGS", [])])
typ, data = m.fetch("1", "(BODY.PEEK[])")
out(step="body", hex=data[0][1].hex())
typ, data = m.search(None, "SUBJECT", "Quartalszahlen")
out(step="search", uids=data[0].decode())

refusals = {}
for name, call in [
    ("copy", lambda: m.copy("1", "Sent")),
    ("create", lambda: m.create("Mine")),
    ("delete", lambda: m.delete("INBOX")),
    ("append", lambda: m.append("INBOX", None, None, b"Subject: x\r\n\r\ny\r\n")),
]:
    try:
        typ, data = call()
        refusals[name] = [typ, [d.decode() if isinstance(d, bytes) else str(d) for d in data]]
    except imaplib.IMAP4.error as e:
        refusals[name] = ["NO", [str(e)]]
out(step="refusals", refusals=refusals)

# IDLE: the second message arrives over SMTP while the client idles.
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
cont = m.readline()
threading.Timer(0.2, send, args=(second,)).start()
m.sock.settimeout(30)
line = m.readline()
m.send(b"DONE\r\n")
while not m.readline().startswith(tag):
    pass
out(step="idle", cont=cont.decode().strip(), line=line.decode().strip())

# The user is disabled while the session lives: its next command that reads gets BYE.
import subprocess
subprocess.run([sys.argv[4], "--data", sys.argv[5], "user", "disable", "erika"], check=True,
               capture_output=True)
try:
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    out(step="disabled", typ=typ, bye=False)
except imaplib.IMAP4.abort as e:
    out(step="disabled", bye=True, text=str(e))
subprocess.run([sys.argv[4], "--data", sys.argv[5], "user", "enable", "erika"], check=True,
               capture_output=True)
"#;

#[test]
fn users_read_their_journaled_mail_over_imap_and_nothing_changes() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    vault.ok_in(
        &["user", "add", "erika", "--address", "erika@example.com"],
        Some(PASSWORD),
    );
    let server = vault.serve(&[]);
    let steps = python_json(
        CLIENT,
        &[
            server.smtp.port().to_string(),
            server.imap.port().to_string(),
            server.imaps.port().to_string(),
            env!("CARGO_BIN_EXE_mailvault").to_string(),
            vault.dir.to_string_lossy().into_owned(),
        ],
    );
    let step = |name: &str| -> &serde_json::Value {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {steps:#?}"))
    };

    assert_eq!(step("wrong")["ok"], false);
    assert!(step("wrong")["text"]
        .as_str()
        .unwrap()
        .contains("AUTHENTICATIONFAILED"));
    assert_eq!(step("starttls-login")["typ"], "OK");
    let boxes: Vec<&str> = step("list")["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert!(boxes.iter().any(|b| b.ends_with("INBOX")), "{boxes:?}");
    assert!(
        boxes.iter().any(|b| b.contains("\\Sent") && b.ends_with("Sent")),
        "{boxes:?}"
    );
    assert_eq!(step("select")["typ"], "OK");
    assert_eq!(step("select")["exists"], 1);
    assert_eq!(step("select")["permanentflags"], serde_json::json!(["()"]));

    // BODY[] is exactly what intake stored (and `show` returns).
    let seq = vault.records().iter().find(|r| r["kind"] == "message").unwrap()["seq"]
        .as_u64()
        .unwrap();
    let stored = vault.ok(&["show", &seq.to_string()]);
    let stored_hex: String = stored.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(stored_hex, step("body")["hex"].as_str().unwrap());
    assert!(String::from_utf8_lossy(&stored).contains("Quartalszahlen"));
    assert_eq!(step("search")["uids"], "1");

    // (Flag changes and EXPUNGE are answered OK and change nothing: imap_sync.rs.)
    for (name, outcome) in step("refusals")["refusals"].as_object().unwrap() {
        assert_eq!(outcome[0], "NO", "{name}: {outcome}");
    }
    assert_eq!(step("idle")["cont"].as_str().unwrap().chars().next(), Some('+'));
    assert!(
        step("idle")["line"].as_str().unwrap().ends_with("EXISTS"),
        "{}",
        step("idle")
    );

    assert_eq!(step("disabled")["bye"], true, "{}", step("disabled"));
    assert!(
        step("disabled")["text"].as_str().unwrap().contains("disabled"),
        "{}",
        step("disabled")
    );

    assert_eq!(server.stop(), Some(0));
    // Two messages, nothing else but audit records and checkpoints; the log verifies.
    let records = vault.records();
    let kinds = |k: &str| records.iter().filter(|r| r["kind"] == k).count();
    assert_eq!(kinds("message"), 2);
    assert_eq!(kinds("arrival"), 0);
    assert!(
        kinds("audit") >= 5,
        "logins, failed login, select, view, search: {records:#?}"
    );
    // The SEARCH is one audit record naming the user, the mailbox and the keys as asked.
    let searches: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "audit" && r["audit"]["action"] == "search")
        .map(|r| (r["audit"]["actor"].clone(), r["audit"]["target"].clone()))
        .collect();
    assert_eq!(
        searches,
        [(
            serde_json::json!("erika"),
            serde_json::json!("imap mailbox INBOX SUBJECT Quartalszahlen")
        )],
        "{records:#?}"
    );
    let ended = records
        .iter()
        .filter(|r| r["kind"] == "audit" && r["audit"]["action"] == "login-failed")
        .filter(|r| r["audit"]["target"] == "imap reason=session-disabled")
        .count();
    assert_eq!(ended, 1, "{records:#?}");
    assert_eq!(vault.verify(&[]).0, 0);
}

/// Delivers messages of 70 KB, 1 MB and 20 MB over SMTP and reads each back over IMAPS and
/// over STARTTLS with imaplib: every response larger than TLS's record-layer buffer (64 KiB
/// in rustls) must arrive whole. Prints one JSON object per message and transport.
const LARGE_OVER_TLS: &str = r#"
import hashlib, imaplib, json, smtplib, ssl, sys
smtp_port, imap_port, imaps_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sizes = [70_000, 1_000_000, 20_000_000]
sent = {}
for n, size in enumerate(sizes):
    head = (f"From: max@example.org\r\nTo: erika@example.com\r\nSubject: large {n}\r\n"
            f"Message-ID: <large{n}@example.org>\r\n\r\n").encode()
    line = b"".join(bytes([65 + (i + n) % 26]) for i in range(76)) + b"\r\n"
    raw = head + line * ((size - len(head)) // len(line))
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=120) as s:
        s.sendmail("max@example.org", ["erika@example.com"], raw)
    sent[n] = (len(raw), hashlib.sha256(raw).hexdigest())

tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
def imaps():
    return imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=tls, timeout=120)
def starttls():
    m = imaplib.IMAP4("127.0.0.1", imap_port, timeout=120)
    m.starttls(ssl_context=tls)
    return m
for transport, connect in [("imaps", imaps), ("starttls", starttls)]:
    m = connect()
    m.login("erika", "correct horse battery")
    try:
        m.select("INBOX")
    except imaplib.IMAP4.readonly:
        m.is_readonly = True
    for n in sorted(sent):
        typ, data = m.fetch(str(n + 1), "(BODY.PEEK[])")
        body = data[0][1]
        print(json.dumps({"transport": transport, "n": n, "len": len(body),
                          "sha256": hashlib.sha256(body).hexdigest(),
                          "sent_len": sent[n][0], "sent_sha256": sent[n][1]}), flush=True)
    # All of them in one response, then the session still answers.
    typ, data = m.fetch("1:*", "(BODY.PEEK[])")
    whole = sum(len(d[1]) for d in data if isinstance(d, tuple))
    print(json.dumps({"transport": transport, "all": whole,
                      "noop": m.noop()[0]}), flush=True)
    m.logout()
"#;

#[test]
fn messages_of_megabytes_arrive_whole_over_imaps_and_starttls() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    let added = vault.run_in(
        &["user", "add", "erika", "--address", "erika@example.com"],
        Some(PASSWORD),
    );
    assert!(added.status.success());
    let server = vault.serve(&[]);
    let lines = python_json(
        LARGE_OVER_TLS,
        &[
            server.smtp.port().to_string(),
            server.imap.port().to_string(),
            server.imaps.port().to_string(),
        ],
    );
    let mut total = 0;
    for line in lines.iter().filter(|l| l.get("n").is_some()) {
        assert_eq!(line["len"], line["sent_len"], "{line}");
        assert_eq!(line["sha256"], line["sent_sha256"], "{line}");
        if line["transport"] == "imaps" {
            total += line["len"].as_u64().unwrap();
        }
    }
    assert_eq!(lines.len(), 8, "{lines:#?}");
    for line in lines.iter().filter(|l| l.get("all").is_some()) {
        assert_eq!(line["all"].as_u64().unwrap(), total, "{line}");
        assert_eq!(line["noop"], "OK");
    }
    assert_eq!(server.stop(), Some(0));
}
