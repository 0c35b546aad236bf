//! The RFC 5256 threading algorithms, ORDEREDSUBJECT and REFERENCES, over the header fields
//! of a set of messages. Pure functions: `command/thread.rs` finds the messages and answers.
//!
//! Input order is mailbox order (message numbers ascending); it breaks every tie in sent
//! date, as RFC 5256 §2.2 asks.
//!
//! Senders choose the References, so they choose how deep a thread tree is: every walk of
//! the tree is a loop, and the reply nests at most [`MAX_THREAD_DEPTH`] levels (deeper
//! messages are listed in one chain, in thread order), so encoding and dropping the reply,
//! which imap-types does recursively, stay shallow too.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::num::NonZeroU32;

use imap_next::imap_types::core::{Vec1, Vec2};
use imap_next::imap_types::extensions::thread::Thread;

use crate::mime::SortFields;

/// A message to thread: the number the reply names (sequence number or UID), and its fields.
pub type Item<'a> = (NonZeroU32, &'a SortFields);

/// How deep a THREAD reply nests: below this many levels of branching, a subtree is one
/// chain of its messages in thread order (depth first).
pub const MAX_THREAD_DEPTH: usize = 100;

/// ORDEREDSUBJECT: messages grouped by base subject, each group's first message (by sent
/// date) the parent of the others; threads ordered by the sent date of their first message.
pub fn ordered_subject(items: &[Item<'_>]) -> Vec<Thread> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        items[a]
            .1
            .subject
            .cmp(&items[b].1.subject)
            .then_with(|| by_date(items, a, b))
    });
    let mut arena = Arena::default();
    let mut roots: Vec<usize> = Vec::new();
    let mut last_subject: Option<&str> = None;
    for i in order {
        let subject = items[i].1.subject.as_str();
        let leaf = arena.new_container(Some(i));
        match roots.last() {
            Some(&root) if last_subject == Some(subject) => arena.attach(root, leaf),
            _ => roots.push(leaf),
        }
        last_subject = Some(subject);
    }
    roots.sort_by(|&a, &b| arena.compare(items, a, b));
    roots
        .iter()
        .filter_map(|&r| arena.to_thread(items, r, 0))
        .collect()
}

