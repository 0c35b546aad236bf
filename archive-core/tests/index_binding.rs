//! The key-value index is derived data bound to its log: an index copied from another store
//! (even one whose records sit at the same offsets) is not believed, so no principal sees
//! another store's address table applied to this store's mail (issue #10, defect 12).

mod common;

use std::path::Path;

use archive_core::search::Principal;
use archive_core::store::Layout;
use archive_core::{OnDuplicate, Store, StoreConfig};
use common::{create, envelope, temp_dir};

fn open(store: &Path) -> Store {
    Store::open(store, &store.join("signing.key"), StoreConfig::default()).expect("open")
}

/// A store holding one message to `to` (same length for every `to` given here, so both
/// stores' records sit at the same offsets).
fn store_with_one_message(dir: &Path, to: &str) -> std::path::PathBuf {
    let path = create(dir);
    let store = open(&path);
    let raw = format!("From: x@example.net\r\nTo: {to}\r\nSubject: private\r\n\r\nfor {to} only\r\n");
    let appended = store
        .append_message(
            &envelope("x@example.net", &[to]),
            raw.as_bytes(),
            OnDuplicate::Skip,
        )
        .unwrap();
    assert_eq!(appended.seq, 1);
    store.close().unwrap();
    path
}

#[test]
fn an_index_copied_from_another_store_is_rebuilt_not_believed() {
    let dir_b = temp_dir("binding-b");
    let b = store_with_one_message(dir_b.path(), "alice@example.com");
    let location = |path: &Path| {
        let s = open(path);
        let r = s.read_record_unscoped(1).unwrap();
        s.close().unwrap();
        (r.location.segment, r.location.offset, r.location.len)
    };
    // Store A holds mail for bob; store B the same shape of mail for alice. Compressed
    // lengths vary by a byte with the content: take the first of bob's addresses whose record
    // has exactly the length of alice's (the worst case: B's index reads cleanly in A).
    let dir_a = temp_dir("binding-a");
    let mut found = None;
    for bob in [
        "bobby", "robby", "bobbi", "bobba", "bobbo", "bobbe", "bobbu", "rob12",
    ] {
        let dir = dir_a.path().join(bob);
        let a = store_with_one_message(&dir, &format!("{bob}@example.com"));
        if location(&a) == location(&b) {
            found = Some((a, format!("{bob}@example.com")));
            break;
        }
    }
    let (a, bob) = found.expect("a record of the same length");
    let (layout_a, layout_b) = (Layout::new(&a), Layout::new(&b));
    std::fs::copy(&layout_b.kv_index, &layout_a.kv_index).unwrap();

    let store = open(&a);
    let alice = Principal::user(["alice@example.com"]).unwrap();
    let inbox = store.view(&alice, "INBOX").unwrap();
    assert!(
        inbox.is_empty(),
        "alice sees {:?} of bob's store",
        inbox.uids().collect::<Vec<_>>()
    );
    // The rebuilt index is A's own: bob sees his mail.
    let bob = Principal::user([bob.as_str()]).unwrap();
    let bob_inbox = store.view(&bob, "INBOX").unwrap();
    assert_eq!(bob_inbox.uids().collect::<Vec<_>>(), vec![1]);
    assert!(store.view_message(&bob_inbox, 1).is_ok());
    store.close().unwrap();
}

#[test]
fn an_index_of_another_history_of_the_same_store_is_rebuilt() {
    // Same origin, different history: a copy of the store taken before its last records,
    // whose index then saw other mail. The chain hash at the applied seq tells them apart.
    let dir = temp_dir("binding-history");
    let path = store_with_one_message(dir.path(), "bobby@example.com");
    let fork_dir = temp_dir("binding-fork");
    let fork = fork_dir.path().join("store");
    copy_dir(&path, &fork);
    for (store, to) in [(&path, "bobby@example.com"), (&fork, "alice@example.com")] {
        let s = open(store);
        let raw = format!("To: {to}\r\nSubject: second\r\n\r\nsecond for {to}\r\n");
        s.append_message(
            &envelope("x@example.net", &[to]),
            raw.as_bytes(),
            OnDuplicate::Skip,
        )
        .unwrap();
        s.close().unwrap();
    }
    std::fs::copy(Layout::new(&fork).kv_index, Layout::new(&path).kv_index).unwrap();
    let store = open(&path);
    let alice = Principal::user(["alice@example.com"]).unwrap();
    assert!(store.view(&alice, "INBOX").unwrap().is_empty());
    store.close().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
