//! Pages in date order that skip segments: the same hits, cursors and (up to the count
//! limit) totals as a search that visits every match, on an index of several segments whose
//! dates mostly follow the order of arrival, with mail from the past and the future mixed in.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use archive_core::search::{Principal, Query, SearchOptions, SearchResults, Sort};
use archive_core::{OnDuplicate, Store, StoreConfig};
use common::{create, envelope, temp_dir};

const BATCHES: u64 = 6;
const PER_BATCH: u64 = 25;

fn open(store: &Path) -> Store {
    Store::open(store, &store.join("signing.key"), StoreConfig::default()).expect("open")
}

fn search(store: &Store, who: &Principal, text: &str, options: &SearchOptions) -> SearchResults {
    let q = Query::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    store
        .search(who, &q, options)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Six batches, each indexed (a segment) before the next: batch b is dated in year 2010 + b,
/// except that the first holds a message from 2031 and the last two from 2004 (an import of
/// old mail), and every fifth message shares its date with the one before (ties by seq).
fn store_of_segments(path: &Path) -> Store {
    let store = open(path);
    let all = Principal::auditor_all();
    let probe = Query::parse("filler").unwrap();
    for batch in 0..BATCHES {
        for i in 0..PER_BATCH {
            let year = match (batch, i) {
                (0, 7) => 2031,
                (5, 3) | (5, 11) => 2004,
                _ => 2010 + batch,
            };
            let day = 1 + (i - i % 5 / 4) % 28;
            let words = if i % 3 == 0 { "filler rare" } else { "filler" };
            let raw = format!(
                "From: a@example.com\r\nTo: b@example.com\r\nSubject: batch {batch} mail {i}\r\n\
                 Date: {day} Mar {year} 10:00:00 +0000\r\n\r\n{words} {batch} {i}\r\n"
            );
            store
                .append_message(
                    &envelope("a@example.com", &["b@example.com"]),
                    raw.as_bytes(),
                    OnDuplicate::Skip,
                )
                .unwrap();
        }
        // A search waits for the indexer: each batch is its own commit, its own segment.
        store.search(&all, &probe, &SearchOptions::default()).unwrap();
    }
    store
}

/// Every page of `text`, following cursors: (hits as (seq, date) per page, totals per page).
fn pages(
    store: &Store,
    text: &str,
    sort: Sort,
    limit: usize,
    count_limit: Option<u64>,
) -> Vec<SearchResults> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let options = SearchOptions {
            sort,
            limit,
            cursor: cursor.clone(),
            snippets: false,
            facets: false,
            count_limit,
        };
        let page = search(store, &Principal::auditor_all(), text, &options);
        cursor = page.next_cursor.clone();
        out.push(page);
        if cursor.is_none() {
            return out;
        }
    }
}

#[test]
fn skipping_pages_equal_full_passes_in_both_date_orders() {
    let dir = temp_dir("date-order");
    let path = create(dir.path());
    let store = store_of_segments(&path);
    for text in ["filler", "rare", "filler -rare", "nothing-matches-this"] {
        for sort in [Sort::Newest, Sort::Oldest] {
            for limit in [1, 3, 7, 40, 1000] {
                let exact = pages(&store, text, sort, limit, None);
                let real = exact[0].total;
                for count_limit in [Some(0), Some(1), Some(5), Some(10_000)] {
                    let skipping = pages(&store, text, sort, limit, count_limit);
                    let hits = |p: &[SearchResults]| -> Vec<Vec<(u64, i64)>> {
                        p.iter()
                            .map(|r| r.hits.iter().map(|h| (h.seq, h.date)).collect())
                            .collect()
                    };
                    let what = format!("{text:?} {sort:?} limit {limit} count_limit {count_limit:?}");
                    assert_eq!(hits(&skipping), hits(&exact), "{what}: the same pages");
                    let cursors =
                        |p: &[SearchResults]| p.iter().map(|r| r.next_cursor.clone()).collect::<Vec<_>>();
                    assert_eq!(cursors(&skipping), cursors(&exact), "{what}: the same cursors");
                    for page in &skipping {
                        if page.total_exact {
                            assert_eq!(page.total, real, "{what}: an exact total");
                        } else {
                            assert!(
                                page.total < real,
                                "{what}: a lower bound below {real}: {}",
                                page.total
                            );
                            assert!(page.total >= count_limit.unwrap_or(0), "{what}");
                        }
                    }
                    if count_limit == Some(10_000) {
                        assert!(
                            skipping.iter().all(|p| p.total_exact && p.total == real),
                            "{what}"
                        );
                    }
                }
            }
        }
    }
    // Every message once, in order, over the pages.
    let all: Vec<(u64, i64)> = pages(&store, "filler", Sort::Newest, 7, Some(1))
        .iter()
        .flat_map(|r| r.hits.iter().map(|h| (h.seq, h.date)).collect::<Vec<_>>())
        .collect();
    assert_eq!(all.len() as u64, BATCHES * PER_BATCH);
    assert_eq!(all.iter().map(|h| h.0).collect::<BTreeSet<_>>().len(), all.len());
    assert!(all.windows(2).all(|w| (w[0].1, w[0].0) > (w[1].1, w[1].0)));
}

