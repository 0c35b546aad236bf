//! Address fields (From, To, Cc, …) read the way an ENVELOPE describes them (RFC 3501
//! §7.4.2): each mailbox as name, source route (adl), mailbox and host; a group as a start
//! marker holding its name, its members, and an end marker.
//!
//! mail-parser's address parser cannot give this: it keeps no source route (`<@route:u@d>`
//! comes out as the mailbox `@route:u`), merges comments into display names, and turns a
//! comment or a lone phrase into an address without mailbox or host, which an ENVELOPE can
//! only send as `(name NIL NIL NIL)`: a group end marker to every client. So these fields
//! are tokenized here by RFC 5322 §3.2 (atoms, quoted strings, comments, domain literals)
//! and read by §3.4 (mailboxes, angle addresses, groups) with the obsolete forms of §4.4
//! (source routes, empty list members). One pass over the tokens, no recursion: the work is
//! linear in the field's length whatever the sender wrote.
//!
//! Where the grammar does not fit the bytes, the reading follows Dovecot: a mailbox without
//! host gets the host `MISSING_DOMAIN`, a name without address the mailbox
//! `MISSING_MAILBOX`; a group left open is closed at the end of the field; a comment alone
//! is no address. Display names stay as written (encoded words included), unquoted.

use mail_parser::parsers::MessageStream;
use mail_parser::HeaderValue;

/// What Dovecot sends as the mailbox of a name without address (`"just a name"`, `<>`).
pub const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
/// What Dovecot sends as the host of a mailbox without domain (`MAILER-DAEMON`).
pub const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";

/// One element of an address list as ENVELOPE sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `name:` opening a group (RFC 3501: `(NIL NIL "name" NIL)`).
    GroupStart(Vec<u8>),
    /// A mailbox: display name, source route, local part, domain.
    Mailbox {
        name: Option<Vec<u8>>,
        adl: Option<Vec<u8>>,
        mailbox: Vec<u8>,
        host: Vec<u8>,
    },
    /// `;` closing a group (RFC 3501: `(NIL NIL NIL NIL)`).
    GroupEnd,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// An atom or dot-atom (anything up to white space or a special).
    Word(Vec<u8>),
    /// A quoted string's content, quoted pairs undone.
    Quoted(Vec<u8>),
    /// A domain literal, brackets included.
    Literal(Vec<u8>),
    /// A comment's content (nested parentheses kept as text).
    Comment(Vec<u8>),
    /// One of `< > : ; @ ,`.
    Special(u8),
}

impl Token {
    /// The token's text in a local part, domain or route (joined without spaces).
    fn text(&self) -> &[u8] {
        match self {
            Token::Word(t) | Token::Quoted(t) | Token::Literal(t) | Token::Comment(t) => t,
            Token::Special(c) => std::slice::from_ref(c),
        }
    }
}

/// The entries of an address field's (unfolded) value.
pub fn parse(value: &[u8]) -> Vec<Entry> {
    let tokens = tokenize(value);
    let mut out = Vec::new();
    let mut item = Item::default();
    let mut in_group = false;
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        i += 1;
        match token {
            Token::Special(b'<') => {
                let start = i;
                while tokens.get(i).is_some_and(|t| *t != Token::Special(b'>')) {
                    i += 1;
                }
                let inner: Vec<&Token> = tokens[start..i.min(tokens.len())]
                    .iter()
                    .filter(|t| !matches!(t, Token::Comment(_)))
                    .collect();
                i += 1;
                if !item.done {
                    out.push(angle_address(phrase(&item.tokens), &inner));
                    item.done = true;
                }
            }
            // RFC 5322 has no nested groups: a second `name:` inside a group is dropped.
            Token::Special(b':') if in_group || item.done => item.tokens.clear(),
            Token::Special(b':') => {
                out.push(Entry::GroupStart(phrase(&item.tokens).unwrap_or_default()));
                in_group = true;
                item = Item::default();
            }
            Token::Special(b',') => std::mem::take(&mut item).finish(&mut out),
            Token::Special(b';') => {
                std::mem::take(&mut item).finish(&mut out);
                if in_group {
                    out.push(Entry::GroupEnd);
                    in_group = false;
                }
            }
            // A stray `>`.
            Token::Special(_) if *token != Token::Special(b'@') => {}
            Token::Comment(c) => item.comment = Some(c.clone()),
            other => item.tokens.push(other.clone()),
        }
    }
    item.finish(&mut out);
    if in_group {
        out.push(Entry::GroupEnd);
    }
    out
}

