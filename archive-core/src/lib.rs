//! `archive-core`: the mailvault log and everything derived from it.
//!
//! - [`log`]: segment files, record framing, the blake3 chain, the RFC 6962 Merkle tree and
//!   signed checkpoints — the only source of truth;
//! - [`store`]: the append path (durable, group-committed), recovery and reads;
//! - [`index`]: derived state rebuilt from the log;
//! - [`search`]: the full-text index (derived too), its query language and scoped results;
//! - [`verify`]: recomputing everything from the raw bytes;
//! - [`export`]: what `mailvault export` writes (the mbox format, and its reader for `import`);
//! - [`anchors`]: witness cosignatures and time-stamps of checkpoints, kept write-once;
//! - [`access`]: local users, login checks and failed-login limits for the front doors;
//! - [`views`]: mailboxes as per-principal views of the log, and the checked read path;
//! - [`metrics`]: the names of what the store and the login gate record through the
//!   `metrics` facade (the binary installs the recorder, if any).
//!
//! The write API has one verb: append. Nothing here opens a segment for writing anywhere but
//! its end, and there is no delete or edit operation at any layer.

pub mod access;
pub mod anchors;
pub mod audit;
pub use archive_verify::envelope;
mod error;
pub mod export;
pub(crate) mod imap_client;
pub mod import_imap;
pub mod index;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod mime_parts;
pub mod search;
pub mod status;
pub mod store;
pub mod tls;
pub mod tls_probe;
pub mod verify;
pub mod views;

pub use envelope::{Envelope, Recipient};
pub(crate) use error::IoContext;
pub use error::{Error, Fault, Result};
pub use store::{
    Appended, AuditedAccess, Health, OnDuplicate, SearchIndexing, Store, StoreConfig, StoreStats,
};
