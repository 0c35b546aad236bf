//! Exports written as several volumes ([`Volume`]): each volume is checked as a bundle of its
//! own; [`check_volume_fields`] checks what one volume says about itself, and
//! [`check_volume_set`] that the volumes given together belong to one export, that none is
//! missing or given twice, and that they cover it without gap or overlap — a range export's
//! parts tile its range, so completeness holds for the whole range, not only per volume.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// What one volume's manifest says about its place, against what it holds.
pub(super) fn check_volume_fields(manifest: &Manifest, messages: &BTreeSet<u64>, report: &mut Report) {
    let Some(v) = &manifest.volume else {
        return;
    };
    if v.count < 2 || v.index == 0 || v.index > v.count {
        report.problem(format!(
            "{MANIFEST}: volume {} of {} is not a volume of an export of several",
            v.index, v.count
        ));
    }
    if v.first_seq == 0 || v.first_seq > v.last_seq {
        report.problem(format!(
            "{MANIFEST}: volume records {}..={} are not a range",
            v.first_seq, v.last_seq
        ));
        return;
    }
    match &manifest.selection {
        Selection::Range {
            first_seq, last_seq, ..
        } => {
            if v.first_seq < *first_seq || v.last_seq > *last_seq {
                report.problem(format!(
                    "{MANIFEST}: volume records {}..={} are outside the export's range {first_seq}..={last_seq}",
                    v.first_seq, v.last_seq
                ));
            }
        }
        Selection::Filter { .. } => {
            // A filter's volume spans exactly its messages, so neighbours cannot claim one.
            let held = (messages.first().copied(), messages.last().copied());
            if held != (Some(v.first_seq), Some(v.last_seq)) {
                report.problem(format!(
                    "{MANIFEST}: volume says its messages run from {} to {}, the bundle's run {}",
                    v.first_seq,
                    v.last_seq,
                    match held {
                        (Some(a), Some(b)) => format!("from {a} to {b}"),
                        _ => "nowhere: it holds none".into(),
                    }
                ));
            }
        }
    }
}

/// Checks the bundles given together (each already checked alone, by name): they are grouped
/// by export, and each export of several volumes must be whole. A bundle that is not a
/// volume stands alone. The returned report holds only what concerns the set.
pub fn check_volume_set(bundles: &[(&str, &Report)]) -> Report {
    let mut set = Report::default();
    let mut exports: BTreeMap<&str, Vec<(&str, &Manifest, &Checkpoint, &Volume)>> = BTreeMap::new();
    for (name, report) in bundles {
        // A bundle whose manifest or checkpoint did not verify has its problem already.
        let (Some(manifest), Some(checkpoint)) = (&report.manifest, &report.checkpoint) else {
            continue;
        };
        if let Some(volume) = &manifest.volume {
            exports
                .entry(volume.export_id.as_str())
                .or_default()
                .push((name, manifest, checkpoint, volume));
        }
    }
    for (id, mut volumes) in exports {
        volumes.sort_by_key(|(_, _, _, v)| v.index);
        check_export(id, &volumes, &mut set);
    }
    set
}

