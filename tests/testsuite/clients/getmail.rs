//! getmail6 with its defaults (every message retrieved, none deleted) into a Maildir. It adds
//! what its documentation says: `Return-Path:`, `Delivered-To:` and `Received:` at the top
//! (configuration.txt, options `delivered_to` and `received`) and
//! `X-getmail-retrieved-from-mailbox:` at the end of the header (`record_mailbox`); lines end
//! in LF.
//!
//! IMAPS only: getmail6 6.18 (Debian 12) has no STARTTLS. Its plain-port retriever would
//! send the password in the clear, which the archive refuses before STARTTLS.
//!
//! getmail refuses to deliver as root; as root the Maildir belongs to `nobody` and the
//! destination's `user` says so.

use std::path::Path;

use super::{
    assert_copies, crlf_to_lf, files_in, header_fields, maildir, split_header, Fixture, Mailbox, Transport,
    PASSWORD,
};
use crate::util::user_ids;

/// The unprivileged user getmail delivers as when the tests run as root.
const DELIVERY_USER: &str = "nobody";

/// A getmailrc retrieving `mailbox` over IMAPS into the Maildir `dir`/maildir.
fn configure(f: &Fixture, mailbox: &Mailbox<'_>, dir: &Path) -> std::path::PathBuf {
    let maildir_path = dir.join("maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir_path.join(sub)).unwrap();
    }
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let user_line = if as_root {
        let (uid, gid) = user_ids(DELIVERY_USER).unwrap_or_else(|| panic!("no user {DELIVERY_USER}"));
        for d in [
            maildir_path.clone(),
            maildir_path.join("cur"),
            maildir_path.join("new"),
            maildir_path.join("tmp"),
        ] {
            std::os::unix::fs::chown(&d, Some(uid), Some(gid)).unwrap();
        }
        format!("user = {DELIVERY_USER}\n")
    } else {
        String::new()
    };
    let rc = dir.join("getmailrc");
    std::fs::write(
        &rc,
        format!(
            "[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = localhost\nport = {port}\n\
             username = {user}\npassword = {PASSWORD}\nca_certs = {cert}\nmailboxes = (\"{name}\",)\n\n\
             [destination]\ntype = Maildir\npath = {maildir}/\n{user_line}",
            port = f.port(Transport::Imaps),
            user = mailbox.user,
            cert = f.certificate().display(),
            name = mailbox.name,
            maildir = maildir_path.display(),
        ),
    )
    .unwrap();
    rc
}

/// A copy without getmail's four fields: `Return-Path:`, `Delivered-To:` and `Received:`
/// (with its continuation lines) first, `X-getmail-retrieved-from-mailbox: <mailbox>` last.
fn without_getmail_additions(copy: &[u8], mailbox: &str) -> Vec<u8> {
    let (head, body) = split_header(copy);
    let fields = header_fields(head);
    let added = ["Return-Path: ", "Delivered-To: ", "Received: "];
    let recorded = format!("X-getmail-retrieved-from-mailbox: {mailbox}\n");
    let n = fields.len();
    let as_added = n >= 5
        && added
            .iter()
            .zip(&fields)
            .all(|(name, field)| field.starts_with(name.as_bytes()))
        && fields[n - 2] == recorded.as_bytes();
    if !as_added {
        // Left as it is, the copy matches no message and the report shows it.
        return copy.to_vec();
    }
    let mut out: Vec<u8> = fields[3..n - 2].concat();
    out.extend_from_slice(fields[n - 1]);
    out.extend_from_slice(body);
    out
}

/// Every message of both mailboxes over IMAPS, each as stored with getmail's documented
/// fields added.
#[test]
fn getmail_retrieves_inbox_and_archive_over_imaps() {
    let f = Fixture::new("getmail");
    for (mailbox, transport) in f.syncs() {
        if transport != Transport::Imaps {
            continue;
        }
        let what = format!("getmail {} {transport:?}", mailbox.name);
        let dir = f.dir(&format!("getmail-{}", mailbox.name));
        let rc = configure(&f, &mailbox, &dir);
        let mut cmd = f.command("getmail");
        cmd.arg("--getmaildir")
            .arg(dir.join("state"))
            .arg("--rcfile")
            .arg(&rc);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let said = f.run(&what, cmd);
        assert!(!said.contains("rror"), "{what}:\n{said}");
        let copies = files_in(&maildir(&dir.join("maildir")));
        assert_copies(&what, &copies, &mailbox.all(), crlf_to_lf, |c| {
            without_getmail_additions(c, mailbox.name)
        });
    }
    f.finish();
}
