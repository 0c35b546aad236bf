//! Journal intake over real sockets with real clients (Python's smtplib, raw pipelined
//! sockets, swaks): envelopes stored exactly, receipts that match the log, proper codes for
//! bad input, STARTTLS, AUTH, journaling styles, storage failure, and crash safety.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::util::{fixtures, incompressible_message, python_json, Vault};

/// Parses `archived seq=N blake3=H` out of a reply.
pub(crate) fn receipt(reply: &str) -> (u64, String) {
    let rest = reply
        .split("archived seq=")
        .nth(1)
        .unwrap_or_else(|| panic!("no receipt in {reply:?}"));
    let (seq, hash) = rest.split_once(" blake3=").unwrap();
    (seq.parse().unwrap(), hash.trim().to_string())
}

pub(crate) fn record(vault: &Vault, seq: u64) -> serde_json::Value {
    vault.records().into_iter().find(|r| r["seq"] == seq).unwrap()
}

const SMTPLIB: &str = r#"
import json, smtplib, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
out = lambda **kw: print(json.dumps(kw))
s = smtplib.SMTP(host, port, local_hostname="relay.test")
code, caps = s.ehlo()
out(step="ehlo", code=code, text=caps.decode())
s.mail("sender@example.com", ["BODY=8BITMIME"])
s.rcpt("archive@vault.example")
s.rcpt("second@vault.example", ["NOTIFY=NEVER"])
msg = b"From: sender@example.com\r\nSubject: plain\r\n\r\n.leading dot line\r\nbody\r\n"
code, text = s.data(msg)
out(step="plain", code=code, text=text.decode())
s.mail("j\u00f6rg@ex\u00e4mple.com", ["SMTPUTF8", "BODY=8BITMIME"])
s.rcpt("archive@vault.example")
code, text = s.data("Subject: caf\u00e9\r\n\r\n8-bit \u00fc\u00df\r\n".encode())
out(step="utf8", code=code, text=text.decode())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx)
s.ehlo("relay.test")
s.mail("tls@example.com")
s.rcpt("archive@vault.example")
code, text = s.data(b"Subject: over TLS\r\n\r\nsecret\r\n")
out(step="tls", code=code, text=text.decode())
s.quit()
"#;

#[test]
fn smtplib_plain_8bit_smtputf8_and_starttls_are_archived_with_their_envelopes() {
    let vault = Vault::new();
    let server = vault.serve(&[]);
    let steps = python_json(SMTPLIB, &["127.0.0.1".into(), server.smtp.port().to_string()]);
    let caps = steps[0]["text"].as_str().unwrap();
    for cap in [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "SIZE 52428800",
        "CHUNKING",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ] {
        assert!(caps.contains(cap), "EHLO lacks {cap}: {caps}");
    }
    let mut seen = Vec::new();
    for step in &steps[1..] {
        assert_eq!(step["code"], 250, "{step}");
        seen.push(receipt(step["text"].as_str().unwrap()));
    }
    // SIGTERM: a clean stop that ends the log with a signed checkpoint.
    let log = server.log.clone();
    assert_eq!(server.stop(), Some(0));
    assert!(
        log.lock().unwrap().contains("checkpoint written"),
        "{}",
        log.lock().unwrap()
    );
    assert_eq!(vault.records().last().unwrap()["kind"], "checkpoint");

    let (seq, hash) = &seen[0];
    let r = record(&vault, *seq);
    assert_eq!(r["blake3"].as_str().unwrap(), hash);
    let e = &r["envelope"];
    assert_eq!(e["mail_from"], "sender@example.com");
    assert_eq!(e["mail_params"], "BODY=8BITMIME");
    assert_eq!(e["rcpt_to"][0]["address"], "archive@vault.example");
    assert_eq!(e["rcpt_to"][1]["address"], "second@vault.example");
    assert_eq!(e["rcpt_to"][1]["params"], "NOTIFY=NEVER");
    assert_eq!(e["helo"], "relay.test");
    assert_eq!(e["protocol"], "ESMTP");
    assert_eq!(e["tls"], "");
    assert!(e["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    // Dot-stuffing undone: the stored bytes are the message as written.
    assert_eq!(
        vault.ok(&["show", &seq.to_string()]),
        b"From: sender@example.com\r\nSubject: plain\r\n\r\n.leading dot line\r\nbody\r\n"
    );

    let (seq, _) = &seen[1];
    let r = record(&vault, *seq);
    assert_eq!(r["envelope"]["mail_from"], "jörg@exämple.com");
    assert!(r["envelope"]["mail_params"]
        .as_str()
        .unwrap()
        .contains("SMTPUTF8"));
    assert_eq!(
        vault.ok(&["show", &seq.to_string()]),
        "Subject: café\r\n\r\n8-bit üß\r\n".as_bytes()
    );

    let (seq, _) = &seen[2];
    let r = record(&vault, *seq);
    assert_eq!(r["envelope"]["protocol"], "ESMTPS");
    assert!(
        r["envelope"]["tls"].as_str().unwrap().starts_with("TLSv1."),
        "{r}"
    );
    assert_eq!(vault.verify(&[]).0, 0);
}

/// A raw client: write bytes, read reply lines.
pub(crate) struct Raw {
    reader: BufReader<TcpStream>,
    pub(crate) writer: TcpStream,
}

impl Raw {
    pub(crate) fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut raw = Raw {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        assert!(raw.line().starts_with("220 "));
        raw
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    pub(crate) fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l
    }

    /// Whether the server closed the connection (end of stream, or a reset because it left
    /// input unread).
    pub(crate) fn closed(&mut self) -> bool {
        let mut l = String::new();
        matches!(self.reader.read_line(&mut l), Ok(0) | Err(_))
    }

    /// Reads one reply into `replies`; true once the server closed the connection instead.
    pub(crate) fn closed_after_reply(&mut self, replies: &mut Vec<String>) -> bool {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if matches!(self.reader.read_line(&mut l), Ok(0) | Err(_)) {
                return true;
            }
            all.push_str(&l);
            if l.len() < 4 || l.as_bytes()[3] == b' ' {
                replies.push(all);
                return false;
            }
        }
    }

    /// One complete (possibly multi-line) reply.
    pub(crate) fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let l = self.line();
            assert!(l.len() >= 4, "short reply {l:?}");
            all.push_str(&l);
            if l.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }
}

