//! LIST/LSUB pattern matching (archive-imap/src/command/list.rs, RFC 3501 6.3.8): `*`
//! matches anything, `%` anything but the hierarchy delimiter `/`, INBOX is
//! case-insensitive. The pattern comes from the client (reference and mailbox arguments,
//! up to the command size limit); names are the server's mailboxes.
//!
//! Input: pattern, a NUL byte, name (without a NUL, the name is `Domains/example.com`).
//! Checked against a reference matcher that cannot backtrack (dynamic programming over
//! pattern × name positions), so a faster rewrite must keep the same answers.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: mailvault_fuzz::CappedAllocator = mailvault_fuzz::CappedAllocator;

/// `matches[i][j]`: does pattern[i..] match name[j..]? Filled from the ends.
fn reference(pattern: &[u8], name: &[u8], fold: bool) -> bool {
    let (p, n) = (pattern.len(), name.len());
    let mut next = vec![false; n + 1]; // row i + 1
    next[n] = true; // empty pattern matches empty name
    for i in (0..p).rev() {
        let mut row = vec![false; n + 1];
        for j in (0..=n).rev() {
            row[j] = match pattern[i] {
                // Skip the wildcard, or let it take name[j] and stay.
                b'*' => next[j] || (j < n && row[j + 1]),
                b'%' => next[j] || (j < n && name[j] != b'/' && row[j + 1]),
                c => j < n && (c == name[j] || (fold && c.eq_ignore_ascii_case(&name[j]))) && next[j + 1],
            };
        }
        next = row;
    }
    next[0]
}

fuzz_target!(|data: &[u8]| {
    let (pattern, name) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"Domains/example.com"[..]),
    };
    // As LIST builds them: lossy UTF-8 from the client, server names are UTF-8.
    let pattern = String::from_utf8_lossy(pattern);
    let name = String::from_utf8_lossy(name);
    let got = archive_imap::fuzzing::list_matches(&pattern, &name);
    let want = reference(pattern.as_bytes(), name.as_bytes(), name == "INBOX");
    assert_eq!(got, want, "pattern {pattern:?} against name {name:?}");
});
