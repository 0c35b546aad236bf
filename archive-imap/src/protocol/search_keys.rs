//! SEARCH, SORT and THREAD commands whose keys nest deeper than imap-codec parses. imap-codec
//! (2.0.0-alpha.10, its newest release) stops at a fixed 9 levels, so a client OR-ing ten
//! addresses (`OR FROM a OR FROM b OR …`, which nests to the right) is refused there. When
//! imap-codec refuses a command, [`reparse`] tries again: the structure (OR, NOT,
//! parentheses) is parsed here, iteratively and at most [`MAX_KEY_DEPTH`] levels deep;
//! everything else (the command up to its keys, and each single key with its arguments) is
//! still parsed by imap-codec, one piece at a time.

use imap_codec::decode::Decoder;
use imap_codec::CommandCodec;
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::{Tag, Vec1};
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::IntoStatic;

use crate::command::MAX_KEY_DEPTH;

/// What [`reparse`] made of a message imap-codec refused.
#[derive(Debug)]
pub(crate) enum Reparsed {
    /// Not a SEARCH, SORT or THREAD this understands either: imap-codec's refusal stands.
    NotOurs,
    /// The command, parsed.
    Command(Command<'static>),
    /// Keys nested deeper than [`MAX_KEY_DEPTH`]: answer BAD with `why`.
    TooDeep { tag: Tag<'static>, why: String },
}

/// One lexical token of a command line; `start..end` are its bytes in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An atom, a number, a sequence set: anything up to a space, parenthesis or line end.
    Atom,
    /// A quoted string.
    Quoted,
    /// A literal `{n}` or `{n+}` with its bytes.
    Literal,
    Open,
    Close,
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// Splits a whole command message (ending in CRLF) into tokens; `None` if it is not made of
/// IMAP tokens separated by single spaces, or holds a literal longer than `max_literal`.
fn tokens(message: &[u8], max_literal: usize) -> Option<Vec<Token>> {
    let body = message.strip_suffix(b"\r\n")?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let start = i;
        let kind = match body[i] {
            b' ' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Kind::Open
            }
            b')' => {
                i += 1;
                Kind::Close
            }
            b'"' => {
                i += 1;
                loop {
                    match body.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        b'\r' | b'\n' => return None,
                        _ => i += 1,
                    }
                }
                i += 1;
                Kind::Quoted
            }
            b'{' => {
                let close = i + body[i..].iter().position(|b| *b == b'}')?;
                let digits = body[i + 1..close]
                    .strip_suffix(b"+")
                    .unwrap_or(&body[i + 1..close]);
                let length: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
                // imap-next refuses such a literal, and a non-synchronizing one reaches
                // here as a refused (poisoned) message: the refusal stands.
                if length > max_literal {
                    return None;
                }
                if body.get(close + 1..close + 3)? != b"\r\n" {
                    return None;
                }
                i = close + 3 + length;
                if i > body.len() {
                    return None;
                }
                Kind::Literal
            }
            _ => {
                while i < body.len() && !matches!(body[i], b' ' | b'(' | b')' | b'\r' | b'\n') {
                    i += 1;
                }
                if i == start {
                    return None;
                }
                Kind::Atom
            }
        };
        out.push(Token { kind, start, end: i });
    }
    Some(out)
}

/// How many arguments a search key takes (`None`: not a key known here).
fn arity(keyword: &[u8]) -> Option<usize> {
    let upper = keyword.to_ascii_uppercase();
    Some(match upper.as_slice() {
        b"ALL" | b"ANSWERED" | b"DELETED" | b"DRAFT" | b"FLAGGED" | b"NEW" | b"OLD" | b"RECENT" | b"SEEN"
        | b"UNANSWERED" | b"UNDELETED" | b"UNDRAFT" | b"UNFLAGGED" | b"UNSEEN" => 0,
        b"BCC" | b"BEFORE" | b"BODY" | b"CC" | b"FROM" | b"KEYWORD" | b"LARGER" | b"ON" | b"SENTBEFORE"
        | b"SENTON" | b"SENTSINCE" | b"SINCE" | b"SMALLER" | b"SUBJECT" | b"TEXT" | b"TO" | b"UID"
        | b"UNKEYWORD" | b"OLDER" | b"YOUNGER" => 1,
        b"HEADER" => 2,
        // A sequence set.
        [b'0'..=b'9' | b'*' | b'$', ..] => 0,
        _ => return None,
    })
}

/// Decodes a whole command with imap-codec.
fn decode(bytes: &[u8]) -> Option<Command<'static>> {
    match CommandCodec::default().decode(bytes) {
        Ok(([], command)) => Some(command.into_static()),
        _ => None,
    }
}

