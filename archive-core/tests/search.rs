//! Full-text search against real stores: every field findable on real and hand-written mail,
//! German stemming, umlaut folding, phrases, day boundaries, scope isolation (blind copies
//! included), arrivals, pagination, unparseable mail, and an index rebuilt identically after
//! it is deleted or `reindex`ed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use archive_core::audit::AuditEvent;
use archive_core::search::{Hit, Principal, Query, ReadOnlyIndex, SearchOptions, SearchResults, Sort};
use archive_core::{Envelope, OnDuplicate, Store, StoreConfig};
use common::{create, envelope, temp_dir};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn open(store: &Path) -> Store {
    Store::open(store, &store.join("signing.key"), StoreConfig::default()).expect("open")
}

fn import(store: &Store, path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    store
        .append_message(
            &Envelope::imported(path.display().to_string(), b""),
            &bytes,
            OnDuplicate::Skip,
        )
        .unwrap()
        .seq
}

fn run(store: &Store, principal: &Principal, query: &str, options: &SearchOptions) -> SearchResults {
    let q = Query::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    store
        .search(principal, &q, options)
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// Seqs of every hit (all pages), newest first.
fn seqs_as(store: &Store, principal: &Principal, query: &str) -> Vec<u64> {
    let options = SearchOptions {
        limit: 1000,
        snippets: false,
        ..SearchOptions::default()
    };
    let r = run(store, principal, query, &options);
    assert_eq!(r.total as usize, r.hits.len(), "{query}");
    r.hits.iter().map(|h| h.seq).collect()
}

fn seqs(store: &Store, query: &str) -> BTreeSet<u64> {
    seqs_as(store, &Principal::auditor_all(), query)
        .into_iter()
        .collect()
}

fn set(s: &[u64]) -> BTreeSet<u64> {
    s.iter().copied().collect()
}

/// The hand-written fixtures, by file stem.
struct Fixtures {
    rechnung: u64,
    report: u64,
    gruesse: u64,
    undated: u64,
}

fn add_fixtures(store: &Store) -> Fixtures {
    let dir = fixtures().join("search");
    Fixtures {
        rechnung: import(store, &dir.join("de-rechnung.eml")),
        report: import(store, &dir.join("en-report.eml")),
        gruesse: import(store, &dir.join("de-gruesse.eml")),
        undated: import(store, &dir.join("no-date.eml")),
    }
}

#[test]
fn every_field_is_findable_on_real_and_hand_written_mail() {
    let dir = temp_dir("search-test");
    let path = create(dir.path());
    let store = open(&path);
    let mut corpus = Vec::new();
    for n in [1, 2, 95, 100, 250] {
        corpus.push(import(
            &store,
            &fixtures().join(format!("corpus/spamassassin/{n:04}.eml")),
        ));
    }
    let [c0001, c0002, c0095, c0100, c0250] = corpus[..] else {
        unreachable!()
    };
    let f = add_fixtures(&store);

    // Header fields of the real corpus: names as words, addresses exactly and by domain.
    assert_eq!(seqs(&store, "from:kre@munnari.oz.au"), set(&[c0001]));
    assert_eq!(seqs(&store, "from:\"Robert Elz\""), set(&[c0001]));
    assert_eq!(seqs(&store, "from:elz"), set(&[c0001]));
    assert_eq!(seqs(&store, "to:linux-raid@vger.kernel.org"), set(&[c0002]));
    assert_eq!(seqs(&store, "cc:ilug@linux.ie"), set(&[c0002]));
    assert_eq!(seqs(&store, "cc:webdev@linux.ie"), set(&[c0250]));
    assert_eq!(seqs(&store, "domain:linux.ie"), set(&[c0002, c0250]));
    assert_eq!(seqs(&store, "subject:\"New Sequences Window\""), set(&[c0001]));
    assert_eq!(seqs(&store, "subject:migrating"), set(&[c0250]));
    assert_eq!(
        seqs(&store, "msgid:<13258.1030015585@munnari.OZ.AU>"),
        set(&[c0001])
    );
    // In-Reply-To / References.
    assert_eq!(
        seqs(&store, "msgid:1029945287.4797.TMDA@deepeddy.vircio.com"),
        set(&[c0001])
    );
    // List-Id as free words.
    assert_eq!(seqs(&store, "freshrpms"), set(&[c0100]));
    assert_eq!(seqs(&store, "filename:exmh-patch"), set(&[c0095]));
    assert!(seqs(&store, "has:attachment").contains(&c0095));
    assert!(!seqs(&store, "has:attachment").contains(&c0001));
    assert_eq!(seqs(&store, "body:cobalt raq3"), set(&[c0002]));

    // Hand-written mail.
    assert_eq!(seqs(&store, "from:hans.mueller@example.de"), set(&[f.rechnung]));
    assert_eq!(
        seqs(&store, "to:erika@example.com"),
        set(&[f.rechnung, f.gruesse])
    );
    assert_eq!(seqs(&store, "cc:buchhaltung@example.de"), set(&[f.rechnung]));
    assert_eq!(seqs(&store, "domain:example.de"), set(&[f.rechnung]));
    assert_eq!(seqs(&store, "reports desk"), set(&[f.report]), "Reply-To name");
    assert_eq!(seqs(&store, "filename:Rechnung-2024-03.pdf"), set(&[f.rechnung]));
    assert_eq!(seqs(&store, "filename:application/pdf"), set(&[f.rechnung]));
    assert_eq!(seqs(&store, "filename:q1-figures.xlsx"), set(&[f.report]));
    // The text of a text/* attachment, HTML converted to text (not its style block).
    assert_eq!(seqs(&store, "Gesamtbetrag"), set(&[f.rechnung]));
    assert_eq!(seqs(&store, "body:\"quarterly report\""), set(&[f.report]));
    assert!(!seqs(&store, "color red").contains(&f.report), "no <style> text");
    assert_eq!(seqs(&store, "msgid:thread-start@example.org"), set(&[f.report]));
    assert_eq!(seqs(&store, "buchhaltung.lists.example.de"), set(&[f.rechnung]));
    assert!(seqs(&store, "has:attachment").is_superset(&set(&[f.rechnung, f.report])));
    assert_eq!(seqs(&store, "has:attachment -has:attachment"), set(&[]));
    // Sizes: k is 1024.
    let small = seqs(&store, "smaller:500");
    assert_eq!(small, set(&[f.gruesse, f.undated]));
    let big = seqs(&store, "larger:5k");
    assert!(
        big.contains(&c0001) && !big.contains(&c0002),
        "5216 > 5120 > 3328"
    );
    // Boolean operators.
    assert_eq!(seqs(&store, "(elz OR looney) -raid"), set(&[c0001]));
    assert_eq!(seqs(&store, "NOT from:kre@munnari.oz.au").len(), 8);

    // Hits carry what the CLI prints.
    let hit = run(
        &store,
        &Principal::auditor_all(),
        "Gesamtbetrag",
        &SearchOptions::default(),
    )
    .hits
    .remove(0);
    assert_eq!(hit.subject, "Rechnungen für März");
    assert_eq!(hit.from[0].to_string(), "Hans Müller <hans.mueller@example.de>");
    assert_eq!(hit.attachments, ["Rechnung-2024-03.pdf", "posten.csv"]);
    assert_eq!(
        hit.size,
        std::fs::read(fixtures().join("search/de-rechnung.eml"))
            .unwrap()
            .len() as u64
    );
    let snippet = hit.snippet.expect("snippet");
    assert!(snippet.marked("[", "]").contains("[Gesamtbetrag]"), "{snippet:?}");
}

#[test]
fn german_stemming_and_umlaut_folding() {
    let dir = temp_dir("search-test");
    let path = create(dir.path());
    let store = open(&path);
    let f = add_fixtures(&store);
    // Plural finds singular and back; subject and body.
    assert_eq!(seqs(&store, "Rechnung"), set(&[f.rechnung]));
    assert_eq!(seqs(&store, "subject:rechnung"), set(&[f.rechnung]));
    assert_eq!(seqs(&store, "body:Rechnungen"), set(&[f.rechnung]));
    // English stems too.
    assert_eq!(seqs(&store, "invoice"), set(&[f.report]));
    assert_eq!(seqs(&store, "reports"), set(&[f.report]));
    // Müller ↔ Mueller ↔ Muller, in names and in text.
    for spelling in ["Müller", "Mueller", "Muller", "MÜLLER"] {
        assert_eq!(
            seqs(&store, &format!("from:{spelling}")),
            set(&[f.rechnung, f.gruesse]),
            "{spelling}"
        );
    }
    for spelling in ["Grüße", "Gruesse", "Grusse"] {
        assert_eq!(
            seqs(&store, spelling),
            set(&[f.rechnung, f.gruesse]),
            "{spelling}"
        );
    }
    assert_eq!(seqs(&store, "Zürich"), set(&[f.gruesse]));
    assert_eq!(seqs(&store, "Hauptstrasse"), set(&[f.rechnung]));
    assert_eq!(seqs(&store, "Straße"), set(&[f.gruesse]));
    assert_eq!(seqs(&store, "uebernimmt"), set(&[f.gruesse]));
}

#[test]
fn phrases_are_exact_and_ordered() {
    let dir = temp_dir("search-test");
    let path = create(dir.path());
    let store = open(&path);
    let f = add_fixtures(&store);
    assert_eq!(seqs(&store, "\"quarterly report\""), set(&[f.report]));
    assert!(seqs(&store, "\"report quarterly\"").is_empty());
    // Phrases are not stemmed…
    assert!(seqs(&store, "\"quarterly reports\"").is_empty());
    // …but folded.
    assert_eq!(
        seqs(&store, "subject:\"Rechnungen fuer Maerz\""),
        set(&[f.rechnung])
    );
    assert_eq!(seqs(&store, "\"Hans Müller\""), set(&[f.rechnung]));
    assert!(seqs(&store, "\"Müller Hans\"").is_empty());
    // A word that analysis splits is a phrase of its parts.
    assert_eq!(seqs(&store, "Rechnung-2024-03"), set(&[f.rechnung]));
}

#[test]
fn dates_are_utc_days_with_exact_boundaries() {
    let dir = temp_dir("search-test");
    let path = create(dir.path());
    let store = open(&path);
    let f = add_fixtures(&store);
    // rechnung 2024-03-31T23:30Z, gruesse 2024-04-01 01:30+02:00 = 2024-03-31T23:30Z,
    // report exactly 2024-04-01T00:00:00Z, undated: its receive time (now).
    assert_eq!(seqs(&store, "on:2024-03-31"), set(&[f.rechnung, f.gruesse]));
    assert_eq!(seqs(&store, "on:2024-04-01"), set(&[f.report]));
    assert_eq!(seqs(&store, "before:2024-04-01"), set(&[f.rechnung, f.gruesse]));
    assert_eq!(seqs(&store, "after:2024-03-31"), set(&[f.report, f.undated]));
    assert_eq!(seqs(&store, "after:2024-04-01"), set(&[f.undated]));
    assert!(seqs(&store, "before:2024-03-31").is_empty());
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    assert!(seqs(&store, &format!("on:{today}")).contains(&f.undated));
    // Newest first by date, oldest first reversed; the undated message sorts by receive time.
    let newest = seqs_as(&store, &Principal::auditor_all(), "example");
    assert_eq!(newest[0], f.undated);
    assert_eq!(newest[1], f.report);
    // Equal dates: newer seq first.
    assert_eq!(&newest[2..], &[f.gruesse, f.rechnung]);
}

#[test]
fn pages_follow_cursors_in_every_order_and_totals_hold() {
    let dir = temp_dir("search-test");
    let path = create(dir.path());
    let store = open(&path);
    for n in 1..=40u64 {
        // Ten messages share each date, so cursors must break ties by seq.
        let raw = format!(
            "From: a@example.com\r\nTo: b@example.com\r\nSubject: page test {n}\r\n\
             Date: Mon, {} Jan 2024 10:00:00 +0000\r\n\r\nfiller {}\r\n",
            1 + n / 10,
            "word ".repeat(n as usize)
        );
        store
            .append_message(
                &envelope("a@example.com", &["b@example.com"]),
                raw.as_bytes(),
                OnDuplicate::Skip,
            )
            .unwrap();
    }
    let me = Principal::user(["b@example.com"]).unwrap();
    for sort in [Sort::Newest, Sort::Oldest, Sort::Size, Sort::Relevance] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let options = SearchOptions {
                sort,
                limit: 7,
                cursor: cursor.clone(),
                snippets: false,
                facets: false,
                count_limit: None,
            };
            let r = run(&store, &me, "filler", &options);
            assert_eq!(r.total, 40);
            seen.extend(r.hits.iter().map(|h| (h.seq, h.date, h.size, h.score)));
            match r.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let unique: BTreeSet<u64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(unique.len(), 40, "{sort:?}: every hit once");
        assert_eq!(seen.len(), 40, "{sort:?}");
        let ordered = seen.windows(2).all(|w| match sort {
            Sort::Newest => (w[0].1, w[0].0) > (w[1].1, w[1].0),
            Sort::Oldest => (w[0].1, w[0].0) < (w[1].1, w[1].0),
            Sort::Size => (w[0].2, w[0].0) > (w[1].2, w[1].0),
            Sort::Relevance => w[0].3 >= w[1].3,
        });
        assert!(ordered, "{sort:?} order: {seen:?}");
    }
    // A cursor from another order is refused.
    let first = run(
        &store,
        &me,
        "filler",
        &SearchOptions {
            limit: 5,
            ..SearchOptions::default()
        },
    );
    let wrong = SearchOptions {
        sort: Sort::Oldest,
        cursor: first.next_cursor,
        ..SearchOptions::default()
    };
    let q = Query::parse("filler").unwrap();
    assert!(store.search(&me, &q, &wrong).is_err());
}

