//! The conversation of an import: connect, make it private, LOGIN, LIST, EXAMINE (read-only:
//! nothing in the mailbox changes), the UIDs and sizes of the messages, then their bytes with
//! `UID FETCH … BODY.PEEK[]` (PEEK: `\Seen` is never set), LOGOUT.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::response::{Capability, Code, Data, GreetingKind, Response, Status, StatusKind};
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::IntoStatic;
use rustls::ClientConfig;

use super::{Folder, ImportError, SourceUrl};
use crate::imap_client::{printable, Connection, Untagged};

/// Bytes a FETCH response may have beyond its message: the line around the literal.
const RESPONSE_SLACK: u32 = 64 * 1024;

/// How the import talks to the server.
#[derive(Clone)]
pub struct Options {
    /// Trust anchors for the server's certificate.
    pub tls: Arc<ClientConfig>,
    /// On `imap://`, send the password unencrypted if the server does not offer STARTTLS.
    pub allow_plaintext: bool,
    /// The longest the server may keep us waiting for any one read or write.
    pub timeout: Duration,
    /// The largest message accepted; larger ones are refused by their announced size and
    /// never held in memory (the limit for one FETCH response is this plus a little).
    pub max_message: u32,
}

/// What EXAMINE said about a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The folder's UIDVALIDITY: UIDs from another value name other messages.
    pub uidvalidity: u32,
    /// Messages in the folder.
    pub exists: u32,
}

/// One message read by [`Session::fetch`].
#[derive(Debug)]
pub struct Fetched {
    /// Its UID.
    pub uid: u32,
    /// The raw message, exactly as the server sent it.
    pub bytes: Vec<u8>,
    /// The server's INTERNALDATE (usually when it received the message), RFC 3339.
    pub internal_date: Option<String>,
}

/// A logged-in conversation.
pub struct Session {
    conn: Connection,
    server: String,
    /// Whether the password and the mail travel unencrypted (`--allow-plaintext`).
    pub plaintext: bool,
}

impl Session {
    /// Connects to the server of `url`, makes the connection private and logs in as its user.
    pub fn open(url: &SourceUrl, password: &str, options: &Options) -> Result<Session, ImportError> {
        let server = url.server();
        let connect = |reason: String| ImportError::Connect {
            server: server.clone(),
            reason,
        };
        let max_response = options.max_message.saturating_add(RESPONSE_SLACK);
        let mut conn = Connection::connect(
            &url.host,
            url.port,
            Instant::now() + options.timeout,
            max_response,
        )
        .map_err(connect)?;
        conn.idle = Some(options.timeout);
        if url.implicit_tls {
            conn.start_tls(&options.tls, &url.server_name).map_err(connect)?;
        }
        let greeting = conn.greeting().map_err(connect)?;
        match greeting.kind {
            GreetingKind::Ok => {}
            GreetingKind::PreAuth => {
                return Err(connect(
                    "greeted with PREAUTH: a login without a password is not supported".into(),
                ))
            }
            GreetingKind::Bye => {
                return Err(connect(format!(
                    "greeted with BYE: {}",
                    printable(greeting.text.as_ref())
                )))
            }
        }
        if !conn.is_tls() {
            let mut starttls = false;
            let status = conn
                .command(CommandBody::Capability, &mut |response| {
                    if let Untagged::Response(Response::Data(Data::Capability(caps))) = response {
                        starttls |= caps.as_ref().contains(&Capability::StartTls);
                    }
                })
                .map_err(connect)?;
            if status.kind != StatusKind::Ok {
                return Err(connect(format!(
                    "CAPABILITY refused: {}",
                    printable(status.text.as_ref())
                )));
            }
            if starttls {
                conn.starttls(&options.tls, &url.server_name).map_err(connect)?;
            } else if !options.allow_plaintext {
                return Err(ImportError::Plaintext { server });
            }
        }
        let plaintext = !conn.is_tls();
        let Ok(login) = CommandBody::login(url.user.as_str(), password) else {
            // Only a NUL cannot be sent (not even as a literal).
            return Err(ImportError::LoginRejected {
                server,
                user: url.user.clone(),
                text: "the user name or password holds a NUL byte, which IMAP cannot send".into(),
            });
        };
        let status = conn.command(login, &mut |_| {}).map_err(connect)?;
        match status.kind {
            StatusKind::Ok => Ok(Session {
                conn,
                server,
                plaintext,
            }),
            StatusKind::No => Err(ImportError::LoginRejected {
                server,
                user: url.user.clone(),
                text: status_text(&status.code, status.text.as_ref()),
            }),
            StatusKind::Bad => Err(connect(format!(
                "LOGIN answered BAD: {}",
                printable(status.text.as_ref())
            ))),
        }
    }

