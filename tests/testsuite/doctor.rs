//! `mailvault doctor` (issue #12): one line per check, `ok|warn|FAIL  what — how to fix`, exit
//! 0 without a FAIL and 1 with one. Run against real stores, a running server, real
//! certificate files and a port another program holds. (Its Postfix checks run against the
//! private Postfix of `postfix.rs`.)

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;

use crate::util::Vault;

/// `doctor ARGS` (global options may lead): (exit code, stdout lines).
fn doctor(vault: &Vault, args: &[&str]) -> (i32, Vec<String>) {
    let out = vault.run(args);
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        code == 0 || code == 1,
        "doctor {args:?} exited {code}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout.lines().map(str::to_string).collect())
}

/// The one line that starts with `level` and contains `text`.
fn line<'a>(lines: &'a [String], level: &str, text: &str) -> &'a str {
    let found: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("{level:<4}  ")) && l.contains(text))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {level} line with {text:?} in:\n{}",
        lines.join("\n")
    );
    found[0]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn fails(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.starts_with("FAIL")).collect()
}

/// Listener options that switch every listener off but `door`, at `addr`.
fn only(door: &str, addr: &str) -> Vec<String> {
    ["--lmtp", "--smtp", "--imap", "--imaps"]
        .iter()
        .flat_map(|option| {
            let value = if option.trim_start_matches('-') == door {
                addr
            } else {
                "none"
            };
            [option.to_string(), value.to_string()]
        })
        .collect()
}

#[test]
fn a_healthy_store_with_its_server_running_is_all_ok() {
    let vault = Vault::new();
    let keys = vault.dir.with_file_name("keys");
    let key = keys.join("signing.key");
    let key = key.to_str().unwrap();
    vault.ok(&["--key", key, "init"]);
    let server = vault.serve(&["--key", key]);
    let (lmtp, smtp, imap, imaps) = (
        server.lmtp.to_string(),
        server.smtp.to_string(),
        server.imap.to_string(),
        server.imaps.to_string(),
    );
    let (code, lines) = doctor(
        &vault,
        &[
            "--key", key, "doctor", "--lmtp", &lmtp, "--smtp", &smtp, "--imap", &imap, "--imaps", &imaps,
        ],
    );
    assert_eq!(fails(&lines), Vec::<&String>::new());
    assert_eq!(code, 0, "{}", lines.join("\n"));
    line(&lines, "ok", &format!("store {}", vault.dir.display()));
    line(&lines, "ok", "has mode 0600");
    line(&lines, "ok", "is this store's key");
    line(&lines, "ok", "users file: 0 users");
    for (door, addr) in [
        ("lmtp", &lmtp),
        ("smtp", &smtp),
        ("imap", &imap),
        ("imaps", &imaps),
    ] {
        line(&lines, "ok", &format!("{door} {addr}: mailvault answers"));
    }
    line(&lines, "ok", "intake certificate");
    line(&lines, "ok", "imap certificate");
    line(&lines, "skip", "postfix: not checked: no intake address");
    assert!(
        lines.iter().all(|l| l
            .split_once("  ")
            .is_some_and(|(level, _)| ["ok", "warn", "FAIL", "skip"].contains(&level.trim()))),
        "every line starts with its level:\n{}",
        lines.join("\n")
    );
    assert_eq!(server.stop(), Some(0));

    // Stopped: the same listeners are free to bind, and doctor says serve is not running.
    let (code, lines) = doctor(
        &vault,
        &[
            "--key", key, "doctor", "--lmtp", &lmtp, "--smtp", "none", "--imap", "none", "--imaps", "none",
        ],
    );
    assert_eq!(code, 0, "{}", lines.join("\n"));
    line(
        &lines,
        "ok",
        &format!("lmtp {lmtp}: free to bind (serve is not running)"),
    );
}

#[test]
fn a_key_others_can_read_fails_with_the_chmod_to_fix_it() {
    use std::os::unix::fs::PermissionsExt;
    let vault = Vault::new();
    vault.ok(&["init"]);
    let key = vault.dir.join("signing.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, lines) = doctor(
        &vault,
        &[
            "doctor", "--lmtp", "none", "--smtp", "none", "--imap", "none", "--imaps", "none",
        ],
    );
    assert_eq!(code, 1, "{}", lines.join("\n"));
    let fail = line(&lines, "FAIL", "signing key");
    assert!(fail.contains("mode 0644"), "{fail}");
    assert!(
        fail.ends_with(&format!("— chmod 600 {}", key.display())),
        "{fail}"
    );
    // The key inside the data directory is the embedded default: a warning, not a failure.
    line(&lines, "warn", "inside the data directory");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, lines) = doctor(
        &vault,
        &[
            "doctor", "--lmtp", "none", "--smtp", "none", "--imap", "none", "--imaps", "none",
        ],
    );
    assert_eq!(code, 0, "{}", lines.join("\n"));
}

