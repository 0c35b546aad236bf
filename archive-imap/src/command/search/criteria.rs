//! SEARCH keys as a plan: the keys are flattened (nested ANDs and ORs become one list, NOT
//! NOT cancels), identical keys are merged, the number of distinct keys is capped, and every
//! group of content keys that sits under one AND/OR/NOT becomes a single full-text query. So
//! `OR FROM a OR FROM b OR FROM c …` is one index search, not one per key, and 5,000 copies of
//! one key are one key.
//!
//! Keys about the view (message-number and UID sets, receive dates, flags) are evaluated on
//! the view; content keys (addresses, subject, body, text, header fields, sent dates, sizes)
//! by the full-text index as the session's principal, intersected with the view.

use std::collections::HashSet;

use archive_core::search::query::Node;
use archive_core::search::{Budget, Principal, Query, QueryErrorKind, Stopped, MAX_TERMS};
use archive_core::views::{View, ViewEntry};
use archive_core::Store;
use imap_next::imap_types::core::AString;
use imap_next::imap_types::datetime::NaiveDate;
use imap_next::imap_types::response::Code;
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::SequenceSet;

use crate::sequence::resolve;
use crate::session::code;

/// How deeply a SEARCH's keys may nest (NOT, OR and parentheses). imap-codec's parser stops
/// at 9 levels; `protocol::search_keys` parses deeper commands up to this many.
pub(crate) const MAX_KEY_DEPTH: usize = 128;

/// Why a search cannot be answered.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The client asked something malformed (BAD).
    Bad(String),
    /// Well-formed but not answerable here (NO).
    No(Option<Code<'static>>, String),
}

impl Failure {
    fn limit(why: impl Into<String>) -> Failure {
        Failure::No(Some(code("LIMIT")), why.into())
    }

    /// The answer to a store error (crate::failure).
    fn store(e: &archive_core::Error) -> Failure {
        let (code, why) = crate::failure::store_failure(e, "SEARCH");
        Failure::No(code, why)
    }
}

/// A receive-date comparison (microseconds since the epoch, UTC day starts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Received {
    Before(i64),
    On(i64),
    Since(i64),
}

/// A search key, flattened and simplified.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Expr {
    /// Every message (`true`) or none.
    Const(bool),
    /// A message-number set, or a UID set (`uid`).
    Set {
        set: SequenceSet,
        uid: bool,
    },
    /// A receive-date key.
    Received(Received),
    /// A content key for the full-text index.
    Index(Node),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

impl Expr {
    /// Whether the index alone can answer this (no view keys, no constants).
    fn index_only(&self) -> bool {
        match self {
            Expr::Index(_) => true,
            Expr::And(parts) | Expr::Or(parts) => parts.iter().all(Expr::index_only),
            Expr::Not(inner) => inner.index_only(),
            Expr::Const(_) | Expr::Set { .. } | Expr::Received(_) => false,
        }
    }

    /// The query node of an expression that is `index_only`.
    fn to_node(&self) -> Node {
        match self {
            Expr::Index(node) => node.clone(),
            Expr::And(parts) => Node::And(parts.iter().map(Expr::to_node).collect()),
            Expr::Or(parts) => Node::Or(parts.iter().map(Expr::to_node).collect()),
            Expr::Not(inner) => Node::Not(Box::new(inner.to_node())),
            // Not index-only; `index_only` keeps these out.
            Expr::Const(_) | Expr::Set { .. } | Expr::Received(_) => Node::Or(Vec::new()),
        }
    }

    fn not(self) -> Expr {
        match self {
            Expr::Const(b) => Expr::Const(!b),
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    /// All of `parts` (`and`) or any of them, flattened, deduplicated and simplified.
    fn join(and: bool, parts: Vec<Expr>) -> Expr {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for part in parts {
            let children = match part {
                Expr::And(inner) if and => inner,
                Expr::Or(inner) if !and => inner,
                // AND with false, OR with true: decided.
                Expr::Const(b) if b != and => return Expr::Const(b),
                // AND with true, OR with false: no effect.
                Expr::Const(_) => continue,
                other => vec![other],
            };
            for child in children {
                if seen.insert(child.clone()) {
                    out.push(child);
                }
            }
        }
        match out.len() {
            0 => Expr::Const(and),
            1 => out.pop().unwrap_or(Expr::Const(and)),
            _ if and => Expr::And(out),
            _ => Expr::Or(out),
        }
    }

    /// Keys in the plan (each distinct key once).
    fn keys(&self) -> usize {
        let mut n = 0;
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::And(parts) | Expr::Or(parts) => stack.extend(parts),
                Expr::Not(inner) => stack.push(inner),
                _ => n += 1,
            }
        }
        n
    }
}