    /// The folders of the account that can be opened (`LIST "" "*"` without `\Noselect` and
    /// `\NonExistent` ones), in the server's order.
    pub fn folders(&mut self) -> Result<Vec<Folder>, ImportError> {
        let list = CommandBody::list("", "*").map_err(|e| self.broken(format!("LIST: {e:?}")))?;
        let mut folders = Vec::new();
        let mut unreadable = 0usize;
        let status = self
            .conn
            .command(list, &mut |response| match response {
                Untagged::Response(Response::Data(Data::List { items, mailbox, .. })) => {
                    let selectable = !items.iter().any(|item| {
                        *item == FlagNameAttribute::Noselect
                            || item.to_string().eq_ignore_ascii_case("\\NonExistent")
                    });
                    if selectable {
                        folders.push(Folder::listed(mailbox.into_static()));
                    }
                }
                Untagged::Unreadable { .. } => unreadable += 1,
                Untagged::Response(_) => {}
            })
            .map_err(|e| self.broken(e))?;
        if status.kind != StatusKind::Ok {
            return Err(self.broken(format!("LIST refused: {}", printable(status.text.as_ref()))));
        }
        if unreadable > 0 {
            return Err(self.broken(format!(
                "{unreadable} answers to LIST do not parse: the folder list would be incomplete"
            )));
        }
        Ok(folders)
    }

    /// Opens `folder` read-only (EXAMINE).
    pub fn examine(&mut self, folder: &Folder) -> Result<Selected, ImportError> {
        let mut uidvalidity = None;
        let mut exists = 0;
        let Ok(examine) = CommandBody::examine(folder.mailbox.clone());
        let status = self
            .conn
            .command(examine, &mut |response| match response {
                Untagged::Response(Response::Status(Status::Untagged(body))) => {
                    if let Some(Code::UidValidity(v)) = body.code {
                        uidvalidity = Some(v.get());
                    }
                }
                Untagged::Response(Response::Data(Data::Exists(n))) => exists = n,
                _ => {}
            })
            .map_err(|e| self.broken(e))?;
        match status.kind {
            StatusKind::Ok => {}
            _ => {
                return Err(ImportError::Folder {
                    folder: folder.name.clone(),
                    text: status_text(&status.code, status.text.as_ref()),
                })
            }
        }
        let uidvalidity = uidvalidity.ok_or_else(|| ImportError::Folder {
            folder: folder.name.clone(),
            text: "the server sent no UIDVALIDITY, so progress could not be kept".into(),
        })?;
        Ok(Selected { uidvalidity, exists })
    }

    /// UID and size of every message of the open folder with a UID of `from` or more, by UID.
    pub fn messages_from(&mut self, from: NonZeroU32) -> Result<Vec<(u32, u32)>, ImportError> {
        let set = SequenceSet::try_from(format!("{from}:*").as_str())
            .map_err(|e| self.broken(format!("UID set: {e}")))?;
        let fetch = CommandBody::fetch(
            set,
            vec![MessageDataItemName::Uid, MessageDataItemName::Rfc822Size],
            true,
        )
        .map_err(|e| self.broken(format!("UID FETCH: {e:?}")))?;
        let mut found = Vec::new();
        let mut unreadable = 0usize;
        let status = self
            .conn
            .command(fetch, &mut |response| match response {
                Untagged::Response(Response::Data(Data::Fetch { items, .. })) => {
                    let (mut uid, mut size) = (None, None);
                    for item in items.as_ref() {
                        match item {
                            MessageDataItem::Uid(u) => uid = Some(u.get()),
                            MessageDataItem::Rfc822Size(s) => size = Some(*s),
                            _ => {}
                        }
                    }
                    if let (Some(uid), Some(size)) = (uid, size) {
                        found.push((uid, size));
                    }
                }
                Untagged::Unreadable { .. } => unreadable += 1,
                Untagged::Response(_) => {}
            })
            .map_err(|e| self.broken(e))?;
        if status.kind != StatusKind::Ok {
            return Err(self.broken(format!("UID FETCH refused: {}", printable(status.text.as_ref()))));
        }
        if unreadable > 0 {
            return Err(self.broken(format!(
                "{unreadable} answers to UID FETCH do not parse: the message list would be incomplete"
            )));
        }
        // `from:*` includes the highest UID even when it is below `from` (RFC 3501 §6.4.8).
        found.retain(|(uid, _)| *uid >= from.get());
        found.sort_unstable();
        found.dedup_by_key(|(uid, _)| *uid);
        Ok(found)
    }

