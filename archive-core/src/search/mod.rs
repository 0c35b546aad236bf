//! Full-text search: a tantivy index derived from the log, one query language, and scoped
//! results. docs/SEARCH.md specifies the language, the fields and the scope rules.
//!
//! - [`query`]: the parser shared by every front door;
//! - `analysis`: how text becomes terms (folding, German and English stems);
//! - `extract`: mail-parser → searchable fields; `document`: fields → tantivy document;
//! - `facets`: counts by year, month and sender domain, and the clauses that narrow to them;
//! - `scope`: [`Principal`] and what it may see; `compile`: query → tantivy query for a
//!   principal;
//! - `text_index`: the index on disk, commits, searching; `catch_up`: the indexing thread.
//!
//! There is no way to get hits without a principal: [`crate::Store::search`] and
//! [`ReadOnlyIndex::search`] both take one, and the scope is part of the index query.

pub mod analysis;
mod budget;
pub(crate) mod catch_up;
mod compile;
mod date_order;
mod document;
pub(crate) mod extract;
mod facets;
pub mod header_text;
pub mod query;
mod results;
mod schema;
mod scope;
mod snippets;
mod substring;
pub(crate) mod text_index;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use budget::{Budget, Cancel, Stopped, DEFAULT_TIME_LIMIT};
pub use document::Delivery;
pub use extract::{body_text, drop_flat as drop_parsed_message, usable_date, Mailbox};
pub use facets::{narrow, Bucket, Facets, DOMAINS_SHOWN, MAX_DOMAINS, MONTHS_SHOWN, YEARS_SHOWN};
pub use query::{
    ExpectedValue, Query, QueryError, QueryErrorKind, QueryProblem, QueryToken, MAX_DEPTH, MAX_TERMS,
    OPERATORS,
};
pub use results::{Hit, SearchOptions, SearchResults, Snippet, Sort, MAX_LIMIT, MAX_RELEVANCE_DEPTH};
pub use scope::Principal;

use crate::log::reader::{read_at_via, record_content, LogReader};
use crate::log::remote::RemoteReads;
use crate::store::Layout;
use crate::{Error, Result};
use text_index::TextIndex;

/// The search index directory of a store.
pub fn index_dir(layout: &Layout) -> PathBuf {
    layout.dir.join("search")
}

/// The search index of a store opened for searching only: no write lock, so it works while
/// a server owns the store. It searches what has been indexed; [`ReadOnlyIndex::lag`] tells
/// how far that is behind the log.
pub struct ReadOnlyIndex {
    index: TextIndex,
    log_dir: PathBuf,
    evicted: Arc<RemoteReads>,
}

/// What a hit's snippet is made from: its message, or nothing when the bytes cannot be read
/// now (a damaged record, an unreachable bucket: the hit itself is still right, and `verify`
/// or the server's log name the problem). A record of an evicted segment with no object
/// storage configured to read it from is different — a snippet left out for it would look
/// like a message without the words — so the search fails with the error naming the
/// segment and where its bytes are.
pub(crate) fn snippet_source(read: Result<Vec<u8>>, evicted: &RemoteReads) -> Result<Option<Vec<u8>>> {
    match read {
        Ok(raw) => Ok(Some(raw)),
        Err(e @ Error::Remote { .. }) if !evicted.has_remote() => Err(e),
        Err(_) => Ok(None),
    }
}

impl ReadOnlyIndex {
    /// Opens the search index of the store in `dir`; hits in evicted segments have no
    /// reads (a snippet of one is an error, see [`ReadOnlyIndex::open_with`]).
    pub fn open(dir: &Path) -> Result<ReadOnlyIndex> {
        let layout = Layout::new(dir);
        let evicted = Arc::new(RemoteReads::new(&layout.log_dir, None, None));
        ReadOnlyIndex::open_with(dir, evicted)
    }

    /// Opens the search index of the store in `dir`; snippets of hits in evicted segments
    /// are read through `evicted`.
    pub fn open_with(dir: &Path, evicted: Arc<RemoteReads>) -> Result<ReadOnlyIndex> {
        let layout = Layout::new(dir);
        let identity = layout.identity()?;
        let index = TextIndex::open_read_only(&index_dir(&layout))?;
        if !index.origin().is_empty() && index.origin() != identity.origin {
            return Err(crate::Error::Search(format!(
                "{}: this index belongs to another log ({}); it is rebuilt when the store is \
                 next opened for writing",
                index_dir(&layout).display(),
                index.origin()
            )));
        }
        Ok(ReadOnlyIndex {
            index,
            log_dir: layout.log_dir,
            evicted,
        })
    }

    /// The payload of the index's last commit (as of the last reload): every message and
    /// arrival up to it is indexed. Records without a document after it may be applied
    /// without a commit yet; [`ReadOnlyIndex::searchable_seq`] counts them.
    pub fn indexed_seq(&self) -> u64 {
        self.index.applied()
    }

    /// The seq up to which the log is searchable: the last commit's, and past it every
    /// record up to the first message or arrival not yet indexed. The indexer commits only
    /// batches that change a document, so the audit records and checkpoints written since
    /// its last commit are covered without one.
    pub fn searchable_seq(&self) -> Result<u64> {
        let applied = self.index.reload()?;
        let log = LogReader::open_with(&self.log_dir, self.evicted.clone())?;
        let mut searchable = applied;
        for record in log.records_from(applied + 1)? {
            let record = record?;
            if record.leaf.content().is_some() {
                break;
            }
            searchable = record.seq();
        }
        Ok(searchable)
    }

    /// Message and arrival records in the log after the indexed seq (0: up to date). Reads
    /// at most the newest segment, so a far-behind index reports a lower bound.
    pub fn lag(&self) -> Result<u64> {
        let applied = self.index.reload()?;
        let log = LogReader::open(&self.log_dir)?;
        let start = log
            .segments()
            .last()
            .map_or(applied + 1, |(first, _)| (*first).max(applied + 1));
        let mut behind = 0;
        for record in log.records_from(start)? {
            if record?.leaf.content().is_some() {
                behind += 1;
            }
        }
        Ok(behind)
    }

    /// Runs `query` as `principal` over the indexed messages, within [`DEFAULT_TIME_LIMIT`].
    pub fn search(
        &self,
        principal: &Principal,
        query: &Query,
        options: &SearchOptions,
    ) -> Result<SearchResults> {
        self.search_within(principal, query, options, &Budget::default())
    }

    /// [`ReadOnlyIndex::search`] within `budget`.
    pub fn search_within(
        &self,
        principal: &Principal,
        query: &Query,
        options: &SearchOptions,
        budget: &Budget,
    ) -> Result<SearchResults> {
        // A writer in another process may merge away the files of the commit just loaded;
        // the next commit is complete, so a failed attempt is retried on a fresh reload.
        let mut attempt = 0;
        loop {
            let result = self.index.reload().and_then(|_| {
                let log = LogReader::open_with(&self.log_dir, self.evicted.clone())?;
                self.index.search(principal, query, options, budget, &|summary| {
                    let read = read_at_via(&self.log_dir, &self.evicted, &summary.location(), summary.seq)
                        .and_then(|record| record_content(&record, &log));
                    snippet_source(read, &self.evicted)
                })
            });
            attempt += 1;
            match result {
                Err(crate::Error::Search(_)) if attempt < 3 => continue,
                other => return other,
            }
        }
    }
}
