//! Real IMAP clients sync the archive (issue #14): mbsync, offlineimap, mutt, getmail, curl
//! and Python's imaplib each copy a user's INBOX and an auditor's `Archive` — a short note
//! and MIME messages of about 70 KB, 1 MB and 20 MB with an attachment of incompressible
//! bytes — over IMAPS and over STARTTLS on the plain port, configured as a user would (the
//! client's defaults, the archive's certificate trusted, one folder named). Every copy is
//! compared byte for byte with `mailvault show`, allowing only what the client documents
//! adding; a client that does not complete its sync fails its test. Afterwards the log holds
//! nothing but the messages, access records and checkpoints, and verifies.
//!
//! One test per client (they run in parallel), each with its own store and server; the mail
//! is generated once per test run. The clients come from apt (.ci/run installs them).

mod curl;
mod getmail;
mod imaplib;
mod mbsync;
mod mutt;
mod offlineimap;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::{python, Server, Vault};

/// Every account's password.
pub(crate) const PASSWORD: &str = "correct horse battery";

/// A client that has not finished by then hangs (waiting for input, say): it is killed and
/// its test fails. Not a performance bound: a sync takes seconds.
const HANG: Duration = Duration::from_secs(600);

/// How a client reaches the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Implicit TLS (the IMAPS port).
    Imaps,
    /// STARTTLS on the plain port, which refuses LOGIN before it.
    Starttls,
}

/// A message as the archive stores it (`mailvault show`).
#[derive(Clone)]
pub(crate) struct Stored {
    pub uid: u64,
    pub raw: Vec<u8>,
}

/// A mailbox a client syncs: whose, its name, and the messages it must hold.
#[derive(Clone, Copy)]
pub(crate) struct Mailbox<'a> {
    pub user: &'static str,
    pub name: &'static str,
    pub messages: &'a [Stored],
}

impl<'a> Mailbox<'a> {
    /// Every message of the mailbox.
    pub fn all(&self) -> Vec<&'a Stored> {
        self.messages.iter().collect()
    }
}

/// A store with a user (erika@example.com) and an auditor of example.com (postmaster), the
/// mail of [`mail`] delivered over SMTP, and `mailvault serve` on free ports.
pub(crate) struct Fixture {
    pub vault: Vault,
    server: Option<Server>,
    work: tempfile::TempDir,
    inbox: Vec<Stored>,
    archive: Vec<Stored>,
    /// Messages delivered after the fixture's mail.
    later: usize,
}

