//! A real Postfix relay journaling to `mailvault serve` over LMTP, configured as
//! docs/OPERATIONS.md "Journaling from Postfix" says: the plain `always_bcc` copy, and
//! envelope-complete journaling with `recipient_bcc_maps`/`sender_bcc_maps` (Bcc recipients
//! included).
//!
//! Each test runs its own private Postfix instance (Debian package `postfix`, installed by
//! .ci/run): its own config_directory, queue_directory, data_directory and maillog_file in a temp
//! dir, smtpd on a free 127.0.0.1 port, the archive domain routed by transport_maps to
//! mailvault's LMTP port, every other destination to `discard` (master.cf has no smtp client at
//! all: nothing leaves the machine). `postfix -c DIR start` needs no change to /etc/postfix: as
//! root, Postfix skips the `alternate_config_directories` check. The instance is stopped (and
//! its processes waited for) on drop, panics included.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{private_daemon_dir, python, Server, Vault};

/// How long a message may take from Postfix's smtpd to the archive.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A free loopback port (bound, read, closed).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A name unique across parallel tests and test processes.
fn instance_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "mv{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The master.cf of a relay that only receives (smtpd), queues, and delivers over LMTP or
/// discards: no `smtp` client service exists, so no copy can leave the machine.
const MASTER_CF_SERVICES: &str = "\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// Writes a Postfix configuration file dated a minute ago: Postfix waits until a file it reads
/// is at least a second old (it may still be being written), which costs seconds per command.
fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

/// Runs a Postfix tool and requires success.
fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("postfix tools are installed");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private Postfix instance in a temp dir; `postfix stop` on drop.
struct Postfix {
    name: String,
    root: PathBuf,
    config: PathBuf,
    smtp: SocketAddr,
    started: bool,
    _tmp: tempfile::TempDir,
}

impl Postfix {
    /// Configures and starts an instance relaying the archive domain to `lmtp`; `extra_main_cf`
    /// is appended to main.cf (`$DIR` in it stands for the config directory), `files` are
    /// written to the config directory.
    fn start(lmtp: SocketAddr, extra_main_cf: &str, files: &[(&str, &str)]) -> Postfix {
        assert!(
            Path::new("/usr/sbin/postfix").exists(),
            "postfix is installed (.ci/run installs it)"
        );
        // Postfix daemons run as mail_owner.
        let tmp = private_daemon_dir("Postfix");
        let root = tmp.path().to_path_buf();
        let config = root.join("etc");
        std::fs::create_dir(&config).unwrap();
        // The queue directory is root-owned; `postfix start` creates its subdirectories.
        std::fs::create_dir(root.join("queue")).unwrap();
        let name = instance_name();
        let mut postfix = Postfix {
            name,
            root,
            config,
            smtp: SocketAddr::from(([127, 0, 0, 1], 0)),
            started: false,
            _tmp: tmp,
        };
        let dir = postfix.config.display().to_string();
        let root = postfix.root.display().to_string();
        let name = &postfix.name;
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-{name}
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay-{name}.test
mydomain = test
myorigin = $myhostname
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
biff = no
transport_maps = hash:{dir}/transport
default_transport = discard:not journaled by this test
relay_transport = $default_transport
local_transport = $default_transport
virtual_transport = $default_transport
smtp_dns_support_level = disabled
lmtp_host_lookup = native
smtp_host_lookup = native
smtpd_peername_lookup = no
{}
",
            extra_main_cf.replace("$DIR", &dir)
        );
        write_config(&postfix.config.join("main.cf"), &main_cf);
        write_config(
            &postfix.config.join("transport"),
            &format!("vault.example    lmtp:inet:{lmtp}\n"),
        );
        for (file, text) in files {
            write_config(&postfix.config.join(file), text);
        }
        run_ok(
            Command::new("postmap")
                .arg("-c")
                .arg(&postfix.config)
                .arg(format!("hash:{dir}/transport")),
        );

