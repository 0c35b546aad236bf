//! Mail clients that synchronise (issue #14): what they rely on, through the real
//! `mailvault serve` — UIDNEXT that moves only with new mail, silence after STARTTLS, flag
//! changes and EXPUNGE answered OK and ignored, `* BYE` on shutdown. (Real clients syncing
//! over IMAPS and STARTTLS: `clients/`.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::util::{python_json, Server, Vault};

const PASSWORD: &[u8] = b"correct horse battery\n";

/// A store with users erika (erika@example.com) and hans (hans@example.de), both with
/// password `correct horse battery`, served on free ports.
fn erika_and_hans() -> (Vault, Server) {
    let vault = Vault::new();
    vault.ok(&["init"]);
    for (name, address) in [("erika", "erika@example.com"), ("hans", "hans@example.de")] {
        let added = vault.run_in(&["user", "add", name, "--address", address], Some(PASSWORD));
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
    }
    let server = vault.serve(&[]);
    (vault, server)
}

fn ports(server: &Server) -> Vec<String> {
    [server.smtp, server.imap, server.imaps]
        .iter()
        .map(|a| a.port().to_string())
        .collect()
}

/// Python helpers every script here starts with: SMTP delivery, TLS without verification
/// (the server's certificate is self-signed), an IMAPS login, JSON output.
const PRELUDE: &str = r#"
import imaplib, json, re, select, smtplib, socket, ssl, sys, threading, time
smtp_port, imap_port, imaps_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE

def send(rcpt, subject, body=b"hello\r\n"):
    raw = (f"From: max@example.org\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n").encode() + body
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=120) as s:
        s.sendmail("max@example.org", [rcpt], raw)

def login(user):
    m = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=tls, timeout=120)
    m.login(user, "correct horse battery")
    return m

def out(**kw):
    print(json.dumps(kw), flush=True)
"#;

/// SELECT, EXAMINE, STATUS, NOOP and IDLE while audit records (every SELECT and FETCH is
/// one) and mail for someone else are appended: UIDNEXT stays. New mail for the user moves
/// it to one above the new UID.
const UIDNEXT: &str = r#"
send("erika@example.com", "one")
send("erika@example.com", "two")
send("hans@example.de", "for hans")
m = login("erika")
other = login("erika")

def selected(examine=False):
    try:
        m.select("INBOX", readonly=examine)
    except imaplib.IMAP4.readonly:
        m.is_readonly = True
    return int(m.response("UIDNEXT")[1][-1])

def status(client):
    typ, data = client.status("INBOX", "(UIDNEXT MESSAGES)")
    return int(re.search(rb"UIDNEXT (\d+)", data[0]).group(1))

seen = []
first = selected()
uids = [int(u) for u in m.uid("SEARCH", None, "ALL")[1][0].split()]
for round in range(3):
    m.fetch("1:*", "(BODY.PEEK[])")            # an audit record
    send("hans@example.de", f"hans {round}")  # mail for someone else
    m.untagged_responses.pop("EXISTS", None)
    m.noop()
    exists = m.untagged_responses.pop("EXISTS", None)
    seen += [("noop-exists", exists and [e.decode() for e in exists]), ("noop", status(m)),
             ("other", status(other)), ("select", selected()), ("examine", selected(True))]
# IDLE while mail for someone else arrives: nothing is said.
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
cont = m.readline()
threading.Timer(0.2, send, args=("hans@example.de", "during idle")).start()
# (A timed-out read would break imaplib's buffered reader: wait for readability instead.)
readable, _, _ = select.select([m.sock], [], [], 2.5)
idle = m.readline().decode() if readable or m.sock.pending() else None
m.send(b"DONE\r\n")
while not m.readline().startswith(tag):
    pass
