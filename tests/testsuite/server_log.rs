//! The server's log (issue #12): levels are checked (a misspelt one must not silence the log),
//! one info line per archived message without its content, and JSON lines as an option.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{python, Vault};

/// Sends one message over SMTP to two archive recipients; the reply text.
const SEND: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="relay.test")
s.ehlo()
s.mail("max@example.org")
s.rcpt("archive@vault.example")
s.rcpt("second@vault.example")
code, text = s.data(b"From: max@example.org\r\nSubject: secret subject\r\n\r\nsecret body\r\n")
assert code == 250, (code, text)
s.quit()
print(text.decode())
"#;

/// `mailvault --data DIR ARGS` with RUST_LOG unset (or set to `rust_log`).
fn mailvault(vault: &Vault, args: &[&str], rust_log: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailvault"));
    cmd.arg("--data").arg(&vault.dir).args(args);
    cmd.env_remove("MAILVAULT_DATA")
        .env_remove("MAILVAULT_KEY")
        .env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

/// A spawned server, killed on drop (a failed assertion must not leave it running).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command that must exit by itself (a refused start); a server that starts instead is
/// killed and the test fails.
fn refused(cmd: &mut Command) -> std::process::Output {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started: {:?}", child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Waits until `log` has a line that `wanted` accepts; returns it.
fn wait_for_line(log: &Mutex<String>, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(line) = log.lock().unwrap().lines().find(|l| wanted(l)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no such line in:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_misspelt_log_level_is_refused_naming_the_key() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    let config = vault.dir.with_file_name("mailvault.toml");
    std::fs::write(&config, "[server]\nlog = \"infoo\"\n").unwrap();
    let serve = [
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--lmtp",
        "none",
        "--smtp",
        "none",
        "--imap",
        "none",
        "--imaps",
        "none",
    ];
    let out = refused(&mut mailvault(&vault, &serve, None));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("server.log: \"infoo\" is not a level (trace, debug, info, warn, error, off)"),
        "{stderr}"
    );
    // RUST_LOG, which overrides the file, is held to the same rule.
    std::fs::write(&config, "[server]\nlog = \"info\"\n").unwrap();
    let out = refused(&mut mailvault(&vault, &serve, Some("archive_smtp=verbose")));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RUST_LOG: \"archive_smtp=verbose\" is not a level"),
        "{stderr}"
    );
}

#[test]
fn every_archived_message_is_one_info_line_without_its_content() {
    let vault = Vault::new();
    let server = vault.serve(&[]);
    let reply = python(SEND, &[server.smtp.port().to_string()]);
    assert!(reply.contains("archived seq="), "{reply}");
    let line = wait_for_line(&server.log, |l| l.contains(" archived "));
    // The message comes after the server's `start` record and its checkpoint.
    let seq = vault.records().iter().find(|r| r["kind"] == "message").unwrap()["seq"]
        .as_u64()
        .unwrap();
    assert!(line.contains(&format!("seq={seq} ")), "{line}");
    for field in [
        "sender=\"max@example.org\"",
        "rcpts=2 ",
        "client=127.0.0.1:",
        "protocol=smtp",
        "style=plain",
        "duplicate=false",
    ] {
        assert!(line.contains(field), "{field:?} in {line}");
    }
    let size = vault.records().iter().find(|r| r["kind"] == "message").unwrap()["size"]
        .as_u64()
        .unwrap();
    assert!(line.contains(&format!("size={size} ")), "{line}");
    let log = server.log.clone();
    assert_eq!(server.stop(), Some(0));
    let log = log.lock().unwrap();
    assert_eq!(log.matches(" archived ").count(), 1, "{log}");
    assert!(!log.contains("secret"), "nothing of the message's content: {log}");
}

#[test]
fn the_log_can_be_json_lines() {
    let vault = Vault::new();
    let config = vault.dir.with_file_name("mailvault.toml");
    std::fs::write(&config, "[server]\nlog_format = \"json\"\n").unwrap();
    let mut child = Child(
        mailvault(
            &vault,
            &[
                "serve",
                "--create",
                "--config",
                config.to_str().unwrap(),
                "--lmtp",
                "none",
                "--smtp",
                "127.0.0.1:0",
                "--imap",
                "none",
                "--imaps",
                "none",
                "--admin",
                "none",
                "--web",
                "none",
            ],
            None,
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = child.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let listening = wait_for_line(&log, |l| l.contains("\"listening\""));
    let listening: serde_json::Value = serde_json::from_str(&listening).unwrap();
    assert_eq!(listening["level"], "INFO");
    let addr: std::net::SocketAddr = listening["fields"]["addr"].as_str().unwrap().parse().unwrap();
    python(SEND, &[addr.port().to_string()]);
    let archived = wait_for_line(&log, |l| l.contains("\"archived\""));
    let archived: serde_json::Value = serde_json::from_str(&archived).unwrap();
    let fields = &archived["fields"];
    // After the server's `start` record (seq 1) and its checkpoint (seq 2).
    assert_eq!(fields["seq"], 3, "{archived}");
    assert_eq!(fields["rcpts"], 2, "{archived}");
    assert_eq!(fields["sender"], "\"max@example.org\"", "{archived}");
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    assert!(child.0.wait().unwrap().success());
    reader.join().unwrap();
    let log = log.lock().unwrap();
    for line in log.lines() {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            object["timestamp"].is_string() && object["fields"]["message"].is_string(),
            "{line}"
        );
    }
    assert!(log.contains("checkpoint written; bye"), "{log}");
    assert!(!log.contains("secret"), "{log}");
}
