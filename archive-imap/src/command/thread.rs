//! THREAD and UID THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES over the messages SEARCH
//! finds, from their header blocks; the algorithms are in `crate::threading`.

use imap_next::imap_types::core::{Charset, Tag, Vec1};
use imap_next::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_next::imap_types::response::Data;
use imap_next::imap_types::search::SearchKey;

use super::search::{matching, reply_number};
use super::sort::load_fields;
use super::Done;
use crate::session::{bad, ok, Closed, Conn, Session};
use crate::threading::{self, Item};

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    algorithm: ThreadingAlgorithm<'static>,
    charset: Charset<'static>,
    search: Vec1<SearchKey<'static>>,
    uid: bool,
) -> Result<Done, Closed> {
    let run: fn(&[Item<'_>]) -> Vec<_> = match algorithm {
        ThreadingAlgorithm::OrderedSubject => threading::ordered_subject,
        ThreadingAlgorithm::References => threading::references,
        ThreadingAlgorithm::Other(_) => {
            return Done::reply(bad(
                tag,
                "unknown threading algorithm (ORDEREDSUBJECT or REFERENCES)",
            ))
        }
    };
    let numbers = match matching(s, c, &tag, Some(&charset), search).await? {
        Ok(n) => n,
        Err(status) => return Done::reply(status),
    };
    let Some(view) = s.selected.as_ref().map(|sel| sel.view.clone()) else {
        return Done::reply(bad(tag, "no mailbox selected"));
    };
    let fields = match load_fields(s, c, &view, numbers.clone(), &tag).await? {
        Ok(f) => f,
        Err(status) => return Done::reply(status),
    };
    let items: Vec<Item<'_>> = numbers
        .iter()
        .zip(&fields)
        .filter_map(|(&n, f)| Some((reply_number(&view, n, uid)?, f)))
        .collect();
    let threads = run(&items);
    c.data(Data::Thread(threads)).await?;
    Done::reply(ok(tag, "THREAD completed"))
}
