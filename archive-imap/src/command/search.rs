//! SEARCH and UID SEARCH. Keys about the view (sets, UIDs, flags, receive dates) are
//! evaluated on the view; keys about the content (addresses, subject, body, text, header
//! fields, sent dates, sizes) are answered by the full-text index through `Store::search` as the
//! session's principal, and intersected with the view. Bodies are never scanned here.
//!
//! A SEARCH with RFC 4731 result options (`RETURN (MIN MAX ALL COUNT)`, cut out of the line
//! by `protocol`) is answered with one `* ESEARCH` line instead of `* SEARCH`.

use std::collections::HashSet;
use std::num::NonZeroU32;

use archive_core::search::{Query, SearchOptions, Sort, MAX_LIMIT};
use archive_core::views::{View, ViewEntry};
use imap_next::imap_types::core::{AString, Charset, Tag, Vec1};
use imap_next::imap_types::datetime::NaiveDate;
use imap_next::imap_types::response::{Code, Data, Status};
use imap_next::imap_types::search::SearchKey;

use super::Done;
use crate::esearch::{self, Returns};
use crate::sequence::resolve;
use crate::session::{bad, blocking, code, no, ok, Closed, Conn, Session};

/// Why a search cannot be answered.
enum Failure {
    /// The client asked something malformed (BAD).
    Bad(String),
    /// Well-formed but not answerable here (NO).
    No(Option<Code<'static>>, String),
}

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    charset: Option<Charset<'static>>,
    criteria: Vec1<SearchKey<'static>>,
    uid: bool,
    returns: Option<Returns>,
) -> Result<Done, Closed> {
    let numbers = match matching(s, &tag, charset.as_ref(), criteria) {
        Ok(n) => n,
        Err(status) => return Done::reply(status),
    };
    let view = s.selected.as_ref().map(|sel| &sel.view);
    let numbers: Vec<NonZeroU32> = numbers
        .into_iter()
        .filter_map(|n| reply_number(view?, n, uid))
        .collect();
    match returns {
        None => c.data(Data::Search(numbers)).await?,
        Some(returns) => {
            let numbers: Vec<u32> = numbers.iter().map(|n| n.get()).collect();
            c.raw(esearch::response(tag.inner(), uid, returns, &numbers))
                .await?
        }
    }
    Done::reply(ok(tag, "SEARCH completed"))
}

/// The number a reply names for message `n` of `view`: `n` itself, or its UID.
pub(crate) fn reply_number(view: &View, n: usize, uid: bool) -> Option<NonZeroU32> {
    let value = if uid { view.uid_at(n)? } else { n as u64 };
    u32::try_from(value).ok().and_then(NonZeroU32::new)
}

/// The message numbers (1-based, ascending) of the selected view that match `criteria`,
/// or the tagged status that answers the command instead. Shared by SEARCH, SORT and THREAD.
pub(crate) fn matching(
    s: &Session,
    tag: &Tag<'static>,
    charset: Option<&Charset<'_>>,
    criteria: Vec1<SearchKey<'static>>,
) -> Result<Vec<usize>, Status<'static>> {
    if let Some(cs) = charset {
        let name = cs.as_ref().to_ascii_uppercase();
        if name != "UTF-8" && name != "US-ASCII" {
            return Err(no(
                tag.clone(),
                Some(Code::BadCharset {
                    allowed: ["UTF-8", "US-ASCII"]
                        .into_iter()
                        .filter_map(|c| Charset::try_from(c).ok())
                        .collect(),
                }),
                "only UTF-8 and US-ASCII searches are supported",
            ));
        }
    }
    let Some(sel) = &s.selected else {
        return Err(bad(tag.clone(), "no mailbox selected"));
    };
    let view = &sel.view;
    let key = SearchKey::And(criteria);
    match blocking(|| Evaluator::new(s, view).eval(&key)) {
        Ok(m) => Ok(m
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| i + 1)
            .collect()),
        Err(Failure::Bad(why)) => Err(bad(tag.clone(), &why)),
        Err(Failure::No(code, why)) => Err(no(tag.clone(), code, &why)),
    }
}

/// Evaluates keys to one flag per message of the view (index i = message number i+1).
struct Evaluator<'a> {
    s: &'a Session,
    view: &'a View,
    entries: Option<Vec<ViewEntry>>,
}

impl<'a> Evaluator<'a> {
    fn new(s: &'a Session, view: &'a View) -> Self {
        Evaluator {
            s,
            view,
            entries: None,
        }
    }

    fn all(&self, value: bool) -> Vec<bool> {
        vec![value; self.view.len()]
    }