impl Fixture {
    pub fn new(client: &str) -> Fixture {
        use std::os::unix::fs::PermissionsExt;
        let vault = Vault::new();
        vault.ok(&["init"]);
        for args in [
            &["erika", "--address", "erika@example.com"][..],
            &["hans", "--address", "hans@example.de"],
            &["postmaster", "--role", "auditor", "--domain", "example.com"],
        ] {
            let added = vault.run_in(&[&["user", "add"][..], args].concat(), Some(PASSWORD.as_bytes()));
            assert!(
                added.status.success(),
                "{}",
                String::from_utf8_lossy(&added.stderr)
            );
        }
        let server = vault.serve(&[]);
        let work = tempfile::Builder::new()
            .prefix(&format!("clients-{client}"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        // getmail delivers as an unprivileged user when run as root (getmail.rs).
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(work.path().join("home")).unwrap();

        let outgoing = work.path().join("outgoing");
        std::fs::create_dir(&outgoing).unwrap();
        let mut args = vec![server.smtp.port().to_string()];
        for (n, (from, to, raw)) in mail().iter().enumerate() {
            let path = outgoing.join(format!("{n}.eml"));
            std::fs::write(&path, raw).unwrap();
            args.push(format!("{from},{to},{}", path.display()));
        }
        python(DELIVER, &args);
        std::fs::remove_dir_all(&outgoing).unwrap();

        let seqs: Vec<u64> = vault
            .records()
            .iter()
            .filter(|r| r["kind"] == "message")
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs.len(), mail().len());
        let stored = |seqs: &[u64]| -> Vec<Stored> {
            seqs.iter()
                .map(|&uid| Stored {
                    uid,
                    raw: vault.ok(&["show", &uid.to_string()]),
                })
                .collect()
        };
        // Erika's INBOX: what was sent to her. The auditor's Archive: everything that
        // concerns example.com, so her sent note too; Hans's mail from outside in neither.
        let archive = stored(&seqs[..5]);
        let inbox = archive[..4].to_vec();
        Fixture {
            vault,
            server: Some(server),
            work,
            inbox,
            archive,
            later: 0,
        }
    }

    /// Delivers a short message to Erika, which joins her INBOX and the Archive.
    pub fn deliver_to_erika(&mut self, subject: &str) {
        let path = self.work.path().join("later.eml");
        let raw =
            format!("From: max@example.org\r\nTo: erika@example.com\r\nSubject: {subject}\r\n\r\nNeu.\r\n");
        std::fs::write(&path, raw).unwrap();
        let sender = format!("max@example.org,erika@example.com,{}", path.display());
        python(DELIVER, &[self.server().smtp.port().to_string(), sender]);
        self.later += 1;
        let newest = self
            .vault
            .records()
            .iter()
            .filter(|r| r["kind"] == "message")
            .map(|r| r["seq"].as_u64().unwrap())
            .max()
            .unwrap();
        for mailbox in [&mut self.inbox, &mut self.archive] {
            mailbox.push(Stored {
                uid: newest,
                raw: self.vault.ok(&["show", &newest.to_string()]),
            });
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    /// The port for `transport`.
    pub fn port(&self, transport: Transport) -> u16 {
        match transport {
            Transport::Imaps => self.server().imaps.port(),
            Transport::Starttls => self.server().imap.port(),
        }
    }

    /// The server's certificate (self-signed, for `localhost`), which clients are told to
    /// trust.
    pub fn certificate(&self) -> PathBuf {
        self.vault.dir.join("tls/imap-cert.pem")
    }

    /// A new directory for one client run.
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Erika's INBOX and the auditor's Archive, each over both transports.
    pub fn syncs(&self) -> Vec<(Mailbox<'_>, Transport)> {
        let inbox = Mailbox {
            user: "erika",
            name: "INBOX",
            messages: &self.inbox,
        };
        let archive = Mailbox {
            user: "postmaster",
            name: "Archive",
            messages: &self.archive,
        };
        let mut out = Vec::new();
        for mailbox in [inbox, archive] {
            for transport in [Transport::Imaps, Transport::Starttls] {
                out.push((mailbox, transport));
            }
        }
        out
    }

    /// `program` with HOME in the work dir, so that no configuration of the machine's user
    /// is read.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("HOME", self.work.path().join("home"))
            .env_remove("MAIL")
            .env_remove("MAILDIR")
            .env_remove("MUTT");
        cmd
    }

    /// Runs a client to its end (killed after [`HANG`]); requires exit 0 and returns what it
    /// printed, stdout and stderr together.
    pub fn run(&self, what: &str, mut cmd: Command) -> String {
        let log = self.work.path().join("client.log");
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e} (.ci/run installs every client)"));
        let deadline = Instant::now() + HANG;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} hung:\n{}",
                    String::from_utf8_lossy(&std::fs::read(&log).unwrap())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let printed = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
        assert!(status.success(), "{what} failed ({status}):\n{printed}");
        printed
    }

    /// Stops the server and checks that the clients changed nothing: the log holds the
    /// delivered messages, access records and checkpoints only, and verifies.
    pub fn finish(mut self) {
        let server = self.server.take().unwrap();
        assert_eq!(server.stop(), Some(0));
        let records = self.vault.records();
        let kinds = |k: &str| records.iter().filter(|r| r["kind"] == k).count();
        assert_eq!(kinds("message"), mail().len() + self.later);
        assert_eq!(
            kinds("message") + kinds("audit") + kinds("checkpoint"),
            records.len(),
            "only messages, accesses and checkpoints"
        );
        assert_eq!(self.vault.verify(&[]).0, 0);
    }
}

/// Delivers `sender,recipient,path` arguments over one SMTP session (argv[1]: the port).
const DELIVER: &str = r#"
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=300) as s:
    for arg in sys.argv[2:]:
        sender, rcpt, path = arg.split(",", 2)
        with open(path, "rb") as f:
            s.sendmail(sender, [rcpt], f.read())
"#;

