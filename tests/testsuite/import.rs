//! `import`: mbox (with From_ unescaping), Maildir, duplicates, failures and the summary.

use crate::util::{fixtures, Vault};

#[test]
fn mbox_messages_are_unescaped_exactly() {
    let vault = Vault::new();
    let imported = vault.import(&[&fixtures().join("edge/mbox-from-escaping.mbox")]);
    assert_eq!(imported.len(), 3);
    // Workers finish in any order; sources name the message's position in the mbox.
    let mut by_source = imported.clone();
    by_source.sort_by(|a, b| a.source.cmp(&b.source));
    for (i, entry) in by_source.iter().enumerate() {
        assert!(entry.source.ends_with(&format!("#{}", i + 1)), "{}", entry.source);
    }
    for (i, entry) in by_source.iter().enumerate() {
        let expected =
            std::fs::read(fixtures().join(format!("edge/mbox-from-escaping.expected/{}.eml", i + 1)))
                .unwrap();
        let shown = vault.ok(&["show", &entry.seq.unwrap().to_string()]);
        assert!(shown == expected, "mbox message {} differs", i + 1);
    }
    // The envelope sender comes from the From_ line.
    let log = String::from_utf8(vault.ok(&["log", "--json", "--limit", "1"])).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(!first["sender"].as_str().unwrap().is_empty(), "{first}");
}

