//! Set-up shared by archive-core's integration tests: temp stores on the real disk and
//! hand-built envelopes.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use archive_core::{Envelope, Store};

/// A temp dir on the real disk (not tmpfs), so fsync means something.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

/// Creates a store (and its key) in `dir/store`.
pub fn create(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    Store::create(&store, &store.join("signing.key")).expect("create");
    store
}

/// An LMTP delivery envelope.
pub fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope::lmtp(from, to)
}
