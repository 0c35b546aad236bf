//! RFC 6962 / RFC 9162 Merkle tree hashing: SHA-256, leaf prefix 0x00, node prefix 0x01, and
//! the checks of inclusion and consistency proofs.
//!
//! The Certificate Transparency tree unchanged, so existing transparency-log tooling and
//! witnesses can check mailvault checkpoints. Verification needs nothing but the proof;
//! archive-core generates the proofs these functions check.

use sha2::{Digest, Sha256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()`.
pub fn empty_root() -> Hash {
    Sha256::new().finalize().into()
}

/// Largest power of two strictly smaller than `n` (n ≥ 2): RFC 6962's split point.
pub fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2). Needs nothing but its arguments.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): the tree of `new` leaves with root
/// `new_root` extends the tree of `old` leaves with root `old_root`.
pub fn verify_consistency(old: u64, old_root: &Hash, new: u64, new_root: &Hash, proof: &[Hash]) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        // Every tree extends the empty tree; RFC 9162 defines no proof for it.
        return proof.is_empty() && *old_root == empty_root();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (path[0], path[0]);
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    f_r == *old_root && s_r == *new_root && s_n == 0
}

/// The right edge of a growing tree: the roots of its maximal complete subtrees, left to right.
/// Enough to append leaves and compute the root without storing anything else, which is what
/// `verify` uses to recompute the tree from the raw log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (height, hash) of each maximal complete subtree; heights strictly decrease.
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    /// A frontier from known peaks (heights strictly decreasing, summing to `size` leaves).
    pub fn from_peaks(size: u64, peaks: Vec<(u32, Hash)>) -> Frontier {
        Frontier { size, peaks }
    }

    /// Number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns the hashes of the subtrees the leaf completed, bottom-up
    /// (the leaf itself first), so a store can persist them.
    pub fn push(&mut self, leaf: Hash) -> Vec<Hash> {
        let mut completed = vec![leaf];
        let mut cur = (0u32, leaf);
        while let Some(&(h, left)) = self.peaks.last() {
            if h != cur.0 {
                break;
            }
            self.peaks.pop();
            cur = (h + 1, node_hash(&left, &cur.1));
            completed.push(cur.1);
        }
        self.peaks.push(cur);
        self.size += 1;
        completed
    }

    /// The tree root of all leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some(&(_, mut r)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            r = node_hash(left, &r);
        }
        r
    }
}

/// The subtrees a range proof consists of: for the leaves `[lo, hi)` of a tree of `size`
/// leaves, every maximal subtree `[a, b)` of RFC 6962's split that lies wholly outside the
/// range, left to right. With their hashes and the leaves of the range, the root can be
/// recomputed ([`root_from_range`]) — so a range proof shows that exactly these leaves, no
/// more and no fewer, sit between the two boundaries. At most two per tree level.
pub fn range_proof_subtrees(lo: u64, hi: u64, size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if lo < hi && hi <= size {
        outside_subtrees(lo, hi, 0, size, &mut out);
    }
    out
}

/// Appends the subtrees of `[a, b)` that lie outside `[lo, hi)`. Recursion only descends
/// into a subtree that straddles a boundary, and halves at least: depth ≤ 64.
fn outside_subtrees(lo: u64, hi: u64, a: u64, b: u64, out: &mut Vec<(u64, u64)>) {
    if b <= lo || a >= hi {
        out.push((a, b));
    } else if lo <= a && b <= hi {
        // wholly inside: made from the range's own leaves
    } else {
        let k = split(b - a);
        outside_subtrees(lo, hi, a, a + k, out);
        outside_subtrees(lo, hi, a + k, b, out);
    }
}

/// Recomputes the root of a tree of `size` leaves from the hashes of leaves `[lo, hi)`, in
/// order, and the hashes of [`range_proof_subtrees`], in order. `None` when the counts do not
/// fit the shape: too few or too many leaves or proof hashes. Reads each leaf hash once, in
/// order, holding O(log n) hashes, so a range of millions of leaves can be checked streaming.
pub fn root_from_range<L, P>(lo: u64, hi: u64, size: u64, mut leaves: L, mut proof: P) -> Option<Hash>
where
    L: Iterator<Item = Hash>,
    P: Iterator<Item = Hash>,
{
    if lo >= hi || hi > size {
        return None;
    }
    let root = fold_range(lo, hi, 0, size, &mut leaves, &mut proof)?;
    // Every leaf and every proof hash must have been used: an extra one is an error too.
    if leaves.next().is_some() || proof.next().is_some() {
        return None;
    }
    Some(root)
}

fn fold_range(
    lo: u64,
    hi: u64,
    a: u64,
    b: u64,
    leaves: &mut dyn Iterator<Item = Hash>,
    proof: &mut dyn Iterator<Item = Hash>,
) -> Option<Hash> {
    if b <= lo || a >= hi {
        proof.next()
    } else if lo <= a && b <= hi {
        // An aligned subtree of RFC 6962's split: its root is the frontier root of its leaves.
        let mut frontier = Frontier::default();
        for _ in a..b {
            frontier.push(leaves.next()?);
        }
        Some(frontier.root())
    } else {
        let k = split(b - a);
        let left = fold_range(lo, hi, a, a + k, leaves, proof)?;
        let right = fold_range(lo, hi, a + k, b, leaves, proof)?;
        Some(node_hash(&left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH(D[lo:hi]) straight from RFC 6962 §2.1, recursively: the definition the faster
    /// code is checked against.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn frontier_root_is_the_rfc_root() {
        let leaves: Vec<Hash> = (0u64..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 0..leaves.len() {
            let mut f = Frontier::default();
            for l in &leaves[..n] {
                f.push(*l);
            }
            assert_eq!(f.root(), mth(&leaves[..n]), "size {n}");
        }
    }

    /// A naive range proof: the RFC root of each outside subtree.
    fn proof_for(leaves: &[Hash], lo: u64, hi: u64) -> Vec<Hash> {
        range_proof_subtrees(lo, hi, leaves.len() as u64)
            .into_iter()
            .map(|(a, b)| mth(&leaves[a as usize..b as usize]))
            .collect()
    }

    #[test]
    fn every_range_of_small_trees_proves_and_nothing_else_does() {
        let all: Vec<Hash> = (0u64..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for size in 1..=all.len() as u64 {
            let leaves = &all[..size as usize];
            let root = mth(leaves);
            for lo in 0..size {
                for hi in lo + 1..=size {
                    let proof = proof_for(leaves, lo, hi);
                    assert!(proof.len() <= 2 * 64);
                    let range = leaves[lo as usize..hi as usize].iter().copied();
                    let got = root_from_range(lo, hi, size, range.clone(), proof.iter().copied());
                    assert_eq!(got, Some(root), "size {size} range {lo}..{hi}");
                    // One leaf missing, one extra, or one swapped: never the root.
                    let missing = range.clone().skip(1);
                    assert_ne!(
                        root_from_range(lo, hi, size, missing, proof.iter().copied()),
                        Some(root)
                    );
                    let extra = range.clone().chain(std::iter::once(all[0]));
                    assert_eq!(root_from_range(lo, hi, size, extra, proof.iter().copied()), None);
                    if hi - lo >= 2 {
                        let mut swapped: Vec<Hash> = range.clone().collect();
                        swapped.swap(0, 1);
                        let got = root_from_range(lo, hi, size, swapped.into_iter(), proof.iter().copied());
                        assert_ne!(got, Some(root));
                    }
                    // The same leaves claimed for a range shifted by one: never the root.
                    if hi < size {
                        let shifted =
                            root_from_range(lo + 1, hi + 1, size, range.clone(), proof.iter().copied());
                        assert_ne!(shifted, Some(root), "size {size} range {lo}..{hi} shifted");
                    }
                }
            }
        }
    }
}
