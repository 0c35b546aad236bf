//! offlineimap (offlineimap3) with a default account — two-way sync of flags and deletions —
//! into a Maildir. It adds nothing to a message it downloads (its `X-OfflineIMAP` header
//! goes only into messages it uploads); Maildir lines end in LF.
//!
//! This is the client that made SELECT answer `[READ-WRITE]` and EXPUNGE `OK` (issue #14,
//! docs/OPERATIONS.md §IMAP): against a `[READ-ONLY]` SELECT its imaplib2 fails the folder on
//! the second flag change it pushes in a run, and it asserts that EXPUNGE succeeds after a
//! local deletion.

use std::path::{Path, PathBuf};

use super::{
    assert_copies, crlf_to_lf, exact, files_in, maildir, maildir_copy, set_maildir_flags, Fixture, Mailbox,
    Transport, PASSWORD,
};

/// An account `vault` syncing `mailbox` (and no other folder) into `dir`/mail; returns the
/// configuration file.
fn configure(f: &Fixture, mailbox: &Mailbox<'_>, transport: Transport, dir: &Path) -> PathBuf {
    // STARTTLS is offlineimap's default when `ssl` is off.
    let ssl = match transport {
        Transport::Imaps => "yes",
        Transport::Starttls => "no",
    };
    let config = dir.join("offlineimaprc");
    std::fs::write(
        &config,
        format!(
            "[general]\naccounts = vault\nmetadata = {dir}/meta\n\n\
             [Account vault]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {dir}/mail\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = localhost\nremoteport = {port}\n\
             remoteuser = {user}\nremotepass = {PASSWORD}\nssl = {ssl}\nsslcacertfile = {cert}\n\
             folderfilter = lambda folder: folder == '{name}'\n",
            dir = dir.display(),
            port = f.port(transport),
            user = mailbox.user,
            cert = f.certificate().display(),
            name = mailbox.name,
        ),
    )
    .unwrap();
    config
}

/// Runs offlineimap once on `config`; requires exit 0 and no error or skipped change in
/// what it says. Returns that.
fn sync(f: &Fixture, what: &str, config: &Path) -> String {
    let mut cmd = f.command("offlineimap");
    cmd.arg("-c").arg(config).args(["-o", "-u", "basic"]);
    let said = f.run(what, cmd);
    for bad in ["ERROR", "Traceback", "read-only", "READ-ONLY"] {
        assert!(!said.contains(bad), "{what}: {bad}:\n{said}");
    }
    said
}

/// The Maildir flags of every copy in `folder`.
fn flags(folder: &Path) -> Vec<String> {
    files_in(&maildir(folder))
        .iter()
        .map(|(name, _)| name.rsplit(":2,").next().unwrap_or_default().to_string())
        .collect()
}

/// The first sync copies every message exactly. Local flag changes (flagged, unread,
/// trashed) and a deletion are pushed: the server answers OK and keeps nothing. The next
/// sync brings the server's state back (the deleted message again, every flag `S`), and a
/// last one finds nothing to do. Every run exits 0 without an error.
#[test]
fn offlineimap_syncs_inbox_and_archive_over_imaps_and_starttls() {
    let f = Fixture::new("offlineimap");
    for (mailbox, transport) in f.syncs() {
        let what = format!("offlineimap {} {transport:?}", mailbox.name);
        let dir = f.dir(&format!("offlineimap-{}-{transport:?}", mailbox.name));
        let config = configure(&f, &mailbox, transport, &dir);
        let folder = dir.join("mail").join(mailbox.name);
        let check = || {
            let copies = files_in(&maildir(&folder));
            assert_copies(&what, &copies, &mailbox.all(), crlf_to_lf, exact);
        };
        sync(&f, &what, &config);
        check();

        let copy = |sizes: std::ops::Range<u64>| maildir_copy(&what, &folder, sizes);
        let rename = |from: PathBuf, flags: &str| set_maildir_flags(&from, flags);
        rename(copy(60_000..80_000), "FS");
        rename(copy(900_000..1_100_000), "");
        rename(copy(15_000_000..25_000_000), "ST");
        std::fs::remove_file(copy(0..300)).unwrap();
        let pushed = sync(&f, &what, &config);
        assert!(pushed.contains("Deleting 1 messages"), "{what}:\n{pushed}");

        let restored = sync(&f, &what, &config);
        assert!(restored.contains("Copy message"), "{what}:\n{restored}");
        let idle = sync(&f, &what, &config);
        assert!(
            !idle.contains("Copy message") && !idle.contains("flag"),
            "{what}: the last sync still changed something:\n{idle}"
        );
        check();
        assert!(
            flags(&folder).iter().all(|s| s == "S"),
            "{what}: {:?}",
            flags(&folder)
        );
    }
    f.finish();
}