out(first=first, uids=uids, seen=seen, idle=idle, after=status(m))
# New mail for Erika: EXISTS, and UIDNEXT above its UID.
send("erika@example.com", "three")
time.sleep(0.5)
m.untagged_responses.pop("EXISTS", None)
m.noop()
exists = m.untagged_responses.pop("EXISTS", None)
new_uids = [int(u) for u in m.uid("SEARCH", None, "ALL")[1][0].split()]
out(exists=[e.decode() for e in exists or []], new_uids=new_uids, status=status(m),
    other=status(other), select=selected())
"#;

#[test]
fn uidnext_moves_only_when_mail_arrives_for_the_user() {
    let (_vault, server) = erika_and_hans();
    let lines = python_json(&format!("{PRELUDE}{UIDNEXT}"), &ports(&server));
    let (before, after) = (&lines[0], &lines[1]);
    let uids: Vec<u64> = serde_json::from_value(before["uids"].clone()).unwrap();
    let first = before["first"].as_u64().unwrap();
    assert_eq!(first, uids[1] + 1, "one above the last UID: {before}");
    for pair in before["seen"].as_array().unwrap() {
        match pair[0].as_str().unwrap() {
            "noop-exists" => assert!(pair[1].is_null(), "EXISTS without new mail: {before}"),
            what => assert_eq!(pair[1].as_u64(), Some(first), "{what}: {before}"),
        }
    }
    assert!(before["idle"].is_null(), "IDLE said something: {before}");
    assert_eq!(before["after"].as_u64(), Some(first));

    let new_uids: Vec<u64> = serde_json::from_value(after["new_uids"].clone()).unwrap();
    let newest = *new_uids.last().unwrap();
    assert_eq!(new_uids.len(), 3, "{after}");
    assert!(newest >= first, "{after}");
    assert_eq!(after["exists"], serde_json::json!(["3"]), "{after}");
    for what in ["status", "other", "select"] {
        assert_eq!(after[what].as_u64(), Some(newest + 1), "{what}: {after}");
    }
}

/// After `OK` to STARTTLS and the handshake, the server sends nothing until the client's
/// next command (RFC 3501 §6.2.1) — no TLS record either: TLS 1.3 session tickets arriving
/// then stalled offlineimap (`archive-imap/src/tls.rs`). A raw TLS socket waits, then asks
/// for CAPABILITY.
const STARTTLS_SILENCE: &str = r#"
def line(sock):
    data = b""
    while not data.endswith(b"\r\n"):
        b = sock.recv(1)
        if not b:
            break
        data += b
    return data.decode()

s = socket.create_connection(("127.0.0.1", imap_port), timeout=30)
greeting = line(s)
s.sendall(b"a STARTTLS\r\n")
answer = line(s)
t = tls.wrap_socket(s)
# Anything on the socket now, before the client speaks, even a record without data for the
# application (a session ticket), which the recv below would swallow.
records_unasked = bool(select.select([t], [], [], 1.5)[0])
t.settimeout(1.5)
try:
    unsolicited = t.recv(4096).decode()
except (socket.timeout, TimeoutError):
    unsolicited = None
t.settimeout(30)
t.sendall(b"b CAPABILITY\r\n")
capability = [line(t), line(t)]
out(greeting=greeting, answer=answer, unsolicited=unsolicited, capability=capability,
    records_unasked=records_unasked, version=t.version())
"#;

#[test]
fn after_starttls_the_server_waits_for_the_client() {
    let (_vault, server) = erika_and_hans();
    let lines = python_json(&format!("{PRELUDE}{STARTTLS_SILENCE}"), &ports(&server));
    let l = &lines[0];
    assert!(l["greeting"].as_str().unwrap().starts_with("* OK"), "{l}");
    assert!(l["answer"].as_str().unwrap().starts_with("a OK"), "{l}");
    assert!(l["unsolicited"].is_null(), "sent before the client spoke: {l}");
    assert_eq!(l["version"], "TLSv1.3", "{l}");
    assert_eq!(
        l["records_unasked"], false,
        "TLS records before the client spoke: {l}"
    );
    let capability = l["capability"].as_array().unwrap();
    assert!(
        capability[0]
            .as_str()
            .unwrap()
            .to_ascii_uppercase()
            .starts_with("* CAPABILITY IMAP4REV1"),
        "{l}"
    );
    assert!(!capability[0].as_str().unwrap().contains("STARTTLS"), "{l}");
    assert!(capability[1].as_str().unwrap().starts_with("b OK"), "{l}");
}