        // A free port can be taken by someone else before master binds it: retry with another.
        for attempt in 1.. {
            postfix.smtp = SocketAddr::from(([127, 0, 0, 1], free_port()));
            write_config(
                &postfix.config.join("master.cf"),
                &format!("{} inet n - n - - smtpd\n{MASTER_CF_SERVICES}", postfix.smtp),
            );
            // From here on a (partly) started instance is stopped on drop.
            postfix.started = true;
            let out = Command::new("postfix")
                .arg("-c")
                .arg(&postfix.config)
                .arg("start")
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            let log = postfix.maillog();
            if attempt < 3 && log.contains("Address already in use") {
                postfix.stop();
                continue;
            }
            panic!(
                "postfix start failed: {}{}\nmaillog:\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        postfix
    }

    /// The instance's log so far.
    fn maillog(&self) -> String {
        std::fs::read_to_string(self.root.join("maillog")).unwrap_or_default()
    }

    /// The master's pid, while its pid file exists.
    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.root.join("queue/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Pids of live processes of this instance: Postfix daemons work in the queue directory.
    fn processes(&self) -> Vec<i32> {
        let queue = self.root.join("queue");
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
                let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| {
                        s.rsplit_once(')')
                            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(true);
                cwd.is_ok_and(|c| c.starts_with(&queue)) && !zombie
            })
            .collect()
    }

    /// `postfix stop`, then waits until every process of the instance is gone (SIGKILL by pid
    /// for any that outlives 10 s).
    fn stop(&mut self) {
        if !std::mem::take(&mut self.started) {
            return;
        }
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .output();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.processes();
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                let master = self.master_pid();
                eprintln!("postfix {}: killing {left:?} (master {master:?})", self.name);
                for pid in left {
                    // SAFETY: signalling a process of this test's own Postfix instance.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one message through the instance's smtpd with Python's smtplib; the queue id.
    fn send(&self, from: &str, rcpts: &[&str], message: &str) -> String {
        const SEND: &str = r#"
import smtplib, sys
host, port, sender, rcpts, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
s = smtplib.SMTP(host, port, local_hostname="client.test", timeout=30)
s.ehlo()
code, text = s.mail(sender)
assert code == 250, (code, text)
for r in rcpts.split(","):
    code, text = s.rcpt(r)
    assert code == 250, (r, code, text)
code, text = s.data(msg.encode())
assert code == 250, (code, text)
s.quit()
print(text.decode())
"#;
        let args = [
            self.smtp.ip().to_string(),
            self.smtp.port().to_string(),
            from.to_string(),
            rcpts.join(","),
            message.to_string(),
        ];
        let reply = python(SEND, &args);
        reply
            .split("queued as ")
            .nth(1)
            .unwrap_or_else(|| panic!("no queue id in {reply:?}"))
            .trim()
            .to_string()
    }

    /// The log lines about one queued message.
    fn lines_of(&self, queue_id: &str) -> Vec<String> {
        let tag = format!(" {queue_id}: ");
        self.maillog()
            .lines()
            .filter(|l| l.contains(&tag))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until Postfix has finished with `queue_id` (removed from its queue) and a record whose
/// content contains `subject` is archived; returns the archived records containing it.
fn wait_archived(
    vault: &Vault,
    postfix: &Postfix,
    server: &Server,
    queue_id: &str,
    subject: &str,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let done = postfix
            .lines_of(queue_id)
            .iter()
            .any(|l| l.ends_with(&format!("{queue_id}: removed")));
        let found: Vec<serde_json::Value> = vault
            .records()
            .into_iter()
            .filter(|r| r["kind"] == "message")
            .filter(|r| {
                let content = vault.ok(&["show", &r["seq"].to_string()]);
                String::from_utf8_lossy(&content).contains(subject)
            })
            .collect();
        if done && !found.is_empty() {
            return found;
        }
        if Instant::now() > deadline {
            panic!(
                "not archived within {DELIVERY_TIMEOUT:?} (postfix done: {done}, records: {found:?})\n\
                 postfix maillog:\n{}\nmailvault log:\n{}",
                postfix.maillog(),
                server.log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The (recipient, status text) of each delivery Postfix logged for `queue_id` by `agent`
/// (`lmtp`, `discard`).
fn deliveries(postfix: &Postfix, queue_id: &str, agent: &str) -> Vec<(String, String)> {
    let agent = format!("/{agent}[");
    postfix
        .lines_of(queue_id)
        .iter()
        .filter(|l| l.contains(&agent))
        .filter_map(|l| {
            let to = l.split("to=<").nth(1)?.split('>').next()?.to_string();
            let status = l.split("status=").nth(1)?.to_string();
            Some((to, status))
        })
        .collect()
}

/// Every delivery of `queue_id` to the archive carries mailvault's receipt for `record`.
fn assert_receipts(postfix: &Postfix, queue_id: &str, record: &serde_json::Value, rcpts: &[String]) {
    let lmtp = deliveries(postfix, queue_id, "lmtp");
    let mut logged: Vec<String> = lmtp.iter().map(|(to, _)| to.clone()).collect();
    logged.sort();
    assert_eq!(logged, rcpts, "archive deliveries: {lmtp:?}");
    let receipt = format!(
        "sent (250 2.0.0 archived seq={} blake3={})",
        record["seq"],
        record["blake3"].as_str().unwrap()
    );
    for (to, status) in &lmtp {
        assert_eq!(status, &receipt, "delivery to {to}");
    }
}

/// A message with its own Date and Message-ID, so that Postfix only prepends `Received:`.
fn message(name: &str, headers: &str, subject: &str) -> String {
    format!(
        "From: Alice <alice@example.com>\r\n{headers}Subject: {subject}\r\n\
         Date: Sun, 22 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{name}@example.com>\r\n\r\n\
         .a line starting with a dot\r\nbody\r\n"
    )
}

#[test]
fn postfix_always_bcc_journals_every_message_to_the_archive() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    add_user(&vault, "alice", "alice@example.com");
    add_user(&vault, "dave", "dave@hidden.example");
    let server = vault.serve(&[]);
    let postfix = Postfix::start(server.lmtp, "always_bcc = archive@vault.example", &[]);
    let subject = format!("always_bcc journaling {}", postfix.name);
    // bob is To, carol Cc, dave a blind copy.
    let sent = message(
        &postfix.name,
        "To: bob@example.org\r\nCc: carol@example.net\r\n",
        &subject,
    );
    let envelope = ["bob@example.org", "carol@example.net", "dave@hidden.example"];
    let queue_id = postfix.send("alice@example.com", &envelope, &sent);

    let found = wait_archived(&vault, &postfix, &server, &queue_id, &subject);
    assert_eq!(found.len(), 1, "one archived copy: {found:?}");
    let r = &found[0];
    let e = &r["envelope"];
    assert_eq!(e["mail_from"], "alice@example.com");
    let rcpts: Vec<&str> = e["rcpt_to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(rcpts, ["archive@vault.example"]);
    assert_eq!(
        e["original_recipients"],
        serde_json::json!([]),
        "a plain copy carries no originals"
    );
    assert_eq!(e["protocol"], "LMTP");
    assert_eq!(e["helo"], format!("relay-{}.test", postfix.name));
    // The bytes are the message as sent, below the Received: header Postfix prepends.
    let content = vault.ok(&["show", &r["seq"].to_string()]);
    let text = String::from_utf8_lossy(&content);
    assert!(text.starts_with("Received: from client.test"), "{text}");
    assert!(
        text.ends_with(&sent),
        "stored bytes differ from the sent message:\n{text}"
    );
    assert!(text.contains(&format!("Subject: {subject}\r\n")));

    assert_receipts(&postfix, &queue_id, r, &["archive@vault.example".to_string()]);
    let mut discarded = deliveries(&postfix, &queue_id, "discard");
    discarded.sort();
    let discarded_to: Vec<&str> = discarded.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(discarded_to, envelope);
    assert!(
        discarded.iter().all(|(_, status)| status.starts_with("sent ")),
        "{discarded:?}"
    );

    // The sender finds it in Sent only. A blind copy is invisible to a plain copy
    // (docs/OPERATIONS.md): dave does not see it; the envelope-complete style shows it.
    assert_eq!(mailbox_counts(&server, "alice", &subject), (0, 1));
    assert_eq!(mailbox_counts(&server, "dave", &subject), (0, 0));

    drop(postfix);
    assert_eq!(server.stop(), Some(0));
    assert_eq!(vault.verify(&[]).0, 0);
}

/// Lists, for one user over IMAPS, how many messages with a subject each of their mailboxes
/// holds: `{"INBOX": n, "Sent": m}`.
const MAILBOX_COUNTS: &str = r#"
import imaplib, json, ssl, sys
port, user, password, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=tls, timeout=30)
m.login(user, password)
counts = {}
for box in ["INBOX", "Sent"]:
    typ, _ = m.select(box, readonly=True)
    assert typ == "OK", (box, typ)
    typ, data = m.search(None, "SUBJECT", '"' + subject + '"')
    counts[box] = len(data[0].split())
m.logout()
print(json.dumps(counts))
"#;

const USER_PASSWORD: &str = "correct horse battery";

/// Adds a local user with one address.
fn add_user(vault: &Vault, name: &str, address: &str) {
    let out = vault.run_in(
        &["user", "add", name, "--address", address],
        Some(format!("{USER_PASSWORD}\n").as_bytes()),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// How many messages with `subject` the user finds in INBOX and in Sent.
fn mailbox_counts(server: &Server, user: &str, subject: &str) -> (u64, u64) {
    let out = python(
        MAILBOX_COUNTS,
        &[
            server.imaps.port().to_string(),
            user.to_string(),
            USER_PASSWORD.to_string(),
            subject.to_string(),
        ],
    );
    let counts: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    (
        counts["INBOX"].as_u64().unwrap(),
        counts["Sent"].as_u64().unwrap(),
    )
}

/// The `bcc` list of the one search hit for `query`, as the operator sees it.
fn searched_bcc(vault: &Vault, query: &str) -> Vec<String> {
    let hits: Vec<serde_json::Value> = String::from_utf8(vault.ok(&["search", "--json", query]))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 1, "{query}: {hits:#?}");
    hits[0]["bcc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn postfix_bcc_maps_journal_sender_and_all_recipients_including_bcc() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    // The sender and the blind recipient are local users of the archive.
    add_user(&vault, "alice", "alice@example.com");
    add_user(&vault, "dave", "dave@hidden.example");
    // The LMTP listener is Postfix's alone: its copies are recipient-encoded journals.
    let config = vault.dir.with_file_name("postfix-source.toml");
    std::fs::write(
        &config,
        "[[intake.journal_source]]\nstyle = \"recipient-encoded\"\nlistener = \"lmtp\"\n",
    )
    .unwrap();
    let server = vault.serve(&["--config", config.to_str().unwrap()]);
    // Exactly the maps and settings of docs/OPERATIONS.md: one encoding per envelope role.
    let postfix = Postfix::start(
        server.lmtp,
        "recipient_delimiter = +\n\
         recipient_bcc_maps = regexp:$DIR/archive_bcc_to\n\
         sender_bcc_maps = regexp:$DIR/archive_bcc_from",
        &[
            (
                "archive_bcc_to",
                "/^([^@+]+)(\\+[^@]*)?@(.+)$/    archive+to=${1}=${3}@vault.example\n",
            ),
            (
                "archive_bcc_from",
                "/^([^@+]+)(\\+[^@]*)?@(.+)$/    archive+from=${1}=${3}@vault.example\n",
            ),
        ],
    );
    let subject = format!("bcc_maps journaling {}", postfix.name);
    // bob is To, carol Cc, dave a blind copy: in the envelope only.
    let sent = message(
        &postfix.name,
        "To: bob@example.org\r\nCc: carol@example.net\r\n",
        &subject,
    );
    let envelope = ["bob@example.org", "carol@example.net", "dave@hidden.example"];
    let queue_id = postfix.send("alice@example.com", &envelope, &sent);

    let found = wait_archived(&vault, &postfix, &server, &queue_id, &subject);
    assert_eq!(found.len(), 1, "one record for all archive recipients: {found:?}");
    let r = &found[0];
    let e = &r["envelope"];
    assert_eq!(e["mail_from"], "alice@example.com");
    assert_eq!(e["protocol"], "LMTP");
    let mut originals: Vec<&str> = e["original_recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    originals.sort();
    assert_eq!(
        originals,
        ["bob@example.org", "carol@example.net", "dave@hidden.example"],
        "the sender is the sender, not a recipient: {r}"
    );
    let mut encoded: Vec<String> = e["rcpt_to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    encoded.sort();
    let expected: Vec<String> = [
        "archive+from=alice=example.com@vault.example",
        "archive+to=bob=example.org@vault.example",
        "archive+to=carol=example.net@vault.example",
        "archive+to=dave=hidden.example@vault.example",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(encoded, expected);
    let content = vault.ok(&["show", &r["seq"].to_string()]);
    let text = String::from_utf8_lossy(&content);
    assert!(
        text.ends_with(&sent),
        "stored bytes differ from the sent message:\n{text}"
    );
    assert!(
        !text.contains("dave"),
        "the Bcc recipient is in the envelope only:\n{text}"
    );

    assert_receipts(&postfix, &queue_id, r, &expected);
    let mut discarded: Vec<String> = deliveries(&postfix, &queue_id, "discard")
        .into_iter()
        .map(|(to, _)| to)
        .collect();
    discarded.sort();
    assert_eq!(
        discarded, envelope,
        "the real recipients' copies stay on the machine"
    );

    // What people see: alice's mail is in her Sent, not in her INBOX; dave, the blind copy,
    // has it in his INBOX; the Bcc list names dave and not the sender.
    assert_eq!(mailbox_counts(&server, "alice", &subject), (0, 1));
    assert_eq!(mailbox_counts(&server, "dave", &subject), (1, 0));
    let query = format!("msgid:{}@example.com", postfix.name);
    assert_eq!(searched_bcc(&vault, &query), ["dave@hidden.example"]);
    assert_eq!(
        searched_bcc(&vault, "bcc:dave@hidden.example"),
        ["dave@hidden.example"]
    );
    let as_sender = vault.ok(&["search", "--json", "bcc:alice@example.com"]);
    assert!(as_sender.is_empty(), "{}", String::from_utf8_lossy(&as_sender));

    drop(postfix);
    assert_eq!(server.stop(), Some(0));
    assert_eq!(vault.verify(&[]).0, 0);
}

/// `mailvault doctor` asks this Postfix (`postconf -c`, `postmap -q`) whether it journals to the
/// intake address and routes it to the running server's LMTP listener; an address it does not
/// journal to fails both checks.
#[test]
fn doctor_follows_postfix_journaling_to_the_intake() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    let server = vault.serve(&[]);
    let postfix = Postfix::start(
        server.lmtp,
        "recipient_delimiter = +\n\
         recipient_bcc_maps = regexp:$DIR/archive_bcc_to\n\
         sender_bcc_maps = regexp:$DIR/archive_bcc_from",
        &[
            (
                "archive_bcc_to",
                "/^([^@+]+)(\\+[^@]*)?@(.+)$/    archive+to=${1}=${3}@vault.example\n",
            ),
            (
                "archive_bcc_from",
                "/^([^@+]+)(\\+[^@]*)?@(.+)$/    archive+from=${1}=${3}@vault.example\n",
            ),
        ],
    );
    let (lmtp, smtp, imap, imaps) = (
        server.lmtp.to_string(),
        server.smtp.to_string(),
        server.imap.to_string(),
        server.imaps.to_string(),
    );
    let config_dir = postfix.config.display().to_string();
    let doctor = |address: &str| {
        let out = vault.run(&[
            "doctor",
            "--lmtp",
            &lmtp,
            "--smtp",
            &smtp,
            "--imap",
            &imap,
            "--imaps",
            &imaps,
            "--postfix-config",
            &config_dir,
            "--intake-address",
            address,
        ]);
        let text = String::from_utf8(out.stdout).unwrap();
        let postfix_lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("postfix"))
            .map(str::to_string)
            .collect();
        (out.status.code(), postfix_lines, text)
    };

    let (code, lines, all) = doctor("archive@vault.example");
    assert_eq!(
        lines,
        [
            "ok    postfix journals to archive@vault.example: recipient_bcc_maps gives \
             archive+to=doctor-probe=test@vault.example for doctor-probe@test"
                .to_string(),
            format!(
                "ok    postfix routes archive@vault.example to lmtp:inet:{lmtp} \
                 (hash:{config_dir}/transport): mailvault's lmtp listener"
            ),
            format!("ok    postfix's next hop {lmtp}: mailvault answers"),
        ],
        "{all}"
    );
    assert!(!all.contains("FAIL"), "{all}");
    assert_eq!(code, Some(0), "{all}");

    let (code, lines, all) = doctor("journal@elsewhere.example");
    assert_eq!(code, Some(1), "{all}");
    assert_eq!(lines.len(), 2, "{all}");
    assert!(
        lines[0].starts_with("FAIL  postfix does not journal to journal@elsewhere.example")
            && lines[0].contains("— set always_bcc"),
        "{all}"
    );
    assert!(
        lines[1].starts_with("FAIL  postfix: no transport_maps entry for journal@elsewhere.example")
            && lines[1].contains(&format!("— add `elsewhere.example lmtp:inet:{lmtp}`")),
        "{all}"
    );

    drop(postfix);
    assert_eq!(server.stop(), Some(0));
}