/// The point of it: a first page of a word most messages hold, with a small count limit,
/// stops before the older segments (its total says "at least"), and counting every match is
/// still one option away.
#[test]
fn a_first_page_stops_counting_where_older_segments_cannot_reach_it() {
    let dir = temp_dir("date-order-stop");
    let path = create(dir.path());
    let store = store_of_segments(&path);
    let first = |count_limit| {
        let options = SearchOptions {
            limit: 3,
            snippets: false,
            count_limit,
            ..SearchOptions::default()
        };
        search(&store, &Principal::auditor_all(), "filler", &options)
    };
    let bounded = first(Some(1));
    assert!(!bounded.total_exact, "older segments were skipped");
    assert!(
        bounded.total >= 1 && bounded.total < BATCHES * PER_BATCH,
        "{}",
        bounded.total
    );
    let exact = first(None);
    assert!(exact.total_exact);
    assert_eq!(exact.total, BATCHES * PER_BATCH);
    assert_eq!(
        bounded.hits.iter().map(|h| h.seq).collect::<Vec<_>>(),
        exact.hits.iter().map(|h| h.seq).collect::<Vec<_>>()
    );
    // The 2031 message leads, then the newest batch's own (2015), never the 2004 imports.
    assert!(bounded.hits[0].subject.contains("batch 0 mail 7"));
    assert!(bounded.hits[1].subject.starts_with("batch 5"));
}

/// An export's selection walks every page by cursor and refuses, before gathering them, more
/// messages than it may hold — using the count limit, not a count of everything.
#[test]
fn an_export_selection_holds_every_delivery_or_says_how_many_are_too_many() {
    let dir = temp_dir("date-order-export");
    let path = create(dir.path());
    let store = store_of_segments(&path);
    let q = Query::parse("filler").unwrap();
    let all = Principal::auditor_all();
    let every = archive_core::export::selected_deliveries(|o| store.search(&all, &q, o), None).unwrap();
    assert_eq!(every.len() as u64, BATCHES * PER_BATCH);
    assert!(every.windows(2).all(|w| w[0] < w[1]));
    let fits =
        archive_core::export::selected_deliveries(|o| store.search(&all, &q, o), Some(BATCHES * PER_BATCH))
            .unwrap();
    assert_eq!(fits, every);
    let refused =
        archive_core::export::selected_deliveries(|o| store.search(&all, &q, o), Some(40)).unwrap_err();
    assert!(
        refused.to_string().contains("finds 150 messages; at most 40"),
        "{refused}"
    );
}

/// Within one segment: blocks of 1,024 documents are skipped too. 2,500 messages in one
/// commit, dated in the order they arrive, with one from the future in the first block (as
/// spam with a bogus date would be): the page is the same as a full pass's, and with a small
/// count limit the oldest blocks are not even counted.
#[test]
fn blocks_of_one_segment_are_skipped_past_a_bogus_date() {
    let dir = temp_dir("date-order-blocks");
    let path = create(dir.path());
    let store = open(&path);
    let env = envelope("a@example.com", &["b@example.com"]);
    let raws: Vec<String> = (0..2_500u64)
        .map(|i| {
            let date = if i == 5 {
                "1 Jan 2099 00:00:00 +0000".to_string()
            } else {
                let (day, minute) = (1 + i / 1440, i % 1440);
                format!("{day} Mar 2020 {:02}:{:02}:00 +0000", minute / 60, minute % 60)
            };
            format!("From: a@example.com\r\nTo: b@example.com\r\nSubject: block {i}\r\nDate: {date}\r\n\r\nfiller {i}\r\n")
        })
        .collect();
    let batch: Vec<(&archive_core::Envelope, &[u8])> = raws.iter().map(|r| (&env, r.as_bytes())).collect();
    store.append_messages(&batch, OnDuplicate::Skip).unwrap();
    let all = Principal::auditor_all();
    let page = |count_limit| {
        let options = SearchOptions {
            limit: 3,
            snippets: false,
            count_limit,
            ..SearchOptions::default()
        };
        search(&store, &all, "filler", &options)
    };
    let exact = page(None);
    assert_eq!((exact.total, exact.total_exact), (2_500, true));
    let bounded = page(Some(1));
    let seqs = |r: &SearchResults| r.hits.iter().map(|h| h.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&bounded), seqs(&exact));
    assert!(exact.hits[0].subject.ends_with("block 5"), "the bogus date leads");
    assert!(exact.hits[1].subject.ends_with("block 2499"));
    assert!(!bounded.total_exact, "the older blocks were skipped");
    assert!(bounded.total < 2_500, "{}", bounded.total);
    for sort in [Sort::Newest, Sort::Oldest] {
        for limit in [1, 7, 1000] {
            let a = pages(&store, "filler", sort, limit, None);
            let b = pages(&store, "filler", sort, limit, Some(1));
            let hits = |p: &[SearchResults]| {
                p.iter()
                    .flat_map(|r| r.hits.iter().map(|h| h.seq))
                    .collect::<Vec<_>>()
            };
            assert_eq!(hits(&b), hits(&a), "{sort:?} {limit}");
        }
    }
}
