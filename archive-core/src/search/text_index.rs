//! The tantivy index on disk: opening (and rebuilding when it is not ours or not current),
//! committing with the last applied log seq as the commit payload, and running searches.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

use tantivy::collector::sort_key::{SortBySimilarityScore, SortByStaticFastValue};
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::columnar::Column;
use tantivy::indexer::IndexWriterOptions;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query as TantivyQuery, RangeQuery};
use tantivy::schema::Value as _;
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Score, Searcher, SegmentReader,
    TantivyDocument, Term,
};

use super::analysis;
use super::budget::{Bounded, Budget};
use super::compile::compile;
use super::date_order;
use super::document::Summary;
use super::extract::MailFields;
use super::facets::{FacetCollector, Facets};
use super::query::Query;
use super::results::{
    decode_cursor, encode_cursor, After, Hit, SearchOptions, SearchResults, Snippet, Sort, MAX_LIMIT,
    MAX_RELEVANCE_DEPTH,
};
use super::schema::{Fields, SCHEMA_VERSION};
use super::scope::Principal;
use super::snippets::Snippets;
use crate::{Error, Result};

/// Memory the indexing thread buffers before tantivy writes a segment.
const WRITER_MEMORY: usize = 256 << 20;

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Search(e.to_string())
    }
}

/// The commit payload: which log the index belongs to and how far it has applied it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    schema: u64,
    origin: String,
    seq: u64,
}

#[derive(Default)]
struct Progress {
    applied: u64,
    failure: Option<String>,
}