    /// The messages `uids` of the open folder, by UID. A message the server did not send
    /// (expunged meanwhile, or an answer that did not parse or was larger than
    /// [`Options::max_message`]) is missing from the result: the caller knows what it asked
    /// for. Also returns how many answers were skipped as larger than the limit.
    pub fn fetch(&mut self, uids: &[u32]) -> Result<(Vec<Fetched>, usize), ImportError> {
        let set: Vec<NonZeroU32> = uids.iter().filter_map(|u| NonZeroU32::new(*u)).collect();
        if set.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let set = SequenceSet::try_from(set).map_err(|e| self.broken(format!("UID set: {e}")))?;
        let fetch = CommandBody::fetch(
            set,
            vec![
                MessageDataItemName::Uid,
                MessageDataItemName::InternalDate,
                MessageDataItemName::BodyExt {
                    section: None,
                    partial: None,
                    peek: true,
                },
            ],
            true,
        )
        .map_err(|e| self.broken(format!("UID FETCH: {e:?}")))?;
        let mut fetched = Vec::new();
        let mut too_long = 0usize;
        let status = self
            .conn
            .command(fetch, &mut |response| match response {
                Untagged::Response(Response::Data(Data::Fetch { items, .. })) => {
                    let (mut uid, mut body, mut date) = (None, None, None);
                    for item in items.into_inner() {
                        match item {
                            MessageDataItem::Uid(u) => uid = Some(u.get()),
                            MessageDataItem::BodyExt {
                                section: None,
                                origin: None,
                                data,
                            } => body = data.0.map(|s| s.as_ref().to_vec()),
                            MessageDataItem::InternalDate(d) => date = Some(d.as_ref().to_rfc3339()),
                            _ => {}
                        }
                    }
                    if let (Some(uid), Some(bytes)) = (uid, body) {
                        fetched.push(Fetched {
                            uid,
                            bytes,
                            internal_date: date,
                        });
                    }
                }
                Untagged::Unreadable { too_long: true } => too_long += 1,
                _ => {}
            })
            .map_err(|e| self.broken(e))?;
        if status.kind != StatusKind::Ok {
            return Err(self.broken(format!("UID FETCH refused: {}", printable(status.text.as_ref()))));
        }
        fetched.sort_unstable_by_key(|f| f.uid);
        fetched.dedup_by_key(|f| f.uid);
        Ok((fetched, too_long))
    }

    /// Says goodbye, briefly; the import's outcome does not depend on it.
    pub fn logout(mut self) {
        self.conn.idle = None;
        self.conn.deadline = Instant::now() + Duration::from_secs(2);
        let _ = self.conn.command(CommandBody::Logout, &mut |_| {});
    }

    fn broken(&self, reason: String) -> ImportError {
        ImportError::Conversation {
            server: self.server.clone(),
            reason,
        }
    }
}

