//! How much work one search may do: a deadline and a cancellation flag, checked by a tantivy
//! collector between segments and every [`CHECK_EVERY`] matching documents, so a search over
//! a large index stops soon after its time is up or its asker has gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{Query, Weight};
use tantivy::{DocId, DocSet, Searcher, SegmentReader, COLLECT_BLOCK_BUFFER_LEN, TERMINATED};

/// How long a search may run unless its caller says otherwise.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(30);

/// Matching documents between two checks of the budget within a segment.
const CHECK_EVERY: u32 = 4096;

/// Why a search stopped before it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    /// It ran out of time.
    #[error("the search took longer than its time limit")]
    Deadline,
    /// Its caller cancelled it (an IMAP client disconnected, say).
    #[error("the search was cancelled")]
    Cancelled,
}

impl From<Stopped> for crate::Error {
    fn from(why: Stopped) -> Self {
        crate::Error::SearchStopped(why)
    }
}

/// A flag that stops the searches holding it. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not set yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stops every search holding this flag (at its next check).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The bounds of one search: a deadline, and optionally a cancellation flag.
#[derive(Clone, Debug)]
pub struct Budget {
    deadline: Instant,
    cancel: Option<Cancel>,
}

impl Default for Budget {
    /// [`DEFAULT_TIME_LIMIT`] from now, not cancellable.
    fn default() -> Self {
        Budget::within(DEFAULT_TIME_LIMIT)
    }
}

impl Budget {
    /// A search that must finish within `time` from now.
    pub fn within(time: Duration) -> Budget {
        let now = Instant::now();
        Budget {
            deadline: now.checked_add(time).unwrap_or(now + DEFAULT_TIME_LIMIT),
            cancel: None,
        }
    }

    /// The same budget, also stopped when `cancel` is set.
    pub fn cancelled_by(mut self, cancel: Cancel) -> Budget {
        self.cancel = Some(cancel);
        self
    }

    /// `Err` once the search must stop.
    pub fn check(&self) -> Result<(), Stopped> {
        if self.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
            return Err(Stopped::Cancelled);
        }
        if Instant::now() >= self.deadline {
            return Err(Stopped::Deadline);
        }
        Ok(())
    }
}

/// `inner` run within `budget`. tantivy collectors cannot fail per document, so this one
/// drives the segment's scorer itself (as tantivy's default does) and fails the search when
/// the budget is spent; [`Bounded::search`] reports that as [`Stopped`].
pub(crate) struct Bounded<'a, C> {
    inner: C,
    budget: &'a Budget,
    stopped: OnceLock<Stopped>,
}

impl<'a, C: Collector> Bounded<'a, C> {
    pub fn new(inner: C, budget: &'a Budget) -> Self {
        Bounded {
            inner,
            budget,
            stopped: OnceLock::new(),
        }
    }

    /// Runs `query` with this collector: a spent budget is [`crate::Error::SearchStopped`].
    pub fn search(&self, searcher: &Searcher, query: &dyn Query) -> crate::Result<C::Fruit> {
        self.budget.check()?;
        searcher
            .search(query, self)
            .map_err(|e| match self.stopped.get() {
                Some(why) => crate::Error::from(*why),
                None => crate::Error::from(e),
            })
    }

    fn check(&self) -> tantivy::Result<()> {
        self.budget.check().map_err(|why| {
            let _ = self.stopped.set(why);
            tantivy::TantivyError::InternalError(why.to_string())
        })
    }
}