/// The plan for a SEARCH's keys (all of them must hold).
pub(crate) fn plan(criteria: &[SearchKey<'_>]) -> Result<Expr, Failure> {
    let parts = criteria
        .iter()
        .map(|k| convert(k, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = Expr::join(true, parts);
    if plan.keys() > MAX_TERMS {
        return Err(Failure::limit(format!(
            "search too complex: more than {MAX_TERMS} distinct keys"
        )));
    }
    Ok(plan)
}

/// One key as an expression. `depth` is bounded by the parser (imap-codec's 9 levels or
/// `MAX_KEY_DEPTH`); the check here keeps that promise local.
fn convert(key: &SearchKey<'_>, depth: usize) -> Result<Expr, Failure> {
    if depth > MAX_KEY_DEPTH {
        return Err(Failure::Bad(format!(
            "search keys nested deeper than {MAX_KEY_DEPTH} levels"
        )));
    }
    let deeper = |k: &SearchKey<'_>| convert(k, depth + 1);
    Ok(match key {
        SearchKey::And(keys) => Expr::join(true, keys.as_ref().iter().map(deeper).collect::<Result<_, _>>()?),
        SearchKey::Or(a, b) => Expr::join(false, vec![deeper(a)?, deeper(b)?]),
        SearchKey::Not(k) => deeper(k)?.not(),
        SearchKey::All => Expr::Const(true),
        SearchKey::SequenceSet(set) => Expr::Set {
            set: set.clone(),
            uid: false,
        },
        SearchKey::Uid(set) => Expr::Set {
            set: set.clone(),
            uid: true,
        },
        // Every archived message is \Seen and nothing else: no flag can be changed.
        SearchKey::Seen | SearchKey::Old => Expr::Const(true),
        SearchKey::Unseen | SearchKey::New | SearchKey::Recent => Expr::Const(false),
        SearchKey::Answered
        | SearchKey::Deleted
        | SearchKey::Draft
        | SearchKey::Flagged
        | SearchKey::Keyword(_) => Expr::Const(false),
        SearchKey::Unanswered
        | SearchKey::Undeleted
        | SearchKey::Undraft
        | SearchKey::Unflagged
        | SearchKey::Unkeyword(_) => Expr::Const(true),
        // Sizes are the raw bytes as archived in the index too: no log reads needed.
        SearchKey::Larger(n) => indexed(format!("larger:{n}"))?,
        SearchKey::Smaller(n) => indexed(format!("smaller:{n}"))?,
        SearchKey::Before(d) => Expr::Received(Received::Before(day_start(d)?)),
        SearchKey::On(d) => Expr::Received(Received::On(day_start(d)?)),
        SearchKey::Since(d) => Expr::Received(Received::Since(day_start(d)?)),
        SearchKey::SentBefore(d) => indexed(format!("before:{}", date(d)))?,
        SearchKey::SentOn(d) => indexed(format!("on:{}", date(d)))?,
        SearchKey::SentSince(d) => indexed(format!("-before:{}", date(d)))?,
        SearchKey::From(v) => field("from", v)?,
        SearchKey::To(v) => field("to", v)?,
        SearchKey::Cc(v) => field("cc", v)?,
        SearchKey::Bcc(v) => field("bcc", v)?,
        SearchKey::Subject(v) => field("subject", v)?,
        SearchKey::Body(v) => field("body", v)?,
        SearchKey::Text(v) => field("", v)?,
        SearchKey::Header(name, v) => {
            let name = String::from_utf8_lossy(name.as_ref()).to_ascii_lowercase();
            let op = match name.as_str() {
                "from" | "sender" => "from",
                "to" => "to",
                "cc" => "cc",
                "bcc" => "bcc",
                "subject" => "subject",
                "message-id" | "in-reply-to" | "references" => "msgid",
                _ => {
                    return Err(Failure::No(
                        Some(code("CANNOT")),
                        format!(
                            "HEADER {name} is not indexed; searchable headers: From, Sender, \
                             To, Cc, Bcc, Subject, Message-ID, In-Reply-To, References"
                        ),
                    ))
                }
            };
            field(op, v)?
        }
        #[allow(unreachable_patterns)]
        _ => {
            return Err(Failure::No(
                Some(code("CANNOT")),
                "this search key is not supported".into(),
            ))
        }
    })
}

/// A content key as a query of the one query language (docs/SEARCH.md).
fn field(op: &str, value: &AString<'_>) -> Result<Expr, Failure> {
    let value = String::from_utf8_lossy(value.as_ref()).into_owned();
    // The query language has no escape for '"'; it separates words anyway.
    let value = value.replace('"', " ");
    let value = value.trim();
    if value.is_empty() {
        // RFC 3501: every string contains the empty string.
        return Ok(Expr::Const(true));
    }
    // A single token (an address, a word) goes unquoted so that full addresses match
    // exactly; anything else is a phrase.
    let single = !value.contains(char::is_whitespace) && !value.contains(['(', ')']);
    let term = if single && !value.starts_with('-') {
        value.to_string()
    } else {
        format!("\"{value}\"")
    };
    indexed(if op.is_empty() {
        term
    } else {
        format!("{op}:{term}")
    })
}

/// One term of the query language as an index key.
fn indexed(query: String) -> Result<Expr, Failure> {
    let parsed =
        Query::parse(&query).map_err(|e| Failure::Bad(format!("search {query:?}: {}", e.message)))?;
    Ok(Expr::Index(parsed.root().clone()))
}

fn date(d: &NaiveDate) -> String {
    d.as_ref().format("%Y-%m-%d").to_string()
}

/// Microseconds since the epoch of the start of day `d` in UTC.
fn day_start(d: &NaiveDate) -> Result<i64, Failure> {
    d.as_ref()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp() * 1_000_000)
        .ok_or_else(|| Failure::Bad("invalid date".into()))
}

/// Evaluates a plan to one flag per message of the view (index i = message number i+1).
pub(crate) struct Evaluator<'a> {
    pub store: &'a Store,
    /// `None` before login (no content key matches then).
    pub principal: Option<&'a Principal>,
    pub view: &'a View,
    pub budget: &'a Budget,
    entries: Option<Vec<ViewEntry>>,
}

impl<'a> Evaluator<'a> {
    pub fn new(
        store: &'a Store,
        principal: Option<&'a Principal>,
        view: &'a View,
        budget: &'a Budget,
    ) -> Self {
        Evaluator {
            store,
            principal,
            view,
            budget,
            entries: None,
        }
    }

    fn all(&self, value: bool) -> Vec<bool> {
        vec![value; self.view.len()]
    }

    fn check(&self) -> Result<(), Failure> {
        self.budget.check().map_err(stopped)
    }

    /// The messages `e` matches. Recursion follows the plan, whose depth the parser bounds.
    pub fn eval(&mut self, e: &Expr) -> Result<Vec<bool>, Failure> {
        self.check()?;
        if e.index_only() {
            return self.indexed(e.to_node());
        }
        Ok(match e {
            Expr::Const(b) => self.all(*b),
            Expr::Set { set, uid } => {
                let mut m = self.all(false);
                // A message-number set on an empty mailbox matches nothing.
                for n in resolve(set, self.view, *uid).unwrap_or_default() {
                    if let Some(slot) = n.checked_sub(1).and_then(|i| m.get_mut(i)) {
                        *slot = true;
                    }
                }
                m
            }
            Expr::Received(r) => {
                let r = *r;
                self.by_entry(|e| match r {
                    Received::Before(start) => e.received_us < start,
                    Received::On(start) => e.received_us >= start && e.received_us < start + 86_400_000_000,
                    Received::Since(start) => e.received_us >= start,
                })?
            }
            Expr::Not(inner) => self.eval(inner)?.into_iter().map(|b| !b).collect(),
            Expr::And(parts) | Expr::Or(parts) => {
                let and = matches!(e, Expr::And(_));
                // The content keys of this level are one index query.
                let (content, rest): (Vec<&Expr>, Vec<&Expr>) = parts.iter().partition(|p| p.index_only());
                let mut acc = self.all(and);
                let content = match content.len() {
                    0 => None,
                    1 => Some(content[0].to_node()),
                    _ => {
                        let nodes = content.iter().map(|p| p.to_node()).collect();
                        Some(if and { Node::And(nodes) } else { Node::Or(nodes) })
                    }
                };
                let found = content.map(|node| self.indexed(node)).into_iter();
                for m in found.chain(rest.into_iter().map(|p| self.eval(p))) {
                    let m = m?;
                    if and {
                        acc.iter_mut().zip(m).for_each(|(a, b)| *a &= b);
                    } else {
                        acc.iter_mut().zip(m).for_each(|(a, b)| *a |= b);
                    }
                }
                acc
            }
            Expr::Index(node) => self.indexed(node.clone())?,
        })
    }

    /// A key on receive time, from the records (no message bytes are decompressed).
    fn by_entry(&mut self, test: impl Fn(&ViewEntry) -> bool) -> Result<Vec<bool>, Failure> {
        if self.entries.is_none() {
            let mut entries = Vec::with_capacity(self.view.len());
            for (i, uid) in self.view.uids().enumerate() {
                if i % 1024 == 0 {
                    self.check()?;
                }
                let e = self
                    .store
                    .view_entry(self.view, uid)
                    .map_err(|e| Failure::store(&e))?;
                entries.push(e);
            }
            self.entries = Some(entries);
        }
        Ok(self.entries.iter().flatten().map(test).collect())
    }

    /// Messages of the view the index finds for `node` as the session's principal: one
    /// index search.
    fn indexed(&mut self, node: Node) -> Result<Vec<bool>, Failure> {
        let Some(principal) = self.principal else {
            return Ok(self.all(false));
        };
        let query = Query::from_node(node).map_err(|e| match e.kind {
            QueryErrorKind::TooDeep | QueryErrorKind::TooManyTerms => {
                Failure::limit(format!("search too complex: {}", e.message))
            }
            QueryErrorKind::Syntax => Failure::Bad(format!("search: {}", e.message)),
            QueryErrorKind::NothingToSearch => {
                Failure::No(Some(code("CANNOT")), format!("search: {}", e.message))
            }
        })?;
        let found: HashSet<u64> = self
            .store
            .matching_seqs(principal, &query, self.budget)
            .map_err(|e| Failure::store(&e))?
            .into_iter()
            .collect();
        Ok(self.view.message_seqs().map(|s| found.contains(&s)).collect())
    }
}

fn stopped(why: Stopped) -> Failure {
    match why {
        Stopped::Deadline => Failure::limit("search took too long; narrow it down"),
        Stopped::Cancelled => Failure::No(None, "search cancelled".into()),
    }
}

#[cfg(test)]
mod tests {
    use imap_next::imap_types::core::Vec1;

    use super::*;

    fn text(word: &str) -> SearchKey<'static> {
        SearchKey::Text(AString::try_from(word.to_string()).unwrap())
    }

    fn from(addr: &str) -> SearchKey<'static> {
        SearchKey::From(AString::try_from(addr.to_string()).unwrap())
    }

    #[test]
    fn identical_keys_are_one_key() {
        let keys: Vec<_> = (0..5000).map(|_| text("kiwi")).collect();
        let plan = plan(&keys).unwrap();
        assert!(matches!(plan, Expr::Index(_)), "{plan:?}");
    }

    #[test]
    fn too_many_distinct_keys_are_refused_with_limit() {
        let keys: Vec<_> = (0..5000).map(|i| text(&format!("w{i}"))).collect();
        match plan(&keys) {
            Err(Failure::No(Some(c), why)) => {
                assert_eq!(c, code("LIMIT"));
                assert!(why.contains("too complex"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn or_chains_flatten_into_one_content_group() {
        // OR FROM a0 OR FROM a1 OR … FROM a99: right-nested, 100 deep.
        let mut key = from("a99@x.org");
        for i in (0..99).rev() {
            key = SearchKey::Or(Box::new(from(&format!("a{i}@x.org"))), Box::new(key));
        }
        let plan = plan(&[key]).unwrap();
        let Expr::Or(parts) = &plan else {
            panic!("{plan:?}")
        };
        assert_eq!(parts.len(), 100);
        assert!(plan.index_only());
        // NOT NOT cancels; constants fold.
        let not_not = SearchKey::Not(Box::new(SearchKey::Not(Box::new(text("a")))));
        assert_eq!(
            super::plan(&[not_not]).unwrap(),
            super::plan(&[text("a")]).unwrap()
        );
        let all = SearchKey::And(Vec1::try_from(vec![SearchKey::All, SearchKey::Seen]).unwrap());
        assert_eq!(super::plan(&[all]).unwrap(), Expr::Const(true));
    }
}
