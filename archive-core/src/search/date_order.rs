//! The first page of a search in date order (newest or oldest first) without visiting every
//! match. Each index segment is seen as blocks of [`BLOCK_DOCS`] documents, each with its best
//! date (newest or oldest; computed once per segment, which never changes). Blocks are taken
//! best first; once the page is full, a block whose best date is worse than the page's last
//! hit cannot change the page, nor can any after it: those are only counted — and not even
//! that once [`SearchOptions::count_limit`](super::SearchOptions) matches have been counted;
//! the total is then a lower bound. Mail is archived roughly in the order it is written, so
//! the newest matches sit in a few blocks, and a bogus date (spam from 2099, a message without
//! one dated when it came) costs its own block, not the page (the same idea as Lucene's
//! block-max skipping with Elasticsearch's `track_total_hits`). The result equals the full
//! pass's whatever the dates: a block is skipped only when no document in it could enter the
//! page.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use tantivy::columnar::Column;
use tantivy::index::SegmentId;
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

/// Documents per block: the unit a page skips.
const BLOCK_DOCS: u32 = 1024;

/// Most blocks collected between two looks at the page's bar (one while the bar moves, twice
/// as many each time it held).
const MAX_BLOCKS_AT_ONCE: usize = 256;

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
    let mut blocks = Vec::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let dates = reader.fast_fields().i64("date")?;
        let seqs = reader.fast_fields().u64("seq")?;
        for (i, best) in block_bests(reader, &dates, newest).iter().enumerate() {
            let start = i as u32 * BLOCK_DOCS;
            blocks.push(Block {
                segment: segments.len(),
                start,
                end: (start + BLOCK_DOCS).min(reader.max_doc()),
                best: *best,
            });
        }
        segments.push(Segment {
            ord: ord as u32,
            reader,
            dates,
            seqs,
        });
    }
    // Best blocks first: the newest (oldest) date each holds.
    if newest {
        blocks.sort_by_key(|b| std::cmp::Reverse(b.best));
    } else {
        blocks.sort_by_key(|b| b.best);
    }
    let mut page = Page {
        newest,
        k,
        heap: BinaryHeap::with_capacity(k + 1),
    };
    // Blocks in that order, a few at a time, until the page is full and the next block's
    // best date is worse than the page's last hit: no later block can change the page then
    // (an equal date might still win on seq, so it is taken).
    let mut counted = 0u64;
    let mut taken = 0;
    let mut at_once = 1;
    while taken < blocks.len() {
        let bar = page.bar();
        let reachable = |b: &Block| match bar {
            Some(bar) if newest => b.best >= bar,
            Some(bar) => b.best <= bar,
            None => true,
        };
        let window = &blocks[taken..(taken + at_once).min(blocks.len())];
        let upto = taken + window.iter().take_while(|b| reachable(b)).count();
        if upto == taken {
            break;
        }
        counted += page.collect(&*weight, &segments, &blocks[taken..upto], budget)?;
        taken = upto;
        // While the page's bar moves, look again after every block; once it holds, take more
        // at a time (each look opens the query's postings again).
        at_once = if page.bar() != bar {
            1
        } else {
            (at_once * 2).min(MAX_BLOCKS_AT_ONCE)
        };
    }
    let beyond = &blocks[taken..];
    let mut exact = true;
    if !beyond.is_empty() {
        let left = count_limit.map(|l| l.saturating_sub(counted));
        if left == Some(0) {
            exact = false;
        } else {
            let (n, whole) = count_blocks(&*weight, &segments, beyond, left, budget)?;
            counted += n;
            exact = whole;
        }
    }
    let mut best: Vec<Ranked> = page.heap.into_iter().map(|r| r.0).collect();
    best.sort_by(|a, b| b.cmp(a));
    Ok(DatePage {
        counted,
        exact,
        found: best.into_iter().map(|r| r.address).collect(),
    })
}

/// A run of documents of one segment and the best date among them.
#[derive(Clone, Copy)]
struct Block {
    segment: usize,
    start: DocId,
    end: DocId,
    best: i64,
}

