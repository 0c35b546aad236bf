//! RFC 6962 / RFC 9162 Merkle tree hashing: SHA-256, leaf prefix 0x00, node prefix 0x01.
//!
//! Using the Certificate Transparency tree unchanged means existing transparency-log tooling
//! and witnesses can check mailvault checkpoints. Proof *generation* works over any
//! [`HashSource`] that can hand out the hash of a complete, aligned subtree; proof
//! *verification* needs nothing but the proof, so an auditor's verifier is a few functions.

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
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Something that knows the hash of every complete, aligned subtree of a tree: the subtree of
/// height `level` whose leftmost leaf is `index << level`.
pub trait HashSource {
    /// Hash of the complete subtree at (`level`, `index`).
    fn complete_subtree(&self, level: u32, index: u64) -> crate::Result<Hash>;

    /// `MTH(D[lo:hi])` for any range, built from complete subtrees.
    fn range_hash(&self, lo: u64, hi: u64) -> crate::Result<Hash> {
        let n = hi - lo;
        if n == 0 {
            return Ok(empty_root());
        }
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            return self.complete_subtree(n.trailing_zeros(), lo >> n.trailing_zeros());
        }
        let k = split(n);
        Ok(node_hash(
            &self.range_hash(lo, lo + k)?,
            &self.range_hash(lo + k, hi)?,
        ))
    }

    /// The root of the tree of the first `size` leaves.
    fn root(&self, size: u64) -> crate::Result<Hash> {
        self.range_hash(0, size)
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1 PATH).
    fn inclusion_proof(&self, index: u64, size: u64) -> crate::Result<Vec<Hash>> {
        if index >= size {
            return Err(crate::Error::Rejected(format!(
                "leaf {index} is not in a tree of size {size}"
            )));
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof)?;
        Ok(proof)
    }

    /// PATH(m, D[lo:hi]) appended bottom-up to `out`.
    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> crate::Result<()> {
        let n = hi - lo;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            self.path(m, lo, lo + k, out)?;
            out.push(self.range_hash(lo + k, hi)?);
        } else {
            self.path(m - k, lo + k, hi, out)?;
            out.push(self.range_hash(lo, lo + k)?);
        }
        Ok(())
    }

    /// Consistency proof between the trees of `old` and `new` leaves (RFC 6962 §2.1.2 PROOF).
    fn consistency_proof(&self, old: u64, new: u64) -> crate::Result<Vec<Hash>> {
        if old > new {
            return Err(crate::Error::Rejected(format!(
                "cannot prove size {old} consistent with the smaller size {new}"
            )));
        }
        let mut proof = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut proof)?;
        }
        Ok(proof)
    }

    /// SUBPROOF(m, D[lo:hi], b) appended bottom-up to `out`.
    fn subproof(&self, m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<Hash>) -> crate::Result<()> {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push(self.range_hash(lo, hi)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, lo, lo + k, whole, out)?;
            out.push(self.range_hash(lo + k, hi)?);
        } else {
            self.subproof(m - k, lo + k, hi, false, out)?;
            out.push(self.range_hash(lo, lo + k)?);
        }
        Ok(())
    }
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

/// Position of the complete subtree (`level`, `index`) in the post-order sequence of hashes
/// that [`Frontier::push`] returns: leaf `m`'s hash comes after `2m - popcount(m)` earlier
/// hashes, and the subtrees it completes follow it directly.
pub fn stored_hash_index(level: u32, index: u64) -> u64 {
    let last_leaf = ((index + 1) << level) - 1;
    2 * last_leaf - u64::from(last_leaf.count_ones()) + u64::from(level)
}

/// Number of stored hashes for a tree of `size` leaves.
pub fn stored_hash_count(size: u64) -> u64 {
    2 * size - u64::from(size.count_ones())
}

/// An in-memory tree holding every stored hash; for tests, tools and small trees.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    stored: Vec<Hash>,
}

impl MemoryTree {
    /// Appends a leaf (raw leaf bytes, hashed with the leaf prefix).
    pub fn push_leaf(&mut self, leaf: &[u8]) {
        let completed = self.frontier.push(leaf_hash(leaf));
        self.stored.extend(completed);
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }
}

impl HashSource for MemoryTree {
    fn complete_subtree(&self, level: u32, index: u64) -> crate::Result<Hash> {
        let i = stored_hash_index(level, index);
        self.stored
            .get(i as usize)
            .copied()
            .ok_or_else(|| crate::Error::Internal(format!("no subtree ({level}, {index}) stored")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::default();
        for i in 0..n {
            t.push_leaf(&i.to_be_bytes());
        }
        t
    }

    #[test]
    fn stored_index_matches_push_order() {
        let t = tree(37);
        assert_eq!(t.stored.len() as u64, stored_hash_count(37));
        for i in 0..37u64 {
            let leaf = leaf_hash(&i.to_be_bytes());
            assert_eq!(t.stored[stored_hash_index(0, i) as usize], leaf);
        }
    }

    #[test]
    fn frontier_root_equals_recursive_root() {
        for n in 0..70 {
            let t = tree(n);
            assert_eq!(t.frontier.root(), t.root(n).unwrap(), "size {n}");
        }
    }
}
