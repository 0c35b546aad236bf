//! MIME structure of arbitrary bytes, as FETCH sees a stored message: ENVELOPE,
//! BODYSTRUCTURE and BODY encoded as imap-codec sends them, the SORT/THREAD header fields,
//! and HEADER/TEXT/MIME/part/BINARY sections at a few part paths
//! (`archive_imap::fuzzing::mime_structure`, over archive-imap/src/mime/).
//!
//! Mail is attacker-controlled: any bytes must give some structure (the fallback is one
//! text/plain part), never a panic, a stack overflow or unbounded work. The work runs on a
//! thread with the 2 MiB stack of the server's FETCH threads.
#![no_main]

use std::num::NonZeroU32;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: mailvault_fuzz::CappedAllocator = mailvault_fuzz::CappedAllocator;

/// The section paths asked of every input: the message, its parts and their first children.
fn paths() -> &'static [Vec<NonZeroU32>] {
    static PATHS: OnceLock<Vec<Vec<NonZeroU32>>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let n = |v: &[u32]| v.iter().filter_map(|x| NonZeroU32::new(*x)).collect::<Vec<_>>();
        vec![
            n(&[]),
            n(&[1]),
            n(&[2]),
            n(&[3]),
            n(&[1, 1]),
            n(&[1, 2]),
            n(&[2, 1]),
            n(&[2, 2]),
            n(&[1, 1, 1]),
            n(&[2, 1, 2]),
            n(&[1, 1, 1, 1]),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    // FETCH parses on tokio's blocking threads: 2 MiB of stack.
    let wire = mailvault_fuzz::on_server_stack(|| archive_imap::fuzzing::mime_structure(data, paths()));
    // The FETCH line must be a complete response line.
    assert!(
        wire.is_empty() || wire.ends_with(b"\r\n"),
        "FETCH response not CRLF-terminated"
    );
});
