//! LIST and LSUB: the principal's mailboxes (`archive_core::views::mailboxes`) matching the
//! pattern, with RFC 6154 SPECIAL-USE attributes (\Sent, \All) in plain LIST replies. Every
//! mailbox counts as subscribed.

use imap_next::imap_types::core::{Atom, QuotedChar, Tag};
use imap_next::imap_types::flag::FlagNameAttribute;
use imap_next::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_next::imap_types::response::Data;

use archive_core::views::{mailboxes, SpecialUse, DOMAINS_PREFIX};

use super::{mailbox_name, mailbox_of, Done};
use crate::session::{code, no, ok, Closed, Conn, Session};

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
    if pattern.len() > MAX_PATTERN_BYTES {
        return Done::reply(no(
            tag,
            Some(code("LIMIT")),
            &format!("{what}: the pattern is longer than {MAX_PATTERN_BYTES} bytes"),
        ));
    }
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

/// Longest LIST/LSUB pattern, reference included, in bytes. Mailbox names here are short
/// (`Domains/<domain>` at most 255 bytes after the prefix); a longer pattern can only be a
/// mistake or an attack, and is answered NO [LIMIT].
pub(crate) const MAX_PATTERN_BYTES: usize = 1024;

/// RFC 3501 LIST matching: `*` matches anything, `%` anything but the delimiter. INBOX is
/// case-insensitive.
///
/// Runs the pattern as an automaton over the name, all positions at once: time is at most
/// pattern length × name length, whatever the wildcards (a backtracking matcher is
/// exponential in the number of `*`).
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let fold = name == "INBOX";
    let pattern = collapse_wildcards(pattern.as_bytes());
    let delimiter = DELIMITER as u8;
    // active[i]: the name read so far can be matched by pattern[..i].
    let mut active = vec![false; pattern.len() + 1];
    let mut next = vec![false; pattern.len() + 1];
    active[0] = true;
    close_over_wildcards(&pattern, &mut active);
    for &c in name.as_bytes() {
        next.iter_mut().for_each(|a| *a = false);
        for (i, &p) in pattern.iter().enumerate() {
            if !active[i] {
                continue;
            }
            match p {
                b'*' => next[i] = true,
                b'%' if c != delimiter => next[i] = true,
                b'%' => {}
                _ if p == c || (fold && p.eq_ignore_ascii_case(&c)) => next[i + 1] = true,
                _ => {}
            }
        }
        close_over_wildcards(&pattern, &mut next);
        if !next.iter().any(|a| *a) {
            return false;
        }
        std::mem::swap(&mut active, &mut next);
    }
    active[pattern.len()]
}

/// A wildcard may match nothing: whatever reaches it also reaches the position after it.
fn close_over_wildcards(pattern: &[u8], active: &mut [bool]) {
    for (i, p) in pattern.iter().enumerate() {
        if active[i] && matches!(p, b'*' | b'%') {
            active[i + 1] = true;
        }
    }
}

/// Runs of wildcards as one: a run with a `*` matches what `*` does, a run of `%` what `%`
/// does.
fn collapse_wildcards(pattern: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(pattern.len());
    for &p in pattern {
        match (out.last_mut(), p) {
            (Some(last @ (b'*' | b'%')), b'*' | b'%') => {
                if p == b'*' {
                    *last = b'*';
                }
            }
            _ => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::matches;

    /// The matcher this one replaced (exponential in the number of `*`), as the reference
    /// for what every pattern means.
    fn backtracking(pattern: &str, name: &str) -> bool {
        fn go(p: &[u8], n: &[u8], fold: bool) -> bool {
            match p.split_first() {
                None => n.is_empty(),
                Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..], fold)),
                Some((b'%', rest)) => {
                    let stop = n.iter().position(|b| *b == b'/').unwrap_or(n.len());
                    (0..=stop).any(|i| go(rest, &n[i..], fold))
                }
                Some((c, rest)) => match n.split_first() {
                    Some((d, nrest)) if c == d || (fold && c.eq_ignore_ascii_case(d)) => {
                        go(rest, nrest, fold)
                    }
                    _ => false,
                },
            }
        }
        go(pattern.as_bytes(), name.as_bytes(), name == "INBOX")
    }

    #[test]
    fn agrees_with_the_backtracking_matcher_on_every_short_pattern() {
        let names = [
            "INBOX",
            "Sent",
            "All",
            "Domains",
            "Domains/example.com",
            "Domains/a/b",
            "a/",
            "/a",
            "",
            "ab%",
        ];
        // Every pattern of up to 4 symbols over an alphabet that exercises each rule.
        let alphabet = ['*', '%', '/', 'a', 'b', 'S', 'i', 'N'];
        let mut patterns = vec![String::new()];
        let mut all = vec![String::new()];
        for _ in 0..4 {
            patterns = patterns
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            all.extend(patterns.iter().cloned());
        }
        all.extend(["inbox", "InBoX", "in*", "%/%", "Domains/%", "*/*", "D*/e*.com"].map(String::from));
        for pattern in &all {
            for name in names {
                assert_eq!(
                    matches(pattern, name),
                    backtracking(pattern, name),
                    "{pattern:?} against {name:?}"
                );
            }
        }
    }

    #[test]
    fn many_wildcards_cost_no_more_than_their_length() {
        // The backtracking matcher never finishes these; a hang must fail, not stall CI.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            many_wildcards();
            let _ = done.send(());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the matcher finished (or panicked: see above)");
    }

    fn many_wildcards() {
        let stars = format!("{}Z", "*".repeat(2000));
        assert!(!matches(&stars, "Domains/example.com"));
        assert!(matches(&stars, "Domains/example.coZ"));
        let alternating = format!("{}Z", "*%".repeat(1000));
        assert!(!matches(&alternating, "Domains/example.com"));
        let percents = format!("{}s", "%".repeat(2000));
        assert!(!matches(&percents, "Domains/example.com"));
        assert!(matches(&percents, "Domains"));
        let spread = "a*".repeat(500);
        assert!(!matches(&spread, &"a".repeat(499)));
        assert!(matches(&spread, &"a".repeat(500)));
    }

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
