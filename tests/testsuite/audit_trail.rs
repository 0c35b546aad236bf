//! The audit trail, end to end: user management, CLI search and verify, server start and
//! stop, IMAP reads — each leaves one record, directly or through the audit spool while a
//! server owns the log (docs/OPERATIONS.md §Audit trail).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{python_json, Server, Vault};

const PASSWORD: &[u8] = b"correct horse battery\n";

/// `mailvault audit --json [--action A]`, one value per event (spooled ones included).
fn audit(vault: &Vault, action: Option<&str>) -> Vec<Value> {
    let mut args = vec!["audit", "--json"];
    if let Some(a) = action {
        args.extend(["--action", a]);
    }
    String::from_utf8(vault.ok(&args))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls until `done` holds of the `action` events in the log (not the spool), or panics
/// after a minute; returns them.
fn await_in_log(vault: &Vault, action: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events: Vec<Value> = audit(vault, Some(action))
            .into_iter()
            .filter(|e| e["seq"].is_u64())
            .collect();
        if done(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no {action} record in the log in time: {:#?}",
            audit(vault, None)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn targets(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["target"].as_str().unwrap()).collect()
}

fn spool_files(vault: &Vault) -> Vec<String> {
    match std::fs::read_dir(vault.dir.join("audit-spool")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "rejected")
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn user_changes_are_recorded_directly_or_through_the_running_server() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    // No server: the record is in the log when the command returns.
    vault.ok_in(
        &["user", "add", "alice", "--address", "alice@example.com"],
        Some(PASSWORD),
    );
    let added = audit(&vault, Some("user-add"));
    assert_eq!(
        targets(&added),
        ["alice (user of alice@example.com)"],
        "{added:#?}"
    );
    assert!(added[0]["seq"].is_u64() && added[0].get("id").is_none());
    assert!(added[0]["actor"].as_str().unwrap().starts_with("cli:"));
    assert_eq!(added[0]["origin"], "local");

    // With a server: spooled, then taken into the log by the server.
    let server = vault.serve(&[]);
    vault.ok_in(
        &["user", "add", "bob", "--address", "bob@example.com"],
        Some(PASSWORD),
    );
    let added = await_in_log(&vault, "user-add", |e| e.len() == 2);
    assert_eq!(targets(&added)[1], "bob (user of bob@example.com)");
    assert!(added[1]["id"].as_str().is_some_and(|id| id.len() == 32));
    assert!(added[1]["at"].as_str().is_some());
    vault.ok_in(&["user", "passwd", "bob"], Some(b"another good password\n"));
    vault.ok(&["user", "disable", "bob"]);
    // Already disabled: nothing changes, nothing is recorded.
    vault.ok(&["user", "disable", "bob"]);
    vault.ok(&["user", "enable", "bob"]);
    vault.ok(&["user", "addresses", "bob", "--add", "robert@example.com"]);
    // Refused: no such user. Nothing is recorded.
    assert_eq!(vault.run(&["user", "disable", "nobody"]).status.code(), Some(2));
    await_in_log(&vault, "user-addresses", |e| e.len() == 1);
    // Each `audit` run above spooled its own `audit-read` record: all are taken in.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !spool_files(&vault).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", spool_files(&vault));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.stop(), Some(0));

    let all = audit(&vault, None);
    let user_actions: Vec<(&str, &str)> = all
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("user-"))
        .map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        user_actions,
        [
            ("user-add", "alice (user of alice@example.com)"),
            ("user-add", "bob (user of bob@example.com)"),
            ("user-passwd", "bob password changed"),
            ("user-disable", "bob disabled"),
            ("user-enable", "bob enabled"),
            (
                "user-addresses",
                "bob added [robert@example.com] removed [] now [bob@example.com, robert@example.com]"
            ),
        ],
        "{all:#?}"
    );
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains("correct horse") && !text.contains("another good") && !text.contains("argon2"));

    // One start and one stop, the start naming the version and the listeners.
    let starts = audit(&vault, Some("start"));
    assert_eq!(starts.len(), 1, "{all:#?}");
    let start = starts[0]["target"].as_str().unwrap();
    assert!(
        start.starts_with(&format!("version {} ", env!("CARGO_PKG_VERSION"))),
        "{start}"
    );
    assert!(
        start.contains("imaps=127.0.0.1:") && start.contains("lmtp=127.0.0.1:"),
        "{start}"
    );
    assert_eq!(targets(&audit(&vault, Some("stop"))).len(), 1, "{all:#?}");
    assert_eq!(vault.verify(&[]).0, 0);
}

