//! The search page's criteria form, turned into a query of docs/SEARCH.md's language: the
//! query is shown next to the results, so people learn the syntax, and it is what runs.
//!
//! Whatever someone types into a field stays that field's value: the language has no escape
//! character, so a value is written bare only when it is one plain word (no space, quote,
//! parenthesis, leading `-`, no `AND`/`OR`/`NOT`, no `name:`), and otherwise as a phrase with
//! its quotes taken out. Dates and sizes are checked against their shape first, and a value
//! that does not fit is reported, never passed on.

use crate::i18n::Text;

/// The criteria as the form sends them (every field optional).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Criteria {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub after: String,
    #[serde(default)]
    pub before: String,
    #[serde(default)]
    pub has_attachment: String,
    #[serde(default)]
    pub attachment: String,
    #[serde(default)]
    pub min_size: String,
    #[serde(default)]
    pub max_size: String,
    #[serde(default)]
    pub domain: String,
}

/// Longest value of one field (bytes); the whole query is bounded by the search's limit.
const MAX_FIELD_BYTES: usize = 1024;

impl Criteria {
    /// Whether any field is filled in.
    pub fn any(&self) -> bool {
        [
            &self.from,
            &self.to,
            &self.subject,
            &self.text,
            &self.after,
            &self.before,
            &self.attachment,
            &self.min_size,
            &self.max_size,
            &self.domain,
        ]
        .iter()
        .any(|v| !v.trim().is_empty())
            || self.has_attachment()
    }

    /// Whether the attachment box is ticked.
    pub fn has_attachment(&self) -> bool {
        !self.has_attachment.is_empty()
    }

    /// The query these criteria make, or what is wrong with one of them (in `t`'s words).
    pub fn query(&self, t: &Text) -> Result<String, String> {
        let mut terms: Vec<String> = Vec::new();
        for (name, value) in [("from", &self.from), ("to", &self.to), ("subject", &self.subject)] {
            if let Some(v) = value_of(value) {
                terms.push(format!("{name}:{v}"));
            }
        }
        // Free text: each word on its own (all must match), so word order does not matter.
        for word in self.text.split_whitespace().take(64) {
            if let Some(v) = value_of(word) {
                terms.push(v);
            }
        }
        for (name, value, label) in [
            ("after", &self.after, t.crit_after),
            ("before", &self.before, t.crit_before),
        ] {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            if !is_day(value) {
                return Err(format!("{label} {} {value}", t.crit_bad_date));
            }
            terms.push(format!("{name}:{value}"));
        }
        if self.has_attachment() {
            terms.push("has:attachment".into());
        }
        if let Some(v) = value_of(&self.attachment) {
            terms.push(format!("filename:{v}"));
        }
        for (name, value, label) in [
            ("larger", &self.min_size, t.crit_min_size),
            ("smaller", &self.max_size, t.crit_max_size),
        ] {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            if !is_size(value) {
                return Err(format!("{label} {} {value}", t.crit_bad_size));
            }
            terms.push(format!("{name}:{value}"));
        }
        if let Some(v) = value_of(&self.domain) {
            terms.push(format!("domain:{v}"));
        }
        Ok(terms.join(" "))
    }
}

/// `value` as one term of the language: a bare word when that cannot be read as anything
/// else, else a phrase without the quotes it had; `None` when nothing is left.
fn value_of(value: &str) -> Option<String> {
    let value: String = value
        .chars()
        .take(MAX_FIELD_BYTES)
        .map(|c| if c == '"' || c.is_control() { ' ' } else { c })
        .collect();
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    if value.is_empty() {
        return None;
    }
    let plain = !value.contains(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ':')
        && !value.starts_with('-')
        && !matches!(value.as_str(), "AND" | "OR" | "NOT");
    Some(if plain { value } else { format!("\"{value}\"") })
}

/// `YYYY-MM-DD` by shape (the query parser checks the calendar).
fn is_day(s: &str) -> bool {
    s.len() == 10
        && s.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        })
}

/// Digits with an optional k, M or G.
fn is_size(s: &str) -> bool {
    let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    s.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.len() <= 15
        && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use archive_core::search::query::{Node, TextField, Value};
    use archive_core::search::Query;

    fn t() -> &'static Text {
        crate::i18n::Lang::En.text()
    }

    #[test]
    fn criteria_make_the_query_people_would_write() {
        let c = Criteria {
            from: "alice@example.com".into(),
            subject: "quarterly report".into(),
            text: "invoice  März".into(),
            after: "2024-01-31".into(),
            has_attachment: "on".into(),
            attachment: "q1.pdf".into(),
            min_size: "10k".into(),
            domain: "example.org".into(),
            ..Criteria::default()
        };
        let q = c.query(t()).unwrap();
        assert_eq!(
            q,
            "from:alice@example.com subject:\"quarterly report\" invoice März after:2024-01-31 \
             has:attachment filename:q1.pdf larger:10k domain:example.org"
        );
        assert!(Query::parse(&q).is_ok());
        assert!(Criteria::default().query(t()).unwrap().is_empty());
        assert!(!Criteria::default().any());
    }

    #[test]
    fn hostile_values_stay_inside_their_field() {
        for hostile in [
            "x OR to:y",
            "a\" OR subject:\"b",
            "-secret",
            "(a OR b",
            "NOT",
            "from:carol@other.net",
            "\")(\" OR \"",
            "a\tb\nc",
        ] {
            let c = Criteria {
                from: hostile.into(),
                ..Criteria::default()
            };
            let q = c.query(t()).unwrap();
            let parsed = Query::parse(&q).unwrap_or_else(|e| panic!("{hostile:?} → {q:?}: {e}"));
            assert!(
                matches!(
                    parsed.root(),
                    Node::Field(TextField::From, Value::Word(_) | Value::Phrase(_))
                ),
                "{hostile:?} → {q:?} → {:?}",
                parsed.root()
            );
            let text = Criteria {
                text: hostile.into(),
                ..Criteria::default()
            };
            let q = text.query(t()).unwrap();
            if let Ok(parsed) = Query::parse(&q) {
                let leaves = match parsed.root() {
                    Node::And(parts) => parts.clone(),
                    other => vec![other.clone()],
                };
                assert!(
                    leaves
                        .iter()
                        .all(|n| matches!(n, Node::Word(_) | Node::Phrase(_))),
                    "{hostile:?} → {q:?}"
                );
            }
        }
        for (after, size) in [
            ("2024-1-1", "1"),
            ("2024-01-01 OR x", "1"),
            ("2024-01-01", "5 OR x"),
            ("2024-01-01", "-1"),
        ] {
            let c = Criteria {
                after: after.into(),
                min_size: size.into(),
                ..Criteria::default()
            };
            if after.len() != 10 || !is_size(size) {
                assert!(c.query(t()).is_err(), "{after:?} {size:?}");
            }
        }
    }
}
