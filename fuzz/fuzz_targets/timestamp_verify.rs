//! RFC 3161 time-stamp tokens through `archive_verify::timestamp::check_timestamp_file`
//! (archive-verify/src/timestamp.rs). A token file comes from a TSA over the network, or from
//! a bundle someone handed over: any bytes must give an answer, never a panic, a hang or an
//! allocation sized by a number the input states.
//!
//! Input: the token file. The seed is a genuine `openssl ts -reply` token for NOTE, signed by
//! a test TSA whose CA is `timestamp_verify-ca.pem` (a public certificate; the keys are gone),
//! so mutations reach past the DER framing into the CMS signature and certificate checks.
#![no_main]

use std::sync::OnceLock;

use archive_verify::timestamp::{check_timestamp_file, PinnedCertificates};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: mailvault_fuzz::CappedAllocator = mailvault_fuzz::CappedAllocator;

const NOTE: &[u8] = b"mailvault.example/log\n42\nq6IC1TknpVlU3LZrUCLTPd+AbBixyMK84JNdjbpDJzM=\n";

fn pins() -> &'static PinnedCertificates {
    static PINS: OnceLock<PinnedCertificates> = OnceLock::new();
    PINS.get_or_init(|| {
        let mut pins = PinnedCertificates::none();
        pins.add_pem(include_bytes!("timestamp_verify-ca.pem")).expect("the seed CA");
        pins
    })
}

fuzz_target!(|data: &[u8]| {
    // A token valid against the pin is valid without it too, and only pinned with it.
    if let Ok(verdict) = check_timestamp_file(data, NOTE, pins()) {
        assert!(verdict.pinned_by.is_some());
        let unpinned = check_timestamp_file(data, NOTE, &PinnedCertificates::none()).expect("valid unpinned");
        assert!(unpinned.pinned_by.is_none());
    } else {
        let _ = check_timestamp_file(data, NOTE, &PinnedCertificates::none());
    }
});
