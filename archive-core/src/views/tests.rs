//! Views over a small archive of fixture mail: who sees what, under which UID, and how
//! UIDVALIDITY and UIDNEXT move.

use std::path::Path;

use super::*;
use crate::envelope::Envelope;
use crate::{OnDuplicate, SearchIndexing, StoreConfig};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope::lmtp(from, to)
}

struct Archive {
    _dir: tempfile::TempDir,
    store: Store,
    /// seqs: rechnung (hans → erika, cc buchhaltung), report (alice → bob, cc carol),
    /// gruesse (peter → erika), a blind copy of report to erika (arrival), no-date
    /// (owl → alice).
    seqs: Vec<u64>,
}

fn archive() -> Archive {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    Store::create(&path, &path.join("signing.key")).unwrap();
    let config = StoreConfig {
        search_indexing: SearchIndexing::Deferred,
        ..StoreConfig::default()
    };
    let store = Store::open(&path, &path.join("signing.key"), config).unwrap();
    let mut seqs = Vec::new();
    let mut add = |file: &str, env: Envelope| {
        let a = store
            .append_message(&env, &fixture(file), OnDuplicate::RecordArrival)
            .unwrap();
        seqs.push(a.seq);
    };
    add(
        "search/de-rechnung.eml",
        envelope(
            "hans.mueller@example.de",
            &["erika@example.com", "buchhaltung@example.de"],
        ),
    );
    add(
        "search/en-report.eml",
        envelope("alice@example.com", &["bob@example.org", "carol@example.net"]),
    );
    add(
        "search/de-gruesse.eml",
        envelope("p.mueller@example.ch", &["erika@example.com"]),
    );
    // The same report bytes again, journaled for a blind copy to Erika: an arrival.
    add(
        "search/en-report.eml",
        envelope("alice@example.com", &["erika@example.com"]),
    );
    add(
        "search/no-date.eml",
        envelope("owl@example.org", &["alice@example.com"]),
    );
    Archive {
        _dir: dir,
        store,
        seqs,
    }
}

fn uids(v: &View) -> Vec<u64> {
    v.uids().collect()
}

#[test]
fn user_inbox_and_sent_hold_their_mail_once_under_the_first_visible_seq() {
    let a = archive();
    let s = &a.seqs;
    let erika = Principal::user(["Erika@Example.com"]).unwrap();
    let inbox = a.store.view(&erika, "inbox").unwrap();
    assert_eq!(inbox.mailbox(), "INBOX");
    // The report reached Erika only as a blind copy: it appears under the arrival's seq.
    assert_eq!(uids(&inbox), vec![s[0], s[2], s[3]]);
    assert_eq!(inbox.uid_next(), s[3] + 1, "one above the last UID of the view");
    assert!(a.store.view(&erika, "Sent").unwrap().is_empty());

    let alice = Principal::user(["alice@example.com"]).unwrap();
    assert_eq!(uids(&a.store.view(&alice, "Sent").unwrap()), vec![s[1]]);
    assert_eq!(uids(&a.store.view(&alice, "INBOX").unwrap()), vec![s[4]]);

    // Both deliveries of the report show the same bytes.
    let blind = a.store.view_message(&inbox, s[3]).unwrap();
    assert_eq!(blind.raw, fixture("search/en-report.eml"));
    let entry = a.store.view_entry(&inbox, s[3]).unwrap();
    assert_eq!(entry.size, blind.raw.len() as u64);
    assert_eq!(entry.received_us, blind.received_us);
}

