//! Read-only IMAP4rev1 over the archive: mailboxes are views of the log computed by
//! `archive_core::views`, every read goes through `Store::view_message` (so no command can
//! skip the access check), and every mutating command is refused.
//!
//! Implemented (issue #5, first increment):
//! - listeners: plain (STARTTLS; LOGINDISABLED before TLS unless the listener is configured
//!   with `allow_plaintext_login`) and implicit TLS, self-signed certificate by default; limits
//!   on command and literal size, login and autologout timers, connections per client network,
//!   waiting (not logged in) and logged-in connections in separate pools ([`ImapConfig`]);
//! - CAPABILITY, NOOP, LOGOUT, ID, ENABLE, STARTTLS, LOGIN, AUTHENTICATE PLAIN (SASL-IR);
//! - NAMESPACE, LIST/LSUB (SPECIAL-USE \Sent, \All), STATUS, SELECT/EXAMINE ([READ-ONLY],
//!   PERMANENTFLAGS ()), CHECK, CLOSE, UNSELECT, IDLE (EXISTS within a second);
//! - FETCH/UID FETCH: FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY, BODYSTRUCTURE,
//!   BODY[section]<partial> and BODY.PEEK (HEADER, TEXT, MIME, HEADER.FIELDS(.NOT), parts),
//!   RFC822(.HEADER/.TEXT), BINARY[part]<partial>, BINARY.SIZE; BODY[] is the stored bytes
//!   (NUL, which IMAP strings cannot carry, is sent as 0x80; BINARY[] is exact);
//! - SEARCH/UID SEARCH: RFC 3501 keys; content keys via the full-text index as the user;
//!   ESEARCH (RFC 4731: `RETURN (MIN MAX ALL COUNT)`), which imap-codec cannot parse, by
//!   cutting the RETURN clause out of the command line before it does (`protocol`, `esearch`);
//! - SORT/UID SORT (RFC 5256, SORT=DISPLAY per RFC 5957) and THREAD/UID THREAD
//!   (ORDEREDSUBJECT, REFERENCES) over what SEARCH finds, ordered by fields of the header
//!   block only (`mime::SortFields`, `threading`);
//! - STORE/UID STORE answer OK and change nothing (FETCH reports the unchanged flags), as
//!   Dovecot does for a read-only ACL; every other mutating command answers NO [READ-ONLY] or
//!   NO [CANNOT];
//! - UIDNEXT moves only when a message appears in the mailbox; nothing is sent after
//!   STARTTLS before the client's next command; every session the server ends hears
//!   `* BYE <why>` first (shutdown, limits, timeouts);
//! - audit records: login, failed login, SELECT/EXAMINE, one per content-reading FETCH.
//!
//! Not yet: pass-through authentication. Every message is reported `\Seen` and nothing
//! else (no writable flags). A partial BINARY reply cannot echo its `<origin>` (imap-codec has
//! no field for it); BINARY of an unknown transfer encoding answers NO [UNKNOWN-CTE].

mod command;
mod condstore;
mod config;
mod envelope_cache;
mod esearch;
mod failure;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod mime;
mod pool;
mod protocol;
mod sequence;
mod server;
mod session;
mod threading;
mod tls;

pub use config::{ImapConfig, ImapLimits};
pub use server::{start, Listening, StartError};