/// The search index of one store.
pub(crate) struct TextIndex {
    index: Index,
    pub(crate) fields: Fields,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
    origin: String,
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl TextIndex {
    /// Opens the index of the log `origin` for writing, or builds an empty one where there is
    /// none, it is unreadable, of another schema or log, or ahead of the log (`last_seq`):
    /// catch-up then rebuilds it from the log. The writer is set up by
    /// [`TextIndex::start_writer`], on the thread that will index.
    pub fn open(dir: &Path, origin: &str, last_seq: u64) -> Result<TextIndex> {
        let existing = match Self::open_existing(dir) {
            Ok(Some((index, payload))) => {
                let current = payload
                    .as_ref()
                    .is_none_or(|p| p.origin == origin && p.seq <= last_seq);
                current.then_some((index, payload.map_or(0, |p| p.seq)))
            }
            Ok(None) | Err(_) => None,
        };
        let (index, applied) = match existing {
            Some(found) => found,
            None => (Self::create(dir)?, 0),
        };
        Self::with(index, None, origin, applied)
    }

    /// Opens an existing index for searching only (no lock; works next to a running server).
    pub fn open_read_only(dir: &Path) -> Result<TextIndex> {
        let (index, payload) = Self::open_existing(dir)?.ok_or_else(|| {
            Error::Search(format!(
                "{}: no search index here yet (it is built when the store is opened for writing)",
                dir.display()
            ))
        })?;
        let (origin, applied) = payload.map_or((String::new(), 0), |p| (p.origin, p.seq));
        Self::with(index, None, &origin, applied)
    }

    fn with(index: Index, writer: Option<IndexWriter>, origin: &str, applied: u64) -> Result<TextIndex> {
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let (_, fields) = Fields::schema();
        Ok(TextIndex {
            index,
            fields,
            reader,
            writer: Mutex::new(writer),
            origin: origin.to_string(),
            progress: Mutex::new(Progress {
                applied,
                failure: None,
            }),
            changed: Condvar::new(),
        })
    }

    /// The index in `dir` and its last payload, if it is one of this schema.
    fn open_existing(dir: &Path) -> Result<Option<(Index, Option<Payload>)>> {
        if !dir.join("meta.json").exists() {
            return Ok(None);
        }
        let index = Index::open_in_dir(dir)?;
        let (schema, _) = Fields::schema();
        if index.schema() != schema {
            return Ok(None);
        }
        let payload = match index.load_metas()?.payload {
            None => None,
            Some(text) => match serde_json::from_str::<Payload>(&text) {
                Ok(p) if p.schema == SCHEMA_VERSION => Some(p),
                _ => return Ok(None),
            },
        };
        analysis::register(index.tokenizers());
        Ok(Some((index, payload)))
    }

    fn create(dir: &Path) -> Result<Index> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(dir, e)),
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (schema, _) = Fields::schema();
        let index = Index::create_in_dir(dir, schema)?;
        analysis::register(index.tokenizers());
        Ok(index)
    }

    /// The origin of the log this index was built from (empty before the first commit).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The last log seq applied: searchable up to here (the committed payload may be older,
    /// see `catch_up::PAYLOAD_EVERY`).
    pub fn applied(&self) -> u64 {
        self.progress().applied
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a commit up to `seq`.
    pub fn note_applied(&self, seq: u64) {
        let mut p = self.progress();
        p.applied = seq;
        p.failure = None;
        self.changed.notify_all();
    }

    /// Records why indexing stopped (searches waiting for it fail with this reason).
    pub fn note_failure(&self, why: String) {
        self.progress().failure = Some(why);
        self.changed.notify_all();
    }

    /// The last indexing failure, if indexing has not succeeded since.
    pub fn failure(&self) -> Option<String> {
        self.progress().failure.clone()
    }

    /// Waits until everything up to `seq` is searchable; with a `budget`, at most until its
    /// deadline or cancellation (a search after a large import must not wait out the backlog).
    pub fn wait_applied(&self, seq: u64, budget: Option<&Budget>) -> Result<()> {
        let mut p = self.progress();
        while p.applied < seq {
            if let Some(why) = &p.failure {
                return Err(Error::Search(why.clone()));
            }
            match budget {
                Some(b) => {
                    b.check().map_err(Error::SearchStopped)?;
                    // Wakes to look at the budget: cancellation sets a flag, not this condvar.
                    p = self
                        .changed
                        .wait_timeout(p, std::time::Duration::from_millis(100))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                None => p = self.changed.wait(p).unwrap_or_else(|p| p.into_inner()),
            }
        }
        Ok(())
    }

    /// Sets up the writer. tantivy's indexing and merge threads start here and inherit the
    /// calling thread's scheduling priority.
    pub fn start_writer(&self) -> Result<()> {
        let writer = self.index.writer_with_options(
            IndexWriterOptions::builder()
                .memory_budget_per_thread(WRITER_MEMORY)
                .num_worker_threads(1)
                .num_merge_threads(1)
                .build(),
        )?;
        *self.writer() = Some(writer);
        Ok(())
    }

    /// The writer (`None` before [`TextIndex::start_writer`], when opened read-only, or after
    /// [`TextIndex::finish`]).
    pub fn writer(&self) -> MutexGuard<'_, Option<IndexWriter>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits everything added so far, with `seq` as the applied seq, and makes it
    /// searchable.
    pub fn commit(&self, writer: &mut IndexWriter, seq: u64) -> Result<()> {
        let payload = serde_json::to_string(&Payload {
            schema: SCHEMA_VERSION,
            origin: self.origin.clone(),
            seq,
        })
        .map_err(|e| Error::Search(e.to_string()))?;
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Discards everything added since the last commit (after a failed batch, so a retry
    /// does not add documents twice).
    pub fn rollback(&self) -> Result<()> {
        if let Some(writer) = self.writer().as_mut() {
            writer.rollback()?;
        }
        Ok(())
    }

    /// Lets running merges finish and releases the writer.
    pub fn finish(&self) -> Result<()> {
        if let Some(writer) = self.writer().take() {
            writer.wait_merging_threads()?;
        }
        Ok(())
    }

    /// A searcher over the last commit.
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// Re-reads the newest commit (for read-only use next to a writer in another process);
    /// returns its applied seq.
    pub fn reload(&self) -> Result<u64> {
        self.reader.reload()?;
        let seq = match self.index.load_metas()?.payload {
            Some(text) => serde_json::from_str::<Payload>(&text).map_or(0, |p| p.seq),
            None => 0,
        };
        self.progress().applied = seq;
        Ok(seq)
    }

    /// The stored summary of the document at `address`.
    pub fn summary(&self, searcher: &Searcher, address: DocAddress) -> Result<Summary> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let bytes = doc
            .get_first(self.fields.summary)
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| Error::Search("a search document has no summary".into()))?;
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Search(format!("a search summary does not decode: {e}")))
    }

    /// The summary of the message whose record is `seq`, if indexed.
    pub fn summary_of(&self, searcher: &Searcher, seq: u64) -> Result<Option<Summary>> {
        let q = tantivy::query::TermQuery::new(
            Term::from_field_u64(self.fields.seq, seq),
            tantivy::schema::IndexRecordOption::Basic,
        );
        let top = searcher.search(&q, &TopDocs::with_limit(1).order_by_score())?;
        match top.first() {
            Some((_, address)) => Ok(Some(self.summary(searcher, *address)?)),
            None => Ok(None),
        }
    }

    /// The hit of the message whose record is `seq` as `principal` sees it, if it is indexed
    /// and in the principal's scope: the scope is part of the index query, as in a search,
    /// so a message outside it is `None` exactly like one that does not exist.
    pub fn hit_of(&self, principal: &Principal, seq: u64) -> Result<Option<Hit>> {
        let f = &self.fields;
        let by_seq: Box<dyn TantivyQuery> = Box::new(tantivy::query::TermQuery::new(
            Term::from_field_u64(f.seq, seq),
            tantivy::schema::IndexRecordOption::Basic,
        ));
        let query: Box<dyn TantivyQuery> = match principal.scope_query(f) {
            Some(scope) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, by_seq),
                (Occur::Must, scope),
            ])),
            None => by_seq,
        };
        let searcher = self.searcher();
        let top = searcher.search(&*query, &TopDocs::with_limit(1).order_by_score())?;
        match top.first() {
            Some((_, address)) => {
                let summary = self.summary(&searcher, *address)?;
                Ok(Some(hit(principal, summary, None, None)))
            }
            None => Ok(None),
        }
    }

    /// The seqs of every message `query` matches as `principal`, in no particular order:
    /// one pass over the index reading only the `seq` column (no stored documents).
    pub fn matching_seqs(&self, principal: &Principal, query: &Query, budget: &Budget) -> Result<Vec<u64>> {
        budget.check()?;
        let compiled = compile(query.root(), &self.fields, principal)?;
        Bounded::new(SeqCollector, budget).search(&self.searcher(), &*compiled)
    }

    /// Runs `query` as `principal` within `budget`. `content` reads a hit's raw message (for
    /// snippets): `Ok(None)` leaves that hit without one, an error fails the search.
    pub fn search(
        &self,
        principal: &Principal,
        query: &Query,
        options: &SearchOptions,
        budget: &Budget,
        content: &dyn Fn(&Summary) -> Result<Option<Vec<u8>>>,
    ) -> Result<SearchResults> {
        budget.check()?;
        let f = &self.fields;
        let limit = options.limit.clamp(1, MAX_LIMIT);
        let base = compile(query.root(), f, principal)?;
        let searcher = self.searcher();
        let after = match &options.cursor {
            Some(c) => Some(decode_cursor(c, options.sort)?),
            None => None,
        };
        // The page query is the base query unless a key cursor narrows it; then the total
        // needs its own pass over the base query.
        let (narrowed, offset): (Option<Box<dyn TantivyQuery>>, usize) = match after {
            Some(After::Key(key, seq)) => (
                Some(Box::new(BooleanQuery::new(vec![
                    (Occur::Must, base.box_clone()),
                    (Occur::Must, self.after_key(options.sort, key, seq)),
                ]))),
                0,
            ),
            Some(After::Offset(n)) => (None, n as usize),
            None => (None, 0),
        };
        // A page in date order needs only the segments that can hold its hits, unless every
        // match must be counted (facets, or a caller that asks for the exact total).
        let by_date = matches!(options.sort, Sort::Newest | Sort::Oldest);
        let (total, total_exact, found, facets) =
            if by_date && !options.facets && options.count_limit.is_some() {
                let page = date_order::first_page(
                    &searcher,
                    narrowed.as_deref().unwrap_or(&*base),
                    options.sort == Sort::Newest,
                    limit + 1,
                    options.count_limit,
                    budget,
                )?;
                let (total, exact) = match &narrowed {
                    None => (page.counted, page.exact),
                    Some(_) => date_order::count_up_to(&searcher, &*base, options.count_limit, budget)?,
                };
                let found: Found = page.found.into_iter().map(|a| (None, a)).collect();
                (total, exact, found, None)
            } else {
                let (total, found, facets) = self.full_pass(
                    &searcher,
                    &*base,
                    narrowed.as_deref(),
                    options,
                    budget,
                    limit,
                    offset,
                )?;
                (total as u64, true, found, facets)
            };
        let more = found.len() > limit;
        let snippets = if options.snippets {
            Some(Snippets::for_query(&searcher, &*base, f.body)?)
        } else {
            None
        };
        let mut hits = Vec::with_capacity(limit);
        for (score, address) in found.into_iter().take(limit) {
            budget.check()?;
            let summary = self.summary(&searcher, address)?;
            let snippet = match &snippets {
                Some(snippets) => content(&summary)?.map(|raw| snippets.of(&MailFields::extract(&raw).body)),
                None => None,
            };
            hits.push(hit(principal, summary, score, snippet));
        }
        // Relevance pages end at MAX_RELEVANCE_DEPTH: no cursor would be taken past it.
        let deeper = options.sort != Sort::Relevance || ((offset + hits.len()) as u64) < MAX_RELEVANCE_DEPTH;
        let next_cursor = match hits.last() {
            Some(last) if more && deeper => Some(encode_cursor(
                options.sort,
                match options.sort {
                    Sort::Newest | Sort::Oldest => After::Key(last.date, last.seq),
                    Sort::Size => After::Key(last.size.min(i64::MAX as u64) as i64, last.seq),
                    Sort::Relevance => After::Offset((offset + hits.len()) as u64),
                },
            )),
            _ => None,
        };
        Ok(SearchResults {
            hits,
            total,
            total_exact,
            next_cursor,
            indexed_seq: self.applied(),
            facets,
        })
    }

    /// Every match of `base` counted (and its facets, if asked for), with a page of the
    /// `narrowed` query (or of `base`) in the sort order, `offset` hits in.
    #[allow(clippy::too_many_arguments)]
    fn full_pass(
        &self,
        searcher: &Searcher,
        base: &dyn TantivyQuery,
        narrowed: Option<&dyn TantivyQuery>,
        options: &SearchOptions,
        budget: &Budget,
        limit: usize,
        offset: usize,
    ) -> Result<(usize, Found, Option<Facets>)> {
        let run = Pass {
            searcher,
            base,
            narrowed,
            facets: options.facets.then_some(FacetCollector),
            budget,
        };
        // One more than a page tells whether another page follows.
        let top = TopDocs::with_limit(limit + 1).and_offset(offset);
        Ok(match options.sort {
            Sort::Newest => run.strip(top.order_by((
                (SortByStaticFastValue::<i64>::for_field("date"), Order::Desc),
                (SortByStaticFastValue::<u64>::for_field("seq"), Order::Desc),
            )))?,
            Sort::Oldest => run.strip(top.order_by((
                (SortByStaticFastValue::<i64>::for_field("date"), Order::Asc),
                (SortByStaticFastValue::<u64>::for_field("seq"), Order::Asc),
            )))?,
            Sort::Size => run.strip(top.order_by((
                (SortByStaticFastValue::<u64>::for_field("size"), Order::Desc),
                (SortByStaticFastValue::<u64>::for_field("seq"), Order::Desc),
            )))?,
            Sort::Relevance => {
                let (total, found, facets) = run.collect(top.order_by((
                    (SortBySimilarityScore, Order::Desc),
                    (SortByStaticFastValue::<u64>::for_field("seq"), Order::Asc),
                )))?;
                let found = found
                    .into_iter()
                    .map(|((score, _), address)| (Some(score), address))
                    .collect();
                (total, found, facets)
            }
        })
    }

    /// Documents after the one with sort key (`key`, `seq`) in `sort` order.
    fn after_key(&self, sort: Sort, key: i64, seq: u64) -> Box<dyn TantivyQuery> {
        let f = &self.fields;
        let descending = sort != Sort::Oldest;
        let term = |v: i64| match sort {
            Sort::Size => Term::from_field_u64(f.size, v.max(0) as u64),
            _ => Term::from_field_i64(f.date, v),
        };
        let seq_term = |s| Term::from_field_u64(f.seq, s);
        let range =
            |lo: Bound<Term>, hi: Bound<Term>| -> Box<dyn TantivyQuery> { Box::new(RangeQuery::new(lo, hi)) };
        let (beyond, seq_beyond) = if descending {
            (
                range(Bound::Unbounded, Bound::Excluded(term(key))),
                range(Bound::Unbounded, Bound::Excluded(seq_term(seq))),
            )
        } else {
            (
                range(Bound::Excluded(term(key)), Bound::Unbounded),
                range(Bound::Excluded(seq_term(seq)), Bound::Unbounded),
            )
        };
        let same = range(Bound::Included(term(key)), Bound::Included(term(key)));
        let tie: Box<dyn TantivyQuery> = Box::new(BooleanQuery::new(vec![
            (Occur::Must, same),
            (Occur::Must, seq_beyond),
        ]));
        Box::new(ConstScoreQuery::new(
            Box::new(BooleanQuery::new(vec![
                (Occur::Should, beyond),
                (Occur::Should, tie),
            ])),
            0.0,
        ))
    }
}