/// An address field's value as the SEARCH keys FROM, TO, CC and BCC compare it: the
/// field's ENVELOPE structure (RFC 3501 §6.4.4: "the envelope structure's FROM field"),
/// written out as `name <mailbox@host>` or `mailbox@host`, a group as `name: …;`, names
/// RFC 2047-decoded, members separated by `, `. Comments, quoting and white space as
/// written are gone, so `<user (comment)@ (comment) example.org>` is found as
/// `user@example.org`; a comment that names an address (`user@host (Name)`) is its name.
/// Placeholders for missing parts are left out. Dovecot writes the address lists it searches
/// the same way.
pub fn search_form(value: &[u8]) -> String {
    let mut out = String::new();
    let mut first_in_list = true;
    for entry in parse(value) {
        match entry {
            Entry::GroupStart(name) => {
                if !first_in_list {
                    out.push_str(", ");
                }
                out.push_str(&decoded(&name));
                out.push_str(": ");
                first_in_list = true;
            }
            Entry::GroupEnd => {
                out.push(';');
                first_in_list = false;
            }
            Entry::Mailbox {
                name,
                adl,
                mailbox,
                host,
            } => {
                if !first_in_list {
                    out.push_str(", ");
                }
                first_in_list = false;
                let part = |b: &[u8], missing: &[u8]| {
                    (b != missing).then(|| String::from_utf8_lossy(b).into_owned())
                };
                let mut spec = part(&mailbox, MISSING_MAILBOX).unwrap_or_default();
                if let Some(host) = part(&host, MISSING_DOMAIN) {
                    spec.push('@');
                    spec.push_str(&host);
                }
                if let Some(adl) = adl {
                    spec = format!("{}:{spec}", String::from_utf8_lossy(&adl));
                }
                match name.map(|n| decoded(&n)).filter(|n| !n.trim().is_empty()) {
                    Some(name) if spec.is_empty() => out.push_str(name.trim()),
                    Some(name) => {
                        out.push_str(name.trim());
                        out.push_str(" <");
                        out.push_str(&spec);
                        out.push('>');
                    }
                    None => out.push_str(&spec),
                }
            }
        }
    }
    out
}

/// A display name with its RFC 2047 encoded words decoded (mail-parser's unstructured
/// field parser, which wants the field's line break).
pub fn decoded(name: &[u8]) -> String {
    let mut line = name.to_vec();
    line.push(b'\n');
    match MessageStream::new(&line).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        _ => String::from_utf8_lossy(name).into_owned(),
    }
}

/// The tokens of one list member so far.
#[derive(Default)]
struct Item {
    tokens: Vec<Token>,
    /// The last comment: the display name of `user@host (Name)` (the RFC 822 habit that
    /// Dovecot and mail-parser also read so).
    comment: Option<Vec<u8>>,
    /// An angle address was taken from this member already; the rest of it is ignored.
    done: bool,
}

