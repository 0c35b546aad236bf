//! Body snippets of the hits on a page: the excerpt around the words the query matched, with
//! the matches marked, else the start of the body.
//!
//! tantivy's `SnippetGenerator` picks the fragment; what it tokenizes the body with is ours
//! and cheaper than the index's analyzer: one token per word, whose text is the query term
//! the word matches (the word or one of its marked stems) and empty otherwise, with stems
//! looked up in the analysis module's shared cache. Indexing emits up to three terms per word,
//! each stemmed afresh per analyzer; a snippet only asks "is this word one of the query's
//! terms", and a page makes twenty of them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use tantivy::query::Query as TantivyQuery;
use tantivy::schema::Field;
use tantivy::snippet::SnippetGenerator;
use tantivy::{Searcher, Term};

use super::analysis;
use super::results::Snippet;
use crate::Result;

/// Characters of body text in a snippet.
pub(crate) const SNIPPET_CHARS: usize = 160;

/// Makes the snippets of one search's hits.
pub(crate) struct Snippets {
    generator: SnippetGenerator,
}

impl Snippets {
    /// For the terms of `query` in the text field `field` that occur in the index (rarer
    /// terms weigh more when choosing the fragment, as tantivy's own generator weighs them).
    pub fn for_query(searcher: &Searcher, query: &dyn TantivyQuery, field: Field) -> Result<Snippets> {
        let mut terms: BTreeSet<Term> = BTreeSet::new();
        query.query_terms(&mut |term, _| {
            if term.field() == field {
                terms.insert(term.clone());
            }
        });
        let mut weights: BTreeMap<String, f32> = BTreeMap::new();
        for term in terms {
            let Some(text) = term.value().as_str().map(str::to_string) else {
                continue;
            };
            let doc_freq = searcher.doc_freq(&term)?;
            if doc_freq > 0 {
                weights.insert(text, 1.0 / (1.0 + doc_freq as f32));
            }
        }
        let wanted: Arc<HashSet<String>> = Arc::new(weights.keys().cloned().collect());
        let analyzer = analysis::query_terms_analyzer(wanted);
        Ok(Snippets {
            generator: SnippetGenerator::new(weights, analyzer, field, SNIPPET_CHARS),
        })
    }

    /// The snippet of `body`.
    pub fn of(&self, body: &str) -> Snippet {
        let found = self.generator.snippet(body);
        if !found.highlighted().is_empty() {
            let mut highlights: Vec<(usize, usize)> =
                found.highlighted().iter().map(|r| (r.start, r.end)).collect();
            highlights.sort_unstable();
            highlights.dedup();
            return Snippet {
                text: found.fragment().to_string(),
                highlights,
            };
        }
        let mut end = body.len().min(SNIPPET_CHARS);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        Snippet {
            text: body[..end].trim().to_string(),
            highlights: Vec::new(),
        }
    }
}
