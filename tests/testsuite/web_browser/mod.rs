//! The web UI in a real headless Chromium (issue #16): Debian's `chromium` driven by npm's
//! `playwright-core` (pinned in tests/browser/package.json, `executablePath`, no browser
//! download). Each test starts the real `mailvault serve` on a temp store with free ports,
//! users from `mailvault user add` and mail from `import`, then runs one flow script,
//! `node tests/browser/FLOW.mjs`, with the address and credentials in its environment. The
//! script prints one JSON line (checks passed, failures, screenshots) and exits 0 only without
//! failures; each test asserts both, and that the checks it names all ran. Screenshots go to
//! `target/web-screenshots/<flow>-<step>.png`.
//!
//! Without Chromium or the npm package the tests fail, saying how to install them (.ci/run
//! does), like the other tests that need a tool from apt.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Server, Vault};

mod login;
mod message;
mod search;
mod xss;

/// The password of every test user.
use crate::web_api::PASSWORD;
/// Longest a flow may run before it is killed and its test fails.
const FLOW_DEADLINE: Duration = Duration::from_secs(150);

/// tests/browser/, where the flow scripts and their node_modules are.
fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What to run when the browser or the npm package is missing.
const INSTALL: &str = "run .ci/run, or install them by hand: `apt-get install chromium` and \
`npm ci --prefix tests/browser`";

/// The Chromium binary (`CHROMIUM`, default Debian's /usr/bin/chromium); panics, saying how to
/// install what is missing, unless it, node and the pinned playwright-core are all there.
fn require_browser() -> PathBuf {
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.is_file(),
        "{} is missing (Debian package chromium): {INSTALL}",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing (the browser tests run playwright-core with it): {INSTALL}"
    );
    let dir = scripts_dir();
    let wanted: Value = serde_json::from_slice(&std::fs::read(dir.join("package.json")).unwrap()).unwrap();
    let wanted = wanted["dependencies"]["playwright-core"]
        .as_str()
        .unwrap()
        .to_string();
    let installed = std::fs::read(dir.join("node_modules/playwright-core/package.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    assert_eq!(
        installed.as_deref(),
        Some(wanted.as_str()),
        "npm package playwright-core {wanted} is not installed in tests/browser/node_modules \
         (or another version is): {INSTALL}"
    );
    chromium
}

/// Where screenshots go: `target/web-screenshots/` (beside the tests' temp dir).
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("web-screenshots")
}

/// The result line of one flow.
#[derive(Debug)]
struct FlowResult {
    checks: Vec<String>,
    stderr: String,
}

impl FlowResult {
    /// Requires every check in `names` to have passed (a flow that silently skipped one fails).
    fn require(&self, names: &[&str]) {
        let missing: Vec<&&str> = names
            .iter()
            .filter(|n| !self.checks.iter().any(|c| c == *n))
            .collect();
        assert!(
            missing.is_empty(),
            "checks that did not run: {missing:?}\npassed: {:?}\nstderr: {}",
            self.checks,
            self.stderr
        );
    }
}

/// Runs `node tests/browser/FLOW.mjs` against `base_url` with `env`; fails the test on a crash,
/// a failure, an exit code that disagrees with the failures, or a run over [`FLOW_DEADLINE`].
fn run_flow(flow: &str, base_url: &str, env: &[(&str, String)]) -> FlowResult {
    let chromium = require_browser();
    let script = scripts_dir().join(format!("{flow}.mjs"));
    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(scripts_dir())
        .env("BASE_URL", base_url)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", screenshot_dir())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + FLOW_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "flow {flow} still running after {FLOW_DEADLINE:?}, killed; stderr: {}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = String::from_utf8_lossy(&stdout.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    let line: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!("flow {flow} printed no result line ({status}); stdout: {stdout}\nstderr: {stderr}")
        });
    // A flow run under another name (the XSS flow as each user) reports that name.
    let name = env
        .iter()
        .find(|(key, _)| *key == "FLOW_NAME")
        .map_or(flow, |(_, value)| value.as_str());
    assert_eq!(line["flow"], name, "{line}");
    let failures = line["failures"].as_array().cloned().unwrap_or_default();
    let checks: Vec<String> = line["checks"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    assert!(
        failures.is_empty(),
        "flow {flow} failed:\n{}\npassed: {checks:?}\nstderr: {stderr}",
        failures
            .iter()
            .map(|f| format!(
                "  {}: {}",
                f["check"].as_str().unwrap_or("?"),
                f["detail"].as_str().unwrap_or("")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        status.code(),
        Some(0),
        "flow {flow}: no failure listed but {status}; stderr: {stderr}"
    );
    FlowResult { checks, stderr }
}

/// Reads a pipe to its end on a thread (so a chatty child never blocks on a full pipe).
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A served store with users, and the seq of each mail imported, by file name.
struct Site {
    vault: Vault,
    _server: Server,
    base_url: String,
    seqs: std::collections::HashMap<String, u64>,
    _mail: tempfile::TempDir,
}

/// Users: those of `web_api::add_users` (alice, carol, pm, root);
/// then `mails` (file name, bytes) imported and the server started.
fn site(mails: &[(String, Vec<u8>)]) -> Site {
    require_browser();
    let vault = Vault::new();
    vault.ok(&["init"]);
    crate::web_api::add_users(&vault);
    let mail = tempfile::tempdir().unwrap();
    let mut seqs = std::collections::HashMap::new();
    if !mails.is_empty() {
        let files: Vec<PathBuf> = mails
            .iter()
            .map(|(name, bytes)| {
                let path = mail.path().join(name);
                std::fs::write(&path, bytes).unwrap();
                path
            })
            .collect();
        let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        for imported in vault.import(&paths) {
            let seq = imported
                .seq
                .unwrap_or_else(|| panic!("not archived: {imported:?}"));
            let name = Path::new(&imported.source)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            seqs.insert(name, seq);
        }
        assert_eq!(seqs.len(), mails.len(), "every mail archived once: {seqs:?}");
    }
    let server = vault.serve(&[]);
    let base_url = format!("http://{}", server.web.expect("web listener"));
    Site {
        vault,
        _server: server,
        base_url,
        seqs,
        _mail: mail,
    }
}

impl Site {
    /// The environment of a flow run as `user`.
    fn as_user(&self, user: &str) -> Vec<(&'static str, String)> {
        vec![
            ("USER_NAME", user.to_string()),
            ("PASSWORD", PASSWORD.to_string()),
        ]
    }

    /// The seq of the mail imported as `name`.
    fn seq(&self, name: &str) -> u64 {
        self.seqs[name]
    }
}

/// A plain text mail from bob@example.org to `to`.
fn text_mail(to: &str, subject: &str, date: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.org>\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n\
         Message-ID: <{}@example.org>\r\n\r\n{body}\r\n",
        crate::util::sha256_hex(format!("{to}{subject}{date}").as_bytes())
    )
    .into_bytes()
}
