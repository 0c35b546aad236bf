//! The search query language (`archive_core::search::Query::parse`, docs/SEARCH.md): the
//! text of the web search box and of `mailvault search`. Any text must parse or give a
//! `QueryError` whose position lies within the text, never panic or recurse without bound
//! (it runs on a thread with the 2 MiB stack of a tokio thread).
#![no_main]

use archive_core::search::Query;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: mailvault_fuzz::CappedAllocator = mailvault_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The web server and IMAP SEARCH parse on tokio threads: 2 MiB of stack.
    // The query is dropped there too: dropping a tree is recursive as well.
    let parsed = mailvault_fuzz::on_server_stack(|| Query::parse(text).map(|_| ()));
    match parsed {
        Ok(()) => {}
        Err(e) => {
            // Positions are 1-based characters; one past the end names "the end of the query".
            let chars = text.chars().count();
            assert!(
                e.position >= 1 && e.position <= chars + 1,
                "error position {} outside a {chars}-character query: {e}",
                e.position
            );
        }
    }
});