impl<C: Collector> Collector for Bounded<'_, C> {
    type Fruit = C::Fruit;
    type Child = C::Child;

    fn check_schema(&self, schema: &tantivy::schema::Schema) -> tantivy::Result<()> {
        self.inner.check_schema(schema)
    }

    fn for_segment(&self, ord: u32, segment: &SegmentReader) -> tantivy::Result<C::Child> {
        self.inner.for_segment(ord, segment)
    }

    fn requires_scoring(&self) -> bool {
        self.inner.requires_scoring()
    }

    fn merge_fruits(&self, fruits: Vec<<C::Child as SegmentCollector>::Fruit>) -> tantivy::Result<C::Fruit> {
        self.inner.merge_fruits(fruits)
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        ord: u32,
        reader: &SegmentReader,
    ) -> tantivy::Result<<C::Child as SegmentCollector>::Fruit> {
        self.check()?;
        let scoring = self.inner.requires_scoring();
        let mut child = self.inner.for_segment(ord, reader)?;
        let mut scorer = weight.scorer(reader, 1.0)?;
        let alive = reader.alive_bitset();
        if !scoring {
            // Blocks of matching documents, as tantivy's own collection without scores:
            // one virtual call per block instead of per document.
            let mut block = [0 as DocId; COLLECT_BLOCK_BUFFER_LEN];
            let mut since_check = 0u32;
            loop {
                let filled = scorer.fill_buffer(&mut block);
                let docs = &block[..filled];
                match alive {
                    None => child.collect_block(docs),
                    Some(a) => docs
                        .iter()
                        .filter(|d| a.is_alive(**d))
                        .for_each(|d| child.collect(*d, 0.0)),
                }
                if filled < COLLECT_BLOCK_BUFFER_LEN {
                    break;
                }
                since_check += filled as u32;
                if since_check >= CHECK_EVERY {
                    since_check = 0;
                    self.check()?;
                }
            }
            return Ok(child.harvest());
        }
        let mut since_check = 0u32;
        let mut doc = scorer.doc();
        while doc != TERMINATED {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                child.collect(doc, scorer.score());
            }
            since_check += 1;
            if since_check == CHECK_EVERY {
                since_check = 0;
                self.check()?;
            }
            doc = scorer.advance();
        }
        Ok(child.harvest())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tantivy::collector::Count;
    use tantivy::query::AllQuery;
    use tantivy::schema::{Schema, STORED, TEXT};
    use tantivy::{doc, DocId, Index, Score};

    use super::*;

    /// Counts documents, and cancels `cancel` at the `at`-th one: a client that goes away
    /// while the search runs.
    struct CancelAt {
        seen: Arc<AtomicUsize>,
        cancel: Cancel,
        at: usize,
    }

    struct CancelAtSegment {
        seen: Arc<AtomicUsize>,
        cancel: Cancel,
        at: usize,
    }

    impl Collector for CancelAt {
        type Fruit = ();
        type Child = CancelAtSegment;

        fn for_segment(&self, _: u32, _: &SegmentReader) -> tantivy::Result<Self::Child> {
            Ok(CancelAtSegment {
                seen: Arc::clone(&self.seen),
                cancel: self.cancel.clone(),
                at: self.at,
            })
        }

        fn requires_scoring(&self) -> bool {
            false
        }

        fn merge_fruits(&self, _: Vec<()>) -> tantivy::Result<()> {
            Ok(())
        }
    }

    impl SegmentCollector for CancelAtSegment {
        type Fruit = ();

        fn collect(&mut self, _: DocId, _: Score) {
            if self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.at {
                self.cancel.cancel();
            }
        }

        fn harvest(self) {}
    }

    fn index_of(docs: usize) -> Index {
        let mut schema = Schema::builder();
        let text = schema.add_text_field("text", TEXT | STORED);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for i in 0..docs {
            writer.add_document(doc!(text => format!("doc {i}"))).unwrap();
        }
        writer.commit().unwrap();
        index
    }

    #[test]
    fn a_cancelled_search_stops_within_its_segment() {
        let docs = 50_000;
        let index = index_of(docs);
        let searcher = index.reader().unwrap().searcher();
        let seen = Arc::new(AtomicUsize::new(0));
        let cancel = Cancel::new();
        let budget = Budget::within(Duration::from_secs(3600)).cancelled_by(cancel.clone());
        let collector = Bounded::new(
            CancelAt {
                seen: Arc::clone(&seen),
                cancel,
                at: 10,
            },
            &budget,
        );
        let error = collector.search(&searcher, &AllQuery).expect_err("cancelled");
        assert!(
            matches!(error, crate::Error::SearchStopped(Stopped::Cancelled)),
            "{error}"
        );
        // It stopped at the next check, not after every document.
        let seen = seen.load(Ordering::Relaxed);
        assert!(
            seen <= CHECK_EVERY as usize,
            "{seen} of {docs} documents were collected"
        );
    }

    #[test]
    fn an_expired_or_cancelled_budget_does_no_work_and_a_fresh_one_counts_all() {
        let index = index_of(100);
        let searcher = index.reader().unwrap().searcher();
        let expired = Budget::within(Duration::ZERO);
        let error = Bounded::new(Count, &expired)
            .search(&searcher, &AllQuery)
            .expect_err("expired");
        assert!(
            matches!(error, crate::Error::SearchStopped(Stopped::Deadline)),
            "{error}"
        );
        let cancel = Cancel::new();
        cancel.cancel();
        let gone = Budget::default().cancelled_by(cancel);
        let error = Bounded::new(Count, &gone)
            .search(&searcher, &AllQuery)
            .expect_err("cancelled");
        assert!(
            matches!(error, crate::Error::SearchStopped(Stopped::Cancelled)),
            "{error}"
        );
        let fine = Budget::default();
        let n = Bounded::new(Count, &fine).search(&searcher, &AllQuery).unwrap();
        assert_eq!(n, 100);
    }
}
