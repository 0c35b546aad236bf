//! mutt, headless: it opens the mailbox, tags every message and pipes each one, raw
//! (`pipe_decode` off), into a file of its own (`pipe_split`, no `pipe_sep`), then quits —
//! what `<pipe-message>` gives is the message as mutt fetched it, lines ending in LF. mutt
//! wants a terminal, so a Python pty runs it; the keys come from a `folder-hook` push, which
//! mutt reads once the mailbox is open.

use std::path::{Path, PathBuf};

use super::{assert_copies, crlf_to_lf, exact, files_in, Fixture, Mailbox, Transport, PASSWORD};

/// Runs argv[1:] on a pseudo-terminal and reads what it draws until it exits (or, should it
/// wait for an answer, for 300 s: then it is killed); prints the end of that, for a failure
/// message, and exits as it did (124 if killed).
const TERMINAL: &str = r#"
import os, pty, select, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "vt100"
    os.execvp(sys.argv[1], sys.argv[1:])
deadline = time.monotonic() + 300
screen = bytearray()
hung = False
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        os.kill(pid, signal.SIGKILL)
        hung = True
        break
    try:
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    screen += data
_, status = os.waitpid(pid, 0)
print(screen[-3000:].decode(errors="replace"))
sys.exit(124 if hung else os.waitstatus_to_exitcode(status))
"#;

/// A muttrc that pipes every message of the mailbox it opens into its own file in `out`,
/// and the URL of `mailbox`.
fn configure(
    f: &Fixture,
    mailbox: &Mailbox<'_>,
    transport: Transport,
    dir: &Path,
    out: &Path,
) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let save = dir.join("save");
    std::fs::write(
        &save,
        "#!/bin/sh\nexec cat > \"$(mktemp -p \"$1\" msg.XXXXXXXX)\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&save, std::fs::Permissions::from_mode(0o755)).unwrap();
    let muttrc = dir.join("muttrc");
    std::fs::write(
        &muttrc,
        format!(
            "set folder = \"{dir}\"\nset imap_user = \"{user}\"\nset imap_pass = \"{PASSWORD}\"\n\
             set certificate_file = \"{cert}\"\nset ssl_force_tls = yes\nset ssl_starttls = yes\n\
             set pipe_split = yes\nset pipe_decode = no\nset pipe_sep = \"\"\n\
             set wait_key = no\nset quit = yes\n\
             folder-hook . 'push \"<tag-pattern>~A<enter><tag-prefix><pipe-message>{save} {out}<enter><quit>\"'\n",
            dir = dir.display(),
            user = mailbox.user,
            cert = f.certificate().display(),
            save = save.display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let scheme = match transport {
        Transport::Imaps => "imaps",
        // With ssl_force_tls, mutt does STARTTLS or nothing.
        Transport::Starttls => "imap",
    };
    let url = format!("{scheme}://localhost:{}/{}", f.port(transport), mailbox.name);
    (muttrc, url)
}

/// Every message of both mailboxes, over both transports, exactly as stored (LF line ends).
#[test]
fn mutt_reads_inbox_and_archive_over_imaps_and_starttls() {
    let f = Fixture::new("mutt");
    for (mailbox, transport) in f.syncs() {
        let what = format!("mutt {} {transport:?}", mailbox.name);
        let dir = f.dir(&format!("mutt-{}-{transport:?}", mailbox.name));
        let out = f.dir(&format!("mutt-{}-{transport:?}/messages", mailbox.name));
        let (muttrc, url) = configure(&f, &mailbox, transport, &dir, &out);
        let mut cmd = f.command("python3");
        cmd.arg("-c")
            .arg(TERMINAL)
            .args(["mutt", "-n", "-F"])
            .arg(&muttrc)
            .args(["-f", &url]);
        f.run(&what, cmd);
        assert_copies(&what, &files_in(&[out]), &mailbox.all(), crlf_to_lf, exact);
    }
    f.finish();
}
