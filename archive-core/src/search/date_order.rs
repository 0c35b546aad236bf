//! The first page of a search in date order (newest or oldest first) without visiting every
//! match: segments are taken in date order (each knows its newest and oldest date), and once
//! the page is full, a segment whose dates cannot beat the page's last hit is only counted —
//! and not even that once [`SearchOptions::count_limit`](super::SearchOptions) matches have
//! been counted; the total is then a lower bound. Mail is archived roughly in the order it is
//! written, so the newest matches sit in the newest segments and a page of a common word
//! costs a few segments, not half the archive (the sort optimisation Lucene and Elasticsearch
//! make with `track_total_hits`). The result equals the full pass's whatever the dates: a
//! segment is skipped only when no document in it could enter the page.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tantivy::columnar::{Cardinality, Column};
use tantivy::query::{EnableScoring, Query as TantivyQuery, Weight};
use tantivy::{DocAddress, DocId, DocSet, Searcher, SegmentReader, COLLECT_BLOCK_BUFFER_LEN};

use super::budget::Budget;
use crate::Result;

/// Matching documents between two checks of the budget.
const CHECK_EVERY: u64 = 4096;

/// What a date-ordered page found.
pub(crate) struct DatePage {
    /// Matches counted: all of them when `exact`, else at least this many.
    pub counted: u64,
    /// Whether `counted` is every match.
    pub exact: bool,
    /// The best `k` matches, best first.
    pub found: Vec<DocAddress>,
}

/// The `k` first matches of `query` newest first (`newest`) or oldest first, ties by seq in
/// the same direction, counting matches exactly up to `count_limit` (all when `None`).
pub(crate) fn first_page(
    searcher: &Searcher,
    query: &dyn TantivyQuery,
    newest: bool,
    k: usize,
    count_limit: Option<u64>,
    budget: &Budget,
) -> Result<DatePage> {
    budget.check()?;
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    let mut segments = Vec::with_capacity(searcher.segment_readers().len());
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let dates = reader.fast_fields().i64("date")?;
        let seqs = reader.fast_fields().u64("seq")?;
        // Bounds only of a column every document has a value in; else no segment is skipped.
        let (oldest, latest) = if dates.get_cardinality() == Cardinality::Full {
            (dates.min_value(), dates.max_value())
        } else {
            (i64::MIN, i64::MAX)
        };
        segments.push(Segment {
            ord: ord as u32,
            reader,
            dates,
            seqs,
            oldest,
            latest,
        });
    }
    if newest {
        segments.sort_by_key(|s| std::cmp::Reverse(s.latest));
    } else {
        segments.sort_by_key(|s| s.oldest);
    }
    let mut page = Page {
        newest,
        k,
        heap: BinaryHeap::with_capacity(k + 1),
    };
    let mut counted = 0u64;
    let mut exact = true;
    for segment in &segments {
        if page.cannot_improve(segment) {
            match count_limit {
                Some(limit) if counted >= limit => {
                    exact = false;
                    break;
                }
                _ => {
                    let (n, whole) =
                        count(&*weight, segment.reader, count_limit.map(|l| l - counted), budget)?;
                    counted += n;
                    if !whole {
                        exact = false;
                        break;
                    }
                }
            }
            continue;
        }
        counted += page.collect(&*weight, segment, budget)?;
    }
    let mut best: Vec<Ranked> = page.heap.into_iter().map(|r| r.0).collect();
    best.sort_by(|a, b| b.cmp(a));
    Ok(DatePage {
        counted,
        exact,
        found: best.into_iter().map(|r| r.address).collect(),
    })
}

/// Matches of `query` up to `limit` (all when `None`): the count, and whether it is all.
pub(crate) fn count_up_to(
    searcher: &Searcher,
    query: &dyn TantivyQuery,
    limit: Option<u64>,
    budget: &Budget,
) -> Result<(u64, bool)> {
    budget.check()?;
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    let mut counted = 0u64;
    for reader in searcher.segment_readers() {
        let left = match limit {
            Some(l) if counted >= l => return Ok((counted, false)),
            Some(l) => Some(l - counted),
            None => None,
        };
        let (n, whole) = count(&*weight, reader, left, budget)?;
        counted += n;
        if !whole {
            return Ok((counted, false));
        }
    }
    Ok((counted, true))
}