/// (envelope sender, recipient, message) of everything the tests deliver, in order: to
/// Erika a note and the 70 KB, 1 MB and 20 MB messages; from Erika a reply to Hans; to Hans
/// a note from outside. Generated once per test run.
pub(crate) fn mail() -> &'static [(&'static str, &'static str, Vec<u8>)] {
    static MAIL: OnceLock<Vec<(&'static str, &'static str, Vec<u8>)>> = OnceLock::new();
    MAIL.get_or_init(|| {
        let (max, erika, hans) = ("max@example.org", "erika@example.com", "hans@example.de");
        let mut mail = vec![(
            max,
            erika,
            b"From: Max Mustermann <max@example.org>\r\nTo: erika@example.com\r\n\
              Subject: Kurz\r\nDate: Mon, 7 Dec 2026 08:59:00 +0100\r\n\
              Message-ID: <kurz@example.org>\r\n\r\nBis morgen.\r\n"
                .to_vec(),
        )];
        for (n, size) in [70_000, 1_000_000, 20_000_000].into_iter().enumerate() {
            mail.push((max, erika, with_attachment(n, size)));
        }
        mail.push((
            erika,
            hans,
            b"From: Erika Mustermann <erika@example.com>\r\nTo: hans@example.de\r\n\
              Subject: Re: Termin\r\nDate: Mon, 7 Dec 2026 10:00:00 +0100\r\n\
              Message-ID: <termin@example.com>\r\n\r\nPasst.\r\n"
                .to_vec(),
        ));
        mail.push((
            max,
            hans,
            b"From: max@example.org\r\nTo: hans@example.de\r\nSubject: Nur fuer Hans\r\n\
              \r\nHallo Hans.\r\n"
                .to_vec(),
        ));
        mail
    })
}

/// A message as mail programs write it, of about `size` bytes: a German text part and a
/// PDF-named attachment of pseudo-random bytes in base64 (incompressible, so the store and
/// the wire carry all of it).
fn with_attachment(n: usize, size: usize) -> Vec<u8> {
    use base64::Engine;
    let boundary = format!("=_teil_{n}_4f2c91");
    let mut message = format!(
        "From: Max Mustermann <max@example.org>\r\n\
         To: Erika Mustermann <erika@example.com>\r\n\
         Subject: Quartalsbericht {n} mit Anhang\r\n\
         Date: Mon, 7 Dec 2026 09:{n:02}:00 +0100\r\n\
         Message-ID: <bericht-{n}@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\
         \r\n\
         This is a multi-part message in MIME format.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         Guten Tag Frau Mustermann,\r\n\
         \r\n\
         anbei der Bericht f=C3=BCr das dritte Quartal.\r\n\
         \r\n\
         Mit freundlichen Gr=C3=BC=C3=9Fen\r\n\
         Max Mustermann\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: application/pdf; name=\"bericht-{n}.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"bericht-{n}.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n"
    )
    .into_bytes();
    let end = format!("\r\n--{boundary}--\r\n");
    // 57 bytes make one line of 76 base64 characters and CRLF.
    let lines = size.saturating_sub(message.len() + end.len()) / 78;
    let mut noise = Vec::with_capacity(lines * 57 + 8);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ n as u64;
    while noise.len() < lines * 57 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    noise.truncate(lines * 57);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&noise);
    for (i, line) in encoded.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            message.extend_from_slice(b"\r\n");
        }
        message.extend_from_slice(line);
    }
    message.extend_from_slice(end.as_bytes());
    message
}

/// Every file directly in `dirs` (a Maildir's `new` and `cur`, say), by name.
pub(crate) fn files_in(dirs: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// The Maildir at `dir`: its `new` and `cur`.
/// The copy in Maildir `folder` whose size is in `sizes` (the test mail has one of each).
pub(crate) fn maildir_copy(what: &str, folder: &Path, sizes: std::ops::Range<u64>) -> PathBuf {
    maildir(folder)
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| sizes.contains(&std::fs::metadata(p).unwrap().len()))
        .unwrap_or_else(|| panic!("{what}: no copy of {sizes:?} bytes"))
}

/// Gives the Maildir copy `from` exactly the flags `flags` (its name's `:2,` part), as a
/// mail client does locally.
pub(crate) fn set_maildir_flags(from: &Path, flags: &str) {
    let name = from.file_name().unwrap().to_string_lossy().into_owned();
    let base = name.split(":2,").next().unwrap();
    std::fs::rename(from, from.with_file_name(format!("{base}:2,{flags}"))).unwrap();
}

