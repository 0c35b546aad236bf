//! `mailvault user …`: local users in `<data>/users.json`, managed from the command line.

use std::process::{Command, Stdio};

use archive_core::access::{AuthFailure, Users};
use archive_core::search::Principal;

use crate::util::Vault;

const PASSWORD: &[u8] = b"correct horse battery\n";

/// A store with no users yet.
fn vault() -> Vault {
    let vault = Vault::new();
    vault.ok(&["init"]);
    vault
}

/// Runs `user ARGS…` with `stdin`; requires success.
fn user_ok(vault: &Vault, args: &[&str], stdin: &[u8]) -> String {
    let mut full = vec!["user"];
    full.extend_from_slice(args);
    let out = vault.run_in(&full, Some(stdin));
    assert!(
        out.status.success(),
        "mailvault {full:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn users_json(vault: &Vault) -> Vec<u8> {
    std::fs::read(vault.dir.join("users.json")).unwrap()
}

fn listed(vault: &Vault) -> Vec<serde_json::Value> {
    user_ok(vault, &["list", "--json"], b"")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn users_are_added_and_listed_without_their_hashes() {
    let vault = vault();
    let out = user_ok(
        &vault,
        &[
            "add",
            "Alice",
            "--address",
            "Alice@Example.com",
            "--address",
            "a.smith@example.org",
        ],
        PASSWORD,
    );
    assert_eq!(
        out.trim(),
        "added alice (user of a.smith@example.org, alice@example.com)"
    );
    user_ok(
        &vault,
        &["add", "pm", "--role", "auditor", "--domain", "example.com"],
        PASSWORD,
    );
    user_ok(
        &vault,
        &["add", "root", "--role", "auditor", "--all-domains"],
        b"another password\r\n",
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(vault.dir.join("users.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(String::from_utf8(users_json(&vault))
        .unwrap()
        .contains("$argon2id$v=19$m=19456,t=2,p=1$"));

    let text = user_ok(&vault, &["list"], b"");
    assert!(!text.contains("argon2"), "{text}");
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "ROLE", "STATUS", "SCOPE"]);
    assert_eq!(
        lines[1],
        [
            "alice",
            "user",
            "enabled",
            "a.smith@example.org,",
            "alice@example.com"
        ]
    );
    assert_eq!(lines[2], ["pm", "auditor", "enabled", "example.com"]);
    assert_eq!(lines[3], ["root", "auditor", "enabled", "all", "domains"]);

    let json = user_ok(&vault, &["list", "--json"], b"");
    assert!(!json.contains("argon2") && !json.contains("password"), "{json}");
    let users = listed(&vault);
    assert_eq!(users.len(), 3);
    assert_eq!(users[0]["name"], "alice");
    assert_eq!(users[0]["role"], "user");
    assert_eq!(
        users[0]["addresses"],
        serde_json::json!(["a.smith@example.org", "alice@example.com"])
    );
    assert_eq!(users[0]["disabled"], false);
    assert!(users[0]["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(users[1]["domains"], serde_json::json!(["example.com"]));
    assert_eq!(users[2]["all_domains"], true);

    // What the CLI wrote is what the front doors will check logins against.
    let loaded = Users::load(&vault.dir).unwrap();
    let alice = loaded
        .authenticate("alice@example.com", "correct horse battery")
        .unwrap();
    assert_eq!(alice.name, "alice");
    assert_eq!(
        alice.principal,
        Principal::user(["alice@example.com", "a.smith@example.org"]).unwrap()
    );
    assert_eq!(
        loaded.authenticate("root", "another password").unwrap().principal,
        Principal::auditor_all()
    );
}

#[test]
fn passwd_disable_and_enable_change_what_logins_get() {
    let vault = vault();
    user_ok(
        &vault,
        &["add", "alice", "--address", "alice@example.com"],
        PASSWORD,
    );
    let check = |password: &str| {
        Users::load(&vault.dir)
            .unwrap()
            .authenticate("alice", password)
            .map(|_| ())
    };

    assert_eq!(
        user_ok(&vault, &["passwd", "ALICE"], b"a new password\n").trim(),
        "changed the password of alice"
    );
    assert_eq!(check("a new password"), Ok(()));
    assert_eq!(check("correct horse battery"), Err(AuthFailure::WrongPassword));

    assert_eq!(
        user_ok(&vault, &["disable", "alice"], b"").trim(),
        "disabled alice"
    );
    assert_eq!(check("a new password"), Err(AuthFailure::Disabled));
    assert_eq!(listed(&vault)[0]["disabled"], true);
    assert!(user_ok(&vault, &["list"], b"").contains("disabled"));
    // Again: not an error, and the file is not rewritten.
    let before = users_json(&vault);
    assert_eq!(
        user_ok(&vault, &["disable", "alice"], b"").trim(),
        "alice was already disabled"
    );
    assert_eq!(users_json(&vault), before);

    assert_eq!(user_ok(&vault, &["enable", "alice"], b"").trim(), "enabled alice");
    assert_eq!(check("a new password"), Ok(()));
}

#[test]
fn bad_input_gets_one_line_exit_2_and_changes_nothing() {
    let vault = vault();
    user_ok(
        &vault,
        &["add", "alice", "--address", "alice@example.com"],
        PASSWORD,
    );
    user_ok(
        &vault,
        &["add", "gone", "--address", "gone@example.com"],
        PASSWORD,
    );
    user_ok(&vault, &["disable", "gone"], b"");
    let before = users_json(&vault);
    let cases: &[(&[&str], &[u8], &str)] = &[
        (
            &["add", "alice", "--address", "x@example.com"],
            PASSWORD,
            "user alice already exists",
        ),
        (
            &["add", "ALICE", "--address", "x@example.com"],
            PASSWORD,
            "user alice already exists",
        ),
        (
            &["add", "gone", "--address", "x@example.com"],
            PASSWORD,
            "disabled; `mailvault user enable`",
        ),
        (&["add", "bob"], PASSWORD, "a user needs at least one --address"),
        (
            &["add", "bob", "--address", "bob"],
            PASSWORD,
            "address \"bob\": not a mail address",
        ),
        (
            &[
                "add",
                "bob",
                "--address",
                "b@example.com",
                "--domain",
                "example.com",
            ],
            PASSWORD,
            "are for auditors",
        ),
        (
            &["add", "bob smith", "--address", "b@example.com"],
            PASSWORD,
            "user name \"bob smith\"",
        ),
        (
            &["add", "-x", "--address", "b@example.com"],
            PASSWORD,
            "unexpected argument",
        ),
        (
            &["add", "pm", "--role", "auditor"],
            PASSWORD,
            "an auditor needs --domain",
        ),
        (
            &[
                "add",
                "pm",
                "--role",
                "auditor",
                "--all-domains",
                "--domain",
                "example.com",
            ],
            PASSWORD,
            "exclude each other",
        ),
        (
            &["add", "pm", "--role", "auditor", "--address", "pm@example.com"],
            PASSWORD,
            "--address is for users",
        ),
        (
            &["add", "pm", "--role", "auditor", "--domain", "exa mple.com"],
            PASSWORD,
            "domain \"exa mple.com\"",
        ),
        (
            &["add", "bob", "--address", "b@example.com"],
            b"short\n",
            "too short",
        ),
        (
            &["add", "bob", "--address", "b@example.com"],
            b"",
            "no password on stdin",
        ),
        (
            &["add", "bob", "--address", "b@example.com"],
            b"\xff\xfe invalid utf-8\n",
            "not UTF-8",
        ),
        (&["passwd", "nobody"], PASSWORD, "no user named \"nobody\""),
        (&["passwd", "alice"], b"short\n", "too short"),
        (&["disable", "nobody"], b"", "no user named \"nobody\""),
        (&["enable", "nobody"], b"", "no user named \"nobody\""),
        (&["delete", "alice"], b"", "unrecognized subcommand"),
    ];
    for (args, stdin, expect) in cases {
        let mut full = vec!["user"];
        full.extend_from_slice(args);
        let out = vault.run_in(&full, Some(stdin));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        // clap's own usage errors come with a usage block; ours are one line.
        if !["unexpected argument", "unrecognized subcommand"].contains(expect) {
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        }
        assert!(!stderr.contains("horse"), "a password leaked: {stderr}");
        assert_eq!(users_json(&vault), before, "{args:?} changed users.json");
    }
}

#[test]
fn a_damaged_users_file_is_named_and_left_alone() {
    let vault = vault();
    let path = vault.dir.join("users.json");
    let damaged = br#"{"format":1,"users":[{"name":"alice","role":"user","addresses":["alice@example.com"],"password_hash":"hunter2","created":"2026-01-01T00:00:00Z","updated":"2026-01-01T00:00:00Z"}]}"#;
    std::fs::write(&path, damaged).unwrap();
    for (args, stdin) in [
        (&["user", "list"][..], &b""[..]),
        (&["user", "add", "bob", "--address", "bob@example.com"], PASSWORD),
    ] {
        let out = vault.run_in(args, Some(stdin));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{}: user 1 (\"alice\"): password_hash", path.display())),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert_eq!(std::fs::read(&path).unwrap(), damaged);
    }
}

#[test]
fn user_commands_need_a_store() {
    let vault = Vault::new();
    let out = vault.run_in(
        &["user", "add", "alice", "--address", "a@example.com"],
        Some(PASSWORD),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no mailvault store"));
    assert!(!vault.dir.exists());
}

#[test]
fn concurrent_adds_all_land() {
    let vault = vault();
    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut child = Command::new(env!("CARGO_BIN_EXE_mailvault"))
                .arg("--data")
                .arg(&vault.dir)
                .args([
                    "user",
                    "add",
                    &format!("user{i}"),
                    "--address",
                    &format!("u{i}@example.com"),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            // If the child failed before reading, its exit status below says why.
            let _ = child.stdin.take().unwrap().write_all(PASSWORD);
            child
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let names: Vec<_> = listed(&vault)
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["user0", "user1", "user2", "user3"]);
}

#[test]
fn users_can_be_managed_while_the_server_runs() {
    let vault = vault();
    let server = vault.serve(&[]);
    user_ok(
        &vault,
        &["add", "alice", "--address", "alice@example.com"],
        PASSWORD,
    );
    user_ok(&vault, &["disable", "alice"], b"");
    assert_eq!(listed(&vault).len(), 1);
    assert_eq!(server.stop(), Some(0));
}

/// Wrong passwords for alice from 127.0.0.2, then alice from 127.0.0.1 — over IMAPS with
/// imaplib, each client socket bound to its loopback address. Prints one JSON object per
/// attempt.
const GUESSING_CLIENT: &str = r#"
import imaplib, json, socket, ssl, sys
port = int(sys.argv[1])
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE

class From(imaplib.IMAP4_SSL):
    """IMAPS from a chosen local address."""
    def __init__(self, source):
        self.source = source
        super().__init__("127.0.0.1", port, ssl_context=tls)
    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)

def attempt(source, password):
    m = From(source)
    try:
        m.login("alice", password)
        result = {"from": source, "ok": True}
    except imaplib.IMAP4.error as e:
        result = {"from": source, "ok": False, "text": str(e)}
    try:
        m.logout()
    except Exception:
        pass
    print(json.dumps(result), flush=True)

for _ in range(12):
    attempt("127.0.0.2", "wrong password")
attempt("127.0.0.1", "correct horse battery")
attempt("127.0.0.2", "correct horse battery")
"#;

/// Issue #10, defect 6: ten wrong passwords from one address locked the real user out from
/// everywhere for 15 minutes. Now they slow down that address only.
#[test]
fn wrong_passwords_from_one_address_do_not_lock_the_user_out_elsewhere() {
    let vault = vault();
    user_ok(
        &vault,
        &["add", "alice", "--address", "alice@example.com"],
        PASSWORD,
    );
    let server = vault.serve(&[]);
    let attempts = crate::util::python_json(GUESSING_CLIENT, &[server.imaps.port().to_string()]);
    assert_eq!(attempts.len(), 14, "{attempts:#?}");
    let (guesses, rest) = attempts.split_at(12);
    assert!(guesses.iter().all(|a| a["ok"] == false), "{guesses:#?}");
    // The guessing address is slowed down: its later attempts are not even checked.
    assert!(
        guesses
            .iter()
            .any(|a| a["text"].as_str().unwrap().contains("UNAVAILABLE")),
        "{guesses:#?}"
    );
    assert_eq!(rest[0]["ok"], true, "alice from 127.0.0.1: {:#?}", rest[0]);
    assert_eq!(
        rest[1]["ok"], false,
        "127.0.0.2 is still backing off: {:#?}",
        rest[1]
    );
    assert_eq!(server.stop(), Some(0));
}

/// Logs in over IMAPS with each LOGIN given; prints whether each worked.
const LOGINS: &str = r#"
import imaplib, json, ssl, sys
port, logins = int(sys.argv[1]), sys.argv[2:]
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
for login in logins:
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=tls, timeout=30)
    try:
        m.login(login, "correct horse battery")
        ok = True
    except imaplib.IMAP4.error:
        ok = False
    m.logout()
    print(json.dumps({"login": login, "ok": ok}), flush=True)
"#;

/// Which of `logins` log in over IMAPS now.
fn logins_that_work(server: &crate::util::Server, logins: &[&str]) -> Vec<String> {
    let mut args = vec![server.imaps.port().to_string()];
    args.extend(logins.iter().map(|l| l.to_string()));
    crate::util::python_json(LOGINS, &args)
        .iter()
        .filter(|r| r["ok"] == true)
        .map(|r| r["login"].as_str().unwrap().to_string())
        .collect()
}

/// Issue #12, defect 6: `user add alice2 --address alice@…` was accepted, and alice could no
/// longer log in with her address, even after `user disable alice2`; nothing could repair it.
#[test]
fn an_address_of_another_user_is_refused_shared_only_on_purpose_and_repairable() {
    let vault = vault();
    user_ok(
        &vault,
        &["add", "alice", "--address", "alice@example.com"],
        PASSWORD,
    );
    let before = users_json(&vault);
    let out = vault.run_in(
        &["user", "add", "alice2", "--address", "Alice@Example.com"],
        Some(PASSWORD),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("alice@example.com is already an address of user alice")
            && stderr.contains("--share"),
        "{stderr}"
    );
    assert_eq!(users_json(&vault), before, "a refused add changes nothing");

    // Shared on purpose (as for info@): accepted, and said what it means.
    let out = vault.run_in(
        &[
            "user",
            "add",
            "alice2",
            "--address",
            "alice@example.com",
            "--share",
        ],
        Some(PASSWORD),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shared by alice, alice2"));
    let list = vault.run(&["user", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stderr).contains("note: alice@example.com is shared by alice, alice2")
    );

    let server = vault.serve(&[]);
    assert_eq!(
        logins_that_work(&server, &["alice@example.com", "alice", "alice2"]),
        ["alice", "alice2"]
    );
    // A disabled user's address does not stand in the way.
    user_ok(&vault, &["disable", "alice2"], b"");
    assert_eq!(
        logins_that_work(&server, &["alice@example.com"]),
        ["alice@example.com"]
    );
    user_ok(&vault, &["enable", "alice2"], b"");
    // Repaired: alice2 gets an address of its own, alice hers back.
    let out = user_ok(
        &vault,
        &[
            "addresses",
            "alice2",
            "--remove",
            "alice@example.com",
            "--add",
            "alice2@example.com",
        ],
        b"",
    );
    assert!(out.starts_with("alice2 now has alice2@example.com"), "{out}");
    assert_eq!(
        logins_that_work(&server, &["alice@example.com", "alice2@example.com"]),
        ["alice@example.com", "alice2@example.com"]
    );
    assert_eq!(
        user_ok(&vault, &["addresses", "alice2"], b""),
        "alice2@example.com\n"
    );
    assert_eq!(
        listed(&vault)[1]["addresses"],
        serde_json::json!(["alice2@example.com"])
    );
    // A user keeps at least one address; an auditor has none to edit.
    let out = vault.run(&["user", "addresses", "alice2", "--remove", "alice2@example.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no address left"));
    assert_eq!(server.stop(), Some(0));
}