/// One search key (keyword and arguments, `bytes`) as imap-codec parses it.
fn leaf(bytes: &[u8]) -> Option<SearchKey<'static>> {
    let mut line = Vec::with_capacity(bytes.len() + 11);
    line.extend_from_slice(b"0 SEARCH ");
    line.extend_from_slice(bytes);
    line.extend_from_slice(b"\r\n");
    match decode(&line)?.body {
        CommandBody::Search { criteria, .. } => criteria.into_iter().next(),
        _ => None,
    }
}

/// A search key waiting for its operands.
enum Frame {
    Or(Option<SearchKey<'static>>),
    Not,
    Group(Vec<SearchKey<'static>>),
}

/// The keys of `tokens` (all of them), parsed iteratively: `Err(true)` if they nest deeper
/// than [`MAX_KEY_DEPTH`], `Err(false)` if they are not search keys.
fn keys(message: &[u8], tokens: &[Token]) -> Result<Vec1<SearchKey<'static>>, bool> {
    let mut top: Vec<SearchKey<'static>> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        let text = &message[t.start..t.end];
        i += 1;
        let mut done = match t.kind {
            Kind::Atom if text.eq_ignore_ascii_case(b"OR") || text.eq_ignore_ascii_case(b"NOT") => {
                if stack.len() >= MAX_KEY_DEPTH {
                    return Err(true);
                }
                stack.push(if text.len() == 2 {
                    Frame::Or(None)
                } else {
                    Frame::Not
                });
                continue;
            }
            Kind::Open => {
                if stack.len() >= MAX_KEY_DEPTH {
                    return Err(true);
                }
                stack.push(Frame::Group(Vec::new()));
                continue;
            }
            Kind::Close => match stack.pop() {
                Some(Frame::Group(keys)) => SearchKey::And(Vec1::try_from(keys).map_err(|_| false)?),
                _ => return Err(false),
            },
            Kind::Atom => {
                let n = arity(text).ok_or(false)?;
                let args = tokens.get(i..i + n).ok_or(false)?;
                if args.iter().any(|a| matches!(a.kind, Kind::Open | Kind::Close)) {
                    return Err(false);
                }
                let end = args.last().map_or(t.end, |a| a.end);
                i += n;
                leaf(&message[t.start..end]).ok_or(false)?
            }
            Kind::Quoted | Kind::Literal => return Err(false),
        };
        // Hand the finished key to what waits for it, finishing those it completes.
        loop {
            match stack.last_mut() {
                None => {
                    top.push(done);
                    break;
                }
                Some(Frame::Group(keys)) => {
                    keys.push(done);
                    break;
                }
                Some(Frame::Or(first @ None)) => {
                    *first = Some(done);
                    break;
                }
                Some(Frame::Or(Some(_))) | Some(Frame::Not) => {
                    done = match stack.pop() {
                        Some(Frame::Or(Some(first))) => SearchKey::Or(Box::new(first), Box::new(done)),
                        _ => SearchKey::Not(Box::new(done)),
                    };
                }
            }
        }
    }
    if !stack.is_empty() {
        return Err(false);
    }
    Vec1::try_from(top).map_err(|_| false)
}

