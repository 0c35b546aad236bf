//! The intake against a hostile client (issue #10): journal styles only from configured
//! sources, session slots and time limits a client cannot exhaust, BDAT sizes that do not
//! fit. Real binary, real sockets. (Relay AUTH: `intake_auth`.)

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::intake::{receipt, record, Raw};
use crate::intake_auth::add_user;
use crate::util::{fixtures, python_json, Server, Vault};

/// Starts the server with `toml` as its configuration file.
pub(crate) fn serve_with(vault: &Vault, toml: &str) -> Server {
    let config = vault.dir.with_file_name("intake.toml");
    std::fs::write(&config, toml).unwrap();
    vault.serve(&["--config", config.to_str().unwrap()])
}

fn messages(vault: &Vault) -> Vec<serde_json::Value> {
    vault
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "message")
        .collect()
}

/// Sends one message over SMTP from a chosen loopback source address; prints the DATA reply.
const SEND_FROM: &str = r#"
import json, smtplib, sys
source, port, sender, rcpt, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
s = smtplib.SMTP("127.0.0.1", port, local_hostname="relay.test", source_address=(source, 0))
s.ehlo()
s.mail(sender)
s.rcpt(rcpt)
code, text = s.data(open(path, "rb").read())
s.quit()
print(json.dumps(dict(code=code, text=text.decode())))
"#;

fn send_from(
    server: &Server,
    source: &str,
    sender: &str,
    rcpt: &str,
    message: &std::path::Path,
) -> (u64, String) {
    let args = [
        source.to_string(),
        server.smtp.port().to_string(),
        sender.to_string(),
        rcpt.to_string(),
        message.display().to_string(),
    ];
    let reply = &python_json(SEND_FROM, &args)[0];
    assert_eq!(reply["code"], 250, "{reply}");
    receipt(reply["text"].as_str().unwrap())
}

