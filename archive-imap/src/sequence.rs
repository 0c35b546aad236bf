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

/// The message numbers a sequence set names: ascending, disjoint, non-adjacent inclusive
/// ranges. A set's ranges may overlap and repeat (`1:*,1:*,…`): merged here, each message
/// is named once, and memory is one pair per range of the set, never one entry per
/// message per range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Numbers {
    ranges: Vec<(usize, usize)>,
}

impl Numbers {
    /// Sorts and merges inclusive ranges (`lo <= hi` each).
    fn merged(mut ranges: Vec<(usize, usize)>) -> Numbers {
        ranges.sort_unstable();
        let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Numbers { ranges: out }
    }

    /// The numbers, ascending, each once; computed as they are taken.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.ranges.iter().flat_map(|&(lo, hi)| lo..=hi)
    }

    /// How many numbers.
    pub fn len(&self) -> usize {
        self.ranges.iter().map(|(lo, hi)| hi - lo + 1).sum()
    }
}

impl IntoIterator for Numbers {
    type Item = usize;
    type IntoIter = std::iter::FlatMap<
        std::vec::IntoIter<(usize, usize)>,
        std::ops::RangeInclusive<usize>,
        fn((usize, usize)) -> std::ops::RangeInclusive<usize>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        let range: fn((usize, usize)) -> std::ops::RangeInclusive<usize> = |(lo, hi)| lo..=hi;
        self.ranges.into_iter().flat_map(range)
    }
}

/// The message numbers (1-based, ascending, each once) a set names, as merged ranges.
/// UID sets name the messages whose UID falls in a range; unknown UIDs are ignored (RFC 3501).
/// Message-number sets name numbers up to the message count; beyond that is ignored too,
/// which is how clients that raced with new mail expect it. `a:b` and `b:a` are the same.
pub fn resolve(set: &SequenceSet, view: &View, uid: bool) -> Result<Numbers, SetError> {
    resolve_in(set, view.len(), |n| view.uid_at(n), uid)
}

/// [`resolve`] over a mailbox of `n` messages, message `k` having UID `uid_at(k)`.
fn resolve_in(
    set: &SequenceSet,
    n: usize,
    uid_at: impl Fn(usize) -> Option<u64>,
    uid: bool,
) -> Result<Numbers, SetError> {
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(set.0.as_ref().len());
    if uid {
        // RFC 3501: `*` is the largest UID in use; in an empty mailbox nothing matches.
        let Some(max) = uid_at(n) else {
            return Ok(Numbers::default());
        };
        for seq in set.0.as_ref() {
            let (a, b) = bounds(seq, max);
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            // Message numbers of the first UID >= lo and of the last UID <= hi.
            let first = uids_below(n, &uid_at, lo) + 1;
            let last = uids_below(n, &uid_at, hi.saturating_add(1));
            if first <= last {
                ranges.push((first, last));
            }
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
                ranges.push((lo as usize, hi as usize));
            }
        }
    }
    Ok(Numbers::merged(ranges))
}