/// Parses a `[UID] SEARCH`, `[UID] SORT` or `[UID] THREAD` command that imap-codec refused
/// (see the module documentation). A message with a literal longer than `max_literal` stays
/// refused: imap-next refused it for that (RFC 7888 non-synchronizing literals cannot be
/// refused before they arrive, so imap-next lets them arrive and then refuses the message).
pub(crate) fn reparse(message: &[u8], max_literal: usize) -> Reparsed {
    let Some(tokens) = tokens(message, max_literal) else {
        return Reparsed::NotOurs;
    };
    let word = |i: usize| {
        tokens
            .get(i)
            .map(|t| message[t.start..t.end].to_ascii_uppercase())
    };
    let mut at = 1;
    if word(at).as_deref() == Some(b"UID") {
        at += 1;
    }
    let skip = match word(at).as_deref() {
        // [CHARSET charset]
        Some(b"SEARCH") => {
            if word(at + 1).as_deref() == Some(b"CHARSET") {
                2
            } else {
                0
            }
        }
        // (criteria) charset
        Some(b"SORT") => match tokens[at + 1..].iter().position(|t| t.kind == Kind::Close) {
            Some(close) => close + 2,
            None => return Reparsed::NotOurs,
        },
        // algorithm charset
        Some(b"THREAD") => 2,
        _ => return Reparsed::NotOurs,
    };
    let first_key = at + 1 + skip;
    let Some(start) = tokens.get(first_key).map(|t| t.start) else {
        return Reparsed::NotOurs;
    };
    // The command up to its keys, as imap-codec reads it (with a stand-in key).
    let mut head = message[..start].to_vec();
    head.extend_from_slice(b"ALL\r\n");
    let Some(mut command) = decode(&head) else {
        return Reparsed::NotOurs;
    };
    let parsed = match keys(message, &tokens[first_key..]) {
        Ok(k) => k,
        Err(true) => {
            return Reparsed::TooDeep {
                tag: command.tag,
                why: format!("search keys nested deeper than {MAX_KEY_DEPTH} levels (NOT, OR, parentheses)"),
            }
        }
        Err(false) => return Reparsed::NotOurs,
    };
    match &mut command.body {
        CommandBody::Search { criteria, .. } => *criteria = parsed,
        CommandBody::Sort { search_criteria, .. } | CommandBody::Thread { search_criteria, .. } => {
            *search_criteria = parsed
        }
        _ => return Reparsed::NotOurs,
    }
    Reparsed::Command(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(i: usize) -> String {
        format!("FROM a{i}@x.org")
    }

    /// `OR k0 OR k1 … OR k(n-1) kn`: n ORs, nested to the right.
    fn ors(n: usize) -> String {
        let mut s = String::new();
        for i in 0..n {
            s.push_str(&format!("OR {} ", from(i)));
        }
        s.push_str(&from(n));
        s
    }

    fn depth(key: &SearchKey<'_>) -> usize {
        match key {
            SearchKey::Or(a, b) => 1 + depth(a).max(depth(b)),
            SearchKey::Not(k) => 1 + depth(k),
            SearchKey::And(ks) => 1 + ks.as_ref().iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn deep_ors_parse_as_imap_codec_would_parse_shallow_ones() {
        // Where imap-codec still parses, the result is the same as imap-codec's.
        let line = format!("t1 UID SEARCH CHARSET UTF-8 {} UNSEEN\r\n", ors(5));
        let Reparsed::Command(ours) = reparse(line.as_bytes(), usize::MAX) else {
            panic!("not parsed")
        };
        assert_eq!(Some(ours), decode(line.as_bytes()));
        // Where it does not.
        let line = format!("t2 SEARCH {}\r\n", ors(100));
        assert!(decode(line.as_bytes()).is_none(), "imap-codec parses this now");
        let Reparsed::Command(command) = reparse(line.as_bytes(), usize::MAX) else {
            panic!("not parsed")
        };
        let CommandBody::Search { criteria, uid, .. } = command.body else {
            panic!("{command:?}")
        };
        assert!(!uid);
        assert_eq!(criteria.as_ref().len(), 1);
        assert_eq!(depth(&criteria.as_ref()[0]), 100);
    }

    #[test]
    fn sort_thread_literals_and_groups() {
        let line = format!(
            "s UID SORT (REVERSE DATE) UTF-8 {} (SUBJECT {{4}}\r\nkiwi NOT 1:*)\r\n",
            ors(20)
        );
        let Reparsed::Command(command) = reparse(line.as_bytes(), usize::MAX) else {
            panic!("not parsed")
        };
        let CommandBody::Sort {
            search_criteria,
            uid,
            sort_criteria,
            ..
        } = command.body
        else {
            panic!("{command:?}")
        };
        assert!(uid);
        assert_eq!(sort_criteria.as_ref().len(), 1);
        assert_eq!(search_criteria.as_ref().len(), 2);
        let line = format!("t THREAD REFERENCES US-ASCII {}\r\n", ors(30));
        assert!(matches!(
            reparse(line.as_bytes(), usize::MAX),
            Reparsed::Command(Command {
                body: CommandBody::Thread { .. },
                ..
            })
        ));
    }

    #[test]
    fn too_deep_is_refused_with_the_tag_and_garbage_is_not_ours() {
        let line = format!("deep SEARCH {}\r\n", ors(MAX_KEY_DEPTH + 1));
        match reparse(line.as_bytes(), usize::MAX) {
            Reparsed::TooDeep { tag, why } => {
                assert_eq!(tag.inner(), "deep");
                assert!(why.contains("nested deeper"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let nots = format!("n SEARCH {}ALL\r\n", "NOT ".repeat(25_000));
        assert!(matches!(
            reparse(nots.as_bytes(), usize::MAX),
            Reparsed::TooDeep { .. }
        ));
        let parens = format!("p SEARCH {}ALL{}\r\n", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(
            reparse(parens.as_bytes(), usize::MAX),
            Reparsed::TooDeep { .. }
        ));
        for line in [
            "x FETCH 1 (FLAGS)\r\n",
            "x SEARCH OR FROM a\r\n",
            "x SEARCH (FROM a\r\n",
            "x SEARCH FROM a)\r\n",
            "x SEARCH NOSUCHKEY\r\n",
            "x SEARCH FROM {10}\r\nab\r\n",
            "x SEARCH\r\n",
        ] {
            assert!(
                matches!(reparse(line.as_bytes(), usize::MAX), Reparsed::NotOurs),
                "{line}"
            );
        }
    }

    #[test]
    fn literals_over_the_limit_stay_refused() {
        let deep = format!("x SEARCH {}FROM {{5+}}\r\nabcde\r\n", "NOT ".repeat(12));
        assert!(matches!(reparse(deep.as_bytes(), 5), Reparsed::Command(_)));
        assert!(matches!(reparse(deep.as_bytes(), 4), Reparsed::NotOurs));
    }
}
