//! Helpers: run the binary against a temp store, find frames in segment files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A store directory (a temp one, removed on drop, unless given) and how to run `mailvault`
/// on it.
pub struct Vault {
    _tmp: Option<tempfile::TempDir>,
    pub dir: PathBuf,
}

impl Vault {
    /// A fresh directory; the store itself is created by the first command that needs it.
    pub fn new() -> Vault {
        let tmp = tempfile::Builder::new()
            .prefix("mailvault-e2e")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        let dir = tmp.path().join("data");
        Vault { _tmp: Some(tmp), dir }
    }

    /// A store in `dir`, which the caller owns (e.g. on a test file system).
    pub fn at(dir: PathBuf) -> Vault {
        Vault { _tmp: None, dir }
    }

    /// Runs `mailvault --data <dir> args…`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_in(args, None)
    }

    /// Runs a command that must end by itself (e.g. a `serve` that must refuse to start):
    /// one still running after 60 s is killed and the test fails, so a start that was to be
    /// refused cannot pass as a non-zero exit.
    pub fn run_bounded(&self, args: &[&str]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailvault"))
            .arg("--data")
            .arg(&self.dir)
            .args(args)
            .env_remove("MAILVAULT_DATA")
            .env_remove("MAILVAULT_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mailvault");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().expect("wait for mailvault").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("reap mailvault");
                panic!(
                    "mailvault {args:?} did not end within 60 s:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child.wait_with_output().expect("collect mailvault's output")
    }

    /// Runs with `stdin` bytes.
    pub fn run_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailvault"));
        cmd.arg("--data").arg(&self.dir).args(args);
        cmd.env_remove("MAILVAULT_DATA").env_remove("MAILVAULT_KEY");
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mailvault");
        if let Some(bytes) = stdin {
            use std::io::Write;
            // A command may refuse its arguments and exit before reading stdin.
            if let Err(e) = child.stdin.take().unwrap().write_all(bytes) {
                assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "writing stdin: {e}");
            }
        }
        child.wait_with_output().expect("mailvault output")
    }

    /// Runs and requires exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        self.ok_in(args, None)
    }

    /// The store's public key string (`key show`).
    pub fn public_key(&self) -> String {
        String::from_utf8(self.ok(&["key", "show"]))
            .unwrap()
            .trim()
            .to_string()
    }

    /// `export --from-seq 1 --to-seq LAST --out BUNDLE` (a range bundle); requires exit 0.
    pub fn export_range(&self, last: u64, bundle: &Path) {
        self.ok(&[
            "export",
            "--from-seq",
            "1",
            "--to-seq",
            &last.to_string(),
            "--out",
            bundle.to_str().unwrap(),
        ]);
    }

    /// `mailvault ARGS` with `stdin` (a password); requires exit 0; returns stdout.
    pub fn ok_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let out = self.run_in(args, stdin);
        assert!(
            out.status.success(),
            "mailvault {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `import --json PATHS` → (source, status, seq) per input; requires exit 0.
    pub fn import(&self, paths: &[&Path]) -> Vec<Imported> {
        let (code, imported) = self.import_any(paths);
        assert_eq!(code, 0, "import {paths:?}: {imported:#?}");
        imported
    }

    /// `import --json PATHS` → the exit code and (source, status, seq) per input.
    pub fn import_any(&self, paths: &[&Path]) -> (i32, Vec<Imported>) {
        let mut args = vec!["import", "--create", "--json"];
        let owned: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        args.extend(owned.iter().map(String::as_str));
        let out = self.run(&args);
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 1,
            "mailvault {args:?} failed ({code}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let imported = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                Imported {
                    source: v["source"].as_str().unwrap().to_string(),
                    status: v["status"].as_str().unwrap().to_string(),
                    seq: v["seq"].as_u64(),
                }
            })
            .collect();
        (code, imported)
    }

    /// `verify` → (exit code, stdout).
    pub fn verify(&self, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["verify"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Segment files, oldest first.
    pub fn segments(&self) -> Vec<PathBuf> {
        let mut s: Vec<PathBuf> = std::fs::read_dir(self.dir.join("log"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        s.sort();
        s
    }
}

/// One line of `import --json`.
#[derive(Debug, Clone)]
pub struct Imported {
    pub source: String,
    pub status: String,
    pub seq: Option<u64>,
}

/// (offset, length) of every frame in a segment file, by reading the 16-byte headers as
/// docs/FORMAT.md specifies (magic, u32 BE body length, …).
pub fn frames(segment: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 16;
    while at + 16 <= segment.len() {
        assert_eq!(&segment[at..at + 4], b"MVR1", "frame magic at {at}");
        let len = 16 + u32::from_be_bytes(segment[at + 4..at + 8].try_into().unwrap()) as usize;
        out.push((at, len));
        at += len;
    }
    out
}

/// Makes a segment file writable again (sealed ones are 0400) for tampering.
pub fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Every file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The repository's fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A running `mailvault serve` on free loopback ports; stopped (SIGTERM) on drop.
pub struct Server {
    pub child: std::process::Child,
    pub smtp: std::net::SocketAddr,
    pub lmtp: std::net::SocketAddr,
    /// IMAP with STARTTLS.
    pub imap: std::net::SocketAddr,
    /// IMAP over TLS.
    pub imaps: std::net::SocketAddr,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`), unless `--admin none`.
    pub admin: Option<std::net::SocketAddr>,
    /// The web listener (login, `/api/v1`), unless `--web none`.
    pub web: Option<std::net::SocketAddr>,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Vault {
    /// Starts the server with optional extra `serve` arguments (e.g. `--config FILE`); it
    /// creates the store if there is none (`--create`).
    pub fn serve(&self, extra: &[&str]) -> Server {
        self.serve_via(&[], extra)
    }

    /// Starts the server under `prefix` (a program and arguments that exec the rest, e.g. a
    /// shell setting resource limits).
    pub fn serve_via(&self, prefix: &[&str], extra: &[&str]) -> Server {
        use std::io::BufRead;
        let mut cmd = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_mailvault"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_mailvault")),
        };
        cmd.arg("--data")
            .arg(&self.dir)
            .args([
                "serve",
                "--create",
                "--lmtp",
                "127.0.0.1:0",
                "--smtp",
                "127.0.0.1:0",
            ])
            .args(["--imap", "127.0.0.1:0", "--imaps", "127.0.0.1:0"]);
        // A free port for the admin listener too, unless the test chose one.
        let admin = match extra.iter().position(|a| *a == "--admin") {
            Some(i) => extra.get(i + 1).is_some_and(|a| *a != "none"),
            None => {
                cmd.args(["--admin", "127.0.0.1:0"]);
                true
            }
        };
        // And for the web listener (its default, 127.0.0.1:8080, would collide between tests).
        let web = match extra.iter().position(|a| *a == "--web") {
            Some(i) => extra.get(i + 1).is_some_and(|a| *a != "none"),
            None => {
                cmd.args(["--web", "127.0.0.1:0"]);
                true
            }
        };
        cmd.args(extra)
            .env_remove("MAILVAULT_DATA")
            .env_remove("MAILVAULT_KEY")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mailvault serve");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening protocol=").nth(1) {
                    let (proto, addr) = rest.split_once(" addr=").unwrap();
                    let _ = tx.send((
                        proto.to_string(),
                        addr.trim().parse::<std::net::SocketAddr>().unwrap(),
                    ));
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut listening = std::collections::HashMap::new();
        while listening.len() < 4 + usize::from(admin) + usize::from(web) {
            match rx.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok((protocol, addr)) => {
                    listening.insert(protocol, addr);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("server did not start: {}", log.lock().unwrap());
                }
            }
        }
        Server {
            child,
            smtp: listening["smtp"],
            lmtp: listening["lmtp"],
            imap: listening["imap"],
            imaps: listening["imaps"],
            admin: listening.get("admin").copied(),
            web: listening.get("web").copied(),
            log,
        }
    }

    /// Every record of `log --json`.
    pub fn records(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.ok(&["log", "--json"]))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Server {
    /// SIGTERM and wait; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.terminate(std::time::Duration::from_secs(30))
    }

    /// SIGTERM and wait up to `patience` (a clean stop finishes the search indexer's batch,
    /// which after a long run can take minutes); returns the exit code.
    pub fn stop_within(mut self, patience: std::time::Duration) -> Option<i32> {
        self.terminate(patience)
    }

    fn terminate(&mut self, patience: std::time::Duration) -> Option<i32> {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + patience;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL: the crash case.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate(std::time::Duration::from_secs(30));
        }
    }
}

/// Runs a Python 3 script with arguments; returns stdout (panics with stderr on failure).
pub fn python(script: &str, args: &[String]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is installed");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a Python 3 script that prints one JSON object per line; returns them.
pub fn python_json(script: &str, args: &[String]) -> Vec<serde_json::Value> {
    python(script, args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A temp directory for a private instance of a system daemon (Postfix, Dovecot) that runs
/// as root and drops to unprivileged users: checks that the tests run as root, and makes the
/// directory traversable for those users.
pub fn private_daemon_dir(daemon: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "a private {daemon} needs root");
    let tmp = tempfile::Builder::new()
        .prefix(&format!("mailvault-{}", daemon.to_lowercase()))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

/// uid and gid of a user in /etc/passwd.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() != Some(&name) {
            return None;
        }
        Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
    })
}

/// A message whose body is base64 of `noise_bytes` pseudo-random bytes: zstd cannot shrink it,
/// so it takes about 4/3 × `noise_bytes` on disk.
pub fn incompressible_message(subject: &str, noise_bytes: usize) -> Vec<u8> {
    use base64::Engine;
    let mut message = format!("Subject: {subject}\r\n\r\n").into_bytes();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = Vec::with_capacity(noise_bytes + 8);
    while noise.len() < noise_bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(&noise);
    for line in encoded.as_bytes().chunks(76) {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    message
}

/// A `serve` run to its first log line containing `marker`, then stopped with SIGTERM: its
/// whole log (stderr), that line, and how it ended.
pub struct StoppedServe {
    pub log: String,
    pub marker_line: Option<String>,
    pub status: std::process::ExitStatus,
}

/// Runs `serve` (`cmd`, its arguments set) with `RUST_LOG=info`, reads its log until a line
/// containing `marker` (or the end), stops it with SIGTERM and reads the log to the end: a
/// closed pipe would kill the server's last log lines (SIGPIPE).
pub fn serve_until_logged(cmd: &mut Command, marker: &str) -> StoppedServe {
    use std::io::BufRead;
    let mut child = cmd
        .env_remove("MAILVAULT_DATA")
        .env_remove("MAILVAULT_KEY")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut marker_line = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains(marker) {
            marker_line = Some(line);
            break;
        }
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    let status = child.wait().unwrap();
    StoppedServe {
        log,
        marker_line,
        status,
    }
}

/// SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
