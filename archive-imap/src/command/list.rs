//! LIST and LSUB: the principal's mailboxes (`archive_core::views::mailboxes`) matching the
//! pattern, with RFC 6154 SPECIAL-USE attributes (\Sent, \All) in plain LIST replies. Every
//! mailbox counts as subscribed.

use imap_next::imap_types::core::{Atom, QuotedChar, Tag};
use imap_next::imap_types::flag::FlagNameAttribute;
use imap_next::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_next::imap_types::response::Data;

use archive_core::views::{mailboxes, SpecialUse, DOMAINS_PREFIX};

use super::{mailbox_name, mailbox_of, Done};
use crate::session::{ok, Closed, Conn, Session};

const DELIMITER: char = '/';

pub(crate) async fn handle(
    s: &mut Session,
    c: &mut Conn,
    tag: Tag<'static>,
    reference: Mailbox<'static>,
    wildcard: ListMailbox<'static>,
    lsub: bool,
) -> Result<Done, Closed> {
    let what = if lsub { "LSUB" } else { "LIST" };
    let reference = match &reference {
        // An empty reference parses as a mailbox named ""; INBOX as a reference is a prefix.
        Mailbox::Inbox => "INBOX".to_string(),
        other => mailbox_name(other),
    };
    let pattern = match &wildcard {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
    };
    let delimiter = QuotedChar::try_from(DELIMITER).ok();
    if pattern.is_empty() && !lsub {
        // RFC 3501: LIST "" "" asks for the delimiter and the root.
        c.data(Data::List {
            items: vec![FlagNameAttribute::Noselect],
            delimiter,
            mailbox: mailbox_of(""),
        })
        .await?;
        return Done::reply(ok(tag, "LIST completed"));
    }
    let pattern = format!("{reference}{pattern}");
    let Some(user) = &s.user else {
        return Done::reply(ok(tag, "nothing to list"));
    };
    let mut entries: Vec<(String, Vec<FlagNameAttribute<'static>>)> = Vec::new();
    let boxes = mailboxes(&user.principal);
    if boxes.iter().any(|b| b.name.starts_with(DOMAINS_PREFIX)) {
        // The parent of the per-domain views: a name in the hierarchy, not a view.
        entries.push((
            DOMAINS_PREFIX.trim_end_matches(DELIMITER).to_string(),
            vec![FlagNameAttribute::Noselect, attribute("HasChildren")],
        ));
    }
    for b in boxes {
        let mut attrs = vec![attribute("HasNoChildren")];
        if !lsub {
            match b.special_use {
                Some(SpecialUse::Sent) => attrs.push(attribute("Sent")),
                Some(SpecialUse::All) => attrs.push(attribute("All")),
                None => {}
            }
        }
        entries.push((b.name, attrs));
    }
    for (name, items) in entries {
        if !matches(&pattern, &name) {
            continue;
        }
        let mailbox = mailbox_of(&name);
        let data = if lsub {
            Data::Lsub {
                items,
                delimiter,
                mailbox,
            }
        } else {
            Data::List {
                items,
                delimiter,
                mailbox,
            }
        };
        c.data(data).await?;
    }
    Done::reply(ok(tag, &format!("{what} completed")))
}

fn attribute(name: &'static str) -> FlagNameAttribute<'static> {
    Atom::try_from(name)
        .map(FlagNameAttribute::from)
        .unwrap_or(FlagNameAttribute::Noselect)
}

/// RFC 3501 LIST matching: `*` matches anything, `%` anything but the delimiter. INBOX is
/// case-insensitive.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8], fold: bool) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..], fold)),
            Some((b'%', rest)) => {
                let stop = n.iter().position(|b| *b == DELIMITER as u8).unwrap_or(n.len());
                (0..=stop).any(|i| go(rest, &n[i..], fold))
            }
            Some((c, rest)) => match n.split_first() {
                Some((d, nrest)) if c == d || (fold && c.eq_ignore_ascii_case(d)) => go(rest, nrest, fold),
                _ => false,
            },
        }
    }
    go(pattern.as_bytes(), name.as_bytes(), name == "INBOX")
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("*", "Domains/example.com"));
        assert!(!matches("%", "Domains/example.com"));
        assert!(matches("%", "Domains"));
        assert!(matches("Domains/%", "Domains/example.com"));
        assert!(matches("inbox", "INBOX"));
        assert!(!matches("sent", "Sent"));
        assert!(matches("S*", "Sent"));
    }
}