#[test]
fn maildir_and_duplicates_and_failures_are_summarised() {
    let vault = Vault::new();
    let imported = vault.import(&[&fixtures().join("edge/maildir")]);
    assert_eq!(imported.len(), 3);
    assert!(imported.iter().all(|i| i.status == "imported"));
    // The same messages again are duplicates: nothing new is appended.
    let again = vault.run(&["import", &fixtures().join("edge/maildir").display().to_string()]);
    assert!(again.status.success());
    let summary = String::from_utf8_lossy(&again.stderr);
    assert!(
        summary.contains("imported 0, duplicates 3, failed 0"),
        "{summary}"
    );
    // An empty file is not a message: it fails, the rest is archived, exit code 1.
    let dir = vault.dir.with_file_name("mixed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("empty.eml"), b"").unwrap();
    std::fs::write(dir.join("ok.eml"), b"Subject: fine\r\n\r\nok\r\n").unwrap();
    let out = vault.run(&["import", &dir.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("empty.eml: empty file"), "{stderr}");
    assert!(stderr.contains("imported 1, duplicates 0, failed 1"), "{stderr}");
    assert_eq!(vault.verify(&[]).0, 0);
}

/// Writes `files` (relative path, bytes) under `dir`.
fn write_tree(dir: &std::path::Path, files: &[(&str, &[u8])]) {
    for (path, bytes) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

const THUNDERBIRD_INBOX: &[u8] = b"From - Tue Feb 06 10:00:00 2024\r\nX-Mozilla-Status: 0001\r\n\
From: Bob <bob@example.org>\r\nSubject: first\r\n\r\nhello\r\n\r\n\
From - Tue Feb 06 11:00:00 2024\r\nX-Mozilla-Status: 0001\r\nFrom: carol@example.net\r\n\
Subject: second\r\n\r\n>From the start, quoted\r\n";

#[test]
fn a_thunderbird_profile_is_read_by_content_not_by_names() {
    let vault = Vault::new();
    let mail = vault.dir.with_file_name("Mail");
    write_tree(
        &mail,
        &[
            ("Local Folders/Inbox", THUNDERBIRD_INBOX),
            (
                "Local Folders/Inbox.msf",
                b"// <!-- <mdb:mork:z v=\"1.4\"/> -->\n",
            ),
            (
                "Local Folders/Trash.sbd/Old",
                b"From alice@example.com Mon Jan  1 00:00:00 2024\nSubject: old\n\nx\n",
            ),
            ("Local Folders/msgFilterRules.dat", b"version=\"9\"\n"),
        ],
    );
    // A file named directly is read by content too: Thunderbird's Inbox has no extension.
    let alone = vault.import(&[&mail.join("Local Folders/Inbox")]);
    assert_eq!(alone.len(), 2, "{alone:#?}");
    let all = vault.import(&[&mail]);
    let status = |name: &str| -> Vec<&str> {
        all.iter()
            .filter(|i| i.source.contains(name))
            .map(|i| i.status.as_str())
            .collect()
    };
    assert_eq!(status("Inbox#"), ["duplicate", "duplicate"]);
    assert_eq!(status("Old#1"), ["imported"]);
    assert_eq!(status("Inbox.msf"), ["ignored"]);
    assert_eq!(status("msgFilterRules.dat"), ["ignored"]);
    assert_eq!(all.len(), 5, "{all:#?}");
    // Each message on its own, From_ lines gone and unescaped; `From -` names no sender.
    let first = vault.ok(&["show", &alone[0].seq.unwrap().to_string()]);
    assert!(
        first.starts_with(b"X-Mozilla-Status: 0001\r\nFrom: Bob"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    let second = vault.ok(&["show", &alone[1].seq.unwrap().to_string()]);
    assert!(second.ends_with(b"\r\n\r\nFrom the start, quoted\r\n"));
    let records = vault.records();
    assert_eq!(records[0]["envelope"]["mail_from"], "");
    let old = records
        .iter()
        .find(|r| {
            r["envelope"]["source"]
                .as_str()
                .is_some_and(|s| s.ends_with("Old#1"))
        })
        .unwrap();
    assert_eq!(old["envelope"]["mail_from"], "alice@example.com");
}

#[test]
fn mh_folders_and_extensionless_messages_are_imported_in_order() {
    let vault = Vault::new();
    let dir = vault.dir.with_file_name("mh");
    let message = |n: u32| format!("From: a@example.org\nSubject: number {n}\n\nbody\n").into_bytes();
    let (m1, m2, m10) = (message(1), message(2), message(10));
    write_tree(
        &dir,
        &[
            ("inbox/1", &m1),
            ("inbox/10", &m10),
            ("inbox/2", &m2),
            ("inbox/.mh_sequences", b"unseen: 10\n"),
            // Not numbered, but a message by its content (a corpus of named files).
            ("corpus/msg-a", b"Received: from x\r\nSubject: a\r\n\r\nA\r\n"),
        ],
    );
    let imported = vault.import(&[&dir]);
    let sources: Vec<String> = imported
        .iter()
        .map(|i| i.source.rsplit('/').take(2).collect::<Vec<_>>().join("<"))
        .collect();
    assert_eq!(sources, ["msg-a<corpus", "1<inbox", "2<inbox", "10<inbox"]);
    assert!(imported.iter().all(|i| i.status == "imported"), "{imported:#?}");
    let seqs: Vec<u64> = imported.iter().map(|i| i.seq.unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in walk order: {seqs:?}");
    assert_eq!(vault.ok(&["show", &seqs[3].to_string()]), m10);
}

#[test]
fn what_is_not_mail_is_skipped_by_name_and_fails_the_exit_code() {
    let vault = Vault::new();
    let dir = vault.dir.with_file_name("mixed");
    write_tree(
        &dir,
        &[
            ("message", b"Subject: fine\r\n\r\nok\r\n"),
            ("notes.txt", b"Remember to archive the mail.\n"),
            ("blob", &[0u8, 1, 2, 3, 0xff, 0xfe]),
            ("no-from-lines.mbox", b"Subject: not an mbox\r\n\r\nbody\r\n"),
        ],
    );
    let out = vault.run(&["import", "--create", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for skipped in ["notes.txt", "blob"] {
        let line = format!(
            "skipped: {}: not a message or an mbox",
            dir.join(skipped).display()
        );
        assert!(stderr.contains(&line), "{line}\n{stderr}");
    }
    assert!(stderr.contains("no-from-lines.mbox: not an mbox"), "{stderr}");
    assert!(
        stderr.contains("imported 1, duplicates 0, failed 1, skipped 2 (not mail)"),
        "{stderr}"
    );
    // Junk named on its own: nothing imported, and the exit code says so.
    let out = vault.run(&["import", dir.join("blob").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("imported 0, duplicates 0, failed 0, skipped 1"),
        "{stderr}"
    );
    // --format mbox on something without From_ lines: refused, not "0 messages".
    let out = vault.run(&[
        "import",
        "--format",
        "mbox",
        dir.join("message").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an mbox"));
    assert_eq!(vault.verify(&[]).0, 0);
}

#[test]
fn an_mbox_stored_as_one_message_is_said_so() {
    let vault = Vault::new();
    let dir = vault.dir.with_file_name("named");
    write_tree(&dir, &[("whole.eml", THUNDERBIRD_INBOX)]);
    let out = vault.run(&["import", "--create", dir.join("whole.eml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("whole.eml: starts with a From_ line and has 1 more")
            && stderr.contains("--format mbox"),
        "{stderr}"
    );
    assert!(stderr.contains("imported 1,"), "{stderr}");
    assert_eq!(vault.ok(&["show", "1"]), THUNDERBIRD_INBOX);
}