#[test]
fn pipelining_bdat_and_lmtp_per_recipient_replies() {
    let vault = Vault::new();
    let server = vault.serve(&[]);
    let mut c = Raw::connect(server.smtp);
    // Everything up to DATA in one write (PIPELINING).
    c.send(b"EHLO pipe.test\r\nMAIL FROM:<p@example.com>\r\nRCPT TO:<a@vault.example>\r\nRCPT TO:<b@vault.example>\r\nDATA\r\n");
    assert!(c.reply().contains("PIPELINING"));
    assert!(c.reply().starts_with("250 2.1.0"));
    assert!(c.reply().starts_with("250 2.1.5"));
    assert!(c.reply().starts_with("250 2.1.5"));
    assert!(c.reply().starts_with("354"));
    c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n");
    let (seq1, _) = receipt(&c.reply());
    // BDAT with binary content, split in two chunks, the last chunk pipelined with MAIL.
    let body = b"Subject: bdat\r\n\r\n\x00\x01binary\r\n.\r\nnot the end\r\n";
    let (a, b) = body.split_at(20);
    let mut w = format!(
        "MAIL FROM:<q@example.com>\r\nRCPT TO:<c@vault.example>\r\nBDAT {}\r\n",
        a.len()
    )
    .into_bytes();
    w.extend_from_slice(a);
    w.extend_from_slice(format!("BDAT {} LAST\r\n", b.len()).as_bytes());
    w.extend_from_slice(b);
    c.send(&w);
    assert!(c.reply().starts_with("250 2.1.0"));
    assert!(c.reply().starts_with("250 2.1.5"));
    assert!(c.reply().starts_with("250 2.0.0 20 octets"));
    let (seq2, _) = receipt(&c.reply());
    c.send(b"QUIT\r\n");
    assert!(c.reply().starts_with("221"));

    // LMTP: one reply per recipient after the data.
    let mut l = Raw::connect(server.lmtp);
    l.send(b"LHLO lmtp.test\r\nMAIL FROM:<l@example.com>\r\nRCPT TO:<x@vault.example>\r\nRCPT TO:<y@vault.example>\r\nRCPT TO:<z@vault.example>\r\nDATA\r\n");
    assert!(l.reply().starts_with("250"));
    for _ in 0..4 {
        assert!(l.reply().starts_with("250"));
    }
    assert!(l.reply().starts_with("354"));
    l.send(b"Subject: lmtp\r\n\r\nthree recipients\r\n.\r\n");
    let replies: Vec<(u64, String)> = (0..3).map(|_| receipt(&l.reply())).collect();
    assert!(
        replies.windows(2).all(|w| w[0] == w[1]),
        "one record, one receipt per recipient"
    );
    l.send(b"EHLO wrong\r\n");
    assert!(l.reply().starts_with("500 5.5.1"));
    drop(l);
    assert_eq!(server.stop(), Some(0));

    assert_eq!(
        vault.ok(&["show", &seq1.to_string()]),
        b"Subject: pipelined\r\n\r\nbody\r\n"
    );
    assert_eq!(vault.ok(&["show", &seq2.to_string()]), body);
    let r = record(&vault, replies[0].0);
    assert_eq!(r["envelope"]["protocol"], "LMTP");
    assert_eq!(r["envelope"]["rcpt_to"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_input_gets_proper_codes_and_the_session_survives() {
    let vault = Vault::new();
    let config = vault.dir.with_file_name("small.toml");
    std::fs::write(
        &config,
        "[intake]\nmax_message_size = 4096\nmax_recipients = 2\naccept = [\"archive@vault.example\"]\n",
    )
    .unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let mut c = Raw::connect(server.smtp);
    let cases: Vec<(&[u8], &str)> = vec![
        (b"MAIL FROM:<a@b>\r\n", "503 5.5.1"),
        (b"EHLO bad.test\r\n", "250"),
        (b"FROBNICATE\r\n", "500 5.5.1"),
        (b"RCPT TO:<x@y>\r\n", "503 5.5.1"),
        (b"DATA\r\n", "503 5.5.1"),
        (b"MAIL FROM:<a@b> SIZE=999999\r\n", "552 5.3.4"),
        (b"MAIL FROM:<a@b>\r\n", "250 2.1.0"),
        (b"MAIL FROM:<a@b>\r\n", "503 5.5.1"),
        (b"RCPT TO:<someone@else.example>\r\n", "550 5.1.1"),
        (
            b"RCPT TO:<archive+alice=example.com@vault.example>\r\n",
            "250 2.1.5",
        ),
        (b"RCPT TO:<archive@vault.example>\r\n", "250 2.1.5"),
        (b"RCPT TO:<archive@vault.example>\r\n", "452 4.5.3"),
        (b"EXPN list\r\n", "502 5.5.1"),
        (b"RSET\r\n", "250 2.0.0"),
        (b"NOOP\r\n", "250 2.0.0"),
    ];
    for (command, expect) in cases {
        c.send(command);
        let reply = c.reply();
        assert!(
            reply.starts_with(expect),
            "{:?} → {reply:?}, expected {expect}",
            String::from_utf8_lossy(command)
        );
    }
    let mut long = vec![b'X'; 5000];
    long.extend_from_slice(b"\r\n");
    c.send(&long);
    assert!(c.reply().starts_with("500 5.5.2"));
    // A message over the size limit is read to its end and refused; nothing is stored.
    c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<archive@vault.example>\r\nDATA\r\n");
    for _ in 0..3 {
        c.reply();
    }
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    big.extend_from_slice(b"\r\n.\r\n");
    c.send(&big);
    let reply = c.reply();
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    c.send(b"NOOP\r\n");
    assert!(c.reply().starts_with("250"), "the session survives");
    drop(c);
    assert_eq!(server.stop(), Some(0));
    let messages = vault.records().iter().filter(|r| r["kind"] == "message").count();
    assert_eq!(messages, 0, "nothing was archived");
}

#[test]
fn swaks_delivers_over_smtp_and_lmtp_with_starttls() {
    let vault = Vault::new();
    let server = vault.serve(&[]);
    for (args, proto) in [
        (vec!["--server", &server.smtp.to_string(), "-tls"], "ESMTPS"),
        (
            vec!["--server", &server.lmtp.to_string(), "--protocol", "LMTP"],
            "LMTP",
        ),
    ] {
        let out = std::process::Command::new("swaks")
            .args([
                "--to",
                "archive@vault.example",
                "--from",
                "swaks@example.com",
                "--helo",
                "swaks.test",
            ])
            .args(["--header", "Subject: via swaks"])
            .args(&args)
            .output()
            .expect("swaks is installed (.ci/run installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        let (seq, hash) = receipt(text.lines().find(|l| l.contains("archived seq=")).unwrap());
        let r = record(&vault, seq);
        assert_eq!(r["blake3"].as_str().unwrap(), hash);
        assert_eq!(r["envelope"]["protocol"], proto);
        assert_eq!(r["envelope"]["helo"], "swaks.test");
    }
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn journaling_styles_recipient_encoded_and_exchange_reports() {
    let vault = Vault::new();
    // Both styles from the one client, told apart by the journal sender (first match wins).
    let config = vault.dir.with_file_name("sources.toml");
    std::fs::write(
        &config,
        r#"
[[intake.journal_source]]
style = "exchange"
listener = "smtp"
clients = ["127.0.0.1/32"]
mail_from = ["journal@contoso.example"]

[[intake.journal_source]]
style = "recipient-encoded"
clients = ["127.0.0.1/32"]
"#,
    )
    .unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    let mut c = Raw::connect(server.smtp);
    c.send(b"EHLO postfix.test\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<archive+bob=example.org@vault.example>\r\nRCPT TO:<archive+carol=example.net@vault.example>\r\nRCPT TO:<archive+alice=example.com@vault.example>\r\nDATA\r\n");
    for _ in 0..6 {
        c.reply();
    }
    c.send(b"From: alice@example.com\r\nTo: bob@example.org\r\nSubject: encoded\r\n\r\nhi\r\n.\r\n");
    let (encoded, _) = receipt(&c.reply());
    let report = std::fs::read(fixtures().join("journal/exchange-journal-report.eml")).unwrap();
    c.send(b"MAIL FROM:<journal@contoso.example>\r\nRCPT TO:<archive@vault.example>\r\nDATA\r\n");
    for _ in 0..3 {
        c.reply();
    }
    let mut stuffed = Vec::new();
    for line in report.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    stuffed.extend_from_slice(b".\r\n");
    c.send(&stuffed);
    let (original, hash) = receipt(&c.reply());
    drop(c);
    assert_eq!(server.stop(), Some(0));

    let e = &record(&vault, encoded)["envelope"];
    let decoded: Vec<&str> = e["original_recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        decoded,
        ["bob@example.org", "carol@example.net", "alice@example.com"]
    );

    // The original message is archived byte-exact with the report's envelope; the report
    // is archived too.
    let r = record(&vault, original);
    assert_eq!(r["blake3"].as_str().unwrap(), hash);
    let e = &r["envelope"];
    assert_eq!(e["mail_from"], "dan@contoso.example");
    let recipients: Vec<&str> = e["original_recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        recipients,
        [
            "erin@contoso.example",
            "frank@fabrikam.example",
            "grace@contoso.example"
        ]
    );
    let expected = std::fs::read(fixtures().join("journal/exchange-journal-original.eml")).unwrap();
    assert!(
        vault.ok(&["show", &original.to_string()]) == expected,
        "original differs"
    );
    // The source names the report's record (before the original, with the checkpoint of
    // the report's commit between them).
    let source = e["source"].as_str().unwrap();
    let report_seq: u64 = source
        .split("seq=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no report seq in {source:?}"));
    assert!(report_seq < original);
    assert!(
        vault.ok(&["show", &report_seq.to_string()]) == report,
        "the report is kept as received"
    );
}

/// Sends one message over LMTP on a fresh connection; the receipt, or `None` when the
/// server gave no 250 (it died, or refused).
pub(crate) fn lmtp_send(addr: SocketAddr, body: &[u8]) -> Option<(u64, String)> {
    lmtp_deliver(TcpStream::connect(addr).ok()?, body)
}

/// [`lmtp_send`] on a connection already made.
pub(crate) fn lmtp_deliver(s: TcpStream, body: &[u8]) -> Option<(u64, String)> {
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut reader = BufReader::new(s.try_clone().ok()?);
    let mut w = s;
    let mut line = String::new();
    let mut expect = |reader: &mut BufReader<TcpStream>, code: &str| -> Option<String> {
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                return line.starts_with(code).then(|| line.clone());
            }
        }
    };
    expect(&mut reader, "220")?;
    let mut out =
        b"LHLO crash.test\r\nMAIL FROM:<c@example.com>\r\nRCPT TO:<archive@vault.example>\r\nDATA\r\n"
            .to_vec();
    w.write_all(&out).ok()?;
    for code in ["250", "250", "250", "354"] {
        expect(&mut reader, code)?;
    }
    out.clear();
    out.extend_from_slice(body);
    out.extend_from_slice(b".\r\n");
    w.write_all(&out).ok()?;
    let reply = expect(&mut reader, "250")?;
    let _ = w.write_all(b"QUIT\r\n");
    Some(receipt(&reply))
}

fn crash_body(cycle: usize, sender: usize, n: usize) -> Vec<u8> {
    format!(
        "Subject: crash {cycle}/{sender}/{n}\r\n\r\n{}\r\n",
        "y".repeat(n % 40 * 50)
    )
    .into_bytes()
}

#[test]
fn kill9_of_the_server_loses_no_acknowledged_message_and_resends_are_stored_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let vault = Vault::new();
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let unanswered: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    for cycle in 0..10 {
        let server = vault.serve(&[]);
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..8)
            .map(|sender| {
                let (stop, acked, unanswered) = (stop.clone(), acked.clone(), unanswered.clone());
                let addr = server.lmtp;
                std::thread::spawn(move || {
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let body = crash_body(cycle, sender, n);
                        match lmtp_send(addr, &body) {
                            Some(r) => acked.lock().unwrap().push(r),
                            None => {
                                unanswered.lock().unwrap().push(body);
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(80 + (cycle as u64 * 37) % 200));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
    }
    // After a restart, the relay re-sends what got no answer.
    let server = vault.serve(&[]);
    let resent: Vec<(Vec<u8>, (u64, String))> = unanswered
        .lock()
        .unwrap()
        .iter()
        .map(|b| (b.clone(), lmtp_send(server.lmtp, b).expect("resend accepted")))
        .collect();
    assert_eq!(server.stop(), Some(0));

    let records = vault.records();
    let by_seq = |seq: u64| {
        records
            .iter()
            .find(|r| r["seq"] == seq)
            .unwrap_or_else(|| panic!("seq {seq} lost"))
    };
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 30,
        "only {} messages were acknowledged",
        acked.len()
    );
    for (seq, hash) in acked.iter() {
        assert_eq!(by_seq(*seq)["blake3"].as_str().unwrap(), hash, "seq {seq}");
    }
    for (body, (seq, hash)) in &resent {
        assert_eq!(by_seq(*seq)["blake3"].as_str().unwrap(), hash);
        let copies = records
            .iter()
            .filter(|r| r["kind"] == "message" && r["blake3"] == hash.as_str())
            .count();
        assert_eq!(
            copies,
            1,
            "bytes stored once: {}",
            String::from_utf8_lossy(&body[..20])
        );
    }
    assert_eq!(vault.verify(&[]).0, 0);
}

#[test]
fn a_storage_failure_answers_451_and_leaves_nothing_half_written() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    // Files may not grow past 1 MiB: writing a larger record fails (EFBIG) like a full disk.
    let limit = ["bash", "-c", "trap '' XFSZ; ulimit -f 1024; exec \"$@\"", "bash"];
    let server = vault.serve_via(&limit, &[]);
    let small = b"Subject: fits\r\n\r\nsmall\r\n".to_vec();
    let (first, _) = lmtp_send(server.lmtp, &small).expect("a small message is archived");
    let big = incompressible_message("too big for the disk", 1_800_000);
    let mut c = Raw::connect(server.lmtp);
    c.send(b"LHLO full.test\r\nMAIL FROM:<f@example.com>\r\nRCPT TO:<archive@vault.example>\r\nDATA\r\n");
    for _ in 0..4 {
        c.reply();
    }
    c.send(&big);
    c.send(b".\r\n");
    let reply = c.reply();
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    drop(c);
    assert_eq!(server.stop(), Some(0));
    let (code, out) = vault.verify(&[]);
    assert_eq!(code, 0, "{out}");
    let messages: Vec<u64> = vault
        .records()
        .iter()
        .filter(|r| r["kind"] == "message")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(messages, vec![first], "only the small message is stored");
}

#[test]
fn a_bad_configuration_is_one_line_naming_the_key() {
    let vault = Vault::new();
    let config = vault.dir.with_file_name("bad.toml");
    std::fs::write(&config, "[intake]\nmax_recipients = \"lots\"\n").unwrap();
    let out = vault.run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_recipients"), "{err}");
    // The relay accounts of older versions name their replacement.
    std::fs::write(
        &config,
        "[[intake.auth_users]]\nname = \"relay1\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$x$y\"\n",
    )
    .unwrap();
    let out = vault.run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("intake.auth_users") && err.contains("intake.relay_users"),
        "{err}"
    );
    std::fs::write(&config, "[store]\nzstd_level = 99\n").unwrap();
    let out = vault.run(&["serve", "--config", config.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("store.zstd_level"));
    assert!(!vault.dir.join("store.json").exists(), "nothing was created");
    let example = vault.ok(&["config", "example"]);
    std::fs::write(&config, example).unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    assert_eq!(
        server.stop(),
        Some(0),
        "the printed example is a working configuration"
    );
}