#[test]
fn cli_searches_and_verify_runs_are_recorded() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    vault.ok(&[
        "search",
        "--as",
        "address:alice@example.com",
        "Quartalszahlen",
        "from:max",
    ]);
    let searches = audit(&vault, Some("search"));
    assert_eq!(
        targets(&searches),
        ["cli as=address:alice@example.com Quartalszahlen from:max"],
        "{searches:#?}"
    );
    // A refused search (bad query) is not recorded.
    assert_ne!(vault.run(&["search", "subject:("]).status.code(), Some(0));
    assert_eq!(audit(&vault, Some("search")).len(), 1);

    // verify never writes the log it checks: its record waits in the spool (listed as
    // pending) until the next writer takes it in.
    let (code, _) = vault.verify(&[]);
    assert_eq!(code, 0);
    let runs = audit(&vault, Some("verify"));
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["pending"], true);
    assert!(runs[0]["seq"].is_null());
    let target = runs[0]["target"].as_str().unwrap().to_string();
    assert!(
        target.ends_with("verdict intact") && target.starts_with("records "),
        "{target}"
    );
    let server = vault.serve(&[]);
    let runs = await_in_log(&vault, "verify", |e| e.len() == 1);
    assert_eq!(targets(&runs), [target.as_str()]);
    assert_eq!(
        audit(&vault, Some("verify")).len(),
        1,
        "taken in once, no longer pending"
    );
    assert_eq!(server.stop(), Some(0));
}

/// Three messages over SMTP; `FETCH 1:* (BODY.PEEK[])`, then a FLAGS-only fetch.
const FETCH_CLIENT: &str = r#"
import imaplib, json, smtplib, ssl, sys
smtp_port, imaps_port = int(sys.argv[1]), int(sys.argv[2])
for i in range(3):
    with smtplib.SMTP("127.0.0.1", smtp_port) as s:
        s.sendmail("max@example.org", ["erika@example.com"],
                   b"From: max@example.org\r\nTo: erika@example.com\r\nSubject: n%d\r\n\r\nbody\r\n" % i)
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=tls)
m.login("erika", "correct horse battery")
typ, data = m.select("INBOX")
exists = int(data[0])
typ, data = m.fetch("1:*", "(BODY.PEEK[])")
bodies = sum(1 for d in data if isinstance(d, tuple))
typ, flags = m.fetch("1:*", "(FLAGS)")
m.logout()
print(json.dumps({"exists": exists, "bodies": bodies, "flags": typ}), flush=True)
"#;

#[test]
fn an_imap_fetch_of_a_whole_mailbox_is_one_view_record() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    vault.ok_in(
        &["user", "add", "erika", "--address", "erika@example.com"],
        Some(PASSWORD),
    );
    let server = vault.serve(&[]);
    let out = python_json(
        FETCH_CLIENT,
        &[server.smtp.port().to_string(), server.imaps.port().to_string()],
    );
    assert_eq!(out[0]["exists"], 3, "{out:?}");
    assert_eq!(out[0]["bodies"], 3, "{out:?}");
    assert_eq!(out[0]["flags"], "OK", "{out:?}");
    assert_eq!(server.stop(), Some(0));
    let views = audit(&vault, Some("view"));
    let uids: Vec<u64> = vault
        .records()
        .iter()
        .filter(|r| r["kind"] == "message")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(uids.len(), 3);
    assert_eq!(
        views.len(),
        1,
        "one record for FETCH 1:*, none for FLAGS: {views:#?}"
    );
    assert_eq!(views[0]["actor"], "erika");
    assert_eq!(views[0]["origin"], "127.0.0.1");
    let target = views[0]["target"].as_str().unwrap();
    assert!(
        target.starts_with("imap mailbox INBOX set 1:* messages 3 uids "),
        "{target}"
    );
    for uid in uids {
        assert!(target.contains(&uid.to_string()), "{target}");
    }
}

