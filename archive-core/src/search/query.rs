//! The query language of docs/SEARCH.md: one parser for the CLI, IMAP and the web, so every
//! front door reads a query the same way.
//!
//! ```text
//! query    := or
//! or       := and ( "OR" and )*
//! and      := unary ( ["AND"] unary )*          juxtaposition means AND
//! unary    := ( "NOT" | "-" ) unary | primary
//! primary  := "(" or ")" | OPERATOR ":" value | WORD | "PHRASE"
//! ```
//!
//! Errors name the 1-based character position and the problem, e.g.
//! `position 8: expected a date YYYY-MM-DD after 'before:'`.
//!
//! Queries come from the network (IMAP, the web), so their shape is bounded: at most
//! [`MAX_DEPTH`] levels of parentheses and NOT, and at most [`MAX_TERMS`] terms. The parser
//! stops at the first level or term beyond, so no deeper tree is ever built (walking or
//! dropping one would recurse once per level).

use jiff::civil::Date;

mod error;
pub use error::{ExpectedValue, QueryError, QueryErrorKind, QueryProblem, QueryToken};

/// Most levels of nesting a query may have: each `(` and each `NOT`/`-` is one level.
pub const MAX_DEPTH: usize = 64;

/// Most terms (words, phrases, operators with their values) one query may have.
pub const MAX_TERMS: usize = 1000;

/// A parsed query. Build one with [`Query::parse`] or [`Query::from_node`]; run it with
/// `Store::search`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    root: Node,
}

/// One node of a parsed query.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A free word: any text field (stemmed where the field is).
    Word(String),
    /// A free `"phrase"`: the words in this order in one text field.
    Phrase(String),
    /// `from:` `to:` `cc:` `bcc:` `subject:` `body:` `filename:` `domain:` `fromdomain:`
    /// `msgid:`.
    Field(TextField, Value),
    /// `before:` `after:` `on:` a day (UTC).
    Date(DateOp, Date),
    /// `larger:` (size > n bytes) or `smaller:` (size < n bytes).
    Size(SizeOp, u64),
    /// `has:attachment`.
    HasAttachment,
    /// Candidates for a substring of some text of the message: messages whose indexed words
    /// could hold it (`substring`). A superset: the front door that asks (IMAP SEARCH) reads
    /// each candidate and checks the substring itself. Not part of the query language.
    Contains(Within, String),
    /// All of these.
    And(Vec<Node>),
    /// Any of these.
    Or(Vec<Node>),
    /// Not this (`NOT x` or `-x`).
    Not(Box<Node>),
}

/// The text a [`Node::Contains`] substring is looked for in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Within {
    /// The body text and the whole header (IMAP TEXT).
    Text,
    /// The body text (IMAP BODY).
    Body,
    /// The header, any field (IMAP SUBJECT, FROM, HEADER, …).
    Header,
}

/// The value of a text operator.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// A bare word (`from:alice`).
    Word(String),
    /// A quoted phrase (`subject:"quarterly report"`).
    Phrase(String),
}

impl Value {
    /// The text of the value, without quotes.
    pub fn text(&self) -> &str {
        match self {
            Value::Word(s) | Value::Phrase(s) => s,
        }
    }
}

/// The text operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextField {
    /// Header From/Sender (names and addresses), envelope sender (full addresses only).
    From,
    /// Header To (names and addresses), envelope recipients (full addresses only).
    To,
    /// Header Cc.
    Cc,
    /// Header Bcc and envelope recipients named in no header (blind copies).
    Bcc,
    /// Subject (stemmed; phrases exact).
    Subject,
    /// Body text and the text of text/* attachments (stemmed; phrases exact).
    Body,
    /// Attachment file names (and MIME types, exactly).
    Filename,
    /// Any sender or recipient address in this domain or its subdomains.
    Domain,
    /// The sender's domain (first From, else Sender, address), exactly: a sender-domain facet.
    FromDomain,
    /// Message-ID, In-Reply-To or References.
    MsgId,
}