#[test]
fn a_missing_store_fails_with_the_init_hint() {
    let vault = Vault::new();
    let (code, lines) = doctor(
        &vault,
        &[
            "doctor", "--lmtp", "none", "--smtp", "none", "--imap", "none", "--imaps", "none",
        ],
    );
    assert_eq!(code, 1, "{}", lines.join("\n"));
    let fail = line(&lines, "FAIL", "does not exist");
    assert!(
        fail.contains(&format!(
            "`mailvault --data {} init` creates a store",
            vault.dir.display()
        )),
        "{fail}"
    );
    line(&lines, "FAIL", "no signing key at");
}

#[test]
fn a_listener_port_another_program_holds_fails() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    // Another mail server greets on the port mailvault's SMTP listener is configured for.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = other.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        // doctor connects once.
        for stream in other.incoming().take(1) {
            let Ok(mut stream) = stream else { return };
            let _ = stream.write_all(b"220 relay.example ESMTP Postfix\r\n");
        }
    });
    let mut args = vec!["doctor".to_string()];
    args.extend(only("smtp", &addr));
    let (code, lines) = doctor(&vault, &strs(&args));
    assert_eq!(code, 1, "{}", lines.join("\n"));
    let fail = line(&lines, "FAIL", &format!("smtp {addr}: taken by another program"));
    assert!(fail.contains("220 relay.example ESMTP Postfix"), "{fail}");
    assert!(fail.contains("intake.smtp / --smtp"), "{fail}");
    line(&lines, "ok", "lmtp listener: off");
}

/// A certificate for `localhost` valid from 2020 until `not_after` (y, m, d), and its key,
/// written next to the store; the configuration file that points IMAP at them.
fn imap_certificate(vault: &Vault, not_after: (i32, u8, u8)) -> std::path::PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).unwrap();
    let dir = vault.dir.with_file_name("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let config = dir.join("mailvault.toml");
    std::fs::write(
        &config,
        format!(
            "[imap]\nhostname = \"localhost\"\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        ),
    )
    .unwrap();
    config
}

fn doctor_imaps(vault: &Vault, config: &Path) -> (i32, Vec<String>) {
    let mut args = vec![
        "doctor".to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    args.extend(only("imaps", "127.0.0.1:0"));
    doctor(vault, &strs(&args))
}

#[test]
fn an_expired_certificate_fails_and_one_expiring_soon_warns() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    let config = imap_certificate(&vault, (2021, 1, 1));
    let (code, lines) = doctor_imaps(&vault, &config);
    assert_eq!(code, 1, "{}", lines.join("\n"));
    let fail = line(&lines, "FAIL", "imap certificate");
    assert!(fail.contains("fullchain.pem: expired 2021-01-01"), "{fail}");
    assert!(fail.contains("— renew it"), "{fail}");

    // Ten days left.
    let soon = jiff::Zoned::now()
        .date()
        .checked_add(jiff::Span::new().days(10))
        .unwrap();
    let config = imap_certificate(&vault, (soon.year() as i32, soon.month() as u8, soon.day() as u8));
    let (code, lines) = doctor_imaps(&vault, &config);
    assert_eq!(code, 0, "{}", lines.join("\n"));
    let warn = line(&lines, "warn", "imap certificate");
    assert!(warn.contains(&format!("expires {soon}")), "{warn}");
    line(&lines, "ok", "names localhost");

    // A year left: ok.
    let later = jiff::Zoned::now()
        .date()
        .checked_add(jiff::Span::new().years(1))
        .unwrap();
    let config = imap_certificate(
        &vault,
        (later.year() as i32, later.month() as u8, later.day() as u8),
    );
    let (code, lines) = doctor_imaps(&vault, &config);
    assert_eq!(code, 0, "{}", lines.join("\n"));
    line(&lines, "ok", &format!("valid until {later}"));
}
