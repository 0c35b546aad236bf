//! Turns a parsed [`Query`](super::Query) into a tantivy query for one principal. Envelope
//! data is matched only through what the principal may see: auditors through the plain
//! envelope fields, users only through their own `env_view` terms.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, PhraseQuery, Query as TantivyQuery, RangeQuery,
    RegexQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::Term;

use super::analysis::{stem_terms, terms, EXACT};
use super::extract::{clean_id, normalize_address, normalize_domain};
use super::query::{DateOp, Node, QueryError, QueryProblem, SizeOp, TextField, Value, Within};
use super::schema::Fields;
use super::scope::Principal;
use super::substring::word_patterns;
use crate::{Error, Result};

type Q = Box<dyn TantivyQuery>;

/// The tantivy query for `root` as run by `principal`, scope included.
pub fn compile(root: &Node, f: &Fields, principal: &Principal) -> Result<Q> {
    let c = Compiler { f, principal };
    let query = c
        .node(root)
        .ok_or_else(|| Error::Query(QueryError::new(1, QueryProblem::NothingToSearch)))?;
    Ok(match principal.scope_query(f) {
        Some(scope) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, query),
            (Occur::Must, scope),
        ])),
        None => query,
    })
}

struct Compiler<'a> {
    f: &'a Fields,
    principal: &'a Principal,
}

fn any(mut parts: Vec<Q>) -> Option<Q> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Box::new(BooleanQuery::new(
            parts.into_iter().map(|q| (Occur::Should, q)).collect(),
        ))),
    }
}

fn term_query(field: Field, text: &str) -> Q {
    Box::new(TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::WithFreqs,
    ))
}

/// Exact terms for existence checks: scored as constant 1 so they do not skew relevance.
fn term_set(mut terms: Vec<Term>) -> Option<Q> {
    let query: Q = match terms.len() {
        0 => return None,
        // A set builds an FST of its terms (a 10,000-cell registry) for every search: the
        // thread lookup of every message page paid it once per Message-ID.
        1 => Box::new(TermQuery::new(terms.pop()?, IndexRecordOption::Basic)),
        _ => Box::new(TermSetQuery::new(terms)),
    };
    Some(Box::new(ConstScoreQuery::new(query, 1.0)))
}

fn date_range(field: Field, from: Bound<i64>, to: Bound<i64>) -> Q {
    let term = |v| Term::from_field_i64(field, v);
    Box::new(RangeQuery::new(from.map(term), to.map(term)))
}

fn size_range(field: Field, from: Bound<u64>, to: Bound<u64>) -> Q {
    let term = |v| Term::from_field_u64(field, v);
    Box::new(RangeQuery::new(from.map(term), to.map(term)))
}

/// Unix seconds of 00:00:00 UTC of `day`.
fn day_start(day: jiff::civil::Date) -> i64 {
    day.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_second())
        .unwrap_or(i64::MAX)
}

fn next_day_start(day: jiff::civil::Date) -> i64 {
    match day.tomorrow() {
        Ok(next) => day_start(next),
        Err(_) => i64::MAX,
    }
}

/// Whether a text value is a full address (`local@domain`).
fn is_address(value: &str) -> bool {
    value
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
}

