//! Sequence sets over sparse UIDs. imap-types expands every integer up to the largest, which
//! is unusable when UIDs are global log seqs (millions) and cannot describe an empty
//! mailbox; this resolves ranges against the view's sorted UIDs instead.

use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use archive_core::views::View;

/// Why a set cannot be resolved.
#[derive(Debug, PartialEq, Eq)]
pub enum SetError {
    /// `*` or a number in a message-number set of an empty mailbox.
    EmptyMailbox,
}

/// The message numbers (1-based, ascending, deduplicated) a set names.
/// UID sets name the messages whose UID falls in a range; unknown UIDs are ignored (RFC 3501).
/// Message-number sets name numbers up to the message count; beyond that is ignored too,
/// which is how clients that raced with new mail expect it.
pub fn resolve(set: &SequenceSet, view: &View, uid: bool) -> Result<Vec<usize>, SetError> {
    let n = view.len();
    let mut out: Vec<usize> = Vec::new();
    if uid {
        let uids: Vec<u64> = view.uids().collect();
        // RFC 3501: `*` is the largest UID in use; in an empty mailbox nothing matches.
        let Some(&max) = uids.last() else {
            return Ok(out);
        };
        for seq in set.0.as_ref() {
            let (a, b) = bounds(seq, max);
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let start = uids.partition_point(|u| *u < lo);
            let end = uids.partition_point(|u| *u <= hi);
            out.extend((start..end).map(|i| i + 1));
        }
    } else {
        if n == 0 {
            return Err(SetError::EmptyMailbox);
        }
        for seq in set.0.as_ref() {
            let (a, b) = bounds(seq, n as u64);
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let hi = hi.min(n as u64);
            if lo <= hi {
                out.extend(lo as usize..=hi as usize);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn bounds(seq: &Sequence, star: u64) -> (u64, u64) {
    let v = |s: &SeqOrUid| match s {
        SeqOrUid::Value(n) => u64::from(n.get()),
        SeqOrUid::Asterisk => star,
    };
    match seq {
        Sequence::Single(s) => (v(s), v(s)),
        Sequence::Range(a, b) => (v(a), v(b)),
    }
}

/// Ascending, distinct numbers as a compact sequence set: `3:7,9,12:13` (ESEARCH ALL, audit
/// records of fetched UIDs).
pub(crate) fn compact_set(sorted: &[u64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while sorted.get(i + 1).is_some_and(|n| Some(*n) == end.checked_add(1)) {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}
