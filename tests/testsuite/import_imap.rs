//! `import imap[s]://…` against a real Dovecot (the private one of `upstream.rs`): folders with
//! spaces and non-ASCII names, the SpamAssassin sample and multi-MB messages, compared byte for
//! byte with what Dovecot serves; `--all-folders`; a run killed with SIGKILL and resumed; a
//! wrong password; STARTTLS, implicit TLS with the test CA, and plain text refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::upstream::{Dovecot, ALICE};
use crate::util::{fixtures, incompressible_message, python, Vault};

/// Logs in to Dovecot (STARTTLS, trusting its CA) as argv[3]/argv[4] and, for each
/// [folder, [files…]] of the JSON in argv[5], creates the folder (a name in modified UTF-7)
/// unless it is INBOX and appends the files' bytes.
const FILL: &str = r#"
import imaplib, json, ssl, sys
port, ca, user, password, folders = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
m = imaplib.IMAP4("127.0.0.1", port)
m.starttls(ssl.create_default_context(cafile=ca))
m.login(user, password)
for folder, files in folders:
    quoted = '"' + folder + '"'
    if folder != "INBOX":
        typ, data = m.create(quoted)
        assert typ == "OK", (folder, data)
    for path in files:
        with open(path, "rb") as f:
            typ, data = m.append(quoted, None, None, f.read())
        assert typ == "OK", (folder, path, data)
m.logout()
"#;

/// Writes every message of every folder (LIST, modified UTF-7 names as sent) as Dovecot serves
/// it (`UID FETCH 1:* (UID FLAGS BODY.PEEK[])`) to argv[5]/<folder index>/<uid>; prints one
/// JSON object per message: folder, uid, path, flags.
const DUMP: &str = r#"
import imaplib, json, os, re, ssl, sys
port, ca, user, password, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
m = imaplib.IMAP4("127.0.0.1", port)
m.starttls(ssl.create_default_context(cafile=ca))
m.login(user, password)
typ, listed = m.list('""', '"*"')
folders = []
for line in listed:
    match = re.match(rb'\((.*?)\) (?:"."|NIL) "?(.*?)"?$', line)
    if b"\\Noselect" in match.group(1) or b"\\NonExistent" in match.group(1):
        continue
    folders.append(match.group(2).decode())
for i, folder in enumerate(sorted(folders)):
    typ, data = m.select('"' + folder + '"', readonly=True)
    assert typ == "OK", (folder, data)
    if int(data[0]) == 0:
        continue
    os.makedirs(os.path.join(out, str(i)), exist_ok=True)
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
    for item in data:
        if not isinstance(item, tuple):
            continue
        uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
        flags = re.search(rb"FLAGS \((.*?)\)", item[0]).group(1).decode()
        path = os.path.join(out, str(i), str(uid))
        with open(path, "wb") as f:
            f.write(item[1])
        print(json.dumps({"folder": folder, "uid": uid, "path": path, "flags": flags}))
m.logout()
"#;

/// One message as Dovecot serves it.
#[derive(Debug)]
struct Held {
    /// The folder as Dovecot names it on the wire (modified UTF-7).
    folder: String,
    uid: u64,
    bytes: Vec<u8>,
    flags: String,
}

/// A Dovecot with alice's mail in it, and what the tests need to reach it.
struct Mailbox {
    dovecot: Dovecot,
    /// alice's password in a file.
    password_file: PathBuf,
    dir: tempfile::TempDir,
}

impl Mailbox {
    /// Starts Dovecot and appends `folders` (wire name, messages) to alice's account.
    fn new(folders: &[(&str, Vec<Vec<u8>>)]) -> Mailbox {
        let dovecot = Dovecot::start();
        let dir = tempfile::Builder::new()
            .prefix("mailvault-imap-import")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{}\n", ALICE.1)).unwrap();
        let mut plan = Vec::new();
        for (f, (folder, messages)) in folders.iter().enumerate() {
            let mut files = Vec::new();
            for (i, message) in messages.iter().enumerate() {
                let path = dir.path().join(format!("in-{f}-{i}.eml"));
                std::fs::write(&path, message).unwrap();
                files.push(path.display().to_string());
            }
            plan.push(serde_json::json!([folder, files]));
        }
        let mailbox = Mailbox {
            dovecot,
            password_file,
            dir,
        };
        python(FILL, &mailbox.args(&serde_json::to_string(&plan).unwrap()));
        mailbox
    }

    fn args(&self, last: &str) -> Vec<String> {
        vec![
            self.dovecot.imap.port().to_string(),
            self.dovecot.ca.display().to_string(),
            ALICE.0.to_string(),
            ALICE.1.to_string(),
            last.to_string(),
        ]
    }

