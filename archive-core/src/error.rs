//! The one error type of `archive-core`: every variant says what broke and where, so the CLI
//! can print it as one actionable line.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the archive core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error, with the file it happened on.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Bytes on disk do not match what the format or the hash chain requires.
    /// `seq` is the record the damage was found at (the record that would have been there).
    #[error("record seq {seq} in {segment} at offset {offset}: {reason}")]
    Corrupt {
        seq: u64,
        segment: PathBuf,
        offset: u64,
        reason: String,
    },

    /// A record's bytes could not be read from its segment file (an I/O error such as EIO
    /// from a failing disk, or a file that ends before the record). Named by where the record
    /// is, so an operator knows which segment to restore; `seq` where the reader knew which
    /// record it was reading.
    #[error(
        "record {}in {} at offset {offset} cannot be read: {source}",
        seq.map(|s| format!("seq {s} ")).unwrap_or_default(),
        segment.display()
    )]
    Unreadable {
        seq: Option<u64>,
        segment: PathBuf,
        offset: u64,
        #[source]
        source: std::io::Error,
    },

    /// A record of a segment that was offloaded and evicted locally could not be read from
    /// object storage (not configured, unreachable, or the object version is missing): names
    /// the segment and where its bytes are, so an operator knows what to look at.
    #[error("record seq {seq} is in segment {segment}, evicted locally; reading it from {place}: {reason}")]
    Remote {
        seq: u64,
        segment: String,
        place: String,
        reason: String,
    },

    /// The store is not a mailvault store, or is of a format version this build cannot read.
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },

    /// Bytes that should be in one of the archive's own encodings (a leaf, an envelope, a key
    /// file, a signed note, a search cursor) do not decode; `what` names the encoding. Where
    /// the bytes came from the log, the reader reports [`Error::Corrupt`] with the location.
    #[error("{what}: {reason}")]
    Malformed { what: &'static str, reason: String },

    /// A request that cannot be met as asked (an invalid address, user name, password or
    /// proof range): asking again unchanged fails the same way.
    #[error("{0}")]
    Rejected(String),

    /// Something to append is larger than the log format holds.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },

    /// A search query that is not the query language, is too deep or too long, or has
    /// nothing to search for.
    #[error("query: {0}")]
    Query(crate::search::QueryError),

    /// No user of that name.
    #[error("no user named {0:?}")]
    NoSuchUser(String),

    /// A user of that name exists already.
    #[error("user {name} already exists{}", if *disabled { " (disabled; `mailvault user enable` gives it back its access)" } else { "" })]
    UserExists { name: String, disabled: bool },

    /// An address given to a user belongs to another user already (or is another user's
    /// login name): a login by it would be ambiguous.
    #[error("{address} is already {}{}", if *is_name { format!("the login name of user {user}") } else { format!("an address of user {user}") }, if *disabled { " (disabled)" } else { "" })]
    AddressTaken {
        address: String,
        user: String,
        disabled: bool,
        /// The address is the other user's name, not one of their addresses.
        is_name: bool,
    },

    /// A file that creating a store would write exists already; nothing is overwritten.
    #[error("{}: {what} already exists here; refusing to overwrite it", path.display())]
    Exists { path: PathBuf, what: &'static str },

    /// No signing key where one was looked for. Without it no checkpoint can be signed, so
    /// nothing can be acknowledged: the store opens for reading only.
    #[error(
        "no signing key at {}: without it the archive signs no checkpoint and accepts no mail; \
         `--key FILE` (or MAILVAULT_KEY) says where it is kept, a lost one is restored from its backup",
        .0.display()
    )]
    NoKey(PathBuf),

    /// The key file signs for a different log than the store's.
    #[error("{}: this key signs for log {key_log:?}, the store is {store_log:?}", key.display())]
    WrongKey {
        key: PathBuf,
        key_log: String,
        store_log: String,
    },

    /// The record at `seq` exists but is not a message.
    #[error("record {seq} is a {kind} record, not a message")]
    NotAMessage { seq: u64, kind: &'static str },

    /// The machine did not give what the archive needs (randomness, a thread, a compressor);
    /// asking again later may work.
    #[error("{0}")]
    System(String),

    /// An internal rule did not hold: a bug in mailvault, not a problem of the request or
    /// the store.
    #[error("internal error (a bug in mailvault; please report it): {0}")]
    Internal(String),

    /// The principal has no mailbox of that name (whether or not someone else has one).
    #[error("no mailbox {0:?} for this principal")]
    NoSuchMailbox(String),

    /// An earlier write or fsync failed, so nothing more may be appended until the store is
    /// reopened (and recovery has checked the tail); reads may still work.
    #[error("store is unusable until reopened: {0}")]
    Unusable(String),

    /// A record sequence number that the log does not hold.
    #[error("no record with seq {0}")]
    NoSuchRecord(u64),

    /// A signature, checkpoint or proof that does not verify.
    #[error("verification failed: {0}")]
    Verification(String),

    /// Another process holds the store's write lock.
    #[error("{0} is in use by another mailvault process (only one writer may open a store)")]
    Locked(PathBuf),

    /// The derived key-value index failed; it can always be rebuilt with `mailvault reindex`.
    #[error("key-value index: {0}")]
    Index(String),

    /// The derived search index failed; it can always be rebuilt with `mailvault reindex`.
    #[error("search index: {0}")]
    Search(String),

    /// A search ran out of time or was cancelled before it finished.
    #[error("search stopped: {0}")]
    SearchStopped(crate::search::Stopped),
}

