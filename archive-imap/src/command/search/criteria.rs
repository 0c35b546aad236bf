//! SEARCH keys as a plan: the keys are flattened (nested ANDs and ORs become one list, NOT
//! NOT cancels), identical keys are merged, the number of distinct keys is capped, and every
//! group of content keys that sits under one AND/OR/NOT becomes a single full-text query. So
//! `OR FROM a OR FROM b OR FROM c …` is one index search, not one per key, and 5,000 copies of
//! one key are one key.
//!
//! Keys about the view (message-number and UID sets, receive dates, flags) are evaluated on
//! the view; sizes by the full-text index as the session's principal, intersected with the
//! view. Header keys (FROM, TO, CC, BCC, SUBJECT, HEADER) and sent dates are RFC 3501
//! substring and day comparisons the index cannot answer exactly: they become [`Scan`]s,
//! which read the messages (`eval`, `scan`). TEXT and BODY are both: the index's words and
//! stems (as Dovecot with full-text search), or RFC 3501's substring, checked by a scan of
//! the candidates the index gives for it.

use std::collections::HashSet;

use archive_core::search::analysis::{terms, EXACT};
use archive_core::search::query::{Node, TextField, Value, Within};
use archive_core::search::{Query, MAX_TERMS};
use imap_next::imap_types::core::AString;
use imap_next::imap_types::datetime::NaiveDate;
use imap_next::imap_types::response::Code;
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::SequenceSet;

