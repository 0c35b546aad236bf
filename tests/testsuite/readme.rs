//! The README's Quick start, run as written (issue #12, defect 8): every command of it in its
//! order, with the binary under test as `mailvault`, in a fresh directory; only the listener
//! addresses of `serve` (the admin and web listeners' too) are moved to free ports. And what the README says the first `serve`
//! prints is what it prints.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{fixtures, Vault};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The lines of the first fenced block after `heading`.
fn block_after(text: &str, heading: &str) -> Vec<String> {
    let at = text
        .find(heading)
        .unwrap_or_else(|| panic!("{heading:?} in README.md"));
    let rest = &text[at..];
    let open = rest.find("```").unwrap();
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let close = body.find("```").unwrap();
    body[..close].lines().map(str::to_string).collect()
}

/// A command line without its trailing `# comment`.
fn command(line: &str) -> String {
    match line.find("  #") {
        Some(at) => line[..at].trim().to_string(),
        None => line.trim().to_string(),
    }
}

/// Waits until the log has a line containing `text`.
fn wait_for(log: &Mutex<String>, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.lock().unwrap().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_readme_starts_with_serve_and_the_tests_and_says_how_to_install() {
    let text = readme();
    let first = block_after(&text, "# mailvault");
    let commands: Vec<&String> = first
        .iter()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        commands,
        ["cargo run --release -- serve", "cargo test --workspace"]
    );
    assert!(block_after(&text, "## Install")
        .iter()
        .any(|l| command(l) == "cargo install --path ."));
}

#[test]
fn the_quick_start_works_as_written_in_its_order() {
    let text = readme();
    let lines: Vec<String> = block_after(&text, "## Quick start")
        .iter()
        .map(|l| command(l))
        .filter(|l| l.starts_with("mailvault ") || l.starts_with("swaks "))
        .collect();
    assert_eq!(lines[0], "mailvault serve", "the first start creates the store");

    let vault = Vault::new();
    let cwd = vault.dir.with_file_name("checkout");
    std::fs::create_dir_all(&cwd).unwrap();
    std::os::unix::fs::symlink(fixtures(), cwd.join("fixtures")).unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_mailvault"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shell = |line: &str| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(line)
            .current_dir(&cwd)
            .env("PATH", &path)
            .env_remove("MAILVAULT_DATA")
            .env_remove("MAILVAULT_KEY")
            .env_remove("RUST_LOG");
        cmd
    };

    let mut server: Option<(std::process::Child, Arc<Mutex<String>>)> = None;
    for line in &lines {
        if line == "mailvault serve" {
            let mut child = shell(&format!(
                "exec {line} --lmtp 127.0.0.1:0 --smtp 127.0.0.1:0 --imap 127.0.0.1:0 --imaps 127.0.0.1:0 --admin 127.0.0.1:0 --web 127.0.0.1:0"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
            let log = Arc::new(Mutex::new(String::new()));
            let sink = log.clone();
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push_str(&(line + "\n"));
                }
            });
            wait_for(&log, "next: add a user");
            server = Some((child, log));
            continue;
        }
        let line = match (line.starts_with("swaks "), &server) {
            (true, Some((_, log))) => {
                let smtp = log
                    .lock()
                    .unwrap()
                    .split("listening protocol=smtp addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .unwrap()
                    .to_string();
                line.replace("127.0.0.1:2525", &smtp)
            }
            // The first message's seq: before it, the trail holds the start and `user add`.
            _ if line.contains(" SEQ ") => {
                let data = Vault::at(cwd.join("mailvault-data"));
                let seq = data
                    .records()
                    .iter()
                    .find(|r| r["kind"] == "message")
                    .and_then(|r| r["seq"].as_u64())
                    .expect("a message in the log");
                line.replace(" SEQ ", &format!(" {seq} "))
            }
            _ => line.clone(),
        };
        if line.starts_with("mailvault import") {
            // The README stops the server first: one process writes the store at a time.
            if let Some((mut child, log)) = server.take() {
                // SAFETY: signalling our own child.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGTERM);
                }
                assert!(child.wait().unwrap().success());
                first_serve_said_what_the_readme_says(&text, &log.lock().unwrap());
            }
        }
        let out = shell(&line)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                // `user add` reads the password from stdin's first line when it is no terminal.
                let _ = child.stdin.take().unwrap().write_all(b"correct horse battery\n");
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "{line:?} failed ({:?}):\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        server.is_none(),
        "the quick start stops the server before importing"
    );
    let first = std::fs::read(cwd.join("first.eml")).unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("bob@example.org"),
        "the first message is the journaled one"
    );
    assert!(cwd.join("mailvault.toml").exists());
    assert_eq!(Vault::at(cwd.join("mailvault-data")).verify(&[]).0, 0);
}

/// Each line of the README's "What the first `serve` prints" is in the log, up to its first
/// field (values such as origins and ports differ from run to run), and the fields that name
/// files are exactly as the README shows them.
fn first_serve_said_what_the_readme_says(readme: &str, log: &str) {
    let shown = block_after(readme, "What the first `serve` prints");
    assert!(shown.len() >= 6, "{shown:#?}");
    for line in &shown {
        let line = line.strip_prefix("INFO ").unwrap_or(line);
        let message = [" data=", " key=", " public=", " protocol=", " door="]
            .iter()
            .filter_map(|field| line.find(field))
            .min()
            .map_or(line, |at| &line[..at]);
        assert!(log.contains(message), "{message:?} not in the log:\n{log}");
    }
    for exact in [
        "key=./mailvault-data/signing.key",
        "certificate=self-signed ./mailvault-data/tls/imap-cert.pem (made now) for localhost, 127.0.0.1, ::1",
    ] {
        assert!(readme.contains(exact) && log.contains(exact), "{exact:?}:\n{log}");
    }
}
