//! A query's problems, typed: where and what, with what a message about it needs, so each
//! front door can word it (`Display` is the English of the command line, the API and IMAP).

use std::fmt;

use super::OPERATORS;

/// A query that does not parse: where (1-based character position) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    /// 1-based position of the character the problem was found at.
    pub position: usize,
    /// What is wrong there, typed, so each front door can word it (`Display`: English).
    pub problem: QueryProblem,
}

impl QueryError {
    /// A problem at 1-based `position`.
    pub fn new(position: usize, problem: QueryProblem) -> QueryError {
        QueryError { position, problem }
    }

    /// Which kind of problem it is.
    pub fn kind(&self) -> QueryErrorKind {
        match self.problem {
            QueryProblem::TooDeep { .. } => QueryErrorKind::TooDeep,
            QueryProblem::TooManyTerms { .. } => QueryErrorKind::TooManyTerms,
            QueryProblem::NothingToSearch => QueryErrorKind::NothingToSearch,
            _ => QueryErrorKind::Syntax,
        }
    }
}

/// Kinds of [`QueryError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// Not the query language (a typo, a missing value, an unbalanced parenthesis…).
    Syntax,
    /// Nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH) levels.
    TooDeep,
    /// More than [`MAX_TERMS`](super::MAX_TERMS) terms.
    TooManyTerms,
    /// Nothing in it can be searched for (only punctuation, say).
    NothingToSearch,
}

/// What is wrong with a query, with what a message about it needs. `Display` is the English
/// the command line, the API and IMAP give; the web pages word it in their language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryProblem {
    /// Nothing but spaces.
    Empty,
    /// A token where none can be (`unexpected 'x'`).
    Unexpected(QueryToken),
    /// A `)` without its `(`.
    UnmatchedClose,
    /// A `"` without its closing `"`.
    Unterminated,
    /// `""`.
    EmptyPhrase,
    /// An operator without its value.
    MissingValue {
        /// The operator's name (`before`).
        operator: String,
        /// What its value should be.
        expected: ExpectedValue,
    },
    /// A date operator's value that is not shaped `YYYY-MM-DD`.
    NotADate {
        /// The operator's name.
        operator: String,
        /// The value as written.
        text: String,
    },
    /// A value shaped `YYYY-MM-DD` that is no day of the calendar.
    InvalidDate {
        /// The operator's name.
        operator: String,
        /// The value as written.
        text: String,
    },
    /// A size operator's value that is not a size.
    NotASize {
        /// The operator's name.
        operator: String,
        /// The value as written.
        text: String,
    },
    /// `has:` with a value other than `attachment`.
    UnknownHasValue {
        /// The value as written.
        value: String,
    },
    /// `name:` that is no operator of [`OPERATORS`].
    UnknownOperator {
        /// The name as written, lower-cased.
        name: String,
    },
    /// `AND`, `OR`, `NOT` or `-` at 1-based position `at` without a term after it.
    ExpectedTermAfter {
        /// The token (`'OR'`).
        token: QueryToken,
        /// Its position.
        at: usize,
    },
    /// The query ends where a term must come.
    ExpectedTermAtEnd,
    /// `()`.
    EmptyParentheses,
    /// The `(` at 1-based position `open_at` is not closed.
    Unclosed {
        /// Where the `(` is.
        open_at: usize,
    },
    /// `AND` or `OR` with no term before it.
    NeedsTermBefore(QueryToken),
    /// Nested deeper than `max` levels of parentheses and NOT.
    TooDeep {
        /// [`MAX_DEPTH`](super::MAX_DEPTH).
        max: usize,
    },
    /// More than `max` terms.
    TooManyTerms {
        /// [`MAX_TERMS`](super::MAX_TERMS).
        max: usize,
    },
    /// Nothing in it can be searched for (only punctuation, say).
    NothingToSearch,
}