#[test]
fn a_spool_file_that_is_not_an_event_is_moved_aside_and_reported() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    let server: Server = vault.serve(&[]);
    let spool = vault.dir.join("audit-spool");
    std::fs::create_dir_all(&spool).unwrap();
    let name = format!("{}.json", "0123456789abcdef".repeat(2));
    std::fs::write(spool.join(&name), b"\x00\x01 definitely not json").unwrap();
    let rejected = await_in_log(&vault, "spool-rejected", |e| !e.is_empty());
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    let target = rejected[0]["target"].as_str().unwrap();
    assert!(
        target.starts_with(&format!("audit-spool/{name} moved to audit-spool/rejected/")),
        "{target}"
    );
    assert!(target.contains("not an audit event"), "{target}");
    assert!(!spool.join(&name).exists());
    let kept: Vec<_> = std::fs::read_dir(spool.join("rejected")).unwrap().collect();
    assert_eq!(kept.len(), 1);
    let kept = kept[0].as_ref().unwrap().path();
    assert_eq!(std::fs::read(&kept).unwrap(), b"\x00\x01 definitely not json");
    assert_eq!(server.stop(), Some(0));
    assert_eq!(vault.verify(&[]).0, 0);
}

#[test]
fn cli_reads_of_messages_listings_proofs_and_the_trail_are_recorded() {
    let vault = Vault::new();
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("m.eml");
    std::fs::write(&eml, b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n").unwrap();
    let seq = vault.import(&[&eml])[0].seq.unwrap();

    let segments_before: Vec<Vec<u8>> = vault
        .segments()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    vault.ok(&["show", &seq.to_string()]);
    vault.ok(&["log", "--from", "1", "--limit", "5"]);
    vault.ok(&["proof", &seq.to_string()]);
    // A refused read (no such record) is no access: nothing recorded.
    assert_eq!(vault.run(&["show", "999"]).status.code(), Some(2));
    let raw = audit(&vault, Some("raw"));
    assert_eq!(targets(&raw), [format!("cli seq {seq}").as_str()], "{raw:#?}");
    // Reads never write the log they read: their records wait in the spool.
    assert_eq!(raw[0]["pending"], true, "{raw:#?}");
    let segments_after: Vec<Vec<u8>> = vault
        .segments()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(segments_before == segments_after, "a read changed the log");
    assert_eq!(targets(&audit(&vault, Some("list"))), ["cli log from 1 limit 5"]);
    let proofs = audit(&vault, Some("proof"));
    assert_eq!(proofs.len(), 1, "{proofs:#?}");
    assert!(
        proofs[0]["target"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cli seq {seq} checkpoint ")),
        "{proofs:#?}"
    );
    // Every `audit` run above is itself on the trail, with its filters.
    let reads = audit(&vault, Some("audit-read"));
    assert!(
        targets(&reads).contains(&"cli action raw") && targets(&reads).contains(&"cli action list"),
        "{reads:#?}"
    );
    // Each record names who ran the command.
    assert!(raw[0]["actor"].as_str().unwrap().starts_with("cli:"), "{raw:#?}");
    // The next writer takes them into the log.
    let server = vault.serve(&[]);
    await_in_log(&vault, "proof", |e| e.len() == 1);
    assert_eq!(server.stop(), Some(0));
    let raw = audit(&vault, Some("raw"));
    assert!(raw.len() == 1 && raw[0]["seq"].is_u64(), "{raw:#?}");
}
