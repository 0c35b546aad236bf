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

    /// The store is not a mailvault store, or is of a format version this build cannot read.
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },

    /// The caller asked for something that does not exist or cannot be done.
    #[error("{0}")]
    Invalid(String),

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

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
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
