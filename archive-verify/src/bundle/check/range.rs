//! Range exports: the range's leaves, streamed, rebuild the signed root with the range proof;
//! every message record among them has its file and no file is from outside; a time range's
//! boundary records pin it to its window.

use std::io::{BufRead, BufReader, Read};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::*;
use crate::leaf::{Leaf, LeafBody};
use crate::merkle::{leaf_hash, root_from_range, Hash};
use crate::note::Checkpoint;

/// Range exports: every leaf of the range rebuilds the signed root with the range proof, and
/// every message record among them has its file in the bundle.
pub(super) fn check_range(
    zip: &mut Bundle,
    manifest: &Manifest,
    inventory: &Inventory,
    checkpoint: &Checkpoint,
    report: &mut Report,
) {
    let Selection::Range {
        first_seq: export_first,
        last_seq: export_last,
        since,
        until,
    } = &manifest.selection
    else {
        return;
    };
    // A volume proves its part; the time range's boundaries are at the export's ends.
    let Some((first, last)) = manifest.span() else {
        return;
    };
    let size = checkpoint.size;
    if first == 0 || first > last || last > size {
        report.problem(format!(
            "{MANIFEST}: range {first}..={last} is not a range of a tree of size {size}"
        ));
        return;
    }
    let proof: RangeProof = match read_json(zip, RANGE_PROOF) {
        Ok(p) => p,
        Err(e) => {
            report.problem(format!("{RANGE_PROOF}: {e}"));
            return;
        }
    };
    if (proof.first_seq, proof.last_seq, proof.tree_size) != (first, last, size) {
        report.problem(format!(
            "{RANGE_PROOF}: it is not the proof of range {first}..={last} in size {size}"
        ));
        return;
    }
    let Some(subtrees) = hashes(&proof.subtrees) else {
        report.problem(format!("{RANGE_PROOF}: a hash is not 32 bytes of base64"));
        return;
    };
    let bounds = match (
        since.as_deref().map(parse_time).transpose(),
        until.as_deref().map(parse_time).transpose(),
    ) {
        (Ok(s), Ok(u)) => (s, u),
        _ => {
            report.problem(format!("{MANIFEST}: since/until is not an RFC 3339 time"));
            return;
        }
    };
    let file = match zip.by_name(RANGE_LEAVES) {
        Ok(f) => f,
        Err(e) => {
            report.problem(format!("{RANGE_LEAVES}: {e}"));
            return;
        }
    };
    let mut walk = RangeWalk {
        reader: BufReader::new(file),
        next_seq: first,
        first,
        last,
        last_time: i64::MIN,
        first_time: None,
        files: inventory.messages.iter().copied().peekable(),
        messages: 0,
        unaccounted: Vec::new(),
        problem: None,
    };
    let root = root_from_range(
        first - 1,
        last,
        size,
        std::iter::from_fn(|| walk.next_hash()),
        subtrees.into_iter(),
    );
    if let Some(p) = walk.problem.take() {
        report.problem(format!("{RANGE_LEAVES}: {p}"));
        return;
    }
    if root != Some(checkpoint.root) {
        report.problem(format!(
            "{RANGE_LEAVES} and {RANGE_PROOF} do not rebuild the signed root: records of {first}..={last} \
             are missing, added, altered or reordered"
        ));
        return;
    }
    // Every message record of the range has its file, and no file is from outside the range.
    walk.files_left_over();
    for problem in walk.unaccounted.drain(..) {
        report.problem(problem);
    }
    let (since, until) = bounds;
    if let Some(since) = since {
        if walk.first_time.is_some_and(|t| t < since) {
            report.problem(format!("record {first} is older than the range's start"));
        }
        if first > 1
            && first == *export_first
            && !boundary_ok(
                proof.before.as_ref(),
                first - 1,
                checkpoint,
                |t| t < since,
                report,
            )
        {
            return;
        }
    }
    if let Some(until) = until {
        if walk.last_time >= until {
            report.problem(format!("record {last} is not older than the range's end"));
        }
        let export_end = last == *export_last;
        if export_end && last < size {
            if !boundary_ok(proof.after.as_ref(), last + 1, checkpoint, |t| t >= until, report) {
                return;
            }
        } else if export_end {
            report.caveats.push(format!(
                "the range ends with the checkpoint (record {size}): records received later with a \
                 time before the range's end are not in it"
            ));
        }
    }
    report.proven.push(format!(
        "complete: the bundle holds every record from {first} to {last} ({} messages), no more and no fewer",
        walk.messages
    ));
}