/// REFERENCES (RFC 5256 §3): link by Message-ID/References/In-Reply-To with dummies for
/// missing parents, prune dummies, sort the roots, group roots by base subject, sort siblings.
pub fn references(items: &[Item<'_>]) -> Vec<Thread> {
    let mut arena = Arena::default();
    arena.link(items);
    // (2) The root set; (3) the ID table is dropped with `link`'s locals.
    let roots: Vec<usize> = (0..arena.c.len())
        .filter(|&c| arena.c[c].parent.is_none())
        .collect();
    // (4) Prune dummies.
    let roots = arena.prune(roots);
    // (5) Sort the roots by sent date (a dummy by its first child, after sorting those).
    let mut roots = roots;
    for &r in &roots {
        if arena.c[r].message.is_none() {
            arena.sort_children(items, r, false);
        }
    }
    roots.sort_by(|&a, &b| arena.compare(items, a, b));
    // (6) Group roots with the same base subject.
    let roots = arena.group_by_subject(items, roots);
    // (7) Sort every set of siblings by sent date, depth first.
    let mut roots = roots;
    for &r in &roots {
        arena.sort_children(items, r, true);
    }
    roots.sort_by(|&a, &b| arena.compare(items, a, b));
    roots
        .iter()
        .filter_map(|&r| arena.to_thread(items, r, 0))
        .collect()
}

fn by_date(items: &[Item<'_>], a: usize, b: usize) -> Ordering {
    items[a].1.sent_us.cmp(&items[b].1.sent_us).then(a.cmp(&b))
}

#[derive(Default)]
struct Container {
    message: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

#[derive(Default)]
struct Arena {
    c: Vec<Container>,
}

impl Arena {
    fn new_container(&mut self, message: Option<usize>) -> usize {
        self.c.push(Container {
            message,
            ..Container::default()
        });
        self.c.len() - 1
    }

    /// `a` is `b` or one of its ancestors.
    fn is_ancestor(&self, a: usize, b: usize) -> bool {
        // A container without children is nobody's ancestor: no walk (messages mostly
        // arrive after what they reply to, and their container is new).
        if self.c[a].children.is_empty() {
            return a == b;
        }
        let mut at = Some(b);
        while let Some(x) = at {
            if x == a {
                return true;
            }
            at = self.c[x].parent;
        }
        false
    }

    fn attach(&mut self, parent: usize, child: usize) {
        self.c[child].parent = Some(parent);
        self.c[parent].children.push(child);
    }

    fn detach(&mut self, child: usize) {
        if let Some(p) = self.c[child].parent.take() {
            self.c[p].children.retain(|&x| x != child);
        }
    }

    /// (1) Builds the containers and their links.
    fn link(&mut self, items: &[Item<'_>]) {
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, (_, f)) in items.iter().enumerate() {
            // (A) The message's container: a dummy already made for its ID, else a new one;
            // a missing or duplicate Message-ID makes the message unique.
            let this = match f.message_id.as_deref() {
                Some(id) => match ids.get(id) {
                    Some(&c) if self.c[c].message.is_none() => {
                        self.c[c].message = Some(i);
                        c
                    }
                    Some(_) => self.new_container(Some(i)),
                    None => {
                        let c = self.new_container(Some(i));
                        ids.insert(id, c);
                        c
                    }
                },
                None => self.new_container(Some(i)),
            };
            let mut refs = Vec::with_capacity(f.references.len());
            for r in &f.references {
                let c = match ids.get(r.as_str()) {
                    Some(&c) => c,
                    None => {
                        let c = self.new_container(None);
                        ids.insert(r.as_str(), c);
                        c
                    }
                };
                refs.push(c);
            }
            // Link the references in order, keeping links that exist and refusing loops.
            for pair in refs.windows(2) {
                let (parent, child) = (pair[0], pair[1]);
                if self.c[child].parent.is_none() && !self.is_ancestor(child, parent) {
                    self.attach(parent, child);
                }
            }
            // (B) The last reference is the parent, replacing one guessed before.
            if let Some(&parent) = refs.last() {
                if self.c[this].parent != Some(parent) && !self.is_ancestor(this, parent) {
                    self.detach(this);
                    self.attach(parent, this);
                }
            }
        }
    }

    /// (4) Drops childless dummies and splices other dummies' children into their place,
    /// except dummies at the root with more than one child. Children before parents, in a
    /// loop (the tree is as deep as the References say).
    fn prune(&mut self, roots: Vec<usize>) -> Vec<usize> {
        let mut is_root = vec![false; self.c.len()];
        for &r in &roots {
            is_root[r] = true;
        }
        // What each pruned container leaves in its parent's list: itself, its children
        // (a spliced dummy) or nothing.
        let mut replaced_by: Vec<Vec<usize>> = vec![Vec::new(); self.c.len()];
        for c in self.postorder(&roots) {
            let children: Vec<usize> = std::mem::take(&mut self.c[c].children)
                .into_iter()
                .flat_map(|k| std::mem::take(&mut replaced_by[k]))
                .collect();
            let dummy = self.c[c].message.is_none();
            if dummy && (children.len() == 1 || !is_root[c]) {
                for &k in &children {
                    self.c[k].parent = self.c[c].parent;
                }
                replaced_by[c] = children;
            } else if dummy && children.is_empty() {
                // Dropped.
            } else {
                for &k in &children {
                    self.c[k].parent = Some(c);
                }
                self.c[c].children = children;
                replaced_by[c] = vec![c];
            }
        }
        roots
            .iter()
            .flat_map(|&r| std::mem::take(&mut replaced_by[r]))
            .collect()
    }

    /// The containers under `roots` (roots included), each after all of its descendants.
    fn postorder(&self, roots: &[usize]) -> Vec<usize> {
        let mut out = self.preorder(roots);
        out.reverse();
        out
    }

    /// The containers under `roots` (roots included), each before its descendants, depth
    /// first in child order.
    fn preorder(&self, roots: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pending: Vec<usize> = roots.iter().rev().copied().collect();
        while let Some(c) = pending.pop() {
            out.push(c);
            pending.extend(self.c[c].children.iter().rev());
        }
        out
    }

    /// The message that stands for a container: itself, or a dummy's first child's.
    fn representative(&self, mut c: usize) -> Option<usize> {
        loop {
            match self.c[c].message {
                Some(m) => return Some(m),
                None => c = *self.c[c].children.first()?,
            }
        }
    }

    fn compare(&self, items: &[Item<'_>], a: usize, b: usize) -> Ordering {
        match (self.representative(a), self.representative(b)) {
            (Some(x), Some(y)) => by_date(items, x, y),
            (x, y) => x.is_none().cmp(&y.is_none()),
        }
    }

    /// Sorts `c`'s children by sent date; `deep`: every set of siblings below it too,
    /// deepest first (a dummy sorts by its first child, so that must be settled before).
    fn sort_children(&mut self, items: &[Item<'_>], c: usize, deep: bool) {
        let order = if deep { self.postorder(&[c]) } else { vec![c] };
        for x in order {
            let mut children = std::mem::take(&mut self.c[x].children);
            children.sort_by(|&a, &b| self.compare(items, a, b));
            self.c[x].children = children;
        }
    }

    /// (6) Roots that share a base subject end up in one thread.
    fn group_by_subject(&mut self, items: &[Item<'_>], roots: Vec<usize>) -> Vec<usize> {
        let subject = |a: &Arena, c: usize| -> Option<(String, bool)> {
            let m = a.representative(c)?;
            let f = items[m].1;
            (!f.subject.is_empty()).then(|| (f.subject.clone(), f.is_reply))
        };
        let dummy = |a: &Arena, c: usize| a.c[c].message.is_none();
        // (B) The subject table.
        let mut table: HashMap<String, usize> = HashMap::new();
        for &r in &roots {
            let Some((s, reply)) = subject(self, r) else {
                continue;
            };
            match table.get(&s) {
                None => {
                    table.insert(s, r);
                }
                Some(&t) => {
                    let t_reply = subject(self, t).is_some_and(|(_, x)| x);
                    if !dummy(self, t) && (dummy(self, r) || (t_reply && !reply)) {
                        table.insert(s, r);
                    }
                }
            }
        }
        // (C) Merge.
        let mut slots: Vec<Option<usize>> = roots.into_iter().map(Some).collect();
        for i in 0..slots.len() {
            let Some(r) = slots[i] else { continue };
            let Some((s, reply)) = subject(self, r) else {
                continue;
            };
            let Some(&t) = table.get(&s) else { continue };
            if t == r {
                continue;
            }
            let t_reply = subject(self, t).is_some_and(|(_, x)| x);
            let remove = |slots: &mut Vec<Option<usize>>, c: usize| {
                for slot in slots.iter_mut() {
                    if *slot == Some(c) {
                        *slot = None;
                    }
                }
            };
            if dummy(self, r) && dummy(self, t) {
                let moved = std::mem::take(&mut self.c[r].children);
                for k in moved {
                    self.c[k].parent = None;
                    self.attach(t, k);
                }
                remove(&mut slots, r);
            } else if dummy(self, t) {
                self.attach(t, r);
                remove(&mut slots, r);
            } else if dummy(self, r) {
                self.attach(r, t);
                remove(&mut slots, t);
                table.insert(s, r);
            } else if reply && !t_reply {
                self.attach(t, r);
                remove(&mut slots, r);
            } else {
                let d = self.new_container(None);
                for slot in slots.iter_mut() {
                    if *slot == Some(t) {
                        *slot = Some(d);
                    }
                }
                remove(&mut slots, r);
                self.attach(d, t);
                self.attach(d, r);
                table.insert(s, d);
            }
        }
        slots.into_iter().flatten().collect()
    }

    /// The IMAP form of the tree under `c`, which is `depth` levels down: chains of only
    /// children become one `prefix`, a dummy with several children is `Nested`, a dummy with
    /// one child is that child. At [`MAX_THREAD_DEPTH`] the whole subtree is one chain.
    fn to_thread(&self, items: &[Item<'_>], c: usize, depth: usize) -> Option<Thread> {
        if depth >= MAX_THREAD_DEPTH {
            let chain: Vec<NonZeroU32> = self
                .preorder(&[c])
                .into_iter()
                .filter_map(|x| self.c[x].message)
                .map(|m| items[m].0)
                .collect();
            return Some(Thread::Members {
                prefix: Vec1::try_from(chain).ok()?,
                answers: None,
            });
        }
        let Some(m) = self.c[c].message else {
            let mut kids: Vec<Thread> = self.c[c]
                .children
                .iter()
                .filter_map(|&k| self.to_thread(items, k, depth + 1))
                .collect();
            return match kids.len() {
                0 => None,
                1 => kids.pop(),
                _ => Vec2::try_from(kids)
                    .ok()
                    .map(|answers| Thread::Nested { answers }),
            };
        };
        let mut prefix = vec![items[m].0];
        let mut at = c;
        while let [only] = self.c[at].children.as_slice() {
            let Some(next) = self.c[*only].message else { break };
            prefix.push(items[next].0);
            at = *only;
        }
        let mut kids: Vec<Thread> = self.c[at]
            .children
            .iter()
            .filter_map(|&k| self.to_thread(items, k, depth + 1))
            .collect();
        let answers = match kids.len() {
            0 => None,
            // A lone dummy child: its content continues this thread.
            1 => match kids.pop() {
                Some(Thread::Members {
                    prefix: more,
                    answers,
                }) => {
                    prefix.extend(more);
                    answers
                }
                Some(Thread::Nested { answers }) => Some(answers),
                None => None,
            },
            _ => Vec2::try_from(kids).ok(),
        };
        let prefix = Vec1::try_from(prefix).ok()?;
        Some(Thread::Members { prefix, answers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (message-id, references, subject, sent date) in mailbox order; message n is number n.
    fn fields(spec: &[(&str, &str, &str, i64)]) -> Vec<SortFields> {
        spec.iter()
            .map(|(id, refs, subject, date)| {
                let (subject, is_reply) = crate::mime::base_subject(subject);
                SortFields {
                    sent_us: *date,
                    subject: subject.to_uppercase(),
                    is_reply,
                    message_id: (!id.is_empty()).then(|| id.to_string()),
                    references: refs.split_whitespace().map(str::to_string).collect(),
                    ..SortFields::default()
                }
            })
            .collect()
    }

    fn render(threads: &[Thread]) -> String {
        threads.iter().map(|t| t.to_string()).collect()
    }

    fn run(f: fn(&[Item<'_>]) -> Vec<Thread>, spec: &[(&str, &str, &str, i64)]) -> String {
        let fs = fields(spec);
        let items: Vec<Item<'_>> = fs
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((NonZeroU32::new(i as u32 + 1)?, f)))
            .collect();
        render(&f(&items))
    }

    #[test]
    fn ordered_subject_groups_by_base_subject_and_orders_by_date() {
        let spec = [
            ("", "", "Lunch", 30),
            ("", "", "Re: Plans", 20),
            ("", "", "Plans", 10),
            ("", "", "re: lunch", 40),
            ("", "", "Other", 25),
            ("", "", "Fwd: Plans", 50),
            ("", "", "[x] lunch (fwd)", 35),
        ];
        // Plans (3, then 2 and 6), Other (5), Lunch (1, then 7 and 4).
        assert_eq!(run(ordered_subject, &spec), "(3 (2)(6))(5)(1 (7)(4))");
        assert_eq!(
            run(ordered_subject, &[("", "", "a", 1), ("", "", "a", 2)]),
            "(1 2)"
        );
        assert_eq!(run(ordered_subject, &[]), "");
    }

    #[test]
    fn references_builds_chains_and_branches() {
        let spec = [
            ("a", "", "Topic", 10),
            ("b", "a", "Re: Topic", 20),
            ("c", "a b", "Re: Topic", 30),
            ("d", "a", "Re: Topic", 25),
            ("e", "", "Unrelated", 5),
        ];
        // e is oldest; a has children b (20, with child c) and d (25).
        assert_eq!(run(references, &spec), "(5)(1 (2 3)(4))");
    }

    #[test]
    fn references_keeps_a_dummy_root_with_several_children() {
        // Both reply to a message not in the mailbox, with different subjects.
        let spec = [
            ("b", "missing", "One", 20),
            ("c", "missing", "Two", 10),
            ("d", "", "Three", 30),
        ];
        assert_eq!(run(references, &spec), "((2)(1))(3)");
        // One child: the dummy goes, the child is a root.
        let spec = [("b", "missing", "One", 20), ("d", "", "Two", 10)];
        assert_eq!(run(references, &spec), "(2)(1)");
    }

    #[test]
    fn references_splices_dummies_inside_a_thread() {
        // c names a parent "x" that is missing, whose parent is a.
        let spec = [("a", "", "Topic", 10), ("c", "a x", "Re: Topic", 30)];
        assert_eq!(run(references, &spec), "(1 2)");
    }

    #[test]
    fn references_groups_roots_by_subject() {
        // No references at all: a reply joins the original as its child.
        let spec = [("a", "", "Topic", 10), ("b", "", "Re: Topic", 20)];
        assert_eq!(run(references, &spec), "(1 2)");
        // Two originals with the same subject: siblings under a dummy.
        let spec = [("a", "", "Topic", 10), ("b", "", "Topic", 20)];
        assert_eq!(run(references, &spec), "((1)(2))");
        // Empty subjects are never grouped.
        let spec = [("a", "", "", 10), ("b", "", "Re:", 20)];
        assert_eq!(run(references, &spec), "(1)(2)");
    }

    #[test]
    fn references_survives_loops_duplicates_and_missing_ids() {
        // a says its parent is b and b says its parent is a: the second link would loop.
        let spec = [("a", "b", "x", 10), ("b", "a", "y", 20)];
        assert_eq!(run(references, &spec), "(2 1)");
        // A duplicate Message-ID is a message of its own; no Message-ID too.
        let spec = [("a", "", "p", 10), ("a", "", "q", 20), ("", "a", "r", 30)];
        assert_eq!(run(references, &spec), "(1 3)(2)");
        // A message naming itself as its parent.
        let spec = [("a", "a", "p", 10)];
        assert_eq!(run(references, &spec), "(1)");
    }

    /// Nesting depth of a reply, counted without recursion.
    fn nesting(threads: &[Thread]) -> usize {
        let mut deepest = 0;
        let mut pending: Vec<(&Thread, usize)> = threads.iter().map(|t| (t, 1)).collect();
        while let Some((t, depth)) = pending.pop() {
            deepest = deepest.max(depth);
            let answers = match t {
                Thread::Members { answers, .. } => answers.as_ref(),
                Thread::Nested { answers } => Some(answers),
            };
            for a in answers.into_iter().flat_map(|a| a.as_ref()) {
                pending.push((a, depth + 1));
            }
        }
        deepest
    }

    /// Every message number in a reply, counted without recursion.
    fn members(threads: &[Thread]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut pending: Vec<&Thread> = threads.iter().collect();
        while let Some(t) = pending.pop() {
            let answers = match t {
                Thread::Members { prefix, answers } => {
                    out.extend(prefix.as_ref().iter().map(|n| n.get()));
                    answers.as_ref()
                }
                Thread::Nested { answers } => Some(answers),
            };
            pending.extend(answers.into_iter().flat_map(|a| a.as_ref()));
        }
        out.sort_unstable();
        out
    }

    /// A spine of replies, each with one more reply beside the next: the tree branches at
    /// every level, so nothing collapses into a chain. Run on a 2 MiB stack (a tokio
    /// thread's): a walk that recurses once per level overflows it.
    #[test]
    fn a_tree_as_deep_as_the_mailbox_is_walked_without_recursion_and_answered_shallow() {
        const SPINE: usize = 20_000;
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let mut spec: Vec<(String, String, String, i64)> = Vec::new();
                for i in 0..SPINE {
                    let parent = if i == 0 {
                        String::new()
                    } else {
                        format!("s{}", i - 1)
                    };
                    spec.push((format!("s{i}"), parent, format!("s{i}"), 2 * i as i64));
                    spec.push((
                        format!("l{i}"),
                        format!("s{i}"),
                        format!("l{i}"),
                        2 * i as i64 + 1,
                    ));
                }
                let spec: Vec<(&str, &str, &str, i64)> = spec
                    .iter()
                    .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), *d))
                    .collect();
                let fs = fields(&spec);
                let items: Vec<Item<'_>> = fs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, f)| Some((NonZeroU32::new(i as u32 + 1)?, f)))
                    .collect();
                for algorithm in [references, ordered_subject] {
                    let threads = algorithm(&items);
                    assert!(nesting(&threads) <= MAX_THREAD_DEPTH + 1, "{}", nesting(&threads));
                    let all: Vec<u32> = (1..=2 * SPINE as u32).collect();
                    assert_eq!(members(&threads), all);
                }
                let threads = references(&items);
                assert_eq!(threads.len(), 1);
                assert_eq!(nesting(&threads), MAX_THREAD_DEPTH + 1);
            })
            .expect("spawn")
            .join()
            .expect("no panic");
    }
}