    fn eval(&mut self, key: &SearchKey<'_>) -> Result<Vec<bool>, Failure> {
        Ok(match key {
            SearchKey::And(keys) => {
                let mut acc = self.all(true);
                for k in keys.as_ref() {
                    let m = self.eval(k)?;
                    acc.iter_mut().zip(m).for_each(|(a, b)| *a &= b);
                }
                acc
            }
            SearchKey::Or(a, b) => {
                let mut x = self.eval(a)?;
                let y = self.eval(b)?;
                x.iter_mut().zip(y).for_each(|(a, b)| *a |= b);
                x
            }
            SearchKey::Not(k) => self.eval(k)?.into_iter().map(|b| !b).collect(),
            SearchKey::All => self.all(true),
            SearchKey::SequenceSet(set) | SearchKey::Uid(set) => {
                let uid = matches!(key, SearchKey::Uid(_));
                let mut m = self.all(false);
                // A message-number set on an empty mailbox matches nothing.
                for n in resolve(set, self.view, uid).unwrap_or_default() {
                    if let Some(slot) = m.get_mut(n - 1) {
                        *slot = true;
                    }
                }
                m
            }
            // Every archived message is \Seen and nothing else: no flag can be changed.
            SearchKey::Seen | SearchKey::Old => self.all(true),
            SearchKey::Unseen | SearchKey::New | SearchKey::Recent => self.all(false),
            SearchKey::Answered
            | SearchKey::Deleted
            | SearchKey::Draft
            | SearchKey::Flagged
            | SearchKey::Keyword(_) => self.all(false),
            SearchKey::Unanswered
            | SearchKey::Undeleted
            | SearchKey::Undraft
            | SearchKey::Unflagged
            | SearchKey::Unkeyword(_) => self.all(true),
            // Sizes are the raw bytes as archived in the index too: no log reads needed.
            SearchKey::Larger(n) => self.indexed(format!("larger:{n}"))?,
            SearchKey::Smaller(n) => self.indexed(format!("smaller:{n}"))?,
            SearchKey::Before(d) => {
                let start = day_start(d)?;
                self.by_entry(|e| e.received_us < start)?
            }
            SearchKey::On(d) => {
                let start = day_start(d)?;
                let end = start + 86_400_000_000;
                self.by_entry(|e| e.received_us >= start && e.received_us < end)?
            }
            SearchKey::Since(d) => {
                let start = day_start(d)?;
                self.by_entry(|e| e.received_us >= start)?
            }
            SearchKey::SentBefore(d) => self.indexed(format!("before:{}", date(d)))?,
            SearchKey::SentOn(d) => self.indexed(format!("on:{}", date(d)))?,
            SearchKey::SentSince(d) => self.indexed(format!("-before:{}", date(d)))?,
            SearchKey::From(v) => self.field("from", v)?,
            SearchKey::To(v) => self.field("to", v)?,
            SearchKey::Cc(v) => self.field("cc", v)?,
            SearchKey::Bcc(v) => self.field("bcc", v)?,
            SearchKey::Subject(v) => self.field("subject", v)?,
            SearchKey::Body(v) => self.field("body", v)?,
            SearchKey::Text(v) => self.field("", v)?,
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
                                "HEADER {name} is not indexed; searchable headers: From, \
                                 Sender, To, Cc, Bcc, Subject, Message-ID, In-Reply-To, \
                                 References"
                            ),
                        ))
                    }
                };
                self.field(op, v)?
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

    /// A key on receive time, from the records (no message bytes are decompressed).
    fn by_entry(&mut self, test: impl Fn(&ViewEntry) -> bool) -> Result<Vec<bool>, Failure> {
        if self.entries.is_none() {
            let mut entries = Vec::with_capacity(self.view.len());
            for uid in self.view.uids() {
                let e = self.s.store.view_entry(self.view, uid).map_err(|e| {
                    tracing::error!(uid, error = %e, "SEARCH cannot read a record");
                    Failure::No(Some(code("SERVERBUG")), "a message could not be read".into())
                })?;
                entries.push(e);
            }
            self.entries = Some(entries);
        }
        Ok(self.entries.iter().flatten().map(test).collect())
    }

    /// A content key as a query of the one query language (docs/SEARCH.md).
    fn field(&mut self, op: &str, value: &AString<'_>) -> Result<Vec<bool>, Failure> {
        let value = String::from_utf8_lossy(value.as_ref()).into_owned();
        // The query language has no escape for '"'; it separates words anyway.
        let value = value.replace('"', " ");
        let value = value.trim();
        if value.is_empty() {
            // RFC 3501: every string contains the empty string.
            return Ok(self.all(true));
        }
        // A single token (an address, a word) goes unquoted so that full addresses match
        // exactly; anything else is a phrase.
        let single = !value.contains(char::is_whitespace) && !value.contains(['(', ')']);
        let term = if single && !value.starts_with('-') {
            value.to_string()
        } else {
            format!("\"{value}\"")
        };
        let query = if op.is_empty() {
            term
        } else {
            format!("{op}:{term}")
        };
        self.indexed(query)
    }

    /// Messages of the view the index finds for `query` as the session's principal.
    fn indexed(&mut self, query: String) -> Result<Vec<bool>, Failure> {
        let Some(user) = &self.s.user else {
            return Ok(self.all(false));
        };
        let parsed =
            Query::parse(&query).map_err(|e| Failure::Bad(format!("search {query:?}: {}", e.message)))?;
        let mut found: HashSet<u64> = HashSet::new();
        let mut options = SearchOptions {
            sort: Sort::Oldest,
            limit: MAX_LIMIT,
            cursor: None,
            snippets: false,
        };
        loop {
            let page = self
                .s
                .store
                .search(&user.principal, &parsed, &options)
                .map_err(|e| {
                    tracing::error!(error = %e, "SEARCH: the index failed");
                    Failure::No(
                        Some(code("UNAVAILABLE")),
                        "the search index is not available right now".into(),
                    )
                })?;
            found.extend(page.hits.iter().map(|h| h.seq));
            match page.next_cursor {
                Some(next) if !page.hits.is_empty() => options.cursor = Some(next),
                _ => break,
            }
        }
        Ok(self.view.message_seqs().map(|s| found.contains(&s)).collect())
    }
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
