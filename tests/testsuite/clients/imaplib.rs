//! Python's imaplib, as a script would use it: IMAP4_SSL, or IMAP4 and `starttls()`, with
//! the archive's certificate verified for `localhost`; SELECT, `UID SEARCH ALL`, then
//! `UID FETCH n (BODY.PEEK[])` for each message, written out as received: exactly the
//! stored bytes.

use super::{assert_copies, eml_files, exact, Fixture, Transport, PASSWORD};
use crate::util::python_json;

/// argv: port, "imaps" or "starttls", certificate, user, password, mailbox, output dir.
const SYNC: &str = r#"
import imaplib, json, os, ssl, sys
port, transport, cert, user, password, mailbox, out = sys.argv[1:]
tls = ssl.create_default_context(cafile=cert)
if transport == "imaps":
    m = imaplib.IMAP4_SSL("localhost", int(port), ssl_context=tls, timeout=300)
else:
    m = imaplib.IMAP4("localhost", int(port), timeout=300)
    m.starttls(ssl_context=tls)
m.login(user, password)
typ, data = m.select(mailbox)
assert typ == "OK", (typ, data)
typ, data = m.uid("SEARCH", None, "ALL")
assert typ == "OK", (typ, data)
uids = [int(u) for u in data[0].split()]
for uid in uids:
    typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
    assert typ == "OK" and isinstance(data[0], tuple), (typ, data[:1])
    with open(os.path.join(out, f"{uid}.eml"), "wb") as f:
        f.write(data[0][1])
m.logout()
print(json.dumps({"uids": uids}))
"#;

#[test]
fn imaplib_fetches_inbox_and_archive_over_imaps_and_starttls() {
    let f = Fixture::new("imaplib");
    for (mailbox, transport) in f.syncs() {
        let what = format!("imaplib {} {transport:?}", mailbox.name);
        let dir = f.dir(&format!("imaplib-{}-{transport:?}", mailbox.name));
        let args = [
            f.port(transport).to_string(),
            match transport {
                Transport::Imaps => "imaps".to_string(),
                Transport::Starttls => "starttls".to_string(),
            },
            f.certificate().display().to_string(),
            mailbox.user.to_string(),
            PASSWORD.to_string(),
            mailbox.name.to_string(),
            dir.display().to_string(),
        ];
        let answer = &python_json(SYNC, &args)[0];
        let uids: Vec<u64> = serde_json::from_value(answer["uids"].clone()).unwrap();
        let expected: Vec<u64> = mailbox.messages.iter().map(|m| m.uid).collect();
        assert_eq!(uids, expected, "{what}");
        let copies = eml_files(&dir, &uids);
        assert_copies(&what, &copies, &mailbox.all(), exact, exact);
    }
    f.finish();
}