/// One export's volumes, sorted by number.
fn check_export(id: &str, volumes: &[(&str, &Manifest, &Checkpoint, &Volume)], set: &mut Report) {
    let Some(&(first_name, first, first_cp, first_volume)) = volumes.first() else {
        return;
    };
    let problems_before = set.problems.len() as u64 + set.more_problems;
    // Everything but the part must be the same in every volume of the export.
    for &(name, m, cp, v) in &volumes[1..] {
        let differs = [
            (
                "archive",
                m.origin != first.origin || m.public_key != first.public_key,
            ),
            ("selection", m.selection != first.selection),
            ("checkpoint", cp != first_cp || m.tree_size != first.tree_size),
            ("volume count", v.count != first_volume.count),
            (
                "export time or exporter",
                m.exported_at != first.exported_at || m.exported_by != first.exported_by,
            ),
        ];
        for (what, _) in differs.iter().filter(|(_, d)| *d) {
            set.problem(format!(
                "{name} and {first_name} say they are volumes of export {id}, but their {what} differs"
            ));
        }
    }
    let count = first_volume.count;
    let mut given: BTreeMap<u64, &str> = BTreeMap::new();
    for &(name, _, _, v) in volumes {
        if let Some(other) = given.insert(v.index, name) {
            set.problem(format!(
                "volume {} of export {id} is given twice ({other} and {name})",
                v.index
            ));
        }
    }
    let missing = missing_volumes(count, &given);
    if missing.count > 0 {
        set.problem(format!(
            "export {id} has {count} volumes; {} not given: without {} the export is not whole",
            list(&missing.first, missing.count),
            if missing.count == 1 { "it" } else { "them" }
        ));
    }
    // The parts follow each other: a range's tile it, a filter's do not overlap.
    let mut messages = 0u64;
    let mut previous: Option<(&str, &Volume)> = None;
    for &(name, m, _, v) in volumes {
        messages = messages.saturating_add(m.message_count);
        if let Some((previous_name, p)) = previous.filter(|(_, p)| p.index != v.index) {
            let adjacent = v.index == p.index + 1;
            match &first.selection {
                Selection::Range { .. } if adjacent && v.first_seq != p.last_seq.saturating_add(1) => set
                    .problem(format!(
                        "{previous_name} ends at record {} and {name} starts at record {}: the volumes do \
                         not follow each other",
                        p.last_seq, v.first_seq
                    )),
                _ if v.first_seq <= p.last_seq => set.problem(format!(
                    "{previous_name} (records {}..={}) and {name} (records {}..={}) overlap",
                    p.first_seq, p.last_seq, v.first_seq, v.last_seq
                )),
                _ => {}
            }
        }
        previous = Some((name, v));
    }
    let whole = set.problems.len() as u64 + set.more_problems == problems_before;
    match &first.selection {
        Selection::Range {
            first_seq, last_seq, ..
        } => {
            let (start, end) = (first_volume.first_seq, previous.map_or(0, |(_, v)| v.last_seq));
            if missing.count == 0 && (start, end) != (*first_seq, *last_seq) {
                set.problem(format!(
                    "the volumes of export {id} cover records {start}..={end}, the export's range is \
                     {first_seq}..={last_seq}"
                ));
            } else if whole {
                set.proven.push(format!(
                    "complete: the {count} volumes of export {id} are all here and belong together; \
                     they hold every record from {first_seq} to {last_seq} ({messages} messages), no \
                     more and no fewer"
                ));
            }
        }
        Selection::Filter { .. } if whole => set.proven.push(format!(
            "the {count} volumes of export {id} are all here and belong together ({messages} messages)"
        )),
        Selection::Filter { .. } => {}
    }
}

/// Volumes of `1..=count` not among `given`: how many, and the first few by number. The
/// count is the manifest's, a number from outside: nothing here walks or allocates by it.
struct Missing {
    count: u64,
    first: Vec<u64>,
}

/// Missing volumes named at most.
const MISSING_NAMED: usize = 10;

fn missing_volumes(count: u64, given: &BTreeMap<u64, &str>) -> Missing {
    let numbered = || given.keys().copied().filter(|i| (1..=count).contains(i));
    let present = numbered().count() as u64;
    let mut first = Vec::new();
    let mut next = 1u64;
    // Each given volume ends a gap of missing ones; the end of the count ends the last.
    for index in numbered().chain([count.saturating_add(1)]) {
        while next < index && first.len() < MISSING_NAMED {
            first.push(next);
            next += 1;
        }
        if first.len() >= MISSING_NAMED {
            break;
        }
        next = index.saturating_add(1);
    }
    Missing {
        count: count - present,
        first,
    }
}

/// "volume 2", "volumes 2, 3 and 5", "volumes 2, 3, … (12 in all)".
fn list(first: &[u64], count: u64) -> String {
    let text: Vec<String> = first.iter().map(u64::to_string).collect();
    match text.as_slice() {
        [one] if count == 1 => format!("volume {one}"),
        [rest @ .., last] if count == first.len() as u64 => format!("volumes {} and {last}", rest.join(", ")),
        _ => format!("volumes {}, … ({count} in all)", text.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_volumes_are_counted_and_the_first_named_without_walking_the_count() {
        let given: BTreeMap<u64, &str> = [(2, "b"), (3, "c"), (7, "g")].into();
        let m = missing_volumes(8, &given);
        assert_eq!((m.count, m.first.as_slice()), (5, &[1, 4, 5, 6, 8][..]));
        assert_eq!(list(&m.first, m.count), "volumes 1, 4, 5, 6 and 8");
        let m = missing_volumes(3, &given);
        assert_eq!((m.count, m.first.as_slice()), (1, &[1][..]));
        assert_eq!(list(&m.first, m.count), "volume 1");
        // A count from a hostile manifest: answered at once.
        let m = missing_volumes(u64::MAX, &given);
        assert_eq!(m.count, u64::MAX - 3);
        assert_eq!(m.first, vec![1, 4, 5, 6, 8, 9, 10, 11, 12, 13]);
        assert!(list(&m.first, m.count).ends_with(&format!("({} in all)", u64::MAX - 3)));
        let all: BTreeMap<u64, &str> = [(1, "a"), (2, "b")].into();
        assert_eq!(missing_volumes(2, &all).count, 0);
    }
}