    /// Every message Dovecot holds for alice, as it serves them.
    fn held(&self) -> Vec<Held> {
        let out = self.dir.path().join(format!(
            "dump-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let held = python(DUMP, &self.args(&out.display().to_string()))
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                Held {
                    folder: v["folder"].as_str().unwrap().to_string(),
                    uid: v["uid"].as_u64().unwrap(),
                    bytes: std::fs::read(v["path"].as_str().unwrap()).unwrap(),
                    flags: v["flags"].as_str().unwrap().to_string(),
                }
            })
            .collect();
        let _ = std::fs::remove_dir_all(out);
        held
    }

    /// `imaps://alice%40example.com@127.0.0.1:PORT/<folder>` (or `imap://…` on the STARTTLS port).
    fn url(&self, tls: bool, folder: &str) -> String {
        let (scheme, port) = if tls {
            ("imaps", self.dovecot.imaps.port())
        } else {
            ("imap", self.dovecot.imap.port())
        };
        format!("{scheme}://alice%40example.com@127.0.0.1:{port}/{folder}")
    }

    /// `import --json URL --ca CA --password-file F EXTRA…` → (exit code, outcomes, stderr).
    fn import(&self, vault: &Vault, url: &str, extra: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
        let ca = self.dovecot.ca.display().to_string();
        let password = self.password_file.display().to_string();
        let mut args = vec![
            "import",
            "--create",
            "--json",
            url,
            "--ca",
            &ca,
            "--password-file",
            &password,
        ];
        args.extend_from_slice(extra);
        let out = vault.run(&args);
        let outcomes = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (
            out.status.code().unwrap_or(-1),
            outcomes,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The first `n` messages of the SpamAssassin sample.
fn spamassassin(n: usize) -> Vec<Vec<u8>> {
    let dir = fixtures().join("corpus/spamassassin");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files.truncate(n);
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// The UID in a source `…;UIDVALIDITY=v/;UID=n INTERNALDATE=…`.
fn uid_of(source: &str) -> u64 {
    let after = source
        .split(";UID=")
        .nth(1)
        .unwrap_or_else(|| panic!("no UID in {source}"));
    after.split(' ').next().unwrap().parse().unwrap()
}

/// Every imported/duplicate outcome by (folder part of the URL, UID) → blake3.
fn archived(outcomes: &[serde_json::Value]) -> BTreeMap<(String, u64), String> {
    outcomes
        .iter()
        .filter(|o| o["status"] == "imported" || o["status"] == "duplicate")
        .map(|o| {
            let source = o["source"].as_str().unwrap();
            let folder = source.split(";UIDVALIDITY").next().unwrap();
            let folder = folder.rsplit_once('/').unwrap().1.to_string();
            (
                (folder, uid_of(source)),
                o["blake3"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Message records in the log.
fn message_records(vault: &Vault) -> usize {
    vault.records().iter().filter(|r| r["kind"] == "message").count()
}

#[test]
fn imaps_import_of_a_folder_is_byte_exact_and_leaves_the_mail_unread() {
    let mut inbox = spamassassin(500);
    inbox.push(incompressible_message("one megabyte", 800_000));
    inbox.push(incompressible_message("ten megabytes", 8_000_000));
    let mailbox = Mailbox::new(&[("INBOX", inbox)]);
    let vault = Vault::new();
    let url = mailbox.url(true, "INBOX");
    let (code, outcomes, stderr) = mailbox.import(&vault, &url, &[]);
    assert_eq!(code, 0, "{stderr}\n{}", mailbox.dovecot.logs());
    assert!(
        stderr.contains("imported 502, duplicates 0, failed 0"),
        "{stderr}"
    );
    assert!(!stderr.contains(ALICE.1) && !outcomes.iter().any(|o| o.to_string().contains("shine")));

    // What is archived is what Dovecot serves, byte for byte; and it is all still unread.
    let held = mailbox.held();
    assert_eq!(held.len(), 502);
    let archived = archived(&outcomes);
    assert_eq!(archived.len(), 502, "{outcomes:#?}");
    for h in &held {
        assert_eq!(
            archived.get(&(h.folder.clone(), h.uid)),
            Some(&blake3_hex(&h.bytes)),
            "{} UID {}",
            h.folder,
            h.uid
        );
        assert!(!h.flags.contains("\\Seen"), "UID {} flags {}", h.uid, h.flags);
    }
    // `show` gives the bytes back: the two large messages and the first one.
    let largest: Vec<&Held> = {
        let mut by_size: Vec<&Held> = held.iter().collect();
        by_size.sort_by_key(|h| std::cmp::Reverse(h.bytes.len()));
        vec![by_size[0], by_size[1], held.iter().min_by_key(|h| h.uid).unwrap()]
    };
    assert!(largest[0].bytes.len() >= 10_000_000 && largest[1].bytes.len() >= 1_000_000);
    for h in largest {
        let outcome = outcomes
            .iter()
            .find(|o| uid_of(o["source"].as_str().unwrap()) == h.uid)
            .unwrap();
        let source = outcome["source"].as_str().unwrap();
        assert!(
            source.starts_with(&format!("{url};UIDVALIDITY=")) && source.contains(" INTERNALDATE="),
            "{source}"
        );
        let shown = vault.ok(&["show", &outcome["seq"].to_string()]);
        assert!(shown == h.bytes, "UID {} differs from Dovecot's", h.uid);
    }
    // The envelope records where each message came from.
    let records = vault.records();
    assert!(
        records.iter().any(|r| r.to_string().contains(";UIDVALIDITY=")),
        "{:?}",
        records.first()
    );

    // A second run asks only for newer UIDs: there are none, nothing is fetched or appended.
    let (code, outcomes, stderr) = mailbox.import(&vault, &url, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(outcomes.is_empty(), "{outcomes:#?}");
    assert!(stderr.contains("imported 0, duplicates 0, failed 0"), "{stderr}");
    assert_eq!(message_records(&vault), 502);
    assert_eq!(vault.verify(&[]).0, 0);
}

#[test]
fn all_folders_imports_every_folder_with_spaces_and_non_ascii_names() {
    let mail = spamassassin(9);
    let mailbox = Mailbox::new(&[
        ("INBOX", mail[0..3].to_vec()),
        ("Work Stuff", mail[3..5].to_vec()),
        // "Entwürfe" in modified UTF-7.
        ("Entw&APw-rfe", mail[5..7].to_vec()),
        // Below a parent that is only a name (\NonExistent or \Noselect): not a folder.
        ("Archive.2023", mail[7..9].to_vec()),
    ]);
    let vault = Vault::new();
    // STARTTLS this time.
    let url = mailbox.url(false, "");
    let (code, outcomes, stderr) = mailbox.import(&vault, url.trim_end_matches('/'), &["--all-folders"]);
    assert_eq!(code, 0, "{stderr}\n{outcomes:#?}");
    assert!(stderr.contains("imported 9, duplicates 0, failed 0"), "{stderr}");
    let archived = archived(&outcomes);
    let folders: BTreeSet<&str> = archived.keys().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        folders,
        BTreeSet::from(["Archive.2023", "Entw%C3%BCrfe", "INBOX", "Work%20Stuff"])
    );
    let wire = |folder: &str| match folder {
        "Entw%C3%BCrfe" => "Entw&APw-rfe".to_string(),
        "Work%20Stuff" => "Work Stuff".to_string(),
        other => other.to_string(),
    };
    let held = mailbox.held();
    assert_eq!(held.len(), 9);
    for ((folder, uid), blake3) in &archived {
        let h = held
            .iter()
            .find(|h| h.folder == wire(folder) && h.uid == *uid)
            .unwrap_or_else(|| panic!("{folder} {uid} not in {held:?}"));
        assert_eq!(&blake3_hex(&h.bytes), blake3);
    }

    // One folder by its name, as people write it (UTF-8, percent-encoded), into another store.
    let other = Vault::new();
    let (code, outcomes, stderr) = mailbox.import(&other, &mailbox.url(true, "Entw%C3%BCrfe"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(outcomes.len(), 2, "{outcomes:#?}");
    // A folder that does not exist fails by name; nothing else happens.
    let (code, outcomes, stderr) = mailbox.import(&other, &mailbox.url(true, "No%20Such"), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0]["status"], "failed");
    assert!(
        outcomes[0]["error"].as_str().unwrap().contains("No Such"),
        "{outcomes:#?}"
    );
    assert_eq!(message_records(&other), 2);
}

/// The progress file's `last_uid` of the only folder in it (0 if there is none yet).
fn last_uid(vault: &Vault) -> u64 {
    let Ok(text) = std::fs::read_to_string(vault.dir.join("import-imap.json")) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let folders = v["folders"].as_object().unwrap();
    folders
        .values()
        .next()
        .map(|f| f["last_uid"].as_u64().unwrap())
        .unwrap_or(0)
}

#[test]
fn an_import_killed_midway_resumes_without_duplicates() {
    let mailbox = Mailbox::new(&[("INBOX", spamassassin(400))]);
    let vault = Vault::new();
    vault.ok(&["init"]);
    let url = mailbox.url(false, "INBOX");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .arg("--data")
        .arg(&vault.dir)
        .args(["import", &url, "--batch", "2", "--password-file"])
        .arg(&mailbox.password_file)
        .arg("--ca")
        .arg(&mailbox.dovecot.ca)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Some progress is durable, then SIGKILL.
    let until = Instant::now() + Duration::from_secs(60);
    while last_uid(&vault) < 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended before it could be killed"
        );
        assert!(Instant::now() < until, "no progress: {}", mailbox.dovecot.logs());
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = last_uid(&vault);
    assert!((20..400).contains(&done), "{done}");
    let before = message_records(&vault);
    assert!(before as u64 >= done, "{before} records, progress {done}");

    // The re-run fetches only what comes after the progress mark; what was archived after it
    // (in the batch the kill interrupted) is recognised as a duplicate.
    let (code, outcomes, stderr) = mailbox.import(&vault, &url, &[]);
    assert_eq!(code, 0, "{stderr}");
    for o in &outcomes {
        let uid = uid_of(o["source"].as_str().unwrap());
        assert!(uid > done, "UID {uid} fetched again (progress was {done})");
    }
    // At most the records past the mark: each is found again as a duplicate, unless
    // reopening the store cut it with an unacknowledged tail, in which case it is fetched and
    // stored as new. Either way nothing is stored twice (the distinct count below).
    let duplicates = outcomes.iter().filter(|o| o["status"] == "duplicate").count();
    assert!(
        duplicates <= before - done as usize,
        "{duplicates} duplicates: {stderr}"
    );
    let distinct: BTreeSet<String> = mailbox.held().iter().map(|h| blake3_hex(&h.bytes)).collect();
    assert_eq!(message_records(&vault), distinct.len());
    assert_eq!(last_uid(&vault), 400);
    assert_eq!(vault.verify(&[]).0, 0);
}

#[test]
fn a_wrong_password_or_an_untrusted_certificate_changes_nothing() {
    let mailbox = Mailbox::new(&[("INBOX", spamassassin(2))]);
    let wrong = mailbox.dir.path().join("wrong");
    std::fs::write(&wrong, "sunshine42\n").unwrap();

    // No store is created for a login that fails.
    let vault = Vault::new();
    let wrong_arg = wrong.display().to_string();
    let ca = mailbox.dovecot.ca.display().to_string();
    let url = mailbox.url(true, "INBOX");
    let args = [
        "import",
        "--create",
        &url,
        "--password-file",
        &wrong_arg,
        "--ca",
        &ca,
    ];
    let out = vault.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("login as alice@example.com refused") && stderr.contains("AUTHENTICATIONFAILED"),
        "{stderr}"
    );
    assert!(!stderr.contains("sunshine42"), "{stderr}");
    assert!(!vault.dir.exists());

    // An existing store stays as it was.
    vault.ok(&["init"]);
    let records = vault.records().len();
    let out = vault.run(&args);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(vault.records().len(), records);
    assert!(!vault.dir.join("import-imap.json").exists());

    // Without --ca the test CA is not trusted: a certificate error, no password sent.
    let password = mailbox.password_file.display().to_string();
    let out = vault.run(&["import", &url, "--password-file", &password]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert_eq!(vault.records().len(), records);

    // No password file and no terminal: refused before connecting.
    let out = vault.run(&["import", &url, "--ca", &ca]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--password-file"), "{stderr}");
}

#[test]
fn a_password_goes_unencrypted_only_with_allow_plaintext() {
    let dovecot = Dovecot::start_with(false);
    let vault = Vault::new();
    let dir = vault.dir.with_file_name("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let password = dir.join("password");
    std::fs::write(&password, format!("{}\n", ALICE.1)).unwrap();
    let password = password.display().to_string();
    let url = format!(
        "imap://alice%40example.com@127.0.0.1:{}/INBOX",
        dovecot.imap.port()
    );

    let out = vault.run(&["import", "--create", &url, "--password-file", &password]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not offer STARTTLS: no password was sent"),
        "{stderr}"
    );
    assert!(!vault.dir.exists());
    let attempts = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains("user=<alice@example.com>"))
            .count()
    };
    assert_eq!(attempts(&dovecot.logs()), 0, "{}", dovecot.logs());

    // With the permission: logged in unencrypted (an empty INBOX), with a warning.
    let out = vault.run(&[
        "import",
        "--create",
        &url,
        "--password-file",
        &password,
        "--allow-plaintext",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", dovecot.logs());
    assert!(
        stderr.contains("warning:") && stderr.contains("unencrypted"),
        "{stderr}"
    );
    assert!(stderr.contains("imported 0, duplicates 0, failed 0"), "{stderr}");
}