/// The subjects in a user's INBOX, over IMAPS.
const INBOX: &str = r#"
import imaplib, json, ssl, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
tls = ssl.create_default_context(); tls.check_hostname = False; tls.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=tls)
m.login(user, password)
m.select("INBOX", readonly=True)
typ, data = m.search(None, "ALL")
subjects = []
for n in data[0].split():
    typ, d = m.fetch(n, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects.append(d[0][1].decode().strip())
m.logout()
print(json.dumps(subjects))
"#;

fn inbox(server: &Server, user: &str, password: &str) -> Vec<String> {
    let args = [server.imaps.port().to_string(), user.into(), password.into()];
    let subjects = &python_json(INBOX, &args)[0];
    subjects
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn journal_styles_apply_only_to_configured_sources_and_look_alikes_stay_plain() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    add_user(&vault, "bob", "bob@example.com", "bobs password");
    // The Exchange journal comes from 127.0.0.2, the Postfix bcc_maps copies from 127.0.0.3;
    // the rest of loopback is any other client of the relay.
    let server = serve_with(
        &vault,
        r#"
[[intake.journal_source]]
style = "exchange"
clients = ["127.0.0.2/32"]

[[intake.journal_source]]
style = "recipient-encoded"
clients = ["127.0.0.3/32"]
"#,
    );
    // A journal report that names bob as a Bcc recipient of a message he never got.
    let report = std::fs::read_to_string(fixtures().join("journal/exchange-journal-report.eml"))
        .unwrap()
        .replace("Bcc: grace@contoso.example", "Bcc: bob@example.com");
    let report_path = vault.dir.with_file_name("report.eml");
    std::fs::write(&report_path, &report).unwrap();
    let encoded_path = vault.dir.with_file_name("encoded.eml");
    std::fs::write(
        &encoded_path,
        "From: mallory@example.net\r\nTo: archive@vault.example\r\nSubject: encoded for bob\r\n\r\nhi\r\n",
    )
    .unwrap();
    let encoded_rcpt = "archive+bob=example.com@vault.example";

    // From an unconfigured client: stored as received, never unwrapped or decoded.
    let (forged, hash) = send_from(
        &server,
        "127.0.0.1",
        "journal@contoso.example",
        "archive@vault.example",
        &report_path,
    );
    let (forged_encoded, _) = send_from(
        &server,
        "127.0.0.1",
        "mallory@example.net",
        encoded_rcpt,
        &encoded_path,
    );
    let r = record(&vault, forged);
    assert_eq!(r["blake3"].as_str().unwrap(), hash);
    assert_eq!(r["envelope"]["source"], "", "{r}");
    assert_eq!(r["envelope"]["original_recipients"], serde_json::json!([]));
    assert_eq!(
        vault.ok(&["show", &forged.to_string()]),
        report.as_bytes(),
        "byte-exact"
    );
    let r = record(&vault, forged_encoded);
    assert_eq!(r["envelope"]["original_recipients"], serde_json::json!([]), "{r}");
    assert_eq!(r["envelope"]["rcpt_to"][0]["address"], encoded_rcpt);
    assert_eq!(messages(&vault).len(), 2, "one plain record each");
    assert_eq!(inbox(&server, "bob", "bobs password"), Vec::<String>::new());

    // The same messages from their configured sources are journals.
    let (original, _) = send_from(
        &server,
        "127.0.0.2",
        "journal@contoso.example",
        "archive@vault.example",
        &report_path,
    );
    let e = &record(&vault, original)["envelope"];
    assert_eq!(e["mail_from"], "dan@contoso.example");
    assert!(e["original_recipients"]
        .as_array()
        .unwrap()
        .contains(&"bob@example.com".into()));
    let (decoded, _) = send_from(
        &server,
        "127.0.0.3",
        "mallory@example.net",
        encoded_rcpt,
        &encoded_path,
    );
    assert_eq!(
        record(&vault, decoded)["envelope"]["original_recipients"],
        serde_json::json!(["bob@example.com"])
    );
    let mut seen = inbox(&server, "bob", "bobs password");
    seen.sort();
    assert_eq!(seen, ["Subject: Quarterly numbers", "Subject: encoded for bob"]);
    assert_eq!(server.stop(), Some(0));
}

/// Opens connections from loopback source addresses and prints each greeting line; keeps
/// them open until all are read.
const CONNECT_MANY: &str = r#"
import json, socket, sys
port = int(sys.argv[1])
held = []
for source in sys.argv[2:]:
    s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    held.append(s)
    line = s.makefile("rb").readline().decode().strip()
    print(json.dumps(dict(source=source, greeting=line)), flush=True)
"#;

#[test]
fn idle_connections_from_one_address_cannot_take_every_slot() {
    let vault = Vault::new();
    let server = serve_with(
        &vault,
        "[intake]\nmax_sessions = 4\nmax_sessions_per_client = 2\n",
    );
    let sources = [
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.5",
        "127.0.0.5",
        "127.0.0.6",
    ];
    let mut args = vec![server.smtp.port().to_string()];
    args.extend(sources.iter().map(|s| s.to_string()));
    let greetings: Vec<String> = python_json(CONNECT_MANY, &args)
        .iter()
        .map(|g| g["greeting"].as_str().unwrap().to_string())
        .collect();
    let codes: Vec<&str> = greetings.iter().map(|g| &g[..3]).collect();
    // Two from 127.0.0.1, the third refused; another client still gets in; the listener's
    // own limit (4) refuses the sixth.
    assert_eq!(codes, ["220", "220", "421", "220", "220", "421"], "{greetings:?}");
    assert!(greetings[2].contains("from your address"), "{greetings:?}");
    assert_eq!(server.stop(), Some(0));
}

/// Writes `bytes` one at a time, `pause` apart, until told to stop or the peer is gone.
fn trickle(
    stream: TcpStream,
    bytes: &'static [u8],
    pause: Duration,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut stream = stream;
        for b in bytes.iter().cycle() {
            if flag.load(Ordering::Relaxed) || stream.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
    });
    (stop, handle)
}

