//! ESEARCH (RFC 4731) and ESORT (RFC 5267 §3) where imap-codec cannot help: it parses
//! neither `SEARCH RETURN (…)` nor `SORT RETURN (…)`, and has no `* ESEARCH` response. This
//! module finds the return options at the start of a command line (so that `protocol` can
//! cut them out before imap-next parses the rest as a plain SEARCH or SORT) and writes the
//! `* ESEARCH` response line.

use std::fmt::Write as _;
use std::ops::Range;

use imap_next::imap_types::utils::indicators::is_astring_char;

use crate::sequence::compact_set;

/// The result options a SEARCH asked for (RFC 4731 §3.1). `RETURN ()` means ALL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Returns {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
}

impl Returns {
    /// Parses what stands between the parentheses of `RETURN (…)`: option names separated by
    /// single spaces, in any case (RFC 4466). The error names what is wrong, for a BAD.
    pub fn parse(options: &[u8]) -> Result<Returns, String> {
        let mut r = Returns::default();
        if options.is_empty() {
            r.all = true;
            return Ok(r);
        }
        for name in options.split(|b| *b == b' ') {
            let slot = match name.to_ascii_uppercase().as_slice() {
                b"MIN" => &mut r.min,
                b"MAX" => &mut r.max,
                b"ALL" => &mut r.all,
                b"COUNT" => &mut r.count,
                b"" => return Err("malformed RETURN options: one space between names".into()),
                _ => {
                    return Err(format!(
                        "unknown RETURN option {}; this server knows MIN, MAX, ALL and COUNT \
                         (RFC 4731)",
                        String::from_utf8_lossy(name)
                    ))
                }
            };
            *slot = true;
        }
        Ok(r)
    }
}

/// Which command a RETURN clause belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Searching {
    Search,
    Sort,
}

/// A command line that starts `<tag> [UID ]SEARCH RETURN (<options>) ` or
/// `<tag> [UID ]SORT RETURN (<options>) `.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReturnClause {
    pub tag: String,
    pub command: Searching,
    /// The bytes to cut so that imap-next sees a plain SEARCH: `RETURN (…) `.
    pub cut: Range<usize>,
    /// The options, or why they are refused.
    pub returns: Result<Returns, String>,
}

/// Finds the RETURN clause at the start of `line` (the first line of a command, or as much of
/// it as was held back). `None` for every other line, including a RETURN that is not followed
/// by search criteria or whose option list holds anything but names (nested lists, strings,
/// literals): imap-codec then answers it as the malformed command it is.
///
/// Only the grammar of RFC 4466 is accepted (single spaces); the command name and RETURN may
/// be in any case.
pub(crate) fn return_clause(line: &[u8]) -> Option<ReturnClause> {
    let tag_len = line
        .iter()
        .position(|b| !is_astring_char(*b) || *b == b'+')
        .unwrap_or(line.len());
    if tag_len == 0 {
        return None;
    }
    let mut at = tag_len;
    let word = |at: &mut usize, w: &[u8]| -> bool {
        let Some(next) = line.get(*at..*at + w.len() + 1) else {
            return false;
        };
        let matched = next[..w.len()].eq_ignore_ascii_case(w) && next[w.len()] == b' ';
        if matched {
            *at += w.len() + 1;
        }
        matched
    };
    if line.get(at) != Some(&b' ') {
        return None;
    }
    at += 1;
    word(&mut at, b"UID");
    let command = if word(&mut at, b"SEARCH") {
        Searching::Search
    } else if word(&mut at, b"SORT") {
        Searching::Sort
    } else {
        return None;
    };
    let start = at;
    if !word(&mut at, b"RETURN") || line.get(at) != Some(&b'(') {
        return None;
    }
    let open = at + 1;
    let close = open + line[open..].iter().position(|b| !is_option_char(*b))?;
    if line[close] != b')' || line.get(close + 1) != Some(&b' ') {
        return None;
    }
    Some(ReturnClause {
        tag: String::from_utf8_lossy(&line[..tag_len]).into_owned(),
        command,
        cut: start..close + 2,
        returns: Returns::parse(&line[open..close]).map_err(|why| match command {
            Searching::Search => why,
            Searching::Sort => format!("{why}; for SORT: RFC 5267 ESORT"),
        }),
    })
}

/// Bytes that may appear in a list of option names (atoms and the spaces between them).
fn is_option_char(b: u8) -> bool {
    b == b' ' || (is_astring_char(b) && b != b']')
}

