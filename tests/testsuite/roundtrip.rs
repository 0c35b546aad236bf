//! Byte-exact: every fixture comes back from `show` exactly as it went into `import`.

use std::path::Path;

use crate::util::{files_under, fixtures, Vault};

#[test]
fn every_fixture_round_trips_byte_exact() {
    let vault = Vault::new();
    let dirs = [
        fixtures().join("corpus"),
        fixtures().join("malformed"),
        fixtures().join("edge"),
    ];
    let dir_refs: Vec<&Path> = dirs.iter().map(|d| d.as_path()).collect();
    let (code, imported) = vault.import_any(&dir_refs);
    // Licences, scripts, the manifest and edge/not-mail.bin are not mail: skipped (exit 1).
    let mut skipped: Vec<String> = imported
        .iter()
        .filter(|i| i.status == "skipped")
        .map(|i| {
            let name = Path::new(&i.source).file_name().unwrap();
            name.to_string_lossy().into_owned()
        })
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            "COPYING",
            "COPYING",
            "LICENSE-APACHE",
            "LICENSE-MIT",
            "extract-spamassassin.js",
            "fetch-spamassassin.sh",
            "not-mail.bin",
            "spamassassin.tsv"
        ]
    );
    assert_eq!(code, 1);
    assert!(
        imported
            .iter()
            .all(|i| ["imported", "duplicate", "skipped"].contains(&i.status.as_str())),
        "{imported:#?}"
    );
    // Every .eml file, and every message file of a Maildir (in its cur/ or new/).
    let in_maildir = |p: &Path| {
        p.parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "cur" || n == "new")
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    };
    let eml_files: Vec<_> = dirs
        .iter()
        .flat_map(|d| files_under(d))
        .filter(|p| p.extension().is_some_and(|e| e == "eml") || in_maildir(p))
        .collect();
    assert!(eml_files.len() >= 560, "fixtures present: {}", eml_files.len());
    for file in &eml_files {
        let entry = imported
            .iter()
            .find(|i| Path::new(&i.source) == file)
            .unwrap_or_else(|| panic!("{} was not imported", file.display()));
        let seq = entry.seq.unwrap().to_string();
        let shown = vault.ok(&["show", &seq]);
        assert!(
            shown == std::fs::read(file).unwrap(),
            "{} differs after show {seq}",
            file.display()
        );
    }
    let (code, out) = vault.verify(&[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn adversarial_bytes_round_trip() {
    let vault = Vault::new();
    let dir = vault.dir.with_file_name("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    let mut big = Vec::with_capacity(50 << 20);
    big.extend_from_slice(
        b"From: big@example.com\r\nSubject: 50 MiB\r\nContent-Type: application/octet-stream\r\n\r\n",
    );
    // Incompressible bytes (a simple generator), so the stored frame really is ~50 MiB.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while big.len() < 50 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bare-lf.eml", b"From: a@b\nSubject: lf\n\nbody\n".to_vec()),
        ("nul.eml", b"Subject: nul\r\n\r\na\0b\0\0c\r\n".to_vec()),
        (
            "8bit.eml",
            b"Subject: M\xfcller \xe2\x82\xac\r\nFrom: J\xf6rg <j@x>\r\n\r\n\xff\xfe\r\n".to_vec(),
        ),
        (
            "no-newline.eml",
            b"Subject: x\r\n\r\nno newline at the end".to_vec(),
        ),
        ("binary.eml", (0..=255u8).collect()),
        ("big.eml", big),
    ];
    for (name, bytes) in &cases {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let imported = vault.import(&[&dir]);
    for (name, bytes) in &cases {
        let seq = imported
            .iter()
            .find(|i| i.source.ends_with(name))
            .and_then(|i| i.seq)
            .unwrap()
            .to_string();
        assert!(&vault.ok(&["show", &seq]) == bytes, "{name} differs");
    }
    assert_eq!(vault.verify(&[]).0, 0);
}