/// Live matches in one segment, stopping once `limit` are counted: (count, whether it is
/// all of the segment's).
fn count(
    weight: &dyn Weight,
    reader: &SegmentReader,
    limit: Option<u64>,
    budget: &Budget,
) -> Result<(u64, bool)> {
    let mut scorer = weight.scorer(reader, 1.0)?;
    let alive = reader.alive_bitset();
    let mut block = [0 as DocId; COLLECT_BLOCK_BUFFER_LEN];
    let (mut n, mut since_check) = (0u64, 0u64);
    loop {
        let filled = scorer.fill_buffer(&mut block);
        n += match alive {
            None => filled as u64,
            Some(a) => block[..filled].iter().filter(|d| a.is_alive(**d)).count() as u64,
        };
        if filled < COLLECT_BLOCK_BUFFER_LEN {
            return Ok((n, true));
        }
        if limit.is_some_and(|l| n >= l) {
            return Ok((n, false));
        }
        since_check += filled as u64;
        if since_check >= CHECK_EVERY {
            since_check = 0;
            budget.check()?;
        }
    }
}

struct Segment<'a> {
    ord: u32,
    reader: &'a SegmentReader,
    dates: Column<i64>,
    seqs: Column<u64>,
    /// The segment's oldest and newest date.
    oldest: i64,
    latest: i64,
}

/// A hit on the page; `Ord` says which is better (greater is better).
#[derive(PartialEq, Eq)]
struct Ranked {
    newest: bool,
    date: i64,
    seq: u64,
    address: DocAddress,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_key = (self.date, self.seq).cmp(&(other.date, other.seq));
        if self.newest {
            by_key
        } else {
            by_key.reverse()
        }
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The best `k` so far: a heap whose top is the worst kept (hence `Reverse`).
struct Page {
    newest: bool,
    k: usize,
    heap: BinaryHeap<std::cmp::Reverse<Ranked>>,
}

impl Page {
    /// The date of the worst hit kept, once the page is full.
    fn bar(&self) -> Option<i64> {
        (self.heap.len() >= self.k)
            .then(|| self.heap.peek().map(|r| r.0.date))
            .flatten()
    }

    /// Whether no document of `segment` could enter the page: every date in it is strictly
    /// worse than the page's worst (an equal date might win on seq).
    fn cannot_improve(&self, segment: &Segment) -> bool {
        match self.bar() {
            Some(bar) if self.newest => segment.latest < bar,
            Some(bar) => segment.oldest > bar,
            None => false,
        }
    }

    /// Offers every live match of the segment to the page; returns how many there were.
    fn collect(&mut self, weight: &dyn Weight, segment: &Segment, budget: &Budget) -> Result<u64> {
        let mut scorer = weight.scorer(segment.reader, 1.0)?;
        let alive = segment.reader.alive_bitset();
        let mut block = [0 as DocId; COLLECT_BLOCK_BUFFER_LEN];
        let (mut n, mut since_check) = (0u64, 0u64);
        loop {
            let filled = scorer.fill_buffer(&mut block);
            for &doc in &block[..filled] {
                if alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                n += 1;
                self.offer(segment, doc);
            }
            if filled < COLLECT_BLOCK_BUFFER_LEN {
                return Ok(n);
            }
            since_check += filled as u64;
            if since_check >= CHECK_EVERY {
                since_check = 0;
                budget.check()?;
            }
        }
    }

    fn offer(&mut self, segment: &Segment, doc: DocId) {
        let date = segment.dates.first(doc).unwrap_or(i64::MIN);
        if let Some(bar) = self.bar() {
            let worse = if self.newest { date < bar } else { date > bar };
            if worse {
                return;
            }
        }
        let candidate = Ranked {
            newest: self.newest,
            date,
            seq: segment.seqs.first(doc).unwrap_or(0),
            address: DocAddress::new(segment.ord, doc),
        };
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(candidate));
        } else if self.heap.peek().is_some_and(|worst| candidate > worst.0) {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(candidate));
        }
    }
}
