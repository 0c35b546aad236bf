//! What a search returns: hits (per message, filtered to the principal), the total, and an
//! opaque cursor for the next page.

use base64::Engine;

use super::document::Delivery;
use super::extract::Mailbox;
use super::facets::Facets;
use crate::{Error, Result};

/// Result order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    /// Newest first by date (Date header, or receive time without one); ties by seq, newest
    /// first.
    #[default]
    Newest,
    /// Oldest first; ties by seq, oldest first.
    Oldest,
    /// Best match first (BM25); ties by seq, oldest first.
    Relevance,
    /// Largest first; ties by seq, newest first.
    Size,
}

impl Sort {
    fn tag(self) -> &'static str {
        match self {
            Sort::Newest => "n",
            Sort::Oldest => "o",
            Sort::Relevance => "r",
            Sort::Size => "s",
        }
    }
}

/// How to run a search.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// Order of the hits.
    pub sort: Sort,
    /// Hits per page (at most 1000).
    pub limit: usize,
    /// The `next_cursor` of the previous page, or `None` for the first page.
    pub cursor: Option<String>,
    /// Whether to make highlighted body snippets (reads each hit's message from the log).
    pub snippets: bool,
    /// Whether to count facets (years, months, sender domains) over every matching message,
    /// in the same pass as the total; a page after the first need not ask again.
    pub facets: bool,
    /// Count matches exactly up to this many; past it a search in date order may stop
    /// counting where the page needs no more, and `total` is a lower bound (`total_exact`
    /// false). `None` counts every match. Facets and the other orders always count all.
    pub count_limit: Option<u64>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            sort: Sort::Newest,
            limit: 20,
            cursor: None,
            snippets: true,
            facets: false,
            count_limit: Some(DEFAULT_COUNT_LIMIT),
        }
    }
}

/// Matches counted exactly unless a search asks for more ([`SearchOptions::count_limit`]):
/// past it a count says "more than" — what people read a count that large as anyway.
pub const DEFAULT_COUNT_LIMIT: u64 = 10_000;

/// Most hits one page may hold.
pub const MAX_LIMIT: usize = 1000;

/// How deep pages in relevance order go: a relevance page is found by ranking every hit
/// before it (tantivy keeps `2 × (offset + limit)` of them per segment), so its offset is
/// bounded like its size. Date and size order page by key, to any depth.
pub const MAX_RELEVANCE_DEPTH: u64 = 10_000;

/// A body excerpt with the matching words marked.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snippet {
    /// The excerpt, plain text.
    pub text: String,
    /// Byte ranges of `text` that matched the query.
    pub highlights: Vec<(usize, usize)>,
}

impl Snippet {
    /// The excerpt with every match wrapped in `open` … `close`.
    pub fn marked(&self, open: &str, close: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + 8);
        let mut at = 0;
        for &(s, e) in &self.highlights {
            if s < at
                || e > self.text.len()
                || !self.text.is_char_boundary(s)
                || !self.text.is_char_boundary(e)
            {
                continue;
            }
            out.push_str(&self.text[at..s]);
            out.push_str(open);
            out.push_str(&self.text[s..e]);
            out.push_str(close);
            at = e;
        }
        out.push_str(&self.text[at..]);
        out
    }
}

/// One message that matched, as the principal may see it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Hit {
    /// Seq of the message record holding the bytes (`mailvault show SEQ`).
    pub seq: u64,
    /// The deliveries (message record and arrivals) the principal may see, each with the
    /// envelope recipients the principal may see.
    pub deliveries: Vec<Delivery>,
    /// Date header as Unix seconds (UTC), or the receive time when there is none.
    pub date: i64,
    /// Whether `date` is the receive time.
    pub date_is_received: bool,
    /// Header From (and Sender).
    pub from: Vec<Mailbox>,
    /// Header To.
    pub to: Vec<Mailbox>,
    /// Header Cc.
    pub cc: Vec<Mailbox>,
    /// Header Bcc plus the blind envelope recipients the principal may see.
    pub bcc: Vec<Mailbox>,
    /// Subject.
    pub subject: String,
    /// Raw size in bytes.
    pub size: u64,
    /// Message-ID.
    pub message_id: Option<String>,
    /// Attachment file names.
    pub attachments: Vec<String>,
    /// Relevance score (relevance order only).
    pub score: Option<f32>,
    /// Highlighted body excerpt, if asked for.
    pub snippet: Option<Snippet>,
}