impl TextField {
    fn from_name(name: &str) -> Option<TextField> {
        Some(match name {
            "from" => TextField::From,
            "to" => TextField::To,
            "cc" => TextField::Cc,
            "bcc" => TextField::Bcc,
            "subject" => TextField::Subject,
            "body" => TextField::Body,
            "filename" => TextField::Filename,
            "domain" => TextField::Domain,
            "fromdomain" => TextField::FromDomain,
            "msgid" => TextField::MsgId,
            _ => return None,
        })
    }
}

/// Day comparisons; all days are UTC days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DateOp {
    /// Strictly before the day: date < day 00:00:00 UTC.
    Before,
    /// Strictly after the day: date ≥ the next day 00:00:00 UTC.
    After,
    /// During the day.
    On,
}

/// Size comparisons (strict, as IMAP LARGER/SMALLER).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SizeOp {
    /// size > n
    Larger,
    /// size < n
    Smaller,
}

impl std::error::Error for QueryError {}

impl From<QueryError> for crate::Error {
    fn from(e: QueryError) -> Self {
        crate::Error::Query(e)
    }
}

/// The operators of the language, as an unknown operator's message lists them.
pub const OPERATORS: &str = "from: to: cc: bcc: subject: body: filename: domain: fromdomain: msgid: before: \
after: on: larger: smaller: has:";

impl Query {
    /// Parses a query; see docs/SEARCH.md for the language.
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            at: 0,
            end: text.chars().count() + 1,
            depth: 0,
            terms: 0,
        };
        if p.tokens.is_empty() {
            return err(1, QueryProblem::Empty);
        }
        let root = p.or()?;
        if let Some(t) = p.peek() {
            let problem = match t.kind {
                Tok::Close => QueryProblem::UnmatchedClose,
                _ => QueryProblem::Unexpected(t.describe()),
            };
            return err(t.pos, problem);
        }
        Ok(Query { root })
    }

    /// A query of `root` as built by a front door that speaks another syntax (IMAP SEARCH
    /// keys), held to the same bounds as a parsed one ([`MAX_DEPTH`], [`MAX_TERMS`]). The
    /// check walks the tree without recursion; positions in its errors are 0.
    pub fn from_node(root: Node) -> Result<Query, QueryError> {
        let mut terms = 0usize;
        // (node, its depth): And/Or do not nest the way '(' does, Not does.
        let mut stack: Vec<(&Node, usize)> = vec![(&root, 0)];
        while let Some((node, depth)) = stack.pop() {
            match node {
                Node::And(parts) | Node::Or(parts) => {
                    if depth >= MAX_DEPTH {
                        return Err(too_deep(0));
                    }
                    stack.extend(parts.iter().map(|p| (p, depth + 1)));
                }
                Node::Not(inner) => {
                    if depth >= MAX_DEPTH {
                        return Err(too_deep(0));
                    }
                    stack.push((inner, depth + 1));
                }
                _ => {
                    terms += 1;
                    if terms > MAX_TERMS {
                        return Err(too_many_terms(0));
                    }
                }
            }
        }
        if matches!(&root, Node::And(p) | Node::Or(p) if p.is_empty()) {
            return err(0, QueryProblem::Empty);
        }
        Ok(Query { root })
    }

    /// The root of the parsed query.
    pub fn root(&self) -> &Node {
        &self.root
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    Minus,
    Word(String),
    Phrase(String),
    /// An operator with its value already attached.
    Op(Node),
}

#[derive(Clone, Debug)]
struct Token {
    pos: usize,
    kind: Tok,
}