/// A token of a query, as a problem names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryToken {
    /// `(`
    Open,
    /// `)`
    Close,
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `NOT`
    Not,
    /// `-` before a term
    Minus,
    /// A word, as written.
    Word(String),
    /// A phrase, without its quotes.
    Phrase(String),
    /// An operator with its value.
    Operator,
}

/// What the value of an operator should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedValue {
    /// `YYYY-MM-DD` (before, after, on).
    Date,
    /// `10k`, `5M` (larger, smaller).
    Size,
    /// `attachment` (has).
    Attachment,
    /// A word or a phrase (the text operators).
    Text,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "position {}: {}", self.position, self.problem)
    }
}

impl fmt::Display for QueryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryProblem::Empty => write!(f, "the query is empty"),
            QueryProblem::Unexpected(t) => write!(f, "unexpected {t}"),
            QueryProblem::UnmatchedClose => write!(f, "unexpected ')' (no '(' to close)"),
            QueryProblem::Unterminated => write!(f, "unterminated quote (a '\"' without its closing '\"')"),
            QueryProblem::EmptyPhrase => write!(f, "empty phrase \"\""),
            QueryProblem::MissingValue { operator, expected } => {
                write!(f, "expected {expected} after '{operator}:'")
            }
            QueryProblem::NotADate { operator, text } => {
                write!(f, "expected a date YYYY-MM-DD after '{operator}:', not '{text}'")
            }
            QueryProblem::InvalidDate { operator, text } => {
                write!(f, "'{text}' after '{operator}:' is not a valid date")
            }
            QueryProblem::NotASize { operator, text } => write!(
                f,
                "expected a size such as 10k or 5M after '{operator}:', not '{text}' (a number of bytes, \
                 optionally followed by k, M or G: 1024-based)"
            ),
            QueryProblem::UnknownHasValue { value } => {
                write!(f, "unknown value '{value}' for 'has:' (only has:attachment)")
            }
            QueryProblem::UnknownOperator { name } => write!(
                f,
                "unknown operator '{name}:' (known: {OPERATORS}); put the word in quotes \
                 to search for it as text"
            ),
            QueryProblem::ExpectedTermAfter { token, at } => {
                write!(f, "expected a term after {token} at position {at}")
            }
            QueryProblem::ExpectedTermAtEnd => write!(f, "expected a term at the end of the query"),
            QueryProblem::EmptyParentheses => write!(f, "empty parentheses"),
            QueryProblem::Unclosed { open_at } => {
                write!(f, "expected ')' to close the '(' at position {open_at}")
            }
            QueryProblem::NeedsTermBefore(t) => write!(f, "{t} needs a term before it"),
            QueryProblem::TooDeep { max } => {
                write!(
                    f,
                    "the query nests deeper than {max} levels of parentheses and NOT"
                )
            }
            QueryProblem::TooManyTerms { max } => write!(f, "the query has more than {max} terms"),
            QueryProblem::NothingToSearch => write!(f, "it has no searchable words (only punctuation?)"),
        }
    }
}

impl fmt::Display for QueryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryToken::Open => write!(f, "'('"),
            QueryToken::Close => write!(f, "')'"),
            QueryToken::And => write!(f, "'AND'"),
            QueryToken::Or => write!(f, "'OR'"),
            QueryToken::Not => write!(f, "'NOT'"),
            QueryToken::Minus => write!(f, "'-'"),
            QueryToken::Word(w) => write!(f, "'{w}'"),
            QueryToken::Phrase(p) => write!(f, "\"{p}\""),
            QueryToken::Operator => write!(f, "an operator"),
        }
    }
}

impl fmt::Display for ExpectedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpectedValue::Date => "a date YYYY-MM-DD",
            ExpectedValue::Size => "a size such as 10k or 5M",
            ExpectedValue::Attachment => "'attachment'",
            ExpectedValue::Text => "a word or a \"phrase\"",
        })
    }
}
