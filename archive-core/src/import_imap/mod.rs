//! The IMAP side of `mailvault import imap://…`: where the mailbox is ([`SourceUrl`]), the
//! folder names ([`Folder`]) and the conversation that reads it ([`Session`]). What is done
//! with the messages — appending them, remembering progress, reporting — is the binary's.
//!
//! It lives here, next to pass-through logins, because both talk to IMAP servers through the
//! one client connection of `crate::imap_client` (socket, TLS, imap-codec framing), and the
//! core already owns rustls and imap-codec; the binary gets a small typed API instead of a
//! second IMAP client.
//!
//! Security: the password goes only over TLS (`imaps://`, or `imap://` upgraded with
//! STARTTLS), after the server's certificate was verified; a server on `imap://` that does
//! not offer STARTTLS gets no password unless the caller allows plain text explicitly
//! ([`Options::allow_plaintext`]). Nothing here ever writes the password anywhere: no error
//! message, no source string holds it.

mod session;

use std::fmt::Write as _;

use imap_codec::imap_types::mailbox::Mailbox;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use rustls::pki_types::ServerName;

pub use crate::access::upstream::endpoint::tls_config;
pub use session::{Fetched, Options, Selected, Session};

/// What went wrong, in words an operator can act on. Server text quoted in a message is
/// bounded and printable; no message holds the password.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The URL is not `imap[s]://user@host[:port][/folder]`.
    #[error("{0}")]
    Url(String),
    /// Could not reach the server or make the connection private (network, TLS, certificate).
    #[error("{server}: {reason}")]
    Connect { server: String, reason: String },
    /// `imap://` to a server that does not offer STARTTLS, without permission for plain text.
    #[error(
        "{server} does not offer STARTTLS: no password was sent. Use imaps:// if the server has \
         it, or --allow-plaintext to send the password unencrypted (only on a network you trust)"
    )]
    Plaintext { server: String },
    /// The server refused the user name and password.
    #[error("{server}: login as {user} refused: {text}")]
    LoginRejected {
        server: String,
        user: String,
        text: String,
    },
    /// The server refused to open a folder (it does not exist, or no right to read it).
    #[error("{folder}: the server refused to open it: {text}")]
    Folder { folder: String, text: String },
    /// The conversation broke after the login (connection lost, timeout, protocol error).
    #[error("{server}: {reason}")]
    Conversation { server: String, reason: String },
}

/// Characters escaped in the user part of a URL (RFC 3986 `userinfo` minus `:` and `;`, which
/// RFC 5092 gives a meaning there).
const USER: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Characters escaped in a folder name of a URL: as in the user part, but `/` (the usual
/// hierarchy delimiter), `:` and `@` stay.
const FOLDER: &AsciiSet = &USER.remove(b'/').remove(b':').remove(b'@');

/// A parsed `imap://user@host[:port]/Folder` or `imaps://…` (RFC 5092, without its `;AUTH=`
/// and message parts): the user and folder percent-decoded (`%40` for an `@` in the user,
/// `%20` for a space, UTF-8 for anything else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceUrl {
    /// `imaps://` (TLS from the first byte) rather than `imap://` (STARTTLS when offered).
    pub implicit_tls: bool,
    /// Host name or IP address, as written (IPv6 without brackets).
    pub host: String,
    /// TCP port (993 for imaps, 143 for imap unless given).
    pub port: u16,
    /// The name the server's certificate must be valid for.
    pub server_name: ServerName<'static>,
    /// The login name.
    pub user: String,
    /// The folder, if the URL names one.
    pub folder: Option<String>,
}

