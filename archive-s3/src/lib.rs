//! Sealed segments of the mailvault log in S3-compatible object storage with Object Lock in
//! COMPLIANCE mode (the WORM storage auditors accept): the `[storage.s3]` settings and their
//! credentials (`settings.rs`), and the bucket operations offload and `verify --s3` need
//! (`bucket.rs`). It knows nothing of the log's format: callers hand it files and keys. Its
//! own crate so that the AWS SDK and its async runtime stay out of archive-core.

pub mod bucket;
pub mod settings;

use std::path::PathBuf;

pub use bucket::{blake3_of_file, client, Bucket, Listing, ObjectInfo, ObjectStream, ObjectVersion, Put};
pub use settings::{parse_size, ByteSize, Credentials, S3Settings};

/// What went wrong talking to the bucket or reading what it needs.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// No usable credentials (the message never contains a secret).
    #[error("{0}")]
    Credentials(String),
    /// A local file could not be read.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The object store refused a request or could not be reached.
    #[error("S3 {op} {key}: {message}{}", .status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Request {
        op: &'static str,
        key: String,
        message: String,
        status: Option<u16>,
    },
}

/// Results of this crate.
pub type S3Result<T> = Result<T, S3Error>;