/// The blocks of `blocks` grouped by segment, each group in document order.
fn by_segment(blocks: &[Block]) -> Vec<Vec<Block>> {
    let mut sorted = blocks.to_vec();
    sorted.sort_by_key(|b| (b.segment, b.start));
    let mut groups: Vec<Vec<Block>> = Vec::new();
    for b in sorted {
        match groups.last_mut() {
            Some(g) if g[0].segment == b.segment => g.push(b),
            _ => groups.push(vec![b]),
        }
    }
    groups
}

/// Live matches in `blocks`, stopping once `limit` are counted: (count, whether all).
fn count_blocks(
    weight: &dyn Weight,
    segments: &[Segment],
    blocks: &[Block],
    limit: Option<u64>,
    budget: &Budget,
) -> Result<(u64, bool)> {
    let mut n = 0u64;
    let whole = walk(weight, segments, blocks, budget, |_, _| {
        n += 1;
        limit.is_none_or(|l| n < l)
    })?;
    Ok((n, whole))
}

/// Calls `each` with every live match in `blocks` (each segment's in document order, one
/// scorer per segment seeking from block to block) until it returns false; returns whether
/// it saw them all.
fn walk(
    weight: &dyn Weight,
    segments: &[Segment],
    blocks: &[Block],
    budget: &Budget,
    mut each: impl FnMut(&Segment, DocId) -> bool,
) -> Result<bool> {
    let mut since_check = 0u64;
    for group in by_segment(blocks) {
        let segment = &segments[group[0].segment];
        let alive = segment.reader.alive_bitset();
        let mut scorer = weight.scorer(segment.reader, 1.0)?;
        for block in &group {
            let mut doc = scorer.doc();
            if doc < block.start {
                doc = scorer.seek(block.start);
            }
            while doc < block.end {
                if alive.is_none_or(|a| a.is_alive(doc)) && !each(segment, doc) {
                    return Ok(false);
                }
                since_check += 1;
                if since_check >= CHECK_EVERY {
                    since_check = 0;
                    budget.check()?;
                }
                doc = scorer.advance();
            }
        }
    }
    Ok(true)
}

/// The best date (newest: the largest; oldest: the smallest) of each block of a segment,
/// computed once per segment (segments never change) and kept for the next search.
fn block_bests(reader: &SegmentReader, dates: &Column<i64>, newest: bool) -> Arc<Vec<i64>> {
    let key = (reader.segment_id(), newest);
    {
        let cache = BLOCK_BESTS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cache.get(&key) {
            return Arc::clone(found);
        }
    }
    let max_doc = reader.max_doc();
    let mut bests = Vec::with_capacity(max_doc.div_ceil(BLOCK_DOCS) as usize);
    let mut start = 0;
    while start < max_doc {
        let end = (start + BLOCK_DOCS).min(max_doc);
        // A document without a date ranks as the page does (the oldest possible).
        let dated = (start..end).map(|doc| dates.first(doc).unwrap_or(i64::MIN));
        bests.push(if newest { dated.max() } else { dated.min() }.unwrap_or(i64::MIN));
        start = end;
    }
    let bests = Arc::new(bests);
    let mut cache = BLOCK_BESTS.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= MAX_CACHED_SEGMENTS {
        cache.clear();
    }
    cache.insert(key, Arc::clone(&bests));
    bests
}

/// Segments whose block dates are kept (both orders count apart); past it the cache starts
/// over (merges replace segments, and the old ones are never asked for again).
const MAX_CACHED_SEGMENTS: usize = 512;

type BlockBests = HashMap<(SegmentId, bool), Arc<Vec<i64>>>;

static BLOCK_BESTS: LazyLock<Mutex<BlockBests>> = LazyLock::new(|| Mutex::new(HashMap::new()));

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

    /// Offers every live match in `blocks` to the page; returns how many there were.
    fn collect(
        &mut self,
        weight: &dyn Weight,
        segments: &[Segment],
        blocks: &[Block],
        budget: &Budget,
    ) -> Result<u64> {
        let mut n = 0u64;
        walk(weight, segments, blocks, budget, |segment, doc| {
            n += 1;
            self.offer(segment, doc);
            true
        })?;
        Ok(n)
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