/// What a SEARCH or SORT found, for its `* ESEARCH` line.
pub(crate) struct Found<'a> {
    /// The matching message numbers, or UIDs (UID SEARCH, UID SORT), in the order they are
    /// reported: ascending for SEARCH, the requested order for SORT.
    pub numbers: &'a [u32],
    /// Each one's mod-sequence, when the search keys used MODSEQ (RFC 7162 §3.1.5).
    pub modseqs: Option<&'a [u64]>,
}

/// The `* ESEARCH` line answering the SEARCH tagged `tag`. With no match, MIN, MAX and ALL
/// are left out; COUNT is always there when asked for (RFC 4731 §3.1). With MODSEQ keys, the
/// MODSEQ item is the highest mod-sequence of the messages returned: of all that match when
/// ALL or COUNT is asked for, else of those MIN and MAX name (RFC 7162 §3.1.10); none when
/// nothing matches.
pub(crate) fn response(tag: &str, uid: bool, returns: Returns, found: Found<'_>) -> Vec<u8> {
    line(tag, uid, returns, found)
}

/// The `* ESEARCH` line answering the SORT tagged `tag` (RFC 5267 §3.1): MIN and MAX are the
/// first and the last in the requested order, ALL lists them in that order (ranges only where
/// the order ascends by one: `5,3:4,2,1`, never `4:2`, RFC 5267 §3.2); MODSEQ as for SEARCH.
pub(crate) fn sort_response(tag: &str, uid: bool, returns: Returns, found: Found<'_>) -> Vec<u8> {
    line(tag, uid, returns, found)
}