#[test]
fn trickled_commands_and_data_run_into_their_deadlines() {
    let vault = Vault::new();
    // Per-read patience is long; the totals are short.
    let server = serve_with(
        &vault,
        "[intake]\nidle_timeout_secs = 1\ncommand_timeout_secs = 60\ndata_timeout_secs = 60\ndata_deadline_secs = 2\n",
    );
    let pause = Duration::from_millis(100);

    // A command line trickled before MAIL: the idle timeout counts from the last command.
    let mut c = Raw::connect(server.smtp);
    let (stop, t) = trickle(c.writer.try_clone().unwrap(), b"NOOP NOOP NOOP ", pause);
    let reply = c.reply();
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert!(reply.starts_with("421 4.4.2"), "{reply}");

    // DATA trickled line by line.
    let mut c = Raw::connect(server.smtp);
    c.send(b"EHLO slow.test\r\nMAIL FROM:<s@example.com>\r\nRCPT TO:<archive@vault.example>\r\nDATA\r\n");
    for _ in 0..3 {
        c.reply();
    }
    assert!(c.reply().starts_with("354"));
    let (stop, t) = trickle(c.writer.try_clone().unwrap(), b"x\r\n", pause);
    let reply = c.reply();
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert!(reply.starts_with("421 4.4.2"), "{reply}");

    // A BDAT chunk trickled.
    let mut c = Raw::connect(server.smtp);
    c.send(b"EHLO slow.test\r\nMAIL FROM:<s@example.com>\r\nRCPT TO:<archive@vault.example>\r\nBDAT 100000 LAST\r\n");
    for _ in 0..3 {
        c.reply();
    }
    let (stop, t) = trickle(c.writer.try_clone().unwrap(), b"y", pause);
    let reply = c.reply();
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    assert_eq!(server.stop(), Some(0));
    assert!(messages(&vault).is_empty(), "nothing half-sent is archived");
}

#[test]
fn bdat_sizes_that_do_not_fit_end_the_session_without_running_the_chunk() {
    let vault = Vault::new();
    let server = serve_with(&vault, "[intake]\nmax_message_size = 4096\n");
    let smuggled = b"MAIL FROM:<smuggled@example.com>\r\nRCPT TO:<archive@vault.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n";
    for (size, expect) in [
        // smtp-proto reads this as a 10-octet chunk.
        ("99999999999999999999010 LAST", "552 5.3.4"),
        ("18446744073709551626 LAST", "552 5.3.4"),
        ("5000 LAST", "552 5.3.4"),
        ("+10 LAST", "501 5.5.4"),
        ("0x0a LAST", "501 5.5.4"),
        ("1\r0 LAST", "501 5.5.4"),
    ] {
        let mut c = Raw::connect(server.smtp);
        c.send(b"EHLO bdat.test\r\nMAIL FROM:<b@example.com>\r\nRCPT TO:<archive@vault.example>\r\n");
        for _ in 0..3 {
            c.reply();
        }
        let mut w = format!("BDAT {size}\r\n0123456789").into_bytes();
        w.extend_from_slice(smuggled);
        c.send(&w);
        let reply = c.reply();
        assert!(reply.starts_with(expect), "BDAT {size:?} → {reply:?}");
        assert!(c.closed(), "BDAT {size:?}: the session ends after the reply");
    }
    // A chunk that fits still works, on a session of its own.
    let mut c = Raw::connect(server.smtp);
    c.send(b"EHLO bdat.test\r\nMAIL FROM:<b@example.com>\r\nRCPT TO:<archive@vault.example>\r\nBDAT 10 LAST\r\n0123456789");
    for _ in 0..3 {
        c.reply();
    }
    let (seq, _) = receipt(&c.reply());
    assert_eq!(server.stop(), Some(0));
    let stored: Vec<u64> = messages(&vault)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        stored,
        [seq],
        "only the well-formed chunk is archived, nothing smuggled"
    );
}

#[test]
fn commands_that_deliver_nothing_end_the_session_after_a_budget() {
    let vault = Vault::new();
    let server = serve_with(&vault, "[intake]\nmax_recipients = 1\n");
    // Before MAIL: NOOPs (and empty lines) forever.
    let mut c = Raw::connect(server.smtp);
    c.send(&b"NOOP\r\n\r\n".repeat(100));
    let mut replies = Vec::new();
    while !c.closed_after_reply(&mut replies) {}
    let last = replies.last().unwrap().clone();
    assert!(last.starts_with("421 4.7.0"), "{last}");
    assert_eq!(replies.len(), 102, "the 101st command is answered, then 421");
    // Inside a transaction: recipients past the limit, forever.
    let mut c = Raw::connect(server.smtp);
    c.send(b"EHLO flood.test\r\nMAIL FROM:<f@example.com>\r\n");
    c.send(&b"RCPT TO:<archive@vault.example>\r\n".repeat(200));
    let mut replies = Vec::new();
    while !c.closed_after_reply(&mut replies) {}
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes[..3], ["250", "250", "250"], "EHLO, MAIL, the first RCPT");
    assert!(codes[3..codes.len() - 1].iter().all(|c| *c == "452"), "{codes:?}");
    assert!(replies.last().unwrap().starts_with("421 4.7.0"), "{replies:?}");
    assert_eq!(server.stop(), Some(0));
}
