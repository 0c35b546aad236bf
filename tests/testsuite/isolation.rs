//! The isolation matrix, end to end: users and auditors of the real `mailvault serve` probe,
//! over IMAPS, every command that takes a mailbox, a sequence set or a UID against mail they
//! may not see (`isolation_client.py` holds the matrix). An answer about another user's
//! message must be indistinguishable from one about a UID that holds nothing.

use std::collections::HashMap;

use crate::util::{python, Vault};

const PASSWORD: &[u8] = b"correct horse battery\n";

/// Delivers the matrix's mail over SMTP: (envelope sender, recipient, raw).
const DELIVER: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
mail = [
    ("carol@z.example", "alice@x.example",
     b"From: carol@z.example\r\nTo: alice@x.example\r\nSubject: alpha one\r\n"
     b"Message-ID: <a1@x.example>\r\n\r\nappleorchard\r\n"),
    ("dave@z.example", "bob@y.example",
     b"From: dave@z.example\r\nTo: bob@y.example\r\nSubject: secret zebrafinch\r\n"
     b"Message-ID: <b1@y.example>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
     b"--b\r\nContent-Type: text/plain\r\n\r\nzebrafinch\r\n--b\r\n"
     b"Content-Type: application/octet-stream\r\n\r\n" + b"z" * 200000 + b"\r\n--b--\r\n"),
    ("gina@z.example", "carol@z.example",
     b"From: gina@z.example\r\nTo: carol@z.example\r\nSubject: zebrafinch for carol\r\n\r\n"
     b"zebrafinch appleorchard\r\n"),
    ("alice@x.example", "erin@z.example",
     b"From: alice@x.example\r\nTo: erin@z.example\r\nSubject: alpha two\r\n"
     b"\r\nhello\r\n"),
    ("bob@y.example", "frank@z.example",
     b"From: bob@y.example\r\nTo: frank@z.example\r\nSubject: zebrafinch sent\r\n\r\n"
     b"zebrafinch\r\n"),
    ("carol@z.example", "alice@x.example",
     b"From: carol@z.example\r\nTo: alice@x.example\r\nSubject: alpha three\r\n\r\nthree\r\n"),
]
for sender, rcpt, raw in mail:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.sendmail(sender, [rcpt], raw)
"#;

fn add_user(vault: &Vault, args: &[&str]) {
    let mut full = vec!["user", "add"];
    full.extend_from_slice(args);
    let out = vault.run_in(&full, Some(PASSWORD));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn no_command_tells_another_users_or_domains_mail_from_nothing() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    add_user(&vault, &["alice", "--address", "alice@x.example"]);
    add_user(&vault, &["bob", "--address", "bob@y.example"]);
    add_user(&vault, &["audit-x", "--role", "auditor", "--domain", "x.example"]);
    add_user(&vault, &["audit-y", "--role", "auditor", "--domain", "y.example"]);
    let server = vault.serve(&[]);
    python(DELIVER, &[server.smtp.port().to_string()]);

    // The seq (= IMAP UID) of each message, by envelope sender, in delivery order.
    let mut by_sender: HashMap<String, Vec<u64>> = HashMap::new();
    for record in vault.records() {
        if record["kind"] == "message" {
            by_sender
                .entry(record["sender"].as_str().unwrap().to_string())
                .or_default()
                .push(record["seq"].as_u64().unwrap());
        }
    }
    let carol = &by_sender["carol@z.example"];
    let uids = serde_json::json!({
        "alice_inbox": carol,
        "alice_sent": by_sender["alice@x.example"],
        "bob": [by_sender["dave@z.example"][0], by_sender["bob@y.example"][0]],
        "other": by_sender["gina@z.example"],
        "future": carol[1] + 1000,
    });
    assert_eq!(carol.len(), 2, "{by_sender:?}");

    let out = python(
        include_str!("isolation_client.py"),
        &[
            server.smtp.port().to_string(),
            server.imaps.port().to_string(),
            uids.to_string(),
        ],
    );
    assert!(out.contains(r#"{"done": true}"#), "{out}");
    assert_eq!(server.stop(), Some(0));
}