/// Hits in page order: relevance score (relevance order only) and address.
type Found = Vec<(Option<f32>, DocAddress)>;

/// One search: the total (and the facets, if asked for) over the base query and a page of
/// the (maybe narrowed) query, in one pass when they are the same query.
struct Pass<'a> {
    searcher: &'a Searcher,
    base: &'a dyn TantivyQuery,
    narrowed: Option<&'a dyn TantivyQuery>,
    facets: Option<FacetCollector>,
    budget: &'a Budget,
}

impl Pass<'_> {
    fn collect<C: Collector>(&self, top: C) -> Result<(usize, C::Fruit, Option<Facets>)> {
        Ok(match self.narrowed {
            None => Bounded::new((Count, top, self.facets), self.budget).search(self.searcher, self.base)?,
            Some(page) => {
                let (total, facets) =
                    Bounded::new((Count, self.facets), self.budget).search(self.searcher, self.base)?;
                let found = Bounded::new(top, self.budget).search(self.searcher, page)?;
                (total, found, facets)
            }
        })
    }

    /// As `collect`, dropping the sort keys (the summaries carry them).
    fn strip<K, C>(&self, top: C) -> Result<(usize, Found, Option<Facets>)>
    where
        C: Collector<Fruit = Vec<(K, DocAddress)>>,
    {
        let (total, found, facets) = self.collect(top)?;
        Ok((total, found.into_iter().map(|(_, a)| (None, a)).collect(), facets))
    }
}