/// RFC 3501 §2.3.1.1: UIDNEXT changes only when a message appears in the mailbox. Audit
/// records and mail for someone else take log seqs (the UID space) but must not move it.
#[test]
fn uid_next_moves_only_when_a_message_appears_in_the_view() {
    let a = archive();
    let bob = Principal::user(["bob@example.org"]).unwrap();
    let inbox = a.store.view(&bob, "INBOX").unwrap();
    let empty = a.store.view(&bob, "Sent").unwrap();
    let before = inbox.uid_next();
    assert_eq!(before, a.seqs[1] + 1);
    assert_eq!(empty.uid_next(), 1, "an empty view");
    // Audit records and mail for Erika: the log grows, Bob's views do not.
    for i in 0..3 {
        a.store
            .append_audit(&crate::audit::AuditEvent {
                actor: "bob".into(),
                action: "select".into(),
                target: format!("imap mailbox INBOX {i}"),
                origin: "127.0.0.1".into(),
                ..Default::default()
            })
            .unwrap();
        a.store
            .append_message(
                &envelope("x@example.net", &["erika@example.com"]),
                format!("To: erika@example.com\r\n\r\nnot for bob {i}\r\n").as_bytes(),
                OnDuplicate::RecordArrival,
            )
            .unwrap();
    }
    let refreshed = a.store.refresh_view(&bob, &inbox).unwrap();
    assert!(refreshed.as_of() > inbox.as_of());
    assert_eq!(refreshed.uid_next(), before);
    assert_eq!(a.store.view(&bob, "INBOX").unwrap().uid_next(), before);
    assert_eq!(a.store.view(&bob, "Sent").unwrap().uid_next(), 1);
    // New mail for Bob moves it above the new UID.
    let new = a
        .store
        .append_message(
            &envelope("x@example.net", &["bob@example.org"]),
            b"To: bob@example.org\r\n\r\nnew\r\n",
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    let moved = a.store.refresh_view(&bob, &refreshed).unwrap();
    assert_eq!(moved.uid_next(), new.seq + 1);
    assert!(moved.uid_next() > before);
}

#[test]
fn bytes_outside_the_view_are_not_readable() {
    let a = archive();
    let bob = Principal::user(["bob@example.org"]).unwrap();
    let inbox = a.store.view(&bob, "INBOX").unwrap();
    assert_eq!(uids(&inbox), vec![a.seqs[1]]);
    for uid in [a.seqs[0], a.seqs[2], a.seqs[3], a.seqs[4], 999] {
        assert!(matches!(
            a.store.view_message(&inbox, uid),
            Err(Error::NoSuchRecord(_))
        ));
        assert!(a.store.view_entry(&inbox, uid).is_err());
    }
    // Mailboxes of other roles do not exist for a user.
    for name in ["Archive", "Domains/example.org", "Sent/x", "", "INBOX/.."] {
        assert!(
            matches!(a.store.view(&bob, name), Err(Error::NoSuchMailbox(_))),
            "{name}"
        );
    }
}

#[test]
fn auditors_see_their_scope() {
    let a = archive();
    let s = &a.seqs;
    let all = Principal::auditor_all();
    let archive = a.store.view(&all, "Archive").unwrap();
    // Message records only: the arrival holds no new bytes.
    assert_eq!(uids(&archive), vec![s[0], s[1], s[2], s[4]]);
    assert!(a.store.view(&all, "INBOX").unwrap().is_empty());
    assert_eq!(
        uids(&a.store.view(&all, "Domains/example.ch").unwrap()),
        vec![s[2]]
    );

    let de = Principal::auditor_of(["example.de"]).unwrap();
    assert_eq!(uids(&a.store.view(&de, "Archive").unwrap()), vec![s[0]]);
    assert_eq!(
        uids(&a.store.view(&de, "Domains/example.de").unwrap()),
        vec![s[0]]
    );
    assert!(a.store.view(&de, "Domains/example.com").is_err());
    let names: Vec<_> = mailboxes(&de).into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["INBOX", "Archive", "Domains/example.de"]);

    // Subdomains are in scope; the arrival (blind copy to example.com) makes the
    // report visible to an example.com auditor under the message's seq.
    let com = Principal::auditor_of(["example.com"]).unwrap();
    assert_eq!(
        uids(&a.store.view(&com, "Archive").unwrap()),
        vec![s[0], s[1], s[2], s[4]]
    );
}

