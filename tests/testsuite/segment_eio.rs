//! A sealed segment the disk cannot read in part (EIO from lossyfs, like a bad sector in the
//! middle of one message): that message fails with an error naming the segment file and the
//! record's offset (`mailvault show` exits non-zero, IMAP FETCH answers NO [SERVERBUG] and
//! the server log names both), and everything else goes on: the other messages of the same
//! segment, other sessions, and intake.

use std::path::Path;

use base64::Engine;

use crate::intake::lmtp_send;
use crate::lossyfs::StoreDisk;
use crate::util::{frames, incompressible_message, python_json};

const PASSWORD: &[u8] = b"correct horse battery\n";

/// Fetches each UID of argv[2] (comma-separated) in one session, then NOOP in it, then the
/// first UID again in a second session. One JSON object per step; bodies in base64.
const CLIENT: &str = r#"
import base64, imaplib, json, ssl, sys
port, uids = int(sys.argv[1]), sys.argv[2].split(",")
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE

def session():
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=tls)
    m.login("erika", "correct horse battery")
    m.select("INBOX", readonly=True)
    return m

def fetch(m, uid, step):
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
    body = [d[1] for d in data if isinstance(d, tuple)]
    print(json.dumps(dict(step=step, uid=int(uid), typ=typ,
                          body=base64.b64encode(body[0]).decode() if body else None,
                          text=str(data[-1]))), flush=True)

a = session()
for uid in uids:
    fetch(a, uid, "fetch")
typ, _ = a.noop()
print(json.dumps(dict(step="noop", typ=typ)), flush=True)
fetch(session(), uids[0], "other-session")
a.logout()
"#;

fn message(subject: &str, noise: usize) -> Vec<u8> {
    let mut m = b"From: max@example.org\r\nTo: erika@example.com\r\n".to_vec();
    if noise > 0 {
        m.extend(incompressible_message(subject, noise));
    } else {
        m.extend(format!("Subject: {subject}\r\n\r\nshort\r\n").into_bytes());
    }
    m
}

struct Step {
    typ: String,
    body: Option<Vec<u8>>,
    text: String,
}

fn fetches(server: &crate::util::Server, uids: &[u64]) -> Vec<(String, u64, Step)> {
    let list: Vec<String> = uids.iter().map(u64::to_string).collect();
    python_json(CLIENT, &[server.imaps.port().to_string(), list.join(",")])
        .into_iter()
        .map(|v| {
            let body = v["body"]
                .as_str()
                .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap());
            (
                v["step"].as_str().unwrap().to_string(),
                v["uid"].as_u64().unwrap_or(0),
                Step {
                    typ: v["typ"].as_str().unwrap().to_string(),
                    body,
                    text: v["text"].as_str().unwrap_or_default().to_string(),
                },
            )
        })
        .collect()
}

#[test]
fn an_unreadable_range_of_a_sealed_segment_fails_its_message_only() {
    let on = StoreDisk::new("mailvault-eio");
    let (disk, on_image) = (&on.disk, &on.on_image);
    let config = on.small_segments.as_str();
    on_image.ok_in(
        &["user", "add", "erika", "--address", "erika@example.com"],
        Some(PASSWORD),
    );

    // Two small and two large messages, then one more: the first segment reaches its size
    // limit, so the fifth starts a new one and the first is sealed.
    let sent: Vec<Vec<u8>> = vec![
        message("first", 0),
        message("large", 600_000),
        message("third", 0),
        message("fourth", 600_000),
        message("fifth", 0),
    ];
    let vault = &on.vault;
    let mounted = on.mount();
    let server = vault.serve(&["--config", config]);
    let seqs: Vec<u64> = sent
        .iter()
        .map(|m| lmtp_send(server.lmtp, m).expect("archived").0)
        .collect();
    assert_eq!(server.stop(), Some(0));
    mounted.unmount();

    let log = disk.image().join("data/log");
    let mut segments: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let sealed = segments[0].clone();
    let name = sealed.file_name().unwrap().to_str().unwrap().to_string();
    assert!(segments.len() >= 2, "{segments:?}");
    let bytes = std::fs::read(&sealed).unwrap();
    let located = frames(&bytes);
    // Record seq n is frame n - 1 of the first segment.
    let (offset, len) = located[(seqs[1] - 1) as usize];
    // One page in the middle of the large message's frame.
    let bad = ((offset + len / 2) & !4095) as u64;
    assert!(bad > offset as u64 && bad + 4096 < (offset + len) as u64);

    let mounted = on.mount();
    mounted.fail_reads(&Path::new("data/log").join(&name), bad..bad + 4096);
    let server = vault.serve(&["--config", config]);

    // IMAP: the damaged message is NO [SERVERBUG], the others of its segment are exact, the
    // session goes on, another session reads.
    let steps = fetches(&server, &seqs[..4]);
    for (step, uid, s) in &steps {
        match step.as_str() {
            "fetch" if *uid == seqs[1] => {
                assert_eq!(s.typ, "NO", "{}", s.text);
                assert!(s.text.contains("[SERVERBUG]"), "{}", s.text);
            }
            "fetch" | "other-session" => {
                let i = seqs.iter().position(|q| q == uid).unwrap();
                assert_eq!(s.typ, "OK", "uid {uid}: {}", s.text);
                assert!(s.body.as_deref() == Some(&sent[i][..]), "uid {uid} differs");
            }
            "noop" => assert_eq!(s.typ, "OK"),
            other => panic!("{other}"),
        }
    }
    assert_eq!(steps.len(), 6, "every step answered");
    let server_log = server.log.lock().unwrap().clone();
    let named = format!("{name} at offset {offset} cannot be read");
    assert!(
        server_log.contains(&named),
        "the server log names {named}: {server_log}"
    );

    // The command line: the damaged message names segment and offset, the others show.
    let shown = vault.run(&["show", &seqs[1].to_string()]);
    let stderr = String::from_utf8_lossy(&shown.stderr);
    assert!(!shown.status.success());
    assert!(
        stderr.contains(&format!("record seq {} in ", seqs[1])) && stderr.contains(&named),
        "{stderr}"
    );
    assert!(stderr.contains("Input/output error"), "{stderr}");
    for i in [0, 2, 3] {
        assert!(
            vault.ok(&["show", &seqs[i].to_string()]) == sent[i],
            "show {}",
            seqs[i]
        );
    }

    // Intake goes on, and what it takes is read back.
    let later = message("after the damage", 0);
    let (seq, _) = lmtp_send(server.lmtp, &later).expect("250 after the damage");
    let steps = fetches(&server, &[seq]);
    assert_eq!(steps[0].2.typ, "OK", "{}", steps[0].2.text);
    assert!(steps[0].2.body.as_deref() == Some(&later[..]));
    assert!(mounted.stats().failed_reads > 0);
    assert_eq!(server.stop(), Some(0));
    mounted.unmount();
}
