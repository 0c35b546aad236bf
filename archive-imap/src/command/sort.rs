//! SORT and UID SORT (RFC 5256, with SORT=DISPLAY from RFC 5957). The candidates are those
//! SEARCH finds (same keys, same rules); the ordering fields come from each message's header
//! block only. Ties, and equal keys all the way down, fall back to the message number.
//!
//! A SORT with RFC 5267 ESORT result options (`RETURN (MIN MAX ALL COUNT)`, cut out of the
//! line by `protocol`) is answered with one `* ESEARCH` line in sort order instead of
//! `* SORT`.

use std::cmp::Ordering;
use std::sync::Arc;

use archive_core::search::{Budget, Cancel, DEFAULT_TIME_LIMIT};
use archive_core::views::View;
use imap_next::imap_types::core::{Charset, Tag, Vec1};
use imap_next::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_next::imap_types::response::{Data, Status};
use imap_next::imap_types::search::SearchKey;

use super::search::{matching, mentions_modseq, Replies};
use super::Done;
use crate::esearch::{self, Returns};
use crate::mime::SortFields;
use crate::session::{code, no, ok, Closed, Conn, Session};

/// A SORT or UID SORT as parsed.
pub(crate) struct Request {
    pub criteria: Vec1<SortCriterion>,
    pub charset: Charset<'static>,
    pub search: Vec1<SearchKey<'static>>,
    pub uid: bool,
    /// ESORT result options: answer with `* ESEARCH`.
    pub returns: Option<Returns>,
}

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    request: Request,
) -> Result<Done, Closed> {
    let Request {
        criteria,
        charset,
        search,
        uid,
        returns,
    } = request;
    let with_modseq = mentions_modseq(search.as_ref());
    if with_modseq {
        s.enable_condstore(c).await?;
    }
    let numbers = match matching(s, c, &tag, Some(&charset), search).await? {
        Ok(n) => n,
        Err(status) => return Done::reply(status),
    };
    let Some(view) = s.selected.as_ref().map(|sel| sel.view.clone()) else {
        return Done::reply(no(tag, None, "no mailbox selected"));
    };
    let fields = match load_fields(s, c, &view, numbers.clone(), &tag).await? {
        Ok(f) => f,
        Err(status) => return Done::reply(status),
    };
    let mut order: Vec<usize> = (0..numbers.len()).collect();
    order.sort_by(|&a, &b| {
        compare(criteria.as_ref(), &fields[a], &fields[b]).then(numbers[a].cmp(&numbers[b]))
    });
    let replies = Replies::new(&view, order.into_iter().map(|i| numbers[i]), uid);
    match returns {
        None => {
            // RFC 7162 §3.1.5 (as for SEARCH).
            let modseq = with_modseq.then(|| replies.highest_modseq()).flatten();
            c.data(Data::Sort(replies.numbers(), modseq)).await?
        }
        Some(returns) => {
            let found = replies.found(with_modseq);
            c.raw(esearch::sort_response(tag.inner(), uid, returns, found))
                .await?
        }
    }
    Done::reply(ok(tag, "SORT completed"))
}

/// The ordering fields of messages `numbers` of `view`, read through `Store::view_message`
/// (the one read path) and cut to the header block. Every message is read, so like SEARCH
/// the work runs on a blocking thread within the search time limit, and stops when the
/// client goes away.
pub(crate) async fn load_fields(
    s: &Session,
    c: &mut Conn,
    view: &View,
    numbers: Vec<usize>,
    tag: &Tag<'static>,
) -> Result<Result<Vec<SortFields>, Status<'static>>, Closed> {
    let store = Arc::clone(&s.store);
    let view = view.clone();
    let cancel = Cancel::new();
    let budget = Budget::within(DEFAULT_TIME_LIMIT).cancelled_by(cancel.clone());
    let work = tokio::task::spawn_blocking(move || {
        numbers
            .iter()
            .map(|&n| {
                budget.check().map_err(archive_core::Error::SearchStopped)?;
                // Numbers come from resolving against this view, so each has a UID.
                let uid = view.uid_at(n).ok_or_else(|| {
                    archive_core::Error::Internal(format!("message {n} is not in the view"))
                })?;
                let m = store.view_message(&view, uid)?;
                Ok(SortFields::parse(&m.raw, m.received_us, m.raw.len() as u64))
            })
            .collect::<archive_core::Result<Vec<_>>>()
    });
    Ok(match c.await_watching(work, || cancel.cancel()).await? {
        Ok(Ok(fields)) => Ok(fields),
        Ok(Err(e)) => {
            let (code, why) = crate::failure::store_failure(&e, "SORT/THREAD");
            Err(no(tag.clone(), code, &why))
        }
        Err(e) => {
            tracing::error!(error = %e, "SORT/THREAD: the reading thread failed");
            Err(no(
                tag.clone(),
                Some(code("SERVERBUG")),
                "the messages could not be read",
            ))
        }
    })
}

/// Orders two messages by the sort criteria, in the order given (RFC 5256 §3).
pub(crate) fn compare(criteria: &[SortCriterion], a: &SortFields, b: &SortFields) -> Ordering {
    for c in criteria {
        let o = match c.key {
            SortKey::Arrival => a.received_us.cmp(&b.received_us),
            SortKey::Date => a.sent_us.cmp(&b.sent_us),
            SortKey::Size => a.size.cmp(&b.size),
            SortKey::Subject => a.subject.cmp(&b.subject),
            SortKey::From => a.from.cmp(&b.from),
            SortKey::To => a.to.cmp(&b.to),
            SortKey::Cc => a.cc.cmp(&b.cc),
            SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
            SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
        };
        let o = if c.reverse { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crit(key: SortKey, reverse: bool) -> SortCriterion {
        SortCriterion { reverse, key }
    }

    #[test]
    fn criteria_apply_in_order_and_reverse_only_their_own_key() {
        let a = SortFields {
            subject: "A".into(),
            size: 10,
            ..SortFields::default()
        };
        let b = SortFields {
            subject: "A".into(),
            size: 20,
            ..SortFields::default()
        };
        let by = [crit(SortKey::Subject, true), crit(SortKey::Size, false)];
        assert_eq!(compare(&by, &a, &b), Ordering::Less);
        let by = [crit(SortKey::Subject, false), crit(SortKey::Size, true)];
        assert_eq!(compare(&by, &a, &b), Ordering::Greater);
        assert_eq!(compare(&[crit(SortKey::Arrival, false)], &a, &b), Ordering::Equal);
    }
}