#[test]
fn uid_validity_follows_the_definition() {
    let a = archive();
    let one = Principal::user(["erika@example.com"]).unwrap();
    let two = Principal::user(["erika@example.com", "e.m@example.com"]).unwrap();
    let v1 = a.store.view(&one, "INBOX").unwrap().uid_validity();
    assert_ne!(v1, 0);
    assert_eq!(v1, a.store.view(&one, "INBOX").unwrap().uid_validity());
    assert_ne!(v1, a.store.view(&two, "INBOX").unwrap().uid_validity());
    assert_ne!(v1, a.store.view(&one, "Sent").unwrap().uid_validity());
    // New mail does not change it.
    a.store
        .append_message(
            &envelope("x@example.org", &["erika@example.com"]),
            b"Subject: new\r\n\r\nhi\r\n",
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    let again = a.store.view(&one, "INBOX").unwrap();
    assert_eq!(again.uid_validity(), v1);
    assert_eq!(again.len(), 4);
    let old = a.store.view(&one, "INBOX").unwrap();
    let refreshed = a.store.refresh_view(&one, &old).unwrap();
    assert_eq!(uids(&refreshed), uids(&again));
}

/// A refresh looks only at new records and gives what a fresh view gives: new
/// messages, and old ones a new delivery makes visible, under the new seq.
#[test]
fn refresh_adds_only_what_is_new() {
    let a = archive();
    let bob = Principal::user(["bob@example.org"]).unwrap();
    let all = Principal::auditor_all();
    let inbox = a.store.view(&bob, "INBOX").unwrap();
    let archive = a.store.view(&all, "Archive").unwrap();
    // Bob gets a blind copy of the Grüße message (stored long ago) and a new one.
    let blind = a
        .store
        .append_message(
            &envelope("p.mueller@example.ch", &["bob@example.org"]),
            &fixture("search/de-gruesse.eml"),
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    let new = a
        .store
        .append_message(
            &envelope("x@example.net", &["bob@example.org"]),
            b"To: bob@example.org\r\n\r\nnew\r\n",
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    let refreshed = a.store.refresh_view(&bob, &inbox).unwrap();
    assert_eq!(uids(&refreshed), vec![a.seqs[1], blind.seq, new.seq]);
    assert_eq!(uids(&refreshed), uids(&a.store.view(&bob, "INBOX").unwrap()));
    let archive = a.store.refresh_view(&all, &archive).unwrap();
    assert_eq!(archive.uids().last(), Some(new.seq));
    assert_eq!(uids(&archive), uids(&a.store.view(&all, "Archive").unwrap()));
    // Another principal's view is rebuilt, not extended.
    let erika = Principal::user(["erika@example.com"]).unwrap();
    let other = a.store.refresh_view(&erika, &inbox).unwrap();
    assert_eq!(uids(&other), uids(&a.store.view(&erika, "INBOX").unwrap()));
}

#[test]
fn sessions_of_one_view_share_its_list_and_nobody_else_does() {
    let a = archive();
    let bob = Principal::user(["bob@example.org"]).unwrap();
    let erika = Principal::user(["erika@example.com"]).unwrap();
    let first = a.store.view(&bob, "INBOX").unwrap();
    let second = a.store.view(&bob, "INBOX").unwrap();
    assert!(Arc::ptr_eq(&first.list, &second.list), "one list for one view");
    let sent = a.store.view(&bob, "Sent").unwrap();
    let other = a.store.view(&erika, "INBOX").unwrap();
    assert!(!Arc::ptr_eq(&first.list, &sent.list));
    assert!(!Arc::ptr_eq(&first.list, &other.list));
    assert_ne!(uids(&first), uids(&other));
    // Bob's own view with another address list is another definition.
    let bob_more = Principal::user(["bob@example.org", "bob@example.net"]).unwrap();
    assert!(!Arc::ptr_eq(
        &first.list,
        &a.store.view(&bob_more, "INBOX").unwrap().list
    ));

    // New mail: a refresh sees it, the views sessions hold stay as they were until
    // their own refresh, and the next session starts from the newest list.
    let before = uids(&first);
    let new = a
        .store
        .append_message(
            &envelope("x@example.net", &["bob@example.org"]),
            b"To: bob@example.org\r\n\r\nnew\r\n",
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    let refreshed = a.store.refresh_view(&bob, &first).unwrap();
    assert_eq!(refreshed.uids().last(), Some(new.seq));
    assert_eq!(uids(&first), before);
    assert_eq!(uids(&second), before);
    let third = a.store.view(&bob, "INBOX").unwrap();
    assert!(Arc::ptr_eq(&third.list, &refreshed.list));
    let caught_up = a.store.refresh_view(&bob, &second).unwrap();
    assert!(Arc::ptr_eq(&caught_up.list, &refreshed.list));
    assert_eq!(uids(&other), uids(&a.store.view(&erika, "INBOX").unwrap()));
}

/// A client that logs out and in again (a poller, a phone, a sync run per minute) finds the
/// list of its view still there, not rebuilt from the index; and a list is held in place of
/// the older one of its view, not next to it.
#[test]
fn a_view_nobody_holds_is_kept_for_the_next_session() {
    let a = archive();
    let bob = Principal::user(["bob@example.org"]).unwrap();
    let first = a.store.view(&bob, "INBOX").unwrap();
    let list = Arc::as_ptr(&first.list);
    drop(first);
    let again = a.store.view(&bob, "INBOX").unwrap();
    assert_eq!(Arc::as_ptr(&again.list), list, "the same list, not a rebuilt one");
    a.store
        .append_message(
            &envelope("x@example.net", &["bob@example.org"]),
            b"To: bob@example.org\r\n\r\nnew\r\n",
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    drop(again);
    let newer = a.store.view(&bob, "INBOX").unwrap();
    assert_ne!(Arc::as_ptr(&newer.list), list);
    let kept = a.store.shared_views().kept.lock().unwrap();
    assert_eq!(
        kept.iter()
            .filter(|(k, _)| k.0 == "INBOX" && k.1 == newer.list.definition)
            .count(),
        1
    );
}