impl SourceUrl {
    /// Parses a URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<SourceUrl, ImportError> {
        let bad = |why: &str| ImportError::Url(format!("{url:?}: {why}"));
        let usage = "use imaps://user@host[:port]/Folder (TLS) or imap://user@host[:port]/Folder";
        let (scheme, rest) = match url.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("imaps") => ("imaps", rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("imap") => ("imap", rest),
            _ => return Err(bad(usage)),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, Some(path)),
            None => (rest, None),
        };
        let Some((userinfo, hostport)) = authority.rsplit_once('@') else {
            return Err(bad(&format!("no user name ({usage})")));
        };
        if userinfo.contains(':') {
            // Not repeated back: the URL holds a password.
            return Err(ImportError::Url(
                "a password does not belong in the URL (it would be seen in the process list and \
                 the shell history): use --password-file or the prompt"
                    .into(),
            ));
        }
        if userinfo.contains(';') {
            return Err(bad(
                "`;AUTH=` is not supported: the login is LOGIN with a password",
            ));
        }
        let user = decode(userinfo).map_err(|e| bad(&format!("user name: {e}")))?;
        if user.is_empty() {
            return Err(bad(&format!("no user name ({usage})")));
        }
        let endpoint = crate::access::upstream::endpoint::Endpoint::parse(&format!("{scheme}://{hostport}"))
            .map_err(|e| ImportError::Url(e.replace("no user, path or query", usage)))?;
        let folder = match path.map(|p| p.strip_suffix('/').unwrap_or(p)) {
            None | Some("") => None,
            Some(p) if p.contains(['?', '#', ';']) => {
                return Err(bad(
                    "a folder name with `?`, `#` or `;` must have them percent-encoded (%3F, %23, %3B)",
                ))
            }
            Some(p) => Some(decode(p).map_err(|e| bad(&format!("folder: {e}")))?),
        };
        Ok(SourceUrl {
            implicit_tls: scheme == "imaps",
            host: endpoint.host,
            port: endpoint.port,
            server_name: endpoint.server_name,
            user,
            folder,
        })
    }

    /// `imaps://user@host:port` with the user percent-encoded: the server and account, for
    /// messages and the progress file. Never holds a password.
    pub fn account(&self) -> String {
        let scheme = if self.implicit_tls { "imaps" } else { "imap" };
        let user = utf8_percent_encode(&self.user, USER);
        if self.host.contains(':') {
            format!("{scheme}://{user}@[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{user}@{}:{}", self.host, self.port)
        }
    }

    /// The server alone, for messages: `host:port`.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL of a folder (RFC 5092: the name as UTF-8, percent-encoded).
    pub fn folder_url(&self, folder: &Folder) -> String {
        let mut url = self.account();
        url.push('/');
        let _ = write!(url, "{}", utf8_percent_encode(&folder.name, FOLDER));
        url
    }

    /// The URL of one message (RFC 5092 `;UIDVALIDITY=…/;UID=…`).
    pub fn message_url(&self, folder: &Folder, uidvalidity: u32, uid: u32) -> String {
        format!("{};UIDVALIDITY={uidvalidity}/;UID={uid}", self.folder_url(folder))
    }
}

/// Percent-decodes to UTF-8.
fn decode(s: &str) -> Result<String, String> {
    if s.contains(|c: char| c.is_control()) {
        return Err("control characters are not allowed".into());
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "percent-encoded bytes that are not UTF-8".into())
}

/// A folder of the account: its name for people (UTF-8) and as the server spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder {
    /// The name as people read it (decoded from modified UTF-7 where that is valid, else as
    /// the server sent it).
    pub name: String,
    /// The name on the wire.
    mailbox: Mailbox<'static>,
}

impl Folder {
    /// A folder named by a person (from the URL): encoded to modified UTF-7 for the server.
    pub fn named(name: &str) -> Result<Folder, ImportError> {
        let wire = if name.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            utf7_imap::encode_utf7_imap(name.to_string())
        };
        let mailbox = Mailbox::try_from(wire)
            .map_err(|e| ImportError::Url(format!("folder {name:?} cannot be sent to a server: {e}")))?;
        Ok(Folder {
            name: name.to_string(),
            mailbox,
        })
    }

    /// A folder as a server listed it.
    fn listed(mailbox: Mailbox<'static>) -> Folder {
        let name = match &mailbox {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(other) => {
                let raw = String::from_utf8_lossy(other.as_ref()).into_owned();
                if is_modified_utf7(&raw) {
                    utf7_imap::decode_utf7_imap(raw)
                } else {
                    raw
                }
            }
        };
        Folder { name, mailbox }
    }
}