impl Token {
    fn describe(&self) -> QueryToken {
        match &self.kind {
            Tok::Open => QueryToken::Open,
            Tok::Close => QueryToken::Close,
            Tok::And => QueryToken::And,
            Tok::Or => QueryToken::Or,
            Tok::Not => QueryToken::Not,
            Tok::Minus => QueryToken::Minus,
            Tok::Word(w) => QueryToken::Word(w.clone()),
            Tok::Phrase(p) => QueryToken::Phrase(p.clone()),
            Tok::Op(_) => QueryToken::Operator,
        }
    }
}

fn err<T>(position: usize, problem: QueryProblem) -> Result<T, QueryError> {
    Err(QueryError::new(position, problem))
}

fn too_deep(position: usize) -> QueryError {
    QueryError::new(position, QueryProblem::TooDeep { max: MAX_DEPTH })
}

fn too_many_terms(position: usize) -> QueryError {
    QueryError::new(position, QueryProblem::TooManyTerms { max: MAX_TERMS })
}

fn is_boundary(c: char) -> bool {
    c.is_whitespace() || c == '(' || c == ')' || c == '"'
}

/// Splits the text into tokens; operator values are parsed here so their errors point at
/// the value.
fn lex(text: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Token { pos, kind: Tok::Open });
            i += 1;
        } else if c == ')' {
            out.push(Token {
                pos,
                kind: Tok::Close,
            });
            i += 1;
        } else if c == '"' {
            let (phrase, next) = quoted(&chars, i)?;
            out.push(Token {
                pos,
                kind: Tok::Phrase(phrase),
            });
            i = next;
        } else if c == '-'
            && chars
                .get(i + 1)
                .is_some_and(|n| !is_boundary(*n) || *n == '"' || *n == '(')
        {
            out.push(Token {
                pos,
                kind: Tok::Minus,
            });
            i += 1;
        } else {
            let start = i;
            while i < chars.len() && !is_boundary(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let kind = match word.as_str() {
                "AND" => Tok::And,
                "OR" => Tok::Or,
                "NOT" => Tok::Not,
                _ => match operator_name(&word) {
                    Some(name) => {
                        let value_start = start + name.chars().count() + 1;
                        let (node, next) = operator(&chars, &name, pos, value_start)?;
                        i = next;
                        Tok::Op(node)
                    }
                    None => Tok::Word(word),
                },
            };
            out.push(Token { pos, kind });
        }
    }
    Ok(out)
}

/// The phrase starting at the quote `chars[at]`, and the index after its closing quote.
fn quoted(chars: &[char], at: usize) -> Result<(String, usize), QueryError> {
    let Some(len) = chars[at + 1..].iter().position(|c| *c == '"') else {
        return err(at + 1, QueryProblem::Unterminated);
    };
    let phrase: String = chars[at + 1..at + 1 + len].iter().collect();
    if phrase.trim().is_empty() {
        return err(at + 1, QueryProblem::EmptyPhrase);
    }
    Ok((phrase, at + len + 2))
}