/// The ESEARCH line for what was found, in the order it is reported.
fn line(tag: &str, uid: bool, returns: Returns, found: Found<'_>) -> Vec<u8> {
    let numbers = found.numbers;
    let mut line = String::from("* ESEARCH (TAG \"");
    for c in tag.chars() {
        // A tag has neither, but a quoted string must escape them.
        if c == '"' || c == '\\' {
            line.push('\\');
        }
        line.push(c);
    }
    line.push_str("\")");
    if uid {
        line.push_str(" UID");
    }
    // Writing to a String cannot fail.
    if let (Some(min), Some(max)) = (numbers.first(), numbers.last()) {
        if returns.min {
            let _ = write!(line, " MIN {min}");
        }
        if returns.max {
            let _ = write!(line, " MAX {max}");
        }
    }
    if returns.count {
        let _ = write!(line, " COUNT {}", numbers.len());
    }
    if returns.all && !numbers.is_empty() {
        let listed: Vec<u64> = numbers.iter().map(|n| u64::from(*n)).collect();
        let _ = write!(line, " ALL {}", compact_set(&listed));
    }
    if let Some(modseqs) = found.modseqs {
        let returned = if returns.all || returns.count {
            modseqs.iter().max()
        } else {
            let first = modseqs.first().filter(|_| returns.min);
            let last = modseqs.last().filter(|_| returns.max);
            first.max(last)
        };
        if let Some(m) = returned {
            let _ = write!(line, " MODSEQ {m}");
        }
    }
    line.push_str("\r\n");
    line.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returns(min: bool, max: bool, all: bool, count: bool) -> Returns {
        Returns { min, max, all, count }
    }

    fn found(numbers: &[u32]) -> Found<'_> {
        Found {
            numbers,
            modseqs: None,
        }
    }

    #[test]
    fn options_in_any_case_and_empty_means_all() {
        assert_eq!(Returns::parse(b""), Ok(returns(false, false, true, false)));
        assert_eq!(
            Returns::parse(b"min Max ALL count"),
            Ok(returns(true, true, true, true))
        );
        assert_eq!(Returns::parse(b"COUNT"), Ok(returns(false, false, false, true)));
        let err = Returns::parse(b"MIN PARTIAL").unwrap_err();
        assert!(err.contains("PARTIAL"), "{err}");
        assert!(Returns::parse(b"MIN  MAX").is_err());
        assert!(Returns::parse(b" MIN").is_err());
    }

    #[test]
    fn finds_the_return_clause() {
        let line = b"a1 UID SEARCH RETURN (MIN COUNT) FROM x\r\n";
        let c = return_clause(line).unwrap();
        assert_eq!(c.tag, "a1");
        assert_eq!(&line[c.cut.clone()], b"RETURN (MIN COUNT) ");
        assert_eq!(c.returns, Ok(returns(true, false, false, true)));

        let c = return_clause(b"x.y] search return () ALL\r\n").unwrap();
        assert_eq!(c.tag, "x.y]");
        assert_eq!(c.returns, Ok(returns(false, false, true, false)));

        let c = return_clause(b"t SEARCH RETURN (FOO) ALL\r\n").unwrap();
        assert!(c.returns.unwrap_err().contains("FOO"));

        let line = b"s1 UID SORT RETURN (MIN) (DATE) UTF-8 ALL\r\n";
        let c = return_clause(line).unwrap();
        assert_eq!((c.tag.as_str(), c.command), ("s1", Searching::Sort));
        assert_eq!(&line[c.cut.clone()], b"RETURN (MIN) ");
        assert_eq!(c.returns, Ok(returns(true, false, false, false)));
        let c = return_clause(b"s2 sort return (PARTIAL) (DATE) UTF-8 ALL\r\n").unwrap();
        assert!(c.returns.unwrap_err().contains("ESORT"));
    }

    #[test]
    fn other_lines_have_no_return_clause() {
        for line in [
            "a1 SEARCH ALL\r\n",
            "a1 UID FETCH 1 BODY[]\r\n",
            "a1 SEARCH RETURN (MIN)\r\n",
            "a1 SEARCH RETURN (MI",
            "a1 SEARCH RETURN MIN ALL\r\n",
            "a1 SEARCH  RETURN (MIN) ALL\r\n",
            "a1 SEARCH RETURN (PARTIAL (1:5)) ALL\r\n",
            "a1 SEARCH RETURN (\"MIN\") ALL\r\n",
            "a1 THREAD RETURN (MIN) REFERENCES UTF-8 ALL\r\n",
            "a+1 SEARCH RETURN (MIN) ALL\r\n",
            " SEARCH RETURN (MIN) ALL\r\n",
            "a1 SEARCHRETURN (MIN) ALL\r\n",
            "DONE\r\n",
            "dGVzdA==\r\n",
            "",
        ] {
            assert_eq!(return_clause(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn responses_follow_rfc_4731() {
        let all = returns(true, true, true, true);
        assert_eq!(
            response("A1", true, all, found(&[3, 4, 5, 9])),
            b"* ESEARCH (TAG \"A1\") UID MIN 3 MAX 9 COUNT 4 ALL 3:5,9\r\n"
        );
        assert_eq!(
            response(
                "A2",
                false,
                returns(false, false, true, false),
                found(&[2, 10, 11])
            ),
            b"* ESEARCH (TAG \"A2\") ALL 2,10:11\r\n"
        );
        // No match: only the tag (and COUNT 0, which is always included when asked for).
        assert_eq!(
            response("A3", true, all, found(&[])),
            b"* ESEARCH (TAG \"A3\") UID COUNT 0\r\n"
        );
        assert_eq!(
            response("A4", false, returns(true, true, true, false), found(&[])),
            b"* ESEARCH (TAG \"A4\")\r\n"
        );
    }

    #[test]
    fn modseq_is_of_the_messages_returned() {
        let with = |numbers: &'static [u32], modseqs: &'static [u64]| Found {
            numbers,
            modseqs: Some(modseqs),
        };
        let r = |min, max, all, count| returns(min, max, all, count);
        let numbers = &[1, 2, 3];
        let modseqs = &[10, 30, 20];
        assert_eq!(
            response("M1", false, r(true, false, false, false), with(numbers, modseqs)),
            b"* ESEARCH (TAG \"M1\") MIN 1 MODSEQ 10\r\n"
        );
        assert_eq!(
            response("M2", false, r(false, true, false, false), with(numbers, modseqs)),
            b"* ESEARCH (TAG \"M2\") MAX 3 MODSEQ 20\r\n"
        );
        assert_eq!(
            response("M3", false, r(false, false, true, false), with(numbers, modseqs)),
            b"* ESEARCH (TAG \"M3\") ALL 1:3 MODSEQ 30\r\n"
        );
        assert_eq!(
            response("M4", false, r(true, true, false, false), with(numbers, modseqs)),
            b"* ESEARCH (TAG \"M4\") MIN 1 MAX 3 MODSEQ 20\r\n"
        );
        assert_eq!(
            response("M5", false, r(false, false, true, false), with(&[], &[])),
            b"* ESEARCH (TAG \"M5\")\r\n"
        );
    }

    #[test]
    fn sort_responses_keep_the_order() {
        let all = returns(true, true, true, true);
        // MIN and MAX are the first and last in sort order; ALL ascends by one only in runs.
        assert_eq!(
            sort_response("S1", false, all, found(&[5, 3, 4, 2, 1])),
            b"* ESEARCH (TAG \"S1\") MIN 5 MAX 1 COUNT 5 ALL 5,3:4,2,1\r\n"
        );
        assert_eq!(
            sort_response(
                "S2",
                true,
                returns(false, false, true, false),
                found(&[7, 8, 9, 2])
            ),
            b"* ESEARCH (TAG \"S2\") UID ALL 7:9,2\r\n"
        );
        assert_eq!(
            sort_response("S3", false, all, found(&[])),
            b"* ESEARCH (TAG \"S3\") COUNT 0\r\n"
        );
    }
}