/// Whether every `&…-` run of `name` is valid modified base64 (RFC 3501 §5.1.3), so that
/// utf7-imap (which panics on bad base64) can decode it. A server is free to send any name.
fn is_modified_utf7(name: &str) -> bool {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    use base64::Engine;
    const MUTF7: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::IMAP_MUTF7,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    let mut rest = name;
    // The runs are found the way utf7-imap finds them: `&`, then everything up to the next `-`.
    while let Some(start) = rest.find('&') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('-') else {
            return true;
        };
        let run = &after[..end];
        if !run.is_empty() && MUTF7.decode(run).is_err() {
            return false;
        }
        rest = &after[end + 1..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_user_host_port_and_folder() {
        let u = SourceUrl::parse("imaps://alice%40example.com@mail.example.com/Work%20Stuff").unwrap();
        assert!(u.implicit_tls);
        assert_eq!(
            (u.user.as_str(), u.host.as_str(), u.port),
            ("alice@example.com", "mail.example.com", 993)
        );
        assert_eq!(u.folder.as_deref(), Some("Work Stuff"));
        assert_eq!(u.account(), "imaps://alice%40example.com@mail.example.com:993");

        let u = SourceUrl::parse("IMAP://bob@[::1]:1143/Entw%C3%BCrfe/").unwrap();
        assert!(!u.implicit_tls);
        assert_eq!((u.host.as_str(), u.port), ("::1", 1143));
        assert_eq!(u.folder.as_deref(), Some("Entwürfe"));
        let folder = Folder::named("Entwürfe").unwrap();
        assert_eq!(
            u.message_url(&folder, 7, 42),
            "imap://bob@[::1]:1143/Entw%C3%BCrfe;UIDVALIDITY=7/;UID=42"
        );

        // A raw `@` in the user is taken as part of it (the last `@` ends the user).
        let u = SourceUrl::parse("imap://carol@example.com@127.0.0.1").unwrap();
        assert_eq!(u.user, "carol@example.com");
        assert_eq!(u.folder, None);
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (url, says) in [
            ("mail.example.com/INBOX", "use imaps://"),
            ("https://alice@example.com/INBOX", "use imaps://"),
            ("imaps://mail.example.com/INBOX", "no user name"),
            (
                "imaps://alice:secret@mail.example.com/INBOX",
                "password does not belong",
            ),
            ("imaps://alice;AUTH=*@mail.example.com/INBOX", "AUTH"),
            ("imaps://alice@mail.example.com:0/INBOX", "not a port number"),
            ("imaps://alice@mail.example.com/a?b", "percent-encoded"),
            ("imaps://alice@mail.example.com/%FF", "not UTF-8"),
        ] {
            let e = SourceUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn folder_names_are_modified_utf7_on_the_wire() {
        let f = Folder::named("Entwürfe & Co").unwrap();
        match &f.mailbox {
            Mailbox::Other(o) => assert_eq!(o.as_ref(), b"Entw&APw-rfe &- Co"),
            Mailbox::Inbox => panic!("not INBOX"),
        }
        assert_eq!(Folder::named("inbox").unwrap().mailbox, Mailbox::Inbox);
        let listed = Folder::listed(Mailbox::try_from("Entw&APw-rfe &- Co").unwrap().into_static());
        assert_eq!(listed.name, "Entwürfe & Co");
        // Names that are not valid modified UTF-7 are shown as sent, without a panic.
        for raw in ["a&Zm9v!-b", "&A-", "x&", "&AP/-"] {
            let listed = Folder::listed(Mailbox::try_from(raw).unwrap().into_static());
            assert_eq!(listed.name, raw);
        }
    }

    use imap_codec::imap_types::IntoStatic;
}