impl Item {
    /// The member as a bare addr-spec (or what is left of one), if it is anything.
    fn finish(self, out: &mut Vec<Entry>) {
        if self.done || self.tokens.is_empty() {
            return;
        }
        let at = self.tokens.iter().position(|t| *t == Token::Special(b'@'));
        out.push(match at {
            Some(at) => Entry::Mailbox {
                name: self.comment,
                adl: None,
                mailbox: or_missing(joined(&self.tokens[..at]), MISSING_MAILBOX),
                host: or_missing(joined(&self.tokens[at + 1..]), MISSING_DOMAIN),
            },
            // One word: a local part without domain (`MAILER-DAEMON`).
            None if matches!(self.tokens.as_slice(), [Token::Word(_)]) => Entry::Mailbox {
                name: self.comment,
                adl: None,
                mailbox: joined(&self.tokens),
                host: MISSING_DOMAIN.to_vec(),
            },
            // A phrase without address (`"just a name"`).
            None => Entry::Mailbox {
                name: phrase(&self.tokens),
                adl: None,
                mailbox: MISSING_MAILBOX.to_vec(),
                host: MISSING_DOMAIN.to_vec(),
            },
        });
    }
}

/// `[display-name] "<" [obs-route] addr-spec ">"`; `inner` is what was between the brackets.
fn angle_address(name: Option<Vec<u8>>, inner: &[&Token]) -> Entry {
    // obs-route = obs-domain-list ":" (RFC 5322 §4.4), e.g. `@a.example,@b.example:`.
    let (adl, spec) = match inner.first() {
        Some(Token::Special(b'@')) => match inner.iter().position(|t| **t == Token::Special(b':')) {
            Some(colon) => (Some(joined_refs(&inner[..colon])), &inner[colon + 1..]),
            None => (None, inner),
        },
        _ => (None, inner),
    };
    let at = spec.iter().position(|t| **t == Token::Special(b'@'));
    let (local, domain) = match at {
        Some(at) => (joined_refs(&spec[..at]), joined_refs(&spec[at + 1..])),
        None => (joined_refs(spec), Vec::new()),
    };
    Entry::Mailbox {
        name,
        adl: adl.filter(|a| !a.is_empty()),
        mailbox: or_missing(local, MISSING_MAILBOX),
        host: or_missing(domain, MISSING_DOMAIN),
    }
}

fn or_missing(value: Vec<u8>, missing: &[u8]) -> Vec<u8> {
    if value.is_empty() {
        missing.to_vec()
    } else {
        value
    }
}

/// Tokens of an addr-spec or route, joined without the white space between them
/// (`b @ c . d` is `b@c.d`).
fn joined(tokens: &[Token]) -> Vec<u8> {
    tokens.iter().flat_map(|t| t.text().iter().copied()).collect()
}

fn joined_refs(tokens: &[&Token]) -> Vec<u8> {
    tokens.iter().flat_map(|t| t.text().iter().copied()).collect()
}

/// A display name: the words and quoted strings of a phrase, one space between them.
fn phrase(tokens: &[Token]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for t in tokens {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(t.text());
    }
    Some(out).filter(|n| !n.is_empty())
}

/// RFC 5322 §3.2 lexical tokens of `value`; comments are tokens (a display name may come
/// from one), white space is not. Unterminated quotes, comments and literals run to the end.
fn tokenize(value: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = value.get(i) {
        match c {
            b' ' | b'\t' | b'\r' | b'\n' | b')' | b']' => i += 1,
            b'<' | b'>' | b':' | b';' | b'@' | b',' => {
                out.push(Token::Special(c));
                i += 1;
            }
            b'"' => {
                let (text, next) = delimited(value, i + 1, b'"', None);
                out.push(Token::Quoted(text));
                i = next;
            }
            b'(' => {
                let (text, next) = delimited(value, i + 1, b')', Some(b'('));
                out.push(Token::Comment(text));
                i = next;
            }
            b'[' => {
                let (mut text, next) = delimited(value, i + 1, b']', None);
                text.insert(0, b'[');
                text.push(b']');
                out.push(Token::Literal(text));
                i = next;
            }
            _ => {
                let start = i;
                while value.get(i).is_some_and(|b| !is_delimiter(*b)) {
                    i += 1;
                }
                out.push(Token::Word(value[start..i].to_vec()));
            }
        }
    }
    out
}