/// SELECT says `[READ-WRITE]` with no permanent flags, EXAMINE `[READ-ONLY]`; flag changes
/// get OK and the flags as they are, EXPUNGE OK and nothing expunged (after SELECT and after
/// EXAMINE, as Dovecot answers for a read-only ACL); every other change stays NO; the log
/// gains nothing from any of them.
const STORE: &str = r#"
send("erika@example.com", "one")
send("erika@example.com", "two")
m = login("erika")
codes = ("FLAGS", "PERMANENTFLAGS", "READ-ONLY", "READ-WRITE")
m.select("INBOX", readonly=True)
examine = {k: [v.decode() for v in m.untagged_responses.get(k, [])] for k in codes}
examine_expunge = m.expunge()
m.select("INBOX")
select = {k: [v.decode() for v in m.untagged_responses.get(k, [])] for k in codes}
uids = m.uid("SEARCH", None, "ALL")[1][0].decode().split()
answers = {}
for name, call in [
    ("store", lambda: m.store("1", "+FLAGS", "(\\Flagged \\Deleted)")),
    ("store-silent", lambda: m.store("1:*", "-FLAGS.SILENT", "(\\Seen)")),
    ("uid-store", lambda: m.uid("STORE", f"{uids[0]}:{uids[1]}", "FLAGS", "(\\Answered)")),
    ("uid-store-silent", lambda: m.uid("STORE", uids[1], "+FLAGS.SILENT", "(\\Deleted)")),
    ("expunge", lambda: m.expunge()),
    ("flags", lambda: m.fetch("1:*", "(FLAGS)")),
]:
    typ, data = call()
    answers[name] = [typ, [d.decode() if isinstance(d, bytes) else d for d in data]]
answers["examine-expunge"] = [examine_expunge[0],
                              [d.decode() if isinstance(d, bytes) else d for d in examine_expunge[1]]]
refused = {}
for name, call in [
    ("copy", lambda: m.copy("1", "Sent")),
    ("move", lambda: m._simple_command("MOVE", "1", "Sent")),
    ("uid-expunge", lambda: m.uid("EXPUNGE", "1:*")),
    ("append", lambda: m.append("INBOX", None, None, b"Subject: x\r\n\r\ny\r\n")),
    ("create", lambda: m.create("Mine")),
    ("delete", lambda: m.delete("Sent")),
    ("rename", lambda: m.rename("Sent", "Mine")),
]:
    try:
        typ, data = call()
    except imaplib.IMAP4.error as e:
        typ, data = "NO", [str(e).encode()]
    refused[name] = [typ, [d.decode() if isinstance(d, bytes) else str(d) for d in data]]
m.logout()
out(examine=examine, select=select, uids=uids, answers=answers, refused=refused)
"#;

