//! SEARCH and UID SEARCH. The keys become a plan (`criteria`): flattened, deduplicated,
//! capped, with content keys grouped into as few full-text queries as the key structure
//! allows (usually one). The plan runs (`eval`) on a blocking thread within a time limit,
//! and is cancelled if the client disconnects meanwhile. Header keys and sent dates read the
//! header of each message the other keys leave (`scan`); TEXT and BODY read the bodies of
//! the messages the index names as candidates for their substring.
//!
//! A SEARCH with RFC 4731 result options (`RETURN (MIN MAX ALL COUNT)`, cut out of the line
//! by `protocol`) is answered with one `* ESEARCH` line instead of `* SEARCH`. A SEARCH with
//! the RFC 7162 MODSEQ key enables CONDSTORE and names the highest mod-sequence it found.

mod criteria;
mod eval;
mod scan;

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use archive_core::search::{Budget, Cancel, DEFAULT_TIME_LIMIT};
use archive_core::views::View;
use imap_next::imap_types::core::{Charset, Tag, Vec1};
use imap_next::imap_types::response::{Code, Data, Status};
use imap_next::imap_types::search::SearchKey;

use super::Done;
use crate::condstore::modseq;
use crate::esearch::{self, Returns};
use crate::session::{bad, code, no, ok, Closed, Conn, Session};
use criteria::Failure;
pub(crate) use criteria::{mentions_modseq, MAX_KEY_DEPTH};
use eval::Evaluator;

/// How long one SEARCH (or SORT/THREAD's search keys) may take before it is answered
/// `NO [LIMIT]`.
const SEARCH_TIME_LIMIT: Duration = DEFAULT_TIME_LIMIT;

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    charset: Option<Charset<'static>>,
    criteria: Vec1<SearchKey<'static>>,
    uid: bool,
    returns: Option<Returns>,
) -> Result<Done, Closed> {
    let with_modseq = mentions_modseq(criteria.as_ref());
    if with_modseq {
        s.enable_condstore(c).await?;
    }
    let numbers = match matching(s, c, &tag, charset.as_ref(), criteria).await? {
        Ok(n) => n,
        Err(status) => return Done::reply(status),
    };
    let Some(view) = s.selected.as_ref().map(|sel| &sel.view) else {
        return Done::reply(bad(tag, "no mailbox selected"));
    };
    let replies = Replies::new(view, numbers.into_iter(), uid);
    match returns {
        None => {
            let modseq = with_modseq.then(|| replies.highest_modseq()).flatten();
            c.data(Data::Search(replies.numbers(), modseq)).await?
        }
        Some(returns) => {
            let found = replies.found(with_modseq);
            c.raw(esearch::response(tag.inner(), uid, returns, found)).await?
        }
    }
    Done::reply(ok(tag, "SEARCH completed"))
}

/// The numbers a SEARCH or SORT reply names, in the order named, with each message's
/// mod-sequence.
pub(crate) struct Replies {
    numbers: Vec<u32>,
    modseqs: Vec<u64>,
}

impl Replies {
    /// Messages `numbers` of `view` as message numbers, or UIDs if `uid`.
    pub fn new(view: &View, numbers: impl Iterator<Item = usize>, uid: bool) -> Replies {
        let mut out = Replies {
            numbers: Vec::new(),
            modseqs: Vec::new(),
        };
        for n in numbers {
            if let (Some(reply), Some(u)) = (reply_number(view, n, uid), view.uid_at(n)) {
                out.numbers.push(reply.get());
                out.modseqs.push(modseq(u).get());
            }
        }
        out
    }

    /// The numbers, for a `* SEARCH` or `* SORT` line.
    pub fn numbers(&self) -> Vec<NonZeroU32> {
        self.numbers.iter().filter_map(|n| NonZeroU32::new(*n)).collect()
    }

    /// The highest mod-sequence among them (RFC 7162 §3.1.5), if there are any.
    pub fn highest_modseq(&self) -> Option<NonZeroU64> {
        self.modseqs.iter().max().and_then(|m| NonZeroU64::new(*m))
    }

