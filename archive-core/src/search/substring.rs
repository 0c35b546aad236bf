//! Which indexed words a substring can lie in: the index's side of RFC 3501's TEXT and BODY,
//! which match any substring of the text (`BODY "eautiful worl"`), not words.
//!
//! The index holds words, folded (`analysis`): lower-cased, German spelling normalized (an
//! `e` after `a`, `o` or `u` dropped, umlauts without dots, `ß` as `ss`), other diacritics
//! folded to ASCII, and runs longer than 40 bytes left out. A substring's runs of letters
//! and digits lie in consecutive words of the text: the first at the end of a word (unless
//! the substring starts with a separator), the last at the start of one, any between them
//! whole. Each run becomes a regular expression over the folded words that matches every
//! word the run can lie in — folding loses letters, so the expression allows for it (each
//! `e` is optional) and matches more words than it must. The messages it finds are
//! therefore *candidates*: the caller reads each one and checks the substring itself
//! (archive-imap's SEARCH scan). A substring with no run of letters or digits, or with a run
//! no indexed word can hold, cannot be narrowed: every message is a candidate.

use std::fmt::Write;

use tantivy::tokenizer::{AsciiFoldingFilter, RawTokenizer, TextAnalyzer};

use super::analysis::MAX_WORD_BYTES;

/// Most runs of a substring turned into patterns; later ones are left to the caller's check
/// (the candidates stay a superset).
const MAX_RUNS: usize = 16;

/// Regular expressions (tantivy's regex syntax, matched against whole terms) for the runs
/// of `text`, all of which a candidate's words must match (each in some word). `None` when
/// the index cannot narrow the candidates (every message is one).
pub fn word_patterns(text: &str) -> Option<Vec<String>> {
    let runs = runs(text);
    if runs.is_empty() {
        return None;
    }
    let mut folder = TextAnalyzer::builder(RawTokenizer::default())
        .filter(AsciiFoldingFilter)
        .build();
    let mut patterns = Vec::with_capacity(runs.len().min(MAX_RUNS));
    for run in &runs {
        // A word is at most MAX_WORD_BYTES long; a run longer than that lies in no indexed
        // word, and the message it is in may hold no other run of the substring.
        if run.text.len() > MAX_WORD_BYTES {
            return None;
        }
    }
    for run in runs.into_iter().take(MAX_RUNS) {
        let mut p = String::with_capacity(run.text.len() * 2 + 4);
        if !run.starts_word {
            p.push_str(".*");
        }
        for c in run.text.chars().flat_map(char::to_lowercase) {
            push_folded(&mut folder, c, &mut p);
        }
        if !run.ends_word {
            p.push_str(".*");
        }
        patterns.push(p);
    }
    Some(patterns)
}

/// A run of letters and digits in a substring, and whether the substring shows where its
/// word starts and ends (a separator before or after it).
struct Run<'a> {
    text: &'a str,
    starts_word: bool,
    ends_word: bool,
}

fn runs(text: &str) -> Vec<Run<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(Run {
                    text: &text[s..i],
                    starts_word: s > 0,
                    ends_word: true,
                });
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(Run {
            text: &text[s..],
            starts_word: s > 0,
            ends_word: false,
        });
    }
    out
}

/// Appends the pattern for one lower-cased character of a run: what it becomes in an
/// indexed word (analysis: German normalization, then ASCII folding).
fn push_folded(folder: &mut TextAnalyzer, c: char, p: &mut String) {
    match c {
        // Dropped after a, o or u (`blue` is indexed as `blu`): optional everywhere.
        'e' => p.push_str("e?"),
        'ä' => p.push('a'),
        'ö' => p.push('o'),
        'ü' => p.push('u'),
        'ß' => p.push_str("ss"),
        c if c.is_ascii() => p.push(c),
        c => {
            let mut buf = [0u8; 4];
            let mut stream = folder.token_stream(c.encode_utf8(&mut buf));
            let folded = if stream.advance() {
                stream.token().text.clone()
            } else {
                c.to_string()
            };
            for f in folded.chars() {
                if f.is_ascii_punctuation() {
                    // Regex syntax: every ASCII punctuation character may be escaped.
                    let _ = write!(p, "\\{f}");
                } else {
                    p.push(f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::analysis::{terms, EXACT};

    /// Whether some word of `text`, as indexed, matches `pattern` as a whole.
    fn some_word_matches(pattern: &str, text: &str) -> bool {
        let re = regex_lite(pattern);
        terms(EXACT, text).iter().any(|(_, w)| re(w))
    }

    /// A tiny matcher for the patterns this module makes (`.*`, `e?`, literals, `\x`),
    /// so the test does not need a regex crate: backtracking over the pattern's atoms.
    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        #[derive(Clone, Debug)]
        enum Atom {
            Any,
            Opt(char),
            Lit(char),
        }
        let mut atoms = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '.' if chars.peek() == Some(&'*') => {
                    chars.next();
                    atoms.push(Atom::Any);
                }
                '\\' => atoms.push(Atom::Lit(chars.next().unwrap_or('\\'))),
                c if chars.peek() == Some(&'?') => {
                    chars.next();
                    atoms.push(Atom::Opt(c));
                }
                c => atoms.push(Atom::Lit(c)),
            }
        }
        fn go(atoms: &[Atom], s: &[char]) -> bool {
            match atoms.split_first() {
                None => s.is_empty(),
                Some((Atom::Any, rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
                Some((Atom::Opt(c), rest)) => (s.first() == Some(c) && go(rest, &s[1..])) || go(rest, s),
                Some((Atom::Lit(c), rest)) => s.first() == Some(c) && go(rest, &s[1..]),
            }
        }
        move |w: &str| go(&atoms, &w.chars().collect::<Vec<_>>())
    }

    /// Every substring of `text` (at char boundaries) has each of its runs' patterns
    /// matched by some indexed word of `text`: the candidates never miss a message.
    fn every_substring_is_found(text: &str) {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        for (i, &(start, _)) in chars.iter().enumerate() {
            for &(end, _) in chars[i + 1..].iter().chain([(text.len(), ' ')].iter()) {
                let sub = &text[start..end];
                let Some(patterns) = word_patterns(sub) else {
                    continue;
                };
                for p in patterns {
                    assert!(
                        some_word_matches(&p, text),
                        "{sub:?} of {text:?}: {p} matches no word"
                    );
                }
            }
        }
    }

    #[test]
    fn substrings_of_folded_words_are_found() {
        for text in [
            "blue queue Mueller Müller Straße große",
            "Hello beautiful world, eautiful",
            "café naïve Ærøskøbing œuvre",
            "Does the aeroplane oe ue ae fly?",
            "x-y 10:30 http://example.com/a_b",
        ] {
            every_substring_is_found(text);
        }
    }

    #[test]
    fn runs_know_their_word_boundaries() {
        assert_eq!(word_patterns("eautiful worl").unwrap(), [".*e?autiful", "worl.*"]);
        assert_eq!(word_patterns("ft ").unwrap(), [".*ft"]);
        assert_eq!(word_patterns(" ft").unwrap(), ["ft.*"]);
        assert_eq!(word_patterns("a b c").unwrap(), [".*a", "b", "c.*"]);
        assert_eq!(word_patterns("Straße").unwrap(), [".*strasse?.*"]);
    }

    #[test]
    fn nothing_to_narrow_by() {
        assert_eq!(word_patterns("?! "), None);
        assert_eq!(word_patterns(""), None);
        assert_eq!(word_patterns(&"x".repeat(41)), None);
        assert!(word_patterns(&"x".repeat(40)).is_some());
    }
}