use super::scan::{Scan, SentOp};
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
    pub(super) fn limit(why: impl Into<String>) -> Failure {
        Failure::No(Some(code("LIMIT")), why.into())
    }

    /// The answer to a store error (crate::failure).
    pub(super) fn store(e: &archive_core::Error) -> Failure {
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
    /// RFC 7162 MODSEQ: messages whose mod-sequence is at least this (`condstore`).
    ModSeq(u64),
    /// A content key for the full-text index.
    Index(Node),
    /// A key answered by reading the messages.
    Scan(Scan),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

impl Expr {
    /// Whether the index alone can answer this (no view keys, no constants, no scans).
    pub(super) fn index_only(&self) -> bool {
        match self {
            Expr::Index(_) => true,
            Expr::And(parts) | Expr::Or(parts) => parts.iter().all(Expr::index_only),
            Expr::Not(inner) => inner.index_only(),
            Expr::Const(_) | Expr::Set { .. } | Expr::ModSeq(_) | Expr::Received(_) | Expr::Scan(_) => false,
        }
    }

    /// The query node of an expression that is `index_only`.
    pub(super) fn to_node(&self) -> Node {
        match self {
            Expr::Index(node) => node.clone(),
            Expr::And(parts) => Node::And(parts.iter().map(Expr::to_node).collect()),
            Expr::Or(parts) => Node::Or(parts.iter().map(Expr::to_node).collect()),
            Expr::Not(inner) => Node::Not(Box::new(inner.to_node())),
            // Not index-only; `index_only` keeps these out.
            Expr::Const(_) | Expr::Set { .. } | Expr::ModSeq(_) | Expr::Received(_) | Expr::Scan(_) => {
                Node::Or(Vec::new())
            }
        }
    }

    /// What evaluating this costs, for ordering the parts of an AND or OR: index queries
    /// and view keys first, scans (which read messages) last, over what the others left.
    pub(super) fn cost(&self) -> u8 {
        match self {
            Expr::Const(_) | Expr::Set { .. } | Expr::ModSeq(_) | Expr::Index(_) => 0,
            Expr::Received(_) => 1,
            Expr::Scan(_) => 2,
            Expr::And(parts) | Expr::Or(parts) => parts.iter().map(Expr::cost).max().unwrap_or(0),
            Expr::Not(inner) => inner.cost(),
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

/// Whether the keys use MODSEQ (RFC 7162 §3.1.5): the answer then names the highest
/// mod-sequence it holds. Walks the keys without recursion.
pub(crate) fn mentions_modseq(criteria: &[SearchKey<'_>]) -> bool {
    let mut stack: Vec<&SearchKey<'_>> = criteria.iter().collect();
    while let Some(key) = stack.pop() {
        match key {
            SearchKey::ModSequence { .. } => return true,
            SearchKey::And(keys) => stack.extend(keys.as_ref()),
            SearchKey::Or(a, b) => {
                stack.push(a);
                stack.push(b);
            }
            SearchKey::Not(k) => stack.push(k),
            _ => {}
        }
    }
    false
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
        // RFC 3501: the date as written in the Date header, whatever its zone.
        SearchKey::SentBefore(d) => Expr::Scan(Scan::Sent(SentOp::Before, date(d)?)),
        SearchKey::SentOn(d) => Expr::Scan(Scan::Sent(SentOp::On, date(d)?)),
        SearchKey::SentSince(d) => Expr::Scan(Scan::Sent(SentOp::Since, date(d)?)),
        SearchKey::From(v) => address("from", v),
        SearchKey::To(v) => address("to", v),
        SearchKey::Cc(v) => address("cc", v),
        SearchKey::Bcc(v) => address("bcc", v),
        SearchKey::Subject(v) => header("subject", v),
        SearchKey::Header(name, v) => header(&String::from_utf8_lossy(name.as_ref()), v),
        SearchKey::Body(v) => text(false, v)?,
        SearchKey::Text(v) => text(true, v)?,
        // Every metadata item of a message has the message's mod-sequence, so the entry
        // named (a flag) does not matter.
        SearchKey::ModSequence { modseq, .. } => Expr::ModSeq(*modseq),
        #[allow(unreachable_patterns)]
        _ => {
            return Err(Failure::No(
                Some(code("CANNOT")),
                "this search key is not supported".into(),
            ))
        }
    })
}

/// RFC 3501 header keys: the field exists and its value (RFC 2047-decoded, unfolded)
/// contains `value`, case-insensitively. An empty value asks only that the field exist, as
/// in Dovecot (`SUBJECT ""` is every message with a Subject).
fn header(name: &str, value: &AString<'_>) -> Expr {
    let value = String::from_utf8_lossy(value.as_ref()).to_lowercase();
    in_header_candidates(
        &value,
        Scan::Header {
            name: name.trim().to_ascii_lowercase(),
            value: value.clone(),
        },
    )
}

/// `scan` of a header key over the messages whose header could hold `value` (the index's
/// `header` field, `Node::Contains`), so that a key like `SUBJECT invoice` reads the
/// headers of the messages with such a word, not of the whole mailbox.
fn in_header_candidates(value: &str, scan: Scan) -> Expr {
    Expr::And(vec![
        Expr::Index(Node::Contains(Within::Header, value.to_string())),
        Expr::Scan(scan),
    ])
}

/// RFC 3501 FROM, TO, CC, BCC: "the envelope structure's" field contains `value`: the
/// field's addresses as ENVELOPE reads them (`scan::Fields`), case-insensitively. An empty
/// value asks only that the field exist.
fn address(name: &str, value: &AString<'_>) -> Expr {
    let value = String::from_utf8_lossy(value.as_ref()).to_lowercase();
    in_header_candidates(
        &value,
        Scan::Address {
            name: name.to_string(),
            value: value.clone(),
        },
    )
}

/// TEXT (`whole`) or BODY: RFC 3501's substring, and also the index's words and stems, as
/// Dovecot with full-text search finds them (`BODY invoices` finds "Invoice"): a message
/// matches if either does. The substring is looked for only in the candidates the index
/// gives for it (`Node::Contains`: messages whose words could hold it), by reading them; a
/// term the index cannot narrow (punctuation only, such as `?`) is looked for in every
/// message.
///
/// The value becomes query nodes directly, never query-language text: `TEXT "from:x"` is
/// the words `from x`, not the `from:` operator, and `TEXT "re:"` is no unknown operator.
fn text(whole: bool, value: &AString<'_>) -> Result<Expr, Failure> {
    let raw = String::from_utf8_lossy(value.as_ref());
    if raw.is_empty() {
        // RFC 3501: every string contains the empty string.
        return Ok(Expr::Const(true));
    }
    let lower = raw.to_lowercase();
    let within = if whole { Within::Text } else { Within::Body };
    let substring = Expr::And(vec![
        Expr::Index(Node::Contains(within, lower.clone())),
        Expr::Scan(Scan::Text { whole, value: lower }),
    ]);
    let words = raw.trim();
    if terms(EXACT, words).is_empty() {
        return Ok(substring);
    }
    // One token (a word, an address) stays a word, so that a full address is matched
    // whole; more are a phrase (the words in this order).
    let single = !words.contains(char::is_whitespace);
    let words = words.to_string();
    let node = match (whole, single) {
        (true, true) => Node::Word(words),
        (true, false) => Node::Phrase(words),
        (false, true) => Node::Field(TextField::Body, Value::Word(words)),
        (false, false) => Node::Field(TextField::Body, Value::Phrase(words)),
    };
    Ok(Expr::Or(vec![Expr::Index(node), substring]))
}

/// One term of the query language as an index key.
fn indexed(query: String) -> Result<Expr, Failure> {
    let parsed =
        Query::parse(&query).map_err(|e| Failure::Bad(format!("search {query:?}: {}", e.problem)))?;
    Ok(Expr::Index(parsed.root().clone()))
}

/// An IMAP date as the query language's dates are.
fn date(d: &NaiveDate) -> Result<jiff::civil::Date, Failure> {
    use chrono::Datelike;
    let d = d.as_ref();
    let (month, day) = (d.month() as i8, d.day() as i8);
    i16::try_from(d.year())
        .ok()
        .and_then(|year| jiff::civil::Date::new(year, month, day).ok())
        .ok_or_else(|| Failure::Bad("invalid date".into()))
}

/// Microseconds since the epoch of the start of day `d` in UTC.
fn day_start(d: &NaiveDate) -> Result<i64, Failure> {
    d.as_ref()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp() * 1_000_000)
        .ok_or_else(|| Failure::Bad("invalid date".into()))
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
        // The word, the substring's candidates and its check.
        assert!(matches!(plan, Expr::Or(_)), "{plan:?}");
        assert_eq!(plan.keys(), 3, "{plan:?}");
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
        // OR TEXT w0 OR TEXT w1 OR … TEXT w99: right-nested, 100 deep.
        let mut key = text("w99");
        for i in (0..99).rev() {
            key = SearchKey::Or(Box::new(text(&format!("w{i}"))), Box::new(key));
        }
        let plan = plan(&[key]).unwrap();
        let Expr::Or(parts) = &plan else {
            panic!("{plan:?}")
        };
        // Each TEXT is its words (one index query for all 100) or its substring (candidates
        // from the index, then a check).
        assert_eq!(parts.len(), 200);
        assert_eq!(parts.iter().filter(|p| p.index_only()).count(), 100);
        assert!(parts
            .iter()
            .filter(|p| !p.index_only())
            .all(|p| matches!(p, Expr::And(a) if matches!(&a[1], Expr::Scan(Scan::Text { .. })))));
        // Header keys and substrings are scans, deduplicated as well.
        let plan = super::plan(&[from("a@x.org"), from("a@x.org"), text("?"), text("kiwi")]).unwrap();
        let Expr::And(parts) = &plan else {
            panic!("{plan:?}")
        };
        // Each scan comes with the index's candidates for it.
        assert_eq!(parts.len(), 5, "{plan:?}");
        assert!(matches!(&parts[0], Expr::Index(Node::Contains(Within::Header, text)) if text == "a@x.org"));
        assert!(
            matches!(&parts[1], Expr::Scan(Scan::Address { name, value }) if name == "from" && value == "a@x.org")
        );
        assert!(matches!(&parts[2], Expr::Index(Node::Contains(Within::Text, text)) if text == "?"));
        assert!(matches!(&parts[3], Expr::Scan(Scan::Text { whole: true, value }) if value == "?"));
        assert!(matches!(&parts[4], Expr::Or(_)));
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
