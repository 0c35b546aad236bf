//! Export bundles through `verify-bundle` (archive-verify/src/bundle/check.rs). A bundle comes
//! from outside — from whoever handed it to the auditor — so any bytes must give a report,
//! never a panic, a hang or an allocation sized by a number the file states
//! (`CappedAllocator` aborts above 256 MiB): ZIP directories, JSON proofs, leaves, listings.
//!
//! Through `verify_path`, so a container of volumes is read too (check/container.rs), and the
//! reports then go through the volume-set check (check/volumes.rs).
//!
//! Input: the bundle file. The seeds are small genuine bundles (a range and a filter export, a
//! volume, a container of two volumes), so mutations reach past the signature into proofs,
//! leaves, rows, the range walk and the container.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use archive_verify::bundle::check::{check_volume_set, verify_path, Options};
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
    // A bundle, or a container whose volumes are read in place.
    let reports = verify_path(path, &Options::default(), &mut |_, _, _| {}).expect("an existing file is always read");
    for (_, report) in &reports {
        // A verdict is one of the two, and a valid one names no problem.
        if report.is_valid() && report.manifest.is_some() {
            assert!(report.problems.is_empty() && report.checkpoint.is_some());
        }
    }
    // The reports as a set, and each given twice: a volume's claims, whatever they say, give
    // a verdict; the same volume twice is never a whole export of several.
    let named: Vec<(&str, &_)> = reports.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let set = check_volume_set(&named);
    let twice: Vec<(&str, &_)> = named.iter().chain(named.iter()).copied().collect();
    let doubled = check_volume_set(&twice);
    if reports.iter().any(|(_, r)| r.manifest.as_ref().is_some_and(|m| m.volume.is_some()) && r.checkpoint.is_some()) {
        assert!(!doubled.is_valid());
    }
    std::hint::black_box(set);
});
