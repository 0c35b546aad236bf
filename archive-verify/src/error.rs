//! The two ways a check fails: bytes that are not the format, and a format that does not verify.

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Bytes that should be in one of the archive's encodings (a leaf, an envelope, a verifier
    /// key, a signed note) do not decode; `what` names the encoding.
    #[error("{what}: {reason}")]
    Malformed { what: &'static str, reason: String },

    /// Well-formed input that does not verify: a signature, a proof, a hash.
    #[error("{0}")]
    Verification(String),
}

/// Result of this crate's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;