impl Compiler<'_> {
    fn node(&self, node: &Node) -> Option<Q> {
        match node {
            Node::Word(w) => self.free_word(w),
            Node::Phrase(p) => any(self
                .exact_fields()
                .into_iter()
                .filter_map(|fd| self.phrase(fd, p))
                .collect()),
            Node::Field(field, value) => self.field(*field, value),
            Node::Date(op, day) => {
                let (from, to) = match op {
                    DateOp::Before => (Bound::Unbounded, Bound::Excluded(day_start(*day))),
                    DateOp::After => (Bound::Included(next_day_start(*day)), Bound::Unbounded),
                    DateOp::On => (
                        Bound::Included(day_start(*day)),
                        Bound::Excluded(next_day_start(*day)),
                    ),
                };
                Some(date_range(self.f.date, from, to))
            }
            Node::Size(op, n) => Some(match op {
                SizeOp::Larger => size_range(self.f.size, Bound::Excluded(*n), Bound::Unbounded),
                SizeOp::Smaller => size_range(self.f.size, Bound::Unbounded, Bound::Excluded(*n)),
            }),
            Node::HasAttachment => term_set(vec![Term::from_field_text(self.f.flags, "attachment")]),
            Node::Contains(within, text) => Some(self.contains(*within, text)),
            Node::And(parts) => {
                let mut clauses = Vec::new();
                let mut positive = false;
                for p in parts {
                    match p {
                        Node::Not(inner) => {
                            if let Some(q) = self.node(inner) {
                                clauses.push((Occur::MustNot, q));
                            }
                        }
                        _ => {
                            if let Some(q) = self.node(p) {
                                positive = true;
                                clauses.push((Occur::Must, q));
                            }
                        }
                    }
                }
                if clauses.is_empty() {
                    return None;
                }
                if !positive {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Some(Box::new(BooleanQuery::new(clauses)))
            }
            Node::Or(parts) => any(parts.iter().filter_map(|p| self.node(p)).collect()),
            Node::Not(inner) => {
                let q = self.node(inner)?;
                Some(Box::new(BooleanQuery::new(vec![
                    (Occur::Must, Box::new(AllQuery) as Q),
                    (Occur::MustNot, q),
                ])))
            }
        }
    }

    /// Fields holding names, addresses, file names and List-Id: free words match them unstemmed.
    fn name_fields(&self) -> [Field; 7] {
        let f = self.f;
        [
            f.filename,
            f.from_text,
            f.to_text,
            f.cc_text,
            f.bcc_text,
            f.reply_to_text,
            f.list_text,
        ]
    }

    /// Text fields phrases are looked for in.
    fn exact_fields(&self) -> Vec<Field> {
        let mut fields = vec![self.f.subject, self.f.body];
        fields.extend(self.name_fields());
        fields
    }

    /// A free word: its stems in subject and body, the word itself in names, addresses,
    /// file names and List-Id. A "word" that analysis splits (`e-mail`) is a phrase.
    fn free_word(&self, word: &str) -> Option<Q> {
        let base = terms(EXACT, word);
        if base.len() > 1 {
            return self.node(&Node::Phrase(word.to_string()));
        }
        let (_, folded) = base.into_iter().next()?;
        let f = self.f;
        let mut parts = vec![self.stems(f.subject, &folded)?, self.stems(f.body, &folded)?];
        for field in self.name_fields() {
            parts.push(term_query(field, &folded));
        }
        any(parts)
    }

    /// A folded word in a text field: any word with a stem in common.
    fn stems(&self, field: Field, folded: &str) -> Option<Q> {
        any(stem_terms(folded).iter().map(|s| term_query(field, s)).collect())
    }

    /// The words of `text` in this order in an exact field (one word: a term query).
    fn phrase(&self, field: Field, text: &str) -> Option<Q> {
        let words = terms(EXACT, text);
        match words.len() {
            0 => None,
            1 => Some(term_query(field, &words[0].1)),
            _ => Some(Box::new(PhraseQuery::new_with_offset(
                words
                    .into_iter()
                    .map(|(pos, w)| (pos, Term::from_field_text(field, &w)))
                    .collect(),
            ))),
        }
    }

    /// Text: a bare word is stemmed, a phrase is exact.
    fn text(&self, field: Field, value: &Value) -> Option<Q> {
        let words = terms(EXACT, value.text());
        match (value, words.as_slice()) {
            (Value::Word(_), [(_, folded)]) => self.stems(field, folded),
            _ => self.phrase(field, value.text()),
        }
    }

    /// Candidates for a substring (`substring`): messages with, in one field, a word
    /// matching each run's pattern; every message when the index cannot narrow them.
    fn contains(&self, within: Within, text: &str) -> Q {
        let all = || Box::new(AllQuery) as Q;
        let Some(patterns) = word_patterns(text) else {
            return all();
        };
        let fields = match within {
            Within::Text => vec![self.f.body, self.f.header],
            Within::Body => vec![self.f.body],
            Within::Header => vec![self.f.header],
        };
        let mut per_field = Vec::with_capacity(fields.len());
        for field in fields {
            let mut runs = Vec::with_capacity(patterns.len());
            for p in &patterns {
                // The patterns are built from escaped text; one the regex engine still
                // refuses (too large) cannot narrow anything.
                let Ok(q) = RegexQuery::from_pattern(p, field) else {
                    return all();
                };
                runs.push((Occur::Must, Box::new(q) as Q));
            }
            per_field.push(Box::new(BooleanQuery::new(runs)) as Q);
        }
        any(per_field).unwrap_or_else(all)
    }

    /// Envelope data of `kind` equal to `value`, as this principal may match it.
    fn envelope(&self, auditor_field: Field, kind: char, value: &str) -> Option<Q> {
        match self.principal.user_addresses() {
            None => term_set(vec![Term::from_field_text(auditor_field, value)]),
            Some(_) => term_set(self.principal.view_terms(self.f, kind, value)),
        }
    }

    fn field(&self, field: TextField, value: &Value) -> Option<Q> {
        let f = self.f;
        let v = value.text();
        let address = normalize_address(v);
        let role = |text: Field, header: Field, env: Option<(Field, char)>| {
            if !is_address(&address) {
                return self.phrase(text, v);
            }
            let mut parts = vec![term_set(vec![Term::from_field_text(header, &address)])];
            if let Some((env_field, kind)) = env {
                parts.push(self.envelope(env_field, kind, &address));
            }
            any(parts.into_iter().flatten().collect())
        };
        match field {
            TextField::From => role(f.from_text, f.from_addr, Some((f.env_from, 'f'))),
            TextField::To => role(f.to_text, f.to_addr, Some((f.env_rcpt, 'r'))),
            TextField::Cc => role(f.cc_text, f.cc_addr, None),
            TextField::Bcc => role(f.bcc_text, f.bcc_addr, Some((f.env_blind, 'b'))),
            TextField::Subject => self.text(f.subject, value),
            TextField::Body => self.text(f.body, value),
            TextField::Filename => any([
                self.phrase(f.filename, v),
                term_set(vec![Term::from_field_text(
                    f.attachment_type,
                    &v.trim().to_lowercase(),
                )]),
            ]
            .into_iter()
            .flatten()
            .collect()),
            TextField::FromDomain => {
                let domain = normalize_domain(v);
                if domain.is_empty() {
                    return None;
                }
                term_set(vec![Term::from_field_text(f.from_domain, &domain)])
            }
            TextField::Domain => {
                let domain = normalize_domain(v);
                if domain.is_empty() {
                    return None;
                }
                any([
                    term_set(vec![Term::from_field_text(f.header_domain, &domain)]),
                    self.envelope(f.env_domain, 'd', &domain),
                ]
                .into_iter()
                .flatten()
                .collect())
            }
            TextField::MsgId => term_set(vec![Term::from_field_text(f.msgid, &clean_id(v))]),
        }
    }
}
