//! Sequence sets (`1:*,4,7:5`) resolved against mailboxes with sparse UIDs
//! (archive-imap/src/sequence.rs), as FETCH, SEARCH, SORT and THREAD resolve them: UIDs are
//! global log seqs, so a mailbox's UIDs have gaps, and a client's numbers can be anything
//! up to 2^32 - 1.
//!
//! Input: one selector byte, then the set as text. Selector bit 0: UID set (set) or
//! message numbers; bits 1-2: which mailbox (a large one with gaps, a small one, an empty
//! one). Checked: the numbers are ascending, distinct and within the mailbox, and their
//! compact form, resolved again as message numbers, gives the same numbers.
#![no_main]

use std::sync::{Arc, OnceLock};

use archive_core::search::Principal;
use archive_core::views::View;
use archive_core::{Envelope, OnDuplicate, SearchIndexing, Store, StoreConfig};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: mailvault_fuzz::CappedAllocator = mailvault_fuzz::CappedAllocator;

/// Messages in the large mailbox: enough that a set amplified per range shows up as slow.
const LARGE: usize = 2000;

struct Mailboxes {
    _large_store: Arc<Store>,
    large: View,
    small: View,
    empty: View,
}

fn mailboxes() -> &'static Mailboxes {
    static M: OnceLock<Mailboxes> = OnceLock::new();
    M.get_or_init(|| {
        let small = {
            let a = mailvault_fuzz::archive();
            a.store
                .view(&Principal::auditor_all(), "Archive")
                .expect("the small view")
        };
        let empty = {
            let a = mailvault_fuzz::archive();
            // An auditor's INBOX holds nothing.
            a.store
                .view(&Principal::auditor_all(), "INBOX")
                .expect("the empty view")
        };
        let dir = mailvault_fuzz::scratch_dir().join("large-store");
        let key = dir.join("signing.key");
        Store::create(&dir, &key).expect("create the large store");
        let config = StoreConfig {
            search_indexing: SearchIndexing::Deferred,
            ..StoreConfig::default()
        };
        let store = Arc::new(Store::open(&dir, &key, config).expect("open it"));
        let envelope = Envelope::lmtp("a@example.net", &["b@example.org"]);
        let bodies: Vec<Vec<u8>> = (0..LARGE)
            .map(|i| format!("Subject: {i}\r\n\r\n{i}\r\n").into_bytes())
            .collect();
        for (i, body) in bodies.iter().enumerate() {
            store
                .append_message(&envelope, body, OnDuplicate::RecordArrival)
                .expect("append");
            // Every third message leaves a gap of one or two seqs.
            if i.is_multiple_of(3) {
                for _ in 0..1 + i % 2 {
                    store
                        .append_audit(&archive_core::audit::AuditEvent {
                            actor: "fuzz".into(),
                            action: "setup".into(),
                            target: String::new(),
                            origin: "local".into(),
                            ..Default::default()
                        })
                        .expect("append an audit record");
                }
            }
        }
        let large = store
            .view(&Principal::auditor_all(), "Archive")
            .expect("the large view");
        assert_eq!(large.len(), LARGE);
        Mailboxes {
            _large_store: store,
            large,
            small,
            empty,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let m = mailboxes();
    let view = match (selector >> 1) % 3 {
        0 => &m.large,
        1 => &m.small,
        _ => &m.empty,
    };
    let uid = selector & 1 == 1;
    let Some((numbers, compact)) = archive_imap::fuzzing::sequence_set(text, view, uid) else {
        return;
    };
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "not ascending and distinct"
    );
    assert!(
        numbers.iter().all(|n| *n >= 1 && *n <= view.len()),
        "a number outside 1..={}",
        view.len()
    );
    if numbers.is_empty() {
        assert!(compact.is_empty());
        return;
    }
    let again = archive_imap::fuzzing::sequence_set(&compact, view, false)
        .map(|(n, _)| n)
        .expect("the compact form resolves");
    assert_eq!(again, numbers, "compact form {compact:?} of set {text:?}");
});
