//! Runs a plan (`criteria`) against the selected view, on the blocking thread `matching`
//! gave it and within its budget. Every part of the plan is evaluated only over the
//! messages still in question: an AND's later parts over what its earlier parts matched,
//! an OR's over what they did not. Parts run cheapest first (one index query for the
//! content keys of a level, view keys, then scans), so a scan reads only the messages
//! the other keys left.

use std::collections::HashSet;

use archive_core::search::query::Node;
use archive_core::search::{Budget, Principal, Query, QueryErrorKind, Stopped};
use archive_core::views::{View, ViewEntry};
use archive_core::Store;

use super::criteria::{Expr, Failure, Received};
use super::scan::Reads;
use crate::condstore::modseq;
use crate::sequence::resolve;
use crate::session::code;

/// Evaluates a plan to one flag per message of the view (index i = message number i+1).
pub(crate) struct Evaluator<'a> {
    pub store: &'a Store,
    /// `None` before login (no content key matches then).
    pub principal: Option<&'a Principal>,
    pub view: &'a View,
    pub budget: &'a Budget,
    entries: Option<Vec<ViewEntry>>,
    /// Header fields of messages scans have read (`scan`).
    pub(super) reads: Reads,
}

impl<'a> Evaluator<'a> {
    pub fn new(
        store: &'a Store,
        principal: Option<&'a Principal>,
        view: &'a View,
        budget: &'a Budget,
    ) -> Self {
        Evaluator {
            store,
            principal,
            view,
            budget,
            entries: None,
            reads: Reads::default(),
        }
    }

    fn all(&self, value: bool) -> Vec<bool> {
        vec![value; self.view.len()]
    }

    pub(super) fn check(&self) -> Result<(), Failure> {
        self.budget.check().map_err(stopped)
    }

    /// The messages `e` matches.
    pub fn eval(&mut self, e: &Expr) -> Result<Vec<bool>, Failure> {
        let everything = self.all(true);
        self.eval_within(e, &everything)
    }

    /// The messages among `within` that `e` matches (none outside it). Recursion follows
    /// the plan, whose depth the parser bounds.
    fn eval_within(&mut self, e: &Expr, within: &[bool]) -> Result<Vec<bool>, Failure> {
        self.check()?;
        if !within.contains(&true) {
            return Ok(self.all(false));
        }
        if e.index_only() {
            return Ok(and(self.indexed(e.to_node())?, within));
        }
        Ok(match e {
            Expr::Const(b) => within.iter().map(|w| *w && *b).collect(),
            Expr::Set { set, uid } => {
                let mut m = self.all(false);
                // A message-number set on an empty mailbox matches nothing.
                for n in resolve(set, self.view, *uid).unwrap_or_default() {
                    if let Some(slot) = n.checked_sub(1).and_then(|i| m.get_mut(i)) {
                        *slot = true;
                    }
                }
                and(m, within)
            }
            Expr::ModSeq(min) => {
                let m = self.view.uids().map(|uid| modseq(uid).get() >= *min).collect();
                and(m, within)
            }
            Expr::Received(r) => {
                let r = *r;
                let m = self.by_entry(|e| match r {
                    Received::Before(start) => e.received_us < start,
                    Received::On(start) => e.received_us >= start && e.received_us < start + 86_400_000_000,
                    Received::Since(start) => e.received_us >= start,
                })?;
                and(m, within)
            }
            Expr::Index(node) => and(self.indexed(node.clone())?, within),
            Expr::Scan(scan) => self.scan(scan, within)?,
            Expr::Not(inner) => {
                let m = self.eval_within(inner, within)?;
                within.iter().zip(m).map(|(w, m)| *w && !m).collect()
            }
            Expr::And(parts) | Expr::Or(parts) => {
                let is_and = matches!(e, Expr::And(_));
                // The content keys of this level are one index query.
                let (content, mut rest): (Vec<&Expr>, Vec<&Expr>) =
                    parts.iter().partition(|p| p.index_only());
                rest.sort_by_key(|p| p.cost());
                let content = match content.len() {
                    0 => None,
                    1 => Some(content[0].to_node()),
                    _ => {
                        let nodes = content.iter().map(|p| p.to_node()).collect();
                        Some(if is_and { Node::And(nodes) } else { Node::Or(nodes) })
                    }
                };
                // AND: what is still matched; OR: what is matched already.
                let mut acc = if is_and { within.to_vec() } else { self.all(false) };
                if let Some(node) = content {
                    let found = and(self.indexed(node)?, within);
                    acc = if is_and { and(acc, &found) } else { found };
                }
                for part in rest {
                    let open: Vec<bool> = if is_and {
                        acc.clone()
                    } else {
                        within.iter().zip(&acc).map(|(w, a)| *w && !a).collect()
                    };
                    let m = self.eval_within(part, &open)?;
                    if is_and {
                        acc = m;
                    } else {
                        acc.iter_mut().zip(m).for_each(|(a, b)| *a |= b);
                    }
                }
                acc
            }
        })
    }

    /// A key on receive time, from the records (no message bytes are decompressed).
    fn by_entry(&mut self, test: impl Fn(&ViewEntry) -> bool) -> Result<Vec<bool>, Failure> {
        if self.entries.is_none() {
            let mut entries = Vec::with_capacity(self.view.len());
            for (i, uid) in self.view.uids().enumerate() {
                if i % 1024 == 0 {
                    self.check()?;
                }
                let e = self
                    .store
                    .view_entry(self.view, uid)
                    .map_err(|e| Failure::store(&e))?;
                entries.push(e);
            }
            self.entries = Some(entries);
        }
        Ok(self.entries.iter().flatten().map(test).collect())
    }

    /// Messages of the view the index finds for `node` as the session's principal: one
    /// index search.
    pub(super) fn indexed(&mut self, node: Node) -> Result<Vec<bool>, Failure> {
        let Some(principal) = self.principal else {
            return Ok(self.all(false));
        };
        let query = Query::from_node(node).map_err(|e| match e.kind() {
            QueryErrorKind::TooDeep | QueryErrorKind::TooManyTerms => {
                Failure::limit(format!("search too complex: {}", e.problem))
            }
            QueryErrorKind::Syntax => Failure::Bad(format!("search: {}", e.problem)),
            QueryErrorKind::NothingToSearch => {
                Failure::No(Some(code("CANNOT")), format!("search: {}", e.problem))
            }
        })?;
        let found: HashSet<u64> = self
            .store
            .matching_seqs(principal, &query, self.budget)
            .map_err(|e| Failure::store(&e))?
            .into_iter()
            .collect();
        Ok(self.view.message_seqs().map(|s| found.contains(&s)).collect())
    }
}

/// `m` where `within` holds, false elsewhere.
fn and(mut m: Vec<bool>, within: &[bool]) -> Vec<bool> {
    m.iter_mut().zip(within).for_each(|(m, w)| *m &= *w);
    m
}

fn stopped(why: Stopped) -> Failure {
    match why {
        Stopped::Deadline => Failure::limit("search took too long; narrow it down"),
        Stopped::Cancelled => Failure::No(None, "search cancelled".into()),
    }
}
