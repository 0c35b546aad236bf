//! The mbox export format through the real binary: messages written by archive-core's
//! `MboxWriter` (what `export --format mbox` writes) are imported by `mailvault import` and
//! `show` returns each one byte for byte (docs/FORMAT.md §"mbox export").

use archive_core::export::mbox::MboxWriter;

use crate::util::Vault;

/// Messages an mbox round trip can get wrong; all different (import stores a content once).
fn tricky_messages() -> Vec<Vec<u8>> {
    let mut binary = b"Subject: binary\r\n\r\n".to_vec();
    binary.extend((0..=255u8).cycle().take(1000));
    binary.extend_from_slice(b"\r\nFrom \x00\xff\r\n");
    let mut out: Vec<Vec<u8>> = vec![
        b"Subject: lf\n\nbody\n".to_vec(),
        b"Subject: crlf\r\n\r\nbody\r\n".to_vec(),
        b"Subject: no final newline\n\nbody".to_vec(),
        b"Subject: crlf without final newline\r\n\r\nbody".to_vec(),
        b"Subject: ends in CR\r\n\r\nbody\r\n\r".to_vec(),
        b"Subject: blank lines at the end\r\n\r\nbody\r\n\r\n\r\n".to_vec(),
        b"Subject: from lines\n\nFrom me\n>From you\n>>From them\nFrom\n>From\nFromage\n".to_vec(),
        b"From the first line\nSubject: x\n\ny\n".to_vec(),
        b"Subject: forged mark\n\nFrom a@b Thu Jan  1 00:00:00 1970 mailvault:no-final-newline\n".to_vec(),
        b"Subject: a From_ line at the very end\r\n\r\nFrom ".to_vec(),
        binary,
        b"\n".to_vec(),
        Vec::new(),
    ];
    // The last message of the file without a final newline too.
    out.push(b"Subject: last, no newline\r\n\r\nbye".to_vec());
    out
}

#[test]
fn messages_written_as_mbox_import_byte_for_byte() {
    let vault = Vault::new();
    vault.ok(&["init"]);
    let messages = tricky_messages();
    let senders: Vec<&[u8]> = vec![b"erika@example.org", b"", b"<bob@example.net>", b"with space@x"];
    let mut writer = MboxWriter::new(Vec::new());
    for (i, raw) in messages.iter().enumerate() {
        let sender = senders[i % senders.len()];
        writer
            .write_message(sender, 1_707_213_909_000_000 + i as i64, raw)
            .unwrap();
    }
    let mbox = vault.dir.with_file_name("export.mbox");
    std::fs::write(&mbox, writer.into_inner().unwrap()).unwrap();

    let mut imported = vault.import(&[&mbox]);
    assert_eq!(imported.len(), messages.len(), "{imported:#?}");
    assert!(imported.iter().all(|i| i.status == "imported"), "{imported:#?}");
    // Workers finish in any order; the source names the position in the mbox.
    imported.sort_by_key(|i| i.source.rsplit('#').next().unwrap().parse::<usize>().unwrap());
    for (entry, original) in imported.iter().zip(&messages) {
        let seq = entry.seq.unwrap().to_string();
        let shown = vault.ok(&["show", &seq]);
        assert_eq!(
            blake3::hash(&shown),
            blake3::hash(original),
            "{}: stored {:?}, written {:?}",
            entry.source,
            String::from_utf8_lossy(&shown),
            String::from_utf8_lossy(original)
        );
    }

    // The envelope senders that fit on a From_ line come back; the others are MAILER-DAEMON.
    let log = String::from_utf8(vault.ok(&["log", "--json"])).unwrap();
    let senders_logged: Vec<(u64, String)> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "message")
        .map(|v| {
            (
                v["seq"].as_u64().unwrap(),
                v["sender"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let sender_of = |i: usize| {
        let seq = imported[i].seq.unwrap();
        senders_logged.iter().find(|(s, _)| *s == seq).unwrap().1.clone()
    };
    assert_eq!(sender_of(0), "erika@example.org");
    assert_eq!(sender_of(1), "MAILER-DAEMON");
    assert_eq!(sender_of(2), "bob@example.net");
    assert_eq!(sender_of(3), "MAILER-DAEMON");
    assert_eq!(vault.verify(&[]).0, 0);
}