/// A status text with its response code, e.g. `[AUTHENTICATIONFAILED] Authentication failed.`
fn status_text(code: &Option<Code<'_>>, text: &str) -> String {
    match code {
        Some(Code::Other(other)) => format!(
            "[{}] {}",
            printable(&String::from_utf8_lossy(other.inner())),
            printable(text)
        ),
        Some(code) => format!("[{}] {}", printable(&format!("{code:?}")), printable(text)),
        None => printable(text),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server on loopback that greets, then answers the n-th command line with `answers[n]`
    /// (`{tag}` replaced by the command's tag); returns its URL and the lines it received.
    fn scripted(answers: Vec<String>) -> (SourceUrl, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(socket.try_clone().unwrap());
            let mut writer = socket;
            writer.write_all(b"* OK scripted\r\n").unwrap();
            let mut received = Vec::new();
            for answer in answers {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let tag = line.split(' ').next().unwrap_or_default().to_string();
                received.push(line);
                // A client that gave up closes the connection: writing may fail then.
                let _ = writer.write_all(answer.replace("{tag}", &tag).as_bytes());
            }
            received
        });
        let url = SourceUrl::parse(&format!("imap://alice@127.0.0.1:{port}/INBOX")).unwrap();
        (url, server)
    }

    fn options(max_message: u32) -> Options {
        let roots = rustls::RootCertStore::empty();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Options {
            tls: Arc::new(tls),
            allow_plaintext: true,
            timeout: Duration::from_secs(10),
            max_message,
        }
    }

    fn login_and_examine() -> Vec<String> {
        vec![
            "* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n".into(),
            "{tag} OK logged in\r\n".into(),
            "* 2 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n{tag} OK [READ-ONLY] done\r\n".into(),
        ]
    }

    #[test]
    fn a_literal_announced_above_the_limit_is_refused_before_it_is_read() {
        let mut answers = login_and_examine();
        // 4 GB announced, none of it sent: the client must not wait for (or allocate) it.
        answers.push(
            "* 1 FETCH (UID 1 INTERNALDATE \"06-Feb-2024 10:00:00 +0100\" BODY[] {4000000000}\r\n".into(),
        );
        let (url, server) = scripted(answers);
        let mut session = Session::open(&url, "pw", &options(1 << 20)).unwrap();
        assert!(session.plaintext);
        let folder = Folder::named("INBOX").unwrap();
        let selected = session.examine(&folder).unwrap();
        assert_eq!(
            selected,
            Selected {
                uidvalidity: 7,
                exists: 2
            }
        );
        let started = Instant::now();
        let e = session.fetch(&[1, 2]).unwrap_err().to_string();
        assert!(e.contains("announced 4000000000 bytes"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(session);
        let received = server.join().unwrap();
        assert!(
            received[3].contains("UID FETCH 1:2 (UID INTERNALDATE BODY.PEEK[])"),
            "{received:?}"
        );
    }

    #[test]
    fn answers_that_do_not_parse_cost_only_their_message() {
        let mut answers = login_and_examine();
        answers.push(
            "* 1 FETCH (UID 1 BODY[] {5}\r\nab\0cd)\r\n\
             * 2 FETCH (UID 2 INTERNALDATE \"06-Feb-2024 10:00:00 +0100\" BODY[] {7}\r\nhi)\r\n\r\n)\r\n\
             {tag} OK done\r\n"
                .into(),
        );
        let (url, server) = scripted(answers);
        let mut session = Session::open(&url, "pw", &options(1 << 20)).unwrap();
        session.examine(&Folder::named("INBOX").unwrap()).unwrap();
        let (fetched, too_long) = session.fetch(&[1, 2]).unwrap();
        assert_eq!(too_long, 0);
        // UID 1's literal holds a NUL, which IMAP literals may not: skipped whole, and the
        // literal of UID 2, which looks like the end of a response, is read as data.
        assert_eq!(fetched.len(), 1, "{fetched:?}");
        assert_eq!(fetched[0].uid, 2);
        assert_eq!(fetched[0].bytes, b"hi)\r\n\r\n");
        assert_eq!(
            fetched[0].internal_date.as_deref(),
            Some("2024-02-06T10:00:00+01:00")
        );
        drop(session);
        server.join().unwrap();
    }

    #[test]
    fn no_starttls_means_no_password_without_permission() {
        let (url, server) = scripted(login_and_examine());
        let mut refuse = options(1 << 20);
        refuse.allow_plaintext = false;
        let Err(e) = Session::open(&url, "secret-pw", &refuse) else {
            panic!("logged in without TLS");
        };
        assert!(matches!(e, ImportError::Plaintext { .. }), "{e}");
        let received = server.join().unwrap();
        assert_eq!(received.len(), 1, "{received:?}");
        assert!(received[0].contains("CAPABILITY"));
        assert!(!received.concat().contains("secret-pw"));
    }
}