/// `name` if `word` starts with `name:` and name is all letters (an operator or a mistyped
/// one); words like `10:30` or `http://x` stay words.
fn operator_name(word: &str) -> Option<String> {
    let (name, _) = word.split_once(':')?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// Parses the value of operator `name` (whose token starts at 1-based `pos`), starting at
/// `chars[at]`; returns the node and the index after the value.
fn operator(chars: &[char], name: &str, pos: usize, at: usize) -> Result<(Node, usize), QueryError> {
    let value_pos = at + 1;
    let (value, next) = match chars.get(at) {
        Some('"') => {
            let (phrase, next) = quoted(chars, at)?;
            (Value::Phrase(phrase), next)
        }
        Some(c) if !is_boundary(*c) => {
            let mut end = at;
            while end < chars.len() && !is_boundary(chars[end]) {
                end += 1;
            }
            (Value::Word(chars[at..end].iter().collect()), end)
        }
        _ => {
            let expected = match name {
                "before" | "after" | "on" => ExpectedValue::Date,
                "larger" | "smaller" => ExpectedValue::Size,
                "has" => ExpectedValue::Attachment,
                _ => ExpectedValue::Text,
            };
            let operator = name.to_string();
            return err(value_pos, QueryProblem::MissingValue { operator, expected });
        }
    };
    let node = match name {
        "before" | "after" | "on" => {
            let op = match name {
                "before" => DateOp::Before,
                "after" => DateOp::After,
                _ => DateOp::On,
            };
            Node::Date(op, parse_day(value.text(), name, value_pos)?)
        }
        "larger" | "smaller" => {
            let op = if name == "larger" {
                SizeOp::Larger
            } else {
                SizeOp::Smaller
            };
            Node::Size(op, parse_size(value.text(), name, value_pos)?)
        }
        "has" => {
            if value.text().eq_ignore_ascii_case("attachment") {
                Node::HasAttachment
            } else {
                let value = value.text().to_string();
                return err(value_pos, QueryProblem::UnknownHasValue { value });
            }
        }
        _ => match TextField::from_name(name) {
            Some(field) => Node::Field(field, value),
            None => {
                let name = name.to_string();
                return err(pos, QueryProblem::UnknownOperator { name });
            }
        },
    };
    Ok((node, next))
}

fn parse_day(text: &str, name: &str, pos: usize) -> Result<Date, QueryError> {
    let shape_ok = text.len() == 10
        && text.chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    let (operator, text_owned) = (name.to_string(), text.to_string());
    if !shape_ok {
        return err(
            pos,
            QueryProblem::NotADate {
                operator,
                text: text_owned,
            },
        );
    }
    let num = |r: std::ops::Range<usize>| text[r].parse::<i16>().unwrap_or(0);
    let (y, m, d) = (num(0..4), num(5..7) as i8, num(8..10) as i8);
    Date::new(y, m, d).or_else(|_| {
        err(
            pos,
            QueryProblem::InvalidDate {
                operator,
                text: text_owned,
            },
        )
    })
}

fn parse_size(text: &str, name: &str, pos: usize) -> Result<u64, QueryError> {
    let bad = || {
        QueryError::new(
            pos,
            QueryProblem::NotASize {
                operator: name.to_string(),
                text: text.to_string(),
            },
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match unit {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Position just past the end of the text, for "expected … at the end" errors.
    end: usize,
    /// Levels of '(' and NOT around the current token (at most [`MAX_DEPTH`]).
    depth: usize,
    /// Terms parsed so far (at most [`MAX_TERMS`]).
    terms: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn or(&mut self) -> Result<Node, QueryError> {
        let mut parts = vec![self.and()?];
        while let Some(t) = self.peek() {
            if t.kind != Tok::Or {
                break;
            }
            let pos = t.pos;
            self.at += 1;
            if self.starts_term().is_none() {
                return err(
                    self.here(),
                    QueryProblem::ExpectedTermAfter {
                        token: QueryToken::Or,
                        at: pos,
                    },
                );
            }
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Node::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Node, QueryError> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek().map(|t| (&t.kind, t.pos)) {
                Some((Tok::And, pos)) => {
                    self.at += 1;
                    if self.starts_term().is_none() {
                        return err(
                            self.here(),
                            QueryProblem::ExpectedTermAfter {
                                token: QueryToken::And,
                                at: pos,
                            },
                        );
                    }
                }
                Some((Tok::Or | Tok::Close, _)) | None => break,
                Some(_) => {}
            }
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Node::And(parts)
        })
    }

    /// The position of the next token if it can start a term.
    fn starts_term(&self) -> Option<usize> {
        self.peek()
            .filter(|t| !matches!(t.kind, Tok::And | Tok::Or | Tok::Close))
            .map(|t| t.pos)
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.pos)
    }

    fn unary(&mut self) -> Result<Node, QueryError> {
        let Some(t) = self.peek().cloned() else {
            return err(self.end, QueryProblem::ExpectedTermAtEnd);
        };
        match t.kind {
            Tok::Not | Tok::Minus => {
                self.at += 1;
                if self.starts_term().is_none() {
                    return err(
                        self.here(),
                        QueryProblem::ExpectedTermAfter {
                            token: t.describe(),
                            at: t.pos,
                        },
                    );
                }
                self.enter(t.pos)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Node::Not(Box::new(inner)))
            }
            _ => self.primary(),
        }
    }

    /// One level deeper (a '(' or NOT at `pos`), if the query may nest that deep.
    fn enter(&mut self, pos: usize) -> Result<(), QueryError> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep(pos));
        }
        self.depth += 1;
        Ok(())
    }

    /// Counts a term at `pos`, if the query may have one more.
    fn term(&mut self, pos: usize) -> Result<(), QueryError> {
        if self.terms >= MAX_TERMS {
            return Err(too_many_terms(pos));
        }
        self.terms += 1;
        Ok(())
    }

    fn primary(&mut self) -> Result<Node, QueryError> {
        let Some(t) = self.peek().cloned() else {
            return err(self.end, QueryProblem::ExpectedTermAtEnd);
        };
        if matches!(t.kind, Tok::Word(_) | Tok::Phrase(_) | Tok::Op(_)) {
            self.term(t.pos)?;
        }
        self.at += 1;
        match t.kind {
            Tok::Word(w) => Ok(Node::Word(w)),
            Tok::Phrase(p) => Ok(Node::Phrase(p)),
            Tok::Op(node) => Ok(node),
            Tok::Open => {
                if self.peek().is_some_and(|n| n.kind == Tok::Close) {
                    return err(self.here(), QueryProblem::EmptyParentheses);
                }
                self.enter(t.pos)?;
                let inner = self.or()?;
                self.depth -= 1;
                match self.peek() {
                    Some(c) if c.kind == Tok::Close => {
                        self.at += 1;
                        Ok(inner)
                    }
                    _ => err(self.here(), QueryProblem::Unclosed { open_at: t.pos }),
                }
            }
            Tok::Close => err(t.pos, QueryProblem::UnmatchedClose),
            Tok::And | Tok::Or => err(t.pos, QueryProblem::NeedsTermBefore(t.describe())),
            Tok::Not | Tok::Minus => unreachable_not(t.pos),
        }
    }
}