/// The copies saved as `dir/<uid>.eml`, named by path, for [`assert_copies`].
pub(crate) fn eml_files(dir: &Path, uids: &[u64]) -> Vec<(String, Vec<u8>)> {
    uids.iter()
        .map(|uid| {
            let path = dir.join(format!("{uid}.eml"));
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect()
}

pub(crate) fn maildir(dir: &Path) -> Vec<PathBuf> {
    vec![dir.join("new"), dir.join("cur")]
}

/// Requires `copies` to be `messages`, each exactly once: each copy after `strip` (which
/// takes away what the client documents adding) equals a stored message after `form` (the
/// client's line ends). `what` names the client, mailbox and transport.
pub(crate) fn assert_copies(
    what: &str,
    copies: &[(String, Vec<u8>)],
    messages: &[&Stored],
    form: impl Fn(&[u8]) -> Vec<u8>,
    strip: impl Fn(&[u8]) -> Vec<u8>,
) {
    let expected: Vec<(u64, Vec<u8>)> = messages.iter().map(|m| (m.uid, form(&m.raw))).collect();
    let mut wanted: HashMap<blake3::Hash, Vec<u64>> = HashMap::new();
    for (uid, bytes) in &expected {
        wanted.entry(blake3::hash(bytes)).or_default().push(*uid);
    }
    let mut strays = Vec::new();
    for (name, copy) in copies {
        let stripped = strip(copy);
        match wanted.get_mut(&blake3::hash(&stripped)).and_then(Vec::pop) {
            Some(_) => {}
            None => strays.push((name, stripped)),
        }
    }
    let missing: Vec<&(u64, Vec<u8>)> = expected
        .iter()
        .filter(|(uid, _)| wanted.values().any(|uids| uids.contains(uid)))
        .collect();
    if missing.is_empty() && strays.is_empty() {
        return;
    }
    let mut report = format!("{what}: {} copies of {} messages\n", copies.len(), expected.len());
    for (uid, bytes) in &missing {
        report += &format!("  UID {uid} ({} bytes) has no exact copy\n", bytes.len());
    }
    for (name, stray) in &strays {
        report += &format!("  {name} ({} bytes, stripped) matches no message", stray.len());
        if let Some((uid, bytes)) = missing.first() {
            let at = stray.iter().zip(bytes.iter()).take_while(|(a, b)| a == b).count();
            let around = |b: &[u8]| {
                String::from_utf8_lossy(&b[at.saturating_sub(40)..(at + 40).min(b.len())]).into_owned()
            };
            report += &format!(
                "; first difference from UID {uid} at byte {at}:\n    copy:   {:?}\n    stored: {:?}",
                around(stray),
                around(bytes)
            );
        }
        report += "\n";
    }
    panic!("{report}");
}

/// The message with CRLF line ends turned into LF, as Maildir and mbox clients store it.
pub(crate) fn crlf_to_lf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, b) in raw.iter().enumerate() {
        if !(*b == b'\r' && raw.get(i + 1) == Some(&b'\n')) {
            out.push(*b);
        }
    }
    out
}

/// The message as sent: nothing to change.
pub(crate) fn exact(raw: &[u8]) -> Vec<u8> {
    raw.to_vec()
}

/// The header block (up to and including the blank line) and the body of an LF message.
pub(crate) fn split_header(copy: &[u8]) -> (&[u8], &[u8]) {
    let end = copy
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(copy.len(), |p| p + 2);
    copy.split_at(end)
}

/// The header fields of an LF header block, each with its continuation lines (the blank
/// line that ends the block is the last).
pub(crate) fn header_fields(head: &[u8]) -> Vec<&[u8]> {
    let mut fields: Vec<&[u8]> = Vec::new();
    let (mut start, mut at) = (0, 0);
    for line in head.split_inclusive(|b| *b == b'\n') {
        if at > 0 && !matches!(line.first(), Some(b' ' | b'\t')) {
            fields.push(&head[start..at]);
            start = at;
        }
        at += line.len();
    }
    if start < head.len() {
        fields.push(&head[start..]);
    }
    fields
}
