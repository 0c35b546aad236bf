//! Everything needed to check mailvault's evidence offline, and nothing else: the leaf and
//! envelope encodings, RFC 6962 Merkle tree hashing and proof verification, C2SP checkpoints
//! in signed notes. `mailvault verify` (via archive-core) and `mailvault verify-bundle` both
//! use these functions, so there is one implementation of each check — and it is small enough
//! for an auditor to read and build alone (docs/FORMAT.md describes the same bytes).

pub mod bundle;
pub mod cosignature;
pub mod envelope;
mod error;
pub mod gdpdu;
pub mod leaf;
pub mod merkle;
pub mod note;
pub mod pipeline;
pub mod timestamp;

pub use error::{Error, Result};
