//! curl: `UID SEARCH ALL` for the mailbox's UIDs, then every message by its IMAP URL
//! (`imaps://host/Mailbox;UID=n`, or `imap://…` with `--ssl-reqd` for STARTTLS) in one run
//! that keeps the connection. curl writes the bytes it received: exactly the stored ones.

use super::{assert_copies, eml_files, exact, Fixture, Transport, PASSWORD};

#[test]
fn curl_fetches_inbox_and_archive_over_imaps_and_starttls() {
    let f = Fixture::new("curl");
    for (mailbox, transport) in f.syncs() {
        let what = format!("curl {} {transport:?}", mailbox.name);
        let dir = f.dir(&format!("curl-{}-{transport:?}", mailbox.name));
        let (scheme, tls) = match transport {
            Transport::Imaps => ("imaps", None),
            Transport::Starttls => ("imap", Some("--ssl-reqd")),
        };
        let base = format!("{scheme}://localhost:{}/{}", f.port(transport), mailbox.name);
        let curl = || {
            let mut cmd = f.command("curl");
            cmd.args(["--silent", "--show-error", "--cacert"])
                .arg(f.certificate())
                .args(["--user", &format!("{}:{PASSWORD}", mailbox.user)])
                .args(tls);
            cmd
        };

        let mut search = curl();
        search.args([&base, "--request", "UID SEARCH ALL"]);
        let found = f.run(&what, search);
        let uids: Vec<u64> = found
            .lines()
            .find_map(|l| l.strip_prefix("* SEARCH"))
            .unwrap_or_else(|| panic!("{what}: {found}"))
            .split_whitespace()
            .map(|u| u.parse().unwrap())
            .collect();
        let expected: Vec<u64> = mailbox.messages.iter().map(|m| m.uid).collect();
        assert_eq!(uids, expected, "{what}");

        let mut fetch = curl();
        for uid in &uids {
            fetch
                .arg(format!("{base};UID={uid}"))
                .arg("--output")
                .arg(dir.join(format!("{uid}.eml")));
        }
        f.run(&what, fetch);
        let copies = eml_files(&dir, &uids);
        assert_copies(&what, &copies, &mailbox.all(), exact, exact);
    }
    f.finish();
}
