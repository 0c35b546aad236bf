//! Search facets against a real store: counts by year, month (UTC, of the date hits show) and
//! sender domain, scoped to the principal, over every page, and each bucket's narrowing query
//! giving exactly that bucket's count as its total.

mod common;

use archive_core::search::{narrow, Budget, Facets, Principal, Query, SearchOptions};
use archive_core::{OnDuplicate, Store, StoreConfig};
use common::{create, envelope, temp_dir};

fn mail(from: &str, to: &str, date: Option<&str>, subject: &str) -> Vec<u8> {
    let date = date.map_or(String::new(), |d| format!("Date: {d}\r\n"));
    format!(
        "From: {from}\r\nTo: {to}\r\n{date}Subject: {subject}\r\nMessage-ID: <{}@test>\r\n\r\n\
         quarterly figures {subject}\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}

struct Archive {
    _dir: tempfile::TempDir,
    store: Store,
}

/// Alice's mail (from one.example, two.example, an upper-case ONE.Example., no From address,
/// an undated message) and Bob's (from secret.example, which Alice never sees).
fn archive() -> Archive {
    let dir = temp_dir("facets");
    let path = create(dir.path());
    let store = Store::open(&path, &path.join("signing.key"), StoreConfig::default()).unwrap();
    let alice = "alice@home.example";
    let bob = "bob@home.example";
    let mut n = 0;
    let mut add = |from: &str, to: &str, date: Option<&str>| {
        n += 1;
        let raw = mail(from, to, date, &format!("mail {n}"));
        store
            .append_message(&envelope("relay@mx.example", &[to]), &raw, OnDuplicate::Skip)
            .unwrap();
    };
    for day in ["05", "06", "07"] {
        add(
            "Carl <carl@one.example>",
            alice,
            Some(&format!("Tue, {day} Mar 2024 10:00:00 +0000")),
        );
    }
    // 01:30 at +02:00 on 1 April is 31 March in UTC: a March message.
    add("carl@one.example", alice, Some("Mon, 01 Apr 2024 01:30:00 +0200"));
    add(
        "Dora <DORA@ONE.Example.>",
        alice,
        Some("Wed, 10 Apr 2024 09:00:00 +0000"),
    );
    add("eve@two.example", alice, Some("Wed, 10 Apr 2024 09:00:00 +0000"));
    add("eve@two.example", alice, Some("Sun, 31 Dec 2023 23:59:59 +0000"));
    add(
        "undisclosed-senders:;",
        alice,
        Some("Mon, 01 Jan 2024 00:00:00 +0000"),
    );
    add("eve@two.example", alice, None);
    add("spy@secret.example", bob, Some("Thu, 07 Mar 2024 10:00:00 +0000"));
    add("spy@secret.example", bob, Some("Fri, 08 Mar 2024 10:00:00 +0000"));
    store.wait_searchable().unwrap();
    Archive { _dir: dir, store }
}

fn search(
    store: &Store,
    who: &Principal,
    q: &str,
    options: &SearchOptions,
) -> archive_core::search::SearchResults {
    let query = Query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    store
        .search(who, &query, options)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn facets_of(store: &Store, who: &Principal, q: &str) -> (u64, Facets) {
    let options = SearchOptions {
        facets: true,
        limit: 2,
        ..SearchOptions::default()
    };
    let r = search(store, who, q, &options);
    (r.total, r.facets.expect("facets asked for"))
}

fn pairs(buckets: &[archive_core::search::Bucket]) -> Vec<(&str, u64)> {
    buckets.iter().map(|b| (b.value.as_str(), b.count)).collect()
}

/// Every bucket's narrowed query finds exactly its count.
fn check_narrowing(store: &Store, who: &Principal, q: &str, facets: &Facets) {
    let options = SearchOptions {
        snippets: false,
        ..SearchOptions::default()
    };
    for b in facets
        .years
        .iter()
        .chain(&facets.months)
        .chain(&facets.sender_domains)
    {
        let clause = b.clause.as_deref().expect("a clause");
        let narrowed = narrow(q, clause);
        let total = search(store, who, &narrowed, &options).total;
        assert_eq!(total, b.count, "{narrowed:?} for bucket {:?}", b.value);
    }
}

#[test]
fn facets_count_by_year_month_and_sender_domain_within_scope() {
    let a = archive();
    let alice = Principal::user(["alice@home.example"]).unwrap();
    let (total, facets) = facets_of(&a.store, &alice, "quarterly");
    assert_eq!(total, 9);
    assert!(facets.exact);
    // The undated message is dated by its receive time (now): a year and month of its own.
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let (this_year, this_month) = (
        now.year().to_string(),
        format!("{}-{:02}", now.year(), now.month()),
    );
    assert_eq!(
        pairs(&facets.years),
        [(this_year.as_str(), 1), ("2024", 7), ("2023", 1)]
    );
    assert_eq!(
        pairs(&facets.months),
        [
            (this_month.as_str(), 1),
            ("2024-04", 2),
            ("2024-03", 4),
            ("2024-01", 1),
            ("2023-12", 1)
        ]
    );
    assert_eq!(
        pairs(&facets.sender_domains),
        [("one.example", 5), ("two.example", 3)]
    );
    // The message without a From address.
    assert_eq!(facets.other_sender_domains, 1);
    assert_eq!(
        facets.sender_domains[0].clause.as_deref(),
        Some("fromdomain:one.example")
    );
    check_narrowing(&a.store, &alice, "quarterly", &facets);

    // Bob's sender domain exists, but never for Alice, not even when she asks for it.
    let all = Principal::auditor_all();
    let (total, everything) = facets_of(&a.store, &all, "quarterly");
    assert_eq!(total, 11);
    assert_eq!(
        pairs(&everything.sender_domains),
        [("one.example", 5), ("two.example", 3), ("secret.example", 2)]
    );
    assert_eq!(pairs(&everything.months)[2], ("2024-03", 6));
    check_narrowing(&a.store, &all, "quarterly", &everything);
    let (total, hers) = facets_of(&a.store, &alice, "fromdomain:secret.example");
    assert_eq!((total, hers.sender_domains.len(), hers.years.len()), (0, 0, 0));

    // An OR query is narrowed in parentheses and still counts exactly.
    let q = "fromdomain:two.example OR fromdomain:one.example";
    let (total, facets) = facets_of(&a.store, &alice, q);
    assert_eq!(total, 8);
    check_narrowing(&a.store, &alice, q, &facets);
}

#[test]
fn facets_are_asked_for_cover_every_page_and_stay_within_the_budget() {
    let a = archive();
    let all = Principal::auditor_all();
    let plain = search(&a.store, &all, "quarterly", &SearchOptions::default());
    assert!(plain.facets.is_none(), "facets cost only when asked for");
    let first = SearchOptions {
        facets: true,
        limit: 3,
        ..SearchOptions::default()
    };
    let page1 = search(&a.store, &all, "quarterly", &first);
    let next = SearchOptions {
        cursor: page1.next_cursor.clone(),
        ..first.clone()
    };
    let page2 = search(&a.store, &all, "quarterly", &next);
    assert_eq!(page2.hits.len(), 3);
    assert_eq!(page1.facets, page2.facets, "a later page counts the whole result");
    for sort in [
        archive_core::search::Sort::Oldest,
        archive_core::search::Sort::Relevance,
        archive_core::search::Sort::Size,
    ] {
        let other = SearchOptions {
            sort,
            ..first.clone()
        };
        assert_eq!(search(&a.store, &all, "quarterly", &other).facets, page1.facets);
    }
    let spent = Budget::within(std::time::Duration::ZERO);
    let query = Query::parse("quarterly").unwrap();
    let err = a.store.search_within(&all, &query, &first, &spent).unwrap_err();
    assert!(matches!(err, archive_core::Error::SearchStopped(_)), "{err}");
}

#[test]
fn fromdomain_is_exact_and_case_insensitive() {
    let a = archive();
    let all = Principal::auditor_all();
    let total = |q: &str| search(&a.store, &all, q, &SearchOptions::default()).total;
    assert_eq!(total("fromdomain:one.example"), 5);
    assert_eq!(total("fromdomain:ONE.EXAMPLE."), 5);
    assert_eq!(total("fromdomain:@one.example"), 5);
    // Only the sender's: home.example is every recipient's domain.
    assert_eq!(total("fromdomain:home.example"), 0);
    assert_eq!(total("domain:home.example"), 11);
    // No parent domains: a facet bucket is one domain exactly.
    assert_eq!(total("fromdomain:example"), 0);
}
