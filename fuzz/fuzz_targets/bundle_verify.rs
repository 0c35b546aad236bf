//! Export bundles through `verify-bundle` (archive-verify/src/bundle/check.rs). A bundle comes
//! from outside — from whoever handed it to the auditor — so any bytes must give a report,
//! never a panic, a hang or an allocation sized by a number the file states
//! (`CappedAllocator` aborts above 256 MiB): ZIP directories, JSON proofs, leaves, listings.
//!
//! The report then goes through the volume-set check (archive-verify/src/bundle/check/volumes.rs).
//!
//! Input: the bundle file. The seeds are small genuine bundles (a range and a filter export),
//! so mutations reach past the signature into proofs, leaves, rows and the range walk.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use archive_verify::bundle::check::{check_volume_set, verify_bundle, Options};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: mailvault_fuzz::CappedAllocator = mailvault_fuzz::CappedAllocator;

fn bundle_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| mailvault_fuzz::scratch_dir().join("bundle.zip"))
}

fuzz_target!(|data: &[u8]| {
    let path = bundle_path();
    std::fs::write(path, data).expect("write the bundle");
    let report = verify_bundle(path, &Options::default()).expect("an existing file is always read");
    // A verdict is one of the two, and a valid one names no problem.
    if report.is_valid() {
        assert!(report.problems.is_empty() && report.checkpoint.is_some());
    }
    // The bundle given as a set, alone and twice: a volume's claims, whatever they say, give
    // a verdict; the same volume twice is never a whole export of several.
    let alone = check_volume_set(&[("a", &report)]);
    let twice = check_volume_set(&[("a", &report), ("b", &report)]);
    if report.manifest.as_ref().is_some_and(|m| m.volume.is_some()) && report.checkpoint.is_some() {
        assert!(!twice.is_valid());
    }
    std::hint::black_box(alone);
});