#[test]
fn flag_changes_and_expunge_are_answered_ok_and_change_nothing() {
    let (vault, server) = erika_and_hans();
    let lines = python_json(&format!("{PRELUDE}{STORE}"), &ports(&server));
    let l = &lines[0];
    // Dovecot says READ-ONLY to SELECT too; offlineimap cannot sync that (clients/).
    for (verb, code, not) in [
        ("select", "READ-WRITE", "READ-ONLY"),
        ("examine", "READ-ONLY", "READ-WRITE"),
    ] {
        assert_eq!(l[verb]["PERMANENTFLAGS"], serde_json::json!(["()"]), "{l}");
        assert_eq!(l[verb]["FLAGS"], serde_json::json!(["(\\Seen)"]), "{l}");
        assert_eq!(l[verb][code], serde_json::json!([""]), "{verb}: {l}");
        assert_eq!(l[verb][not], serde_json::json!([]), "{verb}: {l}");
    }
    let uids: Vec<String> = serde_json::from_value(l["uids"].clone()).unwrap();
    let a = &l["answers"];
    assert_eq!(a["store"], serde_json::json!(["OK", ["1 (FLAGS (\\Seen))"]]));
    assert_eq!(a["store-silent"], serde_json::json!(["OK", [null]]));
    assert_eq!(
        a["uid-store"],
        serde_json::json!([
            "OK",
            [
                format!("1 (UID {} FLAGS (\\Seen))", uids[0]),
                format!("2 (UID {} FLAGS (\\Seen))", uids[1])
            ]
        ])
    );
    assert_eq!(a["uid-store-silent"], serde_json::json!(["OK", [null]]));
    // OK, and no `* n EXPUNGE`: no message is \Deleted.
    assert_eq!(a["expunge"], serde_json::json!(["OK", [null]]));
    assert_eq!(a["examine-expunge"], serde_json::json!(["OK", [null]]));
    assert_eq!(
        a["flags"],
        serde_json::json!(["OK", ["1 (FLAGS (\\Seen))", "2 (FLAGS (\\Seen))"]])
    );
    for (name, outcome) in l["refused"].as_object().unwrap() {
        assert_eq!(outcome[0], "NO", "{name}: {outcome}");
        // After SELECT's [READ-WRITE], a [READ-ONLY] code would tell the client that the
        // mailbox has become read-only (imaplib then refuses every later command).
        assert!(!outcome.to_string().contains("READ-ONLY"), "{name}: {outcome}");
    }
    assert_eq!(server.stop(), Some(0));
    // Two messages; besides them only the accesses and checkpoints.
    let records = vault.records();
    let kinds = |k: &str| records.iter().filter(|r| r["kind"] == k).count();
    assert_eq!(kinds("message"), 2);
    assert_eq!(kinds("arrival"), 0);
    let actions: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "audit")
        .map(|r| r["audit"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["user-add", "user-add", "start", "login", "examine", "select", "search", "stop"],
        "{records:#?}"
    );
    assert_eq!(vault.verify(&[]).0, 0);
}

/// SIGTERM of `serve`: every session hears `* BYE` before the connection closes.
const SHUTDOWN: &str = r#"
selected = login("erika")
try:
    selected.select("INBOX")
except imaplib.IMAP4.readonly:
    pass
idling = login("hans")
idling.select("INBOX", readonly=True)
tag = idling._new_tag()
idling.send(tag + b" IDLE\r\n")
idling.readline()
waiting = imaplib.IMAP4("127.0.0.1", imap_port, timeout=60)
print("ready", flush=True)

def rest(m):
    lines = []
    while True:
        try:
            l = m.readline()
        except (OSError, imaplib.IMAP4.abort):
            break
        if not l:
            break
        lines.append(l.decode())
    return lines

for name, m in [("selected", selected), ("idling", idling), ("waiting", waiting)]:
    out(name=name, rest=rest(m))
"#;

#[test]
fn sessions_hear_bye_when_the_server_is_stopped() {
    let (_vault, server) = erika_and_hans();
    let mut client = Command::new("python3")
        .arg("-c")
        .arg(format!("{PRELUDE}{SHUTDOWN}"))
        .args(ports(&server))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdout = BufReader::new(client.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    assert_eq!(ready, "ready\n");
    assert_eq!(server.stop(), Some(0));
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert!(client.wait().unwrap().success());
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for l in &lines {
        assert_eq!(
            l["rest"],
            serde_json::json!(["* BYE server shutting down\r\n"]),
            "{l}"
        );
    }
}