/// Collects the `seq` column of every matching document.
struct SeqCollector;

struct SegmentSeqs {
    column: Column<u64>,
    seqs: Vec<u64>,
}

impl Collector for SeqCollector {
    type Fruit = Vec<u64>;
    type Child = SegmentSeqs;

    fn for_segment(&self, _: u32, segment: &SegmentReader) -> tantivy::Result<SegmentSeqs> {
        Ok(SegmentSeqs {
            column: segment.fast_fields().u64("seq")?,
            seqs: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        Ok(fruits.concat())
    }
}

impl SegmentCollector for SegmentSeqs {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        self.seqs.extend(self.column.first(doc));
    }

    fn harvest(self) -> Vec<u64> {
        self.seqs
    }
}

/// A hit as `principal` may see it: only the deliveries (and blind recipients) they may see.
fn hit(principal: &Principal, summary: Summary, score: Option<f32>, snippet: Option<Snippet>) -> Hit {
    let deliveries = principal.visible_deliveries(&summary);
    Hit {
        seq: summary.seq,
        bcc: Principal::visible_bcc(&summary, &deliveries),
        deliveries,
        date: summary.date,
        date_is_received: summary.date_is_received,
        from: summary.from,
        to: summary.to,
        cc: summary.cc,
        subject: summary.subject,
        size: summary.size,
        message_id: summary.message_id,
        attachments: summary.attachments,
        score,
        snippet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an index of `schema` in `dir` whose last commit says it applied the log up to
    /// seq 5 of `origin`, with the payload's schema version `version`.
    fn old_index(dir: &Path, schema: tantivy::schema::Schema, version: u64, origin: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let index = Index::create_in_dir(dir, schema).unwrap();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let payload = serde_json::json!({"schema": version, "origin": origin, "seq": 5});
        let mut prepared = writer.prepare_commit().unwrap();
        prepared.set_payload(&payload.to_string());
        prepared.commit().unwrap();
    }

    /// The schema before facets: today's without `from_domain`.
    fn schema_2() -> tantivy::schema::Schema {
        let (schema, _) = Fields::schema();
        let mut b = tantivy::schema::Schema::builder();
        for (_, entry) in schema.fields() {
            if entry.name() != "from_domain" {
                b.add_field(entry.clone());
            }
        }
        b.build()
    }

    #[test]
    fn an_index_of_an_older_schema_is_rebuilt_never_read() {
        let tmp = tempfile::tempdir().unwrap();
        for (name, schema, version) in [
            ("fields", schema_2(), SCHEMA_VERSION),
            ("version", Fields::schema().0, 2),
            ("current", Fields::schema().0, SCHEMA_VERSION),
        ] {
            let dir = tmp.path().join(name);
            old_index(&dir, schema, version, "log-1");
            let current = name == "current";
            // Read-only (next to a server): an old index is refused, not searched.
            assert_eq!(TextIndex::open_read_only(&dir).is_ok(), current, "{name}");
            // For writing: rebuilt from the log (applied 0), with the facets' field.
            let index = TextIndex::open(&dir, "log-1", 10).unwrap();
            assert_eq!(index.applied(), if current { 5 } else { 0 }, "{name}");
            assert!(index.index.schema().get_field("from_domain").is_ok());
        }
    }
}
