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