/// Whether `address` appears anywhere in what the hit shows.
fn hit_mentions(hit: &Hit, address: &str) -> bool {
    let boxes = hit.from.iter().chain(&hit.to).chain(&hit.cc).chain(&hit.bcc);
    boxes.filter_map(|m| m.address.as_deref()).any(|a| a == address)
        || hit
            .deliveries
            .iter()
            .any(|d| d.mail_from == address || d.recipients.iter().any(|r| r == address))
}

#[test]
fn users_see_only_their_mail_and_blind_copies_stay_blind() {
    let dir = temp_dir("search-test");
    let path = create(dir.path());
    let store = open(&path);
    // dave writes to erin; frank is a blind copy known only from the envelope.
    let memo = b"From: Dave <dave@corp.example>\r\nTo: Erin <erin@corp.example>\r\n\
Subject: Board memo\r\nDate: Tue, 02 Apr 2024 09:00:00 +0000\r\nMessage-ID: <memo@corp.example>\r\n\r\n\
Confidential merger plans.\r\n";
    let memo_seq = store
        .append_message(
            &envelope("dave@corp.example", &["erin@corp.example", "frank@blind.example"]),
            memo,
            OnDuplicate::RecordArrival,
        )
        .unwrap()
        .seq;
    // The same bytes delivered again, to grace only (an arrival record).
    let arrival = store
        .append_message(
            &envelope("dave@corp.example", &["grace@later.example"]),
            memo,
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    assert_eq!(arrival.first_seq, memo_seq);
    // Unrelated mail for other people.
    let other = b"From: mallory@evil.example\r\nTo: trent@corp.example\r\nSubject: merger rumours\r\n\r\n\
merger plans leaked\r\n";
    let other_seq = store
        .append_message(
            &envelope("mallory@evil.example", &["trent@corp.example"]),
            other,
            OnDuplicate::Skip,
        )
        .unwrap()
        .seq;

    let user = |a: &str| Principal::user([a]).unwrap();
    let search = |p: &Principal, q: &str| run(&store, p, q, &SearchOptions::default());

    // frank (blind copy, envelope only) finds the memo, and his own bcc.
    let frank = user("frank@blind.example");
    let r = search(&frank, "merger");
    assert_eq!(r.hits.iter().map(|h| h.seq).collect::<Vec<_>>(), [memo_seq]);
    assert_eq!(r.total, 1);
    assert!(hit_mentions(&r.hits[0], "frank@blind.example"));
    assert!(
        !hit_mentions(&r.hits[0], "grace@later.example"),
        "frank did not get grace's delivery"
    );
    assert_eq!(search(&frank, "bcc:frank@blind.example").total, 1);

    // erin (To) finds it, but nothing in her view or her queries reveals frank.
    let erin = user("erin@corp.example");
    let r = search(&erin, "merger");
    assert_eq!(r.hits.len(), 1);
    let hit = &r.hits[0];
    assert_eq!(hit.seq, memo_seq);
    assert!(!hit_mentions(hit, "frank@blind.example"), "{hit:?}");
    assert!(!hit_mentions(hit, "grace@later.example"), "{hit:?}");
    assert!(hit.bcc.is_empty());
    assert_eq!(hit.deliveries.len(), 1);
    assert_eq!(hit.deliveries[0].seq, memo_seq);
    assert_eq!(hit.deliveries[0].recipients, ["erin@corp.example"]);
    for probe in [
        "bcc:frank@blind.example",
        "to:frank@blind.example",
        "domain:blind.example",
        "frank",
        "to:grace@later.example",
        "domain:later.example",
    ] {
        assert_eq!(search(&erin, probe).total, 0, "erin probing {probe}");
    }

    // grace sees the message through the arrival only: the hit is the message record, with
    // her delivery.
    let grace = user("grace@later.example");
    let r = search(&grace, "merger");
    assert_eq!(r.hits.len(), 1);
    assert_eq!(r.hits[0].seq, memo_seq);
    let deliveries: Vec<u64> = r.hits[0].deliveries.iter().map(|d| d.seq).collect();
    assert_eq!(deliveries, [arrival.seq]);
    assert!(!hit_mentions(&r.hits[0], "frank@blind.example"));

    // dave, the envelope sender, knows whom he sent it to.
    let dave = user("dave@corp.example");
    let r = search(&dave, "bcc:frank@blind.example");
    assert_eq!(r.total, 1);
    assert!(r.hits[0]
        .bcc
        .iter()
        .any(|m| m.address.as_deref() == Some("frank@blind.example")));
    assert_eq!(r.hits[0].deliveries.len(), 2);

    // Nobody sees another's mail: mallory's and trent's mail stays theirs.
    for p in [&frank, &erin, &grace, &dave] {
        let r = search(p, "merger OR leaked OR rumours");
        assert!(r.hits.iter().all(|h| h.seq != other_seq), "{p:?}");
        assert_eq!(r.total as usize, r.hits.len());
    }
    let trent = user("trent@corp.example");
    assert_eq!(
        search(&trent, "merger")
            .hits
            .iter()
            .map(|h| h.seq)
            .collect::<Vec<_>>(),
        [other_seq]
    );
    // Every hit of every user mentions that user.
    for (p, a) in [
        (&frank, "frank@blind.example"),
        (&erin, "erin@corp.example"),
        (&trent, "trent@corp.example"),
    ] {
        for h in search(p, "merger OR plans OR memo").hits {
            assert!(hit_mentions(&h, a), "{a}: {h:?}");
        }
    }

    // Auditors: everything, or their domains (with subdomains), with the full envelope.
    let all = search(&Principal::auditor_all(), "merger");
    assert_eq!(all.total, 2);
    let memo_hit = all.hits.iter().find(|h| h.seq == memo_seq).unwrap();
    assert!(memo_hit
        .bcc
        .iter()
        .any(|m| m.address.as_deref() == Some("frank@blind.example")));
    assert_eq!(
        search(&Principal::auditor_all(), "bcc:frank@blind.example").total,
        1
    );
    let corp = Principal::auditor_of(["corp.example"]).unwrap();
    assert_eq!(search(&corp, "merger").total, 2);
    let evil = Principal::auditor_of(["evil.example"]).unwrap();
    assert_eq!(
        search(&evil, "merger")
            .hits
            .iter()
            .map(|h| h.seq)
            .collect::<Vec<_>>(),
        [other_seq]
    );
    let parent = Principal::auditor_of(["example"]).unwrap();
    assert_eq!(
        search(&parent, "merger").total,
        0,
        "a bare TLD is not a parent domain"
    );
}

#[test]
fn unparseable_mail_is_found_by_envelope_size_and_date() {
    let dir = temp_dir("search-test");
    let path = create(dir.path());
    let store = open(&path);
    let junk = std::fs::read(fixtures().join("edge/not-mail.bin")).unwrap();
    let seq = store
        .append_message(
            &envelope("robot@junk.example", &["ops@corp.example"]),
            &junk,
            OnDuplicate::Skip,
        )
        .unwrap()
        .seq;
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    for q in [
        "from:robot@junk.example",
        "to:ops@corp.example",
        "domain:junk.example",
        "larger:255 smaller:257",
        &format!("on:{today}"),
    ] {
        assert_eq!(seqs(&store, q), set(&[seq]), "{q}");
    }
    let ops = Principal::user(["ops@corp.example"]).unwrap();
    assert_eq!(seqs_as(&store, &ops, "smaller:1k"), [seq]);
}

/// Everything a set of queries returns, for comparing two indexes of the same log.
fn answers(store: &Store) -> Vec<String> {
    let erin = Principal::user(["erika@example.com"]).unwrap();
    let mut out = Vec::new();
    for (p, q) in [
        (Principal::auditor_all(), "razor OR exmh OR rechnung"),
        (Principal::auditor_all(), "\"quarterly report\" OR from:mueller"),
        (erin.clone(), "rechnung OR gruesse"),
        (
            Principal::auditor_of(["linux.ie"]).unwrap(),
            "has:attachment OR re",
        ),
        (Principal::auditor_all(), "after:2002-09-01 before:2002-10-01"),
    ] {
        for sort in [Sort::Newest, Sort::Size] {
            let options = SearchOptions {
                sort,
                limit: 1000,
                ..SearchOptions::default()
            };
            let r = run(store, &p, q, &options);
            out.push(format!("{q} {sort:?} total {}", r.total));
            out.extend(r.hits.iter().map(|h| format!("{h:?}")));
        }
    }
    out
}

#[test]
fn a_deleted_or_reindexed_search_index_is_rebuilt_with_identical_answers() {
    let dir = temp_dir("search-test");
    let path = create(dir.path());
    let key = path.join("signing.key");
    let store = open(&path);
    add_fixtures(&store);
    for n in (1..=500).step_by(5) {
        import(
            &store,
            &fixtures().join(format!("corpus/spamassassin/{n:04}.eml")),
        );
    }
    // Some arrivals too: their envelopes are part of the documents.
    let again = std::fs::read(fixtures().join("search/de-rechnung.eml")).unwrap();
    store
        .append_message(
            &envelope("hans.mueller@example.de", &["erika@example.com"]),
            &again,
            OnDuplicate::RecordArrival,
        )
        .unwrap();
    let before = answers(&store);
    assert!(before.len() > 40, "the queries must find something");
    store.close().unwrap();

    std::fs::remove_dir_all(path.join("search")).unwrap();
    let store = open(&path);
    assert_eq!(answers(&store), before, "rebuilt at open after deletion");
    store.close().unwrap();

    let store = Store::reindex(&path, &key, StoreConfig::default()).unwrap();
    assert_eq!(answers(&store), before, "rebuilt by reindex");

    // A read-only reader next to the open store sees the same index.
    let ro = ReadOnlyIndex::open(&path).unwrap();
    assert_eq!(ro.lag().unwrap(), 0);
    let q = Query::parse("rechnung").unwrap();
    let p = Principal::auditor_all();
    let options = SearchOptions::default();
    assert_eq!(
        ro.search(&p, &q, &options).unwrap().hits,
        store.search(&p, &q, &options).unwrap().hits
    );
    store.close().unwrap();
}

/// Records without a document (one audit record per web search) move no tantivy commit:
/// each would restart the indexing threads and reload the searcher with cold caches. They
/// are still applied (nothing waits on them), and at close the payload reaches them, so the
/// next open starts where this one ended.
#[test]
fn records_without_a_document_are_applied_without_a_commit_and_close_records_them() {
    let dir = temp_dir("search-test");
    let path = create(dir.path());
    let store = open(&path);
    add_fixtures(&store);
    store.wait_searchable().unwrap();
    let ro = ReadOnlyIndex::open(&path).unwrap();
    assert_eq!(ro.lag().unwrap(), 0);
    let committed = ro.indexed_seq();
    assert!(committed > 0);

    let mut last = 0;
    for n in 0..40 {
        let event = AuditEvent::new("auditor", "search", format!("web rechnung {n}"), "127.0.0.1");
        last = store.append_audit(&event).unwrap();
        if n % 10 == 0 {
            // In separate batches of the search indexer.
            std::thread::sleep(std::time::Duration::from_millis(120));
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.stats().search_indexed_seq < last {
        assert!(
            std::time::Instant::now() < deadline,
            "the audit records were never applied"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(store.health().search_lag_records, 0);
    assert_eq!(ro.lag().unwrap(), 0, "no message waits");
    assert_eq!(
        ro.indexed_seq(),
        committed,
        "no commit for records without a document"
    );
    assert!(
        ro.searchable_seq().unwrap() >= last,
        "yet searchable up to the last record"
    );
    // A message after them is committed with them.
    let seq = import(&store, &fixtures().join("corpus/spamassassin/0007.eml"));
    store.wait_searchable().unwrap();
    assert_eq!(ro.lag().unwrap(), 0);
    assert!(ro.indexed_seq() >= seq, "committed with the message");

    for n in 0..5 {
        let event = AuditEvent::new("auditor", "view", format!("{seq} {n}"), "127.0.0.1");
        last = store.append_audit(&event).unwrap();
    }
    store.close().unwrap();
    let ro = ReadOnlyIndex::open(&path).unwrap();
    assert!(
        ro.indexed_seq() >= last,
        "close commits the payload: {} < {last}",
        ro.indexed_seq()
    );
    let store = open(&path);
    assert!(store.stats().search_indexed_seq >= last);
    assert!(store.hit_for(&Principal::auditor_all(), seq).unwrap().is_some());
    store.close().unwrap();
}

#[test]
fn a_stale_or_foreign_search_index_is_replaced_at_open() {
    let dir = temp_dir("search-test");
    let a = create(&dir.path().join("a"));
    let b = create(&dir.path().join("b"));
    let store_a = open(&a);
    add_fixtures(&store_a);
    store_a.close().unwrap();
    let store_b = open(&b);
    import(&store_b, &fixtures().join("search/no-date.eml"));
    store_b.close().unwrap();
    // Store b gets a's index (another log, further ahead): it must not be trusted.
    std::fs::remove_dir_all(b.join("search")).unwrap();
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    };
    copy(&a.join("search"), &b.join("search"));
    // A read-only reader refuses it…
    let refused = ReadOnlyIndex::open(&b).err().expect("a foreign index is refused");
    assert!(refused.to_string().contains("another log"), "{refused}");
    // …and opening the store replaces it.
    let store_b = open(&b);
    assert!(seqs(&store_b, "rechnung").is_empty());
    assert_eq!(seqs(&store_b, "undated").len(), 1);
}

/// Hostile queries (issue #10): deep nesting is a typed error, never a stack overflow; the
/// deepest query allowed runs on a thread with a 2 MiB stack (tokio's blocking threads);
/// searches stop at their deadline and when their cancellation flag is set.
#[test]
fn searches_are_bounded_in_shape_time_and_cancellation() {
    use archive_core::search::{Budget, Cancel, QueryErrorKind, Stopped, MAX_DEPTH};
    use archive_core::Error;
    use std::time::Duration;

    let dir = temp_dir("search-bounds");
    let path = create(dir.path());
    let store = open(&path);
    let f = add_fixtures(&store);
    let auditor = Principal::auditor_all();

    for hostile in [
        format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000)),
        format!("{}a", "NOT ".repeat(25_000)),
        format!("{}a", "-".repeat(100_000)),
    ] {
        let e = Query::parse(&hostile).expect_err("too deep");
        assert_eq!(e.kind(), QueryErrorKind::TooDeep, "{e}");
    }

    // The deepest query allowed, alternating AND and OR at every level, with NOTs.
    let mut text = "rechnung".to_string();
    for i in 0..MAX_DEPTH {
        let deeper = if i % 2 == 0 {
            format!("rechnung OR x{i} OR ({text})")
        } else {
            format!("-y{i} ({text})")
        };
        if Query::parse(&deeper).is_err() {
            break;
        }
        text = deeper;
    }
    assert!(text.matches('(').count() >= MAX_DEPTH / 2, "{text}");
    let deepest = Query::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let store = std::sync::Arc::new(store);
    let runner = std::sync::Arc::clone(&store);
    let hits = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            runner
                .search(&Principal::auditor_all(), &deepest, &SearchOptions::default())
                .map(|r| r.total)
        })
        .unwrap()
        .join()
        .expect("the deepest query must not overflow the stack");
    assert!(hits.unwrap() >= 1);

    let q = Query::parse("rechnung").unwrap();
    let found = store.matching_seqs(&auditor, &q, &Budget::default()).unwrap();
    assert_eq!(found, vec![f.rechnung]);

    // Out of time: stopped, with a typed error.
    let expired = Budget::within(Duration::ZERO);
    let e = store
        .search_within(&auditor, &q, &SearchOptions::default(), &expired)
        .expect_err("deadline");
    assert!(matches!(e, Error::SearchStopped(Stopped::Deadline)), "{e}");
    // Cancelled (an IMAP client that went away): stopped too.
    let cancel = Cancel::new();
    let budget = Budget::default().cancelled_by(cancel.clone());
    assert!(store.matching_seqs(&auditor, &q, &budget).is_ok());
    cancel.cancel();
    let e = store.matching_seqs(&auditor, &q, &budget).expect_err("cancelled");
    assert!(matches!(e, Error::SearchStopped(Stopped::Cancelled)), "{e}");
    // The read-only index (the CLI's path) takes the same budget.
    let index = ReadOnlyIndex::open(&path).unwrap();
    let e = index
        .search_within(&auditor, &q, &SearchOptions::default(), &expired)
        .expect_err("deadline");
    assert!(matches!(e, Error::SearchStopped(Stopped::Deadline)), "{e}");
}
