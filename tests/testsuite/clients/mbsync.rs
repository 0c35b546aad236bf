//! mbsync (isync) with a default channel — `Sync All`: pull, push, flags, deletions — into a
//! Maildir. Its documented addition is one `X-TUID:` header field (how it finds a message
//! it propagated); Maildir lines end in LF.

use std::path::{Path, PathBuf};

use super::{
    assert_copies, crlf_to_lf, files_in, maildir, maildir_copy, set_maildir_flags, split_header, Fixture,
    Mailbox, Stored, Transport, PASSWORD,
};

/// What mbsync stored without its `X-TUID:` field (at most one, in the header).
fn without_mbsync_additions(copy: &[u8]) -> Vec<u8> {
    let (head, body) = split_header(copy);
    let mut out: Vec<u8> = Vec::with_capacity(copy.len());
    let mut tuids = 0;
    for line in head.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"X-TUID: ") {
            tuids += 1;
        } else {
            out.extend_from_slice(line);
        }
    }
    assert!(tuids <= 1, "{tuids} X-TUID headers");
    out.extend_from_slice(body);
    out
}

/// A channel `vault` syncing `mailbox` into the Maildir at `dir`/`mailbox`; returns the
/// configuration file.
fn configure(f: &Fixture, mailbox: &Mailbox<'_>, transport: Transport, dir: &Path) -> PathBuf {
    let ssl = match transport {
        Transport::Imaps => "IMAPS",
        Transport::Starttls => "STARTTLS",
    };
    let config = dir.join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount vault\nHost localhost\nPort {port}\nUser {user}\nPass \"{PASSWORD}\"\n\
             SSLType {ssl}\nCertificateFile {cert}\n\n\
             IMAPStore vault-remote\nAccount vault\n\n\
             MaildirStore local\nPath {dir}/\nInbox {dir}/INBOX\nSubFolders Verbatim\n\n\
             Channel vault\nFar :vault-remote:\nNear :local:\nPatterns {name}\nCreate Near\n\
             SyncState *\n",
            port = f.port(transport),
            user = mailbox.user,
            cert = f.certificate().display(),
            dir = dir.display(),
            name = mailbox.name,
        ),
    )
    .unwrap();
    config
}

/// Runs mbsync on `config`; requires exit 0 and no error in what it says.
fn sync(f: &Fixture, what: &str, config: &Path) {
    let mut cmd = f.command("mbsync");
    cmd.arg("-c").arg(config).args(["-V", "vault"]);
    let said = f.run(what, cmd);
    for bad in ["rror", "Assertion", "returned"] {
        assert!(!said.contains(bad), "{what}: {bad}:\n{said}");
    }
}

/// The first sync copies every message exactly; local flag changes (flagged, unread,
/// trashed) and a deletion are pushed and answered OK, and nothing changes on the server;
/// new mail arrives in a later sync, and a last one finds nothing to do. Every run exits 0.
#[test]
fn mbsync_syncs_inbox_and_archive_over_imaps_and_starttls() {
    let mut f = Fixture::new("mbsync");
    let runs: Vec<(String, PathBuf, PathBuf)> = f
        .syncs()
        .iter()
        .map(|(mailbox, transport)| {
            let what = format!("mbsync {} {transport:?}", mailbox.name);
            let dir = f.dir(&format!("mbsync-{}-{transport:?}", mailbox.name));
            let config = configure(&f, mailbox, *transport, &dir);
            (what, config, dir.join(mailbox.name))
        })
        .collect();
    let check = |f: &Fixture, expected: &dyn for<'a> Fn(&Mailbox<'a>) -> Vec<&'a Stored>| {
        for ((what, _, folder), (mailbox, _)) in runs.iter().zip(f.syncs()) {
            let copies = files_in(&maildir(folder));
            assert_copies(
                what,
                &copies,
                &expected(&mailbox),
                crlf_to_lf,
                without_mbsync_additions,
            );
        }
    };
    for (what, config, _) in &runs {
        sync(&f, what, config);
    }
    check(&f, &|m| m.all());

    // Local changes of every kind a flag sync pushes: flagged (the note), unread (70 KB),
    // trashed (20 MB), deleted (1 MB).
    for (what, config, folder) in &runs {
        let copy = |sizes: std::ops::Range<u64>| maildir_copy(what, folder, sizes);
        let rename = |from: PathBuf, flags: &str| set_maildir_flags(&from, flags);
        rename(copy(0..300), "FS");
        rename(copy(60_000..80_000), "");
        rename(copy(15_000_000..25_000_000), "ST");
        std::fs::remove_file(copy(900_000..1_100_000)).unwrap();
        sync(&f, what, config);
    }

    f.deliver_to_erika("later");
    for (what, config, _) in &runs {
        sync(&f, what, config);
        sync(&f, what, config);
    }
    // The deleted message stays deleted here (mbsync remembers it); the new one arrived.
    check(&f, &|m| {
        m.all()
            .into_iter()
            .filter(|s| !(900_000..1_100_000).contains(&s.raw.len()))
            .collect()
    });
    f.finish();
}