/// Whose fault an [`Error`] is, which decides the answer a front door gives: each maps it to
/// its protocol (IMAP response codes, SMTP reply codes, CLI exit status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The request: asking again unchanged fails the same way (IMAP `BAD` or `NO [CANNOT]`,
    /// SMTP 5xx, CLI usage error).
    Request,
    /// What was asked for does not exist for the asker (IMAP `NO [NONEXISTENT]`).
    NotFound,
    /// The machine or the store right now (I/O, a failed fsync, a lock, an index): asking
    /// again later may work (IMAP `NO [UNAVAILABLE]`, SMTP 451).
    Unavailable,
    /// Stored data is damaged or mailvault has a bug: an operator must look (IMAP
    /// `NO [SERVERBUG]`, SMTP 451 so the sender keeps the mail meanwhile).
    Damaged,
    /// A search used up its time or was cancelled (IMAP `NO [LIMIT]`).
    Limit,
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An I/O error reading the record at `offset` of `segment`.
    pub(crate) fn unreadable(segment: &std::path::Path, offset: u64, source: std::io::Error) -> Self {
        Error::Unreadable {
            seq: None,
            segment: segment.to_path_buf(),
            offset,
            source,
        }
    }

    /// Names the record an [`Error::Unreadable`] was about, when the reader knows it.
    pub(crate) fn of_record(self, record: u64) -> Self {
        match self {
            Error::Unreadable {
                seq: None,
                segment,
                offset,
                source,
            } => Error::Unreadable {
                seq: Some(record),
                segment,
                offset,
                source,
            },
            other => other,
        }
    }

    /// Whose fault this error is (see [`Fault`]).
    pub fn fault(&self) -> Fault {
        match self {
            Error::Malformed { .. }
            | Error::Rejected(_)
            | Error::TooLarge { .. }
            | Error::Query(_)
            | Error::UserExists { .. }
            | Error::AddressTaken { .. }
            | Error::Exists { .. }
            | Error::WrongKey { .. }
            | Error::NotAMessage { .. } => Fault::Request,
            Error::NoSuchMailbox(_) | Error::NoSuchUser(_) | Error::NoSuchRecord(_) => Fault::NotFound,
            Error::Io { .. }
            | Error::NoKey(_)
            | Error::Unusable(_)
            | Error::Locked(_)
            | Error::Index(_)
            | Error::Search(_)
            | Error::Remote { .. }
            | Error::System(_) => Fault::Unavailable,
            // A record the disk cannot give back stays unreadable until an operator restores
            // its segment: asking again does not help.
            Error::Corrupt { .. }
            | Error::Unreadable { .. }
            | Error::Format { .. }
            | Error::Verification(_)
            | Error::Internal(_) => Fault::Damaged,
            Error::SearchStopped(_) => Fault::Limit,
        }
    }
}

/// Attaches a path to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

macro_rules! index_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Index(e.to_string())
            }
        }
    )*};
}
index_error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The verifier's two failures keep their meaning here: bytes that are not the format, and
/// evidence that does not verify.
impl From<archive_verify::Error> for Error {
    fn from(e: archive_verify::Error) -> Self {
        match e {
            archive_verify::Error::Malformed { what, reason } => Error::Malformed { what, reason },
            archive_verify::Error::Verification(reason) => Error::Verification(reason),
        }
    }
}