/// `unary` consumes NOT and '-' before `primary` sees them.
fn unreachable_not(pos: usize) -> Result<Node, QueryError> {
    err(pos, QueryProblem::Unexpected(QueryToken::Not))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Node {
        Query::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).root
    }

    fn e(s: &str) -> String {
        Query::parse(s).expect_err(s).to_string()
    }

    fn w(s: &str) -> Node {
        Node::Word(s.into())
    }

    fn day(y: i16, m: i8, d: i8) -> Date {
        Date::new(y, m, d).unwrap()
    }

    #[test]
    fn words_phrases_and_implicit_and() {
        assert_eq!(p("invoice"), w("invoice"));
        assert_eq!(p("invoice march"), Node::And(vec![w("invoice"), w("march")]));
        assert_eq!(p("invoice AND march"), Node::And(vec![w("invoice"), w("march")]));
        assert_eq!(p("\"quarterly report\""), Node::Phrase("quarterly report".into()));
        assert_eq!(p("Müller"), w("Müller"));
        // Lower-case and/or are words.
        assert_eq!(p("this or that"), Node::And(vec![w("this"), w("or"), w("that")]));
        // Colons not after a pure-letter name, and hyphens inside words, stay words.
        assert_eq!(p("10:30 e-mail"), Node::And(vec![w("10:30"), w("e-mail")]));
    }

    #[test]
    fn boolean_operators_and_precedence() {
        // AND binds tighter than OR.
        assert_eq!(
            p("a b OR c"),
            Node::Or(vec![Node::And(vec![w("a"), w("b")]), w("c")])
        );
        assert_eq!(
            p("a (b OR c)"),
            Node::And(vec![w("a"), Node::Or(vec![w("b"), w("c")])])
        );
        assert_eq!(p("NOT a"), Node::Not(Box::new(w("a"))));
        assert_eq!(p("-a"), Node::Not(Box::new(w("a"))));
        assert_eq!(
            p("a -\"b c\""),
            Node::And(vec![w("a"), Node::Not(Box::new(Node::Phrase("b c".into())))])
        );
        assert_eq!(
            p("-(a OR b)"),
            Node::Not(Box::new(Node::Or(vec![w("a"), w("b")])))
        );
        assert_eq!(p("NOT NOT a"), Node::Not(Box::new(Node::Not(Box::new(w("a"))))));
    }

    #[test]
    fn every_operator() {
        let f = |field, v: &str| Node::Field(field, Value::Word(v.into()));
        assert_eq!(
            p("from:alice@example.com"),
            f(TextField::From, "alice@example.com")
        );
        assert_eq!(p("to:bob"), f(TextField::To, "bob"));
        assert_eq!(p("cc:carol"), f(TextField::Cc, "carol"));
        assert_eq!(p("bcc:dave@x.org"), f(TextField::Bcc, "dave@x.org"));
        assert_eq!(p("subject:invoice"), f(TextField::Subject, "invoice"));
        assert_eq!(p("body:Rechnung"), f(TextField::Body, "Rechnung"));
        assert_eq!(p("filename:report.pdf"), f(TextField::Filename, "report.pdf"));
        assert_eq!(p("domain:example.com"), f(TextField::Domain, "example.com"));
        assert_eq!(
            p("FromDomain:example.com"),
            f(TextField::FromDomain, "example.com")
        );
        assert_eq!(p("msgid:<a@b>"), f(TextField::MsgId, "<a@b>"));
        assert_eq!(
            p("From:\"Hans Müller\""),
            Node::Field(TextField::From, Value::Phrase("Hans Müller".into()))
        );
        assert_eq!(p("has:attachment"), Node::HasAttachment);
        assert_eq!(
            p("before:2024-03-01"),
            Node::Date(DateOp::Before, day(2024, 3, 1))
        );
        assert_eq!(p("after:2024-02-29"), Node::Date(DateOp::After, day(2024, 2, 29)));
        assert_eq!(p("on:1999-12-31"), Node::Date(DateOp::On, day(1999, 12, 31)));
        assert_eq!(p("larger:10k"), Node::Size(SizeOp::Larger, 10 * 1024));
        assert_eq!(p("smaller:5M"), Node::Size(SizeOp::Smaller, 5 << 20));
        assert_eq!(p("larger:1G"), Node::Size(SizeOp::Larger, 1 << 30));
        assert_eq!(p("smaller:300"), Node::Size(SizeOp::Smaller, 300));
        assert_eq!(
            p("from:a@x.org after:2024-01-01 -has:attachment"),
            Node::And(vec![
                f(TextField::From, "a@x.org"),
                Node::Date(DateOp::After, day(2024, 1, 1)),
                Node::Not(Box::new(Node::HasAttachment)),
            ])
        );
    }

    #[test]
    fn errors_name_position_and_problem() {
        assert_eq!(e(""), "position 1: the query is empty");
        assert_eq!(e("   "), "position 1: the query is empty");
        assert_eq!(
            e("before:"),
            "position 8: expected a date YYYY-MM-DD after 'before:'"
        );
        assert_eq!(
            e("a before:yesterday"),
            "position 10: expected a date YYYY-MM-DD after 'before:', not 'yesterday'"
        );
        assert_eq!(
            e("on:2023-02-29"),
            "position 4: '2023-02-29' after 'on:' is not a valid date"
        );
        assert!(e("larger:10x")
            .starts_with("position 8: expected a size such as 10k or 5M after 'larger:', not '10x'"));
        assert!(e("smaller:").starts_with("position 9: expected a size such as 10k or 5M after 'smaller:'"));
        assert_eq!(
            e("has:pdf"),
            "position 5: unknown value 'pdf' for 'has:' (only has:attachment)"
        );
        assert!(e("x frm:alice").starts_with("position 3: unknown operator 'frm:' (known: from:"));
        assert_eq!(
            e("from: alice"),
            "position 6: expected a word or a \"phrase\" after 'from:'"
        );
        assert_eq!(
            e("subject:\"open"),
            "position 9: unterminated quote (a '\"' without its closing '\"')"
        );
        assert_eq!(e("a \"\""), "position 3: empty phrase \"\"");
        assert_eq!(
            e("(a OR b"),
            "position 8: expected ')' to close the '(' at position 1"
        );
        assert_eq!(e("a b)"), "position 4: unexpected ')' (no '(' to close)");
        assert_eq!(e("()"), "position 2: empty parentheses");
        assert_eq!(e("a OR"), "position 5: expected a term after 'OR' at position 3");
        assert_eq!(
            e("a AND OR b"),
            "position 7: expected a term after 'AND' at position 3"
        );
        assert_eq!(e("OR a"), "position 1: 'OR' needs a term before it");
        assert_eq!(
            e("a NOT"),
            "position 6: expected a term after 'NOT' at position 3"
        );
        // Positions count characters, not bytes.
        assert_eq!(
            e("Müller before:x"),
            "position 15: expected a date YYYY-MM-DD after 'before:', not 'x'"
        );
    }

    /// Hostile shapes end in a typed error, never in a stack overflow: the parser stops at
    /// the first level beyond the cap, so no deep tree is built or dropped.
    #[test]
    fn deep_and_long_queries_are_refused_not_crashed() {
        let kind = |s: &str| Query::parse(s).expect_err("refused").kind();
        let parens = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(kind(&parens), QueryErrorKind::TooDeep);
        assert_eq!(
            kind(&format!("{}a", "NOT ".repeat(25_000))),
            QueryErrorKind::TooDeep
        );
        assert_eq!(
            kind(&format!("{}a", "-".repeat(100_000))),
            QueryErrorKind::TooDeep
        );
        assert_eq!(kind(&"(a OR ".repeat(50_000)), QueryErrorKind::TooDeep);
        assert!(e(&parens).contains("deeper than 64 levels"), "{}", e(&parens));
        // Up to the cap is fine.
        let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(p(&ok), w("a"));
        assert_eq!(
            kind(&format!(
                "{}a{}",
                "(".repeat(MAX_DEPTH + 1),
                ")".repeat(MAX_DEPTH + 1)
            )),
            QueryErrorKind::TooDeep
        );
        // Width is bounded too.
        assert_eq!(kind(&"a ".repeat(MAX_TERMS + 1)), QueryErrorKind::TooManyTerms);
        assert!(Query::parse(&"a ".repeat(MAX_TERMS)).is_ok());
        assert_eq!(
            kind("a OR ".repeat(100_000).trim_end_matches(" OR ")),
            QueryErrorKind::TooManyTerms
        );
        // Syntax errors say so.
        assert_eq!(kind("a OR"), QueryErrorKind::Syntax);
    }

    #[test]
    fn built_queries_are_held_to_the_same_bounds() {
        let mut deep = w("a");
        for _ in 0..MAX_DEPTH + 1 {
            deep = Node::Not(Box::new(deep));
        }
        let e = Query::from_node(deep).expect_err("too deep");
        assert_eq!(e.kind(), QueryErrorKind::TooDeep);
        let wide = Node::Or((0..=MAX_TERMS).map(|i| w(&i.to_string())).collect());
        assert_eq!(
            Query::from_node(wide).expect_err("too wide").kind(),
            QueryErrorKind::TooManyTerms
        );
        let fine = Node::Or((0..MAX_TERMS).map(|i| w(&i.to_string())).collect());
        assert!(Query::from_node(fine).is_ok());
    }
}