/// A time range's boundary record: proven in the tree, and on the right side of the bound.
fn boundary_ok(
    proof: Option<&InclusionProof>,
    seq: u64,
    checkpoint: &Checkpoint,
    outside: impl Fn(i64) -> bool,
    report: &mut Report,
) -> bool {
    let Some(proof) = proof else {
        report.problem(format!(
            "{RANGE_PROOF}: the boundary record {seq} is missing: the time range is not proven"
        ));
        return false;
    };
    match check_inclusion(proof, seq, checkpoint) {
        Ok(leaf) if outside(leaf.time_us) => true,
        Ok(_) => {
            report.problem(format!(
                "record {seq} next to the range falls inside the time range: the range is cut short"
            ));
            false
        }
        Err(e) => {
            report.problem(format!("{RANGE_PROOF}: boundary record {seq}: {e}"));
            false
        }
    }
}

fn parse_time(text: &str) -> Result<i64, ()> {
    let t: jiff::Timestamp = text.parse().map_err(|_| ())?;
    Ok(t.as_microsecond())
}

/// Reads `range/leaves.jsonl` line by line, yielding leaf hashes and noting the first problem;
/// matches the range's message records with the bundle's message files as it goes (both are
/// in seq order), so memory does not grow with the range.
struct RangeWalk<R: BufRead, F: Iterator<Item = u64>> {
    reader: R,
    next_seq: u64,
    first: u64,
    last: u64,
    last_time: i64,
    first_time: Option<i64>,
    /// The bundle's message files, by seq, not yet matched with a record.
    files: std::iter::Peekable<F>,
    /// Message records in the range.
    messages: u64,
    /// Message records without a file and files without a message record.
    unaccounted: Vec<String>,
    problem: Option<String>,
}

impl<R: BufRead, F: Iterator<Item = u64>> RangeWalk<R, F> {
    /// Accounts for message record `seq`: every file before it has no record in the range.
    fn message_record(&mut self, seq: u64) {
        self.messages += 1;
        while let Some(file) = self.files.next_if(|&f| f < seq) {
            self.unaccounted_file(file);
        }
        if self.files.next_if_eq(&seq).is_none() && self.unaccounted.len() < MAX_PROBLEMS {
            self.unaccounted.push(format!(
                "record {seq} of the range is a message, but {} is not in the bundle",
                message_file(seq)
            ));
        }
    }

    fn files_left_over(&mut self) {
        while let Some(file) = self.files.next() {
            self.unaccounted_file(file);
        }
    }

    fn unaccounted_file(&mut self, seq: u64) {
        if self.unaccounted.len() < MAX_PROBLEMS {
            self.unaccounted.push(format!(
                "{} is not a message record of the range {}..={}",
                message_file(seq),
                self.first,
                self.last
            ));
        }
    }

    fn next_hash(&mut self) -> Option<Hash> {
        if self.problem.is_some() {
            return None;
        }
        let mut line = Vec::new();
        match self
            .reader
            .by_ref()
            .take(LEAF_LINE_MAX)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => {
                if self.next_seq <= self.last {
                    self.problem = Some(format!("it ends before record {}", self.next_seq));
                }
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                self.problem = Some(format!("unreadable: {e}"));
                return None;
            }
        }
        let parsed: Result<RangeLeaf, _> = serde_json::from_slice(&line);
        let outcome = parsed
            .map_err(|e| format!("line {}: not a leaf line: {e}", self.next_seq))
            .and_then(|l| {
                let bytes = B64
                    .decode(&l.leaf)
                    .map_err(|_| format!("record {}: the leaf is not base64", l.seq))?;
                let leaf = Leaf::decode(&bytes).map_err(|e| format!("record {}: {e}", l.seq))?;
                if l.seq != self.next_seq || leaf.seq != self.next_seq {
                    return Err(format!(
                        "record {} is where record {} belongs (a record missing, added or reordered)",
                        leaf.seq, self.next_seq
                    ));
                }
                Ok((leaf, bytes))
            });
        let (leaf, bytes) = match outcome {
            Ok(v) => v,
            Err(p) => {
                self.problem = Some(p);
                return None;
            }
        };
        if leaf.time_us < self.last_time {
            self.problem = Some(format!("record {} is older than the record before it", leaf.seq));
            return None;
        }
        self.last_time = leaf.time_us;
        self.first_time.get_or_insert(leaf.time_us);
        if matches!(leaf.body, LeafBody::Message { .. } | LeafBody::Arrival { .. }) {
            self.message_record(leaf.seq);
        }
        self.next_seq += 1;
        Some(leaf_hash(&bytes))
    }
}
