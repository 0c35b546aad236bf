//! Read-only IMAP4rev1 over the archive: mailboxes are views of the log computed by
//! `archive_core::views`, every read goes through `Store::view_message` (so no command can
//! skip the access check), and every mutating command is refused.
//!
//! Implemented (issue #5, first increment):
//! - listeners: plain (STARTTLS; LOGINDISABLED before TLS unless the listener is configured
//!   with `allow_plaintext_login`) and implicit TLS, self-signed certificate by default; limits
//!   on command and literal size, login and autologout timers, connections per client network,
//!   waiting (not logged in) and logged-in connections in separate pools ([`ImapConfig`]);
//! - CAPABILITY, NOOP, LOGOUT, ID, ENABLE (CONDSTORE), STARTTLS, LOGIN, AUTHENTICATE PLAIN
//!   (SASL-IR); LITERAL+ (RFC 7888: `{n+}` literals in any command; one over the literal
//!   limit is answered BAD once it has arrived, and its bytes are never taken for commands);
//! - NAMESPACE, LIST/LSUB (SPECIAL-USE \Sent, \All), STATUS, SELECT ([READ-WRITE] with
//!   PERMANENTFLAGS (): commands are accepted, no flag is kept) and EXAMINE ([READ-ONLY]),
//!   CHECK, CLOSE, UNSELECT, IDLE (EXISTS within a second);
//! - CONDSTORE (RFC 7162 §3.1, `condstore`): a message's MODSEQ is its UID + 1 and a
//!   mailbox's HIGHESTMODSEQ its UIDNEXT, since a mailbox changes only by new mail; SELECT and
//!   STATUS report it, FETCH MODSEQ and CHANGEDSINCE, SEARCH/SORT MODSEQ, STORE
//!   UNCHANGEDSINCE (`[MODIFIED]` above the value; nothing changes below it), `[CLOSED]`;
//! - FETCH/UID FETCH: FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY, BODYSTRUCTURE,
//!   BODY[section]<partial> and BODY.PEEK (HEADER, TEXT, MIME, HEADER.FIELDS(.NOT), parts),
//!   RFC822(.HEADER/.TEXT), BINARY[part]<partial>, BINARY.SIZE; BODY[] is the stored bytes
//!   (NUL, which IMAP strings cannot carry, is sent as 0x80; BINARY[] is exact);
//! - SEARCH/UID SEARCH: RFC 3501 keys (FROM/TO/CC/BCC over the ENVELOPE's address lists);
//!   TEXT and BODY as words via the full-text index as the user (docs/SEARCH.md); ESEARCH
//!   (RFC 4731: `RETURN (MIN MAX ALL COUNT)`) and ESORT (RFC 5267 §3, the same on SORT),
//!   which imap-codec cannot parse, by cutting the RETURN clause out of the command line
//!   before it does (`protocol`, `esearch`);
//! - SORT/UID SORT (RFC 5256, SORT=DISPLAY per RFC 5957) and THREAD/UID THREAD
//!   (ORDEREDSUBJECT, REFERENCES) over what SEARCH finds, ordered by fields of the header
//!   block only (`mime::SortFields`, `threading`);
//! - STORE/UID STORE answer OK and change nothing (FETCH reports the unchanged flags), and
//!   EXPUNGE answers OK and expunges nothing (no message is ever `\Deleted`), as Dovecot does
//!   for a read-only ACL; every other mutating command (COPY, MOVE, UID EXPUNGE, APPEND,
//!   CREATE, …) answers NO [READ-ONLY] or NO [CANNOT];
//! - UIDNEXT moves only when a message appears in the mailbox; nothing is sent after
//!   STARTTLS before the client's next command; every session the server ends hears
//!   `* BYE <why>` first (shutdown, limits, timeouts);
//! - audit records: login, failed login, SELECT/EXAMINE, one per content-reading FETCH.
//!
//! Not offered: QRESYNC (its VANISHED responses and SELECT parameter are not implemented),
//! CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4: they need UPDATE contexts, unsolicited
//! ADDTO/REMOVEFROM updates in sort order as mail arrives, and CANCELUPDATE, a command
//! imap-codec cannot parse), UIDPLUS and MOVE (they report on writes the archive refuses).
//! Every message is reported `\Seen` and nothing else (no writable flags). A partial BINARY
//! reply names its origin (`BINARY[1]<0>`), which imap-codec has no field for, so that item
//! is encoded by hand; BINARY of an unknown transfer encoding answers NO [UNKNOWN-CTE].

mod command;
mod condstore;
mod config;
mod envelope_cache;
mod esearch;
mod failure;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
mod mime;
mod pool;
mod protocol;
mod sequence;
mod server;
mod session;
mod threading;
mod tls;

pub use config::{ImapConfig, ImapLimits};
pub use server::{start, Listening, Sessions, StartError};
/// Where the IMAP certificate comes from (for `mailvault doctor` to check what `start` loads).
pub use tls::certificate_source;