    /// What an ESEARCH line reports; mod-sequences only if the keys used MODSEQ.
    pub fn found(&self, with_modseq: bool) -> esearch::Found<'_> {
        esearch::Found {
            numbers: &self.numbers,
            modseqs: with_modseq.then_some(self.modseqs.as_slice()),
        }
    }
}

/// The number a reply names for message `n` of `view`: `n` itself, or its UID.
pub(crate) fn reply_number(view: &View, n: usize, uid: bool) -> Option<NonZeroU32> {
    let value = if uid { view.uid_at(n)? } else { n as u64 };
    u32::try_from(value).ok().and_then(NonZeroU32::new)
}

/// The message numbers (1-based, ascending) of the selected view that match `criteria`,
/// or the tagged status that answers the command instead. Shared by SEARCH, SORT and THREAD.
/// The work runs on a blocking thread; if the client goes away meanwhile, it is cancelled
/// and the connection ends.
pub(crate) async fn matching(
    s: &Session,
    c: &mut Conn,
    tag: &Tag<'static>,
    charset: Option<&Charset<'_>>,
    criteria: Vec1<SearchKey<'static>>,
) -> Result<Result<Vec<usize>, Status<'static>>, Closed> {
    if let Some(cs) = charset {
        let name = cs.as_ref().to_ascii_uppercase();
        if name != "UTF-8" && name != "US-ASCII" {
            return Ok(Err(no(
                tag.clone(),
                Some(Code::BadCharset {
                    allowed: ["UTF-8", "US-ASCII"]
                        .into_iter()
                        .filter_map(|c| Charset::try_from(c).ok())
                        .collect(),
                }),
                "only UTF-8 and US-ASCII searches are supported",
            )));
        }
    }
    let Some(sel) = &s.selected else {
        return Ok(Err(bad(tag.clone(), "no mailbox selected")));
    };
    // Every search is an access: one audit record with the keys as asked, before it runs.
    let target = format!(
        "imap mailbox {} {}",
        sel.view.mailbox(),
        archive_core::audit::query_text(&keys_text(&criteria))
    );
    if let Err((code, why)) = s.audit("search", target) {
        return Ok(Err(no(tag.clone(), code, &why)));
    }
    let store = std::sync::Arc::clone(&s.store);
    let principal = s.user.as_ref().map(|u| u.principal.clone());
    let view = sel.view.clone();
    let cancel = Cancel::new();
    let budget = Budget::within(SEARCH_TIME_LIMIT).cancelled_by(cancel.clone());
    let work = tokio::task::spawn_blocking(move || {
        let plan = criteria::plan(criteria.as_ref())?;
        // The keys are not needed any more; dropping them here keeps that off the async side.
        drop(criteria);
        Evaluator::new(&store, principal.as_ref(), &view, &budget).eval(&plan)
    });
    let outcome = c.await_watching(work, || cancel.cancel()).await?;
    Ok(match outcome {
        Ok(Ok(m)) => Ok(m
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| i + 1)
            .collect()),
        Ok(Err(Failure::Bad(why))) => Err(bad(tag.clone(), &why)),
        Ok(Err(Failure::No(code, why))) => Err(no(tag.clone(), code, &why)),
        Err(e) => {
            tracing::error!(error = %e, "SEARCH: the search thread failed");
            Err(no(
                tag.clone(),
                Some(code("SERVERBUG")),
                "the search failed; try again",
            ))
        }
    })
}

/// The search keys as IMAP writes them (imap-codec's encoding; literals inline).
fn keys_text(criteria: &Vec1<SearchKey<'static>>) -> String {
    use imap_codec::encode::Encoder;
    use imap_next::imap_types::command::{Command, CommandBody};
    let body = CommandBody::Search {
        charset: None,
        criteria: criteria.clone(),
        uid: false,
    };
    let Ok(command) = Command::new("a", body) else {
        return String::new();
    };
    let wire = imap_codec::CommandCodec::default().encode(&command).dump();
    let text = String::from_utf8_lossy(&wire);
    text.strip_prefix("a SEARCH ")
        .unwrap_or(&text)
        .trim_end_matches("\r\n")
        .to_string()
}