/// How many of the `n` UIDs are below `uid` (binary search: UIDs ascend).
fn uids_below(n: usize, uid_at: &impl Fn(usize) -> Option<u64>, uid: u64) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if uid_at(mid + 1).is_some_and(|u| u < uid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
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

/// The set as the client wrote it (`1:*`, `4,7:9`), for audit records; past
/// `archive_core::audit::MAX_SET_BYTES` the rest is left off (the record marks the cut).
pub(crate) fn written(set: &SequenceSet) -> String {
    let part = |s: &SeqOrUid| match s {
        SeqOrUid::Value(n) => n.to_string(),
        SeqOrUid::Asterisk => "*".to_string(),
    };
    let mut out = String::new();
    for seq in set.0.as_ref() {
        if out.len() > archive_core::audit::MAX_SET_BYTES {
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        match seq {
            Sequence::Single(s) => out.push_str(&part(s)),
            Sequence::Range(a, b) => out.push_str(&format!("{}:{}", part(a), part(b))),
        }
    }
    out
}

/// Numbers as a compact sequence set in the order given (archive-core's, shared with the
/// `view` audit records).
pub(crate) use archive_core::audit::compact_set;

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn a_set_is_written_back_as_the_client_wrote_it() {
        for s in ["1:*", "4,7:9", "*:3,2", "1"] {
            assert_eq!(written(&set(s)), s);
        }
    }

    /// The message numbers `s` names in a mailbox whose UIDs are `uids`.
    fn numbers(s: &str, uids: &[u64], uid: bool) -> Result<Vec<usize>, SetError> {
        let at = |k: usize| k.checked_sub(1).and_then(|i| uids.get(i)).copied();
        resolve_in(&set(s), uids.len(), at, uid).map(|n| {
            let listed: Vec<usize> = n.iter().collect();
            assert_eq!(listed.len(), n.len());
            assert_eq!(n.clone().into_iter().collect::<Vec<_>>(), listed);
            listed
        })
    }

    const SPARSE: &[u64] = &[3, 10, 11, 12, 40, 1000];

    #[test]
    fn message_number_sets_merge_overlaps_and_reversed_ranges() {
        let five = &[1, 2, 3, 4, 5][..];
        assert_eq!(numbers("1:*", five, false), Ok(vec![1, 2, 3, 4, 5]));
        assert_eq!(numbers("5:2", five, false), Ok(vec![2, 3, 4, 5]));
        assert_eq!(numbers("*:1", five, false), Ok(vec![1, 2, 3, 4, 5]));
        assert_eq!(numbers("*", five, false), Ok(vec![5]));
        assert_eq!(numbers("4,1:2,2:3,3", five, false), Ok(vec![1, 2, 3, 4]));
        assert_eq!(numbers("1,3,5,5,3", five, false), Ok(vec![1, 3, 5]));
        // Beyond the count: ignored, and `7:*` is `5:7`.
        assert_eq!(numbers("9:12", five, false), Ok(vec![]));
        assert_eq!(numbers("7:*", five, false), Ok(vec![5]));
        assert_eq!(numbers("1", &[], false), Err(SetError::EmptyMailbox));
        assert_eq!(numbers("*", &[], false), Err(SetError::EmptyMailbox));
    }

    #[test]
    fn uid_sets_name_the_uids_that_exist() {
        assert_eq!(numbers("1:*", SPARSE, true), Ok(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(numbers("*", SPARSE, true), Ok(vec![6]));
        assert_eq!(numbers("*:11", SPARSE, true), Ok(vec![3, 4, 5, 6]));
        assert_eq!(numbers("12:4", SPARSE, true), Ok(vec![2, 3, 4]));
        assert_eq!(numbers("4:9,13:39,1001:*", SPARSE, true), Ok(vec![6]));
        assert_eq!(numbers("4:9,13:39", SPARSE, true), Ok(vec![]));
        assert_eq!(
            numbers("3,40,3:3,10:11,11:12", SPARSE, true),
            Ok(vec![1, 2, 3, 4, 5])
        );
        assert_eq!(numbers("4294967295", SPARSE, true), Ok(vec![]));
        // An empty mailbox has no UIDs: nothing, not an error.
        assert_eq!(numbers("1:*", &[], true), Ok(vec![]));
        // A message-number set is not a UID set: 3 is the third message here.
        assert_eq!(numbers("3", SPARSE, false), Ok(vec![3]));
        assert_eq!(numbers("3", SPARSE, true), Ok(vec![1]));
    }

    #[test]
    fn sixteen_thousand_ranges_name_each_message_once_in_as_many_pairs() {
        let uids: Vec<u64> = (1..=6_187).map(|k| k * 3).collect();
        let text = vec!["1:*"; 16_000].join(",");
        for uid in [false, true] {
            let at = |k: usize| k.checked_sub(1).and_then(|i| uids.get(i)).copied();
            let resolved = resolve_in(&set(&text), uids.len(), at, uid).unwrap();
            assert_eq!(resolved.ranges, vec![(1, 6_187)]);
            assert_eq!(resolved.len(), 6_187);
            assert!(resolved.iter().eq(1..=6_187));
        }
        // Disjoint ranges stay apart; adjacent ones join.
        let text: String = (0..16_000)
            .map(|k| format!("{}", 2 * (k % 3000) + 1))
            .collect::<Vec<_>>()
            .join(",");
        let at = |k: usize| k.checked_sub(1).and_then(|i| uids.get(i)).copied();
        let resolved = resolve_in(&set(&text), uids.len(), at, false).unwrap();
        assert_eq!(resolved.ranges.len(), 3000);
        let joined = resolve_in(&set("1:2,3:4,6,5"), uids.len(), at, false).unwrap();
        assert_eq!(joined.ranges, vec![(1, 6)]);
    }
}