/// A page of results.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SearchResults {
    /// The hits of this page, in the requested order.
    pub hits: Vec<Hit>,
    /// Messages matching the query in the principal's scope, over all pages: all of them
    /// when `total_exact`, else at least this many (see [`SearchOptions::count_limit`]).
    pub total: u64,
    /// Whether `total` counts every match.
    pub total_exact: bool,
    /// Cursor for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// The last log seq the search index had applied when the search ran.
    pub indexed_seq: u64,
    /// Counts by year, month and sender domain, if asked for.
    pub facets: Option<Facets>,
}

/// Where a page starts: after the hit with this sort key (date, size) or at this offset
/// (relevance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// After the hit with this (date or size, seq).
    Key(i64, u64),
    /// After this many hits.
    Offset(u64),
}

/// Encodes a cursor: `sort tag`, then the key, URL-safe base64 so it passes through URLs.
pub(crate) fn encode_cursor(sort: Sort, after: After) -> String {
    let text = match after {
        After::Key(k, seq) => format!("1:{}:{k}:{seq}", sort.tag()),
        After::Offset(n) => format!("1:{}:{n}", sort.tag()),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Decodes a cursor made by [`encode_cursor`] for the same sort order.
pub(crate) fn decode_cursor(cursor: &str, sort: Sort) -> Result<After> {
    let bad = || Error::Malformed {
        what: "search cursor",
        reason: format!("{cursor:?} is not one this search returned"),
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        ["1", tag, n] if *tag == sort.tag() && sort == Sort::Relevance => {
            let offset: u64 = n.parse().map_err(|_| bad())?;
            if offset > MAX_RELEVANCE_DEPTH {
                return Err(Error::Malformed {
                    what: "search cursor",
                    reason: format!(
                        "relevance order pages through the first {MAX_RELEVANCE_DEPTH} hits only \
                         (sort by date to go further); {cursor:?} asks for hit {offset}"
                    ),
                });
            }
            Ok(After::Offset(offset))
        }
        ["1", tag, k, seq] if *tag == sort.tag() && sort != Sort::Relevance => Ok(After::Key(
            k.parse().map_err(|_| bad())?,
            seq.parse().map_err(|_| bad())?,
        )),
        ["1", _, ..] => Err(Error::Malformed {
            what: "search cursor",
            reason: format!("{cursor:?} belongs to another sort order"),
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_checked() {
        for (sort, after) in [
            (Sort::Newest, After::Key(-5, 7)),
            (Sort::Oldest, After::Key(1_700_000_000, 1)),
            (Sort::Size, After::Key(1234, 99)),
            (Sort::Relevance, After::Offset(40)),
        ] {
            let c = encode_cursor(sort, after);
            assert_eq!(decode_cursor(&c, sort).unwrap(), after);
        }
        let c = encode_cursor(Sort::Newest, After::Key(1, 2));
        assert!(decode_cursor(&c, Sort::Oldest)
            .unwrap_err()
            .to_string()
            .contains("another sort order"));
        assert!(decode_cursor("not a cursor!", Sort::Newest).is_err());
    }

    #[test]
    fn a_relevance_cursor_deeper_than_the_bound_is_refused() {
        let deepest = encode_cursor(Sort::Relevance, After::Offset(MAX_RELEVANCE_DEPTH));
        assert_eq!(
            decode_cursor(&deepest, Sort::Relevance).unwrap(),
            After::Offset(MAX_RELEVANCE_DEPTH)
        );
        // A forged cursor: tantivy would reserve room for this many hits before ranking any.
        for offset in [MAX_RELEVANCE_DEPTH + 1, 10_000_000_000_000, u64::MAX] {
            let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("1:r:{offset}"));
            let refused = decode_cursor(&forged, Sort::Relevance).unwrap_err().to_string();
            assert!(refused.contains("first 10000 hits only"), "{refused}");
        }
    }

    #[test]
    fn snippets_mark_matches() {
        let s = Snippet {
            text: "die Rechnung für März".into(),
            highlights: vec![(4, 12)],
        };
        assert_eq!(s.marked("[", "]"), "die [Rechnung] für März");
    }
}