/// Ends an atom: white space and the specials of RFC 5322 §3.2.3 other than `.`.
fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t'
            | b'\r'
            | b'\n'
            | b'('
            | b')'
            | b'<'
            | b'>'
            | b'['
            | b']'
            | b':'
            | b';'
            | b'@'
            | b','
            | b'"'
    )
}

/// The text from `start` up to the closing `close` (quoted pairs undone, line breaks of
/// folding dropped) and the index after it. With `open`, nesting is counted (comments).
fn delimited(value: &[u8], start: usize, close: u8, open: Option<u8>) -> (Vec<u8>, usize) {
    let mut text = Vec::new();
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&c) = value.get(i) {
        i += 1;
        match c {
            b'\\' => {
                if let Some(&next) = value.get(i) {
                    text.push(next);
                    i += 1;
                }
            }
            b'\r' | b'\n' => {}
            _ if Some(c) == open => {
                depth += 1;
                text.push(c);
            }
            _ if c == close && depth == 0 => return (text, i),
            _ if c == close => {
                depth -= 1;
                text.push(c);
            }
            _ => text.push(c),
        }
    }
    (text, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(name: Option<&str>, adl: Option<&str>, mailbox: &str, host: &str) -> Entry {
        Entry::Mailbox {
            name: name.map(|n| n.as_bytes().to_vec()),
            adl: adl.map(|a| a.as_bytes().to_vec()),
            mailbox: mailbox.as_bytes().to_vec(),
            host: host.as_bytes().to_vec(),
        }
    }

    fn start(name: &str) -> Entry {
        Entry::GroupStart(name.as_bytes().to_vec())
    }

    fn p(value: &str) -> Vec<Entry> {
        parse(value.as_bytes())
    }

    #[test]
    fn mailboxes_routes_and_names() {
        assert_eq!(p("a@b.c"), vec![mailbox(None, None, "a", "b.c")]);
        assert_eq!(
            p("<@route:user@domain>"),
            vec![mailbox(None, Some("@route"), "user", "domain")]
        );
        assert_eq!(
            p("Name <@r1,@r2:u@d>, < @r : u@d >"),
            vec![
                mailbox(Some("Name"), Some("@r1,@r2"), "u", "d"),
                mailbox(None, Some("@r"), "u", "d")
            ]
        );
        // Comments are no part of a display name; with no phrase, the last one is the name.
        assert_eq!(
            p("\"Quoted, Name\" <q@x> (comment), Plain  (c) Name <p@x>"),
            vec![
                mailbox(Some("Quoted, Name"), None, "q", "x"),
                mailbox(Some("Plain Name"), None, "p", "x")
            ]
        );
        assert_eq!(
            p("a@b (c1) (c2), (c (nested)) x@y"),
            vec![
                mailbox(Some("c2"), None, "a", "b"),
                mailbox(Some("c (nested)"), None, "x", "y")
            ]
        );
        // Encoded words stay as written; quoted pairs are undone; white space in an
        // addr-spec goes; quoted local parts and domain literals keep their text.
        assert_eq!(
            p("=?utf-8?q?J=C3=BCrgen?= =?utf-8?q?_G?= <j@x>, \"q\\\"uote\" <a@b>"),
            vec![
                mailbox(Some("=?utf-8?q?J=C3=BCrgen?= =?utf-8?q?_G?="), None, "j", "x"),
                mailbox(Some("q\"uote"), None, "a", "b")
            ]
        );
        assert_eq!(
            p("\"john doe\"@example.com, b @ c . d, a@[1.2.3.4]"),
            vec![
                mailbox(None, None, "john doe", "example.com"),
                mailbox(None, None, "b", "c.d"),
                mailbox(None, None, "a", "[1.2.3.4]")
            ]
        );
    }

    #[test]
    fn groups() {
        // An empty group is its two markers; a comment in it is no member.
        assert_eq!(p("group2: (foo) ;"), vec![start("group2"), Entry::GroupEnd]);
        assert_eq!(
            p("undisclosed-recipients:;"),
            vec![start("undisclosed-recipients"), Entry::GroupEnd]
        );
        assert_eq!(
            p("g1: a@b, \"N\" <c@d>;, e@f"),
            vec![
                start("g1"),
                mailbox(None, None, "a", "b"),
                mailbox(Some("N"), None, "c", "d"),
                Entry::GroupEnd,
                mailbox(None, None, "e", "f")
            ]
        );
        // Unterminated: closed at the end. Nested: the inner name is dropped.
        assert_eq!(
            p("unterminated: a@b, c@d"),
            vec![
                start("unterminated"),
                mailbox(None, None, "a", "b"),
                mailbox(None, None, "c", "d"),
                Entry::GroupEnd
            ]
        );
        assert_eq!(
            p("outer: inner: a@b; c@d;"),
            vec![
                start("outer"),
                mailbox(None, None, "a", "b"),
                Entry::GroupEnd,
                mailbox(None, None, "c", "d")
            ]
        );
        assert_eq!(
            p("x:;, y:;"),
            vec![start("x"), Entry::GroupEnd, start("y"), Entry::GroupEnd]
        );
    }

    #[test]
    fn garbage_never_looks_like_a_group_marker() {
        assert_eq!(p(""), vec![]);
        assert_eq!(p("(only a comment)"), vec![]);
        assert_eq!(p(" , ,;; >"), vec![]);
        assert_eq!(
            p("garbage"),
            vec![mailbox(None, None, "garbage", "MISSING_DOMAIN")]
        );
        assert_eq!(
            p("\"just a name\""),
            vec![mailbox(
                Some("just a name"),
                None,
                "MISSING_MAILBOX",
                "MISSING_DOMAIN"
            )]
        );
        assert_eq!(
            p("<>"),
            vec![mailbox(None, None, "MISSING_MAILBOX", "MISSING_DOMAIN")]
        );
        assert_eq!(p("@@@"), vec![mailbox(None, None, "MISSING_MAILBOX", "@@")]);
        assert_eq!(p("<a@b"), vec![mailbox(None, None, "a", "b")]);
        assert_eq!(
            p("\"unterminated <a@b>"),
            vec![mailbox(
                Some("unterminated <a@b>"),
                None,
                "MISSING_MAILBOX",
                "MISSING_DOMAIN"
            )]
        );
        for value in [
            "(((",
            "\"",
            "[",
            "<<<>>>",
            "::::",
            "\\",
            "a@b@c@",
            ":;:;:;",
            "\u{0}\u{7f}",
        ] {
            for e in p(value) {
                if let Entry::Mailbox { mailbox, host, .. } = e {
                    assert!(!mailbox.is_empty() && !host.is_empty(), "{value:?}");
                }
            }
        }
    }

    #[test]
    fn search_form_is_the_envelope_written_out() {
        let f = |v: &str| search_form(v.as_bytes());
        assert_eq!(f("<user (c)@ (c) example.org>"), "user@example.org");
        assert_eq!(f("user@example.org (Real Name)"), "Real Name <user@example.org>");
        assert_eq!(f("\"Quoted, Name\" <q@x>, p@x"), "Quoted, Name <q@x>, p@x");
        assert_eq!(f("=?utf-8?q?J=C3=BCrgen?= <j@x>"), "Jürgen <j@x>");
        assert_eq!(f("<@route:u@d>"), "@route:u@d");
        assert_eq!(f("g: a@b, c@d;, e@f, empty:;"), "g: a@b, c@d;, e@f, empty: ;");
        // Placeholders for what is missing are not written.
        assert_eq!(f("garbage, \"just a name\""), "garbage, just a name");
        assert_eq!(f(""), "");
    }
}
